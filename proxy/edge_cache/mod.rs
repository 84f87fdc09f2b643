//! The read-through edge cache for dynamic responses, opt-in per route (`[routes.cache]`).
//!
//! A GET/HEAD on a cache route is looked up by route, route `version`, host and path with
//! query (the primary key), then among the variants stored for it by the request fields the
//! app's `Vary` names (secondary keys, RFC 9111 §4.1). What happens next depends on the
//! entry's current age (RFC 9111 §4.2; see [`policy`] for what may be stored):
//!
//! | entry | answer |
//! |---|---|
//! | fresh | from memory, `X-Cache: HIT` |
//! | inside `stale-while-revalidate` | from memory, `X-Cache: STALE`; one background revalidation per entry |
//! | inside `stale-if-error` | revalidated first; on a connect/read failure or a 500/502/503/504 the stale entry answers (`STALE`) |
//! | stale, with a validator | revalidated first (`If-None-Match`/`If-Modified-Since` from the stored `ETag`/`Last-Modified`): a `304` updates the stored fields and the stored body answers |
//! | none | proxied; concurrent misses for one key wait for the first (collapsed); a storable answer is copied into memory as it streams (`X-Cache: MISS`) and answers the next request as soon as it is complete |
//!
//! Bodies are stored as the app sent them; one the app did not encode (and did not mark
//! `no-transform`) is compressed once (gzip, Brotli 5) on a bounded blocking pool after it is
//! stored, then answered like assets: encoding by negotiation, `If-None-Match`,
//! `If-Modified-Since`, `Range` under `If-Range`. A successful unsafe request (POST, PUT, …)
//! removes what is stored for its URL and for its `Location`/`Content-Location` on the same
//! host (§4.4). Bumping the route's `version` makes every old entry a miss: the operator's purge.

pub mod collapse;
pub mod directives;
mod entry;
pub mod freshness;
pub mod policy;
mod revalidate;

use bytes::BytesMut;
use http::HeaderMap;
use moka::sync::Cache;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use crate::assets::{CacheStatus, Effort};
use crate::metrics::Metrics;
use crate::upstream::{self, Pool};
pub use collapse::{FlightGuard, Flights, Joined};
pub use entry::{Entry, Received};
pub use freshness::{Freshness, Lifetime};
pub use policy::Uncacheable;
pub use revalidate::{revalidation_request, Revalidated};

/// `[cache]` as the edge cache uses it: sized at start, kept across reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Bytes held, all encodings counted.
    pub capacity: u64,
    /// Responses compressed at once (as many as the asset cache has, in a pool of their own).
    pub compression_threads: NonZeroUsize,
}

/// `[routes.cache]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRoute {
    /// Part of every key: bumping it (and reloading) makes every old entry a miss.
    pub version: u64,
    /// Larger responses are proxied, never held.
    pub max_object_size: u64,
    /// Requests carrying `Cookie` may use (and fill) the cache.
    pub allow_cookies: bool,
    /// Requests carrying `Authorization` may use the cache (and fill it with answers the app
    /// marked shareable: `public`, `s-maxage`, `must-revalidate`).
    pub allow_authorization: bool,
    /// Used when the app's `Cache-Control` has no `stale-while-revalidate`.
    pub stale_while_revalidate: Duration,
    /// Used when the app's `Cache-Control` has no `stale-if-error`.
    pub stale_if_error: Duration,
    /// Send `X-Cache: HIT|MISS|STALE`.
    pub x_cache_header: bool,
}

/// The stored variants of one URL, newest first.
#[derive(Debug, Default)]
pub struct Variants {
    entries: Vec<Arc<Entry>>,
}

impl Variants {
    fn weight(&self) -> u32 {
        self.entries
            .iter()
            .fold(0u32, |sum, e| sum.saturating_add(e.weight()))
    }

    fn remaining(&self) -> Duration {
        self.entries
            .iter()
            .map(|e| e.remaining())
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// Fresh: answer from memory.
    Hit(Arc<Entry>),
    /// Past its fresh time but inside `stale-while-revalidate`: answer from memory and
    /// revalidate in the background.
    Stale(Arc<Entry>),
    /// Revalidate with the app first; `true`: answer stale if the app fails.
    Revalidate(Arc<Entry>, bool),
    /// Nothing usable: proxy, and store the answer if it is storable.
    Miss,
}

/// A response being copied into the cache while it streams to the client.
#[derive(Debug)]
pub struct Fill {
    key: String,
    received: Received,
    storable: policy::Storable,
    request: HeaderMap,
    max: u64,
    body: BytesMut,
    /// Releases the requests waiting for this fill when it is dropped (stored or not).
    flight: Option<FlightGuard>,
}

impl Fill {
    /// Appends a chunk; `false` once the body is over the limit (the fill is then dropped).
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        if (self.body.len() + chunk.len()) as u64 > self.max {
            return false;
        }
        self.body.extend_from_slice(chunk);
        true
    }
}

