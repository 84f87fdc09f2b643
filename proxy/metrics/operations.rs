//! Operator-action families: files sent for the app (X-Sendfile), deploys and pool actions.

use prometheus::{IntCounterVec, Opts, Registry};

use super::Metrics;

/// The families of `sendfile` and `operate`.
pub(super) struct OperationsFamilies {
    sendfile: IntCounterVec,
    actions: IntCounterVec,
}

impl OperationsFamilies {
    pub(super) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = OperationsFamilies {
            sendfile: IntCounterVec::new(
                Opts::new(
                    "sendfile_total",
                    "Answers the app left to frontdoor (X-Sendfile, X-Accel-Redirect), by result \
                     (served, missing, refused).",
                ),
                &["result"],
            )?,
            actions: IntCounterVec::new(
                Opts::new(
                    "operator_actions_total",
                    "Operator actions through the admin API (deploy, pause, resume, \
                     maintenance_on, maintenance_off), by pool and result (ok, failed, refused).",
                ),
                &["action", "pool", "result"],
            )?,
        };
        registry.register(Box::new(m.sendfile.clone()))?;
        registry.register(Box::new(m.actions.clone()))?;
        Ok(m)
    }
}

impl Metrics {
    /// An answer naming a file ended with `result` (`served`, `missing`, `refused`).
    pub fn sendfile(&self, result: &str) {
        self.operations.sendfile.with_label_values(&[result]).inc();
    }

    /// An operator `action` on `pool` (a configured pool's name, or `*`) ended with `result`.
    pub fn operator_action(&self, action: &str, pool: &str, result: &str) {
        self.operations
            .actions
            .with_label_values(&[action, pool, result])
            .inc();
    }
}
