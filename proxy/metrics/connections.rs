//! Connection families: upgraded connections (WebSocket, ActionCable) by pool, and the
//! requests sent to the app again (retries) by pool and reason.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::Metrics;

/// The families, registered once.
pub(super) struct ConnectionFamilies {
    upgraded: IntGaugeVec,
    upgraded_opened: IntCounterVec,
    upgraded_closed: IntCounterVec,
    upgraded_refused: IntCounterVec,
    retries: IntCounterVec,
}

impl ConnectionFamilies {
    pub(super) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let pool = &["pool"];
        let upgraded = IntGaugeVec::new(
            Opts::new(
                "upgraded_connections",
                "Upgraded connections (WebSocket) open now, by pool; they hold no admission slot.",
            ),
            pool,
        )?;
        let upgraded_opened = IntCounterVec::new(
            Opts::new(
                "upgraded_connections_opened_total",
                "Connections the app switched protocols on (101 relayed), by pool.",
            ),
            pool,
        )?;
        let upgraded_closed = IntCounterVec::new(
            Opts::new(
                "upgraded_connections_closed_total",
                "Upgraded connections closed (either side, idle timeout, shutdown), by pool.",
            ),
            pool,
        )?;
        let upgraded_refused = IntCounterVec::new(
            Opts::new(
                "upgraded_connections_refused_total",
                "Upgrade requests answered 503 because the pool had max-upgraded open, by pool.",
            ),
            pool,
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "upstream_retries_total",
                "Requests sent to the app again, by pool and reason: connect_failed (to another \
                 backend; nothing had been sent) or reused_connection (once, on a new connection, \
                 after a kept-alive connection failed before the response head).",
            ),
            &["pool", "reason"],
        )?;
        registry.register(Box::new(upgraded.clone()))?;
        registry.register(Box::new(upgraded_opened.clone()))?;
        registry.register(Box::new(upgraded_closed.clone()))?;
        registry.register(Box::new(upgraded_refused.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        Ok(ConnectionFamilies {
            upgraded,
            upgraded_opened,
            upgraded_closed,
            upgraded_refused,
            retries,
        })
    }
}

/// One pool's upgraded-connection metrics, labelled once.
#[derive(Debug, Clone)]
pub struct UpgradedMetrics {
    /// `frontdoor_upgraded_connections`.
    pub open: IntGauge,
    /// `frontdoor_upgraded_connections_opened_total`.
    pub opened: IntCounter,
    /// `frontdoor_upgraded_connections_closed_total`.
    pub closed: IntCounter,
    /// `frontdoor_upgraded_connections_refused_total`.
    pub refused: IntCounter,
}

/// Why a request was sent to the app again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A connect failed; another backend is tried.
    ConnectFailed,
    /// A kept-alive connection failed before the response head; a new one is tried.
    ReusedConnection,
}

impl Retry {
    fn label(self) -> &'static str {
        match self {
            Retry::ConnectFailed => "connect_failed",
            Retry::ReusedConnection => "reused_connection",
        }
    }
}

impl Metrics {
    /// The upgraded-connection families of `pool` (a name from the config: bounded).
    pub fn upgraded(&self, pool: &str) -> UpgradedMetrics {
        let f = &self.connections;
        UpgradedMetrics {
            open: f.upgraded.with_label_values(&[pool]),
            opened: f.upgraded_opened.with_label_values(&[pool]),
            closed: f.upgraded_closed.with_label_values(&[pool]),
            refused: f.upgraded_refused.with_label_values(&[pool]),
        }
    }

    /// A request of `pool` is sent to the app again, for `why`.
    pub fn upstream_retry(&self, pool: &str, why: Retry) {
        self.connections
            .retries
            .with_label_values(&[pool, why.label()])
            .inc();
    }
}