/// Where a background or foreground revalidation sends its request.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The route's name (metrics label).
    pub route_name: Arc<str>,
    /// The route's cache rules.
    pub route: CacheRoute,
    /// The route's pool.
    pub pool: Arc<Pool>,
    /// The request to send (path, the client's fields, forwarding fields; no conditionals).
    pub request: RequestHeader,
}

/// The edge cache, shared by every request and kept across reloads.
pub struct EdgeCache {
    cache: Cache<String, Arc<Variants>>,
    connector: Connector,
    compression: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    flights: Arc<Flights>,
}

/// Each URL's variants live for as long as the longest-lived of them is worth keeping.
struct RetainFor;

impl moka::Expiry<String, Arc<Variants>> for RetainFor {
    fn expire_after_create(
        &self,
        _key: &String,
        variants: &Arc<Variants>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(variants.remaining())
    }

    fn expire_after_update(
        &self,
        _key: &String,
        variants: &Arc<Variants>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(variants.remaining())
    }
}

impl EdgeCache {
    /// A cache holding at most `settings.capacity` bytes.
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Self {
        let evictions = metrics.clone();
        let cache = Cache::builder()
            .max_capacity(settings.capacity)
            .weigher(|_key: &String, variants: &Arc<Variants>| variants.weight())
            .expire_after(RetainFor)
            .eviction_listener(move |_key, _entry, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evictions.edge_cache_evicted();
                }
            })
            .build();
        EdgeCache {
            cache,
            connector: Connector::new(None),
            // Fast effort costs about a millisecond per 50 KB; its own small pool keeps it
            // from queueing behind the assets' Brotli 11.
            compression: Arc::new(Semaphore::new(settings.compression_threads.get())),
            metrics,
            flights: Arc::new(Flights::default()),
        }
    }

    /// The primary key of a request: route, route version, host, path and query.
    pub fn key(
        route_name: &str,
        route: &CacheRoute,
        host: Option<&str>,
        path_and_query: &str,
    ) -> String {
        format!(
            "{route_name}\u{0}{}\u{0}{}\u{0}{path_and_query}",
            route.version,
            host.unwrap_or("")
        )
    }

    /// What the cache holds for `key` that the request fields `request` select, judged by its
    /// age now.
    pub fn lookup(&self, key: &str, request: &HeaderMap) -> Lookup {
        let Some(variants) = self.cache.get(key) else {
            return Lookup::Miss;
        };
        let Some(entry) = variants.entries.iter().find(|e| e.selected_by(request)) else {
            return Lookup::Miss;
        };
        match entry.freshness() {
            Freshness::Fresh => Lookup::Hit(entry.clone()),
            Freshness::Stale => Lookup::Stale(entry.clone()),
            Freshness::Fallback => Lookup::Revalidate(entry.clone(), true),
            Freshness::Revalidate => Lookup::Revalidate(entry.clone(), false),
            Freshness::Expired => Lookup::Miss,
        }
    }

    /// Leads the fill (or revalidation) of `key`, or follows the one running.
    pub fn join(&self, key: &str) -> Joined {
        self.flights.join(key)
    }

    /// The fill of `key` running now, to wait on, if any.
    pub fn follow(&self, key: &str) -> Option<tokio::sync::watch::Receiver<()>> {
        self.flights.follow(key)
    }

    /// Drops everything stored for `key` (every variant): after an unsafe request to its URL.
    pub fn invalidate(&self, key: &str) {
        self.cache.invalidate(key);
    }

    /// Starts a fill if the upstream's `response` to a request with fields `request` may be
    /// stored; the request was sent `waited` ago. `flight` is released when the fill ends.
    #[allow(clippy::too_many_arguments)]
    pub fn begin_fill(
        &self,
        route_name: &str,
        route: &CacheRoute,
        key: String,
        request: &HeaderMap,
        response: &ResponseHeader,
        waited: Duration,
        flight: Option<FlightGuard>,
    ) -> Option<Fill> {
        let received = Received::now(response.status.as_u16(), response.headers.clone(), waited);
        let timing = received.timing();
        let checked = policy::response(
            route,
            request,
            received.status,
            &received.headers,
            &timing,
            received.response_time,
        );
        match checked {
            Ok(storable) => Some(Fill {
                key,
                received,
                storable,
                request: request.clone(),
                max: route.max_object_size,
                body: BytesMut::new(),
                flight,
            }),
            Err(why) => {
                self.metrics
                    .edge_cache_uncacheable(route_name, why.to_string().as_str());
                None
            }
        }
    }

    /// Stores a complete fill now (the next request is a hit), then compresses it off the
    /// request path.
    pub fn finish_fill(self: &Arc<Self>, route_name: &str, fill: Fill) {
        let Fill {
            key,
            received,
            storable,
            request,
            body,
            flight,
            ..
        } = fill;
        let entry = Entry::new(&received, storable, &request, upstream::exact(body));
        self.store(route_name, key, Arc::new(entry));
        drop(flight);
    }

    /// Inserts `entry` among the variants of `key` (replacing one selected by the same request
    /// fields) and starts compressing it.
    fn store(self: &Arc<Self>, route_name: &str, key: String, entry: Arc<Entry>) {
        self.insert(&key, entry.clone());
        self.metrics.edge_cache_stored(route_name);
        // Below the on-the-fly compressor's minimum a coding does not pay for its frame (and
        // would give the answer another ETag for nothing).
        let large = entry.body.identity_len() >= crate::encoding::MIN_SIZE;
        if !entry.as_sent && large && entry.body.worth_compressing() {
            self.compress_later(key, entry);
        }
    }

    fn insert(&self, key: &str, entry: Arc<Entry>) {
        let mut entries = vec![entry.clone()];
        if let Some(old) = self.cache.get(key) {
            entries.extend(
                old.entries
                    .iter()
                    .filter(|e| e.selecting != entry.selecting && e.remaining() > Duration::ZERO)
                    .take(policy::MAX_VARIANTS - 1)
                    .cloned(),
            );
        }
        self.cache
            .insert(key.to_string(), Arc::new(Variants { entries }));
    }

    /// Drops `entry` from the variants of `key`, if it is still there.
    fn remove(&self, key: &str, entry: &Arc<Entry>) {
        let Some(old) = self.cache.get(key) else {
            return;
        };
        let entries: Vec<_> = old
            .entries
            .iter()
            .filter(|e| !Arc::ptr_eq(e, entry))
            .cloned()
            .collect();
        if entries.is_empty() {
            self.cache.invalidate(key);
        } else if entries.len() < old.entries.len() {
            self.cache
                .insert(key.to_string(), Arc::new(Variants { entries }));
        }
    }

    /// Compresses `entry` on the bounded pool, then re-inserts its variants (if it is still
    /// stored) so that the cache weighs the new encodings.
    fn compress_later(self: &Arc<Self>, key: String, entry: Arc<Entry>) {
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(permit) = this.compression.clone().acquire_owned().await else {
                return;
            };
            let work = entry.clone();
            let metrics = this.metrics.clone();
            let done = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                for (encoding, saved) in work.body.compress(Effort::Fast) {
                    metrics.edge_cache_compressed(encoding.token(), saved);
                }
            })
            .await;
            if done.is_err() {
                return;
            }
            if let Some(current) = this.cache.get(&key) {
                if current.entries.iter().any(|e| Arc::ptr_eq(e, &entry)) {
                    this.cache.insert(key, current);
                }
            }
        });
    }

    /// Revalidates a stale `entry` in the background unless a revalidation of it already runs.
    pub fn refresh_in_background(
        self: &Arc<Self>,
        key: String,
        entry: &Arc<Entry>,
        origin: Origin,
    ) {
        if entry.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        let entry = entry.clone();
        tokio::spawn(async move {
            let result = this.revalidate(&key, &entry, &origin).await;
            this.metrics
                .edge_cache_refreshed(&origin.route_name, result.label());
            // Whatever happened, a later stale hit may try again.
            entry.refreshing.store(false, Ordering::Release);
        });
    }

    /// Bytes held now, after moka's pending maintenance.
    pub fn bytes_held(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}

