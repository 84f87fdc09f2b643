//! Request families: answers by route and class, durations, upstream timing, in-flight,
//! reloads, TLS handshakes, refusals before the app, and hints given.

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
};
use std::time::Duration;

use super::Metrics;

/// The families, registered once.
pub(super) struct RequestsFamilies {
    requests: IntCounterVec,
    request_duration: HistogramVec,
    upstream_response: HistogramVec,
    upstream_connect_failures: IntCounterVec,
    in_flight: IntGauge,
    config_reloads: IntCounterVec,
    tls_handshakes: IntCounterVec,
    rejected: IntCounterVec,
    hints: IntCounterVec,
}

impl RequestsFamilies {
    pub(super) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
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
        let rejected = IntCounterVec::new(
            Opts::new(
                "rejected_requests_total",
                "Requests refused as hostile or over a limit before reaching the app, by reason.",
            ),
            &["reason"],
        )?;
        let hints = IntCounterVec::new(
            Opts::new(
                "hints_total",
                "Hints by route and kind: link (responses given Link hints), early_hints (103 sent), learned_update (a route's learned assets changed), deferred_script (scripts given defer).",
            ),
            &["route", "kind"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_response.clone()))?;
        registry.register(Box::new(upstream_connect_failures.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(tls_handshakes.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(hints.clone()))?;
        Ok(RequestsFamilies {
            requests,
            request_duration,
            upstream_response,
            upstream_connect_failures,
            in_flight,
            config_reloads,
            tls_handshakes,
            rejected,
            hints,
        })
    }
}

impl Metrics {
    /// A request started.
    pub fn request_started(&self) {
        self.requests.in_flight.inc();
    }

    /// Requests being handled now: from the head read to the access-log line.
    pub fn requests_in_flight(&self) -> i64 {
        self.requests.in_flight.get()
    }

    /// A request ended with `status` (0 when no response was sent) after `elapsed`.
    pub fn request_finished(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests.in_flight.dec();
        self.requests
            .requests
            .with_label_values(&[route, status_class(status)])
            .inc();
        self.requests
            .request_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// A backend of `pool` answered with a response head after `elapsed`.
    pub fn upstream_responded(&self, pool: &str, elapsed: Duration) {
        self.requests
            .upstream_response
            .with_label_values(&[pool])
            .observe(elapsed.as_secs_f64());
    }

    /// A connect to a backend of `pool` failed.
    pub fn upstream_connect_failed(&self, pool: &str) {
        self.requests
            .upstream_connect_failures
            .with_label_values(&[pool])
            .inc();
    }

    /// A config reload finished; `ok` is false when the new file was rejected.
    pub fn config_reloaded(&self, ok: bool) {
        self.requests
            .config_reloads
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
        self.requests
            .tls_handshakes
            .with_label_values(&[protocol])
            .inc();
    }

    /// A request was refused for `reason` (a fixed word of `hostile`: `framing`,
    /// `header_timeout`, `body_too_large`, ...).
    pub fn rejected(&self, reason: &str) {
        self.requests.rejected.with_label_values(&[reason]).inc();
    }

    /// `count` hints of `kind` (`link`, `early_hints`, `learned_update`, `deferred_script`)
    /// for `route`.
    pub fn hint(&self, route: &str, kind: &'static str, count: u64) {
        self.requests
            .hints
            .with_label_values(&[route, kind])
            .inc_by(count);
    }
}

/// The class label of `status` (`2xx`); anything else is `none`.
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
