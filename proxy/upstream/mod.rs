//! Upstream pools: the Passenger backends a route sends requests to, over TCP or a unix
//! socket ([`BackendAddr`]).
//!
//! Selection ([`select`]) is per pool: least busy (the admission controller places slots
//! for pools with `[pools.NAME.admission]`), weighted round robin, or consistent hashing.
//! Backends that are down ([`health`]: active checks, passive ejection) or draining get no
//! new requests. A failed connect moves the request to another backend (at most
//! `connect-retries` times): nothing was sent, so any method may go again. Keep-alive
//! connections are pooled by Pingora per backend address; [`reuse`] says which one an attempt
//! may take and when a request lost on one goes again.

pub mod health;
pub mod reuse;
pub mod select;

pub use crate::backend_addr::{BackendAddr, MAX_UNIX_PATH, UNIX_PREFIX};
pub use health::{BackendState, Backends, Busy, Ejection, HealthChecks, HealthSettings};
pub use select::{Balance, HashKey};

use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::upstreams::peer::HttpPeer;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::admission::{Admission, AdmissionSettings};
use crate::upgraded::UpgradedSettings;
use select::Ring;

/// `[pools.NAME]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Backends (resolved addresses, weights, drain): `backends`, then `backends-file`.
    pub backends: Vec<Backend>,
    /// `backends-file`, watched for changes by the reloader.
    pub backends_file: Option<PathBuf>,
    /// How a backend is chosen.
    pub balance: Balance,
    /// Passive ejection on consecutive connect failures.
    pub ejection: Ejection,
    /// Active health checks; `None`: passive ejection only.
    pub health: Option<HealthSettings>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Per-read timeout.
    pub read_timeout: Duration,
    /// Per-write timeout.
    pub write_timeout: Duration,
    /// Idle keep-alive timeout.
    pub idle_timeout: Duration,
    /// A non-idempotent request goes only on a connection idle less than this (else a new one).
    pub non_idempotent_max_idle: Duration,
    /// Upgraded connections (WebSocket): their cap and idle timeout.
    pub upgraded: UpgradedSettings,
    /// Further backends tried after a connect failure (any method: nothing was sent).
    pub connect_retries: usize,
    /// Slots and queue; `None`: unlimited.
    pub admission: Option<AdmissionSettings>,
}

/// One backend of a pool, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// Resolved address.
    pub addr: BackendAddr,
    /// Share of the traffic relative to the pool's other backends (slots × weight with
    /// admission).
    pub weight: u32,
    /// Gets no new requests; those in flight finish.
    pub drain: bool,
}

/// One pool of backends.
pub struct Pool {
    name: String,
    settings: PoolSettings,
    next: AtomicUsize,
    admission: Option<Arc<Admission>>,
    /// The state of each backend, in `settings.backends` order.
    states: Vec<Arc<BackendState>>,
    /// Weighted round-robin order (indices).
    schedule: Vec<usize>,
    ring: Ring,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Which backends a request used and uses; lives in the request context.
#[derive(Debug, Default)]
pub struct Attempts {
    /// The backend of the first attempt (where an admission slot was taken).
    first: Option<BackendAddr>,
    /// The request's hash key, for `balance = "hash"`.
    key: Option<u64>,
    /// Backends tried, in order.
    tried: Vec<BackendAddr>,
    /// The current attempt counted on its backend.
    busy: Option<Busy>,
    /// Connect attempts made so far.
    pub made: usize,
    /// The request's method is not idempotent (its connection must be recently used).
    non_idempotent: bool,
    /// The request asks to switch protocols (WebSocket).
    upgrade: bool,
    /// The next attempt goes to this backend on a new connection (a reused one failed).
    again: Option<BackendAddr>,
    /// The request was sent again after a reused connection failed (at most once).
    resent: bool,
}

impl Attempts {
    /// Attempts that start on backend `addr` (the one an admission slot was taken on).
    pub fn on_backend(addr: BackendAddr) -> Self {
        Attempts {
            first: Some(addr),
            ..Attempts::default()
        }
    }

    /// Starts on `addr` (the admission slot's backend), keeping the hash key.
    pub fn start_on(&mut self, addr: BackendAddr) {
        self.first = Some(addr);
    }

    /// The backend of the current attempt.
    pub fn current(&self) -> Option<BackendAddr> {
        self.tried.last().copied()
    }

