//! Bounds on replays: a per-pool rate (GCRA, the token bucket without a refill task) and the
//! retry delay (full-jitter exponential backoff).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Rate;

/// The generic cell rate algorithm: one theoretical arrival time per pool.
#[derive(Debug)]
pub struct Gcra {
    interval: Duration,
    tolerance: Duration,
    tat: Mutex<Option<Instant>>,
}

impl Gcra {
    /// A limiter for `rate`.
    pub fn new(rate: Rate) -> Self {
        let interval = Duration::from_secs_f64(1.0 / rate.per_second.max(1e-6));
        Gcra {
            interval,
            tolerance: interval * (rate.burst.get() - 1),
            tat: Mutex::new(None),
        }
    }

    /// How long until one replay may start (zero: now).
    pub fn wait(&self, now: Instant) -> Duration {
        let tat = self.tat.lock().map_or(None, |t| *t).unwrap_or(now);
        let allowed_at = tat.checked_sub(self.tolerance).unwrap_or(now);
        allowed_at.saturating_duration_since(now)
    }

    /// Takes one replay's place; call after [`Gcra::wait`] said zero.
    pub fn take(&self, now: Instant) {
        if let Ok(mut tat) = self.tat.lock() {
            let base = tat.map_or(now, |t| t.max(now));
            *tat = Some(base + self.interval);
        }
    }

    /// Whether this limiter was built for `rate`.
    pub fn is_for(&self, rate: Rate) -> bool {
        let other = Gcra::new(rate);
        other.interval == self.interval && other.tolerance == self.tolerance
    }
}

/// The delay before retry number `attempt` (1 = after the first failure): uniform in
/// `0..=min(max, base * 2^(attempt-1))`.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let bound = base.saturating_mul(1u32 << exp).min(max);
    let millis = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::random::<u64>() % millis.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn gcra_allows_the_burst_then_one_per_interval() {
        let rate = Rate {
            per_second: 10.0,
            burst: NonZeroU32::new(2).unwrap(),
        };
        let g = Gcra::new(rate);
        let t0 = Instant::now();
        assert_eq!(g.wait(t0), Duration::ZERO);
        g.take(t0);
        assert_eq!(g.wait(t0), Duration::ZERO);
        g.take(t0);
        let wait = g.wait(t0);
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        let later = t0 + wait;
        assert_eq!(g.wait(later), Duration::ZERO);
        assert!(g.is_for(rate));
    }

    #[test]
    fn backoff_is_bounded_by_the_doubling_cap() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..200 {
            assert!(backoff(1, base, max) <= base);
            assert!(backoff(3, base, max) <= base * 4);
            assert!(backoff(30, base, max) <= max);
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff(5, base, max)).collect();
        assert!(spread.len() > 10, "full jitter spreads retries");
    }
}
