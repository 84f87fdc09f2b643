//! The read-through edge cache for dynamic responses, opt-in per route (`[routes.cache]`).
//!
//! A GET/HEAD without credentials on a cache route is looked up by route, route `version`,
//! host and path with query. What happens next depends on the entry's age (see
//! [`policy`] for what may be stored and for how long):
//!
//! | entry | answer |
//! |---|---|
//! | fresh | from memory, `X-Cache: HIT` |
//! | inside `stale-while-revalidate` | from memory, `X-Cache: STALE`; one background refresh per entry |
//! | inside `stale-if-error` only | frontdoor asks the app itself; on a connect/read failure or a 500/502/503/504 the stale entry answers (`STALE`) |
//! | none | proxied as usual; a storable answer is copied into memory as it streams (`X-Cache: MISS`) |
//!
//! Entries are stored as identity and compressed once (gzip, Brotli 5) on a bounded blocking
//! pool before they are inserted, then answered like assets: encoding by negotiation, strong
//! ETag per encoding, `If-None-Match` → 304, `Range`. The cache is bounded by bytes (moka,
//! TinyLFU); each entry expires after its fresh time plus the longer stale window. Bumping
//! the route's `version` makes every old entry a miss: the operator's purge.
//!
//! Concurrent misses for one key are each proxied (no request collapsing): they may differ in
//! what the app decides, and only a storable answer is shared.

pub mod policy;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderName, HeaderValue};
use moka::sync::Cache;
use pingora::connectors::http::Connector;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use crate::assets::{self, Answer, Asset, CacheStatus, Effort};
use crate::metrics::Metrics;
use crate::upstream::{self, Pool};
pub use policy::{Freshness, Lifetime, Uncacheable};

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
    /// Requests carrying `Authorization` may use (and fill) the cache.
    pub allow_authorization: bool,
    /// Used when the app's `Cache-Control` has no `stale-while-revalidate`.
    pub stale_while_revalidate: Duration,
    /// Used when the app's `Cache-Control` has no `stale-if-error`.
    pub stale_if_error: Duration,
    /// Send `X-Cache: HIT|MISS|STALE`.
    pub x_cache_header: bool,
}

/// One stored response.
#[derive(Debug)]
pub struct Entry {
    status: u16,
    /// The app's fields sent again on every answer (framing, encoding and ETag fields are
    /// frontdoor's own).
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Asset,
    stored: Instant,
    /// `Age` the app (or a cache before it) reported when this was stored, seconds.
    age_at_store: u64,
    lifetime: Lifetime,
    /// Set while a background refresh of this entry runs (one at a time).
    refreshing: AtomicBool,
}

impl Entry {
    fn since_stored(&self) -> Duration {
        self.stored.elapsed()
    }

    /// The fields of an answer from this entry: the app's, then `Age`.
    fn answer_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = self.headers.clone();
        let age = self.age_at_store + self.since_stored().as_secs();
        headers.push((header::AGE, HeaderValue::from(age)));
        headers
    }

    fn weight(&self) -> u32 {
        let fields: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        self.body
            .weight()
            .saturating_add(u32::try_from(fields).unwrap_or(u32::MAX))
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// Fresh: answer from memory.
    Hit(Arc<Entry>),
    /// Past its fresh time but inside `stale-while-revalidate`: answer from memory and
    /// refresh in the background.
    Stale(Arc<Entry>),
    /// Past both, but inside `stale-if-error`: ask the app; the entry answers if it fails.
    Fallback(Arc<Entry>),
    /// Nothing usable: proxy, and store the answer if it is storable.
    Miss,
}

/// A response being copied into the cache while it streams to the client.
#[derive(Debug)]
pub struct Fill {
    key: String,
    status: u16,
    headers: Vec<(HeaderName, HeaderValue)>,
    content_type: Option<HeaderValue>,
    age: u64,
    lifetime: Lifetime,
    max: u64,
    body: BytesMut,
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

/// Where a background or foreground refresh sends its request.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The route's name (metrics label).
    pub route_name: Arc<str>,
    /// The route's cache rules.
    pub route: CacheRoute,
    /// The route's pool.
    pub pool: Arc<Pool>,
    /// The requested host.
    pub host: Option<String>,
    /// Path and query, as requested.
    pub path_and_query: String,
}

