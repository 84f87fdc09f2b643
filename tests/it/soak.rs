//! The soak: a steady mixed load (assets, pages, JSON, offloads; HTTP/2 and HTTP/1.1) against
//! two app nodes, with a config reload every few seconds and one app node restarted in the
//! middle. Nothing may fail but what admission sheds, every accepted job must finish, and the
//! process must end where it started: file descriptors back to the baseline, memory flat.
//!
//! CI runs a bounded version (30 s). `benches/soak.sh` runs the long one against the release
//! binary through the same test, with these knobs (all optional):
//! `FRONTDOOR_SOAK_SECS` (run length), `FRONTDOOR_SOAK_RELOAD_SECS` (reload period),
//! `FRONTDOOR_SOAK_RATE` (requests per second), `FRONTDOOR_SOAK_SAMPLE_SECS` (RSS/fd period).

use crate::common::*;
use frontdoor::simulator::SimulatorOptions;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One knob from the environment, or its CI default.
fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn app_options() -> SimulatorOptions {
    SimulatorOptions {
        workers: NonZeroUsize::new(16).expect("nonzero"),
        service_time: Duration::from_millis(5),
        manual_update_time: Duration::from_millis(30),
    }
}

/// The config; `generation` changes a harmless value so each reload installs a new snapshot.
fn config(ports: Ports, apps: [std::net::SocketAddr; 2], generation: u64) -> String {
    config_text(
        ports,
        &format!(
            r#"
[jobs]
store = "embedded"
path = "jobs.redb"
poll-interval = "50ms"

[pools.app]
backends = ["{a}", "{b}"]
connect-timeout = "500ms"
read-timeout = "5s"
idle-timeout = "2s"
eject-after = 2
eject-for = "1s"
[pools.app.health]
path = "/healthz"
interval = "250ms"
timeout = "500ms"
rise = 1
fall = 1
[pools.app.admission]
slots = 12
target = "{target}ms"
queue-timeout = "5s"

[[routes]]
name = "course"
path = "/courses/{{school}}/{{title}}"
pool = "app"
[routes.hints]
preload = [{{ href = "/courses/{{school}}/{{title}}/course.json", as = "fetch" }}]

[[routes]]
name = "course-json"
methods = ["GET", "HEAD"]
path = "/courses/{{school}}/{{title}}/{{data}}"
pool = "app"

[[routes]]
name = "manual-update"
path = "/courses/{{id*}}/manual_update"
pool = "app"
[routes.offload]
key = "{{id}}"
concurrency = 4

[[routes]]
name = "assets"
path = "/assets/{{file*}}"
pool = "app"
[routes.assets]
source = "upstream"

[[routes]]
name = "app"
path = "/{{rest*}}"
pool = "app"
"#,
            a = apps[0],
            b = apps[1],
            target = 20 + generation % 2,
        ),
    )
}

/// What the load saw, by outcome.
#[derive(Default)]
struct Tally {
    by_status: BTreeMap<u16, u64>,
    transport_errors: Vec<String>,
    /// Status URLs of accepted (202) jobs, with the course id each updates.
    jobs: Vec<(String, String)>,
}

