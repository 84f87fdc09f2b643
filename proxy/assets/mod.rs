//! Fingerprinted assets served from memory.
//!
//! A route with `[routes.assets]` answers GET and HEAD for fingerprinted paths
//! (`/assets/application-3f9a1c2b.js`, see [`is_fingerprinted`]) from an in-memory cache
//! (moka: TinyLFU admission, bounded by bytes). A miss fills the entry once however many
//! requests wait for it (moka coalesces concurrent fills of one key), from the route's pool or
//! from a directory (with the `.br`/`.gz` siblings it has). Each asset is compressed once, gzip
//! then Brotli 11, on a bounded blocking pool off the request path; the fill itself makes a
//! fast Brotli (quality 5) first, so the first visitor already gets Brotli, and until Brotli 11
//! is ready that one is served. [`warm`] fills the cache before traffic asks, from the app's
//! asset manifest or a directory's files, newest first.
//! Responses choose the encoding by q-value and server preference, carry a strong ETag per
//! encoding, `Cache-Control: public, max-age=31536000, immutable`, and honour `If-None-Match`
//! (304) and a single `Range` (on the identity bytes).
//!
//! What is not served from memory is proxied as usual: non-fingerprinted paths (they may
//! change in place), other methods, upstream answers other than `200` (never cached as a
//! success), already-encoded upstream bodies, and files over `max-object-size`.

mod answer;
mod conditional;
mod directory;
mod variants;
pub mod warm;

pub use answer::{respond, respond_stored, Answer};
pub use conditional::{if_range, none_match, not_modified_since, range, RangeRequest};
pub use variants::{content_hash, is_fingerprinted, Effort, Variant};

use bytes::Bytes;
use http::{header, HeaderValue};
use moka::future::Cache;
use pingora::connectors::http::Connector;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

use crate::encoding::Encoding;
use crate::metrics::Metrics;
use crate::upstream::{self, FetchError, Pool};

/// `[cache]` as the asset cache uses it: sized at start, kept across reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Bytes held, all encodings counted.
    pub capacity: u64,
    /// Assets compressed at once (Brotli 11 runs on the blocking pool).
    pub compression_threads: NonZeroUsize,
}

/// Where a route's assets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetSource {
    /// Read through the route's pool (Passenger serving `public/`).
    Upstream,
    /// Read from this directory (canonical), URL path below it, like nginx's `root`.
    Directory(PathBuf),
}

/// `[routes.assets]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRoute {
    /// The source of the files.
    pub source: AssetSource,
    /// Larger files are proxied, never held.
    pub max_object_size: u64,
    /// Whether responses say `X-Cache: HIT|MISS`.
    pub x_cache_header: bool,
    /// The app's asset manifest (a file, or the folder holding it), for [`warm`].
    pub manifest: Option<PathBuf>,
    /// Whether the route's assets are warmed at start and on reload.
    pub warm: bool,
}

/// One stored body and its encodings: a fingerprinted asset, or a response in the edge cache.
#[derive(Debug)]
pub struct Asset {
    content_type: Option<HeaderValue>,
    identity: Variant,
    gzip: OnceLock<Option<Variant>>,
    brotli: OnceLock<Option<Variant>>,
    /// Brotli at streaming effort, served until `brotli` (quality 11) is ready.
    brotli_fast: OnceLock<Option<Variant>>,
}

impl Asset {
    /// `body` as identity only, until [`Asset::compress`] adds the other encodings.
    pub fn new(body: Bytes, content_type: Option<HeaderValue>) -> Self {
        Asset {
            content_type,
            identity: Variant::identity(body),
            gzip: OnceLock::new(),
            brotli: OnceLock::new(),
            brotli_fast: OnceLock::new(),
        }
    }

    /// The same bytes and the variants ready so far, under `content_type`, for an entry whose
    /// fields change but whose body does not (an edge-cache entry revalidated with a `304`,
    /// which may correct the media type: the encoded variants stay valid for the same bytes).
    pub fn reused(&self, content_type: Option<HeaderValue>) -> Asset {
        let copy = |slot: &OnceLock<Option<Variant>>| {
            let new = OnceLock::new();
            if let Some(variant) = slot.get() {
                let _ = new.set(variant.clone());
            }
            new
        };
        Asset {
            content_type,
            identity: self.identity.clone(),
            gzip: copy(&self.gzip),
            brotli: copy(&self.brotli),
            brotli_fast: copy(&self.brotli_fast),
        }
    }