    /// After the current attempt failed: whether the request goes again, on a new connection
    /// to the same backend. At most once per request; see [`reuse`] for when.
    pub fn resend(&mut self, failure: &reuse::Failure) -> bool {
        if self.resent || !failure.may_resend() {
            return false;
        }
        self.resent = true;
        self.again = self.current();
        true
    }

    /// The app has switched protocols: the connection no longer counts as a request in
    /// flight on its backend (least-busy balancing).
    pub fn upgraded(&mut self) {
        self.busy = None;
    }
}

impl Pool {
    /// A pool named `name` with backend states of its own; `admission` is its controller
    /// when it has slots.
    pub fn new(name: &str, settings: PoolSettings, admission: Option<Arc<Admission>>) -> Self {
        let states = settings
            .backends
            .iter()
            .map(|b| Arc::new(BackendState::detached(b.addr)))
            .collect();
        Pool::with_states(name, settings, admission, states)
    }

    /// A pool whose backend states come from `backends` (kept across reloads).
    pub fn build(
        name: &str,
        settings: PoolSettings,
        admission: Option<Arc<Admission>>,
        backends: &Backends,
    ) -> Self {
        let states = settings
            .backends
            .iter()
            .map(|b| backends.state(name, b.addr))
            .collect();
        Pool::with_states(name, settings, admission, states)
    }

    fn with_states(
        name: &str,
        settings: PoolSettings,
        admission: Option<Arc<Admission>>,
        states: Vec<Arc<BackendState>>,
    ) -> Self {
        // Draining backends take no turn (a down one's turn passes to the next in order).
        let weights: Vec<u32> = settings
            .backends
            .iter()
            .map(|b| if b.drain { 0 } else { b.weight })
            .collect();
        let ring = match settings.balance {
            Balance::Hash(_) => Ring::new(
                &settings
                    .backends
                    .iter()
                    .map(|b| (b.addr, b.weight))
                    .collect::<Vec<_>>(),
            ),
            _ => Ring::default(),
        };
        Pool {
            name: name.to_string(),
            schedule: select::schedule(&weights),
            ring,
            settings,
            next: AtomicUsize::new(0),
            admission,
            states,
        }
    }

    /// The admission controller, when the pool has `[pools.NAME.admission]`.
    pub fn admission(&self) -> Option<&Arc<Admission>> {
        self.admission.as_ref()
    }

    /// The pool's name (the `pool` metrics label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The validated settings.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Each backend's state, in config order.
    pub fn states(&self) -> &[Arc<BackendState>] {
        &self.states
    }

    /// Whether backend `i` may get a new request: up and not draining.
    fn eligible(&self, i: usize) -> bool {
        self.settings.backends.get(i).is_some_and(|b| !b.drain) && self.states[i].is_up()
    }

    /// Whether some backend may get a new request (else the pool answers 503 at once).
    pub fn any_up(&self) -> bool {
        (0..self.states.len()).any(|i| self.eligible(i))
    }

    /// Attempts for a request: its hash key computed once, when the pool hashes.
    pub fn attempts_for(&self, head: &RequestHeader, client: Option<IpAddr>) -> Attempts {
        let attempts = Attempts {
            non_idempotent: !head.method.is_idempotent(),
            upgrade: crate::upgraded::requested(head),
            ..Attempts::default()
        };
        let Balance::Hash(key) = &self.settings.balance else {
            return attempts;
        };
        let hashed = match key {
            HashKey::Path => select::hash(head.uri.path().as_bytes()),
            HashKey::PathAndQuery => select::hash(
                head.uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .as_bytes(),
            ),
            HashKey::ClientIp => select::hash(
                client
                    .map(|ip| ip.to_string())
                    .unwrap_or_default()
                    .as_bytes(),
            ),
            HashKey::Header(name) => {
                select::hash(head.headers.get(name).map_or(&[][..], |v| v.as_bytes()))
            }
        };
        Attempts {
            key: Some(hashed),
            ..attempts
        }
    }

    /// The backend round robin or hashing would choose, for admission to place the slot on
    /// (least busy leaves the choice to admission).
    pub fn preferred(&self, attempts: &Attempts) -> Option<BackendAddr> {
        match self.settings.balance {
            Balance::LeastBusy => None,
            _ => self
                .select(attempts.key, &[])
                .map(|i| self.settings.backends[i].addr),
        }
    }

