//! Durable jobs: slow endpoints answered with `202 Accepted` at once and replayed to the app
//! later, bounded and spread over time, never lost.
//!
//! - [`store`]: what a job is and the [`JobStore`] contract; [`embedded`] (redb, one file,
//!   the default) and [`redis`] (Streams + consumer group, for several nodes) keep it.
//! - [`http`]: the request side: enqueue an offload route's request, the 202, and
//!   `GET`/`DELETE /_frontdoor/jobs/<id>`.
//! - [`worker`]: the background service that claims due jobs and replays them through the
//!   route's pool, within per-route concurrency and a per-pool rate ([`limit`]), with
//!   full-jitter retries.
//! - [`schedule`]: config entries that refresh a set of keys every interval, each key at
//!   its own hashed position in it.

pub mod embedded;
pub mod http;
pub mod limit;
pub mod redis;
pub mod rules;
pub mod schedule;
pub mod store;
pub mod worker;

pub use store::{Job, JobState, JobStore, StoreError};

use ::http::HeaderName;
use pingora::connectors::http::Connector;
use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::template::Params;

/// The path prefix of job status URLs, answered by frontdoor before routing.
pub const STATUS_PREFIX: &str = "/_frontdoor/jobs/";

/// `[routes.offload]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffloadRoute {
    /// Dedup key template (`{id}`): one active job per rendered key.
    pub key: Option<KeyTemplate>,
    /// Larger request bodies are refused with 413.
    pub max_body: u64,
    /// The app's answer is kept up to this many bytes.
    pub max_result_size: u64,
    /// Replays of this route running at once on one node.
    pub concurrency: NonZeroUsize,
    /// Longest wait for each read of a replay's answer.
    pub timeout: Duration,
    /// Replays before a job fails.
    pub max_attempts: NonZeroU32,
    /// First retry delay bound; doubles per attempt (full jitter).
    pub backoff: Duration,
    /// Cap of the retry delay bound.
    pub max_backoff: Duration,
    /// How long a finished job stays readable.
    pub keep: Duration,
    /// The `Retry-After` of the 202 and the refresh of the status page.
    pub retry_after: Duration,
    /// Request header fields stored with the job (lowercase).
    pub headers: Vec<HeaderName>,
}

/// A dedup key template: literal text and `{param}` references to the route's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    parts: Vec<KeyPart>,
}

/// A piece of a [`KeyTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyPart {
    Literal(String),
    Param(String),
}

impl KeyTemplate {
    /// Parses `text`; every `{name}` must be in `known`.
    pub fn parse(text: &str, known: impl Fn(&str) -> bool) -> Result<Self, String> {
        if text.is_empty() {
            return Err("an empty key would put every request in one job".to_string());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("`{text}`: unclosed `{{`"))?;
            let name = &after[..close];
            if !known(name) {
                return Err(format!(
                    "`{{{name}}}` is not a parameter of the route's path"
                ));
            }
            parts.push(KeyPart::Literal(rest[..open].to_string()));
            parts.push(KeyPart::Param(name.to_string()));
            rest = &after[close + 1..];
        }
        parts.push(KeyPart::Literal(rest.to_string()));
        parts.retain(|p| p != &KeyPart::Literal(String::new()));
        Ok(KeyTemplate { parts })
    }

    /// The key for a request's captured `params`, in one pass over the template: a captured
    /// value is never read as a template itself. (Substituting `{name}` by `{name}` in turn
    /// let a path segment holding `{title}` pull in another parameter, colliding keys, and
    /// one repeating `{title}` in a key that names it several times grow exponentially:
    /// found by the `route` fuzz target running out of memory.)
    pub fn render(&self, params: &Params) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                KeyPart::Literal(text) => out.push_str(text),
                KeyPart::Param(name) => out.push_str(
                    params
                        .iter()
                        .find(|(n, _)| n.as_ref() == name)
                        .map_or("", |(_, v)| v.as_str()),
                ),
            }
        }
        out
    }
}

/// Where jobs are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// One redb file.
    Embedded {
        /// The file (relative paths resolved against the config file's folder).
        path: PathBuf,
    },
    /// A Redis server shared by several nodes.
    Redis {
        /// `redis://host:port/db`.
        url: String,
        /// Prefix of every key.
        prefix: String,
    },
}

