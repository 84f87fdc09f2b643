//! Answers from a stored body, for the asset cache and the edge cache alike: the encoding by
//! negotiation, `If-None-Match` then `If-Modified-Since` (304), `Range` under `If-Range`
//! (206/416), HEAD (the fields GET would have, no body).
//!
//! A `304` carries the fields the `200` would (RFC 9110 §15.4.5) except those describing the
//! bytes (`Content-Length`, `Content-Type`, `Content-Encoding`, `Accept-Ranges`). ETags: the
//! app's own on the identity body, made weak on a body we encoded (the bytes differ, the
//! resource does not, as the on-the-fly compressor does); without one, a strong tag per
//! encoding from the content hash.

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use std::time::SystemTime;

use super::{if_range, none_match, not_modified_since, range, Asset, CacheStatus, RangeRequest};
use crate::encoding::{negotiate, Encoding};

/// A year: the longest `max-age` caches honour; the fingerprint changes when the bytes do.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// What differs between answering with an asset and with a cached response.
#[derive(Debug)]
pub struct Answer<'a> {
    /// The stored status; 304 and Range apply to 200 only.
    pub status: u16,
    /// Fields sent as they are (`Cache-Control`, `Age`, `Date`, the app's own fields): not
    /// `ETag`, `Vary`, `Content-Type`, `Content-Length`, `Content-Encoding`.
    pub headers: &'a [(HeaderName, HeaderValue)],
    /// `X-Cache`, when the route wants it.
    pub x_cache: Option<CacheStatus>,
    /// The app's `ETag`, if it sent one.
    pub etag: Option<&'a str>,
    /// The app's `Vary`, if it sent one.
    pub vary: Option<&'a str>,
    /// The app's `Content-Encoding` of a body stored as sent.
    pub content_encoding: Option<&'a HeaderValue>,
    /// When the body last changed (`Last-Modified`, else `Date`), for `If-Modified-Since`.
    pub modified: Option<SystemTime>,
    /// `Last-Modified` and `Date` as sent, for `If-Range` by date.
    pub last_modified: Option<SystemTime>,
    /// `Date` as sent.
    pub date: Option<SystemTime>,
    /// Whether we may choose an encoding (`false`: the body is served exactly as stored).
    pub negotiate: bool,
}

impl<'a> Answer<'a> {
    /// A plain answer: `status`, `headers`, encodings negotiated, our own ETags.
    pub fn plain(
        status: u16,
        headers: &'a [(HeaderName, HeaderValue)],
        x_cache: Option<CacheStatus>,
    ) -> Self {
        Answer {
            status,
            headers,
            x_cache,
            etag: None,
            vary: None,
            content_encoding: None,
            modified: None,
            last_modified: None,
            date: None,
            negotiate: true,
        }
    }
}

/// Writes the response for `asset`: immutable caching, `X-Cache` when `status` is given.
pub async fn respond(
    session: &mut Session,
    asset: &Asset,
    status: Option<CacheStatus>,
    request_id: &str,
) -> pingora::Result<u16> {
    let immutable = [(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE))];
    let answer = Answer::plain(200, &immutable, status);
    respond_stored(session, asset, &answer, request_id).await
}

/// The ETag of the variant served: the app's on identity, weak on an encoding we added.
fn served_etag(answer: &Answer<'_>, encoding: Encoding, ours: &str) -> String {
    match answer.etag {
        Some(app) if encoding == Encoding::Identity => app.to_string(),
        Some(app) if app.starts_with("W/") => app.to_string(),
        Some(app) => format!("W/{app}"),
        None => ours.to_string(),
    }
}

