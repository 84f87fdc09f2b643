//! An app that streams: large answers of a known pattern, written as fast as the connection
//! takes them, and a server-sent event stream whose events the test writes. Real HTTP/1.1
//! (hyper) on a loopback port, like Passenger.
//!
//! - any path with `/big/N` in it: `N` bytes of [`pattern`], `application/octet-stream`, with a
//!   `Content-Length`, in 64 KiB writes;
//! - `/events`: `text/event-stream` without a length, one write per event the test sends
//!   through [`StreamingOrigin::events`]; it ends when the test drops the sender;
//! - anything else: `ok`.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// The byte at `offset` of every large answer: a period (251) no write size divides, so a
/// byte lost, doubled or moved shows.
pub fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// Whether `body` is the first `body.len()` bytes of the pattern.
pub fn is_pattern(body: &[u8]) -> bool {
    body.iter()
        .enumerate()
        .all(|(i, &b)| b == pattern(i as u64))
}

struct State {
    /// Large answers whose last byte the app has written.
    finished: AtomicU64,
    /// Requests that reached the app.
    hits: AtomicU64,
    /// The events of the next `/events` request.
    events: Mutex<Option<mpsc::UnboundedReceiver<Bytes>>>,
}

/// The running origin; stops when dropped.
pub struct StreamingOrigin {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

const WRITE: u64 = 64 << 10;

/// A large answer, produced a write at a time as hyper asks for it.
struct Pattern {
    offset: u64,
    len: u64,
    state: Arc<State>,
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.offset == self.len {
            return Poll::Ready(None);
        }
        let end = (self.offset + WRITE).min(self.len);
        let chunk: Vec<u8> = (self.offset..end).map(pattern).collect();
        self.offset = end;
        if end == self.len {
            self.state.finished.fetch_add(1, Ordering::SeqCst);
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.offset == self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.offset)
    }
}

/// Server-sent events, written as the test sends them.
struct Events(mpsc::UnboundedReceiver<Bytes>);

impl Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|event| event.map(|e| Ok(Frame::data(e))))
    }
}

impl StreamingOrigin {
    pub async fn start() -> StreamingOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind origin");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            finished: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            events: Mutex::new(None),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request: http::Request<_>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, request.uri().path())) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        StreamingOrigin { addr, state, task }
    }

    /// The sender of the events the next `/events` request streams.
    pub fn events(&self) -> mpsc::UnboundedSender<Bytes> {
        let (sender, receiver) = mpsc::unbounded_channel();
        *self.state.events.lock().expect("events") = Some(receiver);
        sender
    }

    /// Large answers whose last byte the app has written.
    pub fn finished(&self) -> u64 {
        self.state.finished.load(Ordering::SeqCst)
    }

    /// Requests that reached the app.
    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::SeqCst)
    }
}

fn answer(state: &Arc<State>, path: &str) -> http::Response<BoxBody<Bytes, Infallible>> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let big = path
        .split_once("/big/")
        .and_then(|(_, n)| n.parse::<u64>().ok());
    let response = http::Response::builder().status(200);
    if let Some(len) = big {
        let body = Pattern {
            offset: 0,
            len,
            state: state.clone(),
        };
        return response
            .header("content-type", "application/octet-stream")
            .body(body.boxed())
            .expect("response");
    }
    if path == "/events" {
        if let Some(events) = state.events.lock().expect("events").take() {
            return response
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(Events(events).boxed())
                .expect("response");
        }
    }
    response
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(b"ok\n")).boxed())
        .expect("response")
}

impl Drop for StreamingOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
