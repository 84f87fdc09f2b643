//! Schedules: refresh a set of keys every interval, spread evenly over it.
//!
//! A key fires at the same point of every interval. Its place is a hash of (schedule, key)
//! read as a fraction of the interval: key `k` fires at the instants `n × every + offset(k)`
//! (ms since the Unix epoch), where `offset(k) = hash(k) / 2^64 × every`. The hash decides a
//! position, not a bucket (modulo bucketing reshuffles every key when the bucket count
//! changes), so adding or removing keys moves no other key, `slots` moves none, and a new
//! `every` scales every offset in proportion. Two fires of a key are exactly `every` apart,
//! every node computes the same instants, and a store lock per (schedule, key, instant) lets
//! exactly one node enqueue each. A reload that changes `every` moves each key's instants;
//! [`Fired`] remembers each key's last fire so that the change neither fires a key twice in
//! an interval nor makes it skip one.
//!
//! The keys are a static list, the JSON list (strings or numbers) a URL answers, or both; the
//! list is fetched again at the start of every interval (and at once when a reload names a
//! new URL), and when a fetch fails the previous list is kept.
//!
//! A fired key becomes an ordinary job of the schedule's offload route (dedup included: a
//! refresh still queued or running is not queued twice).

mod run;
#[cfg(test)]
mod tests;

pub use run::{run, Fired};

use http::Method;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use super::store::fnv1a;

/// `[[jobs.schedules]]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Unique name (part of each key's hash: two schedules of the same keys interleave).
    pub name: String,
    /// The offload route its jobs belong to.
    pub route: String,
    /// Method of each request.
    pub method: Method,
    /// Path with `{key}` where the key goes (must match the route's template).
    pub path: String,
    /// Each key fires once per `every`, exactly `every` apart.
    pub every: Duration,
    /// The parts of the interval `frontdoor schedule` counts fires in. It moves no key.
    pub slots: NonZeroU32,
    /// The static keys.
    pub keys: Vec<String>,
    /// Where more keys are fetched from, each interval.
    pub keys_url: Option<KeysUrl>,
}

impl Schedule {
    /// Its keys now: the static ones, then what `keys-url` answers (fetched once, the way the
    /// scheduler fetches at the start of each interval). For `frontdoor schedule`.
    pub async fn fetch_keys(&self, connector: &Connector) -> Result<Vec<String>, String> {
        let mut keys = self.keys.clone();
        if let Some(url) = &self.keys_url {
            let fetched = url
                .fetch(connector)
                .await
                .map_err(|e| format!("keys-url http://{}{}: {e}", url.host, url.path))?;
            keys.extend(fetched);
        }
        Ok(keys)
    }
}

/// `keys-url`, validated: a plain-HTTP URL answering a JSON list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysUrl {
    /// Resolved at load.
    pub addr: SocketAddr,
    /// The `Host` sent.
    pub host: String,
    /// Path and query.
    pub path: String,
}

