//! Configuration: the TOML file ([`file`]) and the validated model the rest of frontdoor uses.
//!
//! Loading never panics: every problem becomes a [`ConfigError`] with file, line, column and
//! key path, and validation collects all of them before it answers. Paths in the file are
//! relative to the file's own folder.

mod acme;
mod admin;
mod cache;
mod error;
mod error_pages;
pub mod file;
mod jobs;
mod listen;
mod outside;
mod pools;
mod request_buffering;
mod response_buffering;
mod routes;
mod sendfile;
mod server;
pub mod units;

pub use error::{key_path_at, line_col, ConfigError, ConfigErrors};
pub use listen::{HttpMode, ListenSettings};
pub use outside::{Outside, System};
pub use server::{H2Settings, ServerSettings};

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

use crate::routing::{Route, RouteTable};
use crate::tls::Certificate;
use crate::upstream::PoolSettings;

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
    /// Certificates ordered from an ACME CA (fixed at start).
    pub acme: Option<crate::acme::AcmeSettings>,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Answered `200 ok` by frontdoor on the public listeners; never queued or proxied.
    pub health_path: Option<String>,
    /// Head, URI and body limits and the slow-client timeouts.
    pub limits: crate::hostile::Limits,
    /// Where request bodies are held while they are received, and how much memory they take.
    pub request_buffering: crate::buffering::request::Settings,
    /// Limits of the HTTP/2 server on the HTTPS listener (fixed at start).
    pub h2: H2Settings,
    /// How much of the app's answers is held for slower clients.
    pub response_buffering: crate::buffering::response::Settings,
    /// Upstream pools by name.
    pub pools: BTreeMap<String, PoolSettings>,
    /// Routes in file order (the route table sorts them).
    pub routes: Vec<Route>,
    /// The asset cache, from `[cache]` (sized at start; a reload that changes it warns).
    pub assets: crate::assets::Settings,
    /// The edge cache, from `[cache]` (sized at start; a reload that changes it warns).
    pub edge_cache: crate::edge_cache::Settings,
    /// The job store (fixed at start), replay rates and schedules.
    pub jobs: crate::jobs::JobsSettings,
    /// The operator's pages for frontdoor's own error answers.
    pub error_pages: crate::error_pages::ErrorPages,
    /// X-Sendfile / X-Accel-Redirect, when `[sendfile]` is present.
    pub sendfile: Option<crate::sendfile::Settings>,
    /// Who may act through the admin listener; where actions are remembered.
    pub admin: crate::operate::AdminSettings,
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

    /// Files besides the config itself whose change triggers a reload (`backends-file`s,
    /// error pages).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        self.pools
            .values()
            .filter_map(|p| p.backends_file.clone())
            .chain(self.error_pages.files().cloned())
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
        let acme = match &file.tls.acme {
            Some(a) => Some(self.acme(a, file.listen.http.is_some())?),
            None => None,
        };
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
        let request_buffering = self.request_buffering(&file.proxy);
        let h2 = self.h2(&file.proxy);
        let response_buffering = self.response_buffering(&file.proxy);
        let pools = self.pools(&file.pools);
        let routes = self.routes(&file.routes, &file.pools);
        let cache = self.cache(&file.cache);
        let jobs = self.jobs(&file.jobs, &file.routes, &file.pools);
        let error_pages = self.error_pages(&file.error_pages);
        let sendfile = self.sendfile(&file.sendfile);
        let admin = self.admin(&file.admin);
        let (assets, edge_cache) = cache?;
        Some(Config {
            source: self.path.to_path_buf(),
            server: server?,
            listen: listen?,
            certificates,
            acme,
            trusted_proxies,
            health_path,
            limits: limits?,
            request_buffering: request_buffering?,
            h2: h2?,
            response_buffering: response_buffering?,
            pools,
            routes,
            assets,
            edge_cache,
            jobs: jobs?,
            error_pages,
            sendfile,
            admin,
        })
    }
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
mod tests;

/// Tests of one section: a minimal valid file (a listener, the dev certificate written into
/// `dir`, one pool, one catch-all route) ending with `[section]` and `body`, which start on
/// line 16 (the sections' tests assert error places).
#[cfg(test)]
fn file_with_section(dir: &Path, section: &str, body: &str) -> String {
    crate::tls::ensure_dev_certificate(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
    format!(
        "[listen]\nhttps = \"127.0.0.1:8443\"\n\n[[tls.certificates]]\ncert = \"cert.pem\"\n\
         key = \"key.pem\"\n\n[pools.app]\nbackends = [\"127.0.0.1:3000\"]\n\n[[routes]]\n\
         name = \"all\"\npath = \"/{{rest*}}\"\npool = \"app\"\n\n[{section}]\n{body}"
    )
}