    /// The index of the backend for a new attempt, skipping `tried`; `None` when no
    /// eligible backend is left.
    fn select(&self, key: Option<u64>, tried: &[BackendAddr]) -> Option<usize> {
        let backends = &self.settings.backends;
        let ok = |i: usize| self.eligible(i) && !tried.contains(&backends[i].addr);
        match (&self.settings.balance, key) {
            (Balance::Hash(_), Some(key)) => self.ring.find(key, ok),
            (Balance::LeastBusy, _) => {
                let n = backends.len();
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                crate::admission::least_busy(
                    (0..n)
                        .map(|k| (start + k) % n)
                        .filter(|i| ok(*i))
                        .map(|i| (i, self.states[i].in_flight(), backends[i].weight)),
                )
            }
            _ => {
                let n = self.schedule.len();
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|k| self.schedule[(start + k) % n])
                    .find(|i| ok(*i))
            }
        }
    }

    /// The peer for the next attempt: the admission slot's backend first (or the backend a
    /// request lost on a reused connection goes again to), else the pool's choice among
    /// eligible backends not tried yet. When none is eligible (a race with a backend going
    /// down), a backend not tried yet, else the first: never no peer.
    pub fn peer(&self, attempts: &mut Attempts) -> Box<HttpPeer> {
        let backends = &self.settings.backends;
        let again = attempts.again.take();
        let index = match again.or(attempts.first.filter(|_| attempts.made == 0)) {
            Some(first) => backends.iter().position(|b| b.addr == first),
            None => self.select(attempts.key, &attempts.tried),
        }
        .or_else(|| {
            backends
                .iter()
                .position(|b| !attempts.tried.contains(&b.addr))
        })
        .unwrap_or(0);
        let addr = match (backends.get(index), self.states.get(index)) {
            (Some(b), Some(state)) => {
                attempts.busy = Some(state.busy());
                b.addr
            }
            // An empty pool cannot validate; keep a peer that refuses rather than panic.
            _ => BackendAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
        };
        attempts.tried.push(addr);
        attempts.made += 1;
        let mut peer = new_peer(addr);
        let connection = reuse::connection(
            reuse::Choice {
                non_idempotent: attempts.non_idempotent,
                fresh: again.is_some(),
                max_idle: self.settings.non_idempotent_max_idle,
                idle_timeout: self.settings.idle_timeout,
            },
            std::time::Instant::now(),
        );
        peer.group_key = connection.group_key;
        let options = &mut peer.options;
        options.connection_timeout = Some(self.settings.connect_timeout);
        // Pingora applies one read timeout to the whole life of an upgrade request: the wait
        // for the 101, then the tunnel (each side's timer restarts on traffic either way).
        options.read_timeout = Some(if attempts.upgrade {
            self.settings.upgraded.idle_timeout
        } else {
            self.settings.read_timeout
        });
        options.write_timeout = Some(self.settings.write_timeout);
        options.idle_timeout = Some(connection.idle_timeout);
        Box::new(peer)
    }

    /// Records a failed connect of the current attempt (passive ejection); then whether
    /// another backend may be tried: retries left and an eligible backend not tried yet.
    pub fn connect_failed(&self, attempts: &Attempts) -> bool {
        if let Some(i) = self.index_of(attempts.current()) {
            self.states[i].connect_failed(self.settings.ejection);
        }
        self.may_retry_connect(attempts) && self.select(attempts.key, &attempts.tried).is_some()
    }

    /// The current attempt connected: its backend's failure streak ends.
    pub fn connected(&self, attempts: &Attempts) {
        if let Some(i) = self.index_of(attempts.current()) {
            self.states[i].connected();
        }
    }

    fn index_of(&self, addr: Option<BackendAddr>) -> Option<usize> {
        let addr = addr?;
        self.settings.backends.iter().position(|b| b.addr == addr)
    }

    /// Whether another backend may be tried after a failed connect (the new connection of a
    /// request sent again after a reused one failed does not count as a connect retry).
    pub fn may_retry_connect(&self, attempts: &Attempts) -> bool {
        attempts.made.saturating_sub(usize::from(attempts.resent)) <= self.settings.connect_retries
    }