    /// Bytes of the identity body.
    pub fn identity_len(&self) -> u64 {
        self.identity.body.len() as u64
    }

    /// `body` with the Brotli and gzip forms a build step already made (`.br`/`.gz` files):
    /// those are served as they are and never compressed again.
    pub fn precompressed(
        body: Bytes,
        content_type: Option<HeaderValue>,
        brotli: Option<Bytes>,
        gzip: Option<Bytes>,
    ) -> Self {
        let asset = Asset::new(body, content_type);
        let tag = asset.identity.etag.trim_matches('"').to_string();
        for (slot, encoding, body) in [
            (&asset.brotli, Encoding::Brotli, brotli),
            (&asset.gzip, Encoding::Gzip, gzip),
        ] {
            if let Some(body) = body {
                // The tag hashes these bytes: a rebuilt `.br` of the same file is another entity.
                let etag = format!(
                    "\"{tag}-{}-{:08x}\"",
                    encoding.token(),
                    content_hash(&body) as u32
                );
                let _ = slot.set(Some(Variant {
                    encoding,
                    body,
                    etag,
                }));
            }
        }
        asset
    }

    /// The variant for `encoding`, if it is ready (and was worth keeping).
    pub fn variant(&self, encoding: Encoding) -> Option<&Variant> {
        match encoding {
            Encoding::Identity => Some(&self.identity),
            Encoding::Gzip => self.gzip.get().and_then(Option::as_ref),
            Encoding::Brotli => self
                .brotli
                .get()
                .and_then(Option::as_ref)
                .or_else(|| self.brotli_fast.get().and_then(Option::as_ref)),
            // Stored variants are Brotli and gzip; zstd is for text compressed on the fly.
            Encoding::Zstd => None,
        }
    }

    /// Whether gzip or Brotli 11 is still to be made.
    pub fn needs_compression(&self) -> bool {
        self.gzip.get().is_none() || self.brotli.get().is_none()
    }

    /// Makes the fast Brotli variant, unless a Brotli one exists; returns the bytes it saves.
    /// CPU-bound (milliseconds for a large bundle): call it on a blocking thread.
    pub fn compress_fast(&self) -> Option<usize> {
        if self.brotli.get().is_some() || self.brotli_fast.get().is_some() {
            return None;
        }
        let variant = Variant::compressed(&self.identity, Encoding::Brotli, Effort::Fast)
            .unwrap_or_else(|e| {
                tracing::warn!("fast br compression failed: {e}");
                None
            })
            .map(|mut v| {
                // Other bytes than quality 11 gives: another strong ETag.
                let tag = self.identity.etag.trim_matches('"');
                v.etag = format!("\"{tag}-br-fast\"");
                v
            });
        let saved = variant
            .as_ref()
            .map(|v| self.identity.body.len() - v.body.len());
        let _ = self.brotli_fast.set(variant);
        saved
    }

    /// The same asset without its interim fast Brotli (once Brotli 11 is ready), sharing the
    /// bytes of the other variants.
    pub fn settled(&self) -> Asset {
        Asset {
            content_type: self.content_type.clone(),
            identity: self.identity.clone(),
            gzip: self.gzip.clone(),
            brotli: self.brotli.clone(),
            brotli_fast: OnceLock::new(),
        }
    }

    /// Encodings ready to serve, most preferred first.
    pub fn available(&self) -> Vec<Encoding> {
        Encoding::PREFERENCE
            .into_iter()
            .filter(|e| self.variant(*e).is_some())
            .collect()
    }

    /// Compresses the identity body (gzip, then Brotli) at `effort`, keeping each variant that
    /// is smaller; returns the bytes each kept variant saves. CPU-bound: call it on a blocking
    /// thread. A variant made already (a `.br` file, a second call) is not made again.
    pub fn compress(&self, effort: Effort) -> Vec<(Encoding, usize)> {
        let mut saved = Vec::new();
        for (slot, encoding) in [
            (&self.gzip, Encoding::Gzip),
            (&self.brotli, Encoding::Brotli),
        ] {
            if slot.get().is_some() {
                continue;
            }
            let variant =
                Variant::compressed(&self.identity, encoding, effort).unwrap_or_else(|e| {
                    tracing::warn!("{} compression failed: {e}", encoding.token());
                    None
                });
            if let Some(v) = &variant {
                saved.push((encoding, self.identity.body.len() - v.body.len()));
            }
            let _ = slot.set(variant);
        }
        saved
    }

