//! What a shed request is answered with: `503 Service Unavailable` with a jittered
//! `Retry-After` (so refused clients do not come back in step); the answer itself (a page for
//! browsers, JSON for everything else) is written by `error_pages`. It never reaches the app.

use rand::Rng;
use std::time::Duration;

use super::Shed;

/// Seconds to send in `Retry-After`: uniformly between `base` and twice `base`, at least 1.
pub fn retry_after_secs(base: Duration) -> u64 {
    let base = base.as_secs().max(1);
    rand::thread_rng().gen_range(base..=base * 2)
}

impl Shed {
    /// The reason as the metrics and the answer name it.
    pub fn reason(self) -> &'static str {
        match self {
            Shed::Overload => "overload",
            Shed::QueueFull => "queue-full",
            Shed::Timeout => "queue-timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_jittered_between_one_and_two_times() {
        let seen: std::collections::HashSet<u64> = (0..200)
            .map(|_| retry_after_secs(Duration::from_secs(2)))
            .collect();
        assert!(seen.iter().all(|s| (2..=4).contains(s)), "{seen:?}");
        assert!(seen.len() > 1, "jittered");
        assert!((1..=2).contains(&retry_after_secs(Duration::ZERO)));
    }
}
