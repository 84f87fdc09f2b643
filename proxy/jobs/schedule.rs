//! Schedules: refresh a set of keys every interval, spread evenly over it.
//!
//! The interval is cut into `slots`; key `k` of schedule `s` fires in slot
//! `hash(s, k) mod slots`, at a jitter inside the slot that is itself a hash of the cycle
//! number. Every node computes the same instants, and a store lock per (schedule, key, cycle)
//! lets exactly one node enqueue each. A key keeps its slot when other keys come and go, and
//! only about `1/slots` of the keys move when the slot count changes by one.
//!
//! The keys are a static list, or the JSON list (strings or numbers) a URL answers, fetched
//! again at the start of every interval; when a fetch fails the previous list is kept.
//!
//! A fired key becomes an ordinary job of the schedule's offload route (dedup included: a
//! refresh still queued or running is not queued twice).

use http::Method;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use super::store::{fnv1a, now_ms, Enqueued, NewJob};
use super::Jobs;
use crate::routing::path_segments;
use crate::snapshot::Shared;

/// `[[jobs.schedules]]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Unique name (part of the slot hash).
    pub name: String,
    /// The offload route its jobs belong to.
    pub route: String,
    /// Method of each request.
    pub method: Method,
    /// Path with `{key}` where the key goes (must match the route's template).
    pub path: String,
    /// Each key fires once per `every`.
    pub every: Duration,
    /// Slots per interval.
    pub slots: NonZeroU32,
    /// The static keys.
    pub keys: Vec<String>,
    /// Where the keys are fetched from instead, each interval.
    pub keys_url: Option<KeysUrl>,
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

    /// GETs the list.
    async fn fetch(&self, connector: &Connector) -> Result<Vec<String>, String> {
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

/// The slot of `key` in schedule `name`.
pub fn slot(name: &str, key: &str, slots: NonZeroU32) -> u32 {
    // The remainder is below `slots`, so it fits.
    u32::try_from(fnv1a(&[name.as_bytes(), key.as_bytes()]) % u64::from(slots.get())).unwrap_or(0)
}

/// When `key` fires within cycle `cycle`, as an offset from the cycle's start.
pub fn offset(name: &str, key: &str, cycle: u64, every: Duration, slots: NonZeroU32) -> Duration {
    let every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
    let slot_ms = (every_ms / u64::from(slots.get())).max(1);
    let jitter = fnv1a(&[name.as_bytes(), key.as_bytes(), &cycle.to_be_bytes()]) % slot_ms;
    Duration::from_millis(u64::from(slot(name, key, slots)) * slot_ms + jitter)
}

/// The fire instants (ms since the epoch) of `key` in `(after, until]`.
pub fn due(schedule: &Schedule, key: &str, after: u64, until: u64) -> Vec<(u64, u64)> {
    let every = u64::try_from(schedule.every.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let first = (after / every).saturating_sub(1);
    (first..=until / every)
        .filter_map(|cycle| {
            let off = offset(&schedule.name, key, cycle, schedule.every, schedule.slots);
            let at = cycle * every + u64::try_from(off.as_millis()).unwrap_or(0);
            (after < at && at <= until).then_some((cycle, at))
        })
        .collect()
}

/// Fires due keys of every schedule of the current config until the task is aborted.
pub async fn run(shared: Arc<Shared>, jobs: Arc<Jobs>) {
    let mut last = now_ms();
    // Fetched key lists by schedule name, with the interval they were fetched for.
    let mut fetched: HashMap<String, (u64, Vec<String>)> = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = now_ms();
        let snapshot = shared.snapshot.load_full();
        for schedule in &snapshot.config.jobs.schedules {
            if let Some(url) = &schedule.keys_url {
                let every = u64::try_from(schedule.every.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let cycle = now / every;
                if fetched.get(&schedule.name).is_none_or(|(c, _)| *c != cycle) {
                    match url.fetch(&jobs.connector).await {
                        Ok(keys) => {
                            fetched.insert(schedule.name.clone(), (cycle, keys));
                        }
                        Err(e) => {
                            tracing::warn!("jobs: schedule {}: keys-url: {e}", schedule.name);
                            let old = fetched.remove(&schedule.name).map(|(_, k)| k);
                            fetched.insert(schedule.name.clone(), (cycle, old.unwrap_or_default()));
                        }
                    }
                }
            }
            let dynamic = fetched.get(&schedule.name).map(|(_, k)| k.as_slice());
            for key in schedule.keys.iter().chain(dynamic.unwrap_or_default()) {
                for (cycle, _) in due(schedule, key, last, now) {
                    let lock = format!("schedule\u{0}{}\u{0}{key}\u{0}{cycle}", schedule.name);
                    match jobs.store.try_lock(&lock, schedule.every).await {
                        Ok(true) => fire(&shared, &jobs, schedule, key).await,
                        Ok(false) => {}
                        Err(e) => tracing::warn!("jobs: schedule {}: {e}", schedule.name),
                    }
                }
            }
        }
        last = now;
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

    fn schedule(keys: usize, slots: u32) -> Schedule {
        Schedule {
            name: "refresh".into(),
            route: "r".into(),
            method: Method::POST,
            path: "/courses/{key}/manual_update".into(),
            every: Duration::from_secs(3600),
            slots: NonZeroU32::new(slots).unwrap(),
            keys: (0..keys).map(|k| format!("course-{k}")).collect(),
            keys_url: None,
        }
    }

    /// 6,000 keys over 60 slots: every slot within 25% of the mean (100). Prints the
    /// histogram (`cargo test --lib schedule -- --nocapture`).
    #[test]
    fn keys_spread_evenly_over_the_slots() {
        let s = schedule(6000, 60);
        let mut histogram = vec![0u32; 60];
        for key in &s.keys {
            histogram[slot(&s.name, key, s.slots) as usize] += 1;
        }
        for (i, n) in histogram.iter().enumerate() {
            println!("slot {i:2} {n:4} {}", "#".repeat(*n as usize / 4));
        }
        let (min, max) = (histogram.iter().min(), histogram.iter().max());
        assert!(
            min >= Some(&75) && max <= Some(&125),
            "{min:?}..{max:?}: {histogram:?}"
        );
    }

    #[test]
    fn slots_are_stable_when_keys_or_slot_count_change_a_little() {
        let s = schedule(1000, 60);
        let bigger = schedule(1100, 60);
        for key in &s.keys {
            assert_eq!(
                slot(&s.name, key, s.slots),
                slot(&bigger.name, key, bigger.slots)
            );
        }
        // Fire instants are the same on every node: a pure function of name, key and cycle.
        let at = offset("refresh", "course-7", 42, s.every, s.slots);
        assert_eq!(at, offset("refresh", "course-7", 42, s.every, s.slots));
        assert!(at < s.every);
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

    #[test]
    fn each_key_is_due_once_per_interval() {
        let s = schedule(50, 10);
        let every = 3_600_000u64;
        for key in &s.keys {
            let fired = due(&s, key, 10 * every, 13 * every);
            assert_eq!(fired.len(), 3, "{key}: {fired:?}");
            let cycles: Vec<u64> = fired.iter().map(|(c, _)| *c).collect();
            assert_eq!(cycles, vec![10, 11, 12]);
        }
        // Two consecutive windows never fire a key twice or miss it.
        let key = "course-3";
        let a = due(&s, key, 0, 5 * every + 1234);
        let b = due(&s, key, 5 * every + 1234, 9 * every);
        assert_eq!(a.len() + b.len(), 9);
    }
}
