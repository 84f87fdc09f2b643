//! An open-loop load generator for the overload run (benches/overload.sh): requests start at a
//! fixed arrival rate whatever the server does (as wrk2 does; a closed loop would slow down
//! with the server and hide the overload). A share of them go to a critical URL; a separate
//! probe fetches the health URL every 50 ms. Prints one JSON line of results.
//!
//! `cargo bench --bench overload -- BASE_URL RATE SECONDS NORMAL_PATH CRITICAL_PATH HEALTH_PATH`

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(Default)]
struct Samples {
    ok: Vec<f64>,
    shed: Vec<f64>,
    other: u64,
    errors: u64,
    critical_sent: u64,
    critical_ok: u64,
    /// When the last successful answer arrived (goodput is counted up to it).
    last_ok: Option<Instant>,
    /// Successful answers slower than [`SLOW_MS`], by second of their scheduled start: shows
    /// whether late answers come from the start (before overload is detected) or throughout.
    slow_ok_by_second: Vec<u64>,
}

/// What counts as a slow successful answer in `slow_ok_by_second`.
const SLOW_MS: f64 = 100.0;

fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [base, rate, secs, normal, critical, health] = args.as_slice() else {
        eprintln!("usage: overload BASE_URL RATE SECONDS NORMAL_PATH CRITICAL_PATH HEALTH_PATH");
        std::process::exit(2);
    };
    let rate: f64 = rate.parse().expect("rate");
    let secs: f64 = secs.parse().expect("seconds");
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    let samples = Arc::new(Mutex::new(Samples::default()));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);

    let probe = {
        let (client, url) = (client.clone(), format!("{base}{health}"));
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            while Instant::now() < end {
                let sent = Instant::now();
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => failures += 1,
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (latencies, failures)
        })
    };

    let mut tasks = Vec::new();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut n: u64 = 0;
    loop {
        let due = start + interval.mul_f64(n as f64);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        // Every tenth request is critical.
        let is_critical = n.is_multiple_of(10);
        let url = format!("{base}{}", if is_critical { critical } else { normal });
        let (client, samples) = (client.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            // Latency from the intended start, as an open-loop generator must count it.
            let result = client.get(&url).send().await;
            let status = match result {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let _ = r.bytes().await;
                    Some(status)
                }
                Err(_) => None,
            };
            let ms = due.elapsed().as_secs_f64() * 1000.0;
            let mut s = samples.lock().await;
            if is_critical {
                s.critical_sent += 1;
            }
            match status {
                Some(200..=299) => {
                    s.ok.push(ms);
                    if ms > SLOW_MS {
                        let second = due.duration_since(start).as_secs() as usize;
                        if s.slow_ok_by_second.len() <= second {
                            s.slow_ok_by_second.resize(second + 1, 0);
                        }
                        s.slow_ok_by_second[second] += 1;
                    }
                    s.last_ok = Some(Instant::now());
                    if is_critical {
                        s.critical_ok += 1;
                    }
                }
                Some(503) => s.shed.push(ms),
                Some(_) => s.other += 1,
                None => s.errors += 1,
            }
        }));
        n += 1;
    }
    for task in tasks {
        let _ = task.await;
    }
    let (mut health, health_failures) = probe.await.expect("probe");
    let mut s = samples.lock().await;
    let total = n as f64;
    let ok = s.ok.len() as f64;
    let shed = s.shed.len() as f64;
    let (other, errors) = (s.other, s.errors);
    // Answers still arriving after the last arrival count over the time they took.
    let span = s
        .last_ok
        .map_or(secs, |t| t.duration_since(start).as_secs_f64().max(secs));
    let critical = if s.critical_sent > 0 {
        s.critical_ok as f64 / s.critical_sent as f64
    } else {
        0.0
    };
    let (ok_p50, ok_p99) = (percentile(&mut s.ok, 0.5), percentile(&mut s.ok, 0.99));
    let shed_p99 = percentile(&mut s.shed, 0.99);
    println!(
        "{{\"offered_per_s\":{rate:.0},\"sent\":{n},\"goodput_per_s\":{:.1},\"ok\":{ok},\"shed\":{shed},\"shed_share\":{:.3},\"other\":{},\"errors\":{},\"ok_p50_ms\":{:.1},\"ok_p99_ms\":{:.1},\"shed_p99_ms\":{:.2},\"critical_success\":{:.3},\"healthz_p99_ms\":{:.2},\"healthz_failures\":{health_failures},\"slow_ok_by_second\":{:?}}}",
        ok / span,
        shed / total,
        other,
        errors,
        ok_p50,
        ok_p99,
        shed_p99,
        critical,
        percentile(&mut health, 0.99),
        s.slow_ok_by_second,
    );
}
