//! HTTP/1.1 framing on the client side: a body frontdoor changes (compression) is chunked and
//! keeps the connection; pipelined requests are answered each, in order (RFC 9112 §9.3.2),
//! whoever answers them (the app, the asset cache, the edge cache, frontdoor itself).

use std::time::Duration;

use crate::common::h1wire::{Framing, H1Conn};
use crate::common::*;

/// A page worth compressing, with a `Content-Length` from the app (hyper sets it), and a
/// blocking script for script deferral to rewrite.
fn page() -> String {
    let filler = "<p>frontdoor keeps the connection</p>\n".repeat(200);
    format!("<html><head><script src=\"/app.js\"></script></head><body>{filler}</body></html>")
}

/// Assets from the simulator, an edge-cached `/api`, everything else proxied to `origin`.
fn config(ports: Ports, sim: std::net::SocketAddr, origin: std::net::SocketAddr) -> String {
    config_text(
        ports,
        &format!(
            r#"
[pools.sim]
backends = ["{sim}"]

[pools.app]
backends = ["{origin}"]

[[routes]]
name = "assets"
path = "/assets/{{file*}}"
pool = "sim"
[routes.assets]

[[routes]]
name = "echo"
path = "/echo/{{rest*}}"
pool = "sim"

[[routes]]
name = "deferred"
path = "/deferred/{{rest*}}"
pool = "app"
[routes.hints]
learn = false
[routes.hints.defer-scripts]

[[routes]]
name = "api"
path = "/api/{{rest*}}"
pool = "app"
[routes.cache]

[[routes]]
name = "app"
path = "/{{rest*}}"
pool = "app"
"#
        ),
    )
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_answers_over_h1_are_chunked_and_keep_the_connection() {
    let sim = Sim::quick().await;
    let origin = ScriptedOrigin::start(OriginReply::ok(
        &page(),
        &[("content-type", "text/html; charset=utf-8")],
    ))
    .await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config(ports, sim.addr, origin.addr)).await;
    let mut conn = H1Conn::new(fd.raw_h1().await);
    for (round, encoding) in [(1, "gzip"), (2, "br"), (3, "gzip")] {
        conn.send(get("/page", &format!("Accept-Encoding: {encoding}\r\n")).as_bytes())
            .await;
        let answer = conn.read_response(false).await.expect("an answer");
        assert_eq!(answer.status, 200, "request {round}");
        assert_eq!(answer.header("content-encoding"), Some(encoding));
        assert_eq!(answer.framing, Framing::Chunked, "request {round}");
        assert_eq!(answer.header("content-length"), None);
        assert_eq!(answer.header("connection"), Some("keep-alive"));
        assert_eq!(decode(Some(encoding), &answer.body), page().as_bytes());
    }
    // Script deferral changes the length too, without compression.
    for round in 1..=2 {
        conn.send(get("/deferred/page", "").as_bytes()).await;
        let answer = conn.read_response(false).await.expect("an answer");
        assert_eq!(answer.header("content-encoding"), None);
        assert_eq!(answer.framing, Framing::Chunked, "deferred {round}");
        assert_eq!(answer.header("connection"), Some("keep-alive"));
        assert!(
            answer.text().contains("<script src=\"/app.js\" defer"),
            "{}",
            answer.text()
        );
    }
    assert_eq!(origin.hits(), 5);
    // An HTTP/1.0 client cannot read chunks: its compressed answer ends with the connection,
    // and says so.
    let mut old = H1Conn::new(fd.raw_h1().await);
    old.send(b"GET /page HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\nAccept-Encoding: gzip\r\n\r\n")
        .await;
    let answer = old.read_response(false).await.expect("an answer");
    assert_eq!(answer.header("content-encoding"), Some("gzip"));
    assert_eq!(answer.framing, Framing::Close);
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(decode(Some("gzip"), &answer.body), page().as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_whoever_answers_them() {
    let sim = Sim::quick().await;
    let origin = ScriptedOrigin::start(OriginReply::ok(
        &page(),
        &[
            ("content-type", "text/html; charset=utf-8"),
            ("cache-control", "public, max-age=60"),
        ],
    ))
    .await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config(ports, sim.addr, origin.addr)).await;
    // Warm the asset and the edge cache, so the pipelined requests below are hits.
    let client = fd.client();
    let (status, _, _) = fetch(&client, &fd.url(&sim.assets.css), &[]).await;
    assert_eq!(status, 200);
    let (status, _, _) = fetch(&client, &fd.url("/api/list"), &[]).await;
    assert_eq!(status, 200);

    // Two, then three requests in one write, on proxied and cached routes.
    let css = sim.assets.css.clone();
    let rounds: Vec<Vec<&str>> = vec![
        vec!["/echo/1", "/echo/2"],
        vec!["/echo/3", &css, "/api/list"],
        vec!["/api/list", "/echo/4", "/healthz"],
        vec!["/echo/5", "/page", "/echo/6"],
    ];
    let mut conn = H1Conn::new(fd.raw_h1().await);
    for paths in &rounds {
        let mut batch = String::new();
        for path in paths {
            batch.push_str(&get(path, "Accept-Encoding: gzip\r\n"));
        }
        conn.send(batch.as_bytes()).await;
        for path in paths {
            let answer = conn
                .read_response(false)
                .await
                .unwrap_or_else(|| panic!("no answer for {path} of {paths:?}"));
            assert_eq!(answer.status, 200, "{path} of {paths:?}");
            assert_eq!(answer.header("connection"), Some("keep-alive"), "{path}");
            let body = decode(answer.header("content-encoding"), &answer.body);
            if let Some(n) = path.strip_prefix("/echo/") {
                let echo: serde_json::Value = serde_json::from_slice(&body).expect("echo json");
                assert_eq!(echo["path"], format!("/echo/{n}"), "in order");
            } else if *path == css {
                assert_eq!(answer.header("x-cache"), Some("HIT"));
                assert!(answer
                    .header("content-type")
                    .unwrap_or_default()
                    .contains("css"));
            } else if *path == "/healthz" {
                assert_eq!(body, b"ok\n");
            } else {
                assert_eq!(body, page().as_bytes(), "{path}");
            }
        }
    }
    // The next request arrives while the app is still working on the one before.
    let mut slow_page = OriginReply::ok(&page(), &[("content-type", "text/html; charset=utf-8")]);
    slow_page.delay = Duration::from_millis(500);
    origin.set(slow_page);
    conn.send(get("/page", "").as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    conn.send(get("/echo/7", "").as_bytes()).await;
    let answer = conn.read_response(false).await.expect("an answer");
    assert_eq!(answer.body, page().as_bytes());
    let answer = conn.read_response(false).await.expect("an answer");
    let echo: serde_json::Value = serde_json::from_slice(&answer.body).expect("echo json");
    assert_eq!(echo["path"], "/echo/7");
    // The connection is still usable afterwards.
    conn.send(get("/echo/8", "").as_bytes()).await;
    let answer = conn.read_response(false).await.expect("an answer");
    let echo: serde_json::Value = serde_json::from_slice(&answer.body).expect("echo json");
    assert_eq!(echo["path"], "/echo/8");
}
