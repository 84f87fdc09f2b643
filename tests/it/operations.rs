//! Quiet, quick operations: a client hanging up is not an error in the log, and a graceful
//! stop ends as soon as nothing is in flight (the grace period is for requests, not a wait).

use std::time::{Duration, Instant};

use crate::common::{config_text, h2wire, one_pool, Frontdoor, Ports, Sim, TestCa};

/// frontdoor with diagnostics at `info` and client hang-ups shown at `debug`.
async fn start_logging_hang_ups(ports: Ports, config: &str) -> Frontdoor {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    ca.issue(dir.path(), "localhost", &["localhost", "127.0.0.1"]);
    let env = [("RUST_LOG", "info,frontdoor::client_reset=debug")];
    Frontdoor::start_with_env(dir, ca, ports, config, &env).await
}

/// Waits up to 10 s for `needle` in frontdoor's stderr.
async fn wait_stderr(fd: &Frontdoor, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if fd.stderr().contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resetting_its_spare_connection_is_not_an_error() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let fd = start_logging_hang_ups(ports, &config_text(ports, &one_pool(&[sim.addr]))).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ports.https));

    // A browser's spare connection: TLS with ALPN h2, then a reset instead of the preface.
    // The server's SETTINGS arriving says it is waiting in its h2 handshake.
    let mut tls = h2wire::connect_h2(addr, &fd.ca.pem()).await;
    let settings = h2wire::read_frame(&mut tls)
        .await
        .expect("read")
        .expect("frame");
    assert_eq!(settings.kind, h2wire::SETTINGS);
    let (tcp, _) = tls.into_inner();
    tcp.set_zero_linger().expect("linger");
    drop(tcp);
    assert!(
        wait_stderr(&fd, "H2 handshake error").await,
        "the hang-up is logged at debug:\n{}",
        fd.stderr()
    );

    // A TCP check that resets before TLS.
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_zero_linger().expect("linger");
    drop(tcp);
    assert!(
        wait_stderr(&fd, "Downstream handshake error").await,
        "{}",
        fd.stderr()
    );

    let log = fd.stderr();
    for line in log.lines().filter(|l| l.contains("handshake error")) {
        assert!(line.contains("DEBUG"), "not an error: {line}");
        assert!(line.contains("frontdoor::client_reset"), "{line}");
    }
    assert!(!log.contains("ERROR"), "{log}");
    // The site still serves.
    let response = fd.client().get(fd.url("/echo")).send().await.expect("get");
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nothing_in_flight_exits_long_before_the_grace_period() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let config = config_text(ports, &one_pool(&[sim.addr]))
        .replace("grace-period = \"0s\"", "grace-period = \"60s\"");
    let mut fd = Frontdoor::start(ports, &config).await;
    // An idle keep-alive connection stays open: it holds no request, so it must not hold
    // the process either.
    let client = fd.client();
    let response = client.get(fd.url("/echo")).send().await.expect("get");
    assert_eq!(response.status(), 200);
    fd.signal("TERM");
    assert_eq!(
        fd.wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "an idle frontdoor exits well before its 60 s grace period:\n{}",
        fd.stderr()
    );
    // The access log was flushed before the exit.
    let log = std::fs::read_to_string(fd.dir.path().join("access.log")).expect("access log");
    assert!(log.contains("path=/echo"), "{log}");
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_a_request_in_flight_then_exits_before_the_grace_period() {
    let sim = Sim::start(frontdoor::simulator::SimulatorOptions {
        manual_update_time: Duration::from_millis(1500),
        ..Sim::quick_options()
    })
    .await;
    let ports = Ports::new();
    let config = config_text(ports, &one_pool(&[sim.addr]))
        .replace("grace-period = \"0s\"", "grace-period = \"60s\"");
    let mut fd = Frontdoor::start(ports, &config).await;
    let request = fd.client().get(fd.url("/courses/c1/manual_update"));
    let in_flight = tokio::spawn(async move { request.send().await.map(|r| r.status()) });
    fd.wait_metric("frontdoor_requests_in_flight", 1.0).await;
    fd.signal("TERM");
    let status = in_flight
        .await
        .expect("join")
        .expect("the request in flight finished");
    assert_eq!(status, 200);
    assert_eq!(
        fd.wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "{}",
        fd.stderr()
    );
}
