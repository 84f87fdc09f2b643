//! `[[routes]]` as written, with what a route may carry: assets, cache, hints, offload.

use super::*;

/// `[[routes]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouteSection {
    /// Unique; the `route` label of metrics.
    pub name: Spanned<String>,
    /// `example.com` or `*.example.com`; any host when absent.
    pub host: Option<Spanned<String>>,
    /// Methods matched; any method when absent.
    pub methods: Option<Vec<Spanned<String>>>,
    /// Path template: `/courses/{school}/{title}`, `/assets/{rest*}`.
    pub path: Spanned<String>,
    /// The pool requests of this route go to.
    pub pool: Spanned<String>,
    /// Serve fingerprinted assets of this route from memory.
    pub assets: Option<AssetsSection>,
    /// Keep the app's cacheable answers of this route in memory.
    pub cache: Option<RouteCacheSection>,
    /// `"critical"`, `"normal"` or `"sheddable"`: who waits and who is shed under load.
    pub priority: Option<Spanned<String>>,
    /// Preload/prefetch hints, learned asset hints, Early Hints, script deferral.
    pub hints: Option<HintsSection>,
    /// Answer 202 at once and replay the request later as a durable job.
    pub offload: Option<OffloadSection>,
    /// Request bodies above this size get 413 (default `[proxy] max-body`).
    pub max_body: Option<Spanned<String>>,
    /// Receive request bodies in full before the request takes a slot; `false` streams them
    /// to the app as they arrive (uploads that must not wait, at the cost of a held slot).
    #[serde(default = "default_true")]
    pub request_buffering: bool,
    /// Read the app's answers ahead of the client (`false`: at the client's pace).
    #[serde(default = "default_true")]
    pub response_buffering: bool,
}

/// `[routes.hints]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HintsSection {
    /// `rel=preload` links: what this page needs.
    #[serde(default)]
    pub preload: Vec<LinkSection>,
    /// `rel=prefetch` links: what the next page likely needs.
    #[serde(default)]
    pub prefetch: Vec<LinkSection>,
    /// Preload the fingerprinted scripts and stylesheets the route's HTML references.
    #[serde(default = "default_true")]
    pub learn: bool,
    /// Send `103 Early Hints` to HTTP/1.1 clients.
    #[serde(default)]
    pub early_hints: bool,
    /// Add `defer` to blocking `<script src>` in `<head>`; off when absent.
    pub defer_scripts: Option<DeferScriptsSection>,
}

/// One `preload`/`prefetch` entry: `{ href = "/courses/{school}/{title}/course.json", as = "fetch" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LinkSection {
    /// URL template: a path on this site; `{param}` names a parameter of the route's path.
    pub href: Spanned<String>,
    /// `fetch`, `script`, `style`, `font` or `image`; from the extension when absent.
    #[serde(rename = "as")]
    pub destination: Option<Spanned<String>>,
}

/// `[routes.hints.defer-scripts]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeferScriptsSection {
    /// `src` patterns (`*` = any run of characters) deferred; every script when empty.
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// `src` patterns never deferred (wins over `allow`).
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
}

/// `[routes.offload]`: the route's requests become jobs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OffloadSection {
    /// Dedup key template (`"{id}"`): one queued or running job per key.
    pub key: Option<Spanned<String>>,
    /// Larger request bodies get 413.
    #[serde(default = "default_max_body")]
    pub max_body: Spanned<String>,
    /// The app's answer is kept up to this size.
    #[serde(default = "default_max_result_size")]
    pub max_result_size: Spanned<String>,
    /// Replays of this route at once, per node.
    #[serde(default = "default_job_concurrency")]
    pub concurrency: Spanned<i64>,
    /// Longest wait for each read of a replay's answer.
    #[serde(default = "default_job_timeout")]
    pub timeout: Spanned<String>,
    /// Replays before the job fails (connect errors and 502/503/504 are retried).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: Spanned<i64>,
    /// First retry delay bound (full jitter, doubling).
    #[serde(default = "default_backoff")]
    pub backoff: Spanned<String>,
    /// Cap of the retry delay bound.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Spanned<String>,
    /// How long a finished job's status and answer stay readable.
    #[serde(default = "default_keep")]
    pub keep: Spanned<String>,
    /// `Retry-After` of the 202.
    #[serde(default = "default_retry_after")]
    pub retry_after: Spanned<String>,
    /// Request header fields stored with the job (Host is always kept).
    #[serde(default = "default_job_headers")]
    pub headers: Vec<Spanned<String>>,
}

