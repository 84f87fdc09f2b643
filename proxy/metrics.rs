//! Every Prometheus family frontdoor exports, registered once in [`Metrics::new`].
//!
//! Labels are bounded: route and pool names come from the config (an unmatched request is
//! `route="none"`), status is a class (`2xx`), never a raw path or code.

use prometheus::{
    exponential_buckets, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
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
    edge_cache_requests: IntCounterVec,
    edge_cache_stores: IntCounterVec,
    edge_cache_uncacheable: IntCounterVec,
    edge_cache_refreshes: IntCounterVec,
    edge_cache_bytes: IntGauge,
    edge_cache_evictions: IntCounter,
    edge_cache_bytes_saved: IntCounterVec,
    queue_seconds: HistogramVec,
    app_queue_seconds: HistogramVec,
    shed: IntCounterVec,
    rejected: IntCounterVec,
    queue_length: IntGaugeVec,
    capacity: GaugeVec,
    hints: IntCounterVec,
    jobs: JobMetrics,
    backends: BackendFamilies,
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
        let edge_cache_requests = IntCounterVec::new(
            Opts::new(
                "edge_cache_requests_total",
                "Requests on edge-cache routes, by route and result (hit, stale, miss, bypass).",
            ),
            &["route", "result"],
        )?;
        let edge_cache_stores = IntCounterVec::new(
            Opts::new(
                "edge_cache_stores_total",
                "Responses stored in the edge cache (fills and refreshes), by route.",
            ),
            &["route"],
        )?;
        let edge_cache_uncacheable = IntCounterVec::new(
            Opts::new(
                "edge_cache_uncacheable_total",
                "App responses on edge-cache routes not stored, by route and reason.",
            ),
            &["route", "reason"],
        )?;
        let edge_cache_refreshes = IntCounterVec::new(
            Opts::new(
                "edge_cache_refreshes_total",
                "Refreshes of stale entries, by route and result (stored, uncacheable, error).",
            ),
            &["route", "result"],
        )?;
        let edge_cache_bytes = IntGauge::new(
            "edge_cache_bytes",
            "Bytes held by the edge cache, all encodings.",
        )?;
        let edge_cache_evictions = IntCounter::new(
            "edge_cache_evictions_total",
            "Edge-cache entries evicted to stay within capacity.",
        )?;
        let edge_cache_bytes_saved = IntCounterVec::new(
            Opts::new(
                "edge_cache_compression_saved_bytes_total",
                "Bytes a compressed variant saves over identity, per entry stored, by encoding.",
            ),
            &["encoding"],
        )?;
        let queue_seconds = HistogramVec::new(
            HistogramOpts::new(
                "queue_seconds",
                "Time from arrival at frontdoor to dispatch to the app, by pool (admission pools).",
            )
            .buckets(exponential_buckets(0.0005, 2.0, 15)?),
            &["pool"],
        )?;
        let app_queue_seconds = HistogramVec::new(
            HistogramOpts::new(
                "app_queue_seconds",
                "Queue time the app reported (Server-Timing: queue;dur=), by pool.",
            )
            .buckets(exponential_buckets(0.0005, 2.0, 15)?),
            &["pool"],
        )?;
        let shed = IntCounterVec::new(
            Opts::new(
                "shed_total",
                "Requests answered 503 by admission control, by pool, priority and reason.",
            ),
            &["pool", "priority", "reason"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "rejected_requests_total",
                "Requests refused as hostile or over a limit before reaching the app, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(rejected.clone()))?;
        let queue_length = IntGaugeVec::new(
            Opts::new("queue_length", "Requests waiting for a slot, by pool."),
            &["pool"],
        )?;
        let capacity = GaugeVec::new(
            Opts::new(
                "pool_capacity",
                "The capacity view over the last 10 s, by pool and measure: arrival_rate and \
                 throughput (req/s), response_seconds_mean, carried (throughput × mean response \
                 time), slots, in_flight, utilization (carried / slots), queue_p50_seconds, \
                 queue_p99_seconds, shed_rate (req/s).",
            ),
            &["pool", "measure"],
        )?;
        registry.register(Box::new(queue_seconds.clone()))?;
        registry.register(Box::new(app_queue_seconds.clone()))?;
        registry.register(Box::new(shed.clone()))?;
        registry.register(Box::new(queue_length.clone()))?;
        registry.register(Box::new(capacity.clone()))?;
        registry.register(Box::new(edge_cache_requests.clone()))?;
        registry.register(Box::new(edge_cache_stores.clone()))?;
        registry.register(Box::new(edge_cache_uncacheable.clone()))?;
        registry.register(Box::new(edge_cache_refreshes.clone()))?;
        registry.register(Box::new(edge_cache_bytes.clone()))?;
        registry.register(Box::new(edge_cache_evictions.clone()))?;
        registry.register(Box::new(edge_cache_bytes_saved.clone()))?;
        let hints = IntCounterVec::new(
            Opts::new(
                "hints_total",
                "Hints by route and kind: link (responses given Link hints), early_hints (103 sent), learned_update (a route's learned assets changed), deferred_script (scripts given defer).",
            ),
            &["route", "kind"],
        )?;
        registry.register(Box::new(hints.clone()))?;
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
        let backends = BackendFamilies::register(&registry)?;
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
            edge_cache_requests,
            edge_cache_stores,
            edge_cache_uncacheable,
            edge_cache_refreshes,
            edge_cache_bytes,
            edge_cache_evictions,
            edge_cache_bytes_saved,
            queue_seconds,
            app_queue_seconds,
            shed,
            rejected,
            queue_length,
            capacity,
            hints,
            jobs,
            backends,
        })
    }

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

    /// A request of edge-cache `route` was a `hit`, `stale`, `miss` or `bypass`.
    pub fn edge_cache_request(&self, route: &str, result: &'static str) {
        self.edge_cache_requests
            .with_label_values(&[route, result])
            .inc();
    }

    /// A response of `route` was stored.
    pub fn edge_cache_stored(&self, route: &str) {
        self.edge_cache_stores.with_label_values(&[route]).inc();
    }

    /// A response of `route` was not stored, for `reason` (a fixed word, see
    /// `edge_cache::Uncacheable`).
    pub fn edge_cache_uncacheable(&self, route: &str, reason: &str) {
        self.edge_cache_uncacheable
            .with_label_values(&[route, reason])
            .inc();
    }

    /// A refresh of a stale entry of `route` ended with `result`.
    pub fn edge_cache_refreshed(&self, route: &str, result: &'static str) {
        self.edge_cache_refreshes
            .with_label_values(&[route, result])
            .inc();
    }

    /// The edge cache now holds `bytes`.
    pub fn edge_cache_bytes(&self, bytes: u64) {
        self.edge_cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// An edge-cache entry was evicted for capacity.
    pub fn edge_cache_evicted(&self) {
        self.edge_cache_evictions.inc();
    }

    /// A stored response's `encoding` variant was kept, `saved` bytes smaller than identity.
    pub fn edge_cache_compressed(&self, encoding: &str, saved: usize) {
        self.edge_cache_bytes_saved
            .with_label_values(&[encoding])
            .inc_by(saved as u64);
    }

    /// A request of `pool` waited `wait` in frontdoor's queue before dispatch.
    pub fn queue_waited(&self, pool: &str, wait: Duration) {
        self.queue_seconds
            .with_label_values(&[pool])
            .observe(wait.as_secs_f64());
    }

    /// The app behind `pool` reported that a request queued `wait` inside it.
    pub fn app_queued(&self, pool: &str, wait: Duration) {
        self.app_queue_seconds
            .with_label_values(&[pool])
            .observe(wait.as_secs_f64());
    }

    /// A request of `priority` to `pool` was shed for `reason`.
    pub fn shed(&self, pool: &str, priority: &str, reason: crate::admission::Shed) {
        self.shed
            .with_label_values(&[pool, priority, &reason.to_string()])
            .inc();
    }

    /// A request was refused for `reason` (a fixed word of `hostile`: `framing`,
    /// `header_timeout`, `body_too_large`, ...).
    pub fn rejected(&self, reason: &str) {
        self.rejected.with_label_values(&[reason]).inc();
    }

    /// `waiting` requests wait for a slot of `pool`.
    pub fn queue_length(&self, pool: &str, waiting: usize) {
        self.queue_length
            .with_label_values(&[pool])
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// The capacity view of `pool` (set at scrape time).
    pub fn capacity(&self, pool: &str, view: &crate::admission::CapacityView, in_flight: usize) {
        for (measure, value) in [
            ("arrival_rate", view.arrival_rate),
            ("throughput", view.throughput),
            ("response_seconds_mean", view.mean_response_secs),
            ("carried", view.carried),
            ("slots", view.slots as f64),
            ("in_flight", in_flight as f64),
            ("utilization", view.utilization),
            ("queue_p50_seconds", view.queue_p50_secs),
            ("queue_p99_seconds", view.queue_p99_secs),
            ("shed_rate", view.shed_rate),
        ] {
            self.capacity.with_label_values(&[pool, measure]).set(value);
        }
    }

    /// `count` hints of `kind` (`link`, `early_hints`, `learned_update`, `deferred_script`)
    /// for `route`.
    pub fn hint(&self, route: &str, kind: &'static str, count: u64) {
        self.hints.with_label_values(&[route, kind]).inc_by(count);
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

/// The balancing families (issue 7): per backend, by pool and address.
struct BackendFamilies {
    up: IntGaugeVec,
    requests: IntCounterVec,
    ejections: IntCounterVec,
    checks: IntCounterVec,
}

impl BackendFamilies {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
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
