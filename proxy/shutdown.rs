//! A graceful stop that ends as soon as nothing is left to finish.
//!
//! On `SIGTERM` Pingora stops accepting, tells its sessions to close after their current
//! request, and then sleeps the whole `grace-period` before it stops its runtimes, whether or
//! not a request is still running: an idle frontdoor took `grace-period` + 1 s to exit. The
//! watcher here follows Pingora's execution phases from a thread of its own; once a graceful
//! stop has begun and no request is in flight (head read, access-log line not yet written)
//! and no job replay runs, it flushes the access log and ends the process. Requests in flight
//! keep the whole grace period, as before; a stop that is not graceful (`SIGINT`) is Pingora's.

use pingora::server::{ExecutionPhase, Server};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::accesslog::LogGuard;
use crate::metrics::Metrics;

/// How often the watcher looks at the in-flight counts during a graceful stop.
const POLL: Duration = Duration::from_millis(50);

/// How long nothing must be in flight before the process ends: the last answer's bytes may
/// still sit in an HTTP/2 connection's buffers when its request is logged, and the connection
/// tasks flush them within a few milliseconds.
const SETTLE: Duration = Duration::from_millis(250);

/// What a graceful stop waits for.
pub trait Busy: Send + Sync {
    /// Whether something would be cut if the process ended now.
    fn busy(&self) -> bool;
}

impl Busy for Metrics {
    fn busy(&self) -> bool {
        self.requests_in_flight() > 0 || self.jobs_running() > 0
    }
}

/// Starts the watcher for `server` (call before `run_forever`). `log` is dropped, which
/// flushes the access log, before an early exit.
pub fn exit_when_idle(server: &Server, busy: Arc<dyn Busy>, log: LogGuard) {
    let mut phases = server.watch_execution_phase();
    let spawned = std::thread::Builder::new()
        .name("frontdoor shutdown".into())
        .spawn(move || {
            loop {
                match phases.blocking_recv() {
                    // After SIGTERM, and after a graceful upgrade handed the listeners over.
                    Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    // The server is gone: Pingora's own exit path runs.
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
            wait_idle(busy.as_ref(), POLL, SETTLE);
            tracing::info!(
                "graceful stop: nothing in flight, exiting before the grace period ends"
            );
            drop(log);
            std::process::exit(0);
        });
    if let Err(e) = spawned {
        tracing::warn!("graceful stop will wait out the grace period: {e}");
    }
}

/// Returns once `busy` has said "not busy" for `settle` without a break, looking every `poll`.
fn wait_idle(busy: &dyn Busy, poll: Duration, settle: Duration) {
    let mut idle_since: Option<Instant> = None;
    loop {
        if busy.busy() {
            idle_since = None;
        } else {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= settle {
                return;
            }
        }
        std::thread::sleep(poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Busy for its first `n` looks.
    struct BusyFor(AtomicUsize);

    impl Busy for BusyFor {
        fn busy(&self) -> bool {
            self.0
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        }
    }

    #[test]
    fn waits_while_busy_then_for_the_settle_time() {
        let busy = BusyFor(AtomicUsize::new(5));
        wait_idle(&busy, Duration::from_millis(1), Duration::from_millis(5));
        assert_eq!(busy.0.load(Ordering::SeqCst), 0, "every busy look was made");
    }

    #[test]
    fn metrics_are_busy_while_a_request_or_a_replay_runs() {
        let metrics = Metrics::new().unwrap();
        assert!(!metrics.busy());
        metrics.request_started();
        assert!(metrics.busy());
        metrics.request_finished("r", 200, Duration::ZERO);
        metrics.job_replay_started();
        assert!(metrics.busy());
        metrics.job_replay_ended();
        assert!(!metrics.busy());
    }
}
