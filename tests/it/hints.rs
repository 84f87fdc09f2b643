//! Preload hints: `Link` headers from route rules and learned assets, 103 Early Hints on
//! HTTP/1.1, opt-in script deferral.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::common::*;
use frontdoor::simulator::{Simulator, SimulatorOptions};

/// Every `Link` value of a response, split into single links.
fn links(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(", ").map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// A stand-in app for what the simulator does not do: `/special/{case}` answers
/// `page` (HTML with its own `Link`), `missing` (404 HTML), `boom` (500 HTML), `data`
/// (JSON), `held` (HTML once `release` is notified).
async fn special_app() -> (SocketAddr, Arc<Notify>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let release = Arc::new(Notify::new());
    let held = release.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let held = held.clone();
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let held = held.clone();
                async move {
                    let case = request
                        .uri()
                        .path()
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .to_string();
                    let (status, content_type) = match case.as_str() {
                        "missing" => (404, "text/html; charset=utf-8"),
                        "boom" => (500, "text/html; charset=utf-8"),
                        "data" => (200, "application/json"),
                        _ => (200, "text/html; charset=utf-8"),
                    };
                    if case == "held" {
                        held.notified().await;
                    }
                    let body = if content_type == "application/json" {
                        "{}".to_string()
                    } else {
                        format!("<!DOCTYPE html><html><head><title>{case}</title></head><body>{case}</body></html>")
                    };
                    let response = hyper::Response::builder()
                        .status(status)
                        .header("content-type", content_type)
                        .header(
                            "link",
                            "</a.css>; rel=preload; as=style, <https://fonts.example>; rel=preconnect",
                        )
                        .body(Full::new(Bytes::from(body)))
                        .expect("response");
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, release)
}

fn rules_config(ports: Ports, sim: SocketAddr, app: SocketAddr) -> String {
    config_text(
        ports,
        &format!(
            r#"
[pools.sim]
backends = ["{sim}"]

[pools.app]
backends = ["{app}"]
read-timeout = "30s"

[[routes]]
name = "course"
path = "/courses/{{school}}/{{title}}"
pool = "sim"
[routes.hints]
learn = false
preload = [
  {{ href = "/courses/{{school}}/{{title}}/course.json", as = "fetch" }},
  {{ href = "/static/{{title}}.js" }},
]
prefetch = [{{ href = "/courses/{{school}}/{{title}}/users.json" }}]

[[routes]]
name = "special"
path = "/special/{{case}}"
pool = "app"
[routes.hints]
early-hints = true
preload = [
  {{ href = "/special/{{case}}.json" }},
  {{ href = "/a.css" }},
]
"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_rules_become_link_headers_with_encoded_params_over_h1_and_h2() {
    let sim = Sim::quick().await;
    let (app, _release) = special_app().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &rules_config(ports, sim.addr, app)).await;
    let h1 = fd.client_builder().http1_only().build().expect("client");
    for client in [&fd.client(), &h1] {
        let response = client
            .get(fd.url("/courses/new%20york/a%3Eb,c"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        assert_eq!(
            links(response.headers()),
            vec![
                "</courses/new%20york/a%3Eb%2Cc/course.json>; rel=preload; as=fetch; crossorigin",
                "</static/a%3Eb%2Cc.js>; rel=preload; as=script",
                "</courses/new%20york/a%3Eb%2Cc/users.json>; rel=prefetch; as=fetch; crossorigin",
            ]
        );
        let head = client
            .head(fd.url("/courses/mit/physics"))
            .send()
            .await
            .expect("head");
        assert_eq!(head.status(), 200);
        assert!(links(head.headers()).is_empty(), "HEAD got hints");
    }
    assert_eq!(
        fd.metric("frontdoor_hints_total{kind=\"link\",route=\"course\"}")
            .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_links_are_kept_and_not_repeated() {
    let sim = Sim::quick().await;
    let (app, _release) = special_app().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &rules_config(ports, sim.addr, app)).await;
    let response = fd
        .client()
        .get(fd.url("/special/page"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let mut all = links(response.headers());
    all.sort();
    assert_eq!(
        all,
        vec![
            "</a.css>; rel=preload; as=style",
            "</special/page.json>; rel=preload; as=fetch; crossorigin",
            "<https://fonts.example>; rel=preconnect",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hints_on_errors_non_html_or_non_get() {
    let sim = Sim::quick().await;
    let (app, _release) = special_app().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &rules_config(ports, sim.addr, app)).await;
    let upstream_only = vec![
        "</a.css>; rel=preload; as=style".to_string(),
        "<https://fonts.example>; rel=preconnect".to_string(),
    ];
    for (method, path, status) in [
        (reqwest::Method::GET, "/special/missing", 404),
        (reqwest::Method::GET, "/special/boom", 500),
        (reqwest::Method::GET, "/special/data", 200),
        (reqwest::Method::HEAD, "/special/page", 200),
        (reqwest::Method::POST, "/special/page", 200),
    ] {
        let response = fd
            .client()
            .request(method.clone(), fd.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), status, "{method} {path}");
        assert_eq!(links(response.headers()), upstream_only, "{method} {path}");
    }
    assert_eq!(
        fd.metric("frontdoor_hints_total{kind=\"link\",route=\"special\"}")
            .await,
        0.0
    );
}

/// Reads from `stream` until `buffer` holds a whole response head after `from`; returns it.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
    from: usize,
) -> String {
    loop {
        if let Some(end) = buffer[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            return String::from_utf8_lossy(&buffer[from..from + end + 4]).into_owned();
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(
            n > 0,
            "connection closed after {:?}",
            String::from_utf8_lossy(buffer)
        );
        buffer.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_reach_http1_clients_before_the_upstream_answers() {
    let sim = Sim::quick().await;
    let (app, release) = special_app().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &rules_config(ports, sim.addr, app)).await;

    let mut stream = fd.raw_h1().await;
    stream
        .write_all(b"GET /special/held HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");

    // The app holds its answer until released: whatever arrives first came from frontdoor.
    let mut buffer = Vec::new();
    let early = read_head(&mut stream, &mut buffer, 0).await;
    assert!(early.starts_with("HTTP/1.1 103"), "{early}");
    let early_lower = early.to_ascii_lowercase();
    assert!(
        early_lower.contains(
            "link: </special/held.json>; rel=preload; as=fetch; crossorigin, </a.css>; rel=preload; as=style\r\n"
        ),
        "{early}"
    );
    release.notify_one();
    let final_head = read_head(&mut stream, &mut buffer, early.len()).await;
    assert!(final_head.starts_with("HTTP/1.1 200"), "{final_head}");
    assert!(
        final_head
            .to_ascii_lowercase()
            .contains("</special/held.json>; rel=preload; as=fetch; crossorigin"),
        "{final_head}"
    );
    assert_eq!(
        fd.metric("frontdoor_hints_total{kind=\"early_hints\",route=\"special\"}")
            .await,
        1.0
    );

    // Over h2 the final header has them too (the 103 there: tests/it/early_hints.rs).
    let response = fd
        .client()
        .get(fd.url("/special/page"))
        .send()
        .await
        .expect("h2");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert!(links(response.headers())
        .contains(&"</special/page.json>; rel=preload; as=fetch; crossorigin".to_string()));
}

/// A simulator of `release` on this runtime; stops when the returned sender drops.
async fn simulator(
    release: u64,
) -> (
    SocketAddr,
    frontdoor::simulator::AssetPaths,
    tokio::sync::oneshot::Sender<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let options = SimulatorOptions {
        workers: std::num::NonZeroUsize::new(8).expect("nonzero"),
        service_time: Duration::from_millis(1),
        manual_update_time: Duration::from_millis(1),
    };
    let app = Arc::new(Simulator::release(options, release));
    let assets = app.asset_paths();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    (addr, assets, stop)
}

fn learned_config(ports: Ports, backend: SocketAddr) -> String {
    config_text(
        ports,
        &format!(
            r#"
[pools.app]
backends = ["{backend}"]

[[routes]]
name = "home"
path = "/"
pool = "app"
"#
        ),
    )
}

async fn page_links(fd: &Frontdoor, client: &reqwest::Client) -> (Vec<String>, String) {
    let response = client
        .get(fd.url("/"))
        .header("accept-encoding", "br")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let all = links(response.headers());
    let encoding = response
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.bytes().await.expect("body");
    let page = String::from_utf8(decode(encoding.as_deref(), &body)).expect("utf-8");
    (all, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_hints_appear_on_the_next_response_and_follow_a_deploy() {
    let (v1, v1_assets, _stop_v1) = simulator(0).await;
    let (v2, v2_assets, _stop_v2) = simulator(1).await;
    assert_ne!(v1_assets.js, v2_assets.js);
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &learned_config(ports, v1)).await;
    let client = fd.client();

    let (first, page) = page_links(&fd, &client).await;
    assert!(first.is_empty(), "nothing learned yet: {first:?}");
    assert!(page.contains(&v1_assets.js));
    let (second, _) = page_links(&fd, &client).await;
    let style = format!("<{}>; rel=preload; as=style", v1_assets.css);
    let bundle = format!("<{}>; rel=preload; as=script", v1_assets.js);
    assert_eq!(second.len(), 7, "{second:?}");
    assert_eq!(second[0], style, "document order: the stylesheet first");
    assert_eq!(second[6], bundle, "document order: the bundle last");

    // Deploy: the pool now points at release 1, whose fingerprints differ.
    fd.rewrite_config(&learned_config(ports, v2));
    fd.sighup();
    for _ in 0..200 {
        if fd
            .metric("frontdoor_config_reloads_total{result=\"ok\"}")
            .await
            >= 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (stale, page) = page_links(&fd, &client).await;
    assert!(page.contains(&v2_assets.js), "served by release 1");
    assert!(
        stale.contains(&bundle),
        "learned before this page: {stale:?}"
    );
    let (fresh, _) = page_links(&fd, &client).await;
    assert_eq!(fresh.len(), 7, "{fresh:?}");
    assert!(fresh.contains(&format!("<{}>; rel=preload; as=script", v2_assets.js)));
    assert!(fresh.contains(&format!("<{}>; rel=preload; as=style", v2_assets.css)));
    assert!(!fresh.contains(&bundle), "{fresh:?}");
    assert_eq!(
        fd.metric("frontdoor_hints_total{kind=\"learned_update\",route=\"home\"}")
            .await,
        2.0
    );
}

/// `(src, has defer)` of each `<script>` in the page's `<head>`, and the inline scripts' text.
fn head_scripts(page: &str) -> (Vec<(Option<String>, bool)>, Vec<String>) {
    let scripts = std::cell::RefCell::new(Vec::new());
    let inline = std::cell::RefCell::new(Vec::new());
    lol_html::rewrite_str(
        page,
        lol_html::RewriteStrSettings::new()
            .append_element_content_handler(lol_html::element!("head script", |el| {
                scripts
                    .borrow_mut()
                    .push((el.get_attribute("src"), el.has_attribute("defer")));
                Ok(())
            }))
            .append_element_content_handler(lol_html::element!("body script", |el| {
                assert!(!el.has_attribute("defer"), "a body script was deferred");
                Ok(())
            }))
            .append_element_content_handler(lol_html::text!("body script", |t| {
                inline.borrow_mut().push(t.as_str().to_string());
                Ok(())
            })),
    )
    .expect("parse");
    (scripts.into_inner(), inline.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferral_adds_defer_to_allowed_head_scripts_and_the_page_parses_back() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let config = config_text(
        ports,
        &format!(
            r#"
[pools.app]
backends = ["{}"]

[[routes]]
name = "course"
path = "/courses/{{school}}/{{title}}"
pool = "app"
[routes.hints.defer-scripts]
deny = ["/assets/jquery-*"]
"#,
            sim.addr
        ),
    );
    let fd = Frontdoor::start(ports, &config).await;
    let original = reqwest::get(format!("http://{}/courses/mit/physics", sim.addr))
        .await
        .expect("direct")
        .text()
        .await
        .expect("text");
    let (before, inline_before) = head_scripts(&original);
    assert_eq!(before.len(), 6);
    assert!(before.iter().all(|(_, defer)| !defer));

    let h1 = fd.client_builder().http1_only().build().expect("client");
    for client in [&fd.client(), &h1] {
        for accept in ["identity", "gzip, br"] {
            let response = client
                .get(fd.url("/courses/mit/physics"))
                .header("accept-encoding", accept)
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), 200);
            let encoding = response
                .headers()
                .get("content-encoding")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let length = response.headers().get("content-length").cloned();
            let body = response.bytes().await.expect("body");
            if let Some(length) = length {
                assert_eq!(length.to_str().expect("ascii"), body.len().to_string());
            }
            let page = String::from_utf8(decode(encoding.as_deref(), &body)).expect("utf-8");
            let (after, inline_after) = head_scripts(&page);
            assert_eq!(after.len(), 6);
            for (src, defer) in &after {
                let src = src.as_deref().expect("external");
                assert_eq!(*defer, !src.starts_with("/assets/jquery-"), "{src}");
            }
            assert_eq!(
                inline_after, inline_before,
                "the inline script is untouched"
            );
            assert_eq!(page.replace(" defer=\"\"", ""), original);
        }
    }
    assert_eq!(
        fd.metric("frontdoor_hints_total{kind=\"deferred_script\",route=\"course\"}")
            .await,
        20.0
    );
}

#[test]
fn check_rejects_a_hint_naming_a_parameter_the_route_does_not_capture() {
    let dir = tempfile::tempdir().expect("tempdir");
    TestCa::new().issue(dir.path(), "localhost", &["localhost"]);
    let rest = r#"
[pools.app]
backends = ["127.0.0.1:3000"]

[[routes]]
name = "course"
path = "/courses/{school}/{title}"
pool = "app"
[routes.hints]
preload = [{ href = "/courses/{school}/{course}.json" }]
"#;
    let text = config_text(Ports::new(), rest);
    std::fs::write(dir.path().join("f.toml"), &text).expect("write");
    let line = text
        .lines()
        .position(|l| l.starts_with("preload"))
        .expect("line")
        + 1;
    let (code, _, stderr) = run_cli(&["check", "f.toml"], dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "f.toml:{line}:21: routes[0].hints.preload[0].href: `/courses/{{school}}/{{course}}.json` names `{{course}}`"
        )),
        "{stderr}"
    );
}
