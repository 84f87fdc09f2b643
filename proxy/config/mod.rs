//! Configuration: the TOML file ([`file`]) and the validated model the rest of frontdoor uses.
//!
//! Loading never panics: every problem becomes a [`ConfigError`] with file, line, column and
//! key path, and validation collects all of them before it answers. Paths in the file are
//! relative to the file's own folder.

mod error;
pub mod file;
mod jobs;
mod outside;
pub mod units;

pub use error::{key_path_at, line_col, ConfigError, ConfigErrors};
pub use outside::{Outside, System};

use http::Method;
use ipnet::IpNet;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

use crate::admission::{AdmissionSettings, Priority};
use crate::assets::{AssetRoute, AssetSource};
use crate::edge_cache::CacheRoute;
use crate::hints::{DeferScripts, Destination, LinkTemplate, Rel, RouteHints};
use crate::routing::{HostPattern, PathTemplate, Route, RouteTable};
use crate::tls::{certified_key_from, Certificate};
use crate::upstream::{Backend, Balance, Ejection, HashKey, HealthSettings};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    /// Process-wide settings (fixed at start; a reload that changes them warns).
    pub server: ServerSettings,
    /// Listening addresses (fixed at start).
    pub listen: ListenSettings,
    /// Certificates for the HTTPS listener, in file order.
    pub certificates: Vec<Certificate>,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Answered `200 ok` by frontdoor on the public listeners; never queued or proxied.
    pub health_path: Option<String>,
    /// Head, URI and body limits and the slow-client timeouts.
    pub limits: crate::hostile::Limits,
    /// Limits of the HTTP/2 server on the HTTPS listener (fixed at start).
    pub h2: H2Settings,
    /// Upstream pools by name.
    pub pools: BTreeMap<String, PoolSettings>,
    /// Routes in file order (the route table sorts them).
    pub routes: Vec<Route>,
    /// The asset cache (sized at start; a reload that changes it warns).
    pub cache: CacheSettings,
    /// The job store (fixed at start), replay rates and schedules.
    pub jobs: crate::jobs::JobsSettings,
}

/// `[cache]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Bytes of assets held, all encodings counted.
    pub assets_capacity: u64,
    /// Threads pre-compressing assets (and as many for edge-cached responses).
    pub compression_threads: NonZeroUsize,
    /// Bytes of edge-cached responses held, all encodings counted.
    pub responses_capacity: u64,
}

/// Access log destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// No access log.
    Off,
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Appended to a file.
    File(PathBuf),
}

/// Access log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// `key=value` pairs.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[server]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Worker threads of each listening service.
    pub threads: NonZeroUsize,
    /// After SIGTERM (listeners stop at once), requests in flight get this long to finish.
    pub grace_period: Duration,
    /// Then the worker runtimes get this long to stop.
    pub graceful_shutdown_timeout: Duration,
    /// Idle upstream connections kept.
    pub upstream_keepalive_pool_size: NonZeroUsize,
    /// Where the access log goes.
    pub access_log: AccessLogTarget,
    /// How access log lines look.
    pub access_log_format: AccessLogFormat,
}

/// The HTTP/2 limits of `[proxy]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Settings {
    /// Streams one connection may have open at once; more get `REFUSED_STREAM`.
    pub max_concurrent_streams: u32,
    /// Bytes of decoded request header list (HPACK-expanded, 32 bytes per field counted).
    pub max_header_list_size: u32,
}

/// `[listen]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSettings {
    /// HTTPS (h2 + http/1.1).
    pub https: SocketAddr,
    /// Plain HTTP, redirecting to HTTPS.
    pub http: Option<SocketAddr>,
    /// Admin endpoints.
    pub admin: SocketAddr,
    /// The port written into redirects.
    pub redirect_https_port: u16,
}

/// `[pools.NAME]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Backends (resolved addresses, weights, drain): `backends`, then `backends-file`.
    pub backends: Vec<Backend>,
    /// `backends-file`, watched for changes by the reloader.
    pub backends_file: Option<PathBuf>,
    /// How a backend is chosen.
    pub balance: Balance,
    /// Passive ejection on consecutive connect failures.
    pub ejection: Ejection,
    /// Active health checks; `None`: passive ejection only.
    pub health: Option<HealthSettings>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Per-read timeout.
    pub read_timeout: Duration,
    /// Per-write timeout.
    pub write_timeout: Duration,
    /// Idle keep-alive timeout.
    pub idle_timeout: Duration,
    /// Further backends tried after a connect failure (any method: nothing was sent).
    pub connect_retries: usize,
    /// Slots and queue; `None`: unlimited.
    pub admission: Option<AdmissionSettings>,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError::whole_file(
                path,
                format!("cannot read: {e}"),
            )])
        })?;
        Config::parse(path, &text)
    }

    /// Validates `text` as if read from `path` (which locates relative paths and names errors).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        Config::parse_in(path, text, &System)
    }

    /// [`Config::parse`], reading the files the config names and resolving its host names
    /// through `outside`.
    pub fn parse_in(
        path: &Path,
        text: &str,
        outside: &dyn Outside,
    ) -> Result<Config, ConfigErrors> {
        let file: file::ConfigFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let message = e.message().trim().to_string();
            ConfigErrors(vec![ConfigError::at(
                path,
                text,
                offset,
                key_path_at(text, offset),
                message,
            )])
        })?;
        let mut v = Validator {
            path,
            text,
            base: path.parent().unwrap_or(Path::new(".")),
            outside,
            errors: Vec::new(),
        };
        let config = v.config(file);
        match (config, v.errors.is_empty()) {
            (Some(config), true) => Ok(config),
            _ => Err(ConfigErrors(v.errors)),
        }
    }

    /// Files besides the config itself whose change triggers a reload (`backends-file`s).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        self.pools
            .values()
            .filter_map(|p| p.backends_file.clone())
            .collect()
    }

    /// The compiled route table.
    pub fn route_table(&self) -> RouteTable {
        RouteTable::new(self.routes.clone())
    }
}