fn default_max_body() -> Spanned<String> {
    unspanned("1MiB".to_string())
}
fn default_max_result_size() -> Spanned<String> {
    unspanned("1MiB".to_string())
}
fn default_job_concurrency() -> Spanned<i64> {
    unspanned(1)
}
fn default_job_timeout() -> Spanned<String> {
    unspanned("10m".to_string())
}
fn default_max_attempts() -> Spanned<i64> {
    unspanned(5)
}
fn default_backoff() -> Spanned<String> {
    unspanned("1s".to_string())
}
fn default_max_backoff() -> Spanned<String> {
    unspanned("5m".to_string())
}
fn default_keep() -> Spanned<String> {
    unspanned("1h".to_string())
}
fn default_job_headers() -> Vec<Spanned<String>> {
    [
        "accept",
        "accept-language",
        "authorization",
        "content-type",
        "cookie",
        "user-agent",
        "x-csrf-token",
    ]
    .into_iter()
    .map(|h| unspanned(h.to_string()))
    .collect()
}

/// `[routes.cache]`: keep the app's cacheable answers of this route in memory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouteCacheSection {
    /// Part of every key; bump it and reload to make every old entry a miss (purge).
    #[serde(default = "default_version")]
    pub version: Spanned<i64>,
    /// Larger responses are proxied, never held.
    #[serde(default = "default_response_max_object_size")]
    pub max_object_size: Spanned<String>,
    /// Requests carrying `Cookie` may use the cache (off: they always go to the app).
    #[serde(default)]
    pub allow_cookies: bool,
    /// Requests carrying `Authorization` may use the cache.
    #[serde(default)]
    pub allow_authorization: bool,
    /// When the app's `Cache-Control` names no `stale-while-revalidate`.
    #[serde(default = "default_zero_duration")]
    pub stale_while_revalidate: Spanned<String>,
    /// When the app's `Cache-Control` names no `stale-if-error`.
    #[serde(default = "default_zero_duration")]
    pub stale_if_error: Spanned<String>,
    /// Send `X-Cache: HIT|MISS|STALE`.
    #[serde(default = "default_true")]
    pub x_cache_header: bool,
}

fn default_version() -> Spanned<i64> {
    unspanned(0)
}
fn default_response_max_object_size() -> Spanned<String> {
    unspanned("1MiB".to_string())
}
fn default_zero_duration() -> Spanned<String> {
    unspanned("0s".to_string())
}

/// `[routes.assets]`: serve the route's fingerprinted files from memory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AssetsSection {
    /// `"upstream"` (read through the route's pool) or a directory (the app's `public/`).
    #[serde(default = "default_assets_source")]
    pub source: Spanned<String>,
    /// Larger files are proxied, never held.
    #[serde(default = "default_max_object_size")]
    pub max_object_size: Spanned<String>,
    /// Send `X-Cache: HIT|MISS` on responses from memory.
    #[serde(default = "default_true")]
    pub x_cache_header: bool,
    /// The app's asset manifest (Propshaft's `.manifest.json`, Sprockets'
    /// `.sprockets-manifest-*.json`), or the folder holding it, for warming.
    pub manifest: Option<Spanned<String>>,
    /// Fill and compress the route's assets at start and on reload, before traffic asks.
    #[serde(default = "default_true")]
    pub warm: bool,
}

fn default_true() -> bool {
    true
}

fn default_assets_source() -> Spanned<String> {
    unspanned("upstream".to_string())
}
fn default_max_object_size() -> Spanned<String> {
    unspanned("16MiB".to_string())
}
