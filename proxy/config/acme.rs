//! Validation of `[tls.acme]`.

use super::{file, units, Validator};
use crate::acme::{AcmeSettings, ChallengeKind};
use crate::routing::HostPattern;

impl Validator<'_> {
    /// `[tls.acme]`; `has_http`: whether a plain-HTTP listener exists (HTTP-01 needs one).
    pub(super) fn acme(&mut self, a: &file::AcmeSection, has_http: bool) -> Option<AcmeSettings> {
        let mut domains = Vec::new();
        for name in a.domains.get_ref() {
            let lower = name.get_ref().trim().to_ascii_lowercase();
            match HostPattern::parse(&lower) {
                Ok(_) if !domains.contains(&lower) => domains.push(lower),
                Ok(_) => self.error(
                    name.span(),
                    "tls.acme.domains",
                    format!("{lower} is listed twice"),
                ),
                Err(message) => self.error(name.span(), "tls.acme.domains", message),
            }
        }
        if a.domains.get_ref().is_empty() {
            self.error(
                a.domains.span(),
                "tls.acme.domains",
                "name at least one domain for the certificate",
            );
        }
        let contact = a
            .contact
            .iter()
            .filter_map(|c| {
                self.check(c, "tls.acme.contact", |c| {
                    let url = if c.contains(':') {
                        c.clone()
                    } else {
                        format!("mailto:{c}")
                    };
                    let plausible = url.strip_prefix("mailto:").is_some_and(|m| {
                        m.split_once('@')
                            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
                    });
                    if plausible {
                        Ok(url)
                    } else {
                        Err(format!("`{c}` is not an e-mail address"))
                    }
                })
            })
            .collect();
        let directory = self.check(&a.directory, "tls.acme.directory", |d| {
            if d.starts_with("https://") {
                Ok(d.clone())
            } else {
                Err(format!("`{d}` must be an https:// URL"))
            }
        });
        let directory_ca = match &a.directory_ca {
            Some(path) => {
                let file = self.relative(path.get_ref());
                let outside = self.outside;
                Some(self.check(path, "tls.acme.directory-ca", |_| {
                    outside
                        .read(&file)
                        .map_err(|e| format!("cannot read {}: {e}", file.display()))
                        .map(|_| file.clone())
                })?)
            }
            None => None,
        };
        let challenge = self.check(&a.challenge, "tls.acme.challenge", |c| match c.as_str() {
            "tls-alpn-01" => Ok(ChallengeKind::TlsAlpn01),
            "http-01" if has_http => Ok(ChallengeKind::Http01),
            "http-01" => Err("\"http-01\" needs a plain-HTTP listener: set listen.http".into()),
            other => Err(format!(
                "`{other}` is not a challenge: use \"tls-alpn-01\" or \"http-01\""
            )),
        });
        let renew_before = self.check(&a.renew_before, "tls.acme.renew-before", |r| {
            units::parse_duration(r)
        });
        let storage = self.relative(a.storage.get_ref());
        if domains.is_empty() {
            return None;
        }
        Some(AcmeSettings {
            domains,
            contact,
            directory: directory?,
            directory_ca,
            storage,
            challenge: challenge?,
            renew_before: renew_before?,
        })
    }
}
