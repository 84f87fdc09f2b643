//! Validation of `[server]` (process settings) and the limits of `[proxy]`.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::{file, units, Validator};
use crate::accesslog;

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
    pub access_log: accesslog::Target,
    /// How access log lines look.
    pub access_log_format: accesslog::Format,
}

/// The HTTP/2 limits of `[proxy]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Settings {
    /// Streams one connection may have open at once; more get `REFUSED_STREAM`.
    pub max_concurrent_streams: u32,
    /// Bytes of decoded request header list (HPACK-expanded, 32 bytes per field counted).
    pub max_header_list_size: u32,
}

impl Validator<'_> {
    pub(super) fn server(&mut self, s: &file::ServerSection) -> Option<ServerSettings> {
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
            "off" => accesslog::Target::Off,
            "stdout" => accesslog::Target::Stdout,
            "stderr" => accesslog::Target::Stderr,
            path => accesslog::Target::File(self.relative(path)),
        };
        let access_log_format =
            self.check(
                &s.access_log_format,
                "server.access-log-format",
                |f| match f.as_str() {
                    "text" => Ok(accesslog::Format::Text),
                    "json" => Ok(accesslog::Format::Json),
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

    /// `[proxy]` limits. A limit of 0 would refuse every request, so each is at least 1.
    pub(super) fn limits(&mut self, p: &file::ProxySection) -> Option<crate::hostile::Limits> {
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

    pub(super) fn h2(&mut self, p: &file::ProxySection) -> Option<H2Settings> {
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
}