    /// Whether compressing could pay: text, SVG, JSON, fonts that are not compressed already,
    /// WebAssembly. Images, `woff2`, audio, video and archives are compressed by their format.
    pub fn worth_compressing(&self) -> bool {
        self.content_type
            .as_ref()
            .and_then(|t| t.to_str().ok())
            .is_some_and(|t| {
                let media = t.split(';').next().unwrap_or("").trim();
                crate::encoding::compressible(t)
                    || matches!(
                        media,
                        "font/ttf"
                            | "font/otf"
                            | "application/vnd.ms-fontobject"
                            | "application/wasm"
                    )
            })
    }

    /// Bytes held, all variants (moka's weight; saturates at 4 GiB).
    pub fn weight(&self) -> u32 {
        let bytes: usize = [
            Some(&self.identity),
            self.gzip.get().and_then(Option::as_ref),
            self.brotli.get().and_then(Option::as_ref),
            self.brotli_fast.get().and_then(Option::as_ref),
        ]
        .into_iter()
        .flatten()
        .map(|v| v.body.len())
        .sum();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// Why a request is proxied instead of answered from memory. Expected outcomes, not faults.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Bypass {
    /// The upstream did not answer 200.
    #[error("upstream answered {0}")]
    Status(u16),
    /// Over `max-object-size`.
    #[error("larger than max-object-size")]
    TooLarge,
    /// The upstream sent a content-coded body; we only store what we encode ourselves.
    #[error("already encoded by the upstream")]
    Encoded,
    /// No such file in the directory.
    #[error("no such file")]
    NotFound,
    /// A path that could leave the directory (`..`, encoded bytes, NUL, backslash).
    #[error("path not allowed")]
    BadPath,
    /// The fill failed (connect, read, I/O).
    #[error("fill failed: {0}")]
    Failed(String),
}

/// Whether a lookup found the asset in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from memory.
    Hit,
    /// Filled now (or waited for another request's fill).
    Miss,
    /// Served past its fresh time (`stale-while-revalidate`, `stale-if-error`).
    Stale,
    /// Served from memory after the app confirmed it (a `304` to our conditional request).
    Revalidated,
}

impl CacheStatus {
    /// The `X-Cache` value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Revalidated => "REVALIDATED",
        }
    }
}