/// A replay rate: `per_second` on average, at most `burst` at once (GCRA).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Replays per second.
    pub per_second: f64,
    /// Replays that may start back to back.
    pub burst: NonZeroU32,
}

impl Eq for Rate {}

/// `[jobs]`, validated. Fixed at start, except rates and schedules, which reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsSettings {
    /// The store.
    pub store: StoreSettings,
    /// A running job whose node stops touching it for this long runs elsewhere (Redis).
    pub visibility_timeout: Duration,
    /// How often idle workers look for due jobs (they are also woken by enqueues here).
    pub poll_interval: Duration,
    /// Replay rate per pool; pools without one are bounded by route concurrency only.
    pub rates: BTreeMap<String, Rate>,
    /// Schedules.
    pub schedules: Vec<schedule::Schedule>,
}

/// The brake of the admission controller: replays are the lowest priority traffic, so they
/// wait while it reports the pool overloaded (`admission::Controllers` implements it; pools
/// without admission never brake).
pub trait Brake: Send + Sync {
    /// Whether replays to `pool` should wait now.
    fn overloaded(&self, pool: &str) -> bool;
}

/// A brake that never engages.
#[derive(Debug, Default)]
pub struct NoBrake;

impl Brake for NoBrake {
    fn overloaded(&self, _pool: &str) -> bool {
        false
    }
}

/// The job system of one process: the store and what both sides share.
pub struct Jobs {
    /// Durable storage.
    pub store: Arc<dyn JobStore>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Wakes idle workers after an enqueue on this node.
    pub wake: Notify,
    /// Replays wait while this says the pool is overloaded.
    pub brake: Arc<dyn Brake>,
    /// Upstream connections for replays.
    pub connector: Connector,
    /// Settings fixed at start.
    pub settings: JobsSettings,
}

impl Jobs {
    /// Opens the store of `settings`; replays never brake.
    pub fn open(settings: &JobsSettings, metrics: Arc<Metrics>) -> Result<Arc<Jobs>, StoreError> {
        Jobs::open_with_brake(settings, metrics, Arc::new(NoBrake))
    }

    /// Opens the store of `settings`; replays to a pool wait while `brake` says it is
    /// overloaded (the hook for the admission controller).
    pub fn open_with_brake(
        settings: &JobsSettings,
        metrics: Arc<Metrics>,
        brake: Arc<dyn Brake>,
    ) -> Result<Arc<Jobs>, StoreError> {
        let store: Arc<dyn JobStore> = match &settings.store {
            StoreSettings::Embedded { path } => Arc::new(embedded::EmbeddedStore::open(path)?),
            StoreSettings::Redis { url, prefix } => Arc::new(redis::RedisStore::new(
                url,
                prefix,
                settings.visibility_timeout,
            )?),
        };
        Ok(Arc::new(Jobs {
            store,
            metrics,
            wake: Notify::new(),
            brake,
            connector: Connector::new(None),
            settings: settings.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_templates_render_route_parameters() {
        let t = KeyTemplate::parse("course-{id}", |n| n == "id").unwrap();
        let params: Params = vec![(Arc::from("id"), "mit/physics".to_string())];
        assert_eq!(t.render(&params), "course-mit/physics");
        assert!(KeyTemplate::parse("{nope}", |n| n == "id").is_err());
        assert!(KeyTemplate::parse("{id", |_| true).is_err());
    }

    #[test]
    fn captured_values_are_not_read_as_templates() {
        let t = KeyTemplate::parse("{school}/{title}", |_| true).unwrap();
        let injected: Params = vec![
            (Arc::from("school"), "{title}".to_string()),
            (Arc::from("title"), "x".to_string()),
        ];
        assert_eq!(t.render(&injected), "{title}/x");
        let repeated = KeyTemplate::parse(&"{t}".repeat(20), |_| true).unwrap();
        let value: Params = vec![(Arc::from("t"), "{t}{t}".to_string())];
        assert_eq!(repeated.render(&value).len(), 20 * 6);
    }
}
