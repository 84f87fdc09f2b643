//! Slow heads (slowloris) and the rejections Pingora makes on its own, on the HTTPS and the
//! plain-HTTP (redirect) listeners.
//!
//! Pingora 0.9 reads an HTTP/1.x head with a timeout per read (60 s), never for the whole
//! head, and has no hook before the head is complete: a client sending one byte a second
//! keeps its connection forever. [`Guard`] wraps the HTTPS service's application and gives
//! each HTTP/1.x connection a [`Guarded`] stream: from the first byte of a head to its
//! blank line at most `header-timeout` may pass, or reads fail and Pingora closes the
//! connection. Nothing is held meanwhile but the connection itself: admission slots are only
//! taken in `request_filter`, after the head is complete.
//!
//! The same stream sees what Pingora writes, so it also counts and logs the error answers
//! Pingora gives before any phase runs (a head httparse refuses, ambiguous `Content-Length`,
//! `CONNECT`): a 4xx head without `X-Request-Id`, which every answer of frontdoor's own has.
//!
//! HTTP/2 connections need no head deadline (their heads arrive whole in HEADERS frames); their
//! stream instead follows the frames and closes a connection that floods control frames
//! ([`super::h2flood`]).

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::h2flood::FrameBudget;
use crate::metrics::Metrics;

/// Reads the current `header-timeout` (it follows reloads).
pub type HeaderTimeout = Box<dyn Fn() -> Duration + Send + Sync>;

/// The HTTPS service's application with a head deadline on every HTTP/1.x connection.
pub struct Guard<A> {
    inner: Arc<A>,
    header_timeout: HeaderTimeout,
    metrics: Arc<Metrics>,
}

impl<A> Guard<A> {
    /// Wraps `inner`; `header_timeout` is asked once for each connection.
    pub fn new(inner: A, header_timeout: HeaderTimeout, metrics: Arc<Metrics>) -> Self {
        Guard {
            inner: Arc::new(inner),
            header_timeout,
            metrics,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guard<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let timeout = (self.header_timeout)();
        let mut guarded = Guarded::new(stream, timeout, self.metrics.clone());
        if matches!(guarded.inner.selected_alpn_proto(), Some(ALPN::H2)) {
            guarded.in_head = false;
            guarded.frames = Some(FrameBudget::default());
        }
        // HTTP/1.x keep-alive is looped inside: `None` comes back once the connection ends.
        self.inner.process_new(Box::new(guarded), shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// A downstream stream whose reads fail once an HTTP/1.x request head takes longer than its
/// timeout, or once an HTTP/2 client has spent its control-frame budget.
pub struct Guarded {
    inner: Stream,
    /// HTTP/2: the control-frame budget (HTTP/1.x: `None`).
    frames: Option<FrameBudget>,
    timeout: std::time::Duration,
    metrics: Arc<Metrics>,
    /// Between a final response and the next head's blank line.
    in_head: bool,
    /// When the current head's first byte arrived (the deadline runs from there).
    head_began: Option<Instant>,
    /// The last four bytes read in a head, to find its blank line across reads.
    tail: u32,
    /// The current request has its final response head written: later writes are body.
    answered: bool,
    sleep: Pin<Box<Sleep>>,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .field("in_head", &self.in_head)
            .finish()
    }
}

impl Guarded {
    /// Wraps a freshly accepted stream: its first head is awaited.
    pub fn new(inner: Stream, timeout: std::time::Duration, metrics: Arc<Metrics>) -> Self {
        Guarded {
            inner,
            frames: None,
            timeout,
            metrics,
            in_head: true,
            head_began: None,
            tail: 0,
            answered: false,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn client(&self) -> String {
        self.inner
            .get_socket_digest()
            .and_then(|d| d.peer_addr().map(|a| a.to_string()))
            .unwrap_or_else(|| "-".to_string())
    }

    /// Follows the bytes of a head: starts its clock, finds its end.
    fn saw(&mut self, bytes: &[u8]) {
        if !self.in_head || bytes.is_empty() {
            return;
        }
        if self.head_began.is_none() {
            let now = Instant::now();
            self.head_began = Some(now);
            self.sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(now + self.timeout));
        }
        for (i, &b) in bytes.iter().enumerate() {
            self.tail = (self.tail << 8) | u32::from(b);
            if self.tail == u32::from_be_bytes(*b"\r\n\r\n") || self.tail & 0xffff == 0x0a0a {
                self.in_head = false;
                self.head_began = None;
                self.answered = false;
                // What follows in this read is a body or the start of a pipelined next head,
                // whose blank line may straddle this read and the next: keep its last bytes.
                self.tail = bytes[i + 1..]
                    .iter()
                    .fold(0, |tail, &b| (tail << 8) | u32::from(b));
                return;
            }
        }
    }

    /// Follows what is written: a final response ends the exchange (the next bytes read are
    /// a new head), and an error answer without `X-Request-Id` is one Pingora gave itself.
    fn wrote(&mut self, bytes: &[u8]) {
        if self.answered {
            return;
        }
        let Some(status) = response_status(bytes) else {
            return;
        };
        if status == 101 {
            // Switched protocols: what follows either way is the new protocol's, never a head
            // (a WebSocket message could start with `HTTP/1.1 200`).
            self.answered = true;
            self.in_head = false;
            return;
        }
        if status < 200 {
            return;
        }
        if status >= 400 && !has_request_id(bytes) {
            self.metrics.rejected("malformed");
            super::log_rejected(&self.client(), "http/1.1", status, "malformed", None);
        }
        self.answered = true;
        self.in_head = true;
        self.head_began = None;
    }
}

/// The status of a response head at the start of `bytes`.
fn response_status(bytes: &[u8]) -> Option<u16> {
    let rest = bytes
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| bytes.strip_prefix(b"HTTP/1.0 "))?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

fn has_request_id(bytes: &[u8]) -> bool {
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    bytes[..head_end]
        .windows(15)
        .any(|w| w.eq_ignore_ascii_case(b"\nx-request-id: "))
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.in_head && this.head_began.is_some() && this.sleep.as_mut().poll(cx).is_ready() {
            this.metrics.rejected("header_timeout");
            super::log_rejected(
                &this.client(),
                "http/1.1",
                408,
                "header_timeout",
                this.head_began,
            );
            this.head_began = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not complete within header-timeout",
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(frames)) = (&polled, this.frames.as_mut()) {
            if !frames.feed(&buf.filled()[before..], Instant::now()) {
                this.metrics.rejected("h2_flood");
                super::log_rejected(&this.client(), "h2", 400, "h2_flood", None);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "HTTP/2 control-frame flood",
                )));
            }
            return polled;
        }
        if let Poll::Ready(Ok(())) = polled {
            this.saw(&buf.filled()[before..]);
            if this.in_head && this.head_began.is_some() {
                // Registers the deadline's waker for the next read of this head.
                if this.sleep.as_mut().poll(cx).is_ready() {
                    cx.waker().wake_by_ref();
                }
            }
        }
        polled
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.wrote(&buf[..n]);
        }
        polled
    }

    /// Passed through whole: the TLS stream below writes all the slices as one batch of
    /// records in one `sendmsg`. Without it, h2 and Pingora's HTTP/1 writer fall back to one
    /// `poll_write` per slice — the frame heads, then each payload — and every one became its
    /// own TLS record and system call (three per small h2 answer instead of one).
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            // A head is always at the start of a write: the first slice with bytes in it.
            if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
                this.wrote(&first[..n.min(first.len())]);
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> std::time::Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> std::time::Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait]
impl Peek for Guarded {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingora_error_answers_are_told_from_frontdoor_ones() {
        let pingora = b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(response_status(pingora), Some(400));
        assert!(!has_request_id(pingora));
        let ours = b"HTTP/1.1 431 Request Header Fields Too Large\r\nX-Request-Id: ab\r\n\r\n";
        assert_eq!(response_status(ours), Some(431));
        assert!(has_request_id(ours));
        assert_eq!(response_status(b"{\"json\": 1}"), None);
    }