/// The edge cache, shared by every request and kept across reloads.
pub struct EdgeCache {
    cache: Cache<String, Arc<Entry>>,
    connector: Connector,
    compression: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// Each entry lives for its fresh time plus the longer of its stale windows.
struct RetainFor;

impl moka::Expiry<String, Arc<Entry>> for RetainFor {
    fn expire_after_create(
        &self,
        _key: &String,
        entry: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.lifetime.retain())
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Arc<Entry>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.lifetime.retain())
    }
}

impl EdgeCache {
    /// A cache holding at most `settings.capacity` bytes.
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Self {
        let evictions = metrics.clone();
        let cache = Cache::builder()
            .max_capacity(settings.capacity)
            .weigher(|_key: &String, entry: &Arc<Entry>| entry.weight())
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
        }
    }

    /// The key of a request: route, route version, host, path and query.
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

    /// What the cache holds for `key`, judged by its age now.
    pub fn lookup(&self, key: &str) -> Lookup {
        let Some(entry) = self.cache.get(key) else {
            return Lookup::Miss;
        };
        match entry.lifetime.freshness(entry.since_stored()) {
            Freshness::Fresh => Lookup::Hit(entry),
            Freshness::Stale => Lookup::Stale(entry),
            Freshness::Fallback => Lookup::Fallback(entry),
            Freshness::Expired => Lookup::Miss,
        }
    }

    /// The entry that answers `key` now, and how to label it; `None` means proxy the request.
    /// A stale entry inside `stale-while-revalidate` answers at once and starts a background
    /// refresh; one only inside `stale-if-error` answers only if asking the app now fails.
    pub async fn find(
        self: &Arc<Self>,
        key: &str,
        origin: impl FnOnce() -> Origin,
    ) -> Option<(Arc<Entry>, CacheStatus)> {
        match self.lookup(key) {
            Lookup::Hit(entry) => Some((entry, CacheStatus::Hit)),
            Lookup::Stale(entry) => {
                self.refresh_in_background(key.to_string(), &entry, origin());
                Some((entry, CacheStatus::Stale))
            }
            Lookup::Fallback(entry) => {
                let origin = origin();
                let refreshed = self.refresh(key.to_string(), &origin).await;
                self.metrics
                    .edge_cache_refreshed(&origin.route_name, refreshed.label());
                match refreshed {
                    Refresh::Stored(fresh) => Some((fresh, CacheStatus::Miss)),
                    Refresh::Failed(why) => {
                        tracing::info!("serving stale {}: {why}", origin.path_and_query);
                        Some((entry, CacheStatus::Stale))
                    }
                    Refresh::Uncacheable => None,
                }
            }
            Lookup::Miss => None,
        }
    }

    /// Starts a fill if the upstream's `response` to the request `key` may be stored.
    pub fn begin_fill(
        &self,
        route_name: &str,
        route: &CacheRoute,
        key: String,
        response: &ResponseHeader,
    ) -> Option<Fill> {
        let status = response.status.as_u16();
        match policy::response(route, status, &response.headers) {
            Ok(lifetime) => Some(Fill {
                key,
                status,
                headers: kept_headers(response),
                content_type: response.headers.get(header::CONTENT_TYPE).cloned(),
                age: age_of(response),
                lifetime,
                max: route.max_object_size,
                body: BytesMut::new(),
            }),
            Err(why) => {
                self.metrics
                    .edge_cache_uncacheable(route_name, why.to_string().as_str());
                None
            }
        }
    }

    /// Compresses a complete fill off the request path, then inserts it.
    pub fn finish_fill(self: &Arc<Self>, route_name: &str, fill: Fill) {
        let this = self.clone();
        let route_name = route_name.to_string();
        tokio::spawn(async move {
            let Fill {
                key,
                status,
                headers,
                content_type,
                age,
                lifetime,
                body,
                ..
            } = fill;
            if let Some(entry) = this
                .prepare(
                    status,
                    headers,
                    content_type,
                    age,
                    lifetime,
                    upstream::exact(body),
                )
                .await
            {
                this.insert(&route_name, key, entry);
            }
        });
    }

    async fn prepare(
        &self,
        status: u16,
        headers: Vec<(HeaderName, HeaderValue)>,
        content_type: Option<HeaderValue>,
        age: u64,
        lifetime: Lifetime,
        body: Bytes,
    ) -> Option<Entry> {
        let asset = Asset::new(body, content_type);
        let asset = if asset.worth_compressing() {
            let permit = self.compression.clone().acquire_owned().await.ok()?;
            let metrics = self.metrics.clone();
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                for (encoding, saved) in asset.compress(Effort::Fast) {
                    metrics.edge_cache_compressed(encoding.token(), saved);
                }
                asset
            })
            .await
            .ok()?
        } else {
            asset
        };
        Some(Entry {
            status,
            headers,
            body: asset,
            stored: Instant::now(),
            age_at_store: age,
            lifetime,
            refreshing: AtomicBool::new(false),
        })
    }

    fn insert(&self, route_name: &str, key: String, entry: Entry) -> Arc<Entry> {
        let entry = Arc::new(entry);
        self.cache.insert(key, entry.clone());
        self.metrics.edge_cache_stored(route_name);
        entry
    }

    /// Refreshes a stale `entry` in the background unless a refresh of it already runs.
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
            let result = this.refresh(key, &origin).await;
            this.metrics
                .edge_cache_refreshed(&origin.route_name, result.label());
            // Whatever happened, a later stale hit may try again.
            entry.refreshing.store(false, Ordering::Release);
        });
    }

    /// Asks the app for `key` now and stores a storable answer.
    pub async fn refresh(&self, key: String, origin: &Origin) -> Refresh {
        let request = match upstream::own_request(&origin.path_and_query, origin.host.as_deref()) {
            Ok(request) => request,
            Err(e) => return Refresh::Failed(e.to_string()),
        };
        let max = origin.route.max_object_size;
        let (head, body) = match upstream::fetch(&self.connector, &origin.pool, request, max).await
        {
            Ok(answer) => answer,
            Err(upstream::FetchError::TooLarge) => {
                self.cache.invalidate(&key);
                return Refresh::Uncacheable;
            }
            Err(upstream::FetchError::Failed(why)) => return Refresh::Failed(why),
        };
        let status = head.status.as_u16();
        if policy::is_error_status(status) {
            return Refresh::Failed(format!("the app answered {status}"));
        }
        let Some(fill) = self.begin_fill(&origin.route_name, &origin.route, key.clone(), &head)
        else {
            // The app no longer lets this be cached: drop the old answer.
            self.cache.invalidate(&key);
            return Refresh::Uncacheable;
        };
        let entry = self
            .prepare(
                fill.status,
                fill.headers,
                fill.content_type,
                fill.age,
                fill.lifetime,
                body,
            )
            .await;
        match entry {
            Some(entry) => Refresh::Stored(self.insert(&origin.route_name, key, entry)),
            None => Refresh::Failed("compression was cancelled".into()),
        }
    }

    /// Bytes held now, after moka's pending maintenance.
    pub fn bytes_held(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}

