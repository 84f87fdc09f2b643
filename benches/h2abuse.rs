//! The load of the HTTP/2 abuse run (benches/h2abuse.sh): one mode for SECONDS, reconnecting
//! whenever frontdoor closes the connection, while a probe on its own connection fetches
//! every 20 ms. Prints one JSON line: what was sent, how often frontdoor hung up, and the
//! probe's latencies. frontdoor's CPU time is read by the script from /proc.
//!
//! `cargo bench --bench h2abuse -- certs DIR` writes DIR/ca.pem, DIR/cert.pem, DIR/key.pem;
//! `cargo bench --bench h2abuse -- MODE 127.0.0.1:PORT DIR/ca.pem SECONDS` runs one mode:
//! `normal` (GETs, 16 in flight on 4 connections), `rapid-reset`, `ping-flood`,
//! `settings-flood`, `continuation-flood` (the floods read and discard the answers: the
//! attacker that costs the server most).

#[path = "../tests/it/common/h2wire.rs"]
mod h2wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use h2wire::frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    connections: AtomicU64,
    closed_by_server: AtomicU64,
}

fn write_certs(dir: &str) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let ca = params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("sign");
    let dir = std::path::Path::new(dir);
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("ca.pem");
    std::fs::write(dir.join("cert.pem"), leaf.pem()).expect("cert.pem");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key.pem");
}