    /// Whether at least one backend accepts a TCP connection within the connect timeout.
    pub async fn any_reachable(&self) -> bool {
        for backend in &self.settings.backends {
            if reachable(backend.addr, self.settings.connect_timeout).await {
                return true;
            }
        }
        false
    }
}

/// Why a request frontdoor makes on its own behalf got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The body (declared or read) is over the caller's limit.
    #[error("larger than the limit")]
    TooLarge,
    /// Connect, write or read failed.
    #[error("{0}")]
    Failed(String),
}

/// A GET that frontdoor sends on its own behalf (an asset fill, a cache refresh): the
/// forwarding headers a proxied request would carry, and `Accept-Encoding: identity`, since
/// frontdoor stores identity and compresses itself.
pub fn own_request(path_and_query: &str, host: Option<&str>) -> pingora::Result<RequestHeader> {
    let mut request = RequestHeader::build("GET", path_and_query.as_bytes(), None)?;
    request.insert_header(http::header::HOST, host.unwrap_or("localhost"))?;
    request.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
    request.insert_header(
        crate::headers::X_REQUEST_START,
        crate::headers::request_start_value(SystemTime::now()),
    )?;
    request.insert_header(crate::headers::X_FORWARDED_PROTO, "https")?;
    Ok(request)
}

/// Sends `request` to the next backend of `pool` through `connector` (its keep-alive pool)
/// and reads the whole answer, refusing bodies over `max` bytes. The connection goes back to
/// the pool only after a complete answer.
pub async fn fetch(
    connector: &Connector,
    pool: &Pool,
    request: RequestHeader,
    max: u64,
) -> Result<(Box<ResponseHeader>, Bytes), FetchError> {
    let failed = |e: Box<pingora::Error>| FetchError::Failed(e.to_string());
    let peer = pool.peer(&mut Attempts::default());
    let (mut session, _reused) = connector.get_http_session(&*peer).await.map_err(failed)?;
    session
        .write_request_header(Box::new(request))
        .await
        .map_err(failed)?;
    session.finish_request_body().await.map_err(failed)?;
    session.read_response_header().await.map_err(failed)?;
    // Interim answers (100, 102, 103) come before the final one.
    while session
        .response_header()
        .is_some_and(|h| h.status.is_informational() && h.status.as_u16() != 101)
    {
        session.read_response_header().await.map_err(failed)?;
    }
    let head = session
        .response_header()
        .ok_or_else(|| FetchError::Failed("no response head".into()))?
        .clone();
    let declared = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(FetchError::TooLarge);
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = session.read_response_body().await.map_err(failed)? {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    connector
        .release_http_session(session, &*peer, Some(pool.settings().idle_timeout))
        .await;
    Ok((Box::new(head), exact(body)))
}

/// `buffer`'s bytes in an allocation of their own size. What frontdoor stores lives long, and
/// a buffer grown by doubling holds up to twice its bytes (`freeze` keeps the capacity).
pub fn exact(buffer: BytesMut) -> Bytes {
    if buffer.capacity() > buffer.len() + buffer.len() / 16 {
        Bytes::copy_from_slice(&buffer)
    } else {
        buffer.freeze()
    }
}

/// The Pingora peer of `addr`: plain HTTP/1.1 over TCP or over a unix socket.
fn new_peer(addr: BackendAddr) -> HttpPeer {
    let tcp = |addr: SocketAddr| HttpPeer::new(addr, false, String::new());
    match addr {
        BackendAddr::Tcp(addr) => tcp(addr),
        // A path the kernel refuses (validation bounds its length) gives a peer that fails
        // to connect, like a closed port.
        BackendAddr::Unix(path) => path
            .to_str()
            .and_then(|p| HttpPeer::new_uds(p, false, String::new()).ok())
            .unwrap_or_else(|| tcp(SocketAddr::from(([127, 0, 0, 1], 0)))),
    }
}

async fn reachable(addr: BackendAddr, timeout: Duration) -> bool {
    let connect = async {
        match addr {
            BackendAddr::Tcp(addr) => tokio::net::TcpStream::connect(addr).await.map(drop),
            BackendAddr::Unix(path) => tokio::net::UnixStream::connect(path).await.map(drop),
        }
    };
    matches!(tokio::time::timeout(timeout, connect).await, Ok(Ok(())))
}

#[cfg(test)]
mod tests;
