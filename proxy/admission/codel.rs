//! The overload detector: CoDel's rule (Nichols & Jacobson, RFC 8289) applied to the time
//! requests wait in frontdoor's queue. A queue that drains within `target` is a good queue
//! (bursts); one whose *minimum* wait stays above `target` for a whole `interval` is a standing
//! queue: the app is over capacity and waiting longer only makes every answer late.
//!
//! Leaving overload has its own rule. While overloaded the queue is kept short (the admission
//! controller refuses what does not fit), so waits stay low *because* of the shedding and say
//! nothing about the load; overload ends once a whole `interval` passes without a refusal.

use std::time::{Duration, Instant};

/// CoDel state for one pool.
#[derive(Debug, Clone)]
pub struct Codel {
    target: Duration,
    interval: Duration,
    /// When the wait first went above target in the current run, plus `interval`.
    above_since: Option<Instant>,
    overloaded: bool,
    /// The last request refused for overload (entering overload counts as one).
    last_refusal: Option<Instant>,
}

impl Codel {
    /// A detector with `target` and `interval`.
    pub fn new(target: Duration, interval: Duration) -> Self {
        Codel {
            target,
            interval,
            above_since: None,
            overloaded: false,
            last_refusal: None,
        }
    }

    /// Records that a request waited `wait` before it was dispatched, at `now`. One wait under
    /// target ends a run: the minimum over the interval is then under target.
    pub fn observe(&mut self, wait: Duration, now: Instant) {
        if wait < self.target {
            self.above_since = None;
            return;
        }
        match self.above_since {
            None => self.above_since = Some(now + self.interval),
            Some(deadline) if now >= deadline && !self.overloaded => {
                self.overloaded = true;
                self.last_refusal = Some(now);
            }
            Some(_) => {}
        }
    }

    /// A request was refused for overload at `now`.
    pub fn refused(&mut self, now: Instant) {
        self.last_refusal = Some(now);
    }

    /// Whether a standing queue exists (shed what does not fit a short queue, serve LIFO,
    /// expire the oldest waiters); ends an overload that refused nothing for an interval.
    pub fn overloaded_at(&mut self, now: Instant) -> bool {
        let quiet = self
            .last_refusal
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval);
        if self.overloaded && quiet {
            self.overloaded = false;
            self.above_since = None;
        }
        self.overloaded
    }

    /// Whether the last check found overload (no state change).
    pub fn overloaded(&self) -> bool {
        self.overloaded
    }

    /// Whether every wait since the last one under target was above it: a queue may be
    /// standing, not yet for a whole interval.
    pub fn above_target(&self) -> bool {
        self.above_since.is_some()
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
        assert!(c.overloaded_at(t0 + 251 * MS));
        // Short waits while shedding do not end it; refusals keep it going.
        c.observe(MS, t0 + 300 * MS);
        c.refused(t0 + 340 * MS);
        assert!(c.overloaded_at(t0 + 400 * MS));
        // An interval without a refusal ends it.
        assert!(!c.overloaded_at(t0 + 440 * MS));
        assert!(!c.overloaded_at(t0 + 500 * MS));
    }
}