/// How a refresh ended.
#[derive(Debug)]
pub enum Refresh {
    /// A new entry is stored (and returned, for a foreground refresh to answer with).
    Stored(Arc<Entry>),
    /// The app's answer may not be stored; the old entry was dropped.
    Uncacheable,
    /// The app could not be reached, failed, or answered 500/502/503/504.
    Failed(String),
}

impl Refresh {
    fn label(&self) -> &'static str {
        match self {
            Refresh::Stored(_) => "stored",
            Refresh::Uncacheable => "uncacheable",
            Refresh::Failed(_) => "error",
        }
    }
}

/// Fields that describe framing, encoding, validators or the hop are frontdoor's to set on
/// each answer; the rest are the app's and are sent again as they were.
fn kept_headers(response: &ResponseHeader) -> Vec<(HeaderName, HeaderValue)> {
    const OURS: [HeaderName; 9] = [
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::TRANSFER_ENCODING,
        header::ETAG,
        header::AGE,
        header::VARY,
        header::ACCEPT_RANGES,
        header::CONNECTION,
    ];
    response
        .headers
        .iter()
        .filter(|(name, _)| {
            !OURS.contains(name)
                && *name != crate::headers::X_REQUEST_ID
                && name.as_str() != "x-cache"
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

fn age_of(response: &ResponseHeader) -> u64 {
    response
        .headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes the answer from `entry` (304, Range, HEAD and encoding as for assets).
pub async fn respond(
    session: &mut Session,
    entry: &Entry,
    x_cache: Option<CacheStatus>,
    request_id: &str,
) -> pingora::Result<u16> {
    let headers = entry.answer_headers();
    let answer = Answer {
        status: entry.status,
        headers: &headers,
        x_cache,
    };
    assets::respond_stored(session, &entry.body, &answer, request_id).await
}
