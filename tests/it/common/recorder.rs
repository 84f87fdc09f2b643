//! An app that records exactly the bytes it receives: a plain TCP server reading one request
//! per connection (head, then a `Content-Length` or chunked body) and answering `200` with
//! `Connection: close`. No HTTP library, so nothing is normalised before the test sees it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The running recorder; stops when dropped.
pub struct RecordingOrigin {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordingOrigin {
    pub async fn start() -> RecordingOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve_one(socket, sink.clone()));
            }
        });
        RecordingOrigin {
            addr,
            received,
            task,
        }
    }

    /// Every byte received so far, all connections, in arrival order of reads.
    pub fn bytes(&self) -> Vec<u8> {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The bytes received as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// The request lines received (`METHOD target HTTP/1.1`), in order.
    pub fn request_lines(&self) -> Vec<String> {
        self.text()
            .split("\r\n")
            .filter(|l| {
                ["GET ", "POST ", "HEAD ", "PUT "]
                    .iter()
                    .any(|m| l.starts_with(m))
                    && l.ends_with(" HTTP/1.1")
            })
            .map(str::to_string)
            .collect()
    }
}

impl Drop for RecordingOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one(mut socket: tokio::net::TcpStream, sink: Arc<Mutex<Vec<u8>>>) {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return record(&sink, &seen),
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &seen[head_end..];
        let complete = match (chunked, length) {
            (true, _) => body.starts_with(b"0\r\n\r\n") || body.ends_with(b"\r\n0\r\n\r\n"),
            (false, Some(length)) => body.len() >= length,
            (false, None) => true,
        };
        if complete {
            break;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return record(&sink, &seen),
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
    record(&sink, &seen);
    let _ = socket
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nrecorded")
        .await;
    let _ = socket.shutdown().await;
}

fn record(sink: &Mutex<Vec<u8>>, bytes: &[u8]) {
    sink.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend_from_slice(bytes);
}
