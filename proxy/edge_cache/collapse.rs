//! Collapsed misses: one request per key goes to the app (the leader); the others for the same
//! key wait for it, up to [`WAIT`], then look again (nginx's `proxy_cache_lock`, Varnish's
//! waiting list). A leader that ends in any way (stored, not storable, failed, cancelled)
//! releases its waiters: the guard does it when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// How long a request waits for another's fill of the same key before it asks the app itself
/// (nginx's `proxy_cache_lock_timeout` default).
pub const WAIT: Duration = Duration::from_secs(5);

/// The fills in flight, by key.
#[derive(Debug, Default)]
pub struct Flights {
    running: Mutex<HashMap<String, watch::Receiver<()>>>,
}

/// What a request that missed does.
#[derive(Debug)]
pub enum Joined {
    /// Ask the app; the guard releases the waiters when dropped.
    Leader(FlightGuard),
    /// Another request is asking: wait on this, then look again.
    Follower(watch::Receiver<()>),
}

/// Held by the leader of a key for as long as its fill runs.
#[derive(Debug)]
pub struct FlightGuard {
    flights: Arc<Flights>,
    key: String,
    // Dropping the sender wakes every waiter.
    _done: watch::Sender<()>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.flights
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl Flights {
    /// Leads the fill of `key`, or follows the one running.
    pub fn join(self: &Arc<Self>, key: &str) -> Joined {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(done) = running.get(key) {
            return Joined::Follower(done.clone());
        }
        let (done, waiters) = watch::channel(());
        running.insert(key.to_string(), waiters);
        Joined::Leader(FlightGuard {
            flights: self.clone(),
            key: key.to_string(),
            _done: done,
        })
    }

    /// The fill of `key` running now, to wait on, if any (a request that cannot lead one: HEAD).
    pub fn follow(&self, key: &str) -> Option<watch::Receiver<()>> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Fills running now.
    pub fn len(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no fill runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Waits until the leader is done or `limit` passes; `true` if it finished in time.
pub async fn wait(mut done: watch::Receiver<()>, limit: Duration) -> bool {
    // `changed` fails once the sender is dropped: that is the leader finishing.
    tokio::time::timeout(limit, async { while done.changed().await.is_ok() {} })
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_wake_when_the_leader_ends_and_the_key_is_free_again() {
        let flights = Arc::new(Flights::default());
        let Joined::Leader(guard) = flights.join("k") else {
            panic!("first is the leader")
        };
        let Joined::Follower(done) = flights.join("k") else {
            panic!("second follows")
        };
        assert!(matches!(flights.join("other"), Joined::Leader(_)));
        let waiter = tokio::spawn(wait(done, Duration::from_secs(5)));
        drop(guard);
        assert!(waiter.await.unwrap());
        assert!(flights.is_empty());
        assert!(matches!(flights.join("k"), Joined::Leader(_)));
    }

    #[tokio::test]
    async fn a_follower_stops_waiting_at_the_limit() {
        let flights = Arc::new(Flights::default());
        let _guard = flights.join("k");
        let Joined::Follower(done) = flights.join("k") else {
            panic!("second follows")
        };
        assert!(!wait(done, Duration::from_millis(20)).await);
    }
}
