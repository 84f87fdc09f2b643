//! Every Prometheus family frontdoor exports, registered once in [`Metrics::new`].
//!
//! Labels are bounded: route and pool names come from the config (an unmatched request is
//! `route="none"`), status is a class (`2xx`), never a raw path or code.

mod acme;
mod admission;
mod backends;
mod caches;
mod connections;
mod jobs;
mod operations;
mod request_buffering;
mod requests;
mod response_buffering;

pub use backends::BackendMetrics;
pub use connections::{Retry, UpgradedMetrics};

use prometheus::{Encoder, Registry, TextEncoder};

/// The metric families, owned by one struct shared through an `Arc`; each group of families
/// lives in its own file with the methods that record into it.
pub struct Metrics {
    registry: Registry,
    requests: requests::RequestsFamilies,
    caches: caches::CachesFamilies,
    admission: admission::AdmissionFamilies,
    jobs: jobs::JobMetrics,
    backends: backends::BackendFamilies,
    acme: acme::AcmeFamilies,
    connections: connections::ConnectionFamilies,
    request_buffering: request_buffering::RequestBufferingFamilies,
    response_buffering: response_buffering::ResponseBufferingFamilies,
    operations: operations::OperationsFamilies,
}

/// The route label of a request that matched no route.
pub const NO_ROUTE: &str = "none";

impl Metrics {
    /// Registers every family. Fails only on a programming error (a duplicate name).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("frontdoor".to_string()), None)?;
        Ok(Metrics {
            requests: requests::RequestsFamilies::register(&registry)?,
            caches: caches::CachesFamilies::register(&registry)?,
            admission: admission::AdmissionFamilies::register(&registry)?,
            jobs: jobs::JobMetrics::register(&registry)?,
            backends: backends::BackendFamilies::register(&registry)?,
            acme: acme::AcmeFamilies::register(&registry)?,
            connections: connections::ConnectionFamilies::register(&registry)?,
            request_buffering: request_buffering::RequestBufferingFamilies::register(&registry)?,
            response_buffering: response_buffering::ResponseBufferingFamilies::register(&registry)?,
            operations: operations::OperationsFamilies::register(&registry)?,
            registry,
        })
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!("metrics encoding failed: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn families_render_with_prefix_and_bounded_labels() {
        let m = Metrics::new().unwrap();
        m.request_started();
        m.request_finished("course", 204, Duration::from_millis(3));
        m.tls_handshake("SSLv3");
        m.tls_handshake("TLSv1_3");
        m.config_reloaded(false);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains("frontdoor_requests_total{class=\"2xx\",route=\"course\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("frontdoor_tls_handshakes_total{protocol=\"other\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("frontdoor_config_reloads_total{result=\"error\"} 1"),
            "{text}"
        );
        assert!(text.contains("frontdoor_requests_in_flight 0"), "{text}");
    }
}
