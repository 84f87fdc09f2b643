//! The Dashboard simulator: a small HTTP/1.1 app that behaves like the Rails "Dashboard"
//! behind Passenger, for `frontdoor simulate`, the demo, the black-box tests and the
//! benchmarks.
//!
//! Like Passenger it has a fixed pool of workers ([`SimulatorOptions::workers`]): a request
//! for a page, a JSON document or an asset waits (first come, first served) for a worker,
//! holds it for the service time, and reports the queue time it saw as
//! `Server-Timing: queue;dur=<ms>`, measured from `X-Request-Start` when present.
//!
//! | Route | Worker | Answer |
//! |---|---|---|
//! | `GET /`, `GET /training` | service time | HTML; stylesheet and six blocking scripts in `<head>` |
//! | `GET /courses/{school}/{title}` | service time | HTML whose script fetches the four documents below |
//! | `GET /courses/{school}/{title}/{course,users,timeline,campaigns}.json` | service time | JSON, a few KB |
//! | `GET /assets/<name>-<fnv1a-64>.{js,css}` | service time | ~500 KB bundle, ~80 KB stylesheet, five vendor scripts; uncompressed |
//! | `POST`/`PUT /uploads` | while the body is read, then service time | `{"received": <bytes>}` |
//! | `GET /downloads/{bytes}` (up to 1 GiB) | service time, then until the last byte is written | `bytes` bytes of `x` |
//! | any `/courses/{id*}/manual_update` | manual update time | `{"updated": "<id>"}` |
//! | `GET /healthz` | none | `ok` |
//! | any `/echo`, `/echo/...` | none | what the app received, as JSON |
//! | `GET /_sim/stats` | none | request counters, workers busy now and at most |
//!
//! Anything else is a 404. `HEAD` is answered as `GET` without the body, as Rack does. Every
//! response has `Content-Length` and `X-Simulator-Node: <listen address>`.

mod pages;
mod pool;
mod transfer;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use pages::{Assets, CourseDoc};
pub(crate) use pool::parse_request_start;
use pool::{RequestStart, Workers};

/// How the simulated app behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatorOptions {
    /// Worker slots: Passenger's pool size.
    pub workers: NonZeroUsize,
    /// How long a page, JSON or asset request holds a worker.
    pub service_time: Duration,
    /// How long a `manual_update` holds a worker.
    pub manual_update_time: Duration,
}

impl Default for SimulatorOptions {
    /// Four workers, 20 ms per request, 3 s per manual update.
    fn default() -> Self {
        SimulatorOptions {
            workers: NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN),
            service_time: Duration::from_millis(20),
            manual_update_time: Duration::from_secs(3),
        }
    }
}

/// The paths of the fingerprinted application assets the pages load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetPaths {
    /// The JS bundle, e.g. `/assets/application-3f9a1c2b4d5e6f70.js`.
    pub js: String,
    /// The stylesheet, e.g. `/assets/application-0b1c2d3e4f506172.css`.
    pub css: String,
}

/// Distinct paths `/_sim/stats` counts one by one; the rest are counted under `other`.
const MAX_STATS_PATHS: usize = 10_000;
/// Paths longer than this are counted under `other`, so the map stays small whatever
/// clients send.
const MAX_STATS_PATH_LEN: usize = 1024;
/// How long [`Simulator::serve`] waits, after shutdown, for requests already in the app.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (out of file descriptors, say), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
const X_REQUEST_START: HeaderName = HeaderName::from_static("x-request-start");
const X_SIMULATOR_NODE: HeaderName = HeaderName::from_static("x-simulator-node");

/// Whole answers, or a download streamed while it holds a worker.
type Reply = Response<Either<Full<Bytes>, transfer::Download>>;

/// The simulated app: its assets, its worker pool and its counters. One `Simulator` may
/// serve several listeners; they share the pool.
#[derive(Debug)]
pub struct Simulator {
    options: SimulatorOptions,
    assets: Assets,
    workers: Workers,
    stats: Stats,
}

