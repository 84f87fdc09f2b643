//! What an operator does to a running frontdoor: deploy a new app target, pause a pool while
//! the app restarts, put the site in maintenance. Actions come through the admin listener
//! (`admin::actions`; `frontdoor deploy|pause|resume|maintenance` is its client, [`client`]) and are
//! remembered in a small JSON state file, so a restarted frontdoor serves what it served.
//!
//! - **deploy** (`admin::deploy`): the new targets are health-checked, then serve the pool instead
//!   of its backends, which drain (no new requests; those in flight finish) and leave. The
//!   targets replace the pool's backends until the config's own list for the pool changes:
//!   the later of the two wins.
//! - **pause**: the pool's admission queue holds every new request (`admission::pause`).
//! - **maintenance**: requests of the pool (or of every pool) get the maintenance page.

pub mod client;
mod state;

pub use state::{Deployed, State};

use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::upstream::{Backend, BackendAddr, PoolSettings};

/// The pool name standing for every pool in maintenance.
pub const EVERY_POOL: &str = "*";

/// The admin token: lets a peer other than loopback act.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token (validated by the config: 16+ visible ASCII characters).
    pub fn new(token: String) -> Self {
        Token(token)
    }

    /// Whether `presented` is the token, compared in constant time (the time depends on the
    /// lengths only, never on where the first difference is).
    pub fn matches(&self, presented: &str) -> bool {
        let (ours, theirs) = (self.0.as_bytes(), presented.as_bytes());
        let mut difference = u8::from(ours.len() != theirs.len());
        for (i, b) in ours.iter().enumerate() {
            difference |= b ^ theirs.get(i).copied().unwrap_or(0);
        }
        std::hint::black_box(difference) == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// `[admin]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// The token, if any; without one only loopback peers may act.
    pub token: Option<Token>,
    /// Where actions are remembered (read at start).
    pub state_file: PathBuf,
}

/// Why an action was not done.
#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    /// No pool of that name.
    #[error("no pool named `{0}`")]
    NoPool(String),
    /// Pausing needs the pool's queue.
    #[error("pool `{0}` has no [pools.{0}.admission] queue to hold requests in")]
    NoQueue(String),
    /// Another deploy of the pool runs.
    #[error("a deploy of pool `{0}` is already running")]
    DeployRunning(String),
    /// A target that is not `host:port`, or none.
    #[error("{0}")]
    BadRequest(String),
    /// The new targets did not pass their health checks in time; nothing changed.
    #[error("{0}")]
    Unhealthy(String),
    /// The state file could not be written (the action was applied; a restart forgets it).
    #[error("state file {path}: {error}")]
    State {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
}

/// The operator's actions in force, shared by the admin API, the request path (maintenance)
/// and every config install (deploys, pauses).
pub struct Operations {
    path: PathBuf,
    /// Read on the request path (one load); replaced whole under `write`.
    state: ArcSwap<State>,
    write: Mutex<()>,
    /// Pools with a deploy running.
    deploying: Mutex<Vec<String>>,
}

impl Operations {
    /// The actions remembered in `path` (none if it does not exist; a file that cannot be read
    /// is logged and set aside, so frontdoor serves its config rather than not at all).
    pub fn load(path: &Path) -> Self {
        let state = State::read(path).unwrap_or_else(|e| {
            tracing::error!(
                "operator state {}: {e}; starting without it",
                path.display()
            );
            State::default()
        });
        Operations {
            path: path.to_path_buf(),
            state: ArcSwap::from_pointee(state),
            write: Mutex::new(()),
            deploying: Mutex::new(Vec::new()),
        }
    }

    /// The state now.
    pub fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    /// Whether requests of `pool` get the maintenance page.
    pub fn in_maintenance(&self, pool: &str) -> bool {
        let state = self.state.load();
        !state.maintenance.is_empty()
            && (state.maintenance.contains(EVERY_POOL) || state.maintenance.contains(pool))
    }

    /// Whether `pool` is paused.
    pub fn paused(&self, pool: &str) -> bool {
        self.state.load().paused.contains(pool)
    }

    /// Changes the state with `change` and writes it to the file; the new state serves even
    /// if the write fails (the error says so).
    pub fn update(&self, change: impl FnOnce(&mut State)) -> Result<Arc<State>, OperateError> {
        let _write = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = State::clone(&self.state.load());
        change(&mut next);
        let next = Arc::new(next);
        self.state.store(next.clone());
        next.write(&self.path)
            .map_err(|error| OperateError::State {
                path: self.path.clone(),
                error,
            })?;
        Ok(next)
    }

    /// Replaces each deployed pool's backends in `pools` (a config about to be installed) by
    /// its targets, with the backends it replaced draining while a deploy drains them. A
    /// deploy whose pool is gone, or whose pool the config now lists other backends for (the
    /// operator edited it since), is dropped: the config wins.
    pub fn apply(&self, pools: &mut BTreeMap<String, PoolSettings>) {
        let state = self.state.load();
        let stale: Vec<String> = state
            .deployed
            .iter()
            .filter(|(name, deployed)| {
                pools
                    .get(*name)
                    .is_none_or(|p| addresses(&p.backends) != deployed.replaced)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for (name, deployed) in &state.deployed {
            let Some(pool) = pools.get_mut(name).filter(|_| !stale.contains(name)) else {
                continue;
            };
            let draining = deployed.draining.iter().map(|addr| Backend {
                addr: BackendAddr::Tcp(*addr),
                weight: pool
                    .backends
                    .iter()
                    .find(|b| b.addr == BackendAddr::Tcp(*addr))
                    .map_or(1, |b| b.weight),
                drain: true,
            });
            let targets = deployed.targets.iter().map(|addr| Backend {
                addr: BackendAddr::Tcp(*addr),
                weight: 1,
                drain: false,
            });
            pool.backends = targets.chain(draining).collect();
        }
        if !stale.is_empty() {
            tracing::info!(
                "the config changed the backends of deployed pool(s) {}: the config's serve",
                stale.join(", ")
            );
            if let Err(e) = self.update(|s| s.deployed.retain(|name, _| !stale.contains(name))) {
                tracing::warn!("{e}");
            }
        }
    }

    /// Marks a deploy of `pool` running; `None` if one already is. The guard ends it.
    pub fn begin_deploy(self: &Arc<Self>, pool: &str) -> Option<DeployGuard> {
        let mut deploying = self
            .deploying
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if deploying.iter().any(|p| p == pool) {
            return None;
        }
        deploying.push(pool.to_string());
        Some(DeployGuard {
            operations: self.clone(),
            pool: pool.to_string(),
        })
    }
}

/// A deploy running; dropping it lets the next one start.
pub struct DeployGuard {
    operations: Arc<Operations>,
    pool: String,
}

impl Drop for DeployGuard {
    fn drop(&mut self) {
        let mut deploying = self
            .operations
            .deploying
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        deploying.retain(|p| *p != self.pool);
    }
}

/// The TCP addresses of `backends`, in order (a deploy's targets and drained backends are
/// `host:port`s; a unix socket backend is never a deploy target).
pub fn addresses(backends: &[Backend]) -> Vec<SocketAddr> {
    backends.iter().filter_map(|b| b.addr.tcp()).collect()
}

#[cfg(test)]
mod tests;
