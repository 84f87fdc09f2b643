//! Backend health: active checks (a plain HTTP/1.1 GET per backend, outside the admission
//! queue) and passive ejection (consecutive connect failures take a backend out for a while).
//!
//! The state of each backend lives in [`Backends`], keyed by pool name and address, and
//! survives reloads: a reload that keeps a backend keeps its verdict and its counts.

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BackendAddr, Pool, PoolSettings};
use crate::metrics::{BackendMetrics, Metrics};

/// `[pools.NAME.health]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// Path of the check.
    pub path: String,
    /// `Host` of the check; `None`: the backend's address.
    pub host: Option<String>,
    /// Time between checks of one backend.
    pub interval: Duration,
    /// Longest a check may take (connect, send, read the status line).
    pub timeout: Duration,
    /// Consecutive passes that bring a down backend up.
    pub rise: u32,
    /// Consecutive failures that take an up backend down.
    pub fall: u32,
}

/// Passive ejection: `eject-after` and `eject-for` of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// Consecutive connect failures that eject (0: never).
    pub after: u32,
    /// How long an ejected backend gets no traffic.
    pub duration: Duration,
}

#[derive(Debug, Default)]
struct Verdicts {
    passes: u32,
    fails: u32,
    connect_failures: u32,
    ejected_until: Option<Instant>,
    next_check: Option<Instant>,
    checking: bool,
}

/// What frontdoor knows about one backend of one pool.
#[derive(Debug)]
pub struct BackendState {
    addr: BackendAddr,
    /// The active checks' verdict; up until checks say otherwise.
    checked_up: AtomicBool,
    /// What the `backend_up` gauge last showed (to notice changes).
    shown_up: AtomicBool,
    in_flight: AtomicUsize,
    verdicts: Mutex<Verdicts>,
    metrics: Option<BackendMetrics>,
}

impl BackendState {
    fn new(addr: BackendAddr, metrics: Option<BackendMetrics>) -> Self {
        if let Some(m) = &metrics {
            m.up.set(1);
        }
        BackendState {
            addr,
            checked_up: AtomicBool::new(true),
            shown_up: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
            verdicts: Mutex::new(Verdicts::default()),
            metrics,
        }
    }

    /// A state with no metrics (tests, benches).
    pub fn detached(addr: BackendAddr) -> Self {
        BackendState::new(addr, None)
    }

    fn lock(&self) -> MutexGuard<'_, Verdicts> {
        self.verdicts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The backend's address.
    pub fn addr(&self) -> BackendAddr {
        self.addr
    }

    /// Whether it may get traffic: checks pass (or none run) and it is not ejected.
    pub fn is_up(&self) -> bool {
        if !self.checked_up.load(Ordering::Relaxed) {
            return false;
        }
        self.lock()
            .ejected_until
            .is_none_or(|until| Instant::now() >= until)
    }

    /// Requests this frontdoor has in flight to it (through any pool view).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request to it until the guard drops.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.requests.inc();
        }
        Busy(self.clone())
    }

    /// A connect failed; ejects it after `ejection.after` in a row. True when this ejected it.
    pub fn connect_failed(&self, ejection: Ejection) -> bool {
        let mut v = self.lock();
        v.connect_failures += 1;
        if ejection.after == 0 || v.connect_failures < ejection.after {
            return false;
        }
        v.connect_failures = 0;
        v.ejected_until = Some(Instant::now() + ejection.duration);
        drop(v);
        if let Some(m) = &self.metrics {
            m.ejections.inc();
            m.up.set(0);
        }
        self.shown_up.store(false, Ordering::Relaxed);
        tracing::warn!(
            "backend {} ejected for {:?} after {} connect failures",
            self.addr,
            ejection.duration,
            ejection.after
        );
        true
    }

    /// A connect succeeded: the failure streak ends.
    pub fn connected(&self) {
        let mut v = self.lock();
        v.connect_failures = 0;
    }

    /// Records an active check; flips the verdict after `rise` passes or `fall` failures.
    pub fn record_check(&self, passed: bool, settings: &HealthSettings) {
        let mut v = self.lock();
        v.checking = false;
        if let Some(m) = &self.metrics {
            if passed {
                m.checks_passed.inc();
            } else {
                m.checks_failed.inc();
            }
        }
        let up = self.checked_up.load(Ordering::Relaxed);
        if passed {
            v.passes += 1;
            v.fails = 0;
            if !up && v.passes >= settings.rise {
                self.checked_up.store(true, Ordering::Relaxed);
                tracing::info!("backend {} is up: {} checks passed", self.addr, v.passes);
            }
        } else {
            v.fails += 1;
            v.passes = 0;
            if up && v.fails >= settings.fall {
                self.checked_up.store(false, Ordering::Relaxed);
                tracing::warn!("backend {} is down: {} checks failed", self.addr, v.fails);
            }
        }
    }

    /// Whether a check is due now (and marks it started if so).
    fn check_due(&self, interval: Duration, now: Instant) -> bool {
        let mut v = self.lock();
        if v.checking || v.next_check.is_some_and(|at| now < at) {
            return false;
        }
        v.checking = true;
        v.next_check = Some(now + interval);
        true
    }

    /// Updates the `backend_up` gauge; true when the verdict changed since the last call.
    fn refresh(&self) -> bool {
        let up = self.is_up();
        if let Some(m) = &self.metrics {
            m.up.set(i64::from(up));
        }
        self.shown_up.swap(up, Ordering::Relaxed) != up
    }
}

