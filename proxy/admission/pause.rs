//! Pause and resume (`frontdoor pause POOL`): while the app restarts, requests wait in the
//! queue instead of failing against a backend that is not there, each for at most
//! `queue-timeout` (then `503`), the queue for at most `queue-length`. Resuming hands the
//! slots out in arrival order; the waits of the pause are not taken for overload.

use std::sync::Arc;
use std::time::Instant;

use super::codel::Codel;
use super::Admission;

impl Admission {
    /// Holds every new request in the queue (requests in flight go on).
    pub fn pause(&self) {
        self.lock().paused = true;
    }

    /// Gives slots again: the queue is served first come, first served.
    pub fn resume(self: &Arc<Self>) {
        let mut state = self.lock();
        if !state.paused {
            return;
        }
        state.paused = false;
        // The pause made the waits long, not the load: start the overload measure afresh.
        let (target, interval) = (state.settings.target, state.settings.interval);
        state.codel = Codel::new(target, interval);
        self.dispatch(&mut state, Instant::now());
        self.metrics.queue_length(&self.pool, state.queued());
    }

    /// Whether the pool is paused.
    pub fn paused(&self) -> bool {
        self.lock().paused
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AdmissionSettings, Health, Priority, Shed, SlotBackend};
    use super::*;
    use crate::metrics::Metrics;
    use std::net::SocketAddr;
    use std::time::Duration;

    #[derive(Debug)]
    struct Up;

    impl Health for Up {
        fn is_up(&self) -> bool {
            true
        }
    }

    fn controller(queue_timeout: Duration) -> Arc<Admission> {
        let settings = AdmissionSettings {
            slots: 2,
            reserved_slots: 0,
            queue_length: 3,
            queue_timeout,
            target: Duration::from_millis(20),
            interval: Duration::from_millis(100),
            retry_after: Duration::from_secs(1),
        };
        let backend = SlotBackend {
            addr: crate::backend_addr::BackendAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 3000))),
            weight: 1,
            drain: false,
            state: Arc::new(Up),
        };
        let metrics = Arc::new(Metrics::new().unwrap());
        Arc::new(Admission::new("app", settings, vec![backend], metrics))
    }

    #[tokio::test]
    async fn a_paused_pool_queues_then_serves_on_resume() {
        let admission = controller(Duration::from_secs(5));
        admission.pause();
        assert!(admission.paused());
        assert!(admission.overloaded(), "replays wait too");
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let a = admission.clone();
                tokio::spawn(async move { a.admit(Priority::Normal, Instant::now()).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            admission.load(),
            (0, 3),
            "nobody got a slot, nobody was shed"
        );
        let full = admission.admit(Priority::Normal, Instant::now()).await;
        assert_eq!(full.err(), Some(Shed::QueueFull), "the queue stays bounded");
        admission.resume();
        let mut permits = Vec::new();
        for w in waiting.into_iter().take(2) {
            permits.push(w.await.unwrap().expect("a slot after resume"));
        }
        assert_eq!(admission.load(), (2, 1));
        assert!(!admission.paused());
        assert!(!admission.overloaded());
    }

    #[tokio::test]
    async fn a_pause_longer_than_queue_timeout_answers_503() {
        let admission = controller(Duration::from_millis(50));
        admission.pause();
        let refused = admission.admit(Priority::Critical, Instant::now()).await;
        assert_eq!(refused.err(), Some(Shed::Timeout));
    }
}
