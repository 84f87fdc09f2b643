//! Validation of `[routes.offload]` and `[jobs]` (the job system, see `crate::jobs`).

use http::{HeaderName, Method};
use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroU32;

use super::{file, units, Validator};
use crate::jobs::schedule::{KeysUrl, Schedule};
use crate::jobs::{JobsSettings, KeyTemplate, OffloadRoute, Rate, StoreSettings};
use crate::routing::PathTemplate;

impl Validator<'_> {
    pub(super) fn offload(
        &mut self,
        o: &file::OffloadSection,
        template: &PathTemplate,
        key: &str,
    ) -> Option<OffloadRoute> {
        let dedup = match &o.key {
            Some(k) => Some(self.check(k, &format!("{key}.key"), |k| {
                KeyTemplate::parse(k, |name| template.has_param(name))
            })?),
            None => None,
        };
        let size = |v: &String| units::parse_size(v);
        let max_body = self.check(&o.max_body, &format!("{key}.max-body"), size);
        let max_result_size =
            self.check(&o.max_result_size, &format!("{key}.max-result-size"), size);
        let concurrency = self.positive(&o.concurrency, &format!("{key}.concurrency"));
        let timeout = self.duration(&o.timeout, &format!("{key}.timeout"));
        let max_attempts = self.check(&o.max_attempts, &format!("{key}.max-attempts"), |n| {
            u32::try_from(*n)
                .ok()
                .and_then(NonZeroU32::new)
                .ok_or_else(|| format!("must be a whole number of at least 1, not {n}"))
        });
        let backoff = self.duration(&o.backoff, &format!("{key}.backoff"));
        let max_backoff = self.duration(&o.max_backoff, &format!("{key}.max-backoff"));
        let keep = self.duration(&o.keep, &format!("{key}.keep"));
        let retry_after = self.duration(&o.retry_after, &format!("{key}.retry-after"));
        let headers: Vec<HeaderName> = o
            .headers
            .iter()
            .filter_map(|h| {
                self.check(h, &format!("{key}.headers"), |h| {
                    HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                        .map_err(|_| format!("`{h}` is not a header name"))
                })
            })
            .collect();
        Some(OffloadRoute {
            key: dedup,
            max_body: max_body?,
            max_result_size: max_result_size?,
            concurrency: concurrency?,
            timeout: timeout?,
            max_attempts: max_attempts?,
            backoff: backoff?,
            max_backoff: max_backoff?,
            keep: keep?,
            retry_after: retry_after?,
            headers,
        })
    }

    pub(super) fn jobs(
        &mut self,
        j: &file::JobsSection,
        routes: &[file::RouteSection],
        pools: &BTreeMap<String, file::PoolSection>,
    ) -> Option<JobsSettings> {
        let store = match j.store.get_ref().as_str() {
            "embedded" => Some(StoreSettings::Embedded {
                path: self.relative(j.path.get_ref()),
            }),
            "redis" => match &j.redis_url {
                Some(url) => self.check(url, "jobs.redis-url", |u| {
                    redis::Client::open(u.as_str())
                        .map(|_| StoreSettings::Redis {
                            url: u.clone(),
                            prefix: j.redis_prefix.get_ref().clone(),
                        })
                        .map_err(|e| format!("`{u}`: {e}"))
                }),
                None => {
                    self.error(
                        j.store.span(),
                        "jobs.redis-url",
                        "the redis store needs redis-url",
                    );
                    None
                }
            },
            other => {
                let message = format!("`{other}` is not a store: use \"embedded\" or \"redis\"");
                self.error(j.store.span(), "jobs.store", message);
                None
            }
        };
        let visibility_timeout = self.duration(&j.visibility_timeout, "jobs.visibility-timeout");
        let poll_interval = self.duration(&j.poll_interval, "jobs.poll-interval");
        let burst = self.check(&j.rate_burst, "jobs.rate-burst", |n| {
            u32::try_from(*n)
                .ok()
                .and_then(NonZeroU32::new)
                .ok_or_else(|| format!("must be a whole number of at least 1, not {n}"))
        });
        let mut rates = BTreeMap::new();
        for (pool, rate) in &j.rates {
            let key = format!("jobs.rates.{pool}");
            if !pools.contains_key(pool) {
                self.error(rate.span(), &key, format!("no pool named `{pool}`"));
                continue;
            }
            if let (Some(per_second), Some(burst)) =
                (self.check(rate, &key, |r| parse_rate(r)), burst)
            {
                rates.insert(pool.clone(), Rate { per_second, burst });
            }
        }
        let mut names = HashSet::new();
        let mut schedules = Vec::new();
        for (i, s) in j.schedules.iter().enumerate() {
            let key = format!("jobs.schedules[{i}]");
            let name = self.check(&s.name, &format!("{key}.name"), |n| {
                if n.is_empty() || !names.insert(n.clone()) {
                    Err(format!("schedule name `{n}` is empty or used twice"))
                } else {
                    Ok(n.clone())
                }
            });
            let route = self.check(&s.route, &format!("{key}.route"), |r| {
                match routes.iter().find(|route| route.name.get_ref() == r) {
                    Some(route) if route.offload.is_some() => Ok(r.clone()),
                    Some(_) => Err(format!("route `{r}` has no [routes.offload]")),
                    None => Err(format!("no route named `{r}`")),
                }
            });
            let method = self.check(&s.method, &format!("{key}.method"), |m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("`{m}` is not an HTTP method"))
            });
            let path = self.check(&s.path, &format!("{key}.path"), |p| {
                if p.starts_with('/') && p.contains("{key}") {
                    Ok(p.clone())
                } else {
                    Err(format!("`{p}` must start with / and contain {{key}}"))
                }
            });
            let every = self.duration(&s.every, &format!("{key}.every"));
            let slots = self.check(&s.slots, &format!("{key}.slots"), |n| {
                u32::try_from(*n)
                    .ok()
                    .and_then(NonZeroU32::new)
                    .ok_or_else(|| format!("must be a whole number of at least 1, not {n}"))
            });
            let keys_url = match &s.keys_url {
                Some(url) => {
                    let outside = self.outside;
                    match self.check(url, &format!("{key}.keys-url"), |u| {
                        KeysUrl::parse(u, |host| super::resolve(host, outside))
                    }) {
                        Some(url) => Some(url),
                        None => continue,
                    }
                }
                None => {
                    if s.keys.is_empty() {
                        self.error(
                            s.name.span(),
                            &format!("{key}.keys"),
                            "a schedule needs keys or keys-url",
                        );
                    }
                    None
                }
            };
            if let (Some(name), Some(route), Some(method), Some(path), Some(every), Some(slots)) =
                (name, route, method, path, every, slots)
            {
                schedules.push(Schedule {
                    name,
                    route,
                    method,
                    path,
                    every,
                    slots,
                    keys: s.keys.clone(),
                    keys_url,
                });
            }
        }
        Some(JobsSettings {
            store: store?,
            visibility_timeout: visibility_timeout?,
            poll_interval: poll_interval?,
            rates,
            schedules,
        })
    }
}

/// `"5/s"`, `"30/m"`, `"100/h"` → per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    let (count, unit) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}`: write a rate as N/s, N/m or N/h"))?;
    let count: f64 = count
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n > 0.0)
        .ok_or_else(|| format!("`{text}`: the count must be a positive number"))?;
    let seconds = match unit.trim() {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("`{other}` is not s, m or h")),
    };
    Ok(count / seconds)
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_read_per_second_minute_or_hour() {
        assert_eq!(parse_rate("5/s"), Ok(5.0));
        assert_eq!(parse_rate("120/m"), Ok(2.0));
        assert!(parse_rate("5").is_err());
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5/d").is_err());
    }
}
