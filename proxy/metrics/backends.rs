//! Backend families: up, requests, ejections and health checks, by pool and backend.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::Metrics;

/// The balancing families (issue 7): per backend, by pool and address.
pub(super) struct BackendFamilies {
    up: IntGaugeVec,
    requests: IntCounterVec,
    ejections: IntCounterVec,
    checks: IntCounterVec,
}

impl BackendFamilies {
    pub(super) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let labels = &["pool", "backend"];
        let up = IntGaugeVec::new(
            Opts::new(
                "backend_up",
                "1 when a backend may get traffic (health checks pass, not ejected), by pool and backend.",
            ),
            labels,
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "backend_requests_total",
                "Requests sent to a backend (each connect attempt), by pool and backend.",
            ),
            labels,
        )?;
        let ejections = IntCounterVec::new(
            Opts::new(
                "backend_ejections_total",
                "Backends taken out after consecutive connect failures, by pool and backend.",
            ),
            labels,
        )?;
        let checks = IntCounterVec::new(
            Opts::new(
                "health_checks_total",
                "Active health checks, by pool, backend and result (passed, failed).",
            ),
            &["pool", "backend", "result"],
        )?;
        registry.register(Box::new(up.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(ejections.clone()))?;
        registry.register(Box::new(checks.clone()))?;
        Ok(BackendFamilies {
            up,
            requests,
            ejections,
            checks,
        })
    }
}

/// One backend's metrics, labelled.
#[derive(Debug, Clone)]
pub struct BackendMetrics {
    /// `frontdoor_backend_up`.
    pub up: IntGauge,
    /// `frontdoor_backend_requests_total`.
    pub requests: IntCounter,
    /// `frontdoor_backend_ejections_total`.
    pub ejections: IntCounter,
    /// `frontdoor_health_checks_total{result="passed"}`.
    pub checks_passed: IntCounter,
    /// `frontdoor_health_checks_total{result="failed"}`.
    pub checks_failed: IntCounter,
}

impl Metrics {
    /// Drops the series of a backend no pool lists any more, so that addresses that come and
    /// go with deploys do not pile up.
    pub fn forget_backend(&self, pool: &str, addr: &str) {
        let f = &self.backends;
        let _ = f.up.remove_label_values(&[pool, addr]);
        let _ = f.requests.remove_label_values(&[pool, addr]);
        let _ = f.ejections.remove_label_values(&[pool, addr]);
        for result in ["passed", "failed"] {
            let _ = f.checks.remove_label_values(&[pool, addr, result]);
        }
    }

    /// The families of one backend of `pool`, labelled once (pool name and address come
    /// from the config, so the label set stays bounded).
    pub fn backend(&self, pool: &str, addr: &str) -> BackendMetrics {
        let f = &self.backends;
        BackendMetrics {
            up: f.up.with_label_values(&[pool, addr]),
            requests: f.requests.with_label_values(&[pool, addr]),
            ejections: f.ejections.with_label_values(&[pool, addr]),
            checks_passed: f.checks.with_label_values(&[pool, addr, "passed"]),
            checks_failed: f.checks.with_label_values(&[pool, addr, "failed"]),
        }
    }
}
