//! The Dashboard simulator: a small HTTP/1.1 app that behaves like the Rails Dashboard behind
//! Passenger, for the demo, the tests and the benchmarks.
//!
//! Like Passenger it has a fixed number of worker slots: a request for a page, JSON or asset
//! waits (FIFO) for a slot, holds it for the service time, and reports the queue time it saw
//! as `Server-Timing: queue;dur=<ms>`, measured from `X-Request-Start` when present. Routes:
//! - `/`, `/training`: HTML pages loading six render-blocking scripts and a stylesheet;
//! - `/courses/{school}/{title}`: a course page whose script fetches `course.json`,
//!   `users.json`, `timeline.json` and `campaigns.json` under it;
//! - `/assets/<name>-<fingerprint>.{js,css}`: ~500 KB of JS and ~80 KB of CSS, uncompressed;
//! - `/courses/{id*}/manual_update`: holds a worker for `manual_update_time` (seconds);
//! - `/healthz`, `/echo[/...]` (what the app received, as JSON) and `/_sim/stats` (counters):
//!   answered without a worker.

mod pages;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use pages::Assets;

/// How the simulated app behaves.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// Worker slots (Passenger's pool size).
    pub workers: NonZeroUsize,
    /// How long a page, JSON or asset request holds a worker.
    pub service_time: Duration,
    /// How long a manual update holds a worker.
    pub manual_update_time: Duration,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            workers: NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN),
            service_time: Duration::from_millis(20),
            manual_update_time: Duration::from_secs(3),
        }
    }
}

/// The paths of the fingerprinted application assets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetPaths {
    /// The JS bundle, e.g. `/assets/application-3f9a1c2b4d5e6f70.js`.
    pub js: String,
    /// The stylesheet.
    pub css: String,
}

/// Distinct paths counted in `/_sim/stats` before the rest go under `other`.
const MAX_PATHS: usize = 10_000;

/// The simulated app.
pub struct Simulator {
    options: SimulatorOptions,
    assets: Assets,
    workers: Semaphore,
    requests_total: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    by_path: Mutex<HashMap<String, u64>>,
}

type Reply = Response<Full<Bytes>>;

impl Simulator {
    /// Builds the app (and its assets, once).
    pub fn new(options: SimulatorOptions) -> Self {
        Simulator {
            workers: Semaphore::new(options.workers.get()),
            options,
            assets: Assets::generate(),
            requests_total: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            by_path: Mutex::new(HashMap::new()),
        }
    }

    /// The fingerprinted application asset paths.
    pub fn asset_paths(&self) -> AssetPaths {
        AssetPaths {
            js: self.assets.js.clone(),
            css: self.assets.css.clone(),
        }
    }

