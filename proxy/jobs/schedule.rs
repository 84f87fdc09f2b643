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

use http::Method;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use super::store::{fnv1a, now_ms, Enqueued, NewJob};
use super::Jobs;
use crate::routing::path_segments;
use crate::snapshot::{Shared, Snapshot};

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

/// Each key's last fire, remembered across ticks and reloads: what keeps a reload that changes
/// `every` from firing a key twice in an interval or making it skip one.
///
/// A new `every` moves each key's instants (its offset scales with the interval), so on the
/// instants alone a key that fired just before the reload could fire again just after it;
/// and waiting a whole new interval after each key's last fire would make a key whose
/// interval grew skip one (1 h → 2 h, a key 12 min into the hour, now 24 min into every
/// two: last fired at 11:12, it would pass over 12:24 and wait for 14:24). The rule: a key takes an instant of its current plan only if at least
/// the shorter of the two intervals (the one it last fired under, the current one) has passed
/// since its last fire. With `every` unchanged that always holds (the instants are exactly
/// `every` apart), so only a change feels it, and there each key takes the earliest instant
/// of its new plan that is not too soon:
/// - no key fires more often than the old or the new plan asks;
/// - no key passes over an instant it may take: from its first new fire on it fires once per
///   new interval, and that first fire comes less than its old interval plus one new one after
///   its last (what any switch between fixed instants can cost, when the old plan's next fire
///   was due just after the reload and the new plan's had just passed);
/// - every fire is an instant of the new plan, so the change spreads fires as evenly as the
///   plan does: no burst at the reload.
///
/// An instant whose lock another node holds counts as fired here too, so nodes that reload
/// together decide alike. The memory is the process's: a restart starts from the plan alone.
#[derive(Debug, Default)]
pub struct Fired {
    /// Schedule name → key → (instant, interval of the plan it fired under), both in ms.
    last: HashMap<String, HashMap<String, (u64, u64)>>,
}

impl Fired {
    /// The fires of `plan` (schedule `name`) in `(after, until]` that the rule lets through,
    /// in time order, each remembered as its key's last fire.
    pub fn due<'p>(
        &mut self,
        name: &str,
        plan: &'p Plan,
        after: u64,
        until: u64,
    ) -> Vec<(u64, &'p str)> {
        let mut fires = plan.due(after, until);
        if fires.is_empty() {
            return fires;
        }
        let every = plan.every_ms();
        let last = self.last.entry(name.to_string()).or_default();
        fires.retain(|(at, key)| {
            let allowed = last.get(*key).is_none_or(|(then, then_every)| {
                at.checked_sub(*then)
                    .is_some_and(|gap| gap >= every.min(*then_every))
            });
            if allowed {
                last.insert((*key).to_string(), (*at, every));
            }
            allowed
        });
        fires
    }

    /// Forgets what can hold no key back any more: fires older than their own interval (any
    /// later instant passes the rule) and schedules no longer in `schedules`.
    pub fn forget(&mut self, now: u64, schedules: &[Schedule]) {
        self.last
            .retain(|name, _| schedules.iter().any(|s| s.name == *name));
        for keys in self.last.values_mut() {
            keys.retain(|_, (then, every)| now.saturating_sub(*then) < *every);
        }
    }
}

