//! Balancing across several app nodes: each algorithm's distribution, weights, hash
//! stickiness, a backend killed and restarted under load, every backend down, drain by reload.

use crate::common::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pool `app` with `backends` (TOML array items), `keys` on the pool, a catch-all route,
/// then `tables` (`[pools.app.health]`, `[pools.app.admission]`).
fn pool(backends: &[String], keys: &str, tables: &str) -> String {
    format!(
        r#"
[pools.app]
backends = [{}]
connect-timeout = "500ms"
read-timeout = "5s"
{keys}

[[routes]]
name = "all"
path = "/{{rest*}}"
pool = "app"
{tables}
"#,
        backends.join(", ")
    )
}

fn plain(addr: SocketAddr) -> String {
    format!("\"{addr}\"")
}

async fn node(client: &reqwest::Client, fd: &Frontdoor, path: &str) -> String {
    Echo::from(client.get(fd.url(path)).send().await.expect("request"))
        .await
        .node()
}

/// The value of `family` for backend `addr` of pool `app`.
async fn backend_metric(fd: &Frontdoor, family: &str, addr: SocketAddr) -> f64 {
    let backend = format!("backend=\"{addr}\"");
    fd.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter(|l| l.contains(&backend) && l.contains("pool=\"app\""))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits (up to 15 s) until `frontdoor_backend_up` of `addr` is `up`.
async fn wait_up(fd: &Frontdoor, addr: SocketAddr, up: bool) {
    let want = if up { 1.0 } else { 0.0 };
    let deadline = Instant::now() + Duration::from_secs(15);
    while backend_metric(fd, "frontdoor_backend_up", addr).await != want {
        assert!(Instant::now() < deadline, "{addr} never became up={up}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn reload(fd: &Frontdoor, config: &str) {
    let sample = "frontdoor_config_reloads_total{result=\"ok\"}";
    let before = fd.metric(sample).await;
    fd.rewrite_config(config);
    fd.sighup();
    assert!(
        fd.wait_metric(sample, before + 1.0).await > before,
        "reloaded"
    );
}

fn count(nodes: &[String]) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for n in nodes {
        *by.entry(n.clone()).or_insert(0) += 1;
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_follows_weights() {
    let (a, b, c) = (Sim::quick().await, Sim::quick().await, Sim::quick().await);
    let ports = Ports::new();
    let backends = [
        format!("{{ address = \"{}\", weight = 2 }}", a.addr),
        plain(b.addr),
        plain(c.addr),
    ];
    let config = config_text(ports, &pool(&backends, "balance = \"round-robin\"", ""));
    let fd = Frontdoor::start(ports, &config).await;
    let client = fd.client();
    let mut nodes = Vec::new();
    for _ in 0..40 {
        nodes.push(node(&client, &fd, "/echo").await);
    }
    let by = count(&nodes);
    assert_eq!(by[&a.addr.to_string()], 20, "{by:?}");
    assert_eq!(by[&b.addr.to_string()], 10, "{by:?}");
    assert_eq!(by[&c.addr.to_string()], 10, "{by:?}");
    assert_eq!(
        backend_metric(&fd, "frontdoor_backend_requests_total", a.addr).await,
        20.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_busy_places_concurrent_requests_by_slots_times_weight() {
    let options = frontdoor::simulator::SimulatorOptions {
        manual_update_time: Duration::from_millis(400),
        ..Sim::quick_options()
    };
    let a = Sim::start(options.clone()).await;
    let b = Sim::start(options.clone()).await;
    let c = Sim::start(options).await;
    let ports = Ports::new();
    let backends = [
        format!("{{ address = \"{}\", weight = 2 }}", a.addr),
        plain(b.addr),
        plain(c.addr),
    ];
    let tables = "[pools.app.admission]\nslots = 1\n";
    let fd = Frontdoor::start(ports, &config_text(ports, &pool(&backends, "", tables))).await;
    let client = fd.client();
    // Four slots in all (2 + 1 + 1): four requests held at once fill exactly those.
    let held: Vec<_> = (0..4)
        .map(|i| {
            let request = client.post(fd.url(&format!("/courses/c{i}/manual_update")));
            tokio::spawn(async move {
                let answer: serde_json::Value = request
                    .send()
                    .await
                    .expect("request")
                    .json()
                    .await
                    .expect("json");
                answer["node"].as_str().unwrap_or_default().to_string()
            })
        })
        .collect();
    let mut nodes = Vec::new();
    for h in held {
        nodes.push(h.await.expect("join"));
    }
    let by = count(&nodes);
    assert_eq!(by.get(&a.addr.to_string()), Some(&2), "{by:?}");
    assert_eq!(by.get(&b.addr.to_string()), Some(&1), "{by:?}");
    assert_eq!(by.get(&c.addr.to_string()), Some(&1), "{by:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_busy_without_admission_spreads_sequential_requests() {
    let (a, b, c) = (Sim::quick().await, Sim::quick().await, Sim::quick().await);
    let ports = Ports::new();
    let backends = [plain(a.addr), plain(b.addr), plain(c.addr)];
    let fd = Frontdoor::start(ports, &config_text(ports, &pool(&backends, "", ""))).await;
    let client = fd.client();
    let mut nodes = Vec::new();
    for _ in 0..30 {
        nodes.push(node(&client, &fd, "/echo").await);
    }
    let by = count(&nodes);
    // Nothing in flight between requests: ties rotate, so each gets a third.
    for sim in [&a, &b, &c] {
        assert_eq!(by.get(&sim.addr.to_string()), Some(&10), "{by:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_keeps_each_path_on_one_backend_and_a_drain_moves_only_its_paths() {
    let (a, b, c) = (Sim::quick().await, Sim::quick().await, Sim::quick().await);
    let ports = Ports::new();
    let config = |drain_b: bool| {
        let b_entry = if drain_b {
            format!("{{ address = \"{}\", drain = true }}", b.addr)
        } else {
            plain(b.addr)
        };
        let backends = [plain(a.addr), b_entry, plain(c.addr)];
        config_text(ports, &pool(&backends, "balance = \"hash\"", ""))
    };
    let fd = Frontdoor::start(ports, &config(false)).await;
    let client = fd.client();
    let mut first = HashMap::new();
    for k in 0..40 {
        let path = format!("/echo/course-{k}");
        let n = node(&client, &fd, &path).await;
        for _ in 0..2 {
            assert_eq!(node(&client, &fd, &path).await, n, "{path} stays");
        }
        first.insert(path, n);
    }
    let used: std::collections::HashSet<&String> = first.values().collect();
    assert_eq!(used.len(), 3, "forty paths spread over the three backends");

    reload(&fd, &config(true)).await;
    let b_name = b.addr.to_string();
    for (path, before) in &first {
        let now = node(&client, &fd, path).await;
        if *before == b_name {
            assert_ne!(now, b_name, "{path} left the draining backend");
        } else {
            assert_eq!(&now, before, "{path} did not move");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_under_load_fails_no_request_is_taken_out_and_returns() {
    let (a, c) = (Sim::quick().await, Sim::quick().await);
    let b_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let b = Sim::start_on(b_addr, Sim::quick_options()).await;
    let ports = Ports::new();
    let backends = [plain(a.addr), plain(b_addr), plain(c.addr)];
    let keys = "connect-retries = 2\neject-after = 1\neject-for = \"1s\"";
    let tables =
        "[pools.app.health]\ninterval = \"100ms\"\ntimeout = \"500ms\"\nrise = 2\nfall = 2\n";
    let fd = Frontdoor::start(ports, &config_text(ports, &pool(&backends, keys, tables))).await;

    const CLIENTS: usize = 4;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url) = (fd.client(), fd.url("/echo"));
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    while ok.load(Ordering::Relaxed) < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(b);
    wait_up(&fd, b_addr, false).await;
    let at_kill = ok.load(Ordering::Relaxed);
    while ok.load(Ordering::Relaxed) < at_kill + 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Back on the same port: checks bring it up and it gets requests again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpListener::bind(b_addr).is_err() {
        assert!(Instant::now() < deadline, "port {b_addr} never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = Sim::start_on(b_addr, Sim::quick_options()).await;
    wait_up(&fd, b_addr, true).await;
    let before = b.hits("/echo").await;
    let at_return = ok.load(Ordering::Relaxed);
    while ok.load(Ordering::Relaxed) < at_return + 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.expect("join");
    }
    assert!(
        b.hits("/echo").await > before,
        "the restarted backend serves again"
    );
    // Only requests in flight on the killed backend could fail; the simulator finishes those
    // before it closes, and refused connects move to another backend.
    assert!(
        failed.load(Ordering::Relaxed) <= CLIENTS,
        "{} failed",
        failed.load(Ordering::Relaxed)
    );
    let checks_failed = fd
        .metrics()
        .await
        .lines()
        .any(|l| l.contains("frontdoor_health_checks_total") && l.contains("failed"));
    assert!(checks_failed, "the checks saw it down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_eject_a_backend_without_health_checks() {
    let a = Sim::quick().await;
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let ports = Ports::new();
    let backends = [plain(dead), plain(a.addr)];
    let keys = "balance = \"round-robin\"\neject-after = 2\neject-for = \"1h\"";
    let fd = Frontdoor::start(ports, &config_text(ports, &pool(&backends, keys, ""))).await;
    let client = fd.client();
    for _ in 0..10 {
        assert_eq!(node(&client, &fd, "/echo").await, a.addr.to_string());
    }
    assert_eq!(
        backend_metric(&fd, "frontdoor_backend_ejections_total", dead).await,
        1.0
    );
    wait_up(&fd, dead, false).await;
    let failures = "frontdoor_upstream_connect_failures_total{pool=\"app\"}";
    let before = fd.metric(failures).await;
    for _ in 0..10 {
        assert_eq!(node(&client, &fd, "/echo").await, a.addr.to_string());
    }
    assert_eq!(
        fd.metric(failures).await,
        before,
        "no connect to an ejected backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_down_answers_503_at_once_without_connecting() {
    let dead = [
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
    ];
    let ports = Ports::new();
    let backends = [plain(dead[0]), plain(dead[1])];
    let tables = "[pools.app.health]\ninterval = \"100ms\"\nfall = 1\n";
    let fd = Frontdoor::start(ports, &config_text(ports, &pool(&backends, "", tables))).await;
    for addr in dead {
        wait_up(&fd, addr, false).await;
    }
    let failures = "frontdoor_upstream_connect_failures_total{pool=\"app\"}";
    let before = fd.metric(failures).await;
    let client = fd.client();
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let response = client
            .request(method, fd.url("/echo"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
    }
    assert_eq!(fd.metric(failures).await, before, "no connect attempted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_by_reload_lets_in_flight_requests_finish_and_sends_no_new_ones() {
    let options = frontdoor::simulator::SimulatorOptions {
        manual_update_time: Duration::from_millis(1500),
        ..Sim::quick_options()
    };
    let (a, b) = (Sim::quick().await, Sim::start(options).await);
    let ports = Ports::new();
    let tables = "[pools.app.admission]\nslots = 2\n";
    let config = |backends: &[String]| config_text(ports, &pool(backends, "", tables));
    let fd = Frontdoor::start(ports, &config(&[plain(b.addr)])).await;
    let client = fd.client();
    let slow = {
        let request = client.post(fd.url("/courses/c1/manual_update"));
        tokio::spawn(async move {
            let response = request.send().await.expect("slow request");
            let status = response.status().as_u16();
            let answer: serde_json::Value = response.json().await.expect("json");
            (
                status,
                answer["node"].as_str().unwrap_or_default().to_string(),
            )
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.hits("/courses/c1/manual_update").await == 0 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached b"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let drained = format!("{{ address = \"{}\", drain = true }}", b.addr);
    reload(&fd, &config(&[plain(a.addr), drained])).await;
    for _ in 0..10 {
        assert_eq!(node(&client, &fd, "/echo").await, a.addr.to_string());
    }
    // Removed altogether while its request is still in flight.
    reload(&fd, &config(&[plain(a.addr)])).await;
    assert_eq!(node(&client, &fd, "/echo").await, a.addr.to_string());
    let (status, served_by) = slow.await.expect("join");
    assert_eq!(
        (status, served_by),
        (200, b.addr.to_string()),
        "it finished"
    );
    assert_eq!(b.hits("/echo").await, 0, "no new request reached b");
    let b_label = format!("backend=\"{}\"", b.addr);
    assert!(
        !fd.metrics().await.contains(&b_label),
        "a removed backend's series are gone"
    );
    // Its slot came back: nothing is counted in flight once everything answered.
    let in_flight = "frontdoor_pool_capacity{measure=\"in_flight\",pool=\"app\"}";
    assert_eq!(fd.metric(in_flight).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_backends_file_is_reloaded() {
    let (a, b) = (Sim::quick().await, Sim::quick().await);
    let ports = Ports::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    ca.issue(dir.path(), "localhost", &["localhost", "127.0.0.1"]);
    let list = dir.path().join("backends.txt");
    std::fs::write(&list, format!("# written by deploy\n{}\n", a.addr)).expect("write");
    let rest = pool(&[], "backends-file = \"backends.txt\"", "");
    let fd = Frontdoor::start_in(dir, ca, ports, &config_text(ports, &rest)).await;
    let client = fd.client();
    assert_eq!(node(&client, &fd, "/echo").await, a.addr.to_string());

    let sample = "frontdoor_config_reloads_total{result=\"ok\"}";
    let before = fd.metric(sample).await;
    // As a deploy script would: write aside, rename over; no SIGHUP.
    let aside = fd.dir.path().join("backends.txt.new");
    std::fs::write(&aside, format!("{} 1\n{} drain\n", b.addr, a.addr)).expect("write");
    std::fs::rename(&aside, fd.dir.path().join("backends.txt")).expect("rename");
    assert!(
        fd.wait_metric(sample, before + 1.0).await > before,
        "reloaded"
    );
    for _ in 0..5 {
        assert_eq!(node(&client, &fd, "/echo").await, b.addr.to_string());
    }
}
