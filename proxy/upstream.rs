//! Upstream pools: the Passenger backends a route sends requests to.
//!
//! Selection is round robin; a connect failure moves an idempotent request to the next
//! backend (at most `connect-retries` times). Keep-alive connections are pooled by Pingora
//! per backend address (`server.upstream-keepalive-pool-size` in all).

use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::admission::Admission;
use crate::config::PoolSettings;

/// One pool of backends.
pub struct Pool {
    name: String,
    settings: PoolSettings,
    next: AtomicUsize,
    admission: Option<Arc<Admission>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Which backend a request uses on which attempt; lives in the request context.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attempts {
    first: Option<usize>,
    /// Connect attempts made so far.
    pub made: usize,
}

impl Attempts {
    /// Attempts that start on backend `index` (the one an admission slot was taken on).
    pub fn on_backend(index: usize) -> Self {
        Attempts {
            first: Some(index),
            made: 0,
        }
    }
}

impl Pool {
    /// A pool named `name`; `admission` is its controller when it has slots.
    pub fn new(name: &str, settings: PoolSettings, admission: Option<Arc<Admission>>) -> Self {
        Pool {
            name: name.to_string(),
            settings,
            next: AtomicUsize::new(0),
            admission,
        }
    }

    /// The admission controller, when the pool has `[pools.NAME.admission]`.
    pub fn admission(&self) -> Option<&Arc<Admission>> {
        self.admission.as_ref()
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

/// Why a request frontdoor makes on its own behalf got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The body (declared or read) is over the caller's limit.
    #[error("larger than the limit")]
    TooLarge,
    /// Connect, write or read failed.
    #[error("{0}")]
    Failed(String),
}

/// A GET that frontdoor sends on its own behalf (an asset fill, a cache refresh): the
/// forwarding headers a proxied request would carry, and `Accept-Encoding: identity`, since
/// frontdoor stores identity and compresses itself.
pub fn own_request(path_and_query: &str, host: Option<&str>) -> pingora::Result<RequestHeader> {
    let mut request = RequestHeader::build("GET", path_and_query.as_bytes(), None)?;
    request.insert_header(http::header::HOST, host.unwrap_or("localhost"))?;
    request.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
    request.insert_header(
        crate::headers::X_REQUEST_START,
        crate::headers::request_start_value(SystemTime::now()),
    )?;
    request.insert_header(crate::headers::X_FORWARDED_PROTO, "https")?;
    Ok(request)
}

/// Sends `request` to the next backend of `pool` through `connector` (its keep-alive pool)
/// and reads the whole answer, refusing bodies over `max` bytes. The connection goes back to
/// the pool only after a complete answer.
pub async fn fetch(
    connector: &Connector,
    pool: &Pool,
    request: RequestHeader,
    max: u64,
) -> Result<(Box<ResponseHeader>, Bytes), FetchError> {
    let failed = |e: Box<pingora::Error>| FetchError::Failed(e.to_string());
    let peer = pool.peer(&mut Attempts::default());
    let (mut session, _reused) = connector.get_http_session(&*peer).await.map_err(failed)?;
    session
        .write_request_header(Box::new(request))
        .await
        .map_err(failed)?;
    session.finish_request_body().await.map_err(failed)?;
    session.read_response_header().await.map_err(failed)?;
    let head = session
        .response_header()
        .ok_or_else(|| FetchError::Failed("no response head".into()))?
        .clone();
    let declared = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(FetchError::TooLarge);
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = session.read_response_body().await.map_err(failed)? {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    connector
        .release_http_session(session, &*peer, Some(pool.settings().idle_timeout))
        .await;
    Ok((Box::new(head), exact(body)))
}

/// `buffer`'s bytes in an allocation of their own size. What frontdoor stores lives long, and
/// a buffer grown by doubling holds up to twice its bytes (`freeze` keeps the capacity).
pub fn exact(buffer: BytesMut) -> Bytes {
    if buffer.capacity() > buffer.len() + buffer.len() / 16 {
        Bytes::copy_from_slice(&buffer)
    } else {
        buffer.freeze()
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
            admission: None,
        };
        Pool::new("app", settings, None)
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