/// Writes a stored body to the client: encoding by negotiation, 304, 206/416, HEAD. Returns
/// the status code sent.
pub async fn respond_stored(
    session: &mut Session,
    asset: &Asset,
    answer: &Answer<'_>,
    request_id: &str,
) -> pingora::Result<u16> {
    let request = session.req_header();
    let head_only = request.method == http::Method::HEAD;
    let header_str =
        |name: header::HeaderName| request.headers.get(name).and_then(|v| v.to_str().ok());
    let ok = answer.status == 200;
    let encoding = if !answer.negotiate || header_str(header::RANGE).is_some() && ok {
        // Ranges address the identity bytes; a compressed slice would be useless.
        Encoding::Identity
    } else {
        negotiate(header_str(header::ACCEPT_ENCODING), &asset.available())
            .unwrap_or(Encoding::Identity)
    };
    let variant = asset.variant(encoding).unwrap_or(&asset.identity);
    let etag = served_etag(answer, variant.encoding, &variant.etag);
    // If-None-Match first; If-Modified-Since only without it (RFC 9110 §13.2.2).
    let not_modified = ok
        && match header_str(header::IF_NONE_MATCH) {
            Some(inm) => none_match(inm, &etag),
            None => header_str(header::IF_MODIFIED_SINCE)
                .zip(answer.modified)
                .is_some_and(|(ims, modified)| not_modified_since(ims, modified)),
        };
    let wants_range = header_str(header::RANGE).filter(|_| ok).filter(|_| {
        header_str(header::IF_RANGE)
            .is_none_or(|ir| if_range(ir, &etag, answer.last_modified, answer.date))
    });
    let len = variant.body.len() as u64;
    let (code, body) = if not_modified {
        (304, None)
    } else {
        match wants_range.map(|r| range(r, len)) {
            Some(RangeRequest::Partial(r)) => {
                let (start, end) = (*r.start(), *r.end());
                let slice = variant.body.slice(start as usize..=end as usize);
                (
                    206,
                    Some((slice, Some(format!("bytes {start}-{end}/{len}")))),
                )
            }
            Some(RangeRequest::Unsatisfiable) => {
                (416, Some((Bytes::new(), Some(format!("bytes */{len}")))))
            }
            _ => (answer.status, Some((variant.body.clone(), None))),
        }
    };
    let mut response = ResponseHeader::build(code, Some(10 + answer.headers.len()))?;
    for (name, value) in answer.headers {
        if code != 304 || !describes_bytes(name) {
            response.append_header(name.clone(), value.clone())?;
        }
    }
    response.insert_header(header::ETAG, etag.as_str())?;
    let vary = match (answer.vary, answer.negotiate) {
        (Some(app), true) if !app.to_ascii_lowercase().contains("accept-encoding") => {
            Some(format!("{app}, Accept-Encoding"))
        }
        (Some(app), _) => Some(app.to_string()),
        (None, true) => Some("Accept-Encoding".to_string()),
        (None, false) => None,
    };
    if let Some(vary) = vary {
        response.insert_header(header::VARY, vary)?;
    }
    if let Some(status) = answer.x_cache {
        response.insert_header("x-cache", status.as_str())?;
    }
    response.insert_header(crate::headers::X_REQUEST_ID, request_id)?;
    if code != 304 {
        if let Some(content_type) = &asset.content_type {
            response.insert_header(header::CONTENT_TYPE, content_type.clone())?;
        }
        if encoding != Encoding::Identity {
            response.insert_header(header::CONTENT_ENCODING, encoding.token())?;
        } else if let Some(stored) = answer.content_encoding {
            response.insert_header(header::CONTENT_ENCODING, stored.clone())?;
        }
    }
    if let Some((bytes, content_range)) = &body {
        if ok {
            response.insert_header(header::ACCEPT_RANGES, "bytes")?;
        }
        if !no_body_status(code) {
            response.insert_header(header::CONTENT_LENGTH, bytes.len().to_string())?;
        }
        if let Some(content_range) = content_range {
            response.insert_header(header::CONTENT_RANGE, content_range.as_str())?;
        }
    }
    let body = body
        .map(|(bytes, _)| bytes)
        .filter(|b| !head_only && !b.is_empty() && !no_body_status(code));
    session
        .write_response_header(Box::new(response), body.is_none())
        .await?;
    if let Some(bytes) = body {
        session.write_response_body(Some(bytes), true).await?;
    }
    Ok(code)
}

/// Fields about the bytes of a body, which a 304 (no body) does not send.
fn describes_bytes(name: &HeaderName) -> bool {
    *name == header::CONTENT_LENGTH
        || *name == header::CONTENT_RANGE
        || *name == header::CONTENT_TYPE
        || *name == header::CONTENT_ENCODING
        || *name == header::ACCEPT_RANGES
}

/// Statuses that never have a body (RFC 9110 §6.4.1).
fn no_body_status(code: u16) -> bool {
    code == 204 || code == 304 || (100..200).contains(&code)
}
