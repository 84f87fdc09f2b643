//! The config file as written: serde types that mirror the TOML one to one.
//!
//! Unknown keys are errors (`deny_unknown_fields`), keys are kebab-case, and every value that
//! needs checking beyond its type is `Spanned` so that the error can name line and column.
//! Nothing here is validated; [`super::Config::from_file`] does that.

mod operations;
mod routes;
mod tls;

pub use operations::{AccelMappingEntry, AdminSection, ErrorPagesSection, SendfileSection};
pub use routes::{
    AssetsSection, DeferScriptsSection, HintsSection, LinkSection, OffloadSection,
    RouteCacheSection, RouteSection,
};
pub use tls::{AcmeSection, CertificateSection, TlsSection};

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// Process-wide settings.
    #[serde(default)]
    pub server: ServerSection,
    /// Listening addresses.
    pub listen: ListenSection,
    /// Certificates for the HTTPS listener.
    #[serde(default)]
    pub tls: TlsSection,
    /// Trust and forwarding.
    #[serde(default)]
    pub proxy: ProxySection,
    /// Upstream pools by name.
    #[serde(default)]
    pub pools: std::collections::BTreeMap<String, PoolSection>,
    /// Routing rules; order matters only to break ties (see `routing`).
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// In-memory caches.
    #[serde(default)]
    pub cache: CacheSection,
    /// The job store, replay rates and schedules.
    #[serde(default)]
    pub jobs: JobsSection,
    /// The operator's pages for frontdoor's own error answers.
    #[serde(default)]
    pub error_pages: ErrorPagesSection,
    /// Files the app leaves to frontdoor to send.
    pub sendfile: Option<Spanned<SendfileSection>>,
    /// Operator actions through the admin listener.
    #[serde(default)]
    pub admin: AdminSection,
}

/// `[cache]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheSection {
    /// Bytes of fingerprinted assets (all stored encodings) held in memory.
    #[serde(default = "default_assets_capacity")]
    pub assets_capacity: Spanned<String>,
    /// Blocking threads that pre-compress assets (Brotli quality 11 is slow), and as many
    /// again for edge-cached responses.
    #[serde(default = "default_compression_threads")]
    pub compression_threads: Spanned<i64>,
    /// Bytes of edge-cached dynamic responses (all stored encodings) held in memory.
    #[serde(default = "default_responses_capacity")]
    pub responses_capacity: Spanned<String>,
}

impl Default for CacheSection {
    fn default() -> Self {
        CacheSection {
            assets_capacity: default_assets_capacity(),
            compression_threads: default_compression_threads(),
            responses_capacity: default_responses_capacity(),
        }
    }
}

fn default_assets_capacity() -> Spanned<String> {
    unspanned("256MiB".to_string())
}

fn default_compression_threads() -> Spanned<i64> {
    unspanned(1)
}

fn default_responses_capacity() -> Spanned<String> {
    unspanned("64MiB".to_string())
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerSection {
    /// Worker threads per listening service.
    #[serde(default = "default_threads")]
    pub threads: Spanned<i64>,
    /// After SIGTERM, how long requests in flight get to finish (listeners stop at once).
    #[serde(default = "default_grace_period")]
    pub grace_period: Spanned<String>,
    /// After the grace period, how long the worker runtimes get to stop.
    #[serde(default = "default_graceful_shutdown_timeout")]
    pub graceful_shutdown_timeout: Spanned<String>,
    /// Idle keep-alive connections kept to upstreams, over all backends.
    #[serde(default = "default_keepalive_pool_size")]
    pub upstream_keepalive_pool_size: Spanned<i64>,
    /// `"stdout"`, `"stderr"`, `"off"` or a file path.
    #[serde(default = "default_access_log")]
    pub access_log: Spanned<String>,
    /// `"text"` or `"json"`.
    #[serde(default = "default_access_log_format")]
    pub access_log_format: Spanned<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            threads: default_threads(),
            grace_period: default_grace_period(),
            graceful_shutdown_timeout: default_graceful_shutdown_timeout(),
            upstream_keepalive_pool_size: default_keepalive_pool_size(),
            access_log: default_access_log(),
            access_log_format: default_access_log_format(),
        }
    }
}

fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}
fn default_threads() -> Spanned<i64> {
    unspanned(2)
}
fn default_grace_period() -> Spanned<String> {
    unspanned("10s".to_string())
}
fn default_graceful_shutdown_timeout() -> Spanned<String> {
    unspanned("5s".to_string())
}
fn default_keepalive_pool_size() -> Spanned<i64> {
    unspanned(256)
}
fn default_access_log() -> Spanned<String> {
    unspanned("stdout".to_string())
}
fn default_access_log_format() -> Spanned<String> {
    unspanned("text".to_string())
}
fn default_http_mode() -> Spanned<String> {
    unspanned("redirect".to_string())
}
fn default_admin() -> Spanned<String> {
    unspanned("127.0.0.1:9901".to_string())
}
fn default_connect_timeout() -> Spanned<String> {
    unspanned("1s".to_string())
}
fn default_read_timeout() -> Spanned<String> {
    unspanned("60s".to_string())
}
fn default_write_timeout() -> Spanned<String> {
    unspanned("60s".to_string())
}
// Below the app server's own keep-alive: Node closes idle connections after 5 s, Puma 20 s.
fn default_idle_timeout() -> Spanned<String> {
    unspanned("4s".to_string())
}
fn default_non_idempotent_max_idle() -> Spanned<String> {
    unspanned("2s".to_string())
}
fn default_max_upgraded() -> Spanned<i64> {
    unspanned(1000)
}
// ActionCable pings every 3 s: 5 minutes of silence both ways is a dead connection.
fn default_upgraded_idle_timeout() -> Spanned<String> {
    unspanned("5m".to_string())
}
fn default_connect_retries() -> Spanned<i64> {
    unspanned(1)
}