impl Simulator {
    /// Builds the app, generating its assets once (a few milliseconds in a release build).
    pub fn new(options: SimulatorOptions) -> Self {
        Simulator::release(options, 0)
    }

    /// Like [`Simulator::new`], as release number `release` of the app: another release has
    /// the same pages with other asset fingerprints (what a deploy does). Release 0 is `new`.
    pub fn release(options: SimulatorOptions, release: u64) -> Self {
        Simulator {
            workers: Workers::new(options.workers.get()),
            options,
            assets: Assets::generate(release),
            stats: Stats::default(),
        }
    }

    /// The fingerprinted bundle and stylesheet paths, as the pages reference them.
    pub fn asset_paths(&self) -> AssetPaths {
        AssetPaths {
            js: self.assets.js.clone(),
            css: self.assets.css.clone(),
        }
    }

    /// Serves HTTP/1.1 with keep-alive on `listener`, each connection in its own task, until
    /// `shutdown` resolves. Then it stops accepting, lets requests already received finish
    /// (closing each connection after its current response) for up to 5 s, and returns;
    /// connections still open then are dropped. Errs only if the listener has no address.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let node = Arc::new(Node::new(listener.local_addr()?));
        let (stop, stopping) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                // Reap finished connections so a long run does not accumulate them.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let connection = self.clone().connection(stream, node.clone(), stopping.clone());
                        connections.spawn(connection);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "simulator: accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
        }
        drop(listener);
        // No receiver left is fine: every connection has already ended.
        let _ = stop.send(true);
        let drained = tokio::time::timeout(DRAIN_LIMIT, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!(
                open = connections.len(),
                "simulator: closing connections still busy after the drain limit"
            );
        }
        Ok(())
    }

    /// One downstream connection, until the client closes it or the simulator stops.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        node: Arc<Node>,
        mut stopping: watch::Receiver<bool>,
    ) {
        // Responses are written whole; Nagle would only delay the last segment.
        let _ = stream.set_nodelay(true);
        let service = service_fn(move |request| {
            let (app, node) = (self.clone(), node.clone());
            async move { Ok::<_, Infallible>(app.handle(&node, request).await) }
        });
        // No timer, hence no header-read timeout: a front door's idle pooled connections
        // stay open until it closes them, as with Passenger.
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        // A closed channel also means stop: the simulator is gone. `wait_for`'s guard is
        // not `Send`; it is dropped inside this block, never held across an await.
        let stop = async {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = stop => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "simulator: connection ended with an error");
        }
    }

    /// Answers one request; never fails (errors are responses).
    async fn handle(&self, node: &Node, request: Request<Incoming>) -> Reply {
        let arrival = Instant::now();
        let path = request.uri().path().to_owned();
        let route = Route::of(request.method(), &path);
        if route != Route::Stats {
            self.stats.count(&path);
        }
        let start = RequestStart::from_header(request.headers().get(X_REQUEST_START), arrival);
        let mut reply = match route {
            Route::Healthz => text(StatusCode::OK, "ok\n"),
            Route::Stats => self.stats_reply(),
            Route::Echo => echo(&node.addr, request).await,
            Route::Home => {
                let page = html(self.assets.home_page());
                self.work(start, self.options.service_time, page).await
            }
            Route::Training => {
                let page = html(self.assets.training_page());
                self.work(start, self.options.service_time, page).await
            }
            Route::Course { school, title } => {
                let page = html(self.assets.course_page(school, title));
                self.work(start, self.options.service_time, page).await
            }
            Route::CourseDoc { school, title, doc } => {
                let body = json(pages::course_json(school, title, doc));
                self.work(start, self.options.service_time, body).await
            }
            Route::Asset => match self.assets.get(&path) {
                Some(asset) => {
                    let mut reply = Response::new(Either::Left(Full::new(asset.body.clone())));
                    let headers = reply.headers_mut();
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
                    // What Passenger sends on its own: an hour of caching, no compression.
                    headers.insert(
                        CACHE_CONTROL,
                        HeaderValue::from_static("public, max-age=3600"),
                    );
                    self.work(start, self.options.service_time, reply).await
                }
                None => not_found(),
            },
            Route::ManualUpdate { id } => {
                let held_ms = self.options.manual_update_time.as_millis();
                let body =
                    serde_json::json!({ "updated": id, "node": node.addr, "held_ms": held_ms });
                let reply = json(body.to_string());
                self.work(start, self.options.manual_update_time, reply)
                    .await
            }
            Route::Upload => {
                let service_time = self.options.service_time;
                transfer::upload(&self.workers, start, service_time, request).await
            }
            Route::Download { bytes } => {
                let service_time = self.options.service_time;
                transfer::download(&self.workers, start, service_time, bytes).await
            }
            Route::NotFound => not_found(),
        };
        if let Some(value) = &node.header {
            reply.headers_mut().insert(X_SIMULATOR_NODE, value.clone());
        }
        reply
    }

    /// Holds a worker for `service_time`, then answers `reply` with the queue time.
    async fn work(&self, start: RequestStart, service_time: Duration, mut reply: Reply) -> Reply {
        match self.workers.run(start, service_time).await {
            Ok(queue_time) => {
                server_timing_header(&mut reply, queue_time);
                reply
            }
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n")),
        }
    }

    fn stats_reply(&self) -> Reply {
        let body = serde_json::json!({
            "requests_total": self.stats.requests_total.load(Ordering::Relaxed),
            "in_flight": self.workers.in_flight(),
            "max_in_flight": self.workers.max_in_flight(),
            "by_path": self.stats.by_path(),
        });
        json(body.to_string())
    }
}

