//! The overload detector: CoDel's rule (Nichols & Jacobson, RFC 8289) applied to the time
//! requests wait in frontdoor's queue. A queue that drains within `target` is a good queue
//! (bursts); one whose *minimum* wait stays above `target` for a whole `interval` is a standing
//! queue: the app is over capacity and waiting longer only makes every answer late.

use std::time::{Duration, Instant};

/// CoDel state for one pool.
#[derive(Debug, Clone)]
pub struct Codel {
    target: Duration,
    interval: Duration,
    /// When the wait first went above target in the current run, plus `interval`.
    above_since: Option<Instant>,
    overloaded: bool,
}

impl Codel {
    /// A detector with `target` and `interval`.
    pub fn new(target: Duration, interval: Duration) -> Self {
        Codel {
            target,
            interval,
            above_since: None,
            overloaded: false,
        }
    }

    /// Records that a request waited `wait` before it was dispatched, at `now`. One wait under
    /// target ends a run: the minimum over the interval is then under target.
    pub fn observe(&mut self, wait: Duration, now: Instant) {
        if wait < self.target {
            self.above_since = None;
            self.overloaded = false;
        } else {
            match self.above_since {
                None => self.above_since = Some(now + self.interval),
                Some(deadline) if now >= deadline => self.overloaded = true,
                Some(_) => {}
            }
        }
    }

    /// Whether a standing queue exists: shed new arrivals, serve the queue LIFO, expire the
    /// oldest waiters.
    pub fn overloaded(&self) -> bool {
        self.overloaded
    }

    /// The target wait.
    pub fn target(&self) -> Duration {
        self.target
    }

    /// Takes new settings (a reload), keeping the state.
    pub fn retune(&mut self, target: Duration, interval: Duration) {
        self.target = target;
        self.interval = interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_is_not_overload_but_a_standing_queue_is() {
        let t0 = Instant::now();
        let mut c = Codel::new(20 * MS, 100 * MS);
        // Waits above target for less than an interval: a burst.
        c.observe(50 * MS, t0);
        c.observe(50 * MS, t0 + 60 * MS);
        assert!(!c.overloaded());
        c.observe(5 * MS, t0 + 90 * MS);
        c.observe(50 * MS, t0 + 150 * MS);
        assert!(!c.overloaded(), "a wait under target restarted the run");
        // Above target for a whole interval.
        c.observe(30 * MS, t0 + 200 * MS);
        c.observe(30 * MS, t0 + 251 * MS);
        assert!(c.overloaded());
        // One dispatch under target ends it.
        c.observe(MS, t0 + 300 * MS);
        assert!(!c.overloaded());
    }
}