/// Fires due keys of every schedule of the current config until the task is aborted.
pub async fn run(shared: Arc<Shared>, jobs: Arc<Jobs>) {
    let mut last = now_ms();
    // Fetched key lists by schedule name, with the interval they were fetched for (none:
    // fetch again now).
    let mut fetched: HashMap<String, (Option<u64>, Vec<String>)> = HashMap::new();
    // Plans by schedule name, for the snapshot `planned` (rebuilt on reload or a new list).
    let mut plans: HashMap<String, Plan> = HashMap::new();
    let mut planned: Option<Arc<Snapshot>> = None;
    let mut fired = Fired::default();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = now_ms();
        if now <= last {
            // The clock went back: the instants up to `last` were seen already.
            continue;
        }
        let snapshot = shared.snapshot.load_full();
        if !planned.as_ref().is_some_and(|p| Arc::ptr_eq(p, &snapshot)) {
            reloaded(&mut fetched, planned.as_deref(), &snapshot);
            plans.clear();
            fired.forget(now, &snapshot.config.jobs.schedules);
            planned = Some(snapshot.clone());
        }
        for schedule in &snapshot.config.jobs.schedules {
            if let Some(url) = &schedule.keys_url {
                let cycle = now / millis(schedule.every);
                if fetched
                    .get(&schedule.name)
                    .is_none_or(|(c, _)| *c != Some(cycle))
                {
                    let keys = match url.fetch(&jobs.connector).await {
                        Ok(keys) => keys,
                        Err(e) => {
                            tracing::warn!("jobs: schedule {}: keys-url: {e}", schedule.name);
                            fetched
                                .remove(&schedule.name)
                                .map(|(_, k)| k)
                                .unwrap_or_default()
                        }
                    };
                    fetched.insert(schedule.name.clone(), (Some(cycle), keys));
                    plans.remove(&schedule.name);
                    fired.forget(now, &snapshot.config.jobs.schedules);
                }
            }
            let plan = plans.entry(schedule.name.clone()).or_insert_with(|| {
                let dynamic = fetched.get(&schedule.name).map(|(_, k)| k.as_slice());
                let keys = schedule.keys.iter().chain(dynamic.unwrap_or_default());
                Plan::new(schedule, keys.map(String::as_str))
            });
            // Remembered as fired whatever the lock says: taken here, by another node, or
            // lost to a store error, the instant is gone either way.
            for (at, key) in fired.due(&schedule.name, plan, last, now) {
                // Named by the instant: every node running this plan takes the same lock.
                let lock = format!("schedule\u{0}{}\u{0}{key}\u{0}{at}", schedule.name);
                match jobs.store.try_lock(&lock, schedule.every).await {
                    Ok(true) => fire(&shared, &jobs, schedule, key).await,
                    Ok(false) => {}
                    Err(e) => tracing::warn!("jobs: schedule {}: {e}", schedule.name),
                }
            }
        }
        last = now;
    }
}

/// Fetched key `lists` after a reload from `before` to `after`: a list from a URL its
/// schedule no longer names is dropped, and a new URL is fetched at once rather than at the
/// next interval.
fn reloaded(
    lists: &mut HashMap<String, (Option<u64>, Vec<String>)>,
    before: Option<&Snapshot>,
    after: &Snapshot,
) {
    let url = |snapshot: &Snapshot, name: &str| {
        let schedules = &snapshot.config.jobs.schedules;
        let schedule = schedules.iter().find(|s| s.name == name);
        schedule.and_then(|s| s.keys_url.clone())
    };
    lists.retain(|name, _| url(after, name).is_some());
    for (name, (cycle, _)) in lists.iter_mut() {
        if before.and_then(|b| url(b, name)) != url(after, name) {
            *cycle = None;
        }
    }
}

