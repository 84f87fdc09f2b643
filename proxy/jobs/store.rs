//! What a job is, and the [`JobStore`] contract both stores keep.
//!
//! A store makes enqueueing atomic with deduplication and idempotency, hands each due job to
//! one worker at a time (`claim`), and gives a job back to the queue when its worker is lost:
//! the embedded store at restart, Redis after the visibility timeout. Delivery is therefore
//! at least once; the app sees the job id as `Idempotency-Key` to make a second run harmless.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the one clock stores and nodes share.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A fresh job id: 128 random bits, 32 lowercase hex digits.
pub fn new_job_id() -> String {
    let bits: u128 = rand::random();
    format!("{bits:032x}")
}

/// Whether `text` has the shape of a job id (checked before any store lookup).
pub fn is_job_id(text: &str) -> bool {
    text.len() == 32
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker (or for its retry time).
    Queued,
    /// A worker is replaying it.
    Running,
    /// The app answered (any status but a retried 502/503/504).
    Done,
    /// Out of attempts, or a failure that is not retried.
    Failed,
    /// Cancelled while queued.
    Cancelled,
}

impl JobState {
    /// Queued or running: the states that hold a dedup key.
    pub fn is_active(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }
}

/// The app's answer to a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// Status code.
    pub status: u16,
    /// Header fields, in order.
    pub headers: Vec<(String, String)>,
    /// The body (at most the route's `max-result-size`).
    #[serde(with = "hex_bytes")]
    pub body: Vec<u8>,
    /// Whether the body was cut at `max-result-size`.
    pub truncated: bool,
}

/// One stored request and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// 128-bit random id, hex.
    pub id: String,
    /// The offload route that took it (the `route` label).
    pub route: String,
    /// Method of the stored request.
    pub method: String,
    /// Path and query of the stored request.
    pub target: String,
    /// The selected request header fields.
    pub headers: Vec<(String, String)>,
    /// The request body.
    #[serde(with = "hex_bytes")]
    pub body: Vec<u8>,
    /// The rendered dedup key, if the route has one.
    pub dedup: Option<String>,
    /// The client's `Idempotency-Key`, if sent.
    pub idempotency_key: Option<String>,
    /// Hash of method, target and body: what "the same payload" means.
    pub fingerprint: String,
    /// Where it is.
    pub state: JobState,
    /// Replays started so far.
    pub attempt: u32,
    /// When it was acknowledged (ms since the epoch).
    pub enqueued_ms: u64,
    /// Not to be claimed before this (retry backoff).
    pub due_ms: u64,
    /// When it reached done, failed or cancelled.
    pub finished_ms: Option<u64>,
    /// The app's answer once done.
    pub result: Option<JobResult>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Store-private handle of a claimed job (the Redis stream entry); never persisted.
    #[serde(skip)]
    pub lease: Option<String>,
}

/// A request about to become a job: what the offload route (or a schedule) stored of it.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The offload route (the `route` label).
    pub route: String,
    /// Method of the stored request.
    pub method: String,
    /// Path and query of the stored request.
    pub target: String,
    /// The selected request header fields.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
    /// The rendered dedup key, if the route has one.
    pub dedup: Option<String>,
    /// The client's `Idempotency-Key`, if sent.
    pub idempotency_key: Option<String>,
}

impl NewJob {
    /// The job, queued now under a fresh id; its fingerprint (what "the same payload" means
    /// for `Idempotency-Key`) hashes method, target and body.
    pub fn queued(self) -> Job {
        let now = now_ms();
        let fingerprint = format!(
            "{:016x}",
            fnv1a(&[self.method.as_bytes(), self.target.as_bytes(), &self.body])
        );
        Job {
            id: new_job_id(),
            route: self.route,
            method: self.method,
            target: self.target,
            headers: self.headers,
            body: self.body,
            dedup: self.dedup,
            idempotency_key: self.idempotency_key,
            fingerprint,
            state: JobState::Queued,
            attempt: 0,
            enqueued_ms: now,
            due_ms: now,
            finished_ms: None,
            result: None,
            last_error: None,
            lease: None,
        }
    }
}

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored durably as a new job.
    New(Job),
    /// An active job with the same dedup key already exists.
    Deduplicated(Job),
    /// The same `Idempotency-Key` and payload were sent before: that job.
    Replayed(Job),
    /// The same `Idempotency-Key` came with a different payload.
    Conflict,
}

