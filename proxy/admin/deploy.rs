//! A deploy without a dropped request (kamal-proxy's `deploy`):
//!
//! 1. the new targets are checked (the pool's `[health]` check, or its defaults, at most a
//!    second apart) until each passes `rise` times in a row; past `timeout` the deploy fails
//!    and nothing has changed: the old backends serve on;
//! 2. the targets become the pool's backends and the old ones drain: they get no new
//!    request, and admission places waiting requests on the targets;
//! 3. once nothing is in flight to the old backends (or `drain-timeout` passed) they leave
//!    the pool, and the deploy is written to the state file.

use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::operate::{addresses, Deployed, OperateError};
use crate::snapshot::Shared;
use crate::upstream::{health, BackendAddr, HealthSettings};

/// How long the old backends must show nothing in flight before they leave: a request that
/// chose its backend just before the switch reaches it within this.
const SETTLED: Duration = Duration::from_millis(200);

/// How often in-flight counts are read while draining.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// The longest pause between two checks of a new target.
const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What to deploy.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// The new targets (one or more).
    pub targets: Vec<SocketAddr>,
    /// How long the targets get to pass their checks.
    pub timeout: Duration,
    /// How long the old backends get to finish their requests.
    pub drain_timeout: Duration,
}

/// What a deploy did.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    /// The pool.
    pub pool: String,
    /// Its backends now.
    pub targets: Vec<SocketAddr>,
    /// Its backends before.
    pub previous: Vec<SocketAddr>,
    /// Whether every request to the old backends finished within `drain-timeout`.
    pub drained: bool,
    /// Requests still on the old backends when they left (not cut: they finish on their own).
    pub left_in_flight: usize,
    /// How long the deploy took, in milliseconds.
    pub took_ms: u128,
}

/// The checks a deploy runs: the pool's, else `[pools.NAME.health]`'s defaults.
fn checks(settings: Option<&HealthSettings>) -> HealthSettings {
    settings.cloned().unwrap_or(HealthSettings {
        path: "/healthz".to_string(),
        host: None,
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        rise: 2,
        fall: 3,
    })
}

/// Checks `target` until it passes `rise` times in a row, or `deadline`; the last failure.
async fn wait_healthy(
    target: SocketAddr,
    settings: &HealthSettings,
    deadline: Instant,
) -> Result<(), String> {
    let interval = settings.interval.min(MAX_CHECK_INTERVAL);
    let mut passes = 0;
    loop {
        if health::check(BackendAddr::Tcp(target), settings).await {
            passes += 1;
            if passes >= settings.rise {
                return Ok(());
            }
        } else {
            passes = 0;
        }
        if Instant::now() + interval > deadline {
            return Err(format!(
                "target {target} did not pass `GET {}` {} times in a row in time",
                settings.path, settings.rise
            ));
        }
        tokio::time::sleep(interval).await;
    }
}

/// Requests in flight to `addrs` of `pool`: sent (counted on the backend) or holding an
/// admission slot there (about to be sent).
fn in_flight(shared: &Shared, pool: &str, addrs: &[SocketAddr]) -> usize {
    let snapshot = shared.snapshot.load();
    let admission = snapshot
        .pools
        .get(pool)
        .and_then(|p| p.admission().cloned());
    addrs
        .iter()
        .map(|addr| {
            let sent = shared
                .backends
                .state(pool, BackendAddr::Tcp(*addr))
                .in_flight();
            let slotted = admission
                .as_ref()
                .map_or(0, |a| a.in_flight_on(BackendAddr::Tcp(*addr)));
            sent.max(slotted)
        })
        .sum()
}

/// Deploys `request` to `pool` (see the module's steps).
pub async fn deploy(
    shared: &Arc<Shared>,
    pool: &str,
    request: DeployRequest,
) -> Result<DeployReport, OperateError> {
    let started = Instant::now();
    let operations = shared.operations.clone();
    let Some(_running) = operations.begin_deploy(pool) else {
        return Err(OperateError::DeployRunning(pool.to_string()));
    };
    if request.targets.is_empty() {
        return Err(OperateError::BadRequest("a deploy needs a target".into()));
    }
    let snapshot = shared.snapshot.load_full();
    let current = snapshot
        .pools
        .get(pool)
        .ok_or_else(|| OperateError::NoPool(pool.to_string()))?;
    let previous = addresses(&current.settings().backends);
    let settings = checks(current.settings().health.as_ref());
    let replaced = shared
        .configured_backends(pool)
        .map_or_else(Vec::new, |b| addresses(&b));

    // 1. Health.
    let deadline = started + request.timeout;
    let mut checks = tokio::task::JoinSet::new();
    for target in request.targets.iter().copied() {
        let settings = settings.clone();
        checks.spawn(async move { wait_healthy(target, &settings, deadline).await });
    }
    let mut failures = Vec::new();
    while let Some(checked) = checks.join_next().await {
        match checked {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => failures.push(failure),
            Err(e) => failures.push(format!("a check failed: {e}")),
        }
    }
    if !failures.is_empty() {
        return Err(OperateError::Unhealthy(format!(
            "{} within {:?}; pool `{pool}` still serves {}",
            failures.join("; "),
            request.timeout,
            list(&previous)
        )));
    }

    // 2. Switch: the targets serve, the old backends drain.
    let draining: Vec<SocketAddr> = previous
        .iter()
        .filter(|a| !request.targets.contains(a))
        .copied()
        .collect();
    let deployed = Deployed {
        targets: request.targets.clone(),
        replaced,
        draining: draining.clone(),
    };
    let written = operations.update(|s| {
        s.deployed.insert(pool.to_string(), deployed.clone());
    });
    shared.reinstall();
    tracing::info!(
        "deploy of pool `{pool}`: {} serve(s), {} drain(s)",
        list(&request.targets),
        list(&draining)
    );

    // 3. Drain.
    let drain_deadline = Instant::now() + request.drain_timeout;
    let mut idle_since: Option<Instant> = None;
    let left = loop {
        let busy = in_flight(shared, pool, &draining);
        let now = Instant::now();
        if busy > 0 {
            idle_since = None;
        } else if now.duration_since(*idle_since.get_or_insert(now)) >= SETTLED {
            break 0;
        }
        if now >= drain_deadline {
            break busy;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    };
    let finished = operations.update(|s| {
        if let Some(d) = s.deployed.get_mut(pool) {
            d.draining.clear();
        }
    });
    shared.reinstall();
    if left > 0 {
        tracing::warn!(
            "deploy of pool `{pool}`: {left} request(s) still on {} after {:?}; they finish on their own",
            list(&draining),
            request.drain_timeout
        );
    }
    written.and(finished)?;
    Ok(DeployReport {
        pool: pool.to_string(),
        targets: request.targets,
        previous,
        drained: left == 0,
        left_in_flight: left,
        took_ms: started.elapsed().as_millis(),
    })
}

fn list(addrs: &[SocketAddr]) -> String {
    if addrs.is_empty() {
        return "nothing".to_string();
    }
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