/// Enqueues the job of `key`.
async fn fire(shared: &Shared, jobs: &Jobs, schedule: &Schedule, key: &str) {
    let snapshot = shared.snapshot.load_full();
    let target = schedule.path.replace("{key}", key);
    let Some(route) = snapshot
        .routes
        .routes()
        .iter()
        .find(|r| *r.name == *schedule.route)
    else {
        return;
    };
    let Some(offload) = &route.offload else {
        return;
    };
    let segments: Vec<&str> = path_segments(&target).collect();
    let params = route.template.matches(&segments).unwrap_or_default();
    let job = NewJob {
        route: schedule.route.clone(),
        method: schedule.method.as_str().to_string(),
        target,
        headers: vec![(
            format!("{}schedule", crate::headers::INTERNAL_PREFIX),
            schedule.name.clone(),
        )],
        body: Vec::new(),
        dedup: offload.key.as_ref().map(|k| k.render(&params)),
        idempotency_key: None,
    }
    .queued();
    match jobs
        .store
        .enqueue(job, super::http::dedup_ttl(offload))
        .await
    {
        Ok(Enqueued::New(_)) => {
            jobs.metrics.job_enqueued(&schedule.route);
            jobs.wake.notify_one();
        }
        Ok(Enqueued::Deduplicated(_)) => jobs.metrics.job_deduplicated(&schedule.route),
        Ok(_) => {}
        Err(e) => tracing::warn!("jobs: schedule {} key {key}: {e}", schedule.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    fn schedule(every: Duration, slots: u32) -> Schedule {
        Schedule {
            name: "refresh".into(),
            route: "r".into(),
            method: Method::POST,
            path: "/courses/{key}/manual_update".into(),
            every,
            slots: NonZeroU32::new(slots).unwrap(),
            keys: Vec::new(),
            keys_url: None,
        }
    }

    fn keys(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|k| format!("course-{k}")).collect()
    }

    fn plan(every: Duration, slots: u32, keys: &[String]) -> Plan {
        Plan::new(&schedule(every, slots), keys.iter().map(String::as_str))
    }

    fn offsets(plan: &Plan) -> HashMap<&str, u64> {
        plan.keys()
            .iter()
            .map(|(at, k)| (k.as_str(), *at))
            .collect()
    }

    /// 6,000 keys over 60 equal parts of the interval: every part within 25% of the mean
    /// (100). Prints the histogram (`cargo test --lib schedule -- --nocapture`).
    #[test]
    fn keys_spread_evenly_over_the_interval() {
        let p = plan(Duration::from_secs(3600), 60, &keys(0..6000));
        let histogram = p.histogram(NonZeroU32::new(60).unwrap());
        for (i, n) in histogram.iter().enumerate() {
            println!("part {i:2} {n:4} {}", "#".repeat(*n as usize / 4));
        }
        assert_eq!(histogram.iter().sum::<u32>(), 6000);
        let (min, max) = (histogram.iter().min(), histogram.iter().max());
        assert!(
            min >= Some(&75) && max <= Some(&125),
            "{min:?}..{max:?}: {histogram:?}"
        );
    }

    /// Keys that differ only in their last characters do not bunch up: over 6,000 parts of
    /// 0.6 s, the busiest holds a handful (raw FNV-1a's top bits put ten neighbours in one).
    #[test]
    fn neighbouring_keys_do_not_fire_together() {
        let p = plan(Duration::from_secs(3600), 60, &keys(0..6000));
        let fine = p.histogram(NonZeroU32::new(6000).unwrap());
        let busiest = fine.iter().max().copied().unwrap_or(0);
        assert!(busiest <= 8, "{busiest} keys within 0.6 s");
    }

    #[test]
    fn a_key_keeps_its_offset_when_slots_or_other_keys_change() {
        let every = Duration::from_secs(3600);
        let base = plan(every, 60, &keys(0..1000));
        let before = offsets(&base);
        for changed in [
            plan(every, 61, &keys(0..1000)),
            plan(every, 30, &keys(0..1000)),
            plan(every, 61, &keys(0..1100)),
            plan(every, 30, &keys(300..900)),
        ] {
            for (key, at) in offsets(&changed) {
                if let Some(old) = before.get(key) {
                    assert_eq!(*old, at, "{key} moved");
                }
            }
        }
        // Not a degenerate placement: the keys are all over the interval.
        let spread: std::collections::BTreeSet<u64> =
            before.values().map(|at| at / 60_000).collect();
        assert_eq!(spread.len(), 60);
    }

    #[test]
    fn doubling_every_doubles_each_offset() {
        let keys = keys(0..1000);
        let hourly = offsets(&plan(Duration::from_secs(3600), 60, &keys))
            .into_iter()
            .map(|(k, at)| (k.to_string(), at))
            .collect::<HashMap<_, _>>();
        let two_hourly = plan(Duration::from_secs(7200), 60, &keys);
        for (at, key) in two_hourly.keys() {
            let once = hourly[key.as_str()];
            // Offsets are rounded down to the millisecond, so doubling may gain that one.
            assert!(
                (2 * once..=2 * once + 1).contains(at),
                "{key}: {once} ms in 1 h, {at} ms in 2 h"
            );
        }
        assert_eq!(
            offset("refresh", "course-7", Duration::from_secs(3600)),
            offset("refresh", "course-7", Duration::from_secs(3600)),
        );
    }

    /// Every key fires once per interval, exactly `every` apart, whatever the ticks.
    #[test]
    fn consecutive_fires_of_a_key_are_exactly_every_apart() {
        let p = plan(Duration::from_secs(3600), 10, &keys(0..500));
        let whole = p.due(10 * HOUR, 20 * HOUR);
        // The same window walked in uneven ticks: no instant lost or doubled between ticks.
        let mut ticked = Vec::new();
        let mut at = 10 * HOUR;
        for step in [1, 99, 12_345, HOUR - 7, 3, HOUR / 3].into_iter().cycle() {
            let until = (at + step).min(20 * HOUR);
            ticked.extend(p.due(at, until));
            at = until;
            if at == 20 * HOUR {
                break;
            }
        }
        assert_eq!(whole, ticked);
        let mut by_key: HashMap<&str, Vec<u64>> = HashMap::new();
        for (at, key) in whole {
            by_key.entry(key).or_default().push(at);
        }
        assert_eq!(by_key.len(), 500);
        for (key, fires) in by_key {
            assert_eq!(fires.len(), 10, "{key}: {fires:?}");
            assert!(
                fires.windows(2).all(|w| w[1] - w[0] == HOUR),
                "{key}: {fires:?}"
            );
            assert_eq!(fires[0] % HOUR, p.offset_of(key).unwrap());
        }
    }

    /// Runs the scheduler's decisions over `(from, to]` in uneven ticks, plan `a` up to
    /// `reload` and plan `b` after it; each key's fires. It forgets after every tick (the
    /// loop does on reloads and new key lists), so what it forgets must never matter.
    fn across_reload(
        a: &Plan,
        b: &Plan,
        from: u64,
        reload: u64,
        to: u64,
    ) -> HashMap<String, Vec<u64>> {
        let mut fired = Fired::default();
        let named = schedule(Duration::from_secs(1), 1);
        let mut fires: HashMap<String, Vec<u64>> = HashMap::new();
        let mut at = from;
        for step in [1, 99, 12_345, HOUR - 7, 3, HOUR / 3, 777_777]
            .into_iter()
            .cycle()
        {
            let (plan, end) = if at < reload { (a, reload) } else { (b, to) };
            let until = (at + step).min(end);
            for (t, key) in fired.due("refresh", plan, at, until) {
                fires.entry(key.to_string()).or_default().push(t);
            }
            fired.forget(until, std::slice::from_ref(&named));
            at = until;
            if at == to {
                return fires;
            }
        }
        unreachable!()
    }

    /// A reload that changes `every` (and `slots`, and the keys) fires no key twice in an
    /// interval and makes none skip one: every gap is at least the shorter interval, each key
    /// takes the first instant of its new plan that is not too soon, and from there it fires
    /// exactly once per new interval. Every fire is an instant of the plan in force.
    #[test]
    fn a_reload_neither_fires_a_key_twice_in_an_interval_nor_skips_one() {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        let old_keys = keys(0..2000);
        let new_keys = keys(100..2100);
        for (old_every, new_every, slots) in [
            (minutes(60), minutes(120), (60, 60)),
            (minutes(120), minutes(60), (60, 61)),
            (minutes(60), minutes(90), (60, 30)),
            (minutes(90), minutes(60), (60, 60)),
            (minutes(60), minutes(25), (60, 60)),
            (minutes(60), minutes(60), (60, 30)),
        ] {
            let a = plan(old_every, slots.0, &old_keys);
            let b = plan(new_every, slots.1, &new_keys);
            let (ea, eb) = (a.every_ms(), b.every_ms());
            let shorter = ea.min(eb);
            let case = format!("{ea} ms -> {eb} ms");
            for reload in [10 * HOUR + 1_234_567, 13 * HOUR, 17 * HOUR + 2_999_999] {
                let to = reload + 6 * ea.max(eb);
                let fires = across_reload(&a, &b, 5 * HOUR, reload, to);
                let mut held_back = 0;
                for key in old_keys.iter().chain(&new_keys) {
                    let at = fires.get(key).map(Vec::as_slice).unwrap_or_default();
                    let (before, after): (Vec<u64>, Vec<u64>) =
                        at.iter().partition(|t| **t <= reload);
                    let (oa, ob) = (a.offset_of(key), b.offset_of(key));
                    assert!(
                        before.iter().all(|t| oa == Some(t % ea)),
                        "{case}: {key} fired off plan a: {at:?}"
                    );
                    assert!(
                        after.iter().all(|t| ob == Some(t % eb)),
                        "{case}: {key} fired off plan b: {at:?}"
                    );
                    assert!(
                        at.windows(2).all(|w| w[1] - w[0] >= shorter),
                        "{case}: {key} fired twice in an interval: {at:?}"
                    );
                    let Some(ob) = ob else {
                        continue; // removed by the reload: no fire after it (checked above)
                    };
                    // The first instant of plan b after the reload that is not too soon.
                    let mut expected = b.next_fire(ob, reload);
                    if let Some(last) = before.last() {
                        held_back += usize::from(expected - last < shorter);
                        while expected - last < shorter {
                            expected += eb;
                        }
                        assert!(expected - last < ea + eb, "{case}: {key}");
                    }
                    assert_eq!(after.first(), Some(&expected), "{case}: {key}: {at:?}");
                    assert!(
                        after.windows(2).all(|w| w[1] - w[0] == eb),
                        "{case}: {key} skipped an interval: {after:?}"
                    );
                    assert_eq!(
                        after.len() as u64,
                        (to - expected) / eb + 1,
                        "{case}: {key}: {after:?}"
                    );
                }
                // The cases exercise the rule: with a new `every`, some keys' first new
                // instant came too soon after their last fire; with the same, none.
                if ea == eb {
                    assert_eq!(held_back, 0, "{case}");
                } else {
                    assert!(held_back > 0, "{case}: nothing was held back");
                }
            }
        }
    }

    #[test]
    fn the_next_fire_is_the_first_instant_after_now() {
        let p = plan(Duration::from_secs(3600), 60, &keys(0..1));
        assert_eq!(p.next_fire(600_000, 10 * HOUR), 10 * HOUR + 600_000);
        assert_eq!(
            p.next_fire(600_000, 10 * HOUR + 600_000),
            11 * HOUR + 600_000
        );
        assert_eq!(p.next_fire(0, 10 * HOUR), 11 * HOUR);
    }

    #[test]
    fn times_print_as_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_732_270_000_123), "2024-11-22T10:06:40.123Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn keys_urls_are_plain_http() {
        let resolve = |s: &str| s.parse::<SocketAddr>().map_err(|e| e.to_string());
        let url = KeysUrl::parse("http://127.0.0.1:3000/courses.json?all=1", resolve).unwrap();
        assert_eq!(url.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(
            (url.host.as_str(), url.path.as_str()),
            ("127.0.0.1:3000", "/courses.json?all=1")
        );
        assert!(KeysUrl::parse("https://127.0.0.1/x", resolve).is_err());
    }
}