/// The listen address a connection came in on, as `/echo` and `X-Simulator-Node` report it.
#[derive(Debug)]
struct Node {
    addr: String,
    /// Always `Some`: a socket address is a valid header value.
    header: Option<HeaderValue>,
}

impl Node {
    fn new(addr: SocketAddr) -> Self {
        let addr = addr.to_string();
        Node {
            header: HeaderValue::from_str(&addr).ok(),
            addr,
        }
    }
}

/// What a request asks for, decided from its method and path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Healthz,
    Stats,
    Echo,
    Home,
    Training,
    Course {
        school: &'a str,
        title: &'a str,
    },
    CourseDoc {
        school: &'a str,
        title: &'a str,
        doc: CourseDoc,
    },
    /// Some `/assets/<file>`; whether it exists is the asset table's business.
    Asset,
    /// `POST`/`PUT /uploads`.
    Upload,
    /// `GET /downloads/{bytes}`, at most [`transfer::MAX_DOWNLOAD`].
    Download {
        bytes: u64,
    },
    /// `id` is everything between `/courses/` and `/manual_update`.
    ManualUpdate {
        id: &'a str,
    },
    NotFound,
}

impl<'a> Route<'a> {
    fn of(method: &Method, path: &'a str) -> Self {
        // Rails ignores one trailing slash; so do we.
        let trimmed = match path.strip_suffix('/') {
            Some(rest) if !rest.is_empty() => rest,
            _ => path,
        };
        let Some(rest) = trimmed.strip_prefix('/') else {
            return Route::NotFound;
        };
        let segments: Vec<&str> = rest.split('/').collect();
        // An empty segment (`//`) matches no parameter, as in Rails.
        let named = |s: &&str| !s.is_empty();
        // HEAD is GET without a body (hyper drops it), as Rack does.
        let read = *method == Method::GET || *method == Method::HEAD;
        match segments.as_slice() {
            ["echo", ..] => Route::Echo,
            ["courses", ids @ .., "manual_update"] if !ids.is_empty() => {
                let id = rest
                    .strip_prefix("courses/")
                    .and_then(|inner| inner.strip_suffix("/manual_update"));
                match id {
                    Some(id) if ids.iter().all(named) => Route::ManualUpdate { id },
                    _ => Route::NotFound,
                }
            }
            ["uploads"] if *method == Method::POST || *method == Method::PUT => Route::Upload,
            _ if !read => Route::NotFound,
            [""] => Route::Home,
            ["healthz"] => Route::Healthz,
            ["_sim", "stats"] => Route::Stats,
            ["training"] => Route::Training,
            ["courses", school, title] if named(school) && named(title) => {
                Route::Course { school, title }
            }
            ["courses", school, title, file] if named(school) && named(title) => {
                match CourseDoc::from_file_name(file) {
                    Some(doc) => Route::CourseDoc { school, title, doc },
                    None => Route::NotFound,
                }
            }
            ["assets", file] if named(file) => Route::Asset,
            ["downloads", bytes] if all_digits(bytes) => match bytes.parse() {
                Ok(bytes) if bytes <= transfer::MAX_DOWNLOAD => Route::Download { bytes },
                _ => Route::NotFound,
            },
            _ => Route::NotFound,
        }
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Request counters for `/_sim/stats`.
#[derive(Debug, Default)]
struct Stats {
    requests_total: AtomicU64,
    /// Bounded: at most [`MAX_STATS_PATHS`] paths plus `other`.
    by_path: Mutex<HashMap<String, u64>>,
}

impl Stats {
    fn count(&self, path: &str) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        // Counters stay meaningful after a panic elsewhere; nothing here can be half-done.
        let mut by_path = self.by_path.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = by_path.get_mut(path) {
            *n += 1;
            return;
        }
        let key = if by_path.len() < MAX_STATS_PATHS && path.len() <= MAX_STATS_PATH_LEN {
            path
        } else {
            "other"
        };
        *by_path.entry(key.to_owned()).or_insert(0) += 1;
    }

    fn by_path(&self) -> HashMap<String, u64> {
        self.by_path
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// `/echo`: what the app received. Header fields come in the order hyper's `HeaderMap`
/// keeps: names in order of first appearance, each name's values together and in order.
/// The body is read to the end and counted, not kept.
async fn echo(node: &str, request: Request<Incoming>) -> Reply {
    let (parts, mut body) = request.into_parts();
    let mut body_bytes = 0usize;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => body_bytes += frame.data_ref().map_or(0, Bytes::len),
            Err(e) => return text(StatusCode::BAD_REQUEST, &format!("unreadable body: {e}\n")),
        }
    }
    let headers: Vec<[String; 2]> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            [
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ]
        })
        .collect();
    let body = serde_json::json!({
        "node": node,
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_bytes": body_bytes,
    });
    json(body.to_string())
}

