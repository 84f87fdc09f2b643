//! The Redis store, for several nodes sharing work.
//!
//! - A job record is a string key (`P:job:<id>`, JSON); every state change is a
//!   compare-and-set of the whole record (a small Lua script), so cancel, claim and finish
//!   racing on two nodes never both win.
//! - Due jobs are entries of their route's stream (`P:stream:<route>`) read through the
//!   consumer group `workers`: each entry goes to one node, and a node reads only the streams
//!   of routes it has a free slot for. A node touches the entries of its running jobs
//!   (`XCLAIM ... JUSTID`) every third of the visibility timeout; a node that stops doing so
//!   (it crashed) loses them to `XAUTOCLAIM` on another node after the timeout.
//! - Retries wait in a sorted set per route (`P:delayed:<route>`) and move to the stream when
//!   due.
//! - Dedup keys (`P:dedup:<route>\0<key>`) and idempotency keys carry an expiry, so a lost
//!   job never blocks its key for ever; schedule locks are `SET NX PX`.
//! - `P:active` (sorted by enqueue time) lists queued and running jobs for the admin listing
//!   and the gauges; `P:running` is the set of running ones.
//!
//! A 202 means Redis has the job; how durable that is on disk is Redis's persistence
//! setting (`appendonly yes` with `appendfsync everysec` or `always`).

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::time::Duration;
use tokio::sync::OnceCell;

use super::store::{
    decode_record, now_ms, Cancelled, Depth, Enqueued, Finish, Job, JobState, JobStore, StoreError,
};

const GROUP: &str = "workers";

/// Atomic enqueue: an existing idempotency or dedup key wins; otherwise every key is written.
const ENQUEUE: &str = r#"
if KEYS[1] ~= '' then
  local existing = redis.call('GET', KEYS[1])
  if existing then return {'idempotent', existing} end
end
if KEYS[2] ~= '' then
  local existing = redis.call('GET', KEYS[2])
  if existing then return {'dedup', existing} end
end
if KEYS[1] ~= '' then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4]) end
if KEYS[2] ~= '' then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[4]) end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
redis.call('XADD', KEYS[4], '*', 'id', ARGV[1])
return {'new', ARGV[1]}
"#;

/// Compare-and-set of a whole record.
const CAS: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Moves due retries into the stream.
const PROMOTE: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], 0, ARGV[1], 'LIMIT', 0, 100)
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('XADD', KEYS[2], '*', 'id', id)
  end
end
return #ids
"#;

/// Deletes a key only if it still names this job.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// The Redis-backed store.
pub struct RedisStore {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    prefix: String,
    consumer: String,
    visibility: Duration,
    /// Streams whose consumer group this process has made sure of.
    groups: std::sync::Mutex<std::collections::HashSet<String>>,
}