/// `[listen]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ListenSection {
    /// The HTTPS listener (h2 and http/1.1 by ALPN).
    pub https: Spanned<String>,
    /// The plain-HTTP listener (redirecting to HTTPS, or serving); none when absent.
    pub http: Option<Spanned<String>>,
    /// What the plain-HTTP listener does: `"redirect"` to HTTPS, or `"serve"` like HTTPS
    /// (behind a TLS-terminating balancer).
    #[serde(default = "default_http_mode")]
    pub http_mode: Spanned<String>,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`).
    #[serde(default = "default_admin")]
    pub admin: Spanned<String>,
    /// The port written in redirects, when clients reach HTTPS on another port than we bind
    /// (a port mapping); default: the HTTPS listener's port.
    pub redirect_https_port: Option<Spanned<i64>>,
}

/// `[proxy]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProxySection {
    /// Peers (addresses or CIDR ranges) whose X-Forwarded-*, X-Request-Start and
    /// X-Request-Id are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// A path frontdoor answers itself on the public listeners (`200 ok`), never queued or
    /// proxied; `""` for none.
    #[serde(default = "default_health_path")]
    pub health_path: Spanned<String>,
    /// Request line plus header fields, in bytes (431 above).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: Spanned<String>,
    /// Header fields (431 above).
    #[serde(default = "default_max_headers")]
    pub max_headers: Spanned<i64>,
    /// Request target length (414 above).
    #[serde(default = "default_max_uri_bytes")]
    pub max_uri_bytes: Spanned<String>,
    /// Request body size of a route without its own `max-body` (413 above).
    #[serde(default = "default_proxy_max_body")]
    pub max_body: Spanned<String>,
    /// From a request head's first byte to its end (slowloris is closed after it).
    #[serde(default = "default_header_timeout")]
    pub header_timeout: Spanned<String>,
    /// `%2F`/`%5C` in request paths: `"refuse"` (400) or `"pass"` (kept encoded).
    #[serde(default = "default_encoded_slashes")]
    pub encoded_slashes: Spanned<String>,
    /// Longest wait for each read of a request body.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: Spanned<String>,
    /// HTTP/2 streams one client connection may have open at once
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`); more are refused, not queued.
    #[serde(default = "default_h2_max_concurrent_streams")]
    pub h2_max_concurrent_streams: Spanned<i64>,
    /// The largest decoded HTTP/2 request header list (`SETTINGS_MAX_HEADER_LIST_SIZE`).
    #[serde(default = "default_h2_max_header_list_size")]
    pub h2_max_header_list_size: Spanned<String>,
    /// Bytes of one buffered request body kept in memory; more spills to a temporary file.
    #[serde(default = "default_request_buffer_size")]
    pub request_buffer_size: Spanned<String>,
    /// Bytes of all buffered request bodies in memory together; more spills too.
    #[serde(default = "default_request_buffer_memory")]
    pub request_buffer_memory: Spanned<String>,
    /// Where spilled request bodies go (unnamed files); the system's temporary directory
    /// when absent.
    pub request_buffer_dir: Option<Spanned<String>>,
    /// Bytes of all buffered answers held in memory at once (past it, temporary files).
    #[serde(default = "default_response_buffer_memory")]
    pub response_buffer_memory: Spanned<String>,
    /// Bytes one buffered answer may hold in its temporary file (`"0B"`: none).
    #[serde(default = "default_response_buffer_file")]
    pub response_buffer_file: Spanned<String>,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            trusted_proxies: Vec::new(),
            health_path: default_health_path(),
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_uri_bytes: default_max_uri_bytes(),
            max_body: default_proxy_max_body(),
            header_timeout: default_header_timeout(),
            encoded_slashes: default_encoded_slashes(),
            body_timeout: default_body_timeout(),
            h2_max_concurrent_streams: default_h2_max_concurrent_streams(),
            h2_max_header_list_size: default_h2_max_header_list_size(),
            request_buffer_size: default_request_buffer_size(),
            request_buffer_memory: default_request_buffer_memory(),
            request_buffer_dir: None,
            response_buffer_memory: default_response_buffer_memory(),
            response_buffer_file: default_response_buffer_file(),
        }
    }
}

fn default_max_header_bytes() -> Spanned<String> {
    unspanned("32KiB".to_string())
}
fn default_max_headers() -> Spanned<i64> {
    unspanned(100)
}
fn default_max_uri_bytes() -> Spanned<String> {
    unspanned("8KiB".to_string())
}
fn default_proxy_max_body() -> Spanned<String> {
    unspanned("100MiB".to_string())
}
fn default_encoded_slashes() -> Spanned<String> {
    unspanned("refuse".to_string())
}
fn default_header_timeout() -> Spanned<String> {
    unspanned("10s".to_string())
}
fn default_body_timeout() -> Spanned<String> {
    unspanned("60s".to_string())
}

// nginx's `http2_max_concurrent_streams` and `large_client_header_buffers` budget.
fn default_h2_max_concurrent_streams() -> Spanned<i64> {
    unspanned(128)
}
fn default_h2_max_header_list_size() -> Spanned<String> {
    unspanned("64KiB".to_string())
}

fn default_request_buffer_size() -> Spanned<String> {
    unspanned("1MiB".to_string())
}
fn default_request_buffer_memory() -> Spanned<String> {
    unspanned("64MiB".to_string())
}
// nginx's proxy_max_temp_file_size; the memory bound is 64 slow readers' worth of 1 MiB each.
fn default_response_buffer_memory() -> Spanned<String> {
    unspanned("64MiB".to_string())
}
fn default_response_buffer_file() -> Spanned<String> {
    unspanned("1GiB".to_string())
}

fn default_health_path() -> Spanned<String> {
    unspanned("/healthz".to_string())
}

/// `[pools.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PoolSection {
    /// Each backend: `"host:port"` or `{ address = "host:port", weight = 2, drain = true }`.
    #[serde(default)]
    pub backends: Option<Spanned<Vec<Spanned<BackendEntry>>>>,
    /// More backends, one `host:port [weight] [drain]` a line, in a file reloaded on change.
    pub backends_file: Option<Spanned<String>>,
    /// How a backend is chosen: `least-busy`, `round-robin` or `hash`.
    #[serde(default = "default_balance")]
    pub balance: Spanned<String>,
    /// What `balance = "hash"` hashes: `path`, `path-and-query`, `client-ip`, `header:NAME`.
    #[serde(default = "default_hash_key")]
    pub hash_key: Spanned<String>,
    /// Consecutive connect failures that take a backend out (0: never).
    #[serde(default = "default_eject_after")]
    pub eject_after: Spanned<i64>,
    /// How long an ejected backend stays out.
    #[serde(default = "default_eject_for")]
    pub eject_for: Spanned<String>,
    /// Active health checks; none: only passive ejection.
    pub health: Option<HealthSection>,
    /// Time to establish a TCP connection to a backend.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Spanned<String>,
    /// Longest wait for each read from the backend (the response head included).
    #[serde(default = "default_read_timeout")]
    pub read_timeout: Spanned<String>,
    /// Longest wait for each write to the backend.
    #[serde(default = "default_write_timeout")]
    pub write_timeout: Spanned<String>,
    /// How long an idle keep-alive connection is kept.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Spanned<String>,
    /// A POST/PATCH goes only on a connection idle less than this (else a new one).
    #[serde(default = "default_non_idempotent_max_idle")]
    pub non_idempotent_max_idle: Spanned<String>,
    /// Upgraded (WebSocket) connections the pool may have open at once (503 beyond).
    #[serde(default = "default_max_upgraded")]
    pub max_upgraded: Spanned<i64>,
    /// An upgraded connection without a byte either way this long is closed.
    #[serde(default = "default_upgraded_idle_timeout")]
    pub upgraded_idle_timeout: Spanned<String>,
    /// Further backends tried after a failed connect (any method: nothing was sent).
    #[serde(default = "default_connect_retries")]
    pub connect_retries: Spanned<i64>,
    /// Slots per backend and the queue in front of them; none: unlimited, no queue.
    pub admission: Option<AdmissionSection>,
}

/// One entry of `backends`: a `"host:port"` string or an inline table.
#[derive(Debug)]
pub struct BackendEntry {
    /// `host:port`.
    pub address: String,
    /// Share of the traffic relative to the others; none: 1.
    pub weight: Option<i64>,
    /// Gets no new requests (those in flight finish).
    pub drain: bool,
}

impl<'de> Deserialize<'de> for BackendEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> serde::de::Visitor<'de> for Entry {
            type Value = BackendEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    r#""host:port" or { address = "host:port", weight = 1, drain = false }"#,
                )
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<BackendEntry, E> {
                Ok(BackendEntry {
                    address: s.to_string(),
                    weight: None,
                    drain: false,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<BackendEntry, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Table {
                    address: String,
                    weight: Option<i64>,
                    #[serde(default)]
                    drain: bool,
                }
                let t = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(BackendEntry {
                    address: t.address,
                    weight: t.weight,
                    drain: t.drain,
                })
            }
        }
        deserializer.deserialize_any(Entry)
    }
}

