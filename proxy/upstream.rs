//! Upstream pools: the Passenger backends a route sends requests to.
//!
//! Selection is round robin; a connect failure moves an idempotent request to the next
//! backend (at most `connect-retries` times). Keep-alive connections are pooled by Pingora
//! per backend address (`server.upstream-keepalive-pool-size` in all).

use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::config::PoolSettings;

/// One pool of backends.
#[derive(Debug)]
pub struct Pool {
    name: String,
    settings: PoolSettings,
    next: AtomicUsize,
}

/// Which backend a request uses on which attempt; lives in the request context.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attempts {
    first: Option<usize>,
    /// Connect attempts made so far.
    pub made: usize,
}

impl Pool {
    /// A pool named `name`.
    pub fn new(name: &str, settings: PoolSettings) -> Self {
        Pool {
            name: name.to_string(),
            settings,
            next: AtomicUsize::new(0),
        }
    }

    /// The pool's name (the `pool` metrics label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The validated settings.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// The peer for the next attempt: round robin for the first, then the following backends.
    pub fn peer(&self, attempts: &mut Attempts) -> Box<HttpPeer> {
        let backends = &self.settings.backends;
        let first = *attempts
            .first
            .get_or_insert_with(|| self.next.fetch_add(1, Ordering::Relaxed));
        let addr = backends[(first + attempts.made) % backends.len()];
        attempts.made += 1;
        let mut peer = HttpPeer::new(addr, false, String::new());
        let options = &mut peer.options;
        options.connection_timeout = Some(self.settings.connect_timeout);
        options.read_timeout = Some(self.settings.read_timeout);
        options.write_timeout = Some(self.settings.write_timeout);
        options.idle_timeout = Some(self.settings.idle_timeout);
        Box::new(peer)
    }

    /// Whether another backend may be tried after a failed connect.
    pub fn may_retry_connect(&self, attempts: &Attempts) -> bool {
        attempts.made <= self.settings.connect_retries
    }

    /// Whether at least one backend accepts a TCP connection within the connect timeout.
    pub async fn any_reachable(&self) -> bool {
        for addr in &self.settings.backends {
            if reachable(*addr, self.settings.connect_timeout).await {
                return true;
            }
        }
        false
    }
}

async fn reachable(addr: SocketAddr, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(backends: &[&str], retries: usize) -> Pool {
        let settings = PoolSettings {
            backends: backends.iter().filter_map(|b| b.parse().ok()).collect(),
            connect_timeout: Duration::from_millis(100),
            read_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            connect_retries: retries,
        };
        Pool::new("app", settings)
    }

    #[test]
    fn round_robin_then_next_backend_on_retry() {
        let p = pool(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], 1);
        let mut a = Attempts::default();
        assert!(p.peer(&mut a).to_string().contains("127.0.0.1:1"));
        assert!(p.may_retry_connect(&a));
        assert!(p.peer(&mut a).to_string().contains("127.0.0.1:2"));
        assert!(!p.may_retry_connect(&a));
        let mut b = Attempts::default();
        assert!(p.peer(&mut b).to_string().contains("127.0.0.1:2"));
    }
}