/// The asset cache, shared by every request and kept across reloads.
pub struct AssetCache {
    cache: Cache<String, Arc<Asset>>,
    connector: Connector,
    compression: Arc<Semaphore>,
    /// Fast Brotli in fills: short, and never behind the queue of Brotli 11 work.
    fast_compression: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl AssetCache {
    /// A cache holding at most `settings.capacity` bytes.
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Self {
        let evictions = metrics.clone();
        let cache = Cache::builder()
            .max_capacity(settings.capacity)
            .weigher(|_key: &String, asset: &Arc<Asset>| asset.weight())
            .eviction_listener(move |_key, _asset, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evictions.asset_evicted();
                }
            })
            .build();
        AssetCache {
            cache,
            connector: Connector::new(None),
            compression: Arc::new(Semaphore::new(settings.compression_threads.get())),
            fast_compression: Arc::new(Semaphore::new(settings.compression_threads.get())),
            metrics,
        }
    }

    /// Bytes held now (all variants), after moka's pending maintenance.
    pub async fn bytes_held(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.weighted_size()
    }

    /// The asset at `path` of `route_name`, from memory or filled now.
    pub async fn get(
        self: &Arc<Self>,
        route_name: &str,
        route: &AssetRoute,
        path: &str,
        host: Option<&str>,
        pool: &Pool,
    ) -> Result<(Arc<Asset>, CacheStatus), Arc<Bypass>> {
        let key = AssetCache::key(route_name, path);
        if let Some(asset) = self.cache.get(&key).await {
            return Ok((asset, CacheStatus::Hit));
        }
        // Boxed: the fill's future (a fetch from the app) is several KB, and every hit would
        // otherwise carry it and have it copied with the request's future.
        Box::pin(self.fill(key, route, path, host, pool)).await
    }

    /// A miss of `get`: the asset read or fetched once (concurrent misses of `key` wait for
    /// the same fill), then stored.
    async fn fill(
        self: &Arc<Self>,
        key: String,
        route: &AssetRoute,
        path: &str,
        host: Option<&str>,
        pool: &Pool,
    ) -> Result<(Arc<Asset>, CacheStatus), Arc<Bypass>> {
        let fill = async {
            let asset = match &route.source {
                AssetSource::Upstream => {
                    let (body, content_type) =
                        self.fetch(path, host, pool, route.max_object_size).await?;
                    Asset::new(body, content_type)
                }
                AssetSource::Directory(root) => {
                    let read = directory::read_file(root, path, route.max_object_size).await?;
                    Asset::precompressed(read.body, read.content_type, read.brotli, read.gzip)
                }
            };
            let asset = Arc::new(asset);
            if asset.worth_compressing() && asset.needs_compression() {
                self.compress_fast(&asset).await;
                self.precompress(key.clone(), asset.clone());
            }
            Ok::<_, Bypass>(asset)
        };
        let asset = self.cache.try_get_with(key.clone(), fill).await?;
        Ok((asset, CacheStatus::Miss))
    }

    /// The cache key of `path` on route `route_name`.
    fn key(route_name: &str, path: &str) -> String {
        format!("{route_name}\u{0}{path}")
    }

    /// Whether the asset at `path` of `route_name` is in memory.
    pub fn contains(&self, route_name: &str, path: &str) -> bool {
        self.cache.contains_key(&AssetCache::key(route_name, path))
    }

    /// Makes `asset`'s fast Brotli on the blocking pool and waits for it: the request that
    /// filled the asset is answered with it.
    async fn compress_fast(&self, asset: &Arc<Asset>) {
        let Ok(_permit) = self.fast_compression.acquire().await else {
            return;
        };
        let work = asset.clone();
        if let Ok(Some(saved)) = tokio::task::spawn_blocking(move || work.compress_fast()).await {
            self.metrics.asset_compressed("br-fast", saved);
        }
    }

    /// GET from a backend of `pool`, asking for identity so that we encode it ourselves.
    async fn fetch(
        &self,
        path: &str,
        host: Option<&str>,
        pool: &Pool,
        max: u64,
    ) -> Result<(Bytes, Option<http::HeaderValue>), Bypass> {
        let request =
            upstream::own_request(path, host).map_err(|e| Bypass::Failed(e.to_string()))?;
        let (head, body) = upstream::fetch(&self.connector, pool, request, max)
            .await
            .map_err(|e| match e {
                FetchError::TooLarge => Bypass::TooLarge,
                FetchError::Failed(why) => Bypass::Failed(why),
            })?;
        if head.status != http::StatusCode::OK {
            return Err(Bypass::Status(head.status.as_u16()));
        }
        let encoded = head
            .headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded {
            return Err(Bypass::Encoded);
        }
        Ok((body, head.headers.get(header::CONTENT_TYPE).cloned()))
    }

    /// Compresses `asset` (gzip, then Brotli 11) on the bounded pool, then re-inserts it so
    /// the cache weighs the new variants. The pool takes work in the order it was asked for.
    fn precompress(self: &Arc<Self>, key: String, asset: Arc<Asset>) {
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(permit) = this.compression.clone().acquire_owned().await else {
                return;
            };
            let work = asset.clone();
            let metrics = this.metrics.clone();
            let done = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                for (encoding, saved) in work.compress(Effort::Max) {
                    metrics.asset_compressed(encoding.token(), saved);
                }
            })
            .await;
            // Re-inserted without the fast Brotli, whose bytes go once in-flight answers end.
            if done.is_ok() && this.cache.contains_key(&key) {
                this.cache.insert(key, Arc::new(asset.settled())).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_formats_that_are_not_compressed_already_are_worth_compressing() {
        let asset = |t: &'static str| Asset::new(Bytes::new(), Some(HeaderValue::from_static(t)));
        for t in [
            "application/javascript",
            "text/css; charset=utf-8",
            "image/svg+xml",
            "font/ttf",
            "application/wasm",
        ] {
            assert!(asset(t).worth_compressing(), "{t}");
        }
        for t in ["image/png", "image/webp", "font/woff2", "video/mp4"] {
            assert!(!asset(t).worth_compressing(), "{t}");
        }
        assert!(!Asset::new(Bytes::new(), None).worth_compressing());
    }
}
