//! Validation of `[listen]`, `[tls]` and `[proxy] trusted-proxies`.

use ipnet::IpNet;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use super::{file, Validator};
use crate::routing::HostPattern;
use crate::tls::{certified_key_from, Certificate};

/// `[listen]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSettings {
    /// HTTPS (h2 + http/1.1).
    pub https: SocketAddr,
    /// Plain HTTP.
    pub http: Option<SocketAddr>,
    /// What the plain-HTTP listener does.
    pub http_mode: HttpMode,
    /// Admin endpoints.
    pub admin: SocketAddr,
    /// The port written into redirects.
    pub redirect_https_port: u16,
}

/// `[listen] http-mode`: what the plain-HTTP listener does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpMode {
    /// Every request gets `301` to HTTPS.
    #[default]
    Redirect,
    /// Requests are routed and proxied as on HTTPS: a TLS-terminating balancer in front sends
    /// plain HTTP, and its `X-Forwarded-Proto` is kept when it is a trusted proxy.
    Serve,
}

impl Validator<'_> {
    pub(super) fn listen(&mut self, l: &file::ListenSection) -> Option<ListenSettings> {
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
        let http_mode = self.check(&l.http_mode, "listen.http-mode", |m| match m.as_str() {
            "redirect" => Ok(HttpMode::Redirect),
            "serve" => Ok(HttpMode::Serve),
            other => Err(format!(
                "`{other}` is not a mode: use \"redirect\" (to HTTPS) or \"serve\""
            )),
        });
        if http_mode == Some(HttpMode::Serve) && l.http.is_none() {
            self.error(
                l.http_mode.span(),
                "listen.http-mode",
                "\"serve\" needs a plain-HTTP listener: set listen.http",
            );
        }
        let (https, admin, http_mode) = (https?, admin?, http_mode?);
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
            http_mode,
            admin,
            redirect_https_port: redirect_https_port?,
        })
    }

    pub(super) fn certificates(&mut self, t: &file::TlsSection) -> Vec<Certificate> {
        if t.certificates.is_empty() && t.acme.is_none() {
            self.error(
                0..0,
                "tls.certificates",
                "the HTTPS listener needs at least one [[tls.certificates]] or [tls.acme]",
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

    pub(super) fn trusted_proxies(&mut self, p: &file::ProxySection) -> Vec<IpNet> {
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
}
