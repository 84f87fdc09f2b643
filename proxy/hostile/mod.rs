//! Hostile input: what a request head must look like before anything routes on it or
//! forwards it.
//!
//! Pingora 0.9 (httparse and its own checks) already refuses, with `400` and a closed
//! connection, before any phase runs: obsolete line folding, bare CR, NUL and other controls in
//! a field, a space before the colon, differing or unparsable `Content-Length`s, a final
//! transfer coding other than `chunked`, `Transfer-Encoding` on HTTP/1.0, more than 256 fields
//! or more than 1 MiB of head, and bad chunk sizes (while the body is read). What it lets
//! through, and frontdoor refuses here, is:
//!
//! - **framing** (HTTP/1.1): `Content-Length` *and* `Transfer-Encoding` (Pingora drops the
//!   length and goes on; RFC 9112 §6.1 allows refusing, and nginx ≥ 1.21.1 does), any
//!   `Transfer-Encoding` but exactly one `chunked` (`identity, chunked` is read as chunked by
//!   Pingora but not by every app server), and a bare LF as a line end (httparse accepts it);
//! - **limits** smaller than Pingora's hard ones, each with its own status: head bytes and
//!   field count (431), URI length (414), declared body size (413; a chunked body is counted
//!   as it streams, see [`BodyLimit`]);
//! - **paths** that mean one thing to the router and another to the app ([`path`]).
//!
//! Slow heads (slowloris) are cut by [`slow`], below Pingora's session, before any phase.

pub mod h2flood;
pub mod path;
pub mod slow;

use std::time::{Duration, Instant};

/// The limits a request head and body must keep, from `[proxy]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of request line plus header fields (431 above).
    pub max_header_bytes: usize,
    /// Header fields (431 above).
    pub max_headers: usize,
    /// Bytes of the request target (414 above).
    pub max_uri_bytes: usize,
    /// Default request body limit of a route without its own `max-body` (413 above).
    pub max_body: u64,
    /// Longest time from a head's first byte to its end; the connection is closed after it.
    pub header_timeout: Duration,
    /// Longest wait for each read of a request body.
    pub body_timeout: Duration,
    /// `%2F`/`%5C` in paths: refused or passed encoded.
    pub encoded_slashes: path::EncodedSlashes,
}

impl Default for Limits {
    /// nginx's `large_client_header_buffers` (4 × 8k) and URI buffer, Apache's
    /// `LimitRequestFields`, HAProxy's `timeout http-request`, nginx's `client_body_timeout`.
    /// The body limit is far above nginx's 1 MiB (which every Rails app with uploads raises)
    /// and below Passenger Standalone's 1 GiB.
    fn default() -> Self {
        Limits {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body: 100 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            encoded_slashes: path::EncodedSlashes::Refuse,
        }
    }
}

/// Why a request was refused before it went anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Ambiguous or forbidden message framing.
    Framing(&'static str),
    /// The head is larger than `max-header-bytes`.
    HeaderTooLarge,
    /// More fields than `max-headers`.
    TooManyHeaders,
    /// The request target is longer than `max-uri-bytes`.
    UriTooLong,
    /// The declared or streamed body is over the route's `max-body`.
    BodyTooLarge,
    /// A read of the body waited longer than `body-timeout`.
    BodyTimeout,
    /// A path the router and the app could read differently.
    BadPath(&'static str),
}

impl Rejection {
    /// The status answered.
    pub fn status(self) -> u16 {
        match self {
            Rejection::Framing(_) | Rejection::BadPath(_) => 400,
            Rejection::HeaderTooLarge | Rejection::TooManyHeaders => 431,
            Rejection::UriTooLong => 414,
            Rejection::BodyTooLarge => 413,
            Rejection::BodyTimeout => 408,
        }
    }

    /// The `reason` label of `frontdoor_rejected_requests_total` (bounded).
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Framing(_) => "framing",
            Rejection::HeaderTooLarge => "header_too_large",
            Rejection::TooManyHeaders => "too_many_headers",
            Rejection::UriTooLong => "uri_too_long",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::BodyTimeout => "body_timeout",
            Rejection::BadPath(_) => "bad_path",
        }
    }

    /// The body of the answer: short, and naming the rule, so an operator reading a client's
    /// report knows which limit to look at.
    pub fn body(self) -> &'static str {
        match self {
            Rejection::Framing(_) => "bad request: ambiguous message framing\n",
            Rejection::HeaderTooLarge => "request header fields too large\n",
            Rejection::TooManyHeaders => "too many request header fields\n",
            Rejection::UriTooLong => "URI too long\n",
            Rejection::BodyTooLarge => "request body too large\n",
            Rejection::BodyTimeout => "request timeout\n",
            Rejection::BadPath(_) => "bad request: path\n",
        }
    }

    /// What exactly was wrong, for the diagnostics log.
    pub fn detail(self) -> &'static str {
        match self {
            Rejection::Framing(why) | Rejection::BadPath(why) => why,
            other => other.reason(),
        }
    }
}