/// Collects errors while turning file types into domain types.
struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    base: &'a Path,
    outside: &'a dyn Outside,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        // Defaults carry an empty span at 0; point those at the key path only.
        let error = if span == (0..0) {
            ConfigError {
                line: 1,
                col: 1,
                ..ConfigError::at(self.path, self.text, 0, key, message)
            }
        } else {
            ConfigError::at(self.path, self.text, span.start, key, message)
        };
        self.errors.push(error);
    }

    /// Runs `check` on a spanned value; on failure records the error and returns `None`.
    fn check<T, U>(
        &mut self,
        value: &Spanned<T>,
        key: &str,
        check: impl FnOnce(&T) -> Result<U, String>,
    ) -> Option<U> {
        match check(value.get_ref()) {
            Ok(ok) => Some(ok),
            Err(message) => {
                self.error(value.span(), key, message);
                None
            }
        }
    }

    fn duration(&mut self, value: &Spanned<String>, key: &str) -> Option<Duration> {
        self.check(value, key, |s| units::parse_duration(s))
    }

    fn positive(&mut self, value: &Spanned<i64>, key: &str) -> Option<NonZeroUsize> {
        self.check(value, key, |n| {
            usize::try_from(*n)
                .ok()
                .and_then(NonZeroUsize::new)
                .ok_or_else(|| format!("must be a whole number of at least 1, not {n}"))
        })
    }

    fn socket_addr(&mut self, value: &Spanned<String>, key: &str) -> Option<SocketAddr> {
        let outside = self.outside;
        self.check(value, key, |s| resolve(s, outside))
    }

    fn relative(&self, path: &str) -> PathBuf {
        self.base.join(path)
    }

    fn config(&mut self, file: file::ConfigFile) -> Option<Config> {
        let server = self.server(&file.server);
        let listen = self.listen(&file.listen);
        let certificates = self.certificates(&file.tls);
        let trusted_proxies = self.trusted_proxies(&file.proxy);
        let health_path = match file.proxy.health_path.get_ref().as_str() {
            "" => None,
            path => self
                .check(&file.proxy.health_path, "proxy.health-path", |p| {
                    if p.starts_with('/') {
                        Ok(Some(path.to_string()))
                    } else {
                        Err(format!("`{p}` must start with `/` (or be \"\" for none)"))
                    }
                })
                .flatten(),
        };
        let limits = self.limits(&file.proxy);
        let h2 = self.h2(&file.proxy);
        let pools = self.pools(&file.pools);
        let routes = self.routes(&file.routes, &file.pools);
        let cache = self.cache(&file.cache);
        let jobs = self.jobs(&file.jobs, &file.routes, &file.pools);
        Some(Config {
            source: self.path.to_path_buf(),
            server: server?,
            listen: listen?,
            certificates,
            trusted_proxies,
            health_path,
            limits: limits?,
            h2: h2?,
            pools,
            routes,
            cache: cache?,
            jobs: jobs?,
        })
    }

    /// `[proxy]` limits. A limit of 0 would refuse every request, so each is at least 1.
    fn limits(&mut self, p: &file::ProxySection) -> Option<crate::hostile::Limits> {
        let bytes = |s: &String| {
            units::parse_size(s).and_then(|n| match usize::try_from(n) {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("`{s}` must be more than 0 bytes")),
            })
        };
        let max_header_bytes = self.check(&p.max_header_bytes, "proxy.max-header-bytes", bytes);
        let max_headers = self.positive(&p.max_headers, "proxy.max-headers");
        let max_uri_bytes = self.check(&p.max_uri_bytes, "proxy.max-uri-bytes", bytes);
        let max_body = self.check(&p.max_body, "proxy.max-body", |s| units::parse_size(s));
        let nonzero = |d: Duration| {
            if d.is_zero() {
                Err("must be more than 0".to_string())
            } else {
                Ok(d)
            }
        };
        let header_timeout = self.check(&p.header_timeout, "proxy.header-timeout", |s| {
            units::parse_duration(s).and_then(nonzero)
        });
        let body_timeout = self.check(&p.body_timeout, "proxy.body-timeout", |s| {
            units::parse_duration(s).and_then(nonzero)
        });
        let encoded_slashes = self.check(&p.encoded_slashes, "proxy.encoded-slashes", |s| match s
            .as_str()
        {
            "refuse" => Ok(crate::hostile::path::EncodedSlashes::Refuse),
            "pass" => Ok(crate::hostile::path::EncodedSlashes::Pass),
            other => Err(format!("`{other}` must be \"refuse\" or \"pass\"")),
        });
        Some(crate::hostile::Limits {
            max_header_bytes: max_header_bytes?,
            max_headers: max_headers?.get(),
            max_uri_bytes: max_uri_bytes?,
            max_body: max_body?,
            header_timeout: header_timeout?,
            body_timeout: body_timeout?,
            encoded_slashes: encoded_slashes?,
        })
    }

    fn h2(&mut self, p: &file::ProxySection) -> Option<H2Settings> {
        // RFC 9113 asks for at least 100 streams; above a few thousand a single connection
        // can hold more of the app than an operator means to give one client.
        let max_concurrent_streams = self.check(
            &p.h2_max_concurrent_streams,
            "proxy.h2-max-concurrent-streams",
            |n| {
                u32::try_from(*n)
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| format!("must be from 1 to 10000, not {n}"))
            },
        );
        let max_header_list_size = self.check(
            &p.h2_max_header_list_size,
            "proxy.h2-max-header-list-size",
            |s| {
                units::parse_size(s).and_then(|n| {
                    u32::try_from(n)
                        .ok()
                        .filter(|n| (1024..=16 << 20).contains(n))
                        .ok_or_else(|| format!("must be from 1KiB to 16MiB, not {s}"))
                })
            },
        );
        Some(H2Settings {
            max_concurrent_streams: max_concurrent_streams?,
            max_header_list_size: max_header_list_size?,
        })
    }

    fn cache(&mut self, c: &file::CacheSection) -> Option<CacheSettings> {
        let assets_capacity = self.check(&c.assets_capacity, "cache.assets-capacity", |s| {
            units::parse_size(s)
        });
        let compression_threads =
            self.positive(&c.compression_threads, "cache.compression-threads");
        let responses_capacity =
            self.check(&c.responses_capacity, "cache.responses-capacity", |s| {
                units::parse_size(s)
            });
        Some(CacheSettings {
            assets_capacity: assets_capacity?,
            compression_threads: compression_threads?,
            responses_capacity: responses_capacity?,
        })
    }

    fn route_cache(&mut self, c: &file::RouteCacheSection, key: &str) -> Option<CacheRoute> {
        let version = self.check(&c.version, &format!("{key}.version"), |v| {
            u64::try_from(*v).map_err(|_| format!("must be 0 or more, not {v}"))
        });
        let max_object_size =
            self.check(&c.max_object_size, &format!("{key}.max-object-size"), |s| {
                units::parse_size(s)
            });
        let stale_while_revalidate = self.duration(
            &c.stale_while_revalidate,
            &format!("{key}.stale-while-revalidate"),
        );
        let stale_if_error = self.duration(&c.stale_if_error, &format!("{key}.stale-if-error"));
        Some(CacheRoute {
            version: version?,
            max_object_size: max_object_size?,
            allow_cookies: c.allow_cookies,
            allow_authorization: c.allow_authorization,
            stale_while_revalidate: stale_while_revalidate?,
            stale_if_error: stale_if_error?,
            x_cache_header: c.x_cache_header,
        })
    }

    fn assets(&mut self, a: &file::AssetsSection, key: &str) -> Option<AssetRoute> {
        let source = match a.source.get_ref().as_str() {
            "upstream" => Some(AssetSource::Upstream),
            dir => {
                let (base, outside) = (self.base, self.outside);
                self.check(&a.source, &format!("{key}.source"), |_| {
                    outside
                        .directory(&base.join(dir))
                        .map(AssetSource::Directory)
                })
            }
        };
        let max_object_size =
            self.check(&a.max_object_size, &format!("{key}.max-object-size"), |s| {
                units::parse_size(s)
            });
        Some(AssetRoute {
            source: source?,
            max_object_size: max_object_size?,
            x_cache_header: a.x_cache_header,
        })
    }

    fn server(&mut self, s: &file::ServerSection) -> Option<ServerSettings> {
        let threads = self.positive(&s.threads, "server.threads");
        let grace_period = self.duration(&s.grace_period, "server.grace-period");
        let graceful_shutdown_timeout = self.duration(
            &s.graceful_shutdown_timeout,
            "server.graceful-shutdown-timeout",
        );
        let upstream_keepalive_pool_size = self.positive(
            &s.upstream_keepalive_pool_size,
            "server.upstream-keepalive-pool-size",
        );
        let access_log = match s.access_log.get_ref().as_str() {
            "off" => AccessLogTarget::Off,
            "stdout" => AccessLogTarget::Stdout,
            "stderr" => AccessLogTarget::Stderr,
            path => AccessLogTarget::File(self.relative(path)),
        };
        let access_log_format =
            self.check(
                &s.access_log_format,
                "server.access-log-format",
                |f| match f.as_str() {
                    "text" => Ok(AccessLogFormat::Text),
                    "json" => Ok(AccessLogFormat::Json),
                    other => Err(format!(
                        "`{other}` is not a format: use \"text\" or \"json\""
                    )),
                },
            );
        Some(ServerSettings {
            threads: threads?,
            grace_period: grace_period?,
            graceful_shutdown_timeout: graceful_shutdown_timeout?,
            upstream_keepalive_pool_size: upstream_keepalive_pool_size?,
            access_log,
            access_log_format: access_log_format?,
        })
    }

    fn listen(&mut self, l: &file::ListenSection) -> Option<ListenSettings> {
        let https = self.socket_addr(&l.https, "listen.https");
        let http = l.http.as_ref().map(|h| self.socket_addr(h, "listen.http"));
        let admin = self.socket_addr(&l.admin, "listen.admin");
        let redirect_https_port = match &l.redirect_https_port {
            Some(port) => self.check(port, "listen.redirect-https-port", |p| {
                u16::try_from(*p)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{p} is not a TCP port"))
            }),
            None => https.map(|a| a.port()),
        };
        let (https, admin) = (https?, admin?);
        let http = match http {
            Some(addr) => Some(addr?),
            None => None,
        };
        let mut seen = HashSet::new();
        for (addr, key, span) in [
            (Some(https), "listen.https", l.https.span()),
            (
                http,
                "listen.http",
                l.http.as_ref().map_or(0..0, |h| h.span()),
            ),
            (Some(admin), "listen.admin", l.admin.span()),
        ] {
            if let Some(addr) = addr {
                if !seen.insert(addr) {
                    self.error(
                        span,
                        key,
                        format!("{addr} is already used by another listener"),
                    );
                }
            }
        }
        Some(ListenSettings {
            https,
            http,
            admin,
            redirect_https_port: redirect_https_port?,
        })
    }

    fn certificates(&mut self, t: &file::TlsSection) -> Vec<Certificate> {
        if t.certificates.is_empty() {
            self.error(
                0..0,
                "tls.certificates",
                "the HTTPS listener needs at least one [[tls.certificates]]",
            );
        }
        let mut certificates = Vec::new();
        for (i, c) in t.certificates.iter().enumerate() {
            let key = format!("tls.certificates[{i}]");
            let mut server_names = Vec::new();
            for name in &c.server_names {
                let lower = name.get_ref().to_ascii_lowercase();
                match HostPattern::parse(&lower) {
                    Ok(_) => server_names.push(lower),
                    Err(message) => {
                        self.error(name.span(), &format!("{key}.server-names"), message)
                    }
                }
            }
            let outside = self.outside;
            match certified_key_from(
                &self.relative(c.cert.get_ref()),
                &self.relative(c.key.get_ref()),
                |path| outside.read(path),
            ) {
                Ok(certified) => certificates.push(Certificate {
                    server_names,
                    key: certified,
                }),
                Err(e) => self.error(c.cert.span(), &format!("{key}.cert"), e.to_string()),
            }
        }
        certificates
    }

    fn trusted_proxies(&mut self, p: &file::ProxySection) -> Vec<IpNet> {
        p.trusted_proxies
            .iter()
            .filter_map(|entry| {
                self.check(entry, "proxy.trusted-proxies", |s| {
                    s.parse::<IpNet>()
                        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| format!("`{s}` is not an IP address or CIDR range"))
                })
            })
            .collect()
    }

    fn pools(
        &mut self,
        pools: &BTreeMap<String, file::PoolSection>,
    ) -> BTreeMap<String, PoolSettings> {
        let mut out = BTreeMap::new();
        for (name, p) in pools {
            let key = format!("pools.{name}");
            let backends = self.backends(p, &key);
            let backends_file = p.backends_file.as_ref().map(|f| self.relative(f.get_ref()));
            if backends.is_empty() {
                let span = match (&p.backends, &p.backends_file) {
                    (Some(list), _) if !list.get_ref().is_empty() => None,
                    (_, Some(file)) => Some(file.span()),
                    (Some(list), None) => Some(list.span()),
                    (None, None) => Some(0..0),
                };
                if let Some(span) = span {
                    let message = if p.backends_file.is_some() {
                        "the pool lists no backend (`backends` and `backends-file` are empty)"
                    } else {
                        "a pool needs at least one backend (`backends` or `backends-file`)"
                    };
                    self.error(span, &format!("{key}.backends"), message);
                }
            }
            let balance = self.balance(p, &key);
            let ejection = self.ejection(p, &key);
            let health = match &p.health {
                Some(h) => match self.health(h, &format!("{key}.health")) {
                    Some(h) => Some(h),
                    None => continue,
                },
                None => None,
            };
            let (Some(balance), Some(ejection)) = (balance, ejection) else {
                continue;
            };
            let admission = match &p.admission {
                Some(a) => match self.admission(a, &format!("{key}.admission")) {
                    Some(a) => Some(a),
                    None => continue,
                },
                None => None,
            };
            let settings = (|| {
                Some(PoolSettings {
                    admission,
                    backends,
                    backends_file,
                    balance,
                    ejection,
                    health,
                    connect_timeout: self
                        .duration(&p.connect_timeout, &format!("{key}.connect-timeout"))?,
                    read_timeout: self.duration(&p.read_timeout, &format!("{key}.read-timeout"))?,
                    write_timeout: self
                        .duration(&p.write_timeout, &format!("{key}.write-timeout"))?,
                    idle_timeout: self.duration(&p.idle_timeout, &format!("{key}.idle-timeout"))?,
                    connect_retries: self.check(
                        &p.connect_retries,
                        &format!("{key}.connect-retries"),
                        |n| usize::try_from(*n).map_err(|_| format!("must be 0 or more, not {n}")),
                    )?,
                })
            })();
            if let Some(settings) = settings {
                out.insert(name.clone(), settings);
            }
        }
        out
    }

    /// `backends` of a pool, then those of its `backends-file`: addresses resolved, weights
    /// checked, no address twice.
    fn backends(&mut self, p: &file::PoolSection, key: &str) -> Vec<Backend> {
        let mut out: Vec<Backend> = Vec::new();
        let listed = p
            .backends
            .as_ref()
            .map_or(&[][..], |b| b.get_ref().as_slice());
        for (i, entry) in listed.iter().enumerate() {
            let entry_key = format!("{key}.backends[{i}]");
            let outside = self.outside;
            let addr = self.check(entry, &entry_key, |e| resolve(&e.address, outside));
            let weight = self.check(entry, &format!("{entry_key}.weight"), |e| {
                let w = e.weight.unwrap_or(1);
                u32::try_from(w)
                    .ok()
                    .filter(|w| (1..=MAX_WEIGHT).contains(w))
                    .ok_or_else(|| {
                        format!("must be a whole number from 1 to {MAX_WEIGHT}, not {w}")
                    })
            });
            let (Some(addr), Some(weight)) = (addr, weight) else {
                continue;
            };
            if out.iter().any(|b| b.addr == addr) {
                self.error(
                    entry.span(),
                    &entry_key,
                    format!("{addr} is listed twice in this pool"),
                );
                continue;
            }
            out.push(Backend {
                addr,
                weight,
                drain: entry.get_ref().drain,
            });
        }
        if let Some(file) = &p.backends_file {
            let file_key = format!("{key}.backends-file");
            let path = self.relative(file.get_ref());
            let read = self.outside.read(&path).and_then(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            });
            match read {
                Ok(text) => {
                    for (offset, parsed) in backends_file_lines(&text, self.outside) {
                        let checked = parsed.and_then(|b| {
                            if out.iter().any(|o| o.addr == b.addr) {
                                Err(format!("{} is listed twice in this pool", b.addr))
                            } else {
                                Ok(b)
                            }
                        });
                        match checked {
                            Ok(b) => out.push(b),
                            Err(message) => self
                                .errors
                                .push(ConfigError::at(&path, &text, offset, &file_key, message)),
                        }
                    }
                }
                Err(e) => self.error(
                    file.span(),
                    &file_key,
                    format!("cannot read {}: {e}", path.display()),
                ),
            }
        }
        out
    }

    fn balance(&mut self, p: &file::PoolSection, key: &str) -> Option<Balance> {
        let hash_key = self.check(&p.hash_key, &format!("{key}.hash-key"), |k| {
            HashKey::parse(k)
        })?;
        self.check(&p.balance, &format!("{key}.balance"), |b| {
            match b.as_str() {
                "least-busy" => Ok(Balance::LeastBusy),
                "round-robin" => Ok(Balance::RoundRobin),
                "hash" => Ok(Balance::Hash(hash_key.clone())),
                other => Err(format!(
                    "`{other}` is not a balance: use \"least-busy\", \"round-robin\" or \"hash\""
                )),
            }
        })
    }

    fn ejection(&mut self, p: &file::PoolSection, key: &str) -> Option<Ejection> {
        let after = self.check(&p.eject_after, &format!("{key}.eject-after"), |n| {
            u32::try_from(*n).map_err(|_| format!("must be 0 or more, not {n}"))
        });
        let duration = self.duration(&p.eject_for, &format!("{key}.eject-for"));
        Some(Ejection {
            after: after?,
            duration: duration?,
        })
    }

    fn health(&mut self, h: &file::HealthSection, key: &str) -> Option<HealthSettings> {
        let path = self.check(&h.path, &format!("{key}.path"), |p| {
            if p.starts_with('/')
                && !p
                    .chars()
                    .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
            {
                Ok(p.clone())
            } else {
                Err(format!("`{p}` must start with `/` and hold no spaces"))
            }
        });
        let host = match &h.host {
            Some(host) => self.check(host, &format!("{key}.host"), |v| {
                let clean = !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_graphic() && c != '/' && c != '@');
                if clean {
                    Ok(Some(v.clone()))
                } else {
                    Err(format!("`{v}` is not a host name (with an optional :port)"))
                }
            })?,
            None => None,
        };
        let interval = self.duration(&h.interval, &format!("{key}.interval"));
        let timeout = self.duration(&h.timeout, &format!("{key}.timeout"));
        let rise = self.positive(&h.rise, &format!("{key}.rise"));
        let fall = self.positive(&h.fall, &format!("{key}.fall"));
        let interval = interval?;
        if interval.is_zero() {
            self.error(
                h.interval.span(),
                &format!("{key}.interval"),
                "must be more than 0s",
            );
            return None;
        }
        Some(HealthSettings {
            path: path?,
            host,
            interval,
            timeout: timeout?,
            rise: u32::try_from(rise?.get()).unwrap_or(u32::MAX),
            fall: u32::try_from(fall?.get()).unwrap_or(u32::MAX),
        })
    }

    fn admission(&mut self, a: &file::AdmissionSection, key: &str) -> Option<AdmissionSettings> {
        let slots = self.positive(&a.slots, &format!("{key}.slots"));
        let queue_length = self.positive(&a.queue_length, &format!("{key}.queue-length"));
        let reserved_slots = self.check(&a.reserved_slots, &format!("{key}.reserved-slots"), |n| {
            usize::try_from(*n).map_err(|_| format!("must be 0 or more, not {n}"))
        });
        let queue_timeout = self.duration(&a.queue_timeout, &format!("{key}.queue-timeout"));
        let target = self.duration(&a.target, &format!("{key}.target"));
        let interval = self.duration(&a.interval, &format!("{key}.interval"));
        let retry_after = self.duration(&a.retry_after, &format!("{key}.retry-after"));
        let settings = AdmissionSettings {
            slots: slots?.get(),
            reserved_slots: reserved_slots?,
            queue_length: queue_length?.get(),
            queue_timeout: queue_timeout?,
            target: target?,
            interval: interval?,
            retry_after: retry_after?,
        };
        if settings.reserved_slots >= settings.slots {
            self.error(
                a.reserved_slots.span(),
                &format!("{key}.reserved-slots"),
                format!(
                    "{} reserved of {} slots would leave none for normal routes",
                    settings.reserved_slots, settings.slots
                ),
            );
            return None;
        }
        Some(settings)
    }

    fn routes(
        &mut self,
        routes: &[file::RouteSection],
        pools: &BTreeMap<String, file::PoolSection>,
    ) -> Vec<Route> {
        if routes.is_empty() {
            self.error(0..0, "routes", "no [[routes]]: every request would get 404");
        }
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            let name = r.name.get_ref();
            let name_ok = self.check(&r.name, &format!("{key}.name"), |n| {
                let valid = !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !valid {
                    Err(format!(
                        "`{n}`: route names are letters, digits, `_` and `-` (they label metrics)"
                    ))
                } else if !names.insert(n.clone()) {
                    Err(format!("route name `{n}` is used twice"))
                } else {
                    Ok(())
                }
            });
            let host = r
                .host
                .as_ref()
                .map(|h| self.check(h, &format!("{key}.host"), |h| HostPattern::parse(h)));
            let methods = r.methods.as_ref().map(|ms| {
                ms.iter()
                    .filter_map(|m| {
                        self.check(m, &format!("{key}.methods"), |m| {
                            let upper = m.to_ascii_uppercase();
                            let known = [
                                "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
                                "TRACE", "CONNECT",
                            ];
                            if known.contains(&upper.as_str()) {
                                Method::from_bytes(upper.as_bytes()).map_err(|e| e.to_string())
                            } else {
                                Err(format!("`{m}` is not an HTTP method"))
                            }
                        })
                    })
                    .collect::<Vec<_>>()
            });
            let template = self.check(&r.path, &format!("{key}.path"), |p| {
                PathTemplate::parse(p).map_err(|e| e.to_string())
            });
            let pool_ok = self.check(&r.pool, &format!("{key}.pool"), |p| {
                if pools.contains_key(p) {
                    Ok(())
                } else {
                    let known: Vec<&str> = pools.keys().map(String::as_str).collect();
                    Err(format!("no pool named `{p}` (pools: {})", known.join(", ")))
                }
            });
            let host = match host {
                Some(Some(h)) => Some(h),
                Some(None) => continue,
                None => None,
            };
            let assets = match &r.assets {
                Some(a) => match self.assets(a, &format!("{key}.assets")) {
                    Some(assets) => Some(assets),
                    None => continue,
                },
                None => None,
            };
            let priority = match &r.priority {
                Some(p) => {
                    match self.check(p, &format!("{key}.priority"), |w| Priority::parse(w)) {
                        Some(p) => p,
                        None => continue,
                    }
                }
                None => Priority::Normal,
            };
            let cache = match &r.cache {
                Some(c) => match self.route_cache(c, &format!("{key}.cache")) {
                    Some(cache) => Some(cache),
                    None => continue,
                },
                None => None,
            };
            let hints = match (&r.hints, &template) {
                (Some(h), Some(template)) => {
                    match self.hints(h, template, &format!("{key}.hints")) {
                        Some(hints) => hints,
                        None => continue,
                    }
                }
                _ => RouteHints::default(),
            };
            let offload = match (&r.offload, &template) {
                (Some(o), Some(t)) => match self.offload(o, t, &format!("{key}.offload")) {
                    Some(offload) => Some(offload),
                    None => continue,
                },
                _ => None,
            };
            let max_body = r
                .max_body
                .as_ref()
                .map(|m| self.check(m, &format!("{key}.max-body"), |s| units::parse_size(s)));
            let max_body = match max_body {
                Some(None) => continue,
                Some(Some(max)) => Some(max),
                None => None,
            };
            if let (Some(()), Some(template), Some(())) = (name_ok, template, pool_ok) {
                out.push(Route {
                    name: Arc::from(name.as_str()),
                    host,
                    methods,
                    template,
                    pool: Arc::from(r.pool.get_ref().as_str()),
                    assets,
                    cache,
                    priority,
                    hints,
                    offload,
                    max_body,
                });
            }
        }
        out
    }

    /// `[routes.hints]` of a route whose path compiled to `template`.
    fn hints(
        &mut self,
        h: &file::HintsSection,
        template: &PathTemplate,
        key: &str,
    ) -> Option<RouteHints> {
        let mut links = Vec::new();
        let mut ok = true;
        for (rel, list, name) in [
            (Rel::Preload, &h.preload, "preload"),
            (Rel::Prefetch, &h.prefetch, "prefetch"),
        ] {
            for (i, entry) in list.iter().enumerate() {
                let entry_key = format!("{key}.{name}[{i}]");
                let destination = match &entry.destination {
                    Some(d) => self.check(d, &format!("{entry_key}.as"), |d| Destination::parse(d)),
                    None => self.check(&entry.href, &format!("{entry_key}.href"), |href| {
                        Destination::from_extension(href).ok_or_else(|| {
                            format!("cannot tell what `{href}` is from its extension: add `as = \"fetch\"` (or script, style, font, image)")
                        })
                    }),
                };
                let parsed = destination.and_then(|destination| {
                    self.check(&entry.href, &format!("{entry_key}.href"), |href| {
                        LinkTemplate::parse(href, rel, destination, template)
                    })
                });
                match parsed {
                    Some(link) => links.push(link),
                    None => ok = false,
                }
            }
        }
        let defer_scripts = h.defer_scripts.as_ref().map(|d| {
            let mut patterns = |list: &[Spanned<String>], name: &str| -> Vec<String> {
                list.iter()
                    .filter_map(|p| {
                        self.check(p, &format!("{key}.defer-scripts.{name}"), |p| {
                            if p.trim().is_empty() {
                                Err(
                                    "an empty pattern matches nothing: use \"*\" for every script"
                                        .to_string(),
                                )
                            } else {
                                Ok(p.clone())
                            }
                        })
                    })
                    .collect()
            };
            let allow = patterns(&d.allow, "allow");
            let deny = patterns(&d.deny, "deny");
            DeferScripts::new(allow, deny)
        });
        ok.then_some(RouteHints {
            links,
            learn: h.learn,
            early_hints: h.early_hints,
            defer_scripts,
        })
    }
}