/// GETs on `conns` connections, 4 in flight on each, until `end`.
async fn normal(addr: SocketAddr, ca: &str, end: Instant, counts: &Counts, conns: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let tls = h2wire::connect_h2(addr, ca).await;
        let (client, connection) = h2::client::handshake(tls).await.expect("handshake");
        tokio::spawn(connection);
        counts.connections.fetch_add(1, Ordering::Relaxed);
        for _ in 0..4 {
            let mut client = client.clone();
            tasks.spawn(async move {
                let mut answered = 0u64;
                while Instant::now() < end {
                    let request = http::Request::get(format!("https://localhost:{}/", addr.port()))
                        .body(())
                        .expect("request");
                    let Ok(ready) = client.ready().await else {
                        break;
                    };
                    client = ready;
                    let Ok((response, _)) = client.send_request(request, true) else {
                        break;
                    };
                    let Ok(response) = response.await else { break };
                    let mut body = response.into_body();
                    while let Some(Ok(chunk)) = body.data().await {
                        let _ = body.flow_control().release_capacity(chunk.len());
                    }
                    answered += 1;
                }
                answered
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        counts.sent.fetch_add(done.unwrap_or(0), Ordering::Relaxed);
    }
}

/// HEADERS + RST_STREAM(CANCEL) as fast as the h2 library sends them, reconnecting.
async fn rapid_reset(addr: SocketAddr, ca: &str, end: Instant, counts: &Counts) {
    while Instant::now() < end {
        let tls = h2wire::connect_h2(addr, ca).await;
        let Ok((mut client, connection)) = h2::client::handshake(tls).await else {
            continue;
        };
        let connection = tokio::spawn(connection);
        counts.connections.fetch_add(1, Ordering::Relaxed);
        let mut n = 0u64;
        while Instant::now() < end {
            let Ok(ready) = client.ready().await else {
                break;
            };
            client = ready;
            let request = http::Request::get(format!("https://localhost:{}/r/{n}", addr.port()))
                .body(())
                .expect("request");
            let Ok((_, mut stream)) = client.send_request(request, false) else {
                break;
            };
            stream.send_reset(h2::Reason::CANCEL);
            counts.sent.fetch_add(1, Ordering::Relaxed);
            n += 1;
            if n.is_multiple_of(64) {
                tokio::task::yield_now().await;
            }
        }
        if Instant::now() < end {
            counts.closed_by_server.fetch_add(1, Ordering::Relaxed);
        }
        connection.abort();
    }
}

/// `first` once, then batches of `repeated` until `end` or frontdoor hangs up; the answers
/// are read and thrown away.
async fn flood(
    addr: SocketAddr,
    ca: &str,
    end: Instant,
    counts: &Counts,
    first: Vec<u8>,
    repeated: Vec<u8>,
) {
    const BATCH: usize = 256;
    let batch = repeated.repeat(BATCH);
    while Instant::now() < end {
        let tls = h2wire::handshake_h2(addr, ca).await;
        counts.connections.fetch_add(1, Ordering::Relaxed);
        let (mut reader, mut writer) = tokio::io::split(tls);
        let drain = tokio::spawn(async move {
            let mut sink = vec![0u8; 64 * 1024];
            while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let mut open = writer.write_all(&first).await.is_ok();
        while open && Instant::now() < end {
            open = writer.write_all(&batch).await.is_ok();
            if open {
                counts.sent.fetch_add(BATCH as u64, Ordering::Relaxed);
            }
        }
        if !open {
            counts.closed_by_server.fetch_add(1, Ordering::Relaxed);
        }
        drain.abort();
    }
}

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
    if let [certs, dir] = args.as_slice() {
        if certs == "certs" {
            write_certs(dir);
            return;
        }
    }
    let [mode, addr, ca, secs] = args.as_slice() else {
        eprintln!("usage: h2abuse certs DIR | h2abuse MODE ADDR CA_PEM SECONDS");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr.parse().expect("addr");
    let ca = std::fs::read_to_string(ca).expect("ca pem");
    let end = Instant::now() + Duration::from_secs_f64(secs.parse().expect("seconds"));

    // The probe: one request every 20 ms on its own connection.
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let (stop, ca) = (stop.clone(), ca.clone());
        tokio::spawn(async move {
            let tls = h2wire::connect_h2(addr, &ca).await;
            let (mut client, connection) = h2::client::handshake(tls).await.expect("probe");
            tokio::spawn(connection);
            let (mut latencies, mut failures) = (Vec::new(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let request = http::Request::get(format!("https://localhost:{}/", addr.port()))
                    .body(())
                    .expect("request");
                let answered = async {
                    client = client.clone().ready().await.ok()?;
                    let (response, _) = client.send_request(request, true).ok()?;
                    let response = response.await.ok()?;
                    let mut body = response.into_body();
                    while let Some(chunk) = body.data().await {
                        let chunk = chunk.ok()?;
                        let _ = body.flow_control().release_capacity(chunk.len());
                    }
                    Some(())
                };
                match tokio::time::timeout(Duration::from_secs(5), answered).await {
                    Ok(Some(())) => latencies.push(start.elapsed().as_secs_f64() * 1000.0),
                    _ => failures += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (latencies, failures)
        })
    };

    let counts = Counts::default();
    let authority = format!("localhost:{}", addr.port());
    let headers = |flags| {
        frame(
            h2wire::HEADERS,
            flags,
            1,
            &h2wire::get_request(&authority, "/c"),
        )
    };
    match mode.as_str() {
        "normal" => normal(addr, &ca, end, &counts, 4).await,
        "rapid-reset" => rapid_reset(addr, &ca, end, &counts).await,
        "ping-flood" => {
            let ping = frame(h2wire::PING, 0, 0, b"flooding");
            flood(addr, &ca, end, &counts, Vec::new(), ping).await
        }
        "settings-flood" => {
            let settings = frame(h2wire::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 0]);
            flood(addr, &ca, end, &counts, Vec::new(), settings).await
        }
        "continuation-flood" => {
            let empty = frame(h2wire::CONTINUATION, 0, 1, &[]);
            flood(addr, &ca, end, &counts, headers(h2wire::END_STREAM), empty).await
        }
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, failures) = probe.await.expect("probe");
    println!(
        "{{\"mode\":\"{mode}\",\"sent\":{},\"connections\":{},\"closed_by_server\":{},\"probe_ok\":{},\"probe_failures\":{failures},\"probe_p50_ms\":{:.2},\"probe_p99_ms\":{:.2}}}",
        counts.sent.load(Ordering::Relaxed),
        counts.connections.load(Ordering::Relaxed),
        counts.closed_by_server.load(Ordering::Relaxed),
        latencies.len(),
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99),
    );
}
