//! An app that reads HTTP/1.1 strictly, as a Rack server on a keep-alive connection does:
//! request after request, each body by its `Content-Length` or by strict chunked framing (hex
//! sizes, no extensions, no trailers). Whatever cannot start the next request is stray: it is
//! counted and the connection closed. It records when each head arrived.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request as the app read it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Field names lowercase, in order.
    pub fields: Vec<(String, String)>,
    /// When the head was complete.
    pub head_at: Instant,
    pub body: Vec<u8>,
    pub chunked: bool,
    /// Which upstream connection (0, 1, ... in accept order) carried it.
    pub connection: usize,
}

impl Seen {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    heads: Vec<(String, Instant)>,
    stray: Vec<u8>,
    connections: usize,
}

/// The running app; stops when dropped.
pub struct StrictApp {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl StrictApp {
    pub async fn start() -> StrictApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind app");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let connection = {
                    let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
                    state.connections += 1;
                    state.connections - 1
                };
                tokio::spawn(serve(socket, connection, shared.clone()));
            }
        });
        StrictApp { addr, state, task }
    }

    fn with<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Requests read in full, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.with(|s| s.seen.clone())
    }

    /// The complete request to `path`, if one arrived.
    pub fn request(&self, path: &str) -> Option<Seen> {
        self.with(|s| s.seen.iter().find(|r| r.path == path).cloned())
    }

    /// When the head of a request to `path` arrived (its body may still be coming).
    pub fn head_at(&self, path: &str) -> Option<Instant> {
        self.with(|s| s.heads.iter().find(|(p, _)| p == path).map(|(_, at)| *at))
    }

    /// Bytes that could not start a request.
    pub fn stray(&self) -> Vec<u8> {
        self.with(|s| s.stray.clone())
    }
}

impl Drop for StrictApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The bytes read from one connection, read more as needed.
struct Conn {
    socket: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads more; false at the end of the connection.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.socket.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next `\r\n`-terminated line, without it.
    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..end].to_vec();
                self.buf.drain(..end + 2);
                return Some(line);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Exactly `n` bytes.
    async fn exactly(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }
}

fn valid_request_line(line: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = parts.next().is_none()
        && !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && target.starts_with('/')
        && version == "HTTP/1.1";
    valid.then(|| {
        let path = target.split('?').next().unwrap_or(target).to_string();
        (method.to_string(), path)
    })
}

async fn serve(socket: TcpStream, connection: usize, state: Arc<Mutex<State>>) {
    let mut conn = Conn {
        socket,
        buf: Vec::new(),
    };
    let stray = |state: &Mutex<State>, bytes: &[u8]| {
        state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stray
            .extend_from_slice(bytes);
    };
    loop {
        if conn.buf.is_empty() && !conn.fill().await {
            return;
        }
        let Some(line) = conn.line().await else {
            return stray(&state, &conn.buf);
        };
        let Some((method, path)) = valid_request_line(&line) else {
            let mut bytes = line;
            bytes.extend_from_slice(b"\r\n");
            bytes.extend_from_slice(&conn.buf);
            return stray(&state, &bytes);
        };
        let mut fields = Vec::new();
        loop {
            let Some(line) = conn.line().await else {
                return;
            };
            if line.is_empty() {
                break;
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            let Some((name, value)) = text.split_once(':') else {
                return stray(&state, &line);
            };
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let head_at = Instant::now();
        state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .heads
            .push((path.clone(), head_at));
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let chunked = field("transfer-encoding").is_some_and(|te| te == "chunked");
        let body = if chunked {
            match read_chunked(&mut conn).await {
                Some(body) => body,
                None => return,
            }
        } else {
            let length = field("content-length").map_or(0, |v| v.parse().unwrap_or(0));
            match conn.exactly(length).await {
                Some(body) => body,
                None => return,
            }
        };
        let answer = format!("received {} bytes", body.len());
        state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seen
            .push(Seen {
                method,
                path,
                fields,
                head_at,
                body,
                chunked,
                connection,
            });
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if conn.socket.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A chunked body, strictly: `None` (and the connection dropped) on any deviation.
async fn read_chunked(conn: &mut Conn) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size_line = conn.line().await?;
        let size = std::str::from_utf8(&size_line)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|s| usize::from_str_radix(s, 16).ok())?;
        if size == 0 {
            // No trailers: the blank line ends the body.
            return conn.line().await?.is_empty().then_some(body);
        }
        body.extend(conn.exactly(size).await?);
        if !conn.line().await?.is_empty() {
            return None;
        }
    }
}