/// The largest `weight` of a backend.
const MAX_WEIGHT: u32 = 100;

/// The backends of a `backends-file`: one `host:port [weight] [drain]` a line, `#` comments
/// and blank lines skipped; each with its line's offset in `text`.
fn backends_file_lines(text: &str, outside: &dyn Outside) -> Vec<(usize, Result<Backend, String>)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let content = line.split('#').next().unwrap_or("");
        let mut words = content.split_whitespace();
        let Some(address) = words.next() else {
            continue;
        };
        let at = start + content.find(address).unwrap_or(0);
        let parsed = (|| {
            let addr = resolve(address, outside)?;
            let (mut weight, mut drain) = (1, false);
            for word in words {
                match word {
                    "drain" => drain = true,
                    w => {
                        weight = w
                            .parse::<u32>()
                            .ok()
                            .filter(|w| (1..=MAX_WEIGHT).contains(w))
                            .ok_or_else(|| {
                                format!("`{w}`: a weight is a whole number from 1 to {MAX_WEIGHT} (or `drain`)")
                            })?
                    }
                }
            }
            Ok(Backend {
                addr,
                weight,
                drain,
            })
        })();
        out.push((at, parsed));
    }
    out
}

/// `host:port` to one address: literal addresses directly, names through the resolver (at
/// load time; a reload resolves again).
fn resolve(text: &str, outside: &dyn Outside) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !text.contains(':') {
        return Err(format!("`{text}` needs a port: host:port"));
    }
    outside
        .resolve(text)
        .map_err(|e| format!("`{text}`: {e}"))?
        .into_iter()
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cert(dir: &Path) {
        crate::tls::ensure_dev_certificate(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
    }

    const GOOD: &str = r#"
[listen]
https = "127.0.0.1:8443"
http = "127.0.0.1:8080"

[[tls.certificates]]
cert = "cert.pem"
key = "key.pem"

[pools.app]
backends = ["127.0.0.1:3000"]
connect-timeout = "250ms"

[[routes]]
name = "all"
path = "/{rest*}"
pool = "app"
"#;

    #[test]
    fn a_good_file_validates_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        with_cert(dir.path());
        let config = Config::parse(&dir.path().join("f.toml"), GOOD).unwrap();
        assert_eq!(config.server.threads.get(), 2);
        assert_eq!(config.listen.admin, "127.0.0.1:9901".parse().unwrap());
        assert_eq!(config.listen.redirect_https_port, 8443);
        assert_eq!(
            config.pools["app"].connect_timeout,
            Duration::from_millis(250)
        );
        assert_eq!(config.routes.len(), 1);
    }

    #[test]
    fn every_semantic_error_is_reported_with_line_col_and_key() {
        let dir = tempfile::tempdir().unwrap();
        with_cert(dir.path());
        let bad = GOOD
            .replace("\"250ms\"", "\"250\"")
            .replace("pool = \"app\"", "pool = \"nope\"")
            .replace("/{rest*}", "/{rest*");
        let errors = Config::parse(&dir.path().join("f.toml"), &bad)
            .unwrap_err()
            .0;
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 3, "{text:?}");
        assert!(
            text[0].contains(":12:19: pools.app.connect-timeout: `250` needs a unit"),
            "{text:?}"
        );
        assert!(text[1].contains(":16:8: routes[0].path:"), "{text:?}");
        assert!(
            text[2].contains(":17:8: routes[0].pool: no pool named `nope`"),
            "{text:?}"
        );
    }

    #[test]
    fn limits_have_defaults_per_route_overrides_and_refuse_zero() {
        let dir = tempfile::tempdir().unwrap();
        with_cert(dir.path());
        let config = Config::parse(&dir.path().join("f.toml"), GOOD).unwrap();
        assert_eq!(config.limits, crate::hostile::Limits::default());
        assert_eq!(config.routes[0].max_body, None);

        let tuned = GOOD.replace(
            "[pools.app]",
            "[proxy]\nmax-header-bytes = \"16KiB\"\nheader-timeout = \"5s\"\nencoded-slashes = \"pass\"\n\n[pools.app]",
        ) + "max-body = \"1GiB\"\n";
        let config = Config::parse(&dir.path().join("f.toml"), &tuned).unwrap();
        assert_eq!(config.limits.max_header_bytes, 16 * 1024);
        assert_eq!(config.limits.header_timeout, Duration::from_secs(5));
        assert_eq!(
            config.limits.encoded_slashes,
            crate::hostile::path::EncodedSlashes::Pass
        );
        assert_eq!(config.routes[0].max_body, Some(1 << 30));

        let bad = GOOD.replace(
            "[pools.app]",
            "[proxy]\nmax-headers = 0\nmax-uri-bytes = \"0B\"\nbody-timeout = \"0s\"\nencoded-slashes = \"sometimes\"\n\n[pools.app]",
        ) + "max-body = \"big\"\n";
        let errors = Config::parse(&dir.path().join("f.toml"), &bad)
            .unwrap_err()
            .0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "proxy.max-headers",
                "proxy.max-uri-bytes",
                "proxy.body-timeout",
                "proxy.encoded-slashes",
                "routes[0].max-body"
            ]
        );
    }

    #[test]
    fn h2_limits_default_like_nginx_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        with_cert(dir.path());
        let path = dir.path().join("f.toml");
        let config = Config::parse(&path, GOOD).unwrap();
        assert_eq!(
            config.h2,
            H2Settings {
                max_concurrent_streams: 128,
                max_header_list_size: 64 * 1024,
            }
        );
        let set = |streams: &str, size: &str| {
            let proxy = format!(
                "[proxy]\nh2-max-concurrent-streams = {streams}\nh2-max-header-list-size = \"{size}\"\n"
            );
            Config::parse(&path, &format!("{proxy}{GOOD}"))
        };
        assert_eq!(set("10", "1MiB").unwrap().h2.max_header_list_size, 1 << 20);
        let errors = set("0", "64MiB").unwrap_err().0;
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 2, "{text:?}");
        assert!(
            text[0].contains(":2:29: proxy.h2-max-concurrent-streams: must be from 1 to 10000"),
            "{text:?}"
        );
        assert!(
            text[1].contains(":3:27: proxy.h2-max-header-list-size: must be from 1KiB to 16MiB"),
            "{text:?}"
        );
    }

    #[test]
    fn unknown_keys_and_syntax_errors_name_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        let errors = Config::parse(&path, "[listen]\nhttps = \"127.0.0.1:1\"\nhtps = 1\n")
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].line, errors[0].key.as_str()), (3, "listen.htps"));
        assert!(
            errors[0].message.contains("unknown field"),
            "{}",
            errors[0].message
        );

        let errors = Config::parse(&path, "[listen\n").unwrap_err().0;
        assert_eq!(errors[0].line, 1);
    }

    #[test]
    fn a_bad_certificate_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), "garbage").unwrap();
        std::fs::write(dir.path().join("key.pem"), "garbage").unwrap();
        let errors = Config::parse(&dir.path().join("f.toml"), GOOD)
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "tls.certificates[0].cert");
        assert!(
            errors[0].message.contains("no PEM certificate"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn hint_templates_naming_unknown_params_are_errors_with_their_place() {
        let dir = tempfile::tempdir().unwrap();
        with_cert(dir.path());
        let text = GOOD.replace("/{rest*}", "/courses/{school}/{title}")
            + "[routes.hints]\npreload = [{ href = \"/c/{school}/{course}.json\" }, { href = \"/x\" }]\n";
        let errors = Config::parse(&dir.path().join("f.toml"), &text)
            .unwrap_err()
            .0;
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 2, "{text:?}");
        assert!(
            text[0].contains(":19:21: routes[0].hints.preload[0].href: `/c/{school}/{course}.json` names `{course}`"),
            "{text:?}"
        );
        assert!(
            text[1].contains("routes[0].hints.preload[1].href: cannot tell what `/x` is"),
            "{text:?}"
        );
    }

    #[test]
    fn hints_validate_into_the_route() {
        let dir = tempfile::tempdir().unwrap();
        with_cert(dir.path());
        let text = GOOD.replace("/{rest*}", "/courses/{school}/{title}")
            + "[routes.hints]\nearly-hints = true\nprefetch = [{ href = \"/c/{title}\", as = \"fetch\" }]\n[routes.hints.defer-scripts]\ndeny = [\"/assets/jquery-*\"]\n";
        let config = Config::parse(&dir.path().join("f.toml"), &text).unwrap();
        let hints = &config.routes[0].hints;
        assert!(hints.early_hints && hints.learn);
        assert_eq!(hints.links.len(), 1);
        let defer = hints.defer_scripts.as_ref().unwrap();
        assert!(!defer.applies_to("/assets/jquery-1.js"));
        assert!(defer.applies_to("/assets/app-1.js"));
    }

    #[test]
    fn backends_take_strings_or_tables_with_weight_and_drain() {
        let dir = tempfile::tempdir().unwrap();
        with_cert(dir.path());
        let text = GOOD.replace(
            r#"backends = ["127.0.0.1:3000"]"#,
            r#"backends = ["127.0.0.1:3000", { address = "127.0.0.1:3001", weight = 3 }, { address = "127.0.0.1:3002", drain = true }]
balance = "hash"
hash-key = "header:X-User""#,
        ) + "[pools.app.health]\ninterval = \"500ms\"\n";
        let config = Config::parse(&dir.path().join("f.toml"), &text).unwrap();
        let app = &config.pools["app"];
        let weights: Vec<(u32, bool)> = app.backends.iter().map(|b| (b.weight, b.drain)).collect();
        assert_eq!(weights, [(1, false), (3, false), (1, true)]);
        assert!(matches!(app.balance, Balance::Hash(HashKey::Header(_))));
        let health = app.health.as_ref().unwrap();
        assert_eq!(
            (health.path.as_str(), health.rise, health.fall),
            ("/healthz", 2, 3)
        );
        assert_eq!(health.interval, Duration::from_millis(500));
        assert_eq!(app.ejection.after, 3);
    }

    #[test]
    fn bad_backend_entries_are_errors_with_their_place() {
        let dir = tempfile::tempdir().unwrap();
        with_cert(dir.path());
        let text = GOOD.replace(
            r#"backends = ["127.0.0.1:3000"]"#,
            r#"backends = ["127.0.0.1:3000", { address = "127.0.0.1:3000" }, { address = "127.0.0.1:3001", weight = 0 }]
balance = "fastest""#,
        );
        let errors = Config::parse(&dir.path().join("f.toml"), &text)
            .unwrap_err()
            .0;
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 3, "{text:?}");
        assert!(
            text[0].contains("pools.app.backends[1]: 127.0.0.1:3000 is listed twice"),
            "{text:?}"
        );
        assert!(
            text[1].contains("pools.app.backends[2].weight: must be"),
            "{text:?}"
        );
        assert!(text[2].contains("pools.app.balance: `fastest`"), "{text:?}");
    }

    #[test]
    fn a_backends_file_adds_backends_and_its_errors_name_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        with_cert(dir.path());
        let list = "# deploy 42\n127.0.0.1:3001 2\n  127.0.0.1:3002 drain # leaving\n\n";
        std::fs::write(dir.path().join("backends.txt"), list).unwrap();
        let text = GOOD.replace(
            r#"backends = ["127.0.0.1:3000"]"#,
            r#"backends = ["127.0.0.1:3000"]
backends-file = "backends.txt""#,
        );
        let path = dir.path().join("f.toml");
        let config = Config::parse(&path, &text).unwrap();
        let app = &config.pools["app"];
        let got: Vec<(u16, u32, bool)> = app
            .backends
            .iter()
            .map(|b| (b.addr.port(), b.weight, b.drain))
            .collect();
        assert_eq!(got, [(3000, 1, false), (3001, 2, false), (3002, 1, true)]);
        assert_eq!(config.watched_files(), [dir.path().join("backends.txt")]);

        std::fs::write(
            dir.path().join("backends.txt"),
            format!("{list}127.0.0.1:3003 heavy\n127.0.0.1:3000\n"),
        )
        .unwrap();
        let errors = Config::parse(&path, &text).unwrap_err().0;
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 2, "{text:?}");
        assert!(
            text[0].contains("backends.txt:5:1: pools.app.backends-file: `heavy`"),
            "{text:?}"
        );
        assert!(
            text[1].contains(
                "backends.txt:6:1: pools.app.backends-file: 127.0.0.1:3000 is listed twice"
            ),
            "{text:?}"
        );
    }
}
