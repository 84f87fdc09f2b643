//! An app that speaks plain HTTP/1.1 on a TCP port the way the tests need to control it: keeps
//! connections alive and says which connection served a request; on a path ending in `/drop` (and on any path
//! it was told to [`RawOrigin::drop_from_now`]) it closes the connection without answering (a
//! worker killed on one request); a path ending in `/slow` is answered after 300 ms, one with
//! `/cached/` in its path with `Cache-Control: max-age=1`; and it accepts WebSocket
//! upgrades (`Upgrade: websocket`) and echoes every message, as ActionCable's loop would (on
//! `/ticks` it also sends `tick` every 300 ms, as ActionCable pings; on `/split` it first sends
//! a message that reads like an HTTP response head).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

#[derive(Default)]
struct State {
    connections: AtomicU64,
    hits: Mutex<HashMap<String, u64>>,
    /// WebSocket connections open now.
    sockets: AtomicU64,
    /// Paths whose requests are dropped from now on.
    drops: Mutex<HashSet<String>>,
}

/// The running app; stops accepting when dropped.
pub struct RawOrigin {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl RawOrigin {
    pub async fn start() -> RawOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind origin");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let id = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(serve(stream, id, shared.clone()));
            }
        });
        RawOrigin { addr, state, task }
    }

    /// Requests for `path` that reached the app.
    pub fn hits(&self, path: &str) -> u64 {
        let hits = self.state.hits.lock().expect("hits");
        hits.get(path).copied().unwrap_or(0)
    }

    /// Requests for `path` are dropped (the connection closed unanswered) from now on.
    pub fn drop_from_now(&self, path: &str) {
        self.state
            .drops
            .lock()
            .expect("drops")
            .insert(path.to_string());
    }

    /// Connections the app accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// WebSocket connections open now.
    pub fn sockets(&self) -> u64 {
        self.state.sockets.load(Ordering::SeqCst)
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request head: its path and fields (names lowercase).
struct Head {
    path: String,
    fields: HashMap<String, String>,
}

/// Reads one head; `None` when the peer closed (or sent garbage).
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Head> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end + 4);
            let mut lines = text.split("\r\n");
            let path = lines.next()?.split(' ').nth(1)?.to_string();
            let fields = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            return Some(Head { path, fields });
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn serve(mut stream: TcpStream, id: u64, state: Arc<State>) {
    let mut buffer = Vec::new();
    while let Some(head) = read_head(&mut stream, &mut buffer).await {
        *state
            .hits
            .lock()
            .expect("hits")
            .entry(head.path.clone())
            .or_insert(0) += 1;
        let length: usize = head
            .fields
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        buffer.drain(..length);
        if head.path.ends_with("/drop") || state.drops.lock().expect("drops").contains(&head.path) {
            return;
        }
        if head
            .fields
            .get("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        {
            let key = head
                .fields
                .get("sec-websocket-key")
                .cloned()
                .unwrap_or_default();
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            if head.path == "/split" {
                // First a message that reads like a response head, its frame header and its
                // payload in two writes (so the proxy relays the payload in a write of its own).
                let payload = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                let header = [0x81, payload.len() as u8];
                if stream.write_all(&header).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stream.write_all(payload).await.is_err() {
                    return;
                }
            }
            state.sockets.fetch_add(1, Ordering::SeqCst);
            let mut socket = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
            // `/ticks` also pushes a message every 300 ms, as ActionCable pings every 3 s.
            let mut ticks = tokio::time::interval(Duration::from_millis(300));
            let ticking = head.path == "/ticks";
            loop {
                tokio::select! {
                    message = socket.next() => {
                        let Some(Ok(message)) = message else { break };
                        if message.is_text() || message.is_binary() {
                            if socket.send(message).await.is_err() {
                                break;
                            }
                        } else if message.is_close() {
                            break;
                        }
                    }
                    _ = ticks.tick(), if ticking => {
                        if socket.send("tick".into()).await.is_err() {
                            break;
                        }
                    }
                }
            }
            state.sockets.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        if head.path.ends_with("/slow") {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let body = "ok";
        let cache = if head.path.contains("/cached/") {
            "Cache-Control: max-age=1\r\n"
        } else {
            ""
        };
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{cache}X-Connection: {id}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}
