//! Job families: enqueued, deduplicated, finished, retried, queue depth, duration.

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
};
use std::time::Duration;

use super::Metrics;

/// The job families (issue 5), kept together.
pub(super) struct JobMetrics {
    enqueued: IntCounterVec,
    deduplicated: IntCounterVec,
    succeeded: IntCounterVec,
    failed: IntCounterVec,
    retried: IntCounterVec,
    queued: IntGauge,
    running: IntGauge,
    oldest_age: prometheus::Gauge,
    duration: HistogramVec,
}

impl JobMetrics {
    pub(super) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
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
            running: IntGauge::new("jobs_running", "Replays running on this node now.")?,
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
        registry.register(Box::new(m.running.clone()))?;
        registry.register(Box::new(m.oldest_age.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        Ok(m)
    }
}

impl Metrics {
    /// A replay started on this node (`job_replay_ended` balances it).
    pub fn job_replay_started(&self) {
        self.jobs.running.inc();
    }

    /// A replay started with `job_replay_started` ended, whatever its outcome.
    pub fn job_replay_ended(&self) {
        self.jobs.running.dec();
    }

    /// Replays running on this node now.
    pub fn jobs_running(&self) -> i64 {
        self.jobs.running.get()
    }

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
