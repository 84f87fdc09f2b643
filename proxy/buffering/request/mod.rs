//! Request buffering: the body is received in full before the request takes an admission
//! slot, so a client uploading at mobile speed holds a frontdoor task, never an app worker
//! (nginx's `proxy_request_buffering on`, HAProxy's `option http-buffer-request`).
//!
//! A body is kept in memory up to `request-buffer-size`, and all bodies together up to
//! `request-buffer-memory`; past either it spills to an unnamed temporary file in
//! `request-buffer-dir` (deleted by the kernel when closed, so nothing is left after a
//! crash), up to the route's `max-body`. Each read waits at most `body-timeout`; a body that
//! stalls is answered `408` without ever having held a slot. Once admitted, the body goes to
//! the app at once with a `Content-Length` (never chunked) through Pingora's proxy loop, which
//! reads it back as a [`BodyReplay`] (a patch of the vendored `pingora-core`).
//!
//! `Expect: 100-continue` is answered here, on both protocols, when frontdoor is about to
//! read the body; a body refused by its declared length gets the final status (`413`)
//! instead. Routes with `request-buffering = false` stream the body to the app while it is
//! uploaded, holding the slot throughout; `Expect` then goes to the app.

mod body;

pub use body::BufferedBody;

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::protocols::http::server::BodyReplay;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::hostile::BodyLimit;
use crate::metrics::Metrics;

/// `[proxy]` request buffering settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Bytes of one body kept in memory; a larger body spills to a temporary file.
    pub memory_per_body: u64,
    /// Bytes of all buffered bodies in memory together; past it, bodies spill too.
    pub memory_total: u64,
    /// Where spilled bodies' temporary files are made.
    pub dir: PathBuf,
}

impl Default for Settings {
    /// 1 MiB holds any form or JSON body a Rails app takes, so only file uploads touch the
    /// disk (nginx keeps 16 KiB and writes the rest); 64 MiB bounds the memory of 64 such
    /// bodies at once. The system's temporary directory (`TMPDIR`) takes the spills.
    fn default() -> Self {
        Settings {
            memory_per_body: 1024 * 1024,
            memory_total: 64 * 1024 * 1024,
            dir: std::env::temp_dir(),
        }
    }
}

/// The bytes every buffered request body holds, in memory and on disk; one for the process,
/// kept across reloads (a reload changes the bounds, never what is held).
pub struct RequestBuffers {
    memory: AtomicU64,
    metrics: Arc<Metrics>,
}

impl RequestBuffers {
    /// Nothing held yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        RequestBuffers {
            memory: AtomicU64::new(0),
            metrics,
        }
    }

    /// Bytes of request bodies held in memory now.
    pub fn memory_held(&self) -> u64 {
        self.memory.load(Ordering::Acquire)
    }

    /// Takes `bytes` of memory if all bodies together stay within `limit`.
    fn take_memory(&self, bytes: u64, limit: u64) -> bool {
        let taken = self
            .memory
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok();
        if taken {
            self.metrics.request_buffer_memory(to_i64(bytes));
        }
        taken
    }

    /// Gives back `bytes` taken by [`Self::take_memory`].
    fn give_memory(&self, bytes: u64) {
        self.memory.fetch_sub(bytes, Ordering::AcqRel);
        self.metrics.request_buffer_memory(-to_i64(bytes));
    }
}

