//! TLS, ALPN and the redirect listener; the TLS posture (versions, suites, ALPN, testssl.sh).

use crate::common::h2wire;
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

/// A handshake with `versions` and `alpn`: the negotiated version, suite and protocol, or
/// the handshake error.
async fn handshake(
    fd: &Frontdoor,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> std::io::Result<(
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    rustls::ProtocolVersion,
    rustls::CipherSuite,
    Option<Vec<u8>>,
)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], fd.ports.https));
    let config = h2wire::client_config(&fd.ca.pem(), versions, alpn);
    let tls = h2wire::connect_with(addr, config).await?;
    let session = tls.get_ref().1;
    let version = session.protocol_version().expect("version");
    let suite = session.negotiated_cipher_suite().expect("suite").suite();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    Ok((tls, version, suite, alpn))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_and_tls13_clients_get_aead_suites_and_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &one_pool(&[sim.addr]))).await;
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let (mut tls, negotiated, suite, alpn) = handshake(&fd, &[version], &[b"http/1.1"])
            .await
            .unwrap_or_else(|e| panic!("{expected:?}: {e}"));
        assert_eq!(negotiated, expected);
        // rustls has no CBC suite and no RSA key exchange; this guards the choice of library
        // and provider, should either change.
        let name = format!("{suite:?}");
        assert!(
            name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
            "{expected:?}: {name}"
        );
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        tls.write_all(b"GET /echo/tls HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{expected:?}: {response}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_prefers_h2_then_http11_and_refuses_unknown_protocols() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &one_pool(&[sim.addr]))).await;
    let all = rustls::ALL_VERSIONS;
    let chosen = |offered: &'static [&'static [u8]]| {
        let fd = &fd;
        async move {
            handshake(fd, all, offered)
                .await
                .map(|(_, _, _, alpn)| alpn.map(|p| String::from_utf8_lossy(&p).into_owned()))
        }
    };
    // The server's preference wins, whatever the client's order.
    assert_eq!(
        chosen(&[b"http/1.1", b"h2"]).await.expect("h2").as_deref(),
        Some("h2")
    );
    assert_eq!(
        chosen(&[b"http/1.1"]).await.expect("h1").as_deref(),
        Some("http/1.1")
    );
    // No ALPN at all: the handshake succeeds and the connection speaks HTTP/1.1.
    assert_eq!(chosen(&[]).await.expect("no alpn"), None);
    // Only protocols we do not speak: a clean TLS alert (no_application_protocol, RFC 7301),
    // not a connection that then fails on its first bytes.
    let error = chosen(&[b"spdy/3", b"h3"]).await.expect_err("unknown ALPN");
    assert!(
        format!("{error:?}").contains("NoApplicationProtocol"),
        "{error:?}"
    );
}

/// testssl.sh's verdict on the listener (tests/tls_posture.sh: no SSL, no TLS 1.0/1.1, AEAD
/// suites only, no renegotiation, no vulnerability). About a minute.
#[test]
fn testssl_finds_only_tls12_and_tls13_with_aead_suites_and_no_vulnerability() {
    let installed = std::process::Command::new("testssl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(installed, "testssl (bash .ci/setup installs it)");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls_posture.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .env("FRONTDOOR_BIN", bin())
        .output()
        .expect("run tests/tls_posture.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("tls_posture: ok"), "{stdout}");
}
