//! The capacity view of one pool over a sliding window: how busy the app is and how much
//! headroom is left. Little's law: carried traffic (the mean number of requests in the app) =
//! throughput × mean response time; utilization = carried / slots.
//!
//! One-second buckets in a ring; a bucket is reset when the ring comes round to it again.

use std::time::{Duration, Instant};

/// Seconds covered by the window.
pub const WINDOW_SECS: usize = 10;
/// Queue-time histogram bounds (upper, seconds): 0.5 ms doubling to ~16 s.
const QUEUE_BOUNDS: usize = 16;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    second: u64,
    arrivals: u64,
    completions: u64,
    response_secs: f64,
    shed: u64,
    queue: [u64; QUEUE_BOUNDS + 1],
}

/// Counters for the last [`WINDOW_SECS`] seconds.
#[derive(Debug, Clone)]
pub struct Window {
    epoch: Instant,
    buckets: [Bucket; WINDOW_SECS + 1],
}

/// What the window says, per second and per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CapacityView {
    /// Requests arriving per second (shed ones included).
    pub arrival_rate: f64,
    /// Requests answered by the app per second.
    pub throughput: f64,
    /// Mean time in the app (dispatch to answer), seconds.
    pub mean_response_secs: f64,
    /// Throughput × mean response time: slots busy on average.
    pub carried: f64,
    /// Slots of the pool (all backends).
    pub slots: usize,
    /// Carried / slots.
    pub utilization: f64,
    /// Median queue time (upper bound of its histogram bucket), seconds.
    pub queue_p50_secs: f64,
    /// 99th percentile queue time (upper bound of its bucket), seconds.
    pub queue_p99_secs: f64,
    /// Requests shed per second.
    pub shed_rate: f64,
}

impl CapacityView {
    /// The view as `pool_capacity` measures, with the pool's `in_flight` now.
    pub fn measures(&self, in_flight: usize) -> [(&'static str, f64); 10] {
        [
            ("arrival_rate", self.arrival_rate),
            ("throughput", self.throughput),
            ("response_seconds_mean", self.mean_response_secs),
            ("carried", self.carried),
            ("slots", self.slots as f64),
            ("in_flight", in_flight as f64),
            ("utilization", self.utilization),
            ("queue_p50_seconds", self.queue_p50_secs),
            ("queue_p99_seconds", self.queue_p99_secs),
            ("shed_rate", self.shed_rate),
        ]
    }
}

fn bound(i: usize) -> f64 {
    0.0005 * f64::from(1u32 << i)
}

impl Window {
    /// An empty window starting now.
    pub fn new(now: Instant) -> Self {
        Window {
            epoch: now,
            buckets: [Bucket::default(); WINDOW_SECS + 1],
        }
    }

    fn bucket(&mut self, now: Instant) -> &mut Bucket {
        let second = now.saturating_duration_since(self.epoch).as_secs();
        let slot = &mut self.buckets[(second as usize) % (WINDOW_SECS + 1)];
        if slot.second != second {
            *slot = Bucket {
                second,
                ..Bucket::default()
            };
        }
        slot
    }

    /// A request arrived.
    pub fn arrived(&mut self, now: Instant) {
        self.bucket(now).arrivals += 1;
    }

    /// A request was shed.
    pub fn shed(&mut self, now: Instant) {
        self.bucket(now).shed += 1;
    }

    /// A request waited `wait` before it was dispatched.
    pub fn queued(&mut self, wait: Duration, now: Instant) {
        let secs = wait.as_secs_f64();
        let i = (0..QUEUE_BOUNDS)
            .find(|i| secs <= bound(*i))
            .unwrap_or(QUEUE_BOUNDS);
        self.bucket(now).queue[i] += 1;
    }

    /// The app answered a request after `response` in it.
    pub fn completed(&mut self, response: Duration, now: Instant) {
        let b = self.bucket(now);
        b.completions += 1;
        b.response_secs += response.as_secs_f64();
    }

    /// The view over the last [`WINDOW_SECS`] whole seconds (the current one is still filling
    /// and is left out).
    pub fn view(&self, slots: usize, now: Instant) -> CapacityView {
        let current = now.saturating_duration_since(self.epoch).as_secs();
        let first = current.saturating_sub(WINDOW_SECS as u64);
        let seconds = (current - first).max(1) as f64;
        let mut sum = Bucket::default();
        for b in self
            .buckets
            .iter()
            .filter(|b| b.second >= first && b.second < current)
        {
            sum.arrivals += b.arrivals;
            sum.completions += b.completions;
            sum.response_secs += b.response_secs;
            sum.shed += b.shed;
            for (total, n) in sum.queue.iter_mut().zip(b.queue) {
                *total += n;
            }
        }
        let throughput = sum.completions as f64 / seconds;
        let mean_response_secs = if sum.completions > 0 {
            sum.response_secs / sum.completions as f64
        } else {
            0.0
        };
        let carried = throughput * mean_response_secs;
        let quantile = |q: f64| {
            let total: u64 = sum.queue.iter().sum();
            if total == 0 {
                return 0.0;
            }
            let rank = (q * total as f64).ceil() as u64;
            let mut seen = 0;
            for (i, n) in sum.queue.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    // The last bucket is open-ended: report its lower bound.
                    return bound(i.min(QUEUE_BOUNDS - 1));
                }
            }
            bound(QUEUE_BOUNDS - 1)
        };
        CapacityView {
            arrival_rate: sum.arrivals as f64 / seconds,
            throughput,
            mean_response_secs,
            carried,
            slots,
            utilization: if slots > 0 {
                carried / slots as f64
            } else {
                0.0
            },
            queue_p50_secs: quantile(0.5),
            queue_p99_secs: quantile(0.99),
            shed_rate: sum.shed as f64 / seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn littles_law_on_a_known_offered_load() {
        let t0 = Instant::now();
        let mut w = Window::new(t0);
        // 40 requests per second, 50 ms each, for 12 s; 4 slots.
        for ms in (0..12_000).step_by(25) {
            let now = t0 + Duration::from_millis(ms);
            w.arrived(now);
            w.queued(Duration::from_millis(1), now);
            w.completed(Duration::from_millis(50), now);
        }
        let v = w.view(4, t0 + Duration::from_millis(12_000));
        assert!((v.arrival_rate - 40.0).abs() < 1e-9, "{v:?}");
        assert!((v.carried - 2.0).abs() < 1e-9, "{v:?}");
        assert!((v.utilization - 0.5).abs() < 1e-9, "{v:?}");
        assert_eq!(v.queue_p99_secs, 0.001);
        assert_eq!(v.shed_rate, 0.0);
    }

    #[test]
    fn old_seconds_leave_the_window() {
        let t0 = Instant::now();
        let mut w = Window::new(t0);
        w.shed(t0);
        assert_eq!(w.view(1, t0 + Duration::from_secs(1)).shed_rate, 1.0);
        assert_eq!(w.view(1, t0 + Duration::from_secs(30)).shed_rate, 0.0);
    }
}