/// Adds `Server-Timing: queue;dur=<ms>` for `queue_time`.
fn server_timing_header(reply: &mut Reply, queue_time: Duration) {
    if let Ok(value) = HeaderValue::from_str(&pool::server_timing(queue_time)) {
        reply.headers_mut().insert(SERVER_TIMING, value);
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut reply = Response::new(Either::Left(Full::new(body.into())));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    reply
}

fn text(status: StatusCode, body: &str) -> Reply {
    reply(status, "text/plain; charset=utf-8", body.to_owned())
}

fn not_found() -> Reply {
    text(StatusCode::NOT_FOUND, "not found\n")
}

fn json(body: String) -> Reply {
    reply(StatusCode::OK, "application/json", body)
}

fn html(body: String) -> Reply {
    reply(StatusCode::OK, "text/html; charset=utf-8", body)
}

/// Why [`run_blocking`] could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The tokio runtime could not be built.
    #[error("cannot start the simulator's runtime")]
    Runtime(#[source] std::io::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why not (in use, not local, no permission).
        #[source]
        source: std::io::Error,
    },
    /// The listener failed while serving.
    #[error("the simulator's listener failed")]
    Serve(#[source] std::io::Error),
}

/// Blocking entry point for `frontdoor simulate`: builds a multi-thread tokio runtime, binds
/// `listen`, prints one line `simulator listening on http://ADDR (N workers, S ms service
/// time)` to stdout, and serves until Ctrl-C.
pub fn run_blocking(listen: SocketAddr, options: SimulatorOptions) -> anyhow::Result<()> {
    Ok(run(listen, options)?)
}

fn run(listen: SocketAddr, options: SimulatorOptions) -> Result<(), RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| RunError::Bind {
                addr: listen,
                source,
            })?;
        let bound = listener.local_addr().map_err(RunError::Serve)?;
        let (workers, service_ms) = (options.workers, options.service_time.as_millis());
        let simulator = Arc::new(Simulator::new(options));
        // Printed once the assets exist, so scripts may start requests as soon as they see it.
        println!("simulator listening on http://{bound} ({workers} workers, {service_ms} ms service time)");
        let ctrl_c = async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                // Without a handler, run until killed rather than stop at once.
                tracing::warn!(error = %e, "simulator: cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        };
        simulator
            .serve(listener, ctrl_c)
            .await
            .map_err(RunError::Serve)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    /// A simulator on an ephemeral loopback port, stopped when dropped.
    struct Running {
        addr: SocketAddr,
        sim: Arc<Simulator>,
        stop: Option<oneshot::Sender<()>>,
        served: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    impl Running {
        async fn start(workers: usize, service_ms: u64, manual_update_ms: u64) -> Running {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let sim = Arc::new(Simulator::new(SimulatorOptions {
                workers: NonZeroUsize::new(workers).unwrap(),
                service_time: Duration::from_millis(service_ms),
                manual_update_time: Duration::from_millis(manual_update_ms),
            }));
            let (stop, stopped) = oneshot::channel::<()>();
            let served = tokio::spawn(sim.clone().serve(listener, async {
                let _ = stopped.await;
            }));
            Running {
                addr,
                sim,
                stop: Some(stop),
                served,
            }
        }

        async fn get(&self, path: &str) -> Answer {
            self.send(&format!("GET {path} HTTP/1.1\r\nHost: sim\r\n\r\n"))
                .await
        }

        /// One request on a fresh connection.
        async fn send(&self, request: &str) -> Answer {
            let mut stream = TcpStream::connect(self.addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            Answer::read(&mut stream, request.starts_with("HEAD ")).await
        }

        async fn stats(&self) -> serde_json::Value {
            self.get("/_sim/stats").await.json()
        }
    }

    /// A parsed response.
    #[derive(Debug)]
    struct Answer {
        status: u16,
        /// Lowercase names, in the order sent.
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Answer {
        /// Reads exactly one response (Content-Length framed), leaving the connection usable.
        async fn read(stream: &mut TcpStream, head_only: bool) -> Answer {
            let mut raw = Vec::new();
            let end = loop {
                if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at;
                }
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed before a response head");
                raw.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8(raw[..end].to_vec()).unwrap();
            let mut lines = head.split("\r\n");
            let status = lines.next().unwrap()[9..12].parse().unwrap();
            let headers: Vec<(String, String)> = lines
                .map(|line| {
                    let (name, value) = line.split_once(':').unwrap();
                    (name.to_ascii_lowercase(), value.trim().to_owned())
                })
                .collect();
            let length: usize = headers
                .iter()
                .find(|(name, _)| name == "content-length")
                .map(|(_, value)| value.parse().unwrap())
                .expect("every response has Content-Length");
            let mut body = raw[end + 4..].to_vec();
            let wanted = if head_only { 0 } else { length };
            while body.len() < wanted {
                let mut chunk = vec![0u8; wanted - body.len()];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-body");
                body.extend_from_slice(&chunk[..n]);
            }
            assert_eq!(body.len(), wanted, "no bytes beyond the body");
            Answer {
                status,
                headers,
                body,
            }
        }

        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }

        fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap()
        }

        fn text(&self) -> String {
            String::from_utf8(self.body.clone()).unwrap()
        }

        fn queue_ms(&self) -> f64 {
            let timing = self.header("server-timing").expect("server-timing");
            timing.strip_prefix("queue;dur=").unwrap().parse().unwrap()
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
        }
    }

    #[test]
    fn routes_are_decided_by_method_and_path() {
        let get = |path| Route::of(&Method::GET, path);
        assert_eq!(get("/"), Route::Home);
        assert_eq!(get("/training/"), Route::Training);
        assert_eq!(
            get("/courses/mit/physics"),
            Route::Course {
                school: "mit",
                title: "physics"
            }
        );
        assert_eq!(
            get("/courses/mit/physics/users.json"),
            Route::CourseDoc {
                school: "mit",
                title: "physics",
                doc: CourseDoc::Users
            }
        );
        assert_eq!(
            Route::of(&Method::POST, "/courses/mit/physics/2024/manual_update"),
            Route::ManualUpdate {
                id: "mit/physics/2024"
            }
        );
        assert_eq!(
            get("/courses/42/manual_update"),
            Route::ManualUpdate { id: "42" }
        );
        assert_eq!(Route::of(&Method::DELETE, "/echo/x"), Route::Echo);
        assert_eq!(Route::of(&Method::HEAD, "/assets/a.js"), Route::Asset);
        for not_found in [
            "/courses/manual_update",
            "/courses//manual_update",
            "/courses/mit",
            "/courses/mit/physics/extra/more",
            "/courses/mit/physics/grades.json",
            "/courses//physics",
            "/assets/",
            "/assets/a/b.js",
            "/healthz/x",
            "/echoes",
        ] {
            assert_eq!(get(not_found), Route::NotFound, "{not_found}");
        }
        assert_eq!(Route::of(&Method::POST, "/"), Route::NotFound);
        assert_eq!(
            Route::of(&Method::PUT, "/courses/mit/physics"),
            Route::NotFound
        );
    }

    #[test]
    fn stats_count_paths_up_to_the_bound_then_under_other() {
        let stats = Stats::default();
        for i in 0..MAX_STATS_PATHS + 5 {
            stats.count(&format!("/p/{i}"));
        }
        stats.count("/p/0");
        stats.count(&"/long".repeat(MAX_STATS_PATH_LEN));
        let by_path = stats.by_path();
        assert_eq!(by_path.len(), MAX_STATS_PATHS + 1);
        assert_eq!(by_path["/p/0"], 2);
        assert_eq!(by_path["other"], 6);
        assert_eq!(
            stats.requests_total.load(Ordering::Relaxed),
            MAX_STATS_PATHS as u64 + 7
        );
    }

    #[tokio::test]
    async fn pages_documents_and_assets_answer_with_their_content_types() {
        let sim = Running::start(4, 0, 0).await;
        let paths = sim.sim.asset_paths();
        for (path, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/training", "text/html; charset=utf-8"),
            ("/courses/mit/physics", "text/html; charset=utf-8"),
            ("/courses/mit/physics/course.json", "application/json"),
            ("/courses/mit/physics/users.json", "application/json"),
            ("/courses/mit/physics/timeline.json", "application/json"),
            ("/courses/mit/physics/campaigns.json", "application/json"),
            (&paths.js, "application/javascript"),
            (&paths.css, "text/css"),
        ] {
            let answer = sim.get(path).await;
            assert_eq!(answer.status, 200, "{path}");
            assert_eq!(answer.header("content-type"), Some(content_type), "{path}");
            assert!(answer.header("server-timing").is_some(), "{path}");
            assert_eq!(
                answer.header("x-simulator-node"),
                Some(sim.addr.to_string().as_str()),
                "{path}"
            );
        }
        let course = sim.get("/courses/mit/physics/course.json").await.json();
        assert_eq!(course["course"]["school"], "mit");
        assert_eq!(course["course"]["title"], "physics");
    }

    #[tokio::test]
    async fn pages_reference_assets_served_under_their_content_hash() {
        let sim = Running::start(4, 0, 0).await;
        let page = sim.get("/courses/mit/physics").await.text();
        let paths = sim.sim.asset_paths();
        assert!(page.contains(&format!("<script src=\"{}\"></script>", paths.js)));
        assert!(page.contains(&format!("href=\"{}\"", paths.css)));
        let referenced: Vec<&str> = page
            .split('"')
            .filter(|s| s.starts_with("/assets/"))
            .collect();
        assert_eq!(referenced.len(), 7, "{referenced:?}");
        for path in referenced {
            let asset = sim
                .send(&format!(
                    "GET {path} HTTP/1.1\r\nHost: sim\r\nAccept-Encoding: br, gzip\r\n\r\n"
                ))
                .await;
            assert_eq!(asset.status, 200, "{path}");
            let hash = format!("-{:016x}.", pages::fnv1a(&asset.body));
            assert!(path.contains(&hash), "{path} is not named by {hash}");
            assert_eq!(asset.header("content-encoding"), None);
            assert_eq!(asset.header("cache-control"), Some("public, max-age=3600"));
        }
        let js = sim.get(&paths.js).await;
        assert!(js.body.len() >= 500_000);
    }

    #[tokio::test]
    async fn head_is_get_without_the_body() {
        let sim = Running::start(1, 0, 0).await;
        let js = sim.sim.asset_paths().js;
        let full = sim.get(&js).await;
        let head = sim
            .send(&format!("HEAD {js} HTTP/1.1\r\nHost: sim\r\n\r\n"))
            .await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length"),
            Some(full.body.len().to_string().as_str())
        );
        assert!(head.header("server-timing").is_some());
    }

    #[tokio::test]
    async fn one_connection_serves_several_requests() {
        let sim = Running::start(2, 0, 0).await;
        let mut stream = TcpStream::connect(sim.addr).await.unwrap();
        for path in ["/", "/healthz", "/courses/a/b/users.json", "/nope"] {
            let request = format!("GET {path} HTTP/1.1\r\nHost: sim\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let answer = Answer::read(&mut stream, false).await;
            assert!([200, 404].contains(&answer.status), "{path}");
        }
    }

    #[tokio::test]
    async fn echo_reflects_method_path_headers_and_body_size() {
        let sim = Running::start(1, 0, 0).await;
        let answer = sim
            .send(
                "POST /echo/x?y=1&z HTTP/1.1\r\nHost: sim\r\nX-B: 1\r\nX-A: first\r\nX-B: 2\r\n\
                 Content-Length: 5\r\n\r\nhello",
            )
            .await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("content-type"), Some("application/json"));
        assert_eq!(answer.header("server-timing"), None, "no worker");
        let echo = answer.json();
        assert_eq!(echo["node"], sim.addr.to_string());
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["path"], "/echo/x?y=1&z");
        assert_eq!(echo["version"], "HTTP/1.1");
        assert_eq!(echo["body_bytes"], 5);
        let headers: Vec<(String, String)> = echo["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_owned(),
                    h[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let sent: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .filter(|(n, _)| n.starts_with("x-"))
            .collect();
        assert_eq!(sent, [("x-b", "1"), ("x-b", "2"), ("x-a", "first")]);
        assert_eq!(headers[0], ("host".to_owned(), "sim".to_owned()));
    }

    #[tokio::test]
    async fn queue_time_is_measured_from_x_request_start() {
        let sim = Running::start(1, 0, 0).await;
        let second_ago =
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap() - Duration::from_secs(1);
        let stamps = [
            format!(
                "t={}.{:03}",
                second_ago.as_secs(),
                second_ago.subsec_millis()
            ),
            format!("{}.{:06}", second_ago.as_secs(), second_ago.subsec_micros()),
            format!("t={}", second_ago.as_micros()),
        ];
        for stamp in stamps {
            let answer = sim
                .send(&format!(
                    "GET / HTTP/1.1\r\nHost: sim\r\nX-Request-Start: {stamp}\r\n\r\n"
                ))
                .await;
            assert!(answer.queue_ms() >= 1000.0, "{stamp}: {answer:?}");
        }
        let future =
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(60);
        let answer = sim
            .send(&format!(
                "GET / HTTP/1.1\r\nHost: sim\r\nX-Request-Start: t={}.000\r\n\r\n",
                future.as_secs()
            ))
            .await;
        assert_eq!(answer.header("server-timing"), Some("queue;dur=0.000"));
    }

    #[tokio::test]
    async fn a_second_request_waits_for_the_only_worker() {
        let sim = Running::start(1, 50, 0).await;
        let (a, b) = tokio::join!(sim.get("/"), sim.get("/courses/mit/physics/course.json"));
        let waited = a.queue_ms().max(b.queue_ms());
        assert!(waited >= 40.0, "the later of two waited {waited} ms");
        let stats = sim.stats().await;
        assert_eq!(stats["max_in_flight"], 1);
        assert_eq!(stats["in_flight"], 0);
        assert_eq!(stats["requests_total"], 2, "stats do not count themselves");
        assert_eq!(stats["by_path"]["/"], 1);
        assert_eq!(stats["by_path"]["/courses/mit/physics/course.json"], 1);
    }

    #[tokio::test]
    async fn manual_update_holds_a_worker_while_healthz_answers() {
        let sim = Arc::new(Running::start(1, 0, 300).await);
        let update = tokio::spawn({
            let sim = sim.clone();
            async move {
                sim.send("POST /courses/mit/physics/manual_update HTTP/1.1\r\nHost: sim\r\nContent-Length: 0\r\n\r\n")
                    .await
            }
        });
        let mut busy = false;
        for _ in 0..200 {
            if sim.stats().await["in_flight"] == 1 {
                busy = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(busy, "the update never held the worker");
        let health = sim.get("/healthz").await;
        assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
        assert_eq!(sim.get("/echo").await.status, 200);
        let page = sim.get("/").await;
        assert!(page.queue_ms() > 0.0, "the page waited for the update");
        let update = update.await.unwrap();
        assert_eq!(update.status, 200);
        assert_eq!(update.json()["updated"], "mit/physics");
        assert!(update.header("server-timing").is_some());
    }

    #[tokio::test]
    async fn unknown_paths_and_assets_are_not_found() {
        let sim = Running::start(1, 0, 0).await;
        for path in [
            "/nope",
            "/assets/application-0000000000000000.js",
            "/courses/mit/physics/grades.json",
        ] {
            let answer = sim.get(path).await;
            assert_eq!(answer.status, 404, "{path}");
            assert_eq!(
                answer.header("content-type"),
                Some("text/plain; charset=utf-8")
            );
            assert!(answer.header("x-simulator-node").is_some());
        }
        let stats = sim.stats().await;
        assert_eq!(
            stats["by_path"]["/assets/application-0000000000000000.js"], 1,
            "misses reach the app and are counted"
        );
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_lets_requests_in_the_app_finish() {
        let mut sim = Running::start(1, 0, 200).await;
        let addr = sim.addr;
        let update = tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"GET /courses/1/manual_update HTTP/1.1\r\nHost: sim\r\n\r\n")
                .await
                .unwrap();
            Answer::read(&mut stream, false).await
        });
        while sim.stats().await["in_flight"] != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sim.stop.take().unwrap().send(()).unwrap();
        (&mut sim.served).await.unwrap().unwrap();
        assert_eq!(update.await.unwrap().status, 200);
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    }
}
