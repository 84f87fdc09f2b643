//! An app whose answer the test sets: status, fields and body, changed between requests,
//! counting the requests that reach it and recording their fields. Real HTTP/1.1 (hyper) on
//! a loopback port, like Passenger.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the origin answers.
#[derive(Debug, Clone)]
pub struct OriginReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// How long the origin takes before it answers.
    pub delay: std::time::Duration,
}

impl OriginReply {
    /// 200 with `body` and these fields.
    pub fn ok(body: &str, headers: &[(&str, &str)]) -> Self {
        OriginReply {
            status: 200,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_string(),
            delay: std::time::Duration::ZERO,
        }
    }
}

/// One request as it reached the origin.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// When it arrived.
    pub at: std::time::Instant,
    /// Its path (without the query).
    pub path: String,
    pub headers: http::HeaderMap,
}

struct State {
    reply: Mutex<OriginReply>,
    hits: AtomicU64,
    requests: Mutex<Vec<SeenRequest>>,
}

/// The running origin; stops when dropped.
pub struct ScriptedOrigin {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedOrigin {
    pub async fn start(reply: OriginReply) -> ScriptedOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind origin");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            reply: Mutex::new(reply),
            hits: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request: http::Request<_>| {
                        let state = state.clone();
                        async move {
                            state.hits.fetch_add(1, Ordering::SeqCst);
                            state.requests.lock().expect("requests").push(SeenRequest {
                                at: std::time::Instant::now(),
                                path: request.uri().path().to_string(),
                                headers: request.headers().clone(),
                            });
                            let reply = state.reply.lock().expect("reply").clone();
                            tokio::time::sleep(reply.delay).await;
                            let mut response = http::Response::builder().status(reply.status);
                            for (name, value) in &reply.headers {
                                response = response.header(name, value);
                            }
                            let response = response
                                .body(Full::new(Bytes::from(reply.body)))
                                .expect("response");
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ScriptedOrigin { addr, state, task }
    }

    /// Answers `reply` from now on.
    pub fn set(&self, reply: OriginReply) {
        *self.state.reply.lock().expect("reply") = reply;
    }

    /// Requests that reached the origin.
    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// The fields of the last request that reached the origin.
    pub fn last_request(&self) -> http::HeaderMap {
        self.state
            .requests
            .lock()
            .expect("requests")
            .last()
            .map(|seen| seen.headers.clone())
            .unwrap_or_default()
    }

    /// Every request that reached the origin, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.requests.lock().expect("requests").clone()
    }

    /// Stops accepting and closes every connection: the app is down.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for ScriptedOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