impl crate::admission::Health for BackendState {
    fn is_up(&self) -> bool {
        BackendState::is_up(self)
    }
}

/// A request counted on a backend; dropping it ends the count.
#[derive(Debug)]
pub struct Busy(Arc<BackendState>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every backend's state by pool and address, kept across reloads.
pub struct Backends {
    by_key: Mutex<HashMap<(String, BackendAddr), Arc<BackendState>>>,
    metrics: Arc<Metrics>,
}

impl Backends {
    /// None yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Backends {
            by_key: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// The state of `addr` in `pool` (the same one across reloads).
    pub fn state(&self, pool: &str, addr: BackendAddr) -> Arc<BackendState> {
        let mut by_key = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        by_key
            .entry((pool.to_string(), addr))
            .or_insert_with(|| {
                let metrics = self.metrics.backend(pool, &addr.to_string());
                Arc::new(BackendState::new(addr, Some(metrics)))
            })
            .clone()
    }
}

impl Backends {
    /// Forgets the backends that `pools` (by name) no longer list (state and metric series);
    /// a backend listed again later starts afresh, up.
    pub fn retain(&self, pools: &BTreeMap<String, PoolSettings>) {
        let mut by_key = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        by_key.retain(|(pool, addr), _| {
            let listed = pools
                .get(pool)
                .is_some_and(|p| p.backends.iter().any(|b| b.addr == *addr));
            if !listed {
                self.metrics.forget_backend(pool, &addr.to_string());
            }
            listed
        });
    }
}

/// A connection to a backend, over TCP or a unix socket.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// One check: `GET path` over a new connection; passes on a 2xx or 3xx status line.
pub async fn check(addr: BackendAddr, settings: &HealthSettings) -> bool {
    let (path, timeout) = (&settings.path, settings.timeout);
    let host = settings.host.clone().unwrap_or_else(|| addr.default_host());
    let attempt = async {
        let mut stream: Box<dyn Stream> = match addr {
            BackendAddr::Tcp(addr) => Box::new(tokio::net::TcpStream::connect(addr).await?),
            BackendAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: frontdoor-health-check\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::with_capacity(64);
        let mut buf = [0u8; 256];
        while !head.contains(&b'\n') && head.len() < 1024 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(head)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(head)) => {
            let line = String::from_utf8_lossy(&head);
            let status = line.split_whitespace().nth(1).unwrap_or("");
            status.len() == 3 && (status.starts_with('2') || status.starts_with('3'))
        }
        _ => false,
    }
}

/// How often the checker looks for due checks and refreshes the `backend_up` gauges.
const TICK: Duration = Duration::from_millis(100);

/// The pools in service now (they change with reloads).
pub type CurrentPools = Box<dyn Fn() -> Vec<Arc<Pool>> + Send + Sync>;

/// The background service that runs the checks of every pool with `[pools.NAME.health]`.
pub struct HealthChecks {
    pools: CurrentPools,
}

impl HealthChecks {
    /// Checks for the pools `pools` returns (asked again at each tick).
    pub fn new(pools: CurrentPools) -> Self {
        HealthChecks { pools }
    }

    fn tick(&self) {
        let now = Instant::now();
        for pool in (self.pools)() {
            let mut changed = false;
            for state in pool.states() {
                changed |= state.refresh();
                let Some(settings) = &pool.settings().health else {
                    continue;
                };
                if state.check_due(settings.interval, now) {
                    let (state, settings) = (state.clone(), settings.clone());
                    tokio::spawn(async move {
                        let passed = check(state.addr, &settings).await;
                        state.record_check(passed, &settings);
                    });
                }
            }
            // A backend back up frees slots for the queue.
            if let (true, Some(admission)) = (changed, pool.admission()) {
                admission.nudge();
            }
        }
    }
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => self.tick(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HealthSettings {
        HealthSettings {
            path: "/healthz".into(),
            host: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }

    #[test]
    fn checks_take_a_backend_down_after_fall_and_up_after_rise() {
        let s = BackendState::detached(BackendAddr::Tcp("127.0.0.1:1".parse().unwrap()));
        let h = settings();
        s.record_check(false, &h);
        s.record_check(false, &h);
        assert!(s.is_up());
        s.record_check(false, &h);
        assert!(!s.is_up());
        s.record_check(true, &h);
        assert!(!s.is_up());
        s.record_check(true, &h);
        assert!(s.is_up());
    }

    #[test]
    fn consecutive_connect_failures_eject_for_a_while() {
        let s = BackendState::detached(BackendAddr::Tcp("127.0.0.1:1".parse().unwrap()));
        let e = Ejection {
            after: 2,
            duration: Duration::from_millis(30),
        };
        assert!(!s.connect_failed(e));
        s.connected();
        assert!(!s.connect_failed(e));
        assert!(s.connect_failed(e));
        assert!(!s.is_up());
        std::thread::sleep(Duration::from_millis(40));
        assert!(s.is_up(), "back after eject-for");
    }

    #[tokio::test]
    async fn a_check_passes_on_2xx_and_fails_on_a_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        });
        assert!(check(addr.into(), &settings()).await);
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        assert!(!check(closed.into(), &settings()).await);
    }
}
