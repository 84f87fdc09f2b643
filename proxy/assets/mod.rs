//! Fingerprinted assets served from memory.
//!
//! A route with `[routes.assets]` answers GET and HEAD for fingerprinted paths
//! (`/assets/application-3f9a1c2b.js`, see [`is_fingerprinted`]) from an in-memory cache
//! (moka: TinyLFU admission, bounded by bytes). A miss fills the entry once however many
//! requests wait for it (moka coalesces concurrent fills of one key), from the route's pool or
//! from a directory. Each asset is compressed once, gzip then Brotli 11, on a bounded blocking
//! pool off the request path; until a variant is ready the best finished one is served.
//! Responses choose the encoding by q-value and server preference, carry a strong ETag per
//! encoding, `Cache-Control: public, max-age=31536000, immutable`, and honour `If-None-Match`
//! (304) and a single `Range` (on the identity bytes).
//!
//! What is not served from memory is proxied as usual: non-fingerprinted paths (they may
//! change in place), other methods, upstream answers other than `200` (never cached as a
//! success), already-encoded upstream bodies, and files over `max-object-size`.

mod answer;
mod conditional;
mod variants;

pub use answer::{respond, respond_stored, Answer};
pub use conditional::{if_range, none_match, not_modified_since, range, RangeRequest};
pub use variants::{content_hash, is_fingerprinted, Effort, Variant};

use bytes::Bytes;
use http::{header, HeaderValue};
use moka::future::Cache;
use pingora::connectors::http::Connector;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
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
}

/// One stored body and its encodings: a fingerprinted asset, or a response in the edge cache.
#[derive(Debug)]
pub struct Asset {
    content_type: Option<HeaderValue>,
    identity: Variant,
    gzip: OnceLock<Option<Variant>>,
    brotli: OnceLock<Option<Variant>>,
}

impl Asset {
    /// `body` as identity only, until [`Asset::compress`] adds the other encodings.
    pub fn new(body: Bytes, content_type: Option<HeaderValue>) -> Self {
        Asset {
            content_type,
            identity: Variant::identity(body),
            gzip: OnceLock::new(),
            brotli: OnceLock::new(),
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
        }
    }

    /// Bytes of the identity body.
    pub fn identity_len(&self) -> u64 {
        self.identity.body.len() as u64
    }

    /// The variant for `encoding`, if it is ready (and was worth keeping).
    pub fn variant(&self, encoding: Encoding) -> Option<&Variant> {
        match encoding {
            Encoding::Identity => Some(&self.identity),
            Encoding::Gzip => self.gzip.get().and_then(Option::as_ref),
            Encoding::Brotli => self.brotli.get().and_then(Option::as_ref),
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
    /// thread. A second call changes nothing.
    pub fn compress(&self, effort: Effort) -> Vec<(Encoding, usize)> {
        let mut saved = Vec::new();
        for (slot, encoding) in [
            (&self.gzip, Encoding::Gzip),
            (&self.brotli, Encoding::Brotli),
        ] {
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
        let bytes: usize = Encoding::PREFERENCE
            .iter()
            .filter_map(|e| self.variant(*e))
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
        let key = format!("{route_name}\u{0}{path}");
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
            let (body, content_type) = match &route.source {
                AssetSource::Upstream => {
                    self.fetch(path, host, pool, route.max_object_size).await?
                }
                AssetSource::Directory(root) => {
                    read_file(root, path, route.max_object_size).await?
                }
            };
            let asset = Arc::new(Asset::new(body, content_type));
            if asset.worth_compressing() {
                self.precompress(key.clone(), asset.clone());
            }
            Ok::<_, Bypass>(asset)
        };
        let asset = self.cache.try_get_with(key.clone(), fill).await?;
        Ok((asset, CacheStatus::Miss))
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

    /// Compresses `asset` (gzip, then Brotli) on the bounded pool, then re-inserts it so the
    /// cache weighs the new variants.
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
            if done.is_ok() && this.cache.contains_key(&key) {
                this.cache.insert(key, asset).await;
            }
        });
    }
}

/// `root` + the URL path, refusing anything that could name a file outside `root`.
async fn read_file(
    root: &Path,
    path: &str,
    max: u64,
) -> Result<(Bytes, Option<http::HeaderValue>), Bypass> {
    let mut file = root.to_path_buf();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let unsafe_segment = segment == ".."
            || segment == "."
            || segment.contains(['%', '\\', '\0'])
            || segment.starts_with('.');
        if unsafe_segment {
            return Err(Bypass::BadPath);
        }
        file.push(segment);
    }
    // Symlinks inside the root may point out of it: compare canonical paths.
    let canonical = tokio::fs::canonicalize(&file)
        .await
        .map_err(|_| Bypass::NotFound)?;
    if !canonical.starts_with(root) {
        return Err(Bypass::BadPath);
    }
    let metadata = tokio::fs::metadata(&canonical)
        .await
        .map_err(|_| Bypass::NotFound)?;
    if !metadata.is_file() {
        return Err(Bypass::NotFound);
    }
    if metadata.len() > max {
        return Err(Bypass::TooLarge);
    }
    let body = tokio::fs::read(&canonical)
        .await
        .map_err(|e| Bypass::Failed(e.to_string()))?;
    let content_type = content_type_for(&canonical).map(http::HeaderValue::from_static);
    Ok((Bytes::from(body), content_type))
}

/// The `Content-Type` of common web asset extensions.
fn content_type_for(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "js" | "mjs" => "application/javascript",
        "css" => "text/css",
        "map" | "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "txt" => "text/plain; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "wasm" => "application/wasm",
        _ => return None,
    })
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

    #[tokio::test]
    async fn directory_reads_cannot_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("public");
        std::fs::create_dir_all(root.join("assets")).unwrap();
        std::fs::write(dir.path().join("secret-0123456789.txt"), "secret").unwrap();
        std::fs::write(root.join("assets/ok-0123456789.js"), "ok").unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("secret-0123456789.txt"),
            root.join("assets/link-0123456789.txt"),
        )
        .unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        let read = |path: &'static str| {
            let root = root.clone();
            async move { read_file(&root, path, 1 << 20).await.map(|(body, _)| body) }
        };
        assert_eq!(
            read("/assets/ok-0123456789.js").await,
            Ok(Bytes::from_static(b"ok"))
        );
        for attack in [
            "/../secret-0123456789.txt",
            "/assets/../../secret-0123456789.txt",
            "/assets/%2e%2e/%2e%2e/secret-0123456789.txt",
            "/assets/..\\..\\secret-0123456789.txt",
            "/assets/ok-0123456789.js\0.png",
            "/assets/.hidden-0123456789",
            "/assets/link-0123456789.txt",
        ] {
            assert_eq!(read(attack).await, Err(Bypass::BadPath), "{attack:?}");
        }
        assert_eq!(
            read("/assets/missing-0123456789.js").await,
            Err(Bypass::NotFound)
        );
        assert_eq!(
            read("/assets").await,
            Err(Bypass::NotFound),
            "a directory is not a file"
        );
        assert_eq!(
            read_file(&root, "/assets/ok-0123456789.js", 1)
                .await
                .map(|_| ()),
            Err(Bypass::TooLarge)
        );
    }
}