type StreamEntries = Vec<(String, Vec<String>)>;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisStore {
    /// A store on `url` with keys under `prefix`; connects on first use.
    pub fn new(url: &str, prefix: &str, visibility: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
        let consumer = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
        Ok(RedisStore {
            client,
            connection: OnceCell::new(),
            prefix: prefix.to_string(),
            consumer,
            visibility,
            groups: std::sync::Mutex::new(std::collections::HashSet::new()),
        })
    }

    async fn con(&self) -> Result<ConnectionManager, StoreError> {
        let con = self
            .connection
            .get_or_try_init(|| self.client.get_connection_manager())
            .await?;
        Ok(con.clone())
    }

    /// Creates the consumer group of `stream` (from its first entry) unless it exists.
    async fn ensure_group(
        &self,
        con: &mut ConnectionManager,
        stream: &str,
    ) -> Result<(), StoreError> {
        let known = self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(stream);
        if known {
            return Ok(());
        }
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(con)
            .await;
        if let Err(e) = created {
            if e.code() != Some("BUSYGROUP") {
                return Err(e.into());
            }
        }
        self.groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(stream.to_string());
        Ok(())
    }

    fn stream(&self, route: &str) -> String {
        self.key(&format!("stream:{route}"))
    }

    fn delayed(&self, route: &str) -> String {
        self.key(&format!("delayed:{route}"))
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    fn job_key(&self, id: &str) -> String {
        self.key(&format!("job:{id}"))
    }

    fn scoped(&self, kind: &str, route: &str, key: &str) -> String {
        self.key(&format!("{kind}:{route}\u{0}{key}"))
    }

    async fn load(
        &self,
        con: &mut ConnectionManager,
        id: &str,
    ) -> Result<Option<(String, Job)>, StoreError> {
        let raw: Option<String> = con.get(self.job_key(id)).await?;
        match raw {
            Some(raw) => {
                let job = decode_record(raw.as_bytes())?;
                Ok(Some((raw, job)))
            }
            None => Ok(None),
        }
    }

    /// Replaces the record `old` of `job` with `job`; false if someone changed it first.
    async fn swap(
        &self,
        con: &mut ConnectionManager,
        old: &str,
        job: &Job,
    ) -> Result<bool, StoreError> {
        let new = serde_json::to_string(job)?;
        let swapped: i64 = Script::new(CAS)
            .key(self.job_key(&job.id))
            .arg(old)
            .arg(new)
            .invoke_async(con)
            .await?;
        Ok(swapped == 1)
    }

    async fn ack(
        &self,
        con: &mut ConnectionManager,
        stream: &str,
        entry: &str,
    ) -> Result<(), StoreError> {
        redis::pipe()
            .cmd("XACK")
            .arg(stream)
            .arg(GROUP)
            .arg(entry)
            .ignore()
            .cmd("XDEL")
            .arg(stream)
            .arg(entry)
            .ignore()
            .query_async::<()>(con)
            .await?;
        Ok(())
    }

    /// The next stream entry for this node: a stalled one first, then a new one.
    async fn next_entry(
        &self,
        con: &mut ConnectionManager,
        stream: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let (_, reclaimed, _): (String, StreamEntries, redis::Value) = redis::cmd("XAUTOCLAIM")
            .arg(stream)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(ms(self.visibility))
            .arg("0-0")
            .arg("COUNT")
            .arg(1)
            .query_async(con)
            .await?;
        let entry = match reclaimed.into_iter().next() {
            Some(entry) => Some(entry),
            None => {
                let read: Option<Vec<(String, StreamEntries)>> = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(&self.consumer)
                    .arg("COUNT")
                    .arg(1)
                    .arg("STREAMS")
                    .arg(stream)
                    .arg(">")
                    .query_async(con)
                    .await?;
                read.and_then(|streams| streams.into_iter().next())
                    .and_then(|(_, entries)| entries.into_iter().next())
            }
        };
        Ok(entry.and_then(|(entry, fields)| {
            let id = fields
                .chunks(2)
                .find(|f| f[0] == "id")
                .and_then(|f| f.get(1).cloned())?;
            Some((entry, id))
        }))
    }
}

#[async_trait]
impl JobStore for RedisStore {
    async fn enqueue(&self, job: Job, dedup_ttl: Duration) -> Result<Enqueued, StoreError> {
        let mut con = self.con().await?;
        let idem = job
            .idempotency_key
            .as_ref()
            .map_or(String::new(), |k| self.scoped("idem", &job.route, k));
        let dedup = job
            .dedup
            .as_ref()
            .map_or(String::new(), |k| self.scoped("dedup", &job.route, k));
        let (outcome, id): (String, String) = Script::new(ENQUEUE)
            .key(idem)
            .key(dedup)
            .key(self.job_key(&job.id))
            .key(self.stream(&job.route))
            .key(self.key("active"))
            .arg(&job.id)
            .arg(serde_json::to_string(&job)?)
            .arg(job.enqueued_ms)
            .arg(ms(dedup_ttl))
            .invoke_async(&mut con)
            .await?;
        if outcome == "new" {
            return Ok(Enqueued::New(job));
        }
        let existing = self.load(&mut con, &id).await?.map(|(_, j)| j);
        Ok(match (outcome.as_str(), existing) {
            ("idempotent", Some(e)) if e.fingerprint == job.fingerprint => Enqueued::Replayed(e),
            ("idempotent", _) => Enqueued::Conflict,
            (_, Some(e)) if e.state.is_active() => Enqueued::Deduplicated(e),
            // The holder vanished (its record expired): drop the stale key and try again.
            _ => {
                let key = self.scoped("dedup", &job.route, job.dedup.as_deref().unwrap_or(""));
                let _: i64 = Script::new(RELEASE)
                    .key(key)
                    .arg(&id)
                    .invoke_async(&mut con)
                    .await?;
                return Box::pin(self.enqueue(job, dedup_ttl)).await;
            }
        })
    }

    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let mut con = self.con().await?;
        Ok(self.load(&mut con, id).await?.map(|(_, j)| j))
    }

    async fn cancel(&self, id: &str) -> Result<Cancelled, StoreError> {
        let mut con = self.con().await?;
        loop {
            let Some((raw, mut job)) = self.load(&mut con, id).await? else {
                return Ok(Cancelled::Unknown);
            };
            if job.state != JobState::Queued {
                return Ok(Cancelled::TooLate(job.state));
            }
            job.state = JobState::Cancelled;
            job.finished_ms = Some(now_ms());
            if self.swap(&mut con, &raw, &job).await? {
                self.settle(&mut con, &job, Duration::from_secs(3600))
                    .await?;
                return Ok(Cancelled::Cancelled);
            }
        }
    }

    async fn claim(&self, routes: &[String], now: u64) -> Result<Option<Job>, StoreError> {
        let mut con = self.con().await?;
        for route in routes {
            let stream = self.stream(route);
            self.ensure_group(&mut con, &stream).await?;
            let _: i64 = Script::new(PROMOTE)
                .key(self.delayed(route))
                .key(&stream)
                .arg(now)
                .invoke_async(&mut con)
                .await?;
            // Entries of finished or cancelled jobs are skipped; a bounded number per call.
            for _ in 0..16 {
                let next = match self.next_entry(&mut con, &stream).await {
                    // Redis lost the group (restarted without persistence): make it again.
                    Err(StoreError::Redis(e)) if e.code() == Some("NOGROUP") => {
                        self.groups
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .remove(&stream);
                        return Err(StoreError::Redis(e));
                    }
                    next => next?,
                };
                let Some((entry, id)) = next else {
                    break;
                };
                let Some((raw, mut job)) = self.load(&mut con, &id).await? else {
                    self.ack(&mut con, &stream, &entry).await?;
                    continue;
                };
                if !job.state.is_active() {
                    self.ack(&mut con, &stream, &entry).await?;
                    continue;
                }
                job.state = JobState::Running;
                job.attempt += 1;
                if self.swap(&mut con, &raw, &job).await? {
                    let _: i64 = con.sadd(self.key("running"), &job.id).await?;
                    job.lease = Some(entry);
                    return Ok(Some(job));
                }
                // Changed under us (cancelled): its entry is done with.
                self.ack(&mut con, &stream, &entry).await?;
            }
        }
        Ok(None)
    }

    async fn touch(&self, job: &Job) -> Result<(), StoreError> {
        let Some(entry) = &job.lease else {
            return Ok(());
        };
        let mut con = self.con().await?;
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(self.stream(&job.route))
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(0)
            .arg(entry)
            .arg("JUSTID")
            .query_async(&mut con)
            .await?;
        Ok(())
    }

    async fn finish(
        &self,
        claimed: &Job,
        finish: Finish,
        keep: Duration,
    ) -> Result<Job, StoreError> {
        let mut con = self.con().await?;
        loop {
            let Some((raw, mut job)) = self.load(&mut con, &claimed.id).await? else {
                return Err(StoreError::Task(format!("job {} vanished", claimed.id)));
            };
            let now = now_ms();
            let retry_at = match &finish {
                Finish::Done(result) => {
                    job.state = JobState::Done;
                    job.result = Some(result.clone());
                    None
                }
                Finish::Failed(error) => {
                    job.state = JobState::Failed;
                    job.last_error = Some(error.clone());
                    None
                }
                Finish::Retry { due_ms, error } => {
                    job.state = JobState::Queued;
                    job.due_ms = *due_ms;
                    job.last_error = Some(error.clone());
                    Some(*due_ms)
                }
            };
            if retry_at.is_none() {
                job.finished_ms = Some(now);
            }
            if !self.swap(&mut con, &raw, &job).await? {
                continue;
            }
            if let Some(due) = retry_at {
                let _: i64 = con.zadd(self.delayed(&job.route), &job.id, due).await?;
                let _: i64 = con.srem(self.key("running"), &job.id).await?;
            } else {
                self.settle(&mut con, &job, keep).await?;
            }
            if let Some(entry) = &claimed.lease {
                self.ack(&mut con, &self.stream(&job.route), entry).await?;
            }
            return Ok(job);
        }
    }

    async fn active(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        let mut con = self.con().await?;
        let end = isize::try_from(limit)
            .unwrap_or(isize::MAX)
            .saturating_sub(1);
        let ids: Vec<String> = con.zrange(self.key("active"), 0, end).await?;
        self.records(&mut con, &ids).await
    }

    async fn depth(&self) -> Result<Depth, StoreError> {
        // Bounded work whatever the queue length: active = queued + running, the oldest queued
        // among the 16 oldest active jobs.
        let mut con = self.con().await?;
        let active: u64 = con.zcard(self.key("active")).await?;
        let pending: u64 = con.scard(self.key("running")).await?;
        let oldest: Vec<String> = con.zrange(self.key("active"), 0, 15).await?;
        let oldest_queued = self
            .records(&mut con, &oldest)
            .await?
            .into_iter()
            .filter(|j| j.state == JobState::Queued)
            .map(|j| j.enqueued_ms)
            .min();
        Ok(Depth {
            queued: active.saturating_sub(pending),
            running: pending.min(active),
            oldest_enqueued_ms: oldest_queued,
        })
    }

    async fn try_lock(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut con = self.con().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(&format!("lock:{name}")))
            .arg(&self.consumer)
            .arg("NX")
            .arg("PX")
            .arg(ms(ttl))
            .query_async(&mut con)
            .await?;
        Ok(set.is_some())
    }

    async fn purge(&self, _now_ms: u64) -> Result<usize, StoreError> {
        // Finished records, dedup and idempotency keys carry their own expiry.
        Ok(0)
    }
}