/// Checks a request head: `raw` is the head as received on HTTP/1.x (`None` on HTTP/2, whose
/// framing has no such ambiguity), `head_bytes` its size, `uri_bytes` the request target's
/// length, `fields` the field count.
pub fn check_head(
    raw: Option<&[u8]>,
    head_bytes: usize,
    uri_bytes: usize,
    fields: usize,
    limits: &Limits,
) -> Result<(), Rejection> {
    if let Some(raw) = raw {
        check_framing(raw)?;
    }
    if uri_bytes > limits.max_uri_bytes {
        return Err(Rejection::UriTooLong);
    }
    if head_bytes > limits.max_header_bytes {
        return Err(Rejection::HeaderTooLarge);
    }
    if fields > limits.max_headers {
        return Err(Rejection::TooManyHeaders);
    }
    Ok(())
}

/// Checks the head of the request in `session` and normalises its path in place (the router
/// and the upstream request then see the same path).
pub fn screen_head(
    session: &mut pingora::proxy::Session,
    limits: &Limits,
) -> Result<(), Rejection> {
    let head = session.req_header();
    let uri = head.raw_path();
    if session.is_http2() {
        check_head(None, h1_size(head), uri.len(), head.headers.len(), limits)?;
    } else {
        let raw = session.as_downstream().to_h1_raw();
        check_head(Some(&raw), raw.len(), uri.len(), head.headers.len(), limits)?;
    }
    let head = session.req_header();
    if !head.raw_path_is_utf8() {
        // The router would match a lossy rendering while the app got the raw bytes.
        return Err(Rejection::BadPath("not UTF-8"));
    }
    let Some(normal) = path::normalise(head.uri.path(), limits.encoded_slashes)? else {
        return Ok(());
    };
    let mut parts = head.uri.clone().into_parts();
    let query = head.uri.query().map_or(String::new(), |q| format!("?{q}"));
    parts.path_and_query = Some(
        format!("{normal}{query}")
            .parse()
            .map_err(|_| Rejection::BadPath("unparsable once normalised"))?,
    );
    let uri = http::Uri::from_parts(parts).map_err(|_| Rejection::BadPath("unparsable URI"))?;
    session.req_header_mut().set_uri(uri);
    Ok(())
}

/// The size of an HTTP/2 request head written as HTTP/1.1 (what Pingora's `to_h1_raw` would
/// build, the measure `max-header-bytes` applies to on both protocols), counted without
/// building it: that copy cost every h2 request an allocation and a pass over its fields.
fn h1_size(head: &pingora::http::RequestHeader) -> usize {
    const CRLF: usize = 2;
    let line = head.method.as_str().len() + 1 + head.raw_path().len() + 1 + "HTTP/2".len() + CRLF;
    let fields: usize = head
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + ": ".len() + value.len() + CRLF)
        .sum();
    line + fields + CRLF
}

/// The body limit of a request to a route (its `max-body`, else `[proxy] max-body`), checked
/// at once against a declared `Content-Length`.
pub fn body_limit(
    head: &pingora::http::RequestHeader,
    route_max: Option<u64>,
    limits: &Limits,
) -> Result<BodyLimit, Rejection> {
    let limit = BodyLimit::new(route_max.unwrap_or(limits.max_body));
    let declared = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    limit.declared(declared)?;
    Ok(limit)
}

/// The HTTP/1.1 framing rules Pingora does not enforce, read from the raw head (Pingora has
/// already removed `Content-Length` from the parsed one when both were sent).
fn check_framing(raw: &[u8]) -> Result<(), Rejection> {
    if raw
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || raw[i - 1] != b'\r'))
    {
        return Err(Rejection::Framing("bare LF line end"));
    }
    let mut content_length = false;
    let mut transfer_encodings = Vec::new();
    // The request line is skipped; httparse has already validated every field line.
    for line in raw.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length = true;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encodings.push(value.trim_ascii());
        }
    }
    match transfer_encodings.as_slice() {
        [] => Ok(()),
        [only] if only.eq_ignore_ascii_case(b"chunked") => {
            if content_length {
                Err(Rejection::Framing(
                    "both Content-Length and Transfer-Encoding",
                ))
            } else {
                Ok(())
            }
        }
        _ => Err(Rejection::Framing(
            "Transfer-Encoding other than one `chunked`",
        )),
    }
}

