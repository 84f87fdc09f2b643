//! Admission control: slots bound what reaches the app, the queue is measured, overload is
//! shed with a polite 503, critical routes are served while sheddable ones are shed, and the
//! capacity view reports the load.

use crate::common::*;
use frontdoor::simulator::SimulatorOptions;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn sim(workers: usize, service_ms: u64) -> Sim {
    Sim::start(SimulatorOptions {
        workers: NonZeroUsize::new(workers).expect("workers"),
        service_time: Duration::from_millis(service_ms),
        manual_update_time: Duration::from_millis(service_ms),
    })
    .await
}

fn admission_config(backend: std::net::SocketAddr, admission: &str) -> String {
    format!(
        r#"
[pools.app]
backends = ["{backend}"]
[pools.app.admission]
{admission}

[[routes]]
name = "course"
path = "/courses/{{school}}/{{title}}"
pool = "app"
priority = "critical"

[[routes]]
name = "training"
path = "/training"
pool = "app"
priority = "sheddable"

[[routes]]
name = "app"
path = "/{{rest*}}"
pool = "app"
"#
    )
}

async fn stats(sim: &Sim) -> serde_json::Value {
    reqwest::get(format!("http://{}/_sim/stats", sim.addr))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_bound_what_reaches_the_app_and_the_wait_is_measured() {
    // The app has 8 workers, but frontdoor is told 3: never more than 3 reach it.
    let sim = sim(8, 100).await;
    let ports = Ports::new();
    let config = admission_config(
        sim.addr,
        "slots = 3\ntarget = \"5s\"\nqueue-timeout = \"20s\"",
    );
    let fd = Frontdoor::start(ports, &config_text(ports, &config)).await;
    let client = fd.client();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (client, url) = (client.clone(), fd.url(&format!("/courses/s{i}/t")));
            tokio::spawn(async move {
                let response = client.get(url).send().await.expect("request");
                let timing = response.headers().get("server-timing").cloned();
                (response.status().as_u16(), timing)
            })
        })
        .collect();
    for task in tasks {
        let (status, timing) = task.await.expect("task");
        assert_eq!(status, 200);
        assert!(
            timing.is_none(),
            "the app's queue entry is not the client's business"
        );
    }
    assert_eq!(stats(&sim).await["max_in_flight"], 3);

    // frontdoor's measured wait and the app's own report (from X-Request-Start) agree: 12
    // requests in batches of 3 × 100 ms wait 0+0+0+100×3+200×3+300×3 = 1.8 s in all.
    let ours = fd.metric("frontdoor_queue_seconds_sum{pool=\"app\"}").await;
    let app = fd
        .metric("frontdoor_app_queue_seconds_sum{pool=\"app\"}")
        .await;
    assert_eq!(
        fd.metric("frontdoor_queue_seconds_count{pool=\"app\"}")
            .await,
        12.0
    );
    assert_eq!(
        fd.metric("frontdoor_app_queue_seconds_count{pool=\"app\"}")
            .await,
        12.0
    );
    // 1.8 s at the least; the upper bound leaves room for a loaded machine, where each 100 ms
    // of service takes longer (the agreement with the app's own figure below is the point).
    assert!((1.7..3.5).contains(&ours), "frontdoor measured {ours} s");
    assert!(
        app >= ours && app - ours < 0.5,
        "the app saw {app} s, frontdoor {ours} s"
    );

    // The capacity view, on /status.json and from `frontdoor status`.
    // The view covers whole seconds: wait for the one these requests ended in to close.
    let mut rows = serde_json::Value::Null;
    for _ in 0..40 {
        rows = reqwest::get(fd.admin_url("/status.json"))
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        if rows[0]["throughput"].as_f64() > Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = &rows[0];
    assert_eq!(row["pool"], "app");
    assert_eq!(row["slots"], 3);
    let mean = row["mean_response_secs"].as_f64().expect("mean");
    assert!((0.1..0.2).contains(&mean), "mean response {mean}");
    let page = reqwest::get(fd.admin_url("/status")).await.expect("page");
    assert!(page.text().await.expect("html").contains("status.json"));
    let admin = format!("127.0.0.1:{}", ports.admin);
    let (code, out, err) = run_cli(&["status", "--admin", &admin], std::path::Path::new("."));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().nth(1).is_some_and(|l| l.starts_with("app ")),
        "{out}"
    );
}