fn to_i64(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// What came of receiving a body.
pub enum Received {
    /// The whole body.
    Body(BufferedBody),
    /// A read waited longer than `body-timeout` (408).
    TimedOut,
    /// More than the route's `max-body` arrived (413).
    TooLarge,
}

/// One read of the request body.
pub enum Piece {
    /// Bytes of the body (never empty).
    Data(Bytes),
    /// The body has ended.
    End,
    /// Nothing arrived within the timeout.
    TimedOut,
}

/// Reads the next piece of the request body, waiting at most `timeout` (Pingora times HTTP/1
/// reads itself but not HTTP/2 ones). Read errors are the client's (downstream).
pub async fn next_piece(session: &mut Session, timeout: Duration) -> Result<Piece> {
    loop {
        return match tokio::time::timeout(timeout, session.read_request_body()).await {
            Err(_elapsed) => Ok(Piece::TimedOut),
            Ok(Err(e)) if e.etype() == &ErrorType::ReadTimedout => Ok(Piece::TimedOut),
            Ok(Err(e)) => Err(e.into_down()),
            // An HTTP/2 DATA frame may be empty (the END_STREAM of an upload without length).
            Ok(Ok(Some(data))) if data.is_empty() => continue,
            Ok(Ok(Some(data))) => Ok(Piece::Data(data)),
            Ok(Ok(None)) => Ok(Piece::End),
        };
    }
}

/// Whether the client waits for `100 Continue` before it sends the body (RFC 9110 §10.1.1;
/// an HTTP/1.0 client's `Expect` is ignored).
pub fn expects_continue(head: &RequestHeader) -> bool {
    head.version >= http::Version::HTTP_11
        && head
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Sends `100 Continue` if the client waits for it and its body has not arrived in full.
pub async fn send_continue(session: &mut Session) -> Result<()> {
    if !expects_continue(session.req_header()) || session.is_body_done() {
        return Ok(());
    }
    // Pingora drops keep-alive when any response head, 1xx included, is written before the
    // body is read; a 100 precedes the body by definition.
    session.set_close_on_response_before_downstream_finish(false);
    let sent = session.write_continue_response().await;
    session.set_close_on_response_before_downstream_finish(true);
    sent
}

/// Whether a request to a route buffering bodies has one to buffer: not an upgrade (whose
/// "body" is the upgraded stream) and not an empty body.
pub fn has_body(session: &mut Session) -> bool {
    !session.is_upgrade_req() && !session.is_body_empty()
}

/// Receives the request body in full, answering `100 Continue` first if the client waits
/// for it. `limit` is the route's `max-body`, already checked against a declared length.
pub async fn receive(
    session: &mut Session,
    mut limit: BodyLimit,
    settings: &Settings,
    buffers: &Arc<RequestBuffers>,
    timeout: Duration,
) -> Result<Received> {
    send_continue(session).await?;
    let mut body = BufferedBody::new(buffers.clone());
    loop {
        match next_piece(session, timeout).await? {
            Piece::Data(data) => {
                if limit.arrived(data.len()).is_err() {
                    return Ok(Received::TooLarge);
                }
                body.push(data, settings).await.map_err(|e| {
                    Error::because(ErrorType::FileWriteError, "buffering a request body", e)
                })?;
            }
            Piece::End => break,
            Piece::TimedOut => return Ok(Received::TimedOut),
        }
    }
    body.finish()
        .await
        .map_err(|e| Error::because(ErrorType::FileWriteError, "buffering a request body", e))?;
    buffers.metrics.request_body_buffered(body.storage());
    Ok(Received::Body(body))
}

/// The upstream request of a buffered body: framed by its length, and no `Expect` (the body
/// is all here, and the app's own `100` would reach a client that already had one).
pub fn frame_upstream(upstream: &mut RequestHeader, length: u64) -> Result<()> {
    upstream.remove_header(&http::header::TRANSFER_ENCODING);
    upstream.remove_header(&http::header::EXPECT);
    upstream.insert_header(http::header::CONTENT_LENGTH, length.to_string())
}

/// Hands `body` to Pingora as the request body it sends upstream.
pub fn replay(session: &mut Session, body: BufferedBody) -> Result<()> {
    let replay: Box<dyn BodyReplay> = body.into_replay();
    if session.downstream_session.set_body_replay(replay) {
        Ok(())
    } else {
        Error::e_explain(
            ErrorType::InternalError,
            "this session cannot replay a buffered body",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(version: http::Version, expect: Option<&str>) -> RequestHeader {
        let mut head = RequestHeader::build("POST", b"/upload", None).unwrap();
        head.set_version(version);
        if let Some(expect) = expect {
            head.insert_header("expect", expect).unwrap();
        }
        head
    }

    #[test]
    fn only_an_http11_or_h2_client_that_says_so_waits_for_100() {
        use http::Version;
        assert!(expects_continue(&head(
            Version::HTTP_11,
            Some("100-continue")
        )));
        assert!(expects_continue(&head(
            Version::HTTP_11,
            Some("100-Continue")
        )));
        assert!(expects_continue(&head(
            Version::HTTP_2,
            Some("100-continue")
        )));
        assert!(!expects_continue(&head(
            Version::HTTP_10,
            Some("100-continue")
        )));
        assert!(!expects_continue(&head(
            Version::HTTP_11,
            Some("something")
        )));
        assert!(!expects_continue(&head(Version::HTTP_11, None)));
    }

    #[test]
    fn memory_is_taken_within_the_total_and_given_back() {
        let buffers = RequestBuffers::new(Arc::new(Metrics::new().unwrap()));
        assert!(buffers.take_memory(60, 100));
        assert!(!buffers.take_memory(41, 100), "over the total");
        assert!(buffers.take_memory(40, 100));
        assert_eq!(buffers.memory_held(), 100);
        buffers.give_memory(100);
        assert_eq!(buffers.memory_held(), 0);
        assert!(
            !buffers.take_memory(1, 0),
            "a total of 0 keeps nothing in memory"
        );
    }

    #[test]
    fn the_upstream_request_is_framed_by_length_without_expect() {
        let mut upstream = head(http::Version::HTTP_11, Some("100-continue"));
        upstream
            .insert_header("transfer-encoding", "chunked")
            .unwrap();
        frame_upstream(&mut upstream, 2048).unwrap();
        assert_eq!(upstream.headers["content-length"], "2048");
        assert!(upstream.headers.get("transfer-encoding").is_none());
        assert!(upstream.headers.get("expect").is_none());
    }
}
