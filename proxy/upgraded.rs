//! Upgraded connections: WebSocket (ActionCable, Turbo Streams) after the app's `101`.
//!
//! An upgrade request is app work only until the app has switched protocols: Puma then hands
//! the socket to ActionCable's own event loop, and Passenger's guide exempts the cable endpoint
//! from its request limit. So the admission slot is held for the handshake alone and given back
//! when the `101` is relayed; from then on the connection counts here, per pool, against the
//! pool's own cap (`max-upgraded`: each costs two file descriptors, the client's and the app's,
//! and a flood of them must not exhaust them), and is closed after `upgraded-idle-timeout`
//! without a byte in either direction (HAProxy's `timeout tunnel`), not after the pool's
//! `read-timeout`.
//!
//! Counts are kept by pool name for the life of the process (like the admission controllers),
//! so a reload neither drops an open connection nor forgets it. On `SIGTERM` open connections
//! keep working through the grace period and are closed when it ends (Pingora stops the worker
//! runtimes then), like any request still in flight.

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::Session;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::metrics::{Metrics, UpgradedMetrics};

/// `max-upgraded` and `upgraded-idle-timeout` of a pool, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpgradedSettings {
    /// Upgraded connections (and handshakes under way) the pool may have open at once.
    pub max: usize,
    /// Longest time without a byte in either direction; also the longest wait for the app's
    /// `101` (Pingora applies one read timeout to an upgrade request's whole life).
    pub idle_timeout: Duration,
}

/// Whether the request asks to switch protocols: HTTP/1.1 with `Upgrade`, Pingora's test
/// before it relays a `101`. HTTP/2 requests never do (Pingora has no extended CONNECT).
pub fn requested(head: &RequestHeader) -> bool {
    head.version == http::Version::HTTP_11 && head.headers.contains_key(http::header::UPGRADE)
}

/// One pool's connections.
#[derive(Debug)]
struct Count {
    /// Handshakes under way and connections open (what the cap limits).
    held: AtomicUsize,
    /// Connections open (after the `101`).
    open: AtomicUsize,
    metrics: UpgradedMetrics,
}

/// Upgraded connections of every pool, by name; one per process, kept across reloads.
pub struct Upgraded {
    by_pool: Mutex<HashMap<String, Arc<Count>>>,
    metrics: Arc<Metrics>,
}

/// A pool's place taken by an upgrade request: reserved for its handshake, then its open
/// connection's. Dropping it (the connection ends, or the app did not switch) frees it.
#[derive(Debug)]
pub struct Place {
    count: Arc<Count>,
    open: bool,
}

impl Upgraded {
    /// No connection yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Upgraded {
            by_pool: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn count(&self, pool: &str) -> Arc<Count> {
        let mut by_pool = self.by_pool.lock().unwrap_or_else(PoisonError::into_inner);
        by_pool
            .entry(pool.to_string())
            .or_insert_with(|| {
                Arc::new(Count {
                    held: AtomicUsize::new(0),
                    open: AtomicUsize::new(0),
                    metrics: self.metrics.upgraded(pool),
                })
            })
            .clone()
    }

    /// A place of `pool` for an upgrade request, or `None` (counted) when `max` are taken.
    pub fn reserve(&self, pool: &str, max: usize) -> Option<Place> {
        let count = self.count(pool);
        let taken = count
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < max).then_some(held + 1)
            });
        match taken {
            Ok(_) => Some(Place { count, open: false }),
            Err(_) => {
                count.metrics.refused.inc();
                None
            }
        }
    }

    /// Connections open now, every pool together.
    pub fn open_total(&self) -> usize {
        let by_pool = self.by_pool.lock().unwrap_or_else(PoisonError::into_inner);
        by_pool
            .values()
            .map(|c| c.open.load(Ordering::Acquire))
            .sum()
    }

    /// Connections of `pool` open now.
    pub fn open(&self, pool: &str) -> usize {
        let by_pool = self.by_pool.lock().unwrap_or_else(PoisonError::into_inner);
        by_pool
            .get(pool)
            .map_or(0, |c| c.open.load(Ordering::Acquire))
    }
}

impl Place {
    /// The app switched protocols: the place is an open connection now.
    pub fn opened(&mut self) {
        if !self.open {
            self.open = true;
            self.count.open.fetch_add(1, Ordering::AcqRel);
            self.count.metrics.open.inc();
            self.count.metrics.opened.inc();
        }
    }

    /// Whether the app switched protocols.
    pub fn is_open(&self) -> bool {
        self.open
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.count.held.fetch_sub(1, Ordering::AcqRel);
        if self.open {
            self.count.open.fetch_sub(1, Ordering::AcqRel);
            self.count.metrics.open.dec();
            self.count.metrics.closed.inc();
        }
    }
}

/// Answers `503` to an upgrade request over the pool's `max-upgraded`; the client (ActionCable
/// reconnects with a backoff) tries again after `retry_after`.
pub async fn refuse(
    session: &mut Session,
    retry_after: Duration,
    request_id: &str,
) -> pingora::Result<()> {
    let body = "service unavailable: too many upgraded connections\n";
    let mut head = ResponseHeader::build(503, Some(5))?;
    head.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    head.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    head.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    head.insert_header(
        http::header::RETRY_AFTER,
        retry_after.as_secs().max(1).to_string(),
    )?;
    head.insert_header(crate::headers::X_REQUEST_ID, request_id)?;
    session.write_response_header(Box::new(head), false).await?;
    session
        .write_response_body(Some(Bytes::from_static(body.as_bytes())), true)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(m: &Metrics, line: &str) -> String {
        String::from_utf8(m.render())
            .unwrap()
            .lines()
            .find(|l| l.starts_with(line))
            .map(str::to_string)
            .unwrap_or_default()
    }

    #[test]
    fn the_cap_counts_handshakes_and_open_connections_and_frees_on_drop() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let upgraded = Upgraded::new(metrics.clone());
        let mut a = upgraded.reserve("cable", 2).unwrap();
        let b = upgraded.reserve("cable", 2).unwrap();
        assert!(upgraded.reserve("cable", 2).is_none(), "a third is over 2");
        assert!(upgraded.reserve("other", 2).is_some(), "caps are per pool");
        a.opened();
        a.opened();
        assert_eq!(upgraded.open("cable"), 1);
        assert_eq!(
            sample(&metrics, "frontdoor_upgraded_connections{pool=\"cable\"}"),
            "frontdoor_upgraded_connections{pool=\"cable\"} 1"
        );
        drop(b);
        let c = upgraded.reserve("cable", 2).unwrap();
        drop(a);
        drop(c);
        assert_eq!(upgraded.open("cable"), 0);
        let text = String::from_utf8(metrics.render()).unwrap();
        for line in [
            "frontdoor_upgraded_connections{pool=\"cable\"} 0",
            "frontdoor_upgraded_connections_opened_total{pool=\"cable\"} 1",
            "frontdoor_upgraded_connections_closed_total{pool=\"cable\"} 1",
            "frontdoor_upgraded_connections_refused_total{pool=\"cable\"} 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
