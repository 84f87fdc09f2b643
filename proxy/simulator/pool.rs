//! The simulated Passenger worker pool, and the queue time a request reports.
//!
//! A request that needs a worker waits, first come first served, for one of a fixed number of
//! slots, then holds it for its service time. Its queue time runs from when it started (the
//! `X-Request-Start` a front door stamped, else its arrival here) to when it got a slot: what
//! a Rails app behind Passenger sees and reports.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// When a request started, as the app can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestStart {
    /// Stamped upstream in `X-Request-Start`: queueing before the app counts too.
    Stamped(SystemTime),
    /// No usable stamp: the request's arrival at the simulator.
    Arrived(Instant),
}

impl RequestStart {
    /// The stamp in `header` if it parses, else `arrival`.
    pub(crate) fn from_header(header: Option<&http::HeaderValue>, arrival: Instant) -> Self {
        header
            .and_then(|value| value.to_str().ok())
            .and_then(parse_request_start)
            .map_or(Self::Arrived(arrival), Self::Stamped)
    }

    /// Time since the start, 0 when the stamp is in the future (clock skew).
    fn elapsed(self) -> Duration {
        match self {
            Self::Stamped(at) => SystemTime::now()
                .duration_since(at)
                .unwrap_or(Duration::ZERO),
            Self::Arrived(at) => at.elapsed(),
        }
    }
}

/// Parses an `X-Request-Start` value:
/// - `t=<secs>.<frac>` (frontdoor, nginx `t=${msec}`) or bare `<secs>.<frac>`;
/// - `t=<integer>`, read by magnitude as New Relic does: seconds below 10¹¹, milliseconds
///   (Heroku) below 10¹⁴, microseconds (Apache `%t`, some nginx setups) above.
///
/// Fractions beyond nanoseconds are truncated. Anything else is `None`.
pub(crate) fn parse_request_start(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    let value = value.strip_prefix("t=").unwrap_or(value);
    let since_epoch = match value.split_once('.') {
        Some((secs, frac)) => {
            if frac.is_empty() || !all_digits(secs) || !all_digits(frac) {
                return None;
            }
            let digits = &frac[..frac.len().min(9)];
            let nanos: u32 = digits.parse().ok()?;
            let scale = 10u32.pow(9 - digits.len() as u32);
            Duration::new(secs.parse().ok()?, nanos * scale)
        }
        None => {
            if !all_digits(value) {
                return None;
            }
            let n: u64 = value.parse().ok()?;
            match n {
                0..=99_999_999_999 => Duration::from_secs(n),
                100_000_000_000..=99_999_999_999_999 => Duration::from_millis(n),
                _ => Duration::from_micros(n),
            }
        }
    };
    UNIX_EPOCH.checked_add(since_epoch)
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The pool was closed; never happens while the simulator is alive.
#[derive(Debug, thiserror::Error)]
#[error("the worker pool is closed")]
pub(crate) struct PoolClosed;

/// A fixed number of worker slots, handed out in arrival order, with a gauge of how many are
/// busy and the highest that gauge has been.
#[derive(Debug)]
pub(crate) struct Workers {
    /// Shared with the [`Held`] slots, which may outlive a request's handler (a streamed
    /// answer holds its worker until the last byte is handed to the connection).
    slots: Arc<Semaphore>,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Workers {
    /// A pool of `size` slots.
    pub(crate) fn new(size: usize) -> Self {
        Workers {
            // tokio's semaphore is fair: waiters are served first in, first out.
            slots: Arc::new(Semaphore::new(size)),
            counts: Arc::default(),
        }
    }

    /// Waits for a slot, holds it for `service_time`, and returns the queue time: from
    /// `start` to getting the slot. If the caller is dropped meanwhile (the client went
    /// away), the slot and the gauge are released all the same.
    pub(crate) async fn run(
        &self,
        start: RequestStart,
        service_time: Duration,
    ) -> Result<Duration, PoolClosed> {
        let (_held, queue_time) = self.hold(start).await?;
        tokio::time::sleep(service_time).await;
        Ok(queue_time)
    }

    /// Waits for a slot and returns it with the queue time; the slot is held (and counted
    /// in `in_flight`) until the [`Held`] is dropped.
    pub(crate) async fn hold(&self, start: RequestStart) -> Result<(Held, Duration), PoolClosed> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PoolClosed)?;
        let queue_time = start.elapsed();
        let now = self.counts.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.counts.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let held = Held {
            _permit: permit,
            counts: self.counts.clone(),
        };
        Ok((held, queue_time))
    }

    /// Requests holding a slot now.
    pub(crate) fn in_flight(&self) -> usize {
        self.counts.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests that have held a slot at once.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.counts.max_in_flight.load(Ordering::SeqCst)
    }
}

/// One worker slot, taken and counted in `in_flight` for as long as this lives.
#[derive(Debug)]
pub(crate) struct Held {
    _permit: OwnedSemaphorePermit,
    counts: Arc<Counts>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.counts.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The `Server-Timing` value for a queue time, in milliseconds with three decimals.
pub(crate) fn server_timing(queue_time: Duration) -> String {
    format!("queue;dur={:.3}", queue_time.as_secs_f64() * 1000.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::new(secs, nanos))
    }

    #[test]
    fn request_start_reads_seconds_with_a_fraction_with_or_without_t() {
        assert_eq!(
            parse_request_start("t=1732270000.123"),
            at(1_732_270_000, 123_000_000)
        );
        assert_eq!(
            parse_request_start("1732270000.123456"),
            at(1_732_270_000, 123_456_000)
        );
        assert_eq!(
            parse_request_start(" t=1732270000.1234567891 "),
            at(1_732_270_000, 123_456_789)
        );
    }

    #[test]
    fn request_start_reads_integers_by_magnitude() {
        assert_eq!(
            parse_request_start("t=1732270000123456"),
            at(1_732_270_000, 123_456_000)
        );
        assert_eq!(
            parse_request_start("t=1732270000123"),
            at(1_732_270_000, 123_000_000)
        );
        assert_eq!(parse_request_start("t=1732270000"), at(1_732_270_000, 0));
    }

    #[test]
    fn request_start_rejects_what_is_not_a_timestamp() {
        for bad in [
            "", "t=", "garbage", "t=-5.0", "t=1.", "t=.5", "t=1.2.3", "t=1e9", "t=+1",
        ] {
            assert_eq!(parse_request_start(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_stamp_in_the_future_queues_for_zero() {
        let future = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(RequestStart::Stamped(future).elapsed(), Duration::ZERO);
    }

    #[test]
    fn server_timing_is_milliseconds_with_three_decimals() {
        assert_eq!(
            server_timing(Duration::from_micros(1_234_567)),
            "queue;dur=1234.567"
        );
        assert_eq!(server_timing(Duration::ZERO), "queue;dur=0.000");
    }

    #[tokio::test]
    async fn a_request_dropped_while_served_frees_its_slot_and_the_gauge() {
        let workers = Workers::new(1);
        let start = RequestStart::Arrived(Instant::now());
        let abandoned = tokio::time::timeout(
            Duration::from_millis(10),
            workers.run(start, Duration::from_secs(60)),
        )
        .await;
        assert!(abandoned.is_err());
        assert_eq!(workers.in_flight(), 0);
        assert_eq!(workers.max_in_flight(), 1);
        workers.run(start, Duration::ZERO).await.unwrap();
    }
}