/// `[pools.NAME.health]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HealthSection {
    /// Path of the check (`GET`, HTTP/1.1).
    #[serde(default = "default_health_check_path")]
    pub path: Spanned<String>,
    /// `Host` of the check; none: the backend's address.
    pub host: Option<Spanned<String>>,
    /// Time between checks of one backend.
    #[serde(default = "default_health_interval")]
    pub interval: Spanned<String>,
    /// Longest a check may take.
    #[serde(default = "default_health_timeout")]
    pub timeout: Spanned<String>,
    /// Consecutive passed checks that bring a down backend up.
    #[serde(default = "default_rise")]
    pub rise: Spanned<i64>,
    /// Consecutive failed checks that take an up backend down.
    #[serde(default = "default_fall")]
    pub fall: Spanned<i64>,
}

fn default_balance() -> Spanned<String> {
    unspanned("least-busy".to_string())
}
fn default_hash_key() -> Spanned<String> {
    unspanned("path".to_string())
}
fn default_eject_after() -> Spanned<i64> {
    unspanned(3)
}
fn default_eject_for() -> Spanned<String> {
    unspanned("10s".to_string())
}
fn default_health_check_path() -> Spanned<String> {
    unspanned("/healthz".to_string())
}
fn default_health_interval() -> Spanned<String> {
    unspanned("2s".to_string())
}
fn default_health_timeout() -> Spanned<String> {
    unspanned("1s".to_string())
}
fn default_rise() -> Spanned<i64> {
    unspanned(2)
}
fn default_fall() -> Spanned<i64> {
    unspanned(3)
}

