//! Backends on unix sockets (`unix:/run/app/puma.sock`): proxied, reused, health-checked.

use crate::common::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A Puma-like app on a unix socket: `/healthz` answers 200; anything else its path, the
/// `Host` and `X-Forwarded-Proto` it got, and how many connections it has accepted.
struct SocketApp {
    task: tokio::task::JoinHandle<()>,
    connections: Arc<AtomicU64>,
}

impl SocketApp {
    async fn start(path: &Path) -> SocketApp {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path).expect("bind socket");
        let connections = Arc::new(AtomicU64::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let header = |name: &str| {
                                request
                                    .headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("-")
                                    .to_string()
                            };
                            let body = if request.uri().path() == "/healthz" {
                                "ok".to_string()
                            } else {
                                format!(
                                    "path={} host={} proto={} connection={n}",
                                    request.uri().path(),
                                    header("host"),
                                    header("x-forwarded-proto")
                                )
                            };
                            async move {
                                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                                    body,
                                ))))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        SocketApp { task, connections }
    }
}

impl Drop for SocketApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn socket_pool(socket: &Path, health: &str) -> String {
    format!(
        r#"
[pools.app]
backends = ["unix:{}"]
connect-timeout = "500ms"
read-timeout = "2s"
{health}

[[routes]]
name = "all"
path = "/{{rest*}}"
pool = "app"
"#,
        socket.display()
    )
}

async fn body(fd: &Frontdoor, path: &str) -> (u16, String) {
    let response = fd.client().get(fd.url(path)).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_a_backend_on_a_unix_socket_over_kept_alive_connections() {
    let sockets = tempfile::tempdir().expect("tempdir");
    let socket: PathBuf = sockets.path().join("puma.sock");
    let app = SocketApp::start(&socket).await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &socket_pool(&socket, ""))).await;
    for i in 0..5 {
        let (status, text) = body(&fd, &format!("/courses/{i}")).await;
        assert_eq!(status, 200, "{text}");
        assert!(
            text.starts_with(&format!("path=/courses/{i} host=localhost")),
            "{text}"
        );
        assert!(text.contains("proto=https"), "{text}");
    }
    assert_eq!(
        app.connections.load(Ordering::SeqCst),
        1,
        "sequential requests reuse one socket connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_backend_is_checked_taken_down_and_brought_back() {
    let sockets = tempfile::tempdir().expect("tempdir");
    let socket = sockets.path().join("puma.sock");
    let app = SocketApp::start(&socket).await;
    let ports = Ports::new();
    let health =
        "[pools.app.health]\ninterval = \"100ms\"\ntimeout = \"200ms\"\nrise = 1\nfall = 1\n";
    let fd = Frontdoor::start(ports, &config_text(ports, &socket_pool(&socket, health))).await;
    let up = format!(
        "frontdoor_backend_up{{backend=\"unix:{}\",pool=\"app\"}}",
        socket.display()
    );
    assert_eq!(body(&fd, "/").await.0, 200);
    assert_eq!(fd.wait_metric(&up, 1.0).await, 1.0);
    let checks = format!(
        "frontdoor_health_checks_total{{backend=\"unix:{}\",pool=\"app\",result=\"passed\"}}",
        socket.display()
    );
    assert!(
        fd.wait_metric(&checks, 2.0).await >= 2.0,
        "{}",
        fd.metrics().await
    );

    // Puma stops: its socket file goes away.
    drop(app);
    std::fs::remove_file(&socket).expect("remove socket");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) = body(&fd, "/").await;
        if status == 503 && text.contains("no backend is up") {
            break;
        }
        assert!(Instant::now() < deadline, "still {status}: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The gauge follows at the checker's next tick.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fd.metric(&up).await != 0.0 {
        assert!(Instant::now() < deadline, "{}", fd.metrics().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Puma is back on the same path.
    let _app = SocketApp::start(&socket).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) = body(&fd, "/back").await;
        if status == 200 {
            assert!(text.starts_with("path=/back"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "still {status}: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn check_refuses_a_socket_path_too_long_for_the_kernel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = Ports::new();
    let long = format!("/tmp/{}.sock", "p".repeat(120));
    let config = config_text(ports, &socket_pool(Path::new(&long), ""));
    std::fs::write(dir.path().join("frontdoor.toml"), config).expect("write");
    TestCa::new().issue(dir.path(), "localhost", &["localhost"]);
    let (code, _out, err) = run_cli(&["check", "frontdoor.toml"], dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("pools.app.backends[0]"), "{err}");
    assert!(err.contains("a unix socket path has at most 107"), "{err}");
}
