//! Admission families: queue time (ours and the app's), shedding, queue length, capacity.

use prometheus::{
    exponential_buckets, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry,
};
use std::time::Duration;

use super::Metrics;

/// The families, registered once.
pub(super) struct AdmissionFamilies {
    queue_seconds: HistogramVec,
    app_queue_seconds: HistogramVec,
    shed: IntCounterVec,
    queue_length: IntGaugeVec,
    capacity: GaugeVec,
}

impl AdmissionFamilies {
    pub(super) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
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
        Ok(AdmissionFamilies {
            queue_seconds,
            app_queue_seconds,
            shed,
            queue_length,
            capacity,
        })
    }
}

impl Metrics {
    /// A request of `pool` waited `wait` in frontdoor's queue before dispatch.
    pub fn queue_waited(&self, pool: &str, wait: Duration) {
        self.admission
            .queue_seconds
            .with_label_values(&[pool])
            .observe(wait.as_secs_f64());
    }

    /// The app behind `pool` reported that a request queued `wait` inside it.
    pub fn app_queued(&self, pool: &str, wait: Duration) {
        self.admission
            .app_queue_seconds
            .with_label_values(&[pool])
            .observe(wait.as_secs_f64());
    }

    /// A request of `priority` to `pool` was shed for `reason`.
    pub fn shed(&self, pool: &str, priority: &str, reason: &str) {
        self.admission
            .shed
            .with_label_values(&[pool, priority, reason])
            .inc();
    }

    /// `waiting` requests wait for a slot of `pool`.
    pub fn queue_length(&self, pool: &str, waiting: usize) {
        self.admission
            .queue_length
            .with_label_values(&[pool])
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// The capacity view of `pool`, measure by measure (set at scrape time).
    pub fn capacity(&self, pool: &str, measures: impl IntoIterator<Item = (&'static str, f64)>) {
        for (measure, value) in measures {
            self.admission
                .capacity
                .with_label_values(&[pool, measure])
                .set(value);
        }
    }
}
