//! ACME families: orders by result and the served certificate's expiry.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use super::Metrics;

/// The certificate families (issue 17).
pub(super) struct AcmeFamilies {
    orders: IntCounterVec,
    expiry: IntGauge,
}

impl AcmeFamilies {
    pub(super) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let orders = IntCounterVec::new(
            Opts::new(
                "acme_orders_total",
                "ACME certificate orders by result (issued, failed).",
            ),
            &["result"],
        )?;
        let expiry = IntGauge::new(
            "acme_certificate_expiry_timestamp_seconds",
            "When the ACME certificate served now expires (Unix time); 0 while there is none.",
        )?;
        registry.register(Box::new(orders.clone()))?;
        registry.register(Box::new(expiry.clone()))?;
        Ok(AcmeFamilies { orders, expiry })
    }
}

impl Metrics {
    /// An ACME order ended: `issued` or `failed`.
    pub fn acme_order(&self, result: &'static str) {
        self.acme.orders.with_label_values(&[result]).inc();
    }

    /// The ACME certificate served now expires at `unix_seconds`.
    pub fn acme_certificate_expiry(&self, unix_seconds: i64) {
        self.acme.expiry.set(unix_seconds);
    }
}
