//! The two transfer routes, for the slow-client benchmark (`benches/slow_clients.sh`): an
//! upload the app reads while it holds a worker, and a large answer the app writes while it
//! holds one. A Rails worker behind a proxy that streams is busy for as long as its client
//! is slow; these routes make that visible in `/_sim/stats`.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::pool::{Held, RequestStart, Workers};
use super::{json, server_timing_header, text, Reply};

/// The largest `/downloads/{bytes}` answer: the benchmark wants megabytes, not the disk.
pub(super) const MAX_DOWNLOAD: u64 = 1 << 30;

/// What a download is written in: a fixed block of bytes, sliced (no copy per answer).
static BLOCK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// `POST`/`PUT /uploads`: takes a worker first, then reads the body to the end (counted,
/// not kept), then holds the worker for `service_time`; answers `{"received": <bytes>}`.
pub(super) async fn upload(
    workers: &Workers,
    start: RequestStart,
    service_time: Duration,
    request: Request<Incoming>,
) -> Reply {
    let (_held, queue_time) = match workers.hold(start).await {
        Ok(held) => held,
        Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n")),
    };
    let mut body = request.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => received += frame.data_ref().map_or(0, |d| d.len() as u64),
            Err(e) => return text(StatusCode::BAD_REQUEST, &format!("unreadable body: {e}\n")),
        }
    }
    tokio::time::sleep(service_time).await;
    let mut reply = json(serde_json::json!({ "received": received }).to_string());
    server_timing_header(&mut reply, queue_time);
    reply
}

/// `GET /downloads/{bytes}`: takes a worker, holds it for `service_time`, then answers
/// `bytes` bytes of `x` and keeps the worker until the last of them is handed to the
/// connection (or the client goes away).
pub(super) async fn download(
    workers: &Workers,
    start: RequestStart,
    service_time: Duration,
    bytes: u64,
) -> Reply {
    let (held, queue_time) = match workers.hold(start).await {
        Ok(held) => held,
        Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n")),
    };
    tokio::time::sleep(service_time).await;
    let mut reply = Response::new(Either::Right(Download {
        remaining: bytes,
        held: Some(held),
    }));
    let headers = reply.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes));
    server_timing_header(&mut reply, queue_time);
    reply
}

/// The body of a download: `remaining` bytes, holding the worker until they are all out.
#[derive(Debug)]
pub(super) struct Download {
    remaining: u64,
    held: Option<Held>,
}

impl Body for Download {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            self.held = None;
            return Poll::Ready(None);
        }
        let n = self.remaining.min(BLOCK.len() as u64);
        self.remaining -= n;
        if self.remaining == 0 {
            // The last block is with the connection now: the worker is done.
            self.held = None;
        }
        // `n` is at most the block's length, so it fits a usize.
        let n = usize::try_from(n).unwrap_or(BLOCK.len());
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&BLOCK[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Route, Simulator, SimulatorOptions};
    use http::Method;
    use std::net::SocketAddr;
    use std::num::NonZeroUsize;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[test]
    fn transfer_routes_take_their_methods_and_a_bounded_size() {
        assert_eq!(Route::of(&Method::POST, "/uploads"), Route::Upload);
        assert_eq!(Route::of(&Method::PUT, "/uploads/"), Route::Upload);
        assert_eq!(Route::of(&Method::GET, "/uploads"), Route::NotFound);
        assert_eq!(
            Route::of(&Method::GET, "/downloads/4194304"),
            Route::Download { bytes: 4_194_304 }
        );
        let too_big = format!("/downloads/{}", super::MAX_DOWNLOAD + 1);
        for path in [
            "/downloads/",
            "/downloads/4k",
            "/downloads/-1",
            too_big.as_str(),
        ] {
            assert_eq!(Route::of(&Method::GET, path), Route::NotFound, "{path}");
        }
        assert_eq!(
            Route::of(&Method::POST, "/downloads/10"),
            Route::NotFound,
            "a download is read"
        );
    }

    /// A one-worker simulator on an ephemeral port; it stops with the test's runtime.
    async fn one_worker() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sim = Arc::new(Simulator::new(SimulatorOptions {
            workers: NonZeroUsize::MIN,
            service_time: Duration::ZERO,
            manual_update_time: Duration::ZERO,
        }));
        tokio::spawn(sim.serve(listener, std::future::pending()));
        addr
    }

    /// `/_sim/stats`'s `in_flight`, over a fresh connection (the answer ends with the close).
    async fn in_flight(addr: SocketAddr) -> u64 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = "GET /_sim/stats HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let body = &raw[raw.find("\r\n\r\n").unwrap() + 4..];
        let stats: serde_json::Value = serde_json::from_str(body).unwrap();
        stats["in_flight"].as_u64().unwrap()
    }

    /// Polls `in_flight` until it is `wanted`, for at most 5 s; returns the last value.
    async fn settle(addr: SocketAddr, wanted: u64) -> u64 {
        let mut now = in_flight(addr).await;
        for _ in 0..100 {
            if now == wanted {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            now = in_flight(addr).await;
        }
        now
    }

    #[tokio::test]
    async fn an_upload_holds_its_worker_while_the_body_arrives() {
        let addr = one_worker().await;
        let mut upload = TcpStream::connect(addr).await.unwrap();
        let head = "POST /uploads HTTP/1.1\r\nHost: sim\r\nContent-Length: 10\r\n\r\n";
        upload.write_all(head.as_bytes()).await.unwrap();
        upload.write_all(b"12345").await.unwrap();
        assert_eq!(
            settle(addr, 1).await,
            1,
            "the worker is taken before the body ends"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(in_flight(addr).await, 1, "and held while it is incomplete");

        upload.write_all(b"67890").await.unwrap();
        let mut answer = vec![0u8; 4096];
        let mut got = 0;
        while !String::from_utf8_lossy(&answer[..got]).contains("}") {
            let n = upload.read(&mut answer[got..]).await.unwrap();
            assert!(n > 0, "closed before the answer");
            got += n;
        }
        let answer = String::from_utf8_lossy(&answer[..got]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("server-timing: queue;dur="), "{answer}");
        assert!(answer.ends_with(r#"{"received":10}"#), "{answer}");
        assert_eq!(
            settle(addr, 0).await,
            0,
            "the worker is free after the answer"
        );
    }

    #[tokio::test]
    async fn a_download_holds_its_worker_until_its_last_byte_is_written() {
        // Far more than loopback's socket buffers can hold: the app must wait for the reader.
        const SIZE: usize = 48 << 20;
        let addr = one_worker().await;
        let mut download = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET /downloads/{SIZE} HTTP/1.1\r\nHost: sim\r\n\r\n");
        download.write_all(request.as_bytes()).await.unwrap();
        let mut first = vec![0u8; 1024];
        let n = download.read(&mut first).await.unwrap();
        let head = String::from_utf8_lossy(&first[..n]).into_owned();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains(&format!("content-length: {SIZE}")), "{head}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            in_flight(addr).await,
            1,
            "held while the client does not read"
        );

        let body_start = head.find("\r\n\r\n").unwrap() + 4;
        let mut received = n - body_start;
        let mut buf = vec![0u8; 1 << 20];
        while received < SIZE {
            let n = download.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed mid-body after {received} bytes");
            assert!(buf[..n].iter().all(|&b| b == b'x'));
            received += n;
        }
        assert_eq!(received, SIZE);
        assert_eq!(settle(addr, 0).await, 0, "free once the body is out");
    }
}
