//! Hot reload: on SIGHUP, or when the contents of the config file (or of a pool's
//! `backends-file`) change, read, validate and build
//! a whole new snapshot and swap it in. A file that does not validate is logged with every
//! error, counted (`frontdoor_config_reloads_total{result="error"}`) and the old snapshot
//! keeps serving.
//!
//! Listener addresses, threads and shutdown timings belong to the running process; a reload
//! that changes them applies the rest and warns that those need a restart (like nginx, which
//! also cannot change its worker count on HUP without new workers).

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{Config, ConfigErrors};
use crate::snapshot::Shared;

/// How often the file is checked for a change. Cheap (one stat, one read on change).
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The reload background service.
pub struct Reloader {
    path: PathBuf,
    shared: Arc<Shared>,
}

/// What a reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// A new snapshot serves.
    Applied,
    /// The new snapshot serves, but these settings keep their old values until a restart.
    AppliedExceptRestartOnly(Vec<&'static str>),
}

impl Reloader {
    /// A reloader of `path` into `shared`.
    pub fn new(path: PathBuf, shared: Arc<Shared>) -> Self {
        Reloader { path, shared }
    }

    /// Reloads once, now.
    pub fn reload(&self) -> Result<ReloadOutcome, ConfigErrors> {
        let config = Config::load(&self.path).inspect_err(|_| {
            self.shared.metrics.config_reloaded(false);
        })?;
        let current = self.shared.snapshot.load();
        let mut restart_only = Vec::new();
        if config.listen != current.config.listen {
            restart_only.push("listen");
        }
        if config.server != current.config.server {
            restart_only.push("server");
        }
        if config.admin.state_file != current.config.admin.state_file {
            restart_only.push("admin.state-file");
        }
        if config.h2 != current.config.h2 {
            restart_only.push("proxy.h2-*");
        }
        if config.acme != current.config.acme {
            restart_only.push("tls.acme");
        }
        if config.assets != current.config.assets || config.edge_cache != current.config.edge_cache
        {
            restart_only.push("cache");
        }
        // The job store is opened once; the first offload route or schedule needs a start.
        let uses_jobs =
            config.routes.iter().any(|r| r.offload.is_some()) || !config.jobs.schedules.is_empty();
        if config.jobs.store != current.config.jobs.store
            || (uses_jobs && self.shared.jobs.is_none())
        {
            restart_only.push("jobs");
        }
        self.shared.install(config);
        // Counted once the new snapshot serves: whoever sees the count sees the new rules.
        self.shared.metrics.config_reloaded(true);
        Ok(if restart_only.is_empty() {
            ReloadOutcome::Applied
        } else {
            ReloadOutcome::AppliedExceptRestartOnly(restart_only)
        })
    }

    fn reload_and_log(&self, cause: &str) {
        match self.reload() {
            Ok(ReloadOutcome::Applied) => {
                tracing::info!("config reloaded ({cause}): {}", self.path.display())
            }
            Ok(ReloadOutcome::AppliedExceptRestartOnly(sections)) => tracing::warn!(
                "config reloaded ({cause}), but changes to [{}] need a restart to take effect",
                sections.join("], [")
            ),
            Err(errors) => tracing::error!(
                "config reload ({cause}) rejected; the old config keeps serving:\n{errors}"
            ),
        }
    }
}

impl Reloader {
    /// The contents of the config file and of the files it names (`backends-file`), or `None`
    /// while one cannot be read (mid-replace by an editor or a deploy script).
    fn fingerprint(&self) -> Option<Vec<u8>> {
        let mut all = std::fs::read(&self.path).ok()?;
        for file in self.shared.snapshot.load().config.watched_files() {
            all.push(0);
            all.extend(std::fs::read(file).ok()?);
        }
        Some(all)
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!("cannot listen for SIGHUP ({e}); reloading on file change only");
                None
            }
        };
        let mut last = self.fingerprint();
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    last = self.fingerprint();
                    self.reload_and_log("SIGHUP");
                }
                _ = tick.tick() => {
                    let now = self.fingerprint();
                    if now.is_some() && now != last {
                        last = now;
                        self.reload_and_log("file changed");
                    }
                }
            }
        }
    }
}
