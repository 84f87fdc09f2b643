//! frontdoor's own 502/503/504: the operator's HTML pages for browsers, JSON for API clients,
//! read at load and again on reload.

use std::time::Duration;

use crate::common::{config_text, Frontdoor, OriginReply, Ports, ScriptedOrigin, TestCa};

const BROWSER: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

/// frontdoor whose folder has `public/50x.html`, with `[error-pages]` naming them.
async fn start_with_pages(ports: Ports, rest: &str) -> Frontdoor {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    ca.issue(dir.path(), "localhost", &["localhost", "127.0.0.1"]);
    let public = dir.path().join("public");
    std::fs::create_dir(&public).expect("public");
    for status in [502, 503, 504] {
        let page = format!("<html><body>operator page {status}</body></html>\n");
        std::fs::write(public.join(format!("{status}.html")), page).expect("page");
    }
    std::fs::write(public.join("maintenance.html"), "<p>maintenance page</p>\n").expect("page");
    let pages = "\n[error-pages]\n502 = \"public/502.html\"\n503 = \"public/503.html\"\n\
                 504 = \"public/504.html\"\nmaintenance = \"public/maintenance.html\"\n";
    let config = config_text(ports, &format!("{pages}{rest}"));
    Frontdoor::start_in(dir, ca, ports, &config).await
}

fn pool_and_route(backend: &str, extra: &str) -> String {
    format!(
        r#"
[pools.app]
backends = ["{backend}"]
connect-timeout = "500ms"
read-timeout = "500ms"
eject-after = 0
{extra}

[[routes]]
name = "all"
path = "/{{rest*}}"
pool = "app"
"#
    )
}

/// (status, content type, retry-after, body) of a GET with `accept`.
async fn get(
    fd: &Frontdoor,
    path: &str,
    accept: Option<&str>,
) -> (u16, String, Option<String>, String) {
    let mut request = fd.client().get(fd.url(path));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.expect("get");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (status, content_type, retry_after) = (
        response.status().as_u16(),
        header("content-type").unwrap_or_default(),
        header("retry-after"),
    );
    (
        status,
        content_type,
        retry_after,
        response.text().await.expect("body"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_app_gets_the_operators_502_page_for_browsers_and_json_for_api_clients() {
    // A port nobody listens on: every connect is refused.
    let closed = format!("127.0.0.1:{}", crate::common::free_port());
    let ports = Ports::new();
    let fd = start_with_pages(ports, &pool_and_route(&closed, "")).await;

    let (status, content_type, _, body) = get(&fd, "/courses", Some(BROWSER)).await;
    assert_eq!(status, 502);
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert_eq!(body, "<html><body>operator page 502</body></html>\n");

    for accept in [None, Some("application/json"), Some("*/*")] {
        let (status, content_type, _, body) = get(&fd, "/courses", accept).await;
        assert_eq!(status, 502, "{accept:?}");
        assert_eq!(content_type, "application/json", "{accept:?}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(json["status"], 502);
        assert!(json["error"]
            .as_str()
            .expect("error")
            .contains("bad gateway"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_app_gets_the_504_page_and_a_pool_without_backends_up_the_503_page() {
    let origin = ScriptedOrigin::start(OriginReply {
        delay: Duration::from_secs(3),
        ..OriginReply::ok("late", &[])
    })
    .await;
    let ports = Ports::new();
    let fd = start_with_pages(ports, &pool_and_route(&origin.addr.to_string(), "")).await;
    let (status, _, _, body) = get(&fd, "/slow", Some(BROWSER)).await;
    assert_eq!(status, 504);
    assert_eq!(body, "<html><body>operator page 504</body></html>\n");
    let (status, _, _, body) = get(&fd, "/slow", Some("application/json")).await;
    assert_eq!(status, 504);
    assert!(body.contains("gateway timeout"), "{body}");

    // The only backend draining: frontdoor's own 503, with Retry-After, page or JSON.
    let draining = pool_and_route(&origin.addr.to_string(), "").replace(
        &format!("[\"{}\"]", origin.addr),
        &format!("[{{ address = \"{}\", drain = true }}]", origin.addr),
    );
    fd.rewrite_config(&fd_config(&fd, &draining));
    fd.wait_metric("frontdoor_config_reloads_total{result=\"ok\"}", 1.0)
        .await;
    let (status, _, retry_after, body) = get(&fd, "/x", Some(BROWSER)).await;
    assert_eq!(status, 503);
    assert_eq!(retry_after.as_deref(), Some("2"));
    assert_eq!(body, "<html><body>operator page 503</body></html>\n");
    let (status, content_type, _, body) = get(&fd, "/x", None).await;
    assert_eq!((status, content_type.as_str()), (503, "application/json"));
    assert!(body.contains("no backend is up"), "{body}");
}

/// The config text of `fd` with `rest` (pages and pool) in place of the original.
fn fd_config(fd: &Frontdoor, rest: &str) -> String {
    let pages = "\n[error-pages]\n502 = \"public/502.html\"\n503 = \"public/503.html\"\n\
                 504 = \"public/504.html\"\nmaintenance = \"public/maintenance.html\"\n";
    config_text(fd.ports, &format!("{pages}{rest}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shed_request_gets_the_503_page_and_a_changed_page_is_reloaded() {
    let origin = ScriptedOrigin::start(OriginReply {
        delay: Duration::from_secs(4),
        ..OriginReply::ok("slow", &[])
    })
    .await;
    let admission =
        "\n[pools.app.admission]\nslots = 1\nqueue-length = 1\nqueue-timeout = \"200ms\"";
    let ports = Ports::new();
    let mut rest = pool_and_route(&origin.addr.to_string(), admission);
    rest = rest.replace("read-timeout = \"500ms\"", "read-timeout = \"5s\"");
    let fd = start_with_pages(ports, &rest).await;
    // One request holds the only slot; the next waits 200 ms in the queue, then is shed.
    let holder = {
        let request = fd.client().get(fd.url("/hold"));
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    fd.wait_metric("frontdoor_requests_in_flight", 1.0).await;
    let (status, _, retry_after, body) = get(&fd, "/shed", Some(BROWSER)).await;
    assert_eq!(status, 503);
    assert!(retry_after.is_some());
    assert_eq!(body, "<html><body>operator page 503</body></html>\n");

    // A new 503.html (a deploy of the app's public/) is picked up like a config change.
    std::fs::write(
        fd.dir.path().join("public/503.html"),
        "<p>new 503 page</p>\n",
    )
    .expect("write");
    fd.wait_metric("frontdoor_config_reloads_total{result=\"ok\"}", 1.0)
        .await;
    let (status, _, _, body) = get(&fd, "/shed", Some(BROWSER)).await;
    assert_eq!(status, 503);
    assert_eq!(body, "<p>new 503 page</p>\n");
    assert_eq!(holder.await.expect("join").expect("held request"), 200);
}

#[test]
fn check_names_a_missing_page_with_its_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    TestCa::new().issue(dir.path(), "localhost", &["localhost"]);
    let rest = pool_and_route("127.0.0.1:3000", "");
    let config = config_text(
        Ports::new(),
        &format!("{rest}\n[error-pages]\n503 = \"public/503.html\"\n"),
    );
    std::fs::write(dir.path().join("f.toml"), config).expect("write");
    let (code, _, stderr) = crate::common::run_cli(&["check", "f.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.contains("f.toml:30:7: error-pages.503: cannot read `public/503.html`"),
        "{stderr}"
    );
}