/// Runs `clients` loops of GET `path` for `time`; returns (statuses, a sample 503).
async fn flood(
    fd: &Frontdoor,
    path: &str,
    clients: usize,
    time: Duration,
) -> (Vec<u16>, Option<(reqwest::header::HeaderMap, String)>) {
    let until = Instant::now() + time;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url) = (fd.client(), fd.url(path));
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut sample = None;
                while Instant::now() < until {
                    let response = client.get(&url).send().await.expect("request");
                    let status = response.status().as_u16();
                    if status == 503 && sample.is_none() {
                        let headers = response.headers().clone();
                        sample = Some((headers, response.text().await.expect("body")));
                    } else {
                        let _ = response.bytes().await;
                    }
                    seen.push(status);
                }
                (seen, sample)
            })
        })
        .collect();
    let mut statuses = Vec::new();
    let mut sample = None;
    for task in tasks {
        let (seen, s) = task.await.expect("task");
        statuses.extend(seen);
        sample = sample.or(s);
    }
    (statuses, sample)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_politely_and_ends_and_health_checks_stay_up() {
    let sim = sim(2, 50).await;
    let ports = Ports::new();
    let config = admission_config(
        sim.addr,
        "slots = 2\ntarget = \"10ms\"\ninterval = \"100ms\"\nqueue-timeout = \"3s\"\nretry-after = \"2s\"",
    );
    let fd = Frontdoor::start(ports, &config_text(ports, &config)).await;
    // Health checks answered by frontdoor during the flood, never queued.
    let healthy = Arc::new(AtomicU64::new(0));
    let probe = {
        let (client, url, healthy) = (fd.client(), fd.url("/healthz"), healthy.clone());
        tokio::spawn(async move {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let response = client.get(&url).send().await.expect("healthz");
                if response.status() == 200 {
                    healthy.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // 24 clients against 2 slots × 50 ms (40 req/s): a standing queue.
    let (statuses, sample) = flood(&fd, "/", 24, Duration::from_millis(2000)).await;
    probe.await.expect("probe");
    assert_eq!(healthy.load(Ordering::Relaxed), 20);
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let shed = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(ok + shed, statuses.len(), "only 200 and 503: {statuses:?}");
    assert!(shed > 0 && ok > 0, "{ok} ok, {shed} shed");
    assert_eq!(stats(&sim).await["max_in_flight"], 2);
    let (headers, body) = sample.expect("a 503");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("secs");
    assert!((2..=4).contains(&retry), "Retry-After {retry}");
    assert_eq!(headers["content-type"], "application/json");
    assert!(body.contains("server too busy"), "{body}");
    assert!(
        fd.metric("frontdoor_shed_total{pool=\"app\",priority=\"normal\",reason=\"overload\"}")
            .await
            > 0.0
    );

    // Browsers get a page; after the flood, requests are served again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = fd
        .client()
        .get(fd.url("/"))
        .header("accept", "text/html")
        .send()
        .await;
    assert_eq!(response.expect("after").status(), 200, "shedding ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_routes_are_served_while_sheddable_ones_are_shed() {
    let sim = sim(2, 50).await;
    let ports = Ports::new();
    let config = admission_config(
        sim.addr,
        "slots = 2\nreserved-slots = 1\ntarget = \"10ms\"\ninterval = \"100ms\"\nqueue-timeout = \"3s\"",
    );
    let fd = Frontdoor::start(ports, &config_text(ports, &config)).await;
    let critical = {
        let (client, url) = (fd.client(), fd.url("/courses/mit/physics"));
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..20 {
                let response = client.get(&url).send().await.expect("critical");
                statuses.push(response.status().as_u16());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            statuses
        })
    };
    let (sheddable, sample) = flood(&fd, "/training", 16, Duration::from_millis(1500)).await;
    let critical = critical.await.expect("critical");
    assert!(critical.iter().all(|s| *s == 200), "critical: {critical:?}");
    assert!(sheddable.contains(&503), "sheddable were shed");
    let (headers, _) = sample.expect("a 503");
    assert!(headers.contains_key("retry-after"));
}