/// `[pools.NAME.admission]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdmissionSection {
    /// Requests in flight per backend: the app's workers (Passenger pool size, Puma
    /// workers × threads).
    pub slots: Spanned<i64>,
    /// Slots of the pool only `critical` routes may take.
    #[serde(default = "default_reserved_slots")]
    pub reserved_slots: Spanned<i64>,
    /// Requests waiting at most.
    #[serde(default = "default_queue_length")]
    pub queue_length: Spanned<i64>,
    /// Longest wait for a slot.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout: Spanned<String>,
    /// The wait a healthy queue drains within.
    #[serde(default = "default_shed_target")]
    pub target: Spanned<String>,
    /// How long the minimum wait must stay above target to shed.
    #[serde(default = "default_shed_interval")]
    pub interval: Spanned<String>,
    /// `Retry-After` of a 503, jittered up to twice this.
    #[serde(default = "default_retry_after")]
    pub retry_after: Spanned<String>,
}

fn default_reserved_slots() -> Spanned<i64> {
    unspanned(0)
}
fn default_queue_length() -> Spanned<i64> {
    unspanned(1024)
}
fn default_queue_timeout() -> Spanned<String> {
    unspanned("5s".to_string())
}
fn default_shed_target() -> Spanned<String> {
    unspanned("20ms".to_string())
}
fn default_shed_interval() -> Spanned<String> {
    unspanned("500ms".to_string())
}
fn default_retry_after() -> Spanned<String> {
    unspanned("2s".to_string())
}

/// `[jobs]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JobsSection {
    /// `"embedded"` or `"redis"`.
    #[serde(default = "default_job_store")]
    pub store: Spanned<String>,
    /// The embedded store's file, relative to the config file.
    #[serde(default = "default_job_path")]
    pub path: Spanned<String>,
    /// `redis://host:port/db` for the Redis store.
    pub redis_url: Option<Spanned<String>>,
    /// Prefix of every Redis key.
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: Spanned<String>,
    /// A running job whose node goes silent this long runs elsewhere (Redis).
    #[serde(default = "default_visibility_timeout")]
    pub visibility_timeout: Spanned<String>,
    /// How often idle workers look for due jobs.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Spanned<String>,
    /// Replay rate per pool: `dashboard = "5/s"` (or `/m`, `/h`).
    #[serde(default)]
    pub rates: std::collections::BTreeMap<String, Spanned<String>>,
    /// Replays of a pool that may start back to back (the GCRA burst).
    #[serde(default = "default_rate_burst")]
    pub rate_burst: Spanned<i64>,
    /// `[[jobs.schedules]]`
    #[serde(default)]
    pub schedules: Vec<ScheduleSection>,
}

impl Default for JobsSection {
    fn default() -> Self {
        JobsSection {
            store: default_job_store(),
            path: default_job_path(),
            redis_url: None,
            redis_prefix: default_redis_prefix(),
            visibility_timeout: default_visibility_timeout(),
            poll_interval: default_poll_interval(),
            rates: std::collections::BTreeMap::new(),
            rate_burst: default_rate_burst(),
            schedules: Vec::new(),
        }
    }
}

fn default_job_store() -> Spanned<String> {
    unspanned("embedded".to_string())
}
fn default_job_path() -> Spanned<String> {
    unspanned("data/jobs.redb".to_string())
}
fn default_redis_prefix() -> Spanned<String> {
    unspanned("frontdoor".to_string())
}
fn default_visibility_timeout() -> Spanned<String> {
    unspanned("30s".to_string())
}
fn default_poll_interval() -> Spanned<String> {
    unspanned("500ms".to_string())
}
fn default_rate_burst() -> Spanned<i64> {
    unspanned(1)
}

/// `[[jobs.schedules]]`: refresh `keys` every `every`, each key at its hash's place in it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScheduleSection {
    /// Unique name.
    pub name: Spanned<String>,
    /// The offload route whose jobs it creates.
    pub route: Spanned<String>,
    /// Method of each request.
    #[serde(default = "default_schedule_method")]
    pub method: Spanned<String>,
    /// Path with `{key}`, matching the route: `/courses/{key}/manual_update`.
    pub path: Spanned<String>,
    /// The interval.
    pub every: Spanned<String>,
    /// Parts of the interval `frontdoor schedule` counts fires in (moves no key).
    #[serde(default = "default_slots")]
    pub slots: Spanned<i64>,
    /// The keys (a static list).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Or a plain-HTTP URL answering a JSON list of keys, fetched each interval.
    pub keys_url: Option<Spanned<String>>,
}

fn default_schedule_method() -> Spanned<String> {
    unspanned("POST".to_string())
}
fn default_slots() -> Spanned<i64> {
    unspanned(60)
}