    /// Serves HTTP/1.1 (keep-alive) on `listener` until `shutdown` resolves; connections
    /// already accepted may finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let node: Arc<str> = Arc::from(listener.local_addr()?.to_string());
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("simulator accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let (app, node) = (self.clone(), node.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request| app.clone().handle(node.clone(), request));
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = connection.await {
                    tracing::debug!("simulator connection ended: {e}");
                }
            });
        }
    }

    async fn handle(
        self: Arc<Self>,
        node: Arc<str>,
        request: Request<Incoming>,
    ) -> Result<Reply, Infallible> {
        let arrival = Instant::now();
        let path = request.uri().path().to_string();
        if path != "/_sim/stats" {
            self.count(&path);
        }
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // HEAD is GET without a body, as Rack does it (hyper drops the body).
        let read = matches!(*request.method(), Method::GET | Method::HEAD);
        let mut reply = match segments.as_slice() {
            ["healthz"] => text(StatusCode::OK, "ok\n"),
            ["_sim", "stats"] => self.stats(),
            ["echo", ..] => echo(&node, request).await,
            ["courses", id @ .., "manual_update"] if !id.is_empty() => {
                let body =
                    serde_json::json!({ "updated": id.join("/"), "node": &*node }).to_string();
                self.work(
                    &request,
                    arrival,
                    self.options.manual_update_time,
                    json(body),
                )
                .await
            }
            [] if read => {
                let page = self.assets.index_page("Dashboard");
                self.work(&request, arrival, self.options.service_time, html(page))
                    .await
            }
            ["training"] if read => {
                let page = self.assets.index_page("Training");
                self.work(&request, arrival, self.options.service_time, html(page))
                    .await
            }
            ["courses", school, title] if read => {
                let page = self.assets.course_page(school, title);
                self.work(&request, arrival, self.options.service_time, html(page))
                    .await
            }
            ["courses", school, title, doc] if read => {
                match doc
                    .strip_suffix(".json")
                    .filter(|k| ["course", "users", "timeline", "campaigns"].contains(k))
                {
                    Some(kind) => {
                        let body = pages::course_json(school, title, kind);
                        self.work(&request, arrival, self.options.service_time, json(body))
                            .await
                    }
                    None => text(StatusCode::NOT_FOUND, "not found\n"),
                }
            }
            ["assets", _] if read => {
                match self.assets.by_path.get(&path) {
                    Some(asset) => {
                        let mut reply = Response::new(Full::new(asset.body.clone()));
                        let headers = reply.headers_mut();
                        headers.insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static(asset.content_type),
                        );
                        // What Passenger sends without a front door: short caching, no compression.
                        headers.insert(
                            header::CACHE_CONTROL,
                            HeaderValue::from_static("public, max-age=3600"),
                        );
                        self.work(&request, arrival, self.options.service_time, reply)
                            .await
                    }
                    None => text(StatusCode::NOT_FOUND, "no such asset\n"),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        };
        if let Ok(value) = HeaderValue::from_str(&node) {
            reply.headers_mut().insert("x-simulator-node", value);
        }
        Ok(reply)
    }

    /// Waits for a worker slot, holds it for `service_time`, and answers `reply` with the
    /// queue time it waited.
    async fn work(
        &self,
        request: &Request<Incoming>,
        arrival: Instant,
        service_time: Duration,
        mut reply: Reply,
    ) -> Reply {
        let Ok(_permit) = self.workers.acquire().await else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "simulator closed\n");
        };
        let queue = queue_time(request.headers().get("x-request-start"), arrival);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(service_time).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let timing = format!("queue;dur={:.3}", queue.as_secs_f64() * 1000.0);
        if let Ok(value) = HeaderValue::from_str(&timing) {
            reply.headers_mut().insert("server-timing", value);
        }
        reply
    }

    fn count(&self, path: &str) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut by_path) = self.by_path.lock() {
            let key = if by_path.len() < MAX_PATHS || by_path.contains_key(path) {
                path
            } else {
                "other"
            };
            *by_path.entry(key.to_string()).or_insert(0) += 1;
        }
    }

    fn stats(&self) -> Reply {
        let by_path = self.by_path.lock().map(|m| m.clone()).unwrap_or_default();
        json(
            serde_json::json!({
                "requests_total": self.requests_total.load(Ordering::Relaxed),
                "in_flight": self.in_flight.load(Ordering::SeqCst),
                "max_in_flight": self.max_in_flight.load(Ordering::SeqCst),
                "by_path": by_path,
            })
            .to_string(),
        )
    }
}

/// Queue time: from `X-Request-Start` (`t=<secs>.<frac>`, `<secs>.<frac>`, or an integer in
/// seconds, milliseconds or microseconds, as nginx and Heroku write it) when present and
/// plausible, else from the simulator's own arrival.
fn queue_time(header: Option<&HeaderValue>, arrival: Instant) -> Duration {
    let start = header
        .and_then(|v| v.to_str().ok())
        .and_then(parse_request_start);
    match start {
        Some(start) => SystemTime::now()
            .duration_since(start)
            .unwrap_or(Duration::ZERO),
        None => arrival.elapsed(),
    }
}

fn parse_request_start(value: &str) -> Option<SystemTime> {
    let v = value.trim().trim_start_matches("t=");
    let since_epoch = if v.contains('.') {
        Duration::try_from_secs_f64(v.parse::<f64>().ok()?).ok()?
    } else {
        let n: u64 = v.parse().ok()?;
        match n {
            0..=9_999_999_999 => Duration::from_secs(n),
            10_000_000_000..=9_999_999_999_999 => Duration::from_millis(n),
            _ => Duration::from_micros(n),
        }
    };
    Some(UNIX_EPOCH + since_epoch)
}

async fn echo(node: &str, request: Request<Incoming>) -> Reply {
    let (parts, body) = request.into_parts();
    let body_bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let headers: Vec<[String; 2]> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            [
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ]
        })
        .collect();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    json(
        serde_json::json!({
            "node": node,
            "method": parts.method.as_str(),
            "path": path,
            "version": format!("{:?}", parts.version),
            "headers": headers,
            "body_bytes": body_bytes,
        })
        .to_string(),
    )
}

fn with_type(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut reply = Response::new(Full::new(body.into()));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    reply
}

fn text(status: StatusCode, body: &'static str) -> Reply {
    with_type(status, "text/plain; charset=utf-8", body)
}

fn json(body: String) -> Reply {
    with_type(StatusCode::OK, "application/json", body)
}

fn html(body: String) -> Reply {
    with_type(StatusCode::OK, "text/html; charset=utf-8", body)
}

