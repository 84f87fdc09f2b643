//! Which kept-alive connection an attempt may use, and when a failed attempt goes again.
//!
//! Pingora keeps idle upstream connections in one pool keyed by the peer's hash and hands any
//! of them out; it does not say how long one sat idle. An app server closes idle keep-alive
//! connections on its own clock (Node after 5 s, Puma after 20 s) and a request written just
//! as it does is lost: the app never read it, but the proxy cannot know that. So:
//! - A request whose **reused** connection fails before the response head arrives is sent
//!   again, once, on a **new** connection to the same backend, and only if its method is
//!   idempotent (the app may have run it). A request that fails on a new connection is never
//!   sent again: the app got it and dropped it, and sending it on would take down one worker
//!   after another (Pingora's default retried up to 16 times).
//! - A **non-idempotent** request (POST, PATCH) goes only on a connection idle less than the
//!   pool's `non-idempotent-max-idle`. These requests get connections of their own, keyed by a
//!   window of that length on a monotonic clock: a connection made in a window is handed out
//!   only during that window, so it cannot have idled longer than the window; the next window
//!   starts with a new connection. A keep-alive race is then as unlikely as the app closing a
//!   connection within that much idle time.
//!
//! The key is Pingora's `HttpPeer::group_key`, part of its pool key; the default group (0) is
//! the ordinary pool of idempotent requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Group keys of non-idempotent windows carry this bit.
const WINDOW: u64 = 1 << 63;
/// Group keys of connections used once carry this bit.
const ONCE: u64 = 1 << 62;

/// The pool group and idle timeout of one attempt's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// `HttpPeer::group_key`: 0, the ordinary pool; else a window's or a one-off's.
    pub group_key: u64,
    /// How long the connection is kept idle after this attempt.
    pub idle_timeout: Duration,
}

/// What decides an attempt's connection.
#[derive(Debug, Clone, Copy)]
pub struct Choice {
    /// The method is not idempotent (POST, PATCH).
    pub non_idempotent: bool,
    /// A new connection is required (the retry after a reused connection failed).
    pub fresh: bool,
    /// The pool's `non-idempotent-max-idle`.
    pub max_idle: Duration,
    /// The pool's `idle-timeout`.
    pub idle_timeout: Duration,
}

/// The connection for an attempt, at `now`.
pub fn connection(choice: Choice, now: Instant) -> Connection {
    if choice.fresh || (choice.non_idempotent && choice.max_idle.is_zero()) {
        // A group nobody else asks for: Pingora connects anew. Kept for nothing afterwards
        // (no one could find it).
        static NEXT: AtomicU64 = AtomicU64::new(1);
        return Connection {
            group_key: ONCE | (NEXT.fetch_add(1, Ordering::Relaxed) & (ONCE - 1)),
            idle_timeout: Duration::ZERO,
        };
    }
    if !choice.non_idempotent {
        return Connection {
            group_key: 0,
            idle_timeout: choice.idle_timeout,
        };
    }
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let window_ms = u64::try_from(choice.max_idle.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let elapsed_ms = u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(0);
    let window = elapsed_ms / window_ms;
    // The window length is part of the key, so pools of other lengths on the same backend
    // never share a window's connections.
    Connection {
        group_key: WINDOW | ((window_ms & 0x3fff_ffff) << 32) | (window & 0xffff_ffff),
        idle_timeout: choice.idle_timeout.min(choice.max_idle),
    }
}

/// What the proxy knows of an attempt that failed after its connection was made.
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    /// The connection came from the keep-alive pool.
    pub reused: bool,
    /// No response head had arrived (Pingora marks a connection closed, or reset, while
    /// waiting for the head; a failed write of the request counts too).
    pub before_response: bool,
    /// The method is idempotent (GET, HEAD, PUT, DELETE, OPTIONS).
    pub idempotent: bool,
    /// The request body is still whole in Pingora's retry buffer (or there was none).
    pub body_replayable: bool,
}

impl Failure {
    /// Whether the request may go again on a new connection (once: the caller remembers).
    pub fn may_resend(&self) -> bool {
        self.reused && self.before_response && self.idempotent && self.body_replayable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(non_idempotent: bool, fresh: bool) -> Choice {
        Choice {
            non_idempotent,
            fresh,
            max_idle: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(4),
        }
    }

    #[test]
    fn idempotent_requests_share_the_ordinary_pool() {
        let c = connection(choice(false, false), Instant::now());
        assert_eq!(c.group_key, 0);
        assert_eq!(c.idle_timeout, Duration::from_secs(4));
    }

    #[test]
    fn a_non_idempotent_window_never_hands_out_a_connection_older_than_its_length() {
        let now = Instant::now();
        let first = connection(choice(true, false), now);
        assert_ne!(first.group_key, 0);
        assert_eq!(first.idle_timeout, Duration::from_secs(2));
        // The key changes at least once within any span of a window's length, and a key once
        // left never comes back.
        let mut keys = vec![first.group_key];
        for ms in (100..=4000).step_by(100) {
            let key = connection(choice(true, false), now + Duration::from_millis(ms)).group_key;
            if keys.last() != Some(&key) {
                assert!(!keys.contains(&key), "window {key:x} came back");
                keys.push(key);
            }
        }
        assert!((2..=3).contains(&keys.len()), "{keys:x?}");
        let other_length = Choice {
            max_idle: Duration::from_secs(3),
            ..choice(true, false)
        };
        assert_ne!(connection(other_length, now).group_key, first.group_key);
    }

    #[test]
    fn a_fresh_connection_is_found_by_no_one_and_not_kept() {
        let now = Instant::now();
        let a = connection(choice(false, true), now);
        let b = connection(choice(true, true), now);
        assert_ne!(a.group_key, b.group_key);
        assert_ne!(a.group_key, 0);
        assert_eq!(a.idle_timeout, Duration::ZERO);
        let never = Choice {
            max_idle: Duration::ZERO,
            ..choice(true, false)
        };
        assert_eq!(connection(never, now).idle_timeout, Duration::ZERO);
    }

    #[test]
    fn only_an_idempotent_request_lost_on_a_reused_connection_goes_again() {
        let lost = Failure {
            reused: true,
            before_response: true,
            idempotent: true,
            body_replayable: true,
        };
        assert!(lost.may_resend());
        for failure in [
            Failure {
                reused: false,
                ..lost
            },
            Failure {
                before_response: false,
                ..lost
            },
            Failure {
                idempotent: false,
                ..lost
            },
            Failure {
                body_replayable: false,
                ..lost
            },
        ] {
            assert!(!failure.may_resend(), "{failure:?}");
        }
    }
}