/// The body limit of one request: checked against the declared length at once and against
/// the bytes that actually arrive as they stream (a chunked body declares nothing).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    max: u64,
    seen: u64,
}

impl BodyLimit {
    /// A limit of `max` bytes.
    pub fn new(max: u64) -> Self {
        BodyLimit { max, seen: 0 }
    }

    /// Checks a declared `Content-Length`.
    pub fn declared(&self, content_length: Option<u64>) -> Result<(), Rejection> {
        match content_length {
            Some(length) if length > self.max => Err(Rejection::BodyTooLarge),
            _ => Ok(()),
        }
    }

    /// Counts a chunk on its way upstream; over the limit, the request fails with 413
    /// (counted), answered by `fail_to_proxy` if no response has started.
    pub fn stream(
        &mut self,
        bytes: usize,
        metrics: &crate::metrics::Metrics,
    ) -> pingora::Result<()> {
        self.arrived(bytes).or_else(|rejection| {
            metrics.rejected(rejection.reason());
            let status = pingora::ErrorType::HTTPStatus(rejection.status());
            pingora::Error::e_explain(status, rejection.detail())
        })
    }

    /// Counts a chunk that arrived.
    pub fn arrived(&mut self, bytes: usize) -> Result<(), Rejection> {
        self.seen = self
            .seen
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
        if self.seen > self.max {
            Err(Rejection::BodyTooLarge)
        } else {
            Ok(())
        }
    }
}

/// The access-log line of a connection refused before any phase ran (no method, path or
/// route is known): Pingora's own error answers, heads cut by `header-timeout` (408, as
/// nginx logs a `client_header_timeout`; nothing is sent) and HTTP/2 floods (400, closed).
pub fn log_rejected(
    client: &str,
    proto: &'static str,
    status: u16,
    reason: &'static str,
    began: Option<Instant>,
) {
    let elapsed = began.map_or(Duration::ZERO, |b| b.elapsed());
    tracing::info!(
        target: crate::accesslog::TARGET,
        client,
        method = "-",
        path = "-",
        proto,
        status,
        route = crate::metrics::NO_ROUTE,
        duration_ms = %format_args!("{:.3}", elapsed.as_secs_f64() * 1000.0),
        attempts = 0,
        request_id = "-",
        error = reason,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(head: &str) -> Result<(), Rejection> {
        check_framing(head.as_bytes())
    }

    #[test]
    fn an_h2_head_is_measured_as_pingora_would_write_it() {
        let mut head =
            pingora::http::RequestHeader::build("GET", b"/courses/mit/physics?x=1", None).unwrap();
        head.set_version(http::Version::HTTP_2);
        head.insert_header("user-agent", "h2load nghttp2/1.52.0")
            .unwrap();
        head.insert_header("accept-encoding", "gzip, deflate, br, zstd")
            .unwrap();
        head.append_header("cookie", "a=1").unwrap();
        head.append_header("cookie", "b=2").unwrap();
        let wire = pingora::protocols::http::v1::client::http_req_header_to_wire(&head).unwrap();
        assert_eq!(h1_size(&head), wire.len());
    }

    #[test]
    fn one_chunked_coding_or_one_length_is_accepted() {
        assert_eq!(
            framing("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n"),
            Ok(())
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Ok(())
        );
        assert_eq!(framing("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for head in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: identity, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\nHost: a\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\n\n",
        ] {
            assert!(
                matches!(framing(head), Err(Rejection::Framing(_))),
                "{head:?}"
            );
        }
    }

    #[test]
    fn limits_answer_their_own_status() {
        let limits = Limits {
            max_header_bytes: 100,
            max_headers: 2,
            max_uri_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(check_head(None, 50, 2, 2, &limits), Ok(()));
        assert_eq!(
            check_head(None, 50, 11, 2, &limits).map_err(Rejection::status),
            Err(414)
        );
        assert_eq!(
            check_head(None, 101, 2, 2, &limits).map_err(Rejection::status),
            Err(431)
        );
        assert_eq!(
            check_head(None, 50, 2, 3, &limits).map_err(Rejection::status),
            Err(431)
        );
    }

    #[test]
    fn bodies_are_limited_declared_or_streamed() {
        let mut limit = BodyLimit::new(10);
        assert_eq!(limit.declared(Some(10)), Ok(()));
        assert_eq!(limit.declared(Some(11)), Err(Rejection::BodyTooLarge));
        assert_eq!(limit.arrived(6), Ok(()));
        assert_eq!(limit.arrived(5), Err(Rejection::BodyTooLarge));
    }
}