/// `frontdoor simulate`: serves on `listen` until Ctrl-C.
pub fn run_blocking(listen: SocketAddr, options: SimulatorOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        println!(
            "simulator listening on http://{} ({} workers, {} ms service time)",
            listener.local_addr()?,
            options.workers,
            options.service_time.as_millis()
        );
        let simulator = Arc::new(Simulator::new(options));
        simulator
            .serve(listener, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(options: SimulatorOptions) -> (SocketAddr, Arc<Simulator>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sim = Arc::new(Simulator::new(options));
        tokio::spawn(sim.clone().serve(listener, std::future::pending()));
        (addr, sim)
    }

    fn options(workers: usize, service_ms: u64) -> SimulatorOptions {
        SimulatorOptions {
            workers: NonZeroUsize::new(workers).unwrap(),
            service_time: Duration::from_millis(service_ms),
            manual_update_time: Duration::from_millis(300),
        }
    }

    /// One request on a fresh connection: (status, lowercase head, body).
    async fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: sim\r\n{extra}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let status = head[9..12].parse().unwrap();
        (status, head, raw[split + 4..].to_vec())
    }

    fn queue_ms(head: &str) -> f64 {
        let at =
            head.find("server-timing: queue;dur=").unwrap() + "server-timing: queue;dur=".len();
        head[at..].lines().next().unwrap().trim().parse().unwrap()
    }

    #[tokio::test]
    async fn pages_json_and_assets_have_their_types() {
        let (addr, sim) = start(options(4, 0)).await;
        for (path, ty) in [
            ("/", "text/html"),
            ("/training", "text/html"),
            ("/courses/mit/physics", "text/html"),
            ("/courses/mit/physics/timeline.json", "application/json"),
        ] {
            let (status, head, _) = get(addr, path, "").await;
            assert_eq!(status, 200, "{path}");
            assert!(
                head.contains(&format!("content-type: {ty}")),
                "{path}: {head}"
            );
            assert!(head.contains("server-timing: queue;dur="), "{path}");
        }
        let paths = sim.asset_paths();
        let (status, head, body) = get(addr, &paths.js, "Accept-Encoding: br, gzip\r\n").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: application/javascript")
                && !head.contains("content-encoding")
        );
        assert!(paths.js.contains(&format!("{:016x}", pages::fnv1a(&body))));
        let (_, page_head, page) = get(addr, "/courses/mit/physics", "").await;
        assert!(page_head.contains("x-simulator-node"));
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains(&paths.js) && page.contains(&paths.css));
        assert!(page.contains("course") && page.contains("campaigns"));
        assert_eq!(get(addr, "/assets/application-0000.js", "").await.0, 404);
        assert_eq!(get(addr, "/nope", "").await.0, 404);
        assert_eq!(
            get(addr, "/courses/mit/physics/secrets.json", "").await.0,
            404
        );
    }

    #[tokio::test]
    async fn echo_reflects_what_the_app_received() {
        let (addr, _) = start(options(1, 0)).await;
        let (status, _, body) = get(addr, "/echo/x?y=1", "X-A: 1\r\nX-A: 2\r\n").await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["path"], "/echo/x?y=1");
        assert_eq!(v["node"], addr.to_string());
        let xa: Vec<&str> = v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0] == "x-a")
            .filter_map(|h| h[1].as_str())
            .collect();
        assert_eq!(xa, vec!["1", "2"]);
    }

    #[tokio::test]
    async fn queue_time_is_measured_from_x_request_start() {
        let (addr, _) = start(options(1, 0)).await;
        let second_ago =
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap() - Duration::from_secs(1);
        let stamp = format!(
            "X-Request-Start: t={}.{:03}\r\n",
            second_ago.as_secs(),
            second_ago.subsec_millis()
        );
        let (_, head, _) = get(addr, "/", &stamp).await;
        assert!(queue_ms(&head) >= 999.0, "{head}");
        assert!(parse_request_start("t=1732270000123456").is_some());
        assert!(parse_request_start("garbage").is_none());
    }

    #[tokio::test]
    async fn requests_beyond_the_workers_wait_in_the_queue() {
        let (addr, sim) = start(options(1, 50)).await;
        let (a, b) = tokio::join!(get(addr, "/", ""), get(addr, "/training", ""));
        let waited = queue_ms(&a.1).max(queue_ms(&b.1));
        assert!(
            waited >= 40.0,
            "one of two waited for the single worker: {waited}"
        );
        let (_, _, stats) = get(addr, "/_sim/stats", "").await;
        let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
        assert_eq!(stats["max_in_flight"], 1);
        assert_eq!(stats["requests_total"], 2);
        drop(sim);
    }

    #[tokio::test]
    async fn manual_update_holds_a_worker_while_healthz_answers() {
        let (addr, _) = start(options(1, 0)).await;
        let update = tokio::spawn(get(addr, "/courses/a/b/manual_update", ""));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, _, stats) = get(addr, "/_sim/stats", "").await;
        let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
        assert_eq!(stats["in_flight"], 1, "the only worker is busy");
        assert_eq!(get(addr, "/healthz", "").await.0, 200);
        let (status, _, body) = update.await.unwrap();
        assert_eq!(status, 200);
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("\"updated\":\"a/b\""));
    }
}
