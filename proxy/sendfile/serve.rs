//! Sending the file: the app's head with our length and validators, `304`/`206`/`416` as the
//! request asks, and the bytes streamed in chunks (a large file is never held in memory).

use bytes::BytesMut;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{resolve, Pending, Settings};
use crate::assets::{none_match, range, RangeRequest};
use crate::metrics::Metrics;

/// Bytes read and written at a time.
const CHUNK: usize = 64 * 1024;

/// The validators of a file: the app's, else nginx's form (`"<mtime hex>-<size hex>"`).
struct Validators {
    etag: String,
    last_modified: String,
    modified: SystemTime,
}

fn validators(head: &ResponseHeader, len: u64, modified: SystemTime) -> Validators {
    let field = |name| {
        head.headers
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let secs = modified
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    Validators {
        etag: field(http::header::ETAG).unwrap_or_else(|| format!("\"{secs:x}-{len:x}\"")),
        last_modified: field(http::header::LAST_MODIFIED)
            .unwrap_or_else(|| httpdate::fmt_http_date(modified)),
        modified,
    }
}

/// What the answer will be.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// `304`: the client's copy is current.
    NotModified,
    /// The status, the bytes `start..start+len`, and the `Content-Range` (for a `206`).
    Send {
        status: u16,
        start: u64,
        len: u64,
        content_range: Option<String>,
    },
    /// `416` with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Decides the answer to `request` for a file of `len` bytes the app answered `status` for.
/// Validators and ranges apply to a `200` only, as nginx does.
fn plan(
    request: &http::HeaderMap,
    method: &http::Method,
    status: u16,
    len: u64,
    v: &Validators,
) -> Plan {
    let whole = Plan::Send {
        status,
        start: 0,
        len,
        content_range: None,
    };
    if status != 200 {
        return whole;
    }
    let field = |name| {
        request
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
    };
    if let Some(tags) = field(http::header::IF_NONE_MATCH) {
        if none_match(tags, &v.etag) {
            return Plan::NotModified;
        }
    } else if let Some(since) =
        field(http::header::IF_MODIFIED_SINCE).and_then(|d| httpdate::parse_http_date(d).ok())
    {
        // Whole seconds: an HTTP date has no finer grain.
        let modified = v
            .modified
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let since = since
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if modified <= since {
            return Plan::NotModified;
        }
    }
    if *method != http::Method::GET {
        return whole;
    }
    let Some(ranges) = field(http::header::RANGE) else {
        return whole;
    };
    // A Range with If-Range applies only while the client's validator is still ours.
    if field(http::header::IF_RANGE).is_some_and(|r| r != v.etag && r != v.last_modified) {
        return whole;
    }
    match range(ranges, len) {
        RangeRequest::Full => whole,
        RangeRequest::Partial(r) => Plan::Send {
            status: 206,
            start: *r.start(),
            len: r.end() - r.start() + 1,
            content_range: Some(format!("bytes {}-{}/{len}", r.start(), r.end())),
        },
        RangeRequest::Unsatisfiable => Plan::Unsatisfiable,
    }
}

/// Writes a short plain answer (a refused or missing file).
async fn plain(
    session: &mut Session,
    status: u16,
    text: &str,
    request_id: &str,
) -> pingora::Result<()> {
    let mut head = ResponseHeader::build(status, Some(4))?;
    head.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    head.insert_header(http::header::CONTENT_LENGTH, text.len().to_string())?;
    head.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    head.insert_header(crate::headers::X_REQUEST_ID, request_id)?;
    session.write_response_header(Box::new(head), false).await?;
    session
        .write_response_body(Some(bytes::Bytes::copy_from_slice(text.as_bytes())), true)
        .await
}

/// Writes a head without a body and ends the answer. The proxying was ended by an error, so
/// Pingora will not finish the stream itself: an h2 stream left open would be reset.
async fn write_head_only(session: &mut Session, head: ResponseHeader) -> pingora::Result<()> {
    session.write_response_header(Box::new(head), true).await?;
    session.write_response_body(None, true).await
}

/// Serves the file `pending` names; the status written.
pub async fn serve(
    session: &mut Session,
    pending: Pending,
    settings: &Settings,
    metrics: &Metrics,
    request_id: &str,
) -> pingora::Result<u16> {
    let failed = |e: std::io::Error| {
        pingora::Error::because(pingora::ErrorType::InternalError, "sendfile", e)
    };
    // The proxying ended with an error, after which Pingora does not reuse an HTTP/1.1 client
    // connection: say so (`Connection: close`), or the client would send its next request
    // into a closing connection.
    session.set_keepalive(None);
    let path = match resolve(&pending.requested, settings).await {
        Ok(path) => path,
        Err(refusal) => {
            tracing::warn!("sendfile: {refusal}");
            metrics.sendfile(refusal.label());
            let status = refusal.status();
            let text = if status == 404 {
                "not found\n"
            } else {
                "forbidden\n"
            };
            plain(session, status, text, request_id).await?;
            return Ok(status);
        }
    };
    let mut file = tokio::fs::File::open(&path).await.map_err(failed)?;
    let meta = file.metadata().await.map_err(failed)?;
    let len = meta.len();
    let mut head = pending.head;
    let v = validators(&head, len, meta.modified().unwrap_or(UNIX_EPOCH));
    let request = session.req_header();
    let head_only = request.method == http::Method::HEAD;
    let plan = plan(
        &request.headers,
        &request.method,
        head.status.as_u16(),
        len,
        &v,
    );
    for name in [
        http::header::CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
    ] {
        head.remove_header(&name);
    }
    if !head.headers.contains_key(http::header::CONTENT_TYPE) {
        head.insert_header(http::header::CONTENT_TYPE, "application/octet-stream")?;
    }
    head.insert_header(http::header::ETAG, v.etag.as_str())?;
    head.insert_header(http::header::LAST_MODIFIED, v.last_modified.as_str())?;
    head.insert_header(http::header::ACCEPT_RANGES, "bytes")?;
    head.insert_header(crate::headers::X_REQUEST_ID, request_id)?;
    metrics.sendfile("served");
    let (start, send) = match plan {
        Plan::NotModified => {
            head.set_status(304)?;
            for name in [
                http::header::CONTENT_TYPE,
                http::header::CONTENT_DISPOSITION,
            ] {
                head.remove_header(&name);
            }
            write_head_only(session, head).await?;
            return Ok(304);
        }
        Plan::Unsatisfiable => {
            head.set_status(416)?;
            head.insert_header(http::header::CONTENT_RANGE, format!("bytes */{len}"))?;
            head.insert_header(http::header::CONTENT_LENGTH, "0")?;
            write_head_only(session, head).await?;
            return Ok(416);
        }
        Plan::Send {
            status,
            start,
            len,
            content_range,
        } => {
            head.set_status(status)?;
            if let Some(content_range) = content_range {
                head.insert_header(http::header::CONTENT_RANGE, content_range)?;
            }
            head.insert_header(http::header::CONTENT_LENGTH, len.to_string())?;
            (start, len)
        }
    };
    let status = head.status.as_u16();
    if head_only || send == 0 {
        write_head_only(session, head).await?;
        return Ok(status);
    }
    session.write_response_header(Box::new(head), false).await?;
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(failed)?;
    let mut remaining = send;
    while remaining > 0 {
        let want = usize::try_from(remaining).unwrap_or(CHUNK).min(CHUNK);
        let mut chunk = BytesMut::with_capacity(want);
        let read = (&mut file)
            .take(want as u64)
            .read_buf(&mut chunk)
            .await
            .map_err(failed)?;
        if read == 0 {
            // The file shrank under us: the promised length cannot be kept, so the connection
            // is cut rather than the answer ended short.
            return Err(pingora::Error::explain(
                pingora::ErrorType::InternalError,
                format!("sendfile: {} shrank while it was sent", path.display()),
            ));
        }
        remaining -= read as u64;
        session
            .write_response_body(Some(chunk.freeze()), remaining == 0)
            .await?;
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v() -> Validators {
        let modified = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Validators {
            etag: "\"6553f100-3e8\"".into(),
            last_modified: httpdate::fmt_http_date(modified),
            modified,
        }
    }

    fn request(fields: &[(&'static str, &str)]) -> http::HeaderMap {
        fields
            .iter()
            .map(|(n, val)| {
                (
                    http::HeaderName::from_static(n),
                    http::HeaderValue::from_str(val).unwrap(),
                )
            })
            .collect()
    }

    fn send(status: u16, start: u64, len: u64, range: Option<&str>) -> Plan {
        Plan::Send {
            status,
            start,
            len,
            content_range: range.map(str::to_string),
        }
    }

    #[test]
    fn validators_default_to_mtime_and_size() {
        let head = ResponseHeader::build(200, None).unwrap();
        let modified = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ours = validators(&head, 1000, modified);
        assert_eq!(ours.etag, "\"6553f100-3e8\"");
        assert_eq!(ours.last_modified, "Tue, 14 Nov 2023 22:13:20 GMT");
        let mut head = ResponseHeader::build(200, None).unwrap();
        head.insert_header("etag", "\"app\"").unwrap();
        assert_eq!(validators(&head, 1000, modified).etag, "\"app\"");
    }

    #[test]
    fn conditional_and_range_requests() {
        let get = http::Method::GET;
        let v = v();
        assert_eq!(
            plan(&request(&[]), &get, 200, 1000, &v),
            send(200, 0, 1000, None)
        );
        let inm = request(&[("if-none-match", "\"6553f100-3e8\"")]);
        assert_eq!(plan(&inm, &get, 200, 1000, &v), Plan::NotModified);
        let ims = request(&[("if-modified-since", &v.last_modified)]);
        assert_eq!(plan(&ims, &get, 200, 1000, &v), Plan::NotModified);
        let old = request(&[("if-modified-since", "Tue, 14 Nov 2023 22:13:19 GMT")]);
        assert_eq!(plan(&old, &get, 200, 1000, &v), send(200, 0, 1000, None));
        // If-None-Match wins over If-Modified-Since.
        let both = request(&[
            ("if-none-match", "\"other\""),
            ("if-modified-since", &v.last_modified),
        ]);
        assert_eq!(plan(&both, &get, 200, 1000, &v), send(200, 0, 1000, None));

        let r = request(&[("range", "bytes=100-199")]);
        assert_eq!(
            plan(&r, &get, 200, 1000, &v),
            send(206, 100, 100, Some("bytes 100-199/1000"))
        );
        assert_eq!(
            plan(&r, &http::Method::HEAD, 200, 1000, &v),
            send(200, 0, 1000, None)
        );
        assert_eq!(plan(&r, &get, 404, 1000, &v), send(404, 0, 1000, None));
        let past = request(&[("range", "bytes=5000-")]);
        assert_eq!(plan(&past, &get, 200, 1000, &v), Plan::Unsatisfiable);
        let stale = request(&[("range", "bytes=0-9"), ("if-range", "\"old\"")]);
        assert_eq!(plan(&stale, &get, 200, 1000, &v), send(200, 0, 1000, None));
        let current = request(&[("range", "bytes=0-9"), ("if-range", "\"6553f100-3e8\"")]);
        assert_eq!(
            plan(&current, &get, 200, 1000, &v),
            send(206, 0, 10, Some("bytes 0-9/1000"))
        );
    }
}