    /// h2 and Pingora's HTTP/1 writer hand the TLS stream frame heads and payloads as slices
    /// of one vectored write; the guard must pass them on together (one batch of TLS records,
    /// one system call), not one slice per call.
    #[tokio::test]
    async fn a_vectored_write_passes_every_slice_in_one_call() {
        use tokio::io::AsyncWriteExt;
        let inner = std::io::Cursor::new(Vec::new());
        let metrics = Arc::new(Metrics::new().unwrap());
        let mut guarded = Guarded::new(Box::new(inner), Duration::from_secs(1), metrics);
        assert!(guarded.is_write_vectored());
        let head = b"HTTP/1.1 200 OK\r\nX-Request-Id: ab\r\nContent-Length: 10\r\n\r\n";
        let slices = [
            io::IoSlice::new(b""),
            io::IoSlice::new(head),
            io::IoSlice::new(b"0123456789"),
        ];
        let n = guarded.write_vectored(&slices).await.unwrap();
        assert_eq!(n, head.len() + 10, "one call writes every slice");
        assert!(
            guarded.answered,
            "the head at the start of the write was seen"
        );
        assert!(guarded.in_head);
    }

    #[tokio::test]
    async fn a_pipelined_head_whose_blank_line_straddles_two_reads_ends() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let metrics = Arc::new(Metrics::new().unwrap());
        let mut guarded = Guarded::new(Box::new(ours), Duration::from_secs(1), metrics);
        // One read: a whole head, then a pipelined one but for its last byte.
        guarded.saw(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r");
        assert!(!guarded.in_head);
        guarded.wrote(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(guarded.in_head);
        guarded.saw(b"\n");
        assert!(!guarded.in_head, "the second head is complete");
        assert!(guarded.head_began.is_none());
    }
}