/// What `cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// It was queued and will not run.
    Cancelled,
    /// It is running or finished: too late.
    TooLate(JobState),
    /// No such job.
    Unknown,
}

/// How a claimed job ended this attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// The app answered.
    Done(JobResult),
    /// Try again at `due_ms`.
    Retry {
        /// Not before this.
        due_ms: u64,
        /// What went wrong.
        error: String,
    },
    /// No more attempts.
    Failed(String),
}

/// Queue depth for the gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Jobs queued (due or waiting to retry).
    pub queued: u64,
    /// Jobs running.
    pub running: u64,
    /// Enqueue time of the oldest queued job.
    pub oldest_enqueued_ms: Option<u64>,
}

/// A store failure; the request side answers 503, the worker side retries later.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded database failed.
    #[error("embedded store: {0}")]
    Embedded(Box<redb::Error>),
    /// Redis failed or is unreachable.
    #[error("redis store: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored record did not decode.
    #[error("corrupt job record: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// A blocking task died.
    #[error("store task: {0}")]
    Task(String),
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Embedded(Box::new(e))
    }
}

/// Durable job storage. Every method is one atomic step.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Stores `job` unless its dedup key or idempotency key names an existing job; returns
    /// only once the new job is durable. `dedup_ttl` bounds how long a dedup key can outlive a
    /// lost job.
    async fn enqueue(&self, job: Job, dedup_ttl: Duration) -> Result<Enqueued, StoreError>;
    /// The job `id`, if known.
    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError>;
    /// Cancels `id` if it is queued.
    async fn cancel(&self, id: &str) -> Result<Cancelled, StoreError>;
    /// The oldest due queued job whose route is in `routes`, now marked running with its
    /// attempt counted.
    async fn claim(&self, routes: &[String], now_ms: u64) -> Result<Option<Job>, StoreError>;
    /// Says the worker of `job` is alive (extends its lease where leases exist).
    async fn touch(&self, job: &Job) -> Result<(), StoreError>;
    /// Records how the attempt of a claimed `job` ended; `keep` is how long a finished job
    /// stays readable.
    async fn finish(&self, job: &Job, finish: Finish, keep: Duration) -> Result<Job, StoreError>;
    /// Queued and running jobs, oldest first, at most `limit`.
    async fn active(&self, limit: usize) -> Result<Vec<Job>, StoreError>;
    /// Counts for the gauges.
    async fn depth(&self) -> Result<Depth, StoreError>;
    /// Takes the named lock for `ttl` if nobody holds it (one node fires a schedule slot).
    async fn try_lock(&self, name: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Forgets finished jobs whose keep time has passed.
    async fn purge(&self, now_ms: u64) -> Result<usize, StoreError>;
}

/// A stored job record (JSON, as both stores keep it) back into a [`Job`]. The bytes come
/// from a file or a Redis server that other processes write too: anything that is not a
/// record is an error, never a panic.
pub fn decode_record(bytes: &[u8]) -> Result<Job, StoreError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// A [`Job`] as the stores keep it.
pub fn encode_record(job: &Job) -> Result<Vec<u8>, StoreError> {
    Ok(serde_json::to_vec(job)?)
}

/// FNV-1a 64 over `parts` (separated), as 16 hex digits: payload fingerprints and slot hashes.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hash ^= 0xff;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Bytes as a hex string in JSON records.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_128_bit_hex_and_distinct() {
        let (a, b) = (new_job_id(), new_job_id());
        assert!(is_job_id(&a) && is_job_id(&b), "{a} {b}");
        assert_ne!(a, b);
        assert!(!is_job_id("../etc/passwd"));
        assert!(!is_job_id(&a.to_uppercase()));
    }

    #[test]
    fn records_round_trip_through_json() {
        let job = Job {
            id: new_job_id(),
            route: "r".into(),
            method: "POST".into(),
            target: "/x?y=1".into(),
            headers: vec![("content-type".into(), "text/plain".into())],
            body: vec![0, 1, 255],
            dedup: Some("42".into()),
            idempotency_key: None,
            fingerprint: "f".into(),
            state: JobState::Queued,
            attempt: 0,
            enqueued_ms: 1,
            due_ms: 1,
            finished_ms: None,
            result: None,
            last_error: None,
            lease: Some("not kept".into()),
        };
        let text = serde_json::to_vec(&job).unwrap();
        let back: Job = serde_json::from_slice(&text).unwrap();
        assert_eq!(back, Job { lease: None, ..job });
    }
}
