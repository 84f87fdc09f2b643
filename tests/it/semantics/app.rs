//! A scripted app for the conformance table: raw HTTP/1.1 with keep-alive over TCP, so that a
//! case can send interim responses and exactly the fields it wants. Each case answers the
//! paths under its own prefix; every request is recorded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request as the app saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the app answers.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// Interim responses sent first, each `"103 Early Hints\r\nLink: ..."`.
    pub interim: Vec<String>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub fn new(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        Reply {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            ..Reply::default()
        }
    }
}

/// A script: the request and how many requests its prefix had before it.
pub type Script = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

#[derive(Default)]
struct State {
    scripts: Vec<(String, Script)>,
    seen: Vec<Seen>,
}

pub struct App {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl App {
    pub async fn start() -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, shared.clone()));
            }
        });
        App { addr, state, task }
    }

    /// Answers paths starting with `prefix` with `script`.
    pub fn script(
        &self,
        prefix: &str,
        script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) {
        self.state
            .lock()
            .expect("state")
            .scripts
            .push((prefix.to_string(), Arc::new(script)));
    }

    /// Requests that reached the app under `prefix`.
    pub fn seen(&self, prefix: &str) -> Vec<Seen> {
        self.state
            .lock()
            .expect("state")
            .seen
            .iter()
            .filter(|s| s.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

async fn serve(mut socket: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or("").split(' ');
        let method = request_line.next().unwrap_or("").to_string();
        let target = request_line.next().unwrap_or("/").to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        buffer.drain(..head_end + length);
        let seen = Seen {
            method: method.clone(),
            path: target.clone(),
            headers,
        };
        let (script, count) = {
            let mut state = state.lock().expect("state");
            let script = state
                .scripts
                .iter()
                .filter(|(p, _)| target.starts_with(p.as_str()))
                .max_by_key(|(p, _)| p.len())
                .map(|(_, s)| s.clone());
            let count = state.seen.iter().filter(|s| s.path == target).count();
            state.seen.push(seen.clone());
            (script, count)
        };
        let reply = match script {
            Some(script) => script(&seen, count),
            None => Reply::new(404, &[], "no script\n"),
        };
        tokio::time::sleep(reply.delay).await;
        let mut out = Vec::new();
        for interim in &reply.interim {
            out.extend_from_slice(format!("HTTP/1.1 {interim}\r\n\r\n").as_bytes());
        }
        out.extend_from_slice(format!("HTTP/1.1 {} X\r\n", reply.status).as_bytes());
        for (name, value) in &reply.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        let bodiless = method == "HEAD" || reply.status == 304 || reply.status == 204;
        if reply.status != 304 && reply.status != 204 {
            out.extend_from_slice(format!("content-length: {}\r\n", reply.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !bodiless {
            out.extend_from_slice(&reply.body);
        }
        if socket.write_all(&out).await.is_err() {
            return;
        }
    }
}
