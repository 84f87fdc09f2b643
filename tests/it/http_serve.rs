//! `[listen] http-mode = "serve"`: plain HTTP served behind a TLS-terminating balancer.

use crate::common::*;
use std::net::{IpAddr, Ipv4Addr};

/// The balancer in these tests: a client on 127.0.0.2, listed in `trusted-proxies`.
const BALANCER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn serving(ports: Ports, sim: &Sim) -> String {
    config_text(ports, &one_pool(&[sim.addr]))
        .replace("admin = ", "http-mode = \"serve\"\nadmin = ")
        + "\n[proxy]\ntrusted-proxies = [\"127.0.0.2\"]\n"
}

fn plain_client(local: Option<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_mode_proxies_plain_http_and_keeps_the_balancers_forwarded_proto() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &serving(ports, &sim)).await;
    let url = format!("http://127.0.0.1:{}/echo", ports.http);

    // The balancer terminated TLS: what it says of the scheme and the client is kept.
    let from_balancer = plain_client(Some(BALANCER))
        .get(&url)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-request-start", "t=1732270000.123")
        .send()
        .await
        .expect("request");
    assert!(from_balancer.headers().contains_key("x-request-id"));
    let echo = Echo::from(from_balancer).await;
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        echo.header("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.2")
    );
    assert_eq!(
        echo.header("x-request-start").as_deref(),
        Some("t=1732270000.123")
    );

    // Anyone else on the plain listener is plain HTTP, whatever it claims.
    let direct = plain_client(None)
        .get(&url)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("request");
    let echo = Echo::from(direct).await;
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(echo.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));

    // The HTTPS listener is unchanged (HTTP/2 here).
    let over_tls = fd
        .client()
        .get(fd.url("/echo"))
        .send()
        .await
        .expect("https");
    assert_eq!(over_tls.version(), http::Version::HTTP_2);
    let echo = Echo::from(over_tls).await;
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));
    let served = fd
        .metric("frontdoor_requests_total{class=\"2xx\",route=\"all\"}")
        .await;
    assert!(served >= 3.0, "{}", fd.metrics().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_stays_the_default_mode() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &one_pool(&[sim.addr]))).await;
    let response = plain_client(Some(BALANCER))
        .get(format!("http://localhost:{}/echo?x=1", ports.http))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 301);
    assert_eq!(
        header(response.headers(), "location"),
        Some(format!("https://localhost:{}/echo?x=1", fd.ports.https).as_str())
    );
    assert_eq!(sim.hits("/echo").await, 0);
}

#[test]
fn serve_mode_needs_a_plain_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    TestCa::new().issue(dir.path(), "localhost", &["localhost"]);
    let ports = Ports::new();
    let config = config_text(ports, "").replace(
        &format!("http = \"127.0.0.1:{}\"\n", ports.http),
        "http-mode = \"serve\"\n",
    );
    std::fs::write(dir.path().join("f.toml"), config).expect("write");
    let (code, _, err) = run_cli(&["check", "f.toml"], dir.path());
    assert_ne!(code, 0);
    assert!(
        err.contains("listen.http-mode: \"serve\" needs a plain-HTTP listener"),
        "{err}"
    );
}
