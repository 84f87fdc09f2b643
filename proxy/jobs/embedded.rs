//! The embedded store: one redb file, every step one ACID write transaction (fsync on commit),
//! so a job answered with 202 survives `kill -9`. Jobs that were running when the process
//! died are queued again when the file is opened (at-least-once).
//!
//! Tables: `jobs` (id → JSON record), `queue` ((due ms, id) → (route, enqueued ms)), `running`
//! (id → enqueued ms), `expiry` ((forget-at ms, id) of finished jobs), `dedup` and
//! `idempotency` ("route\0key" → id), `locks` (name → expiry ms). Every periodic or startup
//! step reads an index, never the whole `jobs` table. redb is blocking: every
//! call runs on Tokio's blocking pool.

use async_trait::async_trait;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::store::{
    decode_record, encode_record, Cancelled, Depth, Enqueued, Finish, Job, JobState, JobStore,
    StoreError,
};

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const QUEUE: TableDefinition<(u64, &str), (&str, u64)> = TableDefinition::new("queue");
const DEDUP: TableDefinition<&str, &str> = TableDefinition::new("dedup");
const IDEMPOTENCY: TableDefinition<&str, &str> = TableDefinition::new("idempotency");
const LOCKS: TableDefinition<&str, u64> = TableDefinition::new("locks");
const RUNNING: TableDefinition<&str, u64> = TableDefinition::new("running");
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiry");

