//! Validation of `[pools.NAME]`: backends (and `backends-file`), balancing, health, admission.

use std::collections::BTreeMap;

use super::{file, resolve, ConfigError, Outside, Validator};
use crate::admission::AdmissionSettings;
use std::path::Path;

use crate::upgraded::UpgradedSettings;
use crate::upstream::{
    Backend, BackendAddr, Balance, Ejection, HashKey, HealthSettings, PoolSettings,
};

impl Validator<'_> {
    pub(super) fn pools(
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
                    non_idempotent_max_idle: self.duration(
                        &p.non_idempotent_max_idle,
                        &format!("{key}.non-idempotent-max-idle"),
                    )?,
                    upgraded: self.upgraded(p, &key)?,
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
    pub(super) fn backends(&mut self, p: &file::PoolSection, key: &str) -> Vec<Backend> {
        let mut out: Vec<Backend> = Vec::new();
        let listed = p
            .backends
            .as_ref()
            .map_or(&[][..], |b| b.get_ref().as_slice());
        for (i, entry) in listed.iter().enumerate() {
            let entry_key = format!("{key}.backends[{i}]");
            let (outside, base) = (self.outside, self.base);
            let addr = self.check(entry, &entry_key, |e| {
                backend_addr(&e.address, base, outside)
            });
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
                    let base = path.parent().unwrap_or(self.base);
                    for (offset, parsed) in backends_file_lines(&text, base, self.outside) {
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

    pub(super) fn balance(&mut self, p: &file::PoolSection, key: &str) -> Option<Balance> {
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

    /// `max-upgraded` (at least 1) and `upgraded-idle-timeout` (more than 0s).
    pub(super) fn upgraded(
        &mut self,
        p: &file::PoolSection,
        key: &str,
    ) -> Option<UpgradedSettings> {
        let max = self.positive(&p.max_upgraded, &format!("{key}.max-upgraded"));
        let idle_key = format!("{key}.upgraded-idle-timeout");
        let idle_timeout = self.duration(&p.upgraded_idle_timeout, &idle_key)?;
        if idle_timeout.is_zero() {
            self.error(
                p.upgraded_idle_timeout.span(),
                &idle_key,
                "must be more than 0s",
            );
            return None;
        }
        Some(UpgradedSettings {
            max: max?.get(),
            idle_timeout,
        })
    }

    pub(super) fn ejection(&mut self, p: &file::PoolSection, key: &str) -> Option<Ejection> {
        let after = self.check(&p.eject_after, &format!("{key}.eject-after"), |n| {
            u32::try_from(*n).map_err(|_| format!("must be 0 or more, not {n}"))
        });
        let duration = self.duration(&p.eject_for, &format!("{key}.eject-for"));
        Some(Ejection {
            after: after?,
            duration: duration?,
        })
    }

    pub(super) fn health(&mut self, h: &file::HealthSection, key: &str) -> Option<HealthSettings> {
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

    pub(super) fn admission(
        &mut self,
        a: &file::AdmissionSection,
        key: &str,
    ) -> Option<AdmissionSettings> {
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
}

/// A backend's address: `unix:/path` (relative to `base`, the folder of the file naming
/// it) or `host:port`, resolved.
fn backend_addr(text: &str, base: &Path, outside: &dyn Outside) -> Result<BackendAddr, String> {
    match BackendAddr::parse_unix(text, base) {
        Some(unix) => unix,
        None => resolve(text, outside).map(BackendAddr::Tcp),
    }
}

/// The largest `weight` of a backend.
const MAX_WEIGHT: u32 = 100;

/// The backends of a `backends-file`: one `host:port [weight] [drain]` a line, `#` comments
/// and blank lines skipped; each with its line's offset in `text`.
fn backends_file_lines(
    text: &str,
    base: &Path,
    outside: &dyn Outside,
) -> Vec<(usize, Result<Backend, String>)> {
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
            let addr = backend_addr(address, base, outside)?;
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