/// One request of the mix; `n` picks its kind: 4 assets, 3 pages, 2 JSON, 1 offload in 10.
async fn one_request(
    client: reqwest::Client,
    fd_url: impl Fn(&str) -> String,
    assets: [String; 2],
    n: u64,
    tally: Arc<Mutex<Tally>>,
) {
    let course = format!("s{}/t{}", n % 7, n % 13);
    let (request, job) = match n % 10 {
        0..=3 => (client.get(fd_url(&assets[(n % 2) as usize])), None),
        4..=6 => (client.get(fd_url(&format!("/courses/{course}"))), None),
        7 | 8 => (
            client.get(fd_url(&format!("/courses/{course}/course.json"))),
            None,
        ),
        _ => {
            // A course of its own per update, so dedup never merges two accepted jobs.
            let id = format!("soak/{n}");
            (
                client.post(fd_url(&format!("/courses/{id}/manual_update"))),
                Some(id),
            )
        }
    };
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = response.bytes().await;
            let mut tally = tally.lock().expect("tally");
            if let Err(e) = body {
                tally.transport_errors.push(format!("n={n} body: {e}"));
                return;
            }
            *tally.by_status.entry(status).or_default() += 1;
            if let (202, Some(location), Some(id)) = (status, location, job) {
                tally.jobs.push((location, id));
            }
        }
        Err(e) => tally
            .lock()
            .expect("tally")
            .transport_errors
            .push(format!("n={n}: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_with_reloads_and_an_app_restart_loses_nothing_and_leaks_nothing() {
    let duration = Duration::from_secs(knob("FRONTDOOR_SOAK_SECS", 30));
    let reload_every = Duration::from_secs(knob("FRONTDOOR_SOAK_RELOAD_SECS", 3));
    let rate = knob("FRONTDOOR_SOAK_RATE", 60);
    let sample_every = Duration::from_secs(knob("FRONTDOOR_SOAK_SAMPLE_SECS", 1));

    let app_a = Sim::start(app_options()).await;
    let mut app_b = Some(Sim::start(app_options()).await);
    let b_addr = app_b.as_ref().expect("app b").addr;
    let apps = [app_a.addr, b_addr];
    let assets = [app_a.assets.js.clone(), app_a.assets.css.clone()];
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config(ports, apps, 0)).await;
    // Let the first health checks land, then take the baseline before any client connects.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (baseline_rss, baseline_fds) = (fd.rss_kib(), fd.open_fds());

    let h2 = fd.client();
    let h1 = fd.client_builder().http1_only().build().expect("h1 client");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut samples: Vec<(Duration, u64, usize)> = Vec::new();
    let mut requests = tokio::task::JoinSet::new();
    let started = Instant::now();
    let (mut next_reload, mut next_sample) = (reload_every, Duration::ZERO);
    let (mut generation, mut restarted) = (0u64, false);
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate.max(1) as u32);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while started.elapsed() < duration {
        ticker.tick().await;
        let elapsed = started.elapsed();
        let client = if n.is_multiple_of(2) {
            h2.clone()
        } else {
            h1.clone()
        };
        let https = ports.https;
        requests.spawn(one_request(
            client,
            move |path: &str| format!("https://localhost:{https}{path}"),
            assets.clone(),
            n,
            tally.clone(),
        ));
        n += 1;
        while requests.try_join_next().is_some() {}
        if elapsed >= next_reload {
            generation += 1;
            fd.rewrite_config(&config(ports, apps, generation));
            next_reload += reload_every;
        }
        if elapsed >= duration / 2 && !restarted {
            // The app node restarts: drains what it holds, is down a moment, comes back.
            drop(app_b.take());
            tokio::time::sleep(Duration::from_millis(500)).await;
            app_b = Some(Sim::start_on(b_addr, app_options()).await);
            restarted = true;
        }
        if elapsed >= next_sample {
            let (rss, fds) = (fd.rss_kib(), fd.open_fds());
            samples.push((elapsed, rss, fds));
            next_sample += sample_every;
        }
    }
    while requests.join_next().await.is_some() {}
    let sent = n;

    // Every accepted job finishes, and the app's own answer names its course.
    let jobs = std::mem::take(&mut tally.lock().expect("tally").jobs);
    let deadline = Instant::now() + Duration::from_secs(60);
    for (location, id) in &jobs {
        loop {
            let status: serde_json::Value = h2
                .get(fd.url(location))
                .send()
                .await
                .expect("job status")
                .json()
                .await
                .expect("job json");
            if status["state"] == "done" {
                let body = status["result"]["body"].as_str().unwrap_or_default();
                assert!(body.contains(id.as_str()), "{id}: {status}");
                break;
            }
            assert_ne!(status["state"], "failed", "{id}: {status}");
            assert!(Instant::now() < deadline, "{id} never finished: {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let reloads_ok = fd
        .wait_metric(
            "frontdoor_config_reloads_total{result=\"ok\"}",
            generation as f64,
        )
        .await;
    let reload_errors = fd
        .metric("frontdoor_config_reloads_total{result=\"error\"}")
        .await;
    let shed: f64 = fd
        .metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("frontdoor_shed_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |total, count| total + count);

    // Clients gone, pooled app connections idle out (idle-timeout 2 s): descriptors return.
    drop((h1, h2));
    let deadline = Instant::now() + Duration::from_secs(15);
    let final_fds = loop {
        let fds = fd.open_fds();
        if fds <= baseline_fds || Instant::now() > deadline {
            break fds;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let final_rss = fd.rss_kib();

    // The restarted node took its share again once its health check passed.
    let stats: serde_json::Value = reqwest::get(format!("http://{b_addr}/_sim/stats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    let served_after_restart: u64 = stats["by_path"]
        .as_object()
        .map(|paths| {
            paths
                .iter()
                .filter(|(path, _)| !path.starts_with("/healthz"))
                .filter_map(|(_, count)| count.as_u64())
                .sum()
        })
        .unwrap_or(0);

    let tally = tally.lock().expect("tally");
    eprintln!(
        "soak: {sent} requests in {:?} at {rate}/s, {} jobs, {generation} reloads ({reloads_ok} ok, \
         {reload_errors} rejected), app node restarted at {:?}",
        duration,
        jobs.len(),
        duration / 2,
    );
    eprintln!(
        "soak: statuses {:?}, shed {shed:.0}, restarted node served {served_after_restart}",
        tally.by_status
    );
    eprintln!("soak: baseline rss {baseline_rss} KiB, fds {baseline_fds}");
    eprintln!("soak:   t(s)  rss(KiB)  fds");
    for (t, rss, fds) in &samples {
        eprintln!("soak: {:6.1} {rss:9} {fds:4}", t.as_secs_f64());
    }
    eprintln!("soak: after, rss {final_rss} KiB, fds {final_fds}");

    assert!(
        tally.transport_errors.is_empty(),
        "{} transport errors: {:?}",
        tally.transport_errors.len(),
        &tally.transport_errors[..tally.transport_errors.len().min(10)]
    );
    let answered: u64 = tally.by_status.values().sum();
    assert_eq!(answered, sent, "{:?}", tally.by_status);
    let failed: u64 = tally
        .by_status
        .iter()
        .filter(|(status, _)| !matches!(status, 200 | 202 | 503))
        .map(|(_, count)| count)
        .sum();
    assert_eq!(failed, 0, "failed requests: {:?}", tally.by_status);
    let unavailable = tally.by_status.get(&503).copied().unwrap_or(0);
    assert_eq!(
        unavailable as f64, shed,
        "every 503 must be a shed request: {:?}",
        tally.by_status
    );
    assert!(
        served_after_restart > 0,
        "the restarted app node got no traffic"
    );
    assert_eq!(reload_errors, 0.0);
    assert!(
        reloads_ok >= generation as f64,
        "{reloads_ok} of {generation}"
    );
    assert!(
        final_fds <= baseline_fds,
        "descriptors: {baseline_fds} before, {final_fds} after\n{}",
        fd.stderr()
    );
    // Flat memory: the second half of the run holds no more than the first half's peak plus
    // a margin for allocator slack (a leak of even 100 bytes a request exceeds it in the
    // long soak; the bounded CI run mostly proves the measurement works).
    let half = samples.len() / 2;
    let first_peak = samples[..half].iter().map(|s| s.1).max().unwrap_or(0);
    let second_peak = samples[half..].iter().map(|s| s.1).max().unwrap_or(0);
    assert!(
        second_peak <= first_peak + first_peak / 4 + 8 * 1024,
        "RSS grew: first-half peak {first_peak} KiB, second-half peak {second_peak} KiB"
    );
}