impl KeysUrl {
    /// Parses `http://host:port/path`; `resolve` turns `host:port` into an address.
    pub fn parse(
        text: &str,
        resolve: impl Fn(&str) -> Result<SocketAddr, String>,
    ) -> Result<Self, String> {
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{text}`: only http:// URLs are fetched"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let with_port = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(KeysUrl {
            addr: resolve(&with_port)?,
            host: authority.to_string(),
            path: path.to_string(),
        })
    }

    /// GETs the list, within [`FETCH_TIMEOUT`] (the scheduler waits for it, and a list
    /// server that never answers must not stop every schedule).
    pub async fn fetch(&self, connector: &Connector) -> Result<Vec<String>, String> {
        tokio::time::timeout(FETCH_TIMEOUT, self.get(connector))
            .await
            .map_err(|_| format!("no whole answer within {}s", FETCH_TIMEOUT.as_secs()))?
    }

    /// GETs the list.
    async fn get(&self, connector: &Connector) -> Result<Vec<String>, String> {
        let failed = |e: Box<pingora::Error>| e.to_string();
        let peer = HttpPeer::new(self.addr, false, String::new());
        let mut request =
            RequestHeader::build("GET", self.path.as_bytes(), None).map_err(failed)?;
        request
            .insert_header("host", self.host.as_str())
            .map_err(failed)?;
        request
            .insert_header("accept", "application/json")
            .map_err(failed)?;
        let (mut session, _) = connector.get_http_session(&peer).await.map_err(failed)?;
        session
            .write_request_header(Box::new(request))
            .await
            .map_err(failed)?;
        session.finish_request_body().await.map_err(failed)?;
        session.read_response_header().await.map_err(failed)?;
        let status = session.response_header().map_or(0, |h| h.status.as_u16());
        if status != 200 {
            return Err(format!("answered {status}"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = session.read_response_body().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_KEYS_BODY {
                return Err("the key list is over 16 MiB".to_string());
            }
            body.extend_from_slice(&chunk);
        }
        let list: Vec<serde_json::Value> =
            serde_json::from_slice(&body).map_err(|e| format!("not a JSON list: {e}"))?;
        Ok(list
            .into_iter()
            .filter_map(|v| match v {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect())
    }
}

const MAX_KEYS_BODY: usize = 16 << 20;

/// The longest wait for a key list.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where `key` of schedule `name` sits in every interval, as a fraction `position / 2^64`.
///
/// FNV-1a alone would not do: its top bits barely change with a key's last byte, so
/// `course-1230` … `course-1239` landed within a few milliseconds of each other. The
/// MurmurHash3 finaliser spreads every input bit over all 64.
pub fn position(name: &str, key: &str) -> u64 {
    let mut h = fnv1a(&[name.as_bytes(), key.as_bytes()]);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// When `key` of schedule `name` fires in each interval of `every`: its position times the
/// interval, rounded down to the millisecond (the clock the scheduler and stores share).
pub fn offset(name: &str, key: &str, every: Duration) -> Duration {
    Duration::from_millis(offset_ms(position(name, key), millis(every)))
}

/// `position / 2^64 × every_ms`, below `every_ms`.
fn offset_ms(position: u64, every_ms: u64) -> u64 {
    // The product is below 2^64 × every_ms, so the shifted value is below every_ms.
    u64::try_from((u128::from(position) * u128::from(every_ms)) >> 64).unwrap_or(0)
}

/// A duration in whole milliseconds, at least 1 (an interval of zero would fire for ever).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// One schedule's keys placed in its interval, in fire order: what the scheduler walks each
/// tick and `frontdoor schedule` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The interval in ms, at least 1.
    every_ms: u64,
    /// `(offset ms, key)`, sorted, each key once.
    keys: Vec<(u64, String)>,
}

impl Plan {
    /// Places `keys` in the interval of `schedule` (a key listed twice fires once).
    pub fn new<'a>(schedule: &Schedule, keys: impl IntoIterator<Item = &'a str>) -> Plan {
        let every_ms = millis(schedule.every);
        let mut keys: Vec<(u64, String)> = keys
            .into_iter()
            .map(|k| {
                let at = offset_ms(position(&schedule.name, k), every_ms);
                (at, k.to_string())
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Plan { every_ms, keys }
    }

    /// The interval, in ms.
    pub fn every_ms(&self) -> u64 {
        self.every_ms
    }

    /// `(offset ms, key)` in fire order.
    pub fn keys(&self) -> &[(u64, String)] {
        &self.keys
    }

    /// The offset of `key` in ms, if the plan has it.
    pub fn offset_of(&self, key: &str) -> Option<u64> {
        self.keys.iter().find(|(_, k)| k == key).map(|(at, _)| *at)
    }

    /// The first instant after `now` (ms since the epoch) of a key at `offset` ms.
    pub fn next_fire(&self, offset: u64, now: u64) -> u64 {
        let start = now - now % self.every_ms;
        let at = start.saturating_add(offset);
        if at > now {
            at
        } else {
            at.saturating_add(self.every_ms)
        }
    }

    /// The fires in `(after, until]` (ms since the epoch) as `(instant, key)`, in time order.
    /// Consecutive windows see each instant once: none is lost or doubled between ticks.
    pub fn due(&self, after: u64, until: u64) -> Vec<(u64, &str)> {
        let mut fires = Vec::new();
        if until <= after {
            return fires;
        }
        for cycle in after / self.every_ms..=until / self.every_ms {
            let start = cycle * self.every_ms;
            // Offsets with `after < start + offset <= until`.
            let first = match after.checked_sub(start) {
                Some(passed) => self.keys.partition_point(|(at, _)| *at <= passed),
                None => 0,
            };
            let end = self.keys.partition_point(|(at, _)| *at <= until - start);
            for (at, key) in self.keys.get(first..end).unwrap_or_default() {
                fires.push((start + at, key.as_str()));
            }
        }
        fires
    }

    /// Fires per part of the interval cut into `parts` equal parts.
    pub fn histogram(&self, parts: NonZeroU32) -> Vec<u32> {
        let n = u64::from(parts.get());
        let mut counts = vec![0u32; usize::try_from(parts.get()).unwrap_or(usize::MAX)];
        for (at, _) in &self.keys {
            // `at < every_ms`, so the part is below `parts`.
            let part = u128::from(*at) * u128::from(n) / u128::from(self.every_ms);
            if let Some(count) = usize::try_from(part).ok().and_then(|p| counts.get_mut(p)) {
                *count += 1;
            }
        }
        counts
    }

    /// What `frontdoor schedule` prints at `now` (ms since the epoch): one line per key in
    /// fire order, `key offset-seconds next-fire-RFC3339`, then the fires per part of the
    /// interval cut into `parts`.
    pub fn report(&self, now: u64, parts: NonZeroU32) -> String {
        let mut out = String::new();
        for (at, key) in &self.keys {
            let _ = writeln!(
                out,
                "{key} {} {}",
                seconds(*at),
                rfc3339(self.next_fire(*at, now))
            );
        }
        let histogram = self.histogram(parts);
        let n = u64::from(parts.get());
        let _ = writeln!(
            out,
            "\n{} keys every {}s; fires per part of the interval ({} parts of {}s):",
            self.keys.len(),
            seconds(self.every_ms),
            parts,
            seconds(self.every_ms / n),
        );
        let most = histogram.iter().copied().max().unwrap_or(0);
        for (i, count) in (0u64..).zip(&histogram) {
            let from = u128::from(i) * u128::from(self.every_ms) / u128::from(n);
            let width = u64::from(*count) * 50 / u64::from(most.max(1));
            let bar = "#".repeat(usize::try_from(width).unwrap_or(0));
            let from = seconds(u64::try_from(from).unwrap_or(u64::MAX));
            let _ = writeln!(out, "part {i:>4} from {from:>12}s {count:>7} {bar}");
        }
        let fewest = histogram.iter().copied().min().unwrap_or(0);
        let mean = self.keys.len() as f64 / f64::from(parts.get());
        let part_seconds = self.every_ms as f64 / 1000.0 / f64::from(parts.get());
        let _ = writeln!(
            out,
            "fewest {fewest}, most {most}, mean {mean:.1} per part; the busiest part fires {:.3}/s",
            f64::from(most) / part_seconds
        );
        out
    }
}

/// Milliseconds as seconds with three decimals.
fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Milliseconds since the epoch as an RFC 3339 UTC time: `2024-11-22T10:06:40.123Z`.
pub fn rfc3339(ms: u64) -> String {
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, time) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's `civil_from_days`, for days since 1970-01-01).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}
