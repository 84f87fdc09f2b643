//! Every Prometheus family frontdoor exports, registered once in [`Metrics::new`].
//!
//! Labels are bounded: route and pool names come from the config (an unmatched request is
//! `route="none"`), status is a class (`2xx`), never a raw path or code.

use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};
use std::time::Duration;

/// The metric families, owned by one struct shared through an `Arc`.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    upstream_response: HistogramVec,
    upstream_connect_failures: IntCounterVec,
    in_flight: IntGauge,
    config_reloads: IntCounterVec,
    tls_handshakes: IntCounterVec,
    asset_requests: IntCounterVec,
    asset_bytes: IntGauge,
    asset_evictions: IntCounter,
    asset_compressions: IntCounterVec,
    asset_bytes_saved: IntCounterVec,
    compressed_responses: IntCounterVec,
    compression_bytes_in: IntCounterVec,
    compression_bytes_out: IntCounterVec,
    jobs: JobMetrics,
}

/// The route label of a request that matched no route.
pub const NO_ROUTE: &str = "none";

impl Metrics {
    /// Registers every family. Fails only on a programming error (a duplicate name).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("frontdoor".to_string()), None)?;
        // 0.5 ms to ~33 s: a cache hit at the low end, a slow export at the high end.
        let latency = exponential_buckets(0.0005, 2.0, 17)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Requests answered, by route and status class.",
            ),
            &["route", "class"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time from the request head's arrival to the end of the response, by route.",
            )
            .buckets(latency.clone()),
            &["route"],
        )?;
        let upstream_response = HistogramVec::new(
            HistogramOpts::new(
                "upstream_response_seconds",
                "Time from choosing a backend to its response head, by pool.",
            )
            .buckets(latency),
            &["pool"],
        )?;
        let upstream_connect_failures = IntCounterVec::new(
            Opts::new(
                "upstream_connect_failures_total",
                "Failed connects to a backend, by pool.",
            ),
            &["pool"],
        )?;
        let in_flight = IntGauge::new("requests_in_flight", "Requests being handled now.")?;
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "config_reloads_total",
                "Config reloads, by result (ok, error).",
            ),
            &["result"],
        )?;
        let tls_handshakes = IntCounterVec::new(
            Opts::new(
                "tls_handshakes_total",
                "Completed TLS handshakes, by protocol version.",
            ),
            &["protocol"],
        )?;
        let asset_requests = IntCounterVec::new(
            Opts::new(
                "asset_requests_total",
                "Asset requests by route and result (hit, miss, bypass).",
            ),
            &["route", "result"],
        )?;
        let asset_bytes = IntGauge::new(
            "asset_cache_bytes",
            "Bytes held by the asset cache, all encodings.",
        )?;
        let asset_evictions = IntCounter::new(
            "asset_evictions_total",
            "Assets evicted to stay within capacity.",
        )?;
        let asset_compressions = IntCounterVec::new(
            Opts::new(
                "asset_compressions_total",
                "Asset variants compressed and kept, by encoding.",
            ),
            &["encoding"],
        )?;
        let asset_bytes_saved = IntCounterVec::new(
            Opts::new(
                "asset_compression_saved_bytes_total",
                "Bytes a compressed variant saves over identity, per asset compressed, by encoding.",
            ),
            &["encoding"],
        )?;
        let compressed_responses = IntCounterVec::new(
            Opts::new(
                "compressed_responses_total",
                "Dynamic responses compressed on the fly, by route and encoding.",
            ),
            &["route", "encoding"],
        )?;
        let compression_bytes_in = IntCounterVec::new(
            Opts::new(
                "compression_in_bytes_total",
                "Bytes of dynamic responses before compression, by route and encoding.",
            ),
            &["route", "encoding"],
        )?;
        let compression_bytes_out = IntCounterVec::new(
            Opts::new(
                "compression_out_bytes_total",
                "Bytes of dynamic responses after compression, by route and encoding.",
            ),
            &["route", "encoding"],
        )?;
        registry.register(Box::new(compressed_responses.clone()))?;
        registry.register(Box::new(compression_bytes_in.clone()))?;
        registry.register(Box::new(compression_bytes_out.clone()))?;
        registry.register(Box::new(asset_requests.clone()))?;
        registry.register(Box::new(asset_bytes.clone()))?;
        registry.register(Box::new(asset_evictions.clone()))?;
        registry.register(Box::new(asset_compressions.clone()))?;
        registry.register(Box::new(asset_bytes_saved.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_response.clone()))?;
        registry.register(Box::new(upstream_connect_failures.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(tls_handshakes.clone()))?;
        let jobs = JobMetrics::register(&registry)?;
        Ok(Metrics {
            registry,
            requests,
            request_duration,
            upstream_response,
            upstream_connect_failures,
            in_flight,
            config_reloads,
            tls_handshakes,
            asset_requests,
            asset_bytes,
            asset_evictions,
            asset_compressions,
            asset_bytes_saved,
            compressed_responses,
            compression_bytes_in,
            compression_bytes_out,
            jobs,
        })
    }

    /// A request started.
    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    /// A request ended with `status` (0 when no response was sent) after `elapsed`.
    pub fn request_finished(&self, route: &str, status: u16, elapsed: Duration) {
        self.in_flight.dec();
        self.requests
            .with_label_values(&[route, status_class(status)])
            .inc();
        self.request_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// A backend of `pool` answered with a response head after `elapsed`.
    pub fn upstream_responded(&self, pool: &str, elapsed: Duration) {
        self.upstream_response
            .with_label_values(&[pool])
            .observe(elapsed.as_secs_f64());
    }

    /// A connect to a backend of `pool` failed.
    pub fn upstream_connect_failed(&self, pool: &str) {
        self.upstream_connect_failures
            .with_label_values(&[pool])
            .inc();
    }

    /// A config reload finished; `ok` is false when the new file was rejected.
    pub fn config_reloaded(&self, ok: bool) {
        self.config_reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// A TLS handshake completed with `protocol` (e.g. `TLSv1.3`).
    pub fn tls_handshake(&self, protocol: &str) {
        // rustls spells versions `TLSv1_3`; anything but 1.2 and 1.3 is folded so the label
        // stays bounded (rustls negotiates nothing else).
        let protocol = match protocol {
            "TLSv1_2" | "TLSv1.2" => "TLSv1.2",
            "TLSv1_3" | "TLSv1.3" => "TLSv1.3",
            _ => "other",
        };
        self.tls_handshakes.with_label_values(&[protocol]).inc();
    }

    /// An asset request of `route` was a `hit`, `miss` or `bypass` (proxied).
    pub fn asset_request(&self, route: &str, result: &'static str) {
        self.asset_requests
            .with_label_values(&[route, result])
            .inc();
    }

    /// The asset cache now holds `bytes`.
    pub fn asset_bytes(&self, bytes: u64) {
        self.asset_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// An asset was evicted for capacity.
    pub fn asset_evicted(&self) {
        self.asset_evictions.inc();
    }

    /// A variant in `encoding` was kept, `saved` bytes smaller than identity.
    pub fn asset_compressed(&self, encoding: &str, saved: usize) {
        self.asset_compressions.with_label_values(&[encoding]).inc();
        self.asset_bytes_saved
            .with_label_values(&[encoding])
            .inc_by(saved as u64);
    }

    /// A dynamic response of `route` was compressed as `outcome` says.
    pub fn response_compressed(&self, route: &str, outcome: &crate::compression::Outcome) {
        let labels = [route, outcome.encoding.token()];
        self.compressed_responses.with_label_values(&labels).inc();
        self.compression_bytes_in
            .with_label_values(&labels)
            .inc_by(outcome.bytes_in);
        self.compression_bytes_out
            .with_label_values(&labels)
            .inc_by(outcome.bytes_out);
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

/// The job families (issue 5), kept together.
struct JobMetrics {
    enqueued: IntCounterVec,
    deduplicated: IntCounterVec,
    succeeded: IntCounterVec,
    failed: IntCounterVec,
    retried: IntCounterVec,
    queued: IntGauge,
    oldest_age: prometheus::Gauge,
    duration: HistogramVec,
}

impl JobMetrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["route"]);
        let m = JobMetrics {
            enqueued: counter("jobs_enqueued_total", "Jobs stored durably, by route.")?,
            deduplicated: counter(
                "jobs_deduplicated_total",
                "Requests answered with an existing job's status (same dedup key), by route.",
            )?,
            succeeded: counter("jobs_succeeded_total", "Jobs the app answered, by route.")?,
            failed: counter(
                "jobs_failed_total",
                "Jobs out of attempts or failed, by route.",
            )?,
            retried: counter(
                "jobs_retried_total",
                "Replays scheduled again after a retryable failure, by route.",
            )?,
            queued: IntGauge::new("jobs_queued", "Jobs queued (due or waiting to retry).")?,
            oldest_age: prometheus::Gauge::new(
                "jobs_oldest_queued_age_seconds",
                "Age of the oldest job waiting for a worker (a retry counts once due).",
            )?,
            // 10 ms to ~3 h: a quick replay to a long manual update behind a queue.
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "job_duration_seconds",
                    "Time from enqueue to finish (done or failed), by route.",
                )
                .buckets(exponential_buckets(0.01, 2.0, 21)?),
                &["route"],
            )?,
        };
        registry.register(Box::new(m.enqueued.clone()))?;
        registry.register(Box::new(m.deduplicated.clone()))?;
        registry.register(Box::new(m.succeeded.clone()))?;
        registry.register(Box::new(m.failed.clone()))?;
        registry.register(Box::new(m.retried.clone()))?;
        registry.register(Box::new(m.queued.clone()))?;
        registry.register(Box::new(m.oldest_age.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        Ok(m)
    }
}

impl Metrics {
    /// A job of `route` was stored.
    pub fn job_enqueued(&self, route: &str) {
        self.jobs.enqueued.with_label_values(&[route]).inc();
    }

    /// A request of `route` was answered with an existing job.
    pub fn job_deduplicated(&self, route: &str) {
        self.jobs.deduplicated.with_label_values(&[route]).inc();
    }

    /// A replay of `route` will be tried again.
    pub fn job_retried(&self, route: &str) {
        self.jobs.retried.with_label_values(&[route]).inc();
    }

    /// A job of `route` finished (`ok`: the app answered) `elapsed` after its enqueue.
    pub fn job_finished(&self, route: &str, ok: bool, elapsed: Duration) {
        let family = if ok {
            &self.jobs.succeeded
        } else {
            &self.jobs.failed
        };
        family.with_label_values(&[route]).inc();
        self.jobs
            .duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// The queue now: `queued` jobs, the oldest waiting `oldest_age`.
    pub fn jobs_depth(&self, queued: u64, oldest_age: Duration) {
        self.jobs
            .queued
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
        self.jobs.oldest_age.set(oldest_age.as_secs_f64());
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
