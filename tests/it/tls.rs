//! TLS, ALPN and the redirect listener.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_is_negotiated_by_alpn_and_proxies_to_the_app() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &one_pool(&[sim.addr]))).await;
    let response = fd
        .client()
        .get(fd.url("/echo/h2"))
        .send()
        .await
        .expect("h2 request");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let echo = Echo::from(response).await;
    assert_eq!(echo.0["path"], "/echo/h2");
    // Upstream is HTTP/1.1 keep-alive, whatever the client spoke.
    assert_eq!(echo.0["version"], "HTTP/1.1");
    assert_eq!(
        echo.header("host").as_deref(),
        Some(format!("localhost:{}", ports.https).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_clients_get_http1_over_tls() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &one_pool(&[sim.addr]))).await;
    let client = fd.client_builder().http1_only().build().expect("client");
    for _ in 0..3 {
        let response = client
            .get(fd.url("/echo/h1"))
            .send()
            .await
            .expect("h1 request");
        assert_eq!(response.version(), reqwest::Version::HTTP_11);
        assert_eq!(response.status(), 200);
    }
    let handshakes = fd
        .metric("frontdoor_tls_handshakes_total{protocol=\"TLSv1.3\"}")
        .await;
    // Usually one connection carries all three; hyper's pool may race a second one open.
    assert!(
        (1.0..=3.0).contains(&handshakes),
        "handshakes counted by TLS version: {handshakes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_certificate_for_the_server_name() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    ca.issue(dir.path(), "localhost", &["localhost"]);
    ca.issue(dir.path(), "alpha", &["alpha.test"]);
    ca.issue(dir.path(), "beta", &["beta.test", "*.beta.test"]);
    let extra = r#"
[[tls.certificates]]
cert = "alpha.pem"
key = "alpha.key"
server-names = ["alpha.test"]

[[tls.certificates]]
cert = "beta.pem"
key = "beta.key"
server-names = ["beta.test", "*.beta.test"]
"#;
    let config = config_text(ports, &format!("{extra}{}", one_pool(&[sim.addr])));
    let fd = Frontdoor::start_in(dir, ca, ports, &config).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ports.https));
    // Each name only validates if the server picked that name's certificate.
    for name in ["alpha.test", "beta.test", "www.beta.test", "localhost"] {
        let client = fd
            .client_builder()
            .resolve(name, addr)
            .build()
            .expect("client");
        let response = client
            .get(format!("https://{name}:{}/echo", ports.https))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(response.status(), 200, "{name}");
    }
    // A name nobody configured gets the default (localhost) certificate, which fails to verify.
    let client = fd
        .client_builder()
        .resolve("gamma.test", addr)
        .build()
        .expect("client");
    assert!(client
        .get(format!("https://gamma.test:{}/echo", ports.https))
        .send()
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_redirects_to_https_with_same_host_and_path() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &one_pool(&[sim.addr]))).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = client
        .get(format!(
            "http://127.0.0.1:{}/courses/mit/physics?tab=users",
            ports.http
        ))
        .send()
        .await
        .expect("redirect");
    assert_eq!(response.status(), 301);
    assert_eq!(
        response.headers()["location"],
        format!(
            "https://127.0.0.1:{}/courses/mit/physics?tab=users",
            ports.https
        )
        .as_str()
    );
    drop(fd);
}

#[test]
fn a_bad_certificate_is_a_clean_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("localhost.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("localhost.key"), "garbage").expect("write");
    let ports = Ports::new();
    let config = config_text(ports, &one_pool(&["127.0.0.1:9".parse().expect("addr")]));
    std::fs::write(dir.path().join("frontdoor.toml"), config).expect("write");
    for command in ["check", "run"] {
        let (code, _, stderr) = run_cli(&[command, "frontdoor.toml"], dir.path());
        assert_eq!(code, 1, "{command}: {stderr}");
        assert!(
            stderr.contains("frontdoor.toml:14:8: tls.certificates[0].cert:"),
            "{command}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{command}: {stderr}");
    }
}