/// The redb-backed store.
pub struct EmbeddedStore {
    db: Arc<Database>,
    /// `None` only while dropping.
    enqueues: Option<std::sync::mpsc::Sender<PendingEnqueue>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EmbeddedStore {
    /// Stops the commit thread and waits for it, so the file is closed when this returns.
    fn drop(&mut self) {
        drop(self.enqueues.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// A job waiting for the group commit, and who waits for its answer.
type PendingEnqueue = (
    Job,
    tokio::sync::oneshot::Sender<Result<Enqueued, StoreError>>,
);

/// Enqueues committed together at most; one fsync acknowledges them all.
const GROUP_COMMIT: usize = 256;

/// The group-commit writer: takes the enqueues waiting now (at most [`GROUP_COMMIT`]), writes
/// them in one transaction, commits (one fsync), then answers each. Under load the fsync cost
/// is shared; alone, an enqueue waits for exactly one commit as before. Ends when the store
/// is dropped.
fn group_commit(db: Arc<Database>, enqueues: std::sync::mpsc::Receiver<PendingEnqueue>) {
    while let Ok(first) = enqueues.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP_COMMIT {
            match enqueues.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut answers = Vec::with_capacity(batch.len());
        let outcome = (|| {
            let tx = db.begin_write().map_err(redb::Error::from)?;
            let mut results = Vec::with_capacity(batch.len());
            for (job, done) in batch {
                results.push(enqueue_in(&tx, job)?);
                answers.push(done);
            }
            tx.commit().map_err(redb::Error::from)?;
            Ok::<_, StoreError>(results)
        })();
        match outcome {
            Ok(results) => {
                for (done, result) in answers.into_iter().zip(results) {
                    let _ = done.send(Ok(result));
                }
            }
            Err(e) => {
                // Nothing of the batch was committed; every waiter hears why (the senders of
                // jobs not reached yet were dropped with the batch and see the writer error).
                let message = e.to_string();
                for done in answers {
                    let _ = done.send(Err(StoreError::Task(message.clone())));
                }
            }
        }
    }
}

fn scoped(route: &str, key: &str) -> String {
    format!("{route}\u{0}{key}")
}

type Tx = redb::WriteTransaction;

fn read_job(tx: &Tx, id: &str) -> Result<Option<Job>, StoreError> {
    let jobs = tx.open_table(JOBS).map_err(redb::Error::from)?;
    let bytes = jobs
        .get(id)
        .map_err(redb::Error::from)?
        .map(|v| v.value().to_vec());
    bytes.map(|b| decode_record(&b)).transpose()
}

fn write_job(tx: &Tx, job: &Job) -> Result<(), StoreError> {
    let bytes = encode_record(job)?;
    let mut jobs = tx.open_table(JOBS).map_err(redb::Error::from)?;
    jobs.insert(job.id.as_str(), bytes.as_slice())
        .map_err(redb::Error::from)?;
    Ok(())
}

fn queue_job(tx: &Tx, job: &Job) -> Result<(), StoreError> {
    let mut queue = tx.open_table(QUEUE).map_err(redb::Error::from)?;
    queue
        .insert(
            (job.due_ms, job.id.as_str()),
            (job.route.as_str(), job.enqueued_ms),
        )
        .map_err(redb::Error::from)?;
    Ok(())
}

/// Marks `id` running (or not).
fn set_running(tx: &Tx, job: &Job, running: bool) -> Result<(), StoreError> {
    let mut table = tx.open_table(RUNNING).map_err(redb::Error::from)?;
    if running {
        table
            .insert(job.id.as_str(), job.enqueued_ms)
            .map_err(redb::Error::from)?;
    } else {
        table.remove(job.id.as_str()).map_err(redb::Error::from)?;
    }
    Ok(())
}

/// Schedules the finished `job` to be forgotten at `job.due_ms`.
fn expire_at(tx: &Tx, job: &Job) -> Result<(), StoreError> {
    let mut table = tx.open_table(EXPIRY).map_err(redb::Error::from)?;
    table
        .insert((job.due_ms, job.id.as_str()), ())
        .map_err(redb::Error::from)?;
    Ok(())
}

fn release_dedup(tx: &Tx, job: &Job) -> Result<(), StoreError> {
    if let Some(key) = &job.dedup {
        let mut dedup = tx.open_table(DEDUP).map_err(redb::Error::from)?;
        let scoped = scoped(&job.route, key);
        let holder = dedup
            .get(scoped.as_str())
            .map_err(redb::Error::from)?
            .map(|v| v.value().to_string());
        if holder.as_deref() == Some(job.id.as_str()) {
            dedup.remove(scoped.as_str()).map_err(redb::Error::from)?;
        }
    }
    Ok(())
}

/// The enqueue step inside a write transaction: idempotency, dedup, then the job.
fn enqueue_in(tx: &Tx, job: Job) -> Result<Enqueued, StoreError> {
    if let Some(key) = &job.idempotency_key {
        let scoped = scoped(&job.route, key);
        let known = {
            let table = tx.open_table(IDEMPOTENCY).map_err(redb::Error::from)?;
            let id = table
                .get(scoped.as_str())
                .map_err(redb::Error::from)?
                .map(|v| v.value().to_string());
            id
        };
        if let Some(existing) = known.and_then(|id| read_job(tx, &id).transpose()) {
            let existing = existing?;
            return Ok(if existing.fingerprint == job.fingerprint {
                Enqueued::Replayed(existing)
            } else {
                Enqueued::Conflict
            });
        }
    }
    if let Some(key) = &job.dedup {
        let holder = {
            let table = tx.open_table(DEDUP).map_err(redb::Error::from)?;
            let id = table
                .get(scoped(&job.route, key).as_str())
                .map_err(redb::Error::from)?
                .map(|v| v.value().to_string());
            id
        };
        if let Some(existing) = holder.and_then(|id| read_job(tx, &id).transpose()) {
            let existing = existing?;
            if existing.state.is_active() {
                return Ok(Enqueued::Deduplicated(existing));
            }
        }
        let mut table = tx.open_table(DEDUP).map_err(redb::Error::from)?;
        table
            .insert(scoped(&job.route, key).as_str(), job.id.as_str())
            .map_err(redb::Error::from)?;
    }
    if let Some(key) = &job.idempotency_key {
        let mut table = tx.open_table(IDEMPOTENCY).map_err(redb::Error::from)?;
        table
            .insert(scoped(&job.route, key).as_str(), job.id.as_str())
            .map_err(redb::Error::from)?;
    }
    write_job(tx, &job)?;
    queue_job(tx, &job)?;
    Ok(Enqueued::New(job))
}

impl EmbeddedStore {
    /// Opens (or creates) the file at `path` and queues again the jobs that were running.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            // A missing data folder is created; a failure shows up as the open error below.
            let _ = std::fs::create_dir_all(dir);
        }
        let db = Database::create(path).map_err(redb::Error::from)?;
        let tx = db.begin_write().map_err(redb::Error::from)?;
        let mut requeued = 0;
        {
            tx.open_table(DEDUP).map_err(redb::Error::from)?;
            tx.open_table(IDEMPOTENCY).map_err(redb::Error::from)?;
            tx.open_table(LOCKS).map_err(redb::Error::from)?;
            tx.open_table(QUEUE).map_err(redb::Error::from)?;
            tx.open_table(EXPIRY).map_err(redb::Error::from)?;
            let running: Vec<String> = {
                let table = tx.open_table(RUNNING).map_err(redb::Error::from)?;
                let mut ids = Vec::new();
                for entry in table.iter().map_err(redb::Error::from)? {
                    let (id, _) = entry.map_err(redb::Error::from)?;
                    ids.push(id.value().to_string());
                }
                ids
            };
            for id in running {
                let Some(mut job) = read_job(&tx, &id)? else {
                    continue;
                };
                set_running(&tx, &job, false)?;
                job.state = JobState::Queued;
                job.last_error = Some("frontdoor stopped while it ran".to_string());
                write_job(&tx, &job)?;
                queue_job(&tx, &job)?;
                requeued += 1;
            }
        }
        tx.commit().map_err(redb::Error::from)?;
        if requeued > 0 {
            tracing::warn!("jobs: {requeued} job(s) were running at the last stop; queued again");
        }
        let db = Arc::new(db);
        let (enqueues, pending) = std::sync::mpsc::channel();
        let writer = db.clone();
        let writer = std::thread::Builder::new()
            .name("jobs-commit".to_string())
            .spawn(move || group_commit(writer, pending))
            .map_err(|e| StoreError::Task(format!("starting the commit thread: {e}")))?;
        Ok(EmbeddedStore {
            db,
            enqueues: Some(enqueues),
            writer: Some(writer),
        })
    }

    /// Runs `work` in one write transaction on the blocking pool; commits if it succeeds.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Tx) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(redb::Error::from)?;
            let out = work(&tx)?;
            tx.commit().map_err(redb::Error::from)?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `work` in a read transaction on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(redb::Error::from)?;
            work(&tx)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

#[async_trait]
impl JobStore for EmbeddedStore {
    async fn enqueue(&self, job: Job, _dedup_ttl: Duration) -> Result<Enqueued, StoreError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.enqueues
            .as_ref()
            .ok_or_else(|| StoreError::Task("the store is closing".to_string()))?
            .send((job, done))
            .map_err(|_| StoreError::Task("the enqueue writer stopped".to_string()))?;
        answer
            .await
            .map_err(|_| StoreError::Task("the enqueue writer stopped".to_string()))?
    }

    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let id = id.to_string();
        self.read(move |tx| {
            let jobs = tx.open_table(JOBS).map_err(redb::Error::from)?;
            let bytes = jobs
                .get(id.as_str())
                .map_err(redb::Error::from)?
                .map(|v| v.value().to_vec());
            bytes.map(|b| decode_record(&b)).transpose()
        })
        .await
    }

    async fn cancel(&self, id: &str) -> Result<Cancelled, StoreError> {
        let id = id.to_string();
        self.write(move |tx| {
            let Some(mut job) = read_job(tx, &id)? else {
                return Ok(Cancelled::Unknown);
            };
            if job.state != JobState::Queued {
                return Ok(Cancelled::TooLate(job.state));
            }
            {
                let mut queue = tx.open_table(QUEUE).map_err(redb::Error::from)?;
                queue
                    .remove((job.due_ms, job.id.as_str()))
                    .map_err(redb::Error::from)?;
            }
            job.state = JobState::Cancelled;
            let now = super::store::now_ms();
            job.finished_ms = Some(now);
            // Readable for an hour, like a finished job with the default `keep`.
            job.due_ms = now.saturating_add(3_600_000);
            release_dedup(tx, &job)?;
            write_job(tx, &job)?;
            expire_at(tx, &job)?;
            Ok(Cancelled::Cancelled)
        })
        .await
    }

    async fn claim(&self, routes: &[String], now_ms: u64) -> Result<Option<Job>, StoreError> {
        let routes = routes.to_vec();
        self.write(move |tx| {
            let found = {
                let queue = tx.open_table(QUEUE).map_err(redb::Error::from)?;
                let mut found = None;
                for entry in queue
                    .range((0u64, "")..(now_ms.saturating_add(1), ""))
                    .map_err(redb::Error::from)?
                {
                    let (key, value) = entry.map_err(redb::Error::from)?;
                    let (due, id) = key.value();
                    let (route, _) = value.value();
                    if routes.iter().any(|r| r == route) {
                        found = Some((due, id.to_string()));
                        break;
                    }
                }
                found
            };
            let Some((due, id)) = found else {
                return Ok(None);
            };
            {
                let mut queue = tx.open_table(QUEUE).map_err(redb::Error::from)?;
                queue
                    .remove((due, id.as_str()))
                    .map_err(redb::Error::from)?;
            }
            let Some(mut job) = read_job(tx, &id)? else {
                return Ok(None);
            };
            job.state = JobState::Running;
            job.attempt += 1;
            write_job(tx, &job)?;
            set_running(tx, &job, true)?;
            Ok(Some(job))
        })
        .await
    }

    async fn touch(&self, _job: &Job) -> Result<(), StoreError> {
        // One process owns the file: a running job is lost only with the process, and is
        // queued again when the file is opened.
        Ok(())
    }

    async fn finish(&self, job: &Job, finish: Finish, keep: Duration) -> Result<Job, StoreError> {
        let id = job.id.clone();
        let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
        self.write(move |tx| {
            let Some(mut job) = read_job(tx, &id)? else {
                return Err(StoreError::Task(format!("job {id} vanished")));
            };
            let now = super::store::now_ms();
            set_running(tx, &job, false)?;
            match finish {
                Finish::Done(result) => {
                    job.state = JobState::Done;
                    job.result = Some(result);
                }
                Finish::Failed(error) => {
                    job.state = JobState::Failed;
                    job.last_error = Some(error);
                }
                Finish::Retry { due_ms, error } => {
                    job.state = JobState::Queued;
                    job.due_ms = due_ms;
                    job.last_error = Some(error);
                    write_job(tx, &job)?;
                    queue_job(tx, &job)?;
                    return Ok(job);
                }
            }
            job.finished_ms = Some(now);
            // The purge deletes after `due_ms` for finished jobs: reuse it as the expiry.
            job.due_ms = now.saturating_add(keep_ms);
            release_dedup(tx, &job)?;
            write_job(tx, &job)?;
            expire_at(tx, &job)?;
            Ok(job)
        })
        .await
    }

    async fn active(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.read(move |tx| {
            // Running jobs (at most the slots of all routes), then queued in due order.
            let mut ids = Vec::new();
            let running = tx.open_table(RUNNING).map_err(redb::Error::from)?;
            for entry in running.iter().map_err(redb::Error::from)? {
                ids.push(entry.map_err(redb::Error::from)?.0.value().to_string());
            }
            let queue = tx.open_table(QUEUE).map_err(redb::Error::from)?;
            for entry in queue.iter().map_err(redb::Error::from)?.take(limit) {
                ids.push(entry.map_err(redb::Error::from)?.0.value().1.to_string());
            }
            let jobs = tx.open_table(JOBS).map_err(redb::Error::from)?;
            let mut out = Vec::new();
            for id in ids {
                let bytes = jobs
                    .get(id.as_str())
                    .map_err(redb::Error::from)?
                    .map(|v| v.value().to_vec());
                if let Some(bytes) = bytes {
                    let mut job = decode_record(&bytes)?;
                    job.body = Vec::new();
                    out.push(job);
                }
            }
            out.sort_by_key(|j| j.enqueued_ms);
            out.truncate(limit);
            Ok(out)
        })
        .await
    }

    async fn depth(&self) -> Result<Depth, StoreError> {
        self.read(|tx| {
            let queue = tx.open_table(QUEUE).map_err(redb::Error::from)?;
            let mut depth = Depth {
                queued: queue.len().map_err(redb::Error::from)?,
                ..Depth::default()
            };
            // O(log n), not a scan: the job first in due order stands for the oldest (a retry
            // waiting for its time is not late, so it does not count).
            if let Some((_, value)) = queue.first().map_err(redb::Error::from)? {
                depth.oldest_enqueued_ms = Some(value.value().1);
            }
            Ok(depth)
        })
        .await
    }

    async fn try_lock(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let name = name.to_string();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.write(move |tx| {
            let now = super::store::now_ms();
            let mut locks = tx.open_table(LOCKS).map_err(redb::Error::from)?;
            let held = locks
                .get(name.as_str())
                .map_err(redb::Error::from)?
                .is_some_and(|v| v.value() > now);
            if held {
                return Ok(false);
            }
            locks
                .insert(name.as_str(), now.saturating_add(ttl_ms))
                .map_err(redb::Error::from)?;
            Ok(true)
        })
        .await
    }

    async fn purge(&self, now_ms: u64) -> Result<usize, StoreError> {
        self.write(move |tx| {
            let due: Vec<(u64, String)> = {
                let expiry = tx.open_table(EXPIRY).map_err(redb::Error::from)?;
                let mut due = Vec::new();
                for entry in expiry
                    .range((0u64, "")..(now_ms.saturating_add(1), ""))
                    .map_err(redb::Error::from)?
                {
                    let (key, _) = entry.map_err(redb::Error::from)?;
                    let (at, id) = key.value();
                    due.push((at, id.to_string()));
                }
                due
            };
            let mut expired = Vec::new();
            {
                let mut expiry = tx.open_table(EXPIRY).map_err(redb::Error::from)?;
                for (at, id) in &due {
                    expiry
                        .remove((*at, id.as_str()))
                        .map_err(redb::Error::from)?;
                }
            }
            for (_, id) in &due {
                if let Some(job) = read_job(tx, id)? {
                    if !job.state.is_active() {
                        expired.push(job);
                    }
                }
            }
            let mut jobs = tx.open_table(JOBS).map_err(redb::Error::from)?;
            let mut idempotency = tx.open_table(IDEMPOTENCY).map_err(redb::Error::from)?;
            for job in &expired {
                jobs.remove(job.id.as_str()).map_err(redb::Error::from)?;
                if let Some(key) = &job.idempotency_key {
                    idempotency
                        .remove(scoped(&job.route, key).as_str())
                        .map_err(redb::Error::from)?;
                }
            }
            let mut locks = tx.open_table(LOCKS).map_err(redb::Error::from)?;
            let stale: Vec<String> = locks
                .iter()
                .map_err(redb::Error::from)?
                .filter_map(Result::ok)
                .filter(|(_, expiry)| expiry.value() <= now_ms)
                .map(|(name, _)| name.value().to_string())
                .collect();
            for name in stale {
                locks.remove(name.as_str()).map_err(redb::Error::from)?;
            }
            Ok(expired.len())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::store::{now_ms, NewJob};

    fn job(route: &str, dedup: Option<&str>) -> Job {
        NewJob {
            route: route.into(),
            method: "POST".into(),
            target: "/x".into(),
            headers: Vec::new(),
            body: Vec::new(),
            dedup: dedup.map(str::to_string),
            idempotency_key: None,
        }
        .queued()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_with_one_dedup_key_makes_one_job_even_in_one_group_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("j.redb")).unwrap());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .enqueue(job("r", Some("42")), Duration::from_secs(60))
                    .await
            }));
        }
        let (mut new, mut ids) = (0, std::collections::HashSet::new());
        for t in tasks {
            match t.await.unwrap().unwrap() {
                Enqueued::New(j) => {
                    new += 1;
                    ids.insert(j.id);
                }
                Enqueued::Deduplicated(j) => {
                    ids.insert(j.id);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((new, ids.len()), (1, 1));
        assert_eq!(store.depth().await.unwrap().queued, 1);
    }

    #[tokio::test]
    async fn claim_hands_out_once_respects_routes_and_retry_times_and_reopen_requeues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.redb");
        let store = EmbeddedStore::open(&path).unwrap();
        let ttl = Duration::from_secs(60);
        store.enqueue(job("a", None), ttl).await.unwrap();
        store.enqueue(job("b", None), ttl).await.unwrap();
        let routes = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let b = store
            .claim(&routes(&["b"]), now_ms())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (b.route.as_str(), b.attempt, b.state),
            ("b", 1, JobState::Running)
        );
        assert!(store
            .claim(&routes(&["b"]), now_ms())
            .await
            .unwrap()
            .is_none());
        let a = store
            .claim(&routes(&["a", "b"]), now_ms())
            .await
            .unwrap()
            .unwrap();
        // A retry is not due before its time.
        let later = now_ms() + 60_000;
        let retry = Finish::Retry {
            due_ms: later,
            error: "503".into(),
        };
        store.finish(&a, retry, ttl).await.unwrap();
        assert!(store
            .claim(&routes(&["a"]), now_ms())
            .await
            .unwrap()
            .is_none());
        let again = store.claim(&routes(&["a"]), later).await.unwrap().unwrap();
        assert_eq!(again.attempt, 2);
        // `b` and `a` are running when the process "dies": both queued again on open.
        drop(store);
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(store.depth().await.unwrap().queued, 2);
        let active = store.active(10).await.unwrap();
        assert!(active.iter().all(|j| j.state == JobState::Queued));
    }

    #[tokio::test]
    async fn finished_jobs_are_listed_no_more_and_forgotten_after_keep() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("j.redb")).unwrap();
        let mut first = job("r", None);
        first.idempotency_key = Some("k".into());
        store.enqueue(first, Duration::ZERO).await.unwrap();
        let claimed = store
            .claim(&["r".to_string()], now_ms())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.idempotency_key.as_deref(), Some("k"));
        store.enqueue(job("r", None), Duration::ZERO).await.unwrap();
        assert_eq!(store.active(10).await.unwrap().len(), 2);
        let result = crate::jobs::store::JobResult {
            status: 200,
            headers: Vec::new(),
            body: b"ok".to_vec(),
            truncated: false,
        };
        let keep = Duration::from_secs(60);
        store
            .finish(&claimed, Finish::Done(result), keep)
            .await
            .unwrap();
        assert_eq!(store.active(10).await.unwrap().len(), 1);
        assert_eq!(store.purge(now_ms()).await.unwrap(), 0, "kept for `keep`");
        assert!(store.get(&claimed.id).await.unwrap().is_some());
        assert_eq!(store.purge(now_ms() + 61_000).await.unwrap(), 1);
        assert!(store.get(&claimed.id).await.unwrap().is_none());
        // The idempotency key went with it: the same key makes a new job now.
        let mut again = job("r", None);
        again.idempotency_key = Some("k".into());
        let outcome = store.enqueue(again, Duration::ZERO).await.unwrap();
        assert!(matches!(outcome, Enqueued::New(_)), "{outcome:?}");
    }
}