/// Writes the answer from `entry` (304, Range, HEAD and encoding as for assets).
pub async fn respond(
    session: &mut Session,
    entry: &Entry,
    x_cache: Option<CacheStatus>,
    request_id: &str,
) -> pingora::Result<u16> {
    let headers = entry.answer_headers();
    let answer = entry.answer(&headers, x_cache);
    crate::assets::respond_stored(session, &entry.body, &answer, request_id).await
}

/// Whether the response to an unsafe request lets stored answers for its URL stay: only an
/// error (or an interim answer) does (RFC 9111 §4.4).
pub fn invalidates(status: u16) -> bool {
    (200..400).contains(&status)
}

/// The same-origin paths (with query) a response's `Location` and `Content-Location` name:
/// relative references, or absolute ones on `host` over https.
pub fn named_locations(response: &ResponseHeader, host: Option<&str>) -> Vec<String> {
    let mut paths = Vec::new();
    for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
        let Some(text) = response.headers.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let Ok(uri) = text.trim().parse::<http::Uri>() else {
            continue;
        };
        let same_origin = match (uri.scheme_str(), uri.host()) {
            (None, None) => true,
            (Some("https"), Some(h)) => host.is_some_and(|ours| h.eq_ignore_ascii_case(ours)),
            _ => false,
        };
        let path = uri.path_and_query().map(|p| p.as_str().to_string());
        if let Some(path) = path.filter(|p| same_origin && p.starts_with('/')) {
            paths.push(path);
        }
    }
    paths
}
