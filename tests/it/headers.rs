//! X-Request-Start, X-Forwarded-*, X-Request-Id as the app sees them.

use crate::common::*;
use std::time::{SystemTime, UNIX_EPOCH};

/// rack-timeout's accepted pattern, `^(t=)?\d+\.\d{3}$`.
fn rack_timeout_accepts(value: &str) -> bool {
    let v = value.strip_prefix("t=").unwrap_or(value);
    v.split_once('.').is_some_and(|(secs, millis)| {
        !secs.is_empty()
            && secs.bytes().all(|b| b.is_ascii_digit())
            && millis.len() == 3
            && millis.bytes().all(|b| b.is_ascii_digit())
    })
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis()
}

fn spoofing(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request
        .header("X-Request-Start", "t=1000000000.000")
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Forwarded-Proto", "http")
        .header("X-Request-Id", "client-chosen-id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_request_start_is_stamped_at_arrival_in_rack_timeout_format() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &one_pool(&[sim.addr]))).await;
    let client = fd.client();
    for _ in 0..5 {
        let before = now_millis();
        let echo = Echo::from(client.get(fd.url("/echo")).send().await.expect("request")).await;
        let after = now_millis();
        let stamp = echo
            .header("x-request-start")
            .expect("X-Request-Start sent");
        assert!(rack_timeout_accepts(&stamp), "{stamp}");
        let millis: u128 = stamp
            .trim_start_matches("t=")
            .replace('.', "")
            .parse()
            .expect("number");
        assert!(
            before <= millis && millis <= after,
            "{before} <= {millis} <= {after}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarding_headers_are_replaced_for_untrusted_peers() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &one_pool(&[sim.addr]))).await;
    let response = spoofing(fd.client().get(fd.url("/echo")))
        .send()
        .await
        .expect("request");
    let returned_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let echo = Echo::from(response).await;
    let stamp = echo.header("x-request-start").expect("stamp");
    assert_ne!(stamp, "t=1000000000.000");
    assert_eq!(echo.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));
    let id = echo.header("x-request-id").expect("request id");
    assert_ne!(id, "client-chosen-id");
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(returned_id, id, "the client gets the id the app saw");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_headers_are_kept_and_the_peer_appended() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let rest = format!(
        "[proxy]\ntrusted-proxies = [\"127.0.0.0/8\"]\n{}",
        one_pool(&[sim.addr])
    );
    let fd = Frontdoor::start(ports, &config_text(ports, &rest)).await;
    let response = spoofing(fd.client().get(fd.url("/echo")))
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-request-id"], "client-chosen-id");
    let echo = Echo::from(response).await;
    assert_eq!(
        echo.header("x-request-start").as_deref(),
        Some("t=1000000000.000")
    );
    assert_eq!(
        echo.header("x-forwarded-for").as_deref(),
        Some("6.6.6.6, 127.0.0.1")
    );
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        echo.header("x-request-id").as_deref(),
        Some("client-chosen-id")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_reports_queue_time_measured_from_x_request_start() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &one_pool(&[sim.addr]))).await;
    let response = fd
        .client()
        .get(fd.url("/courses/mit/physics"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let timing = response.headers()["server-timing"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(timing.starts_with("queue;dur="), "{timing}");
    assert!(response.headers().get("connection").is_none());
    assert!(response.headers().get("keep-alive").is_none());
    let head = fd
        .client()
        .head(fd.url("/courses/mit/physics"))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), 200);
    assert!(head.headers().contains_key("server-timing"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_request_fields_do_not_reach_the_app() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &one_pool(&[sim.addr]))).await;
    let client = fd.client_builder().http1_only().build().expect("client");
    let response = client
        .get(fd.url("/echo"))
        .header("Connection", "keep-alive, X-Secret")
        .header("X-Secret", "must not pass")
        .header("Keep-Alive", "timeout=5")
        .header("Proxy-Connection", "keep-alive")
        .header("X-Kept", "passes")
        .send()
        .await
        .expect("request");
    let echo = Echo::from(response).await;
    for name in ["x-secret", "keep-alive", "proxy-connection"] {
        assert_eq!(echo.header(name), None, "{name} reached the app");
    }
    assert_eq!(echo.header("x-kept").as_deref(), Some("passes"));
}
