//! The admin listener answers whatever the upstream does; connect failures retry safely.

use crate::common::*;
use std::time::Duration;

/// A backend that accepts connections and never answers.
async fn stuck_backend() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

fn dead_backend() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], free_port()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_and_readyz_fails_while_the_upstream_is_down() {
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &one_pool(&[dead_backend()]))).await;
    let health = reqwest::get(fd.admin_url("/healthz"))
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(fd.admin_url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status(), 503);
    assert!(ready
        .text()
        .await
        .expect("body")
        .contains("pool app: unreachable"));
    let proxied = fd.client().get(fd.url("/")).send().await.expect("request");
    assert_eq!(proxied.status(), 502);
    assert!(
        fd.metric("frontdoor_upstream_connect_failures_total{pool=\"app\"}")
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_the_upstream_is_stuck_and_stuck_requests_time_out() {
    let ports = Ports::new();
    let fd = Frontdoor::start(
        ports,
        &config_text(ports, &one_pool(&[stuck_backend().await])),
    )
    .await;
    let client = fd.client();
    let stuck: Vec<_> = (0..8)
        .map(|_| {
            let request = client.get(fd.url("/slow"));
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let health = reqwest::get(fd.admin_url("/healthz"))
            .await
            .expect("healthz");
        assert_eq!(health.status(), 200);
    }
    let ready = reqwest::get(fd.admin_url("/readyz")).await.expect("readyz");
    assert_eq!(
        ready.status(),
        200,
        "a stuck backend still accepts connections"
    );
    for request in stuck {
        assert_eq!(
            request.await.expect("join").expect("response"),
            504,
            "read-timeout is 2s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_retry_every_method_on_another_backend() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let rest = one_pool(&[dead_backend(), sim.addr])
        .replace("read-timeout", "connect-retries = 1\nread-timeout");
    let fd = Frontdoor::start(ports, &config_text(ports, &rest)).await;
    let client = fd.client();
    for _ in 0..6 {
        let response = client.get(fd.url("/echo")).send().await.expect("get");
        assert_eq!(response.status(), 200, "GET moves on to the live backend");
    }
    // A failed connect sent nothing: a POST may go to another backend as safely as a GET.
    for _ in 0..6 {
        let response = client
            .post(fd.url("/echo"))
            .body("x")
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 200, "POST moves on too");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_then_exits() {
    let sim = Sim::start(frontdoor::simulator::SimulatorOptions {
        workers: std::num::NonZeroUsize::new(32).expect("nonzero"),
        service_time: Duration::from_millis(1),
        manual_update_time: Duration::from_millis(1000),
    })
    .await;
    let ports = Ports::new();
    let config = config_text(ports, &one_pool(&[sim.addr]))
        .replace("grace-period = \"0s\"", "grace-period = \"3s\"");
    let mut fd = Frontdoor::start(ports, &config).await;
    let client = fd.client();
    let requests: Vec<_> = (0..20)
        .map(|i| {
            let request = client.get(fd.url(&format!("/courses/c{i}/manual_update")));
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    // Signal only once every request is inside the app, so each is truly in flight.
    let stats = format!("http://{}/_sim/stats", sim.addr);
    for _ in 0..200 {
        let body: serde_json::Value = reqwest::get(&stats)
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        if body["in_flight"].as_u64() == Some(20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fd.signal("TERM");
    for request in requests {
        assert_eq!(
            request
                .await
                .expect("join")
                .expect("in-flight request finished"),
            200
        );
    }
    assert_eq!(
        fd.wait_exit(Duration::from_secs(20)).await,
        Some(0),
        "{}",
        fd.stderr()
    );
}
