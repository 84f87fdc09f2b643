//! Hot reload under traffic: no request fails, a bad file changes nothing.

use crate::common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Both variants route `/echo/...` somewhere valid; they differ in which pool serves it.
fn variant(a: std::net::SocketAddr, b: std::net::SocketAddr, to: &str) -> String {
    let pools = pools_a_b(a, b);
    format!(
        r#"{pools}
[[routes]]
name = "echo"
path = "/echo/{{rest*}}"
pool = "{to}"

[[routes]]
name = "rest"
path = "/{{rest*}}"
pool = "a"
"#
    )
}

async fn served_by(fd: &Frontdoor, client: &reqwest::Client) -> String {
    Echo::from(
        client
            .get(fd.url("/echo/who"))
            .send()
            .await
            .expect("request"),
    )
    .await
    .node()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_continuous_traffic_fail_no_request() {
    let (a, b) = (Sim::quick().await, Sim::quick().await);
    let ports = Ports::new();
    let configs = [
        config_text(ports, &variant(a.addr, b.addr, "a")),
        config_text(ports, &variant(a.addr, b.addr, "b")),
    ];
    let fd = Frontdoor::start(ports, &configs[0]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut traffic = Vec::new();
    for http1 in [false, false, true, true] {
        let builder = fd.client_builder();
        let client = if http1 { builder.http1_only() } else { builder }
            .build()
            .expect("client");
        let url = fd.url("/echo/traffic");
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        traffic.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let outcome = match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        r.bytes().await.map(|_| ()).map_err(|e| format!("{e:?}"))
                    }
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(format!("{e:?}")),
                };
                match outcome {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("failed during reload: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for i in 0..50 {
        fd.rewrite_config(&configs[(i + 1) % 2]);
        fd.sighup();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for task in traffic {
        task.await.expect("traffic task");
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(
        ok.load(Ordering::Relaxed) >= 100,
        "traffic kept flowing: {}",
        ok.load(Ordering::Relaxed)
    );
    assert!(
        fd.metric("frontdoor_config_reloads_total{result=\"ok\"}")
            .await
            >= 50.0
    );
    assert_eq!(
        fd.metric("frontdoor_config_reloads_total{result=\"error\"}")
            .await,
        0.0
    );
    // The 50th reload left variant "a" in place.
    assert_eq!(served_by(&fd, &fd.client()).await, a.addr.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_is_rejected_and_the_old_rules_keep_serving() {
    let (a, b) = (Sim::quick().await, Sim::quick().await);
    let ports = Ports::new();
    let good = config_text(ports, &variant(a.addr, b.addr, "b"));
    let fd = Frontdoor::start(ports, &good).await;
    let client = fd.client();
    assert_eq!(served_by(&fd, &client).await, b.addr.to_string());

    // Valid TOML that fails validation (an unknown pool), then broken TOML.
    for bad in [
        good.replace("pool = \"b\"", "pool = \"nope\""),
        format!("{good}\n[[routes]\n"),
    ] {
        let before = fd
            .metric("frontdoor_config_reloads_total{result=\"error\"}")
            .await;
        fd.rewrite_config(&bad);
        fd.sighup();
        let mut rejected = false;
        for _ in 0..100 {
            if fd
                .metric("frontdoor_config_reloads_total{result=\"error\"}")
                .await
                > before
            {
                rejected = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(rejected, "the bad file was rejected and counted");
        assert_eq!(
            served_by(&fd, &client).await,
            b.addr.to_string(),
            "old rules still serve"
        );
    }
    assert!(
        fd.stderr()
            .contains("rejected; the old config keeps serving"),
        "{}",
        fd.stderr()
    );
    assert!(
        fd.stderr().contains("frontdoor.toml:"),
        "errors name the file: {}",
        fd.stderr()
    );

    // Fixing the file applies it, without a signal: the watcher sees the new contents.
    fd.rewrite_config(&good.replace("pool = \"b\"", "pool = \"a\""));
    let mut switched = false;
    for _ in 0..100 {
        if served_by(&fd, &client).await == a.addr.to_string() {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(switched, "a good file applies on change alone");
}