impl RedisStore {
    /// A finished (or cancelled) job: out of the active set and the retry set, its dedup key
    /// released, its record and idempotency key kept for `keep`.
    async fn settle(
        &self,
        con: &mut ConnectionManager,
        job: &Job,
        keep: Duration,
    ) -> Result<(), StoreError> {
        if let Some(key) = &job.dedup {
            let _: i64 = Script::new(RELEASE)
                .key(self.scoped("dedup", &job.route, key))
                .arg(&job.id)
                .invoke_async(con)
                .await?;
        }
        let mut pipe = redis::pipe();
        pipe.zrem(self.key("active"), &job.id).ignore();
        pipe.zrem(self.delayed(&job.route), &job.id).ignore();
        pipe.srem(self.key("running"), &job.id).ignore();
        pipe.pexpire(
            self.job_key(&job.id),
            i64::try_from(ms(keep)).unwrap_or(i64::MAX),
        )
        .ignore();
        if let Some(key) = &job.idempotency_key {
            pipe.pexpire(
                self.scoped("idem", &job.route, key),
                i64::try_from(ms(keep)).unwrap_or(i64::MAX),
            )
            .ignore();
        }
        pipe.query_async::<()>(con).await?;
        Ok(())
    }

    async fn records(
        &self,
        con: &mut ConnectionManager,
        ids: &[String],
    ) -> Result<Vec<Job>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.job_key(id)).collect();
        let raws: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query_async(con).await?;
        let mut out = Vec::new();
        for raw in raws.into_iter().flatten() {
            let mut job = decode_record(raw.as_bytes())?;
            if job.state.is_active() {
                job.body = Vec::new();
                out.push(job);
            }
        }
        Ok(out)
    }
}
