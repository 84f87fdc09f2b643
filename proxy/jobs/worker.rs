//! The worker side: a background service that claims due jobs and replays them to the app.
//!
//! One dispatcher loop per process claims a job only for a route that has a free slot
//! (`concurrency` per route) and whose pool's rate allows a start now (GCRA per pool), and
//! whose pool the admission brake does not hold back. Each replay runs in its own task, goes
//! to a backend of the route's pool with the route's long `timeout`, and carries
//! `Idempotency-Key: <job id>` and the `X-Request-Start` of the replay. Connect errors and
//! 502/503/504 are retried after a full-jitter exponential backoff until `max-attempts`;
//! any other answer of the app is the job's result.

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;

use super::limit::{backoff, Gcra};
use super::rules::CurrentRules;
use super::store::{now_ms, Finish, Job, JobResult};
use super::{Jobs, OffloadRoute};
use crate::upstream::{Attempts, Pool};

/// How often the queue gauges are refreshed and finished jobs past their keep time purged.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// The job worker service.
pub struct JobWorkers {
    current: CurrentRules,
    jobs: Arc<Jobs>,
    slots: Mutex<HashMap<String, (usize, Arc<Semaphore>)>>,
    rates: Mutex<HashMap<String, Arc<Gcra>>>,
}

/// How one replay went.
#[derive(Debug)]
enum Outcome {
    /// The app answered with something final.
    Answered(JobResult),
    /// Worth another attempt: the app was not reached, or a gateway said so.
    Retryable(String),
    /// Not retried.
    Fatal(String),
}

impl JobWorkers {
    /// Workers for the offload routes of the rules `current` returns (asked each round),
    /// reading jobs from `jobs`.
    pub fn new(current: CurrentRules, jobs: Arc<Jobs>) -> Self {
        JobWorkers {
            current,
            jobs,
            slots: Mutex::new(HashMap::new()),
            rates: Mutex::new(HashMap::new()),
        }
    }

    /// The slots of `route`, resized (replaced) when a reload changed its concurrency.
    fn slots(&self, route: &str, concurrency: usize) -> Arc<Semaphore> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        match slots.get(route) {
            Some((n, sem)) if *n == concurrency => sem.clone(),
            _ => {
                let sem = Arc::new(Semaphore::new(concurrency));
                slots.insert(route.to_string(), (concurrency, sem.clone()));
                sem
            }
        }
    }

    /// The rate limiter of `pool`, if the config gives it a rate.
    fn rate(&self, pool: &str) -> Option<Arc<Gcra>> {
        let rate = *self.jobs.settings.rates.get(pool)?;
        let mut rates = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
        match rates.get(pool) {
            Some(g) if g.is_for(rate) => Some(g.clone()),
            _ => {
                let g = Arc::new(Gcra::new(rate));
                rates.insert(pool.to_string(), g.clone());
                Some(g)
            }
        }
    }

    /// One dispatch round: claims and starts at most one job. `Ok(None)` = started one (go
    /// again at once); otherwise how long to sleep at most.
    async fn dispatch(&self) -> Option<Duration> {
        let rules = (self.current)();
        let poll = self.jobs.settings.poll_interval;
        let now = Instant::now();
        let mut eligible = Vec::new();
        let mut sleep = poll;
        let offloads = rules.offloads();
        for route in &offloads {
            let offload = route.offload;
            if self
                .slots(route.route, offload.concurrency.get())
                .available_permits()
                == 0
                || self.jobs.brake.overloaded(route.pool)
            {
                continue;
            }
            if let Some(gcra) = self.rate(route.pool) {
                let wait = gcra.wait(now);
                if !wait.is_zero() {
                    sleep = sleep.min(wait);
                    continue;
                }
            }
            eligible.push(route.route.to_string());
        }
        if eligible.is_empty() {
            return Some(sleep);
        }
        let job = match self.jobs.store.claim(&eligible, now_ms()).await {
            Ok(Some(job)) => job,
            Ok(None) => return Some(sleep),
            Err(e) => {
                tracing::warn!("jobs: claim: {e}");
                return Some(poll);
            }
        };
        let found = offloads.iter().find(|o| **o.route == *job.route);
        let Some((route, pool_name, offload, pool)) = found.and_then(|o| {
            let pool = rules.pool(o.pool)?;
            Some((o.route.clone(), o.pool.clone(), o.offload.clone(), pool))
        }) else {
            // Claimed for a route a reload removed between the two loads: fail it visibly.
            let error = format!("route `{}` no longer offloads", job.route);
            let keep = Duration::from_secs(3600);
            if let Err(e) = self
                .jobs
                .store
                .finish(&job, Finish::Failed(error), keep)
                .await
            {
                tracing::warn!("jobs: finish {}: {e}", job.id);
            }
            return None;
        };
        let Ok(permit) = self
            .slots(&route, offload.concurrency.get())
            .try_acquire_owned()
        else {
            // Only this loop takes permits, so one was free; keep the job anyway.
            let retry = Finish::Retry {
                due_ms: now_ms(),
                error: "no free slot".to_string(),
            };
            let _ = self.jobs.store.finish(&job, retry, offload.keep).await;
            return Some(poll);
        };
        if let Some(gcra) = self.rate(&pool_name) {
            gcra.take(Instant::now());
        }
        let jobs = self.jobs.clone();
        jobs.metrics.job_replay_started();
        tokio::spawn(async move {
            run(&jobs, job, &route, &offload, &pool).await;
            jobs.metrics.job_replay_ended();
            drop(permit);
            jobs.wake.notify_one();
        });
        None
    }

    async fn gauges(jobs: Arc<Jobs>) {
        let mut purge_at = Instant::now();
        loop {
            match jobs.store.depth().await {
                Ok(depth) => {
                    let age = depth
                        .oldest_enqueued_ms
                        .map_or(0, |t| now_ms().saturating_sub(t));
                    jobs.metrics
                        .jobs_depth(depth.queued, Duration::from_millis(age));
                }
                Err(e) => tracing::debug!("jobs: depth: {e}"),
            }
            if Instant::now() >= purge_at {
                if let Err(e) = jobs.store.purge(now_ms()).await {
                    tracing::warn!("jobs: purge: {e}");
                }
                purge_at = Instant::now() + Duration::from_secs(30);
            }
            tokio::time::sleep(GAUGE_INTERVAL).await;
        }
    }
}

#[async_trait]
impl BackgroundService for JobWorkers {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let gauges = tokio::spawn(Self::gauges(self.jobs.clone()));
        let schedules = tokio::spawn(super::schedule::run(
            self.current.clone(),
            self.jobs.clone(),
        ));
        loop {
            if *shutdown.borrow() {
                break;
            }
            let Some(sleep) = self.dispatch().await else {
                continue;
            };
            tokio::select! {
                _ = self.jobs.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
        }
        gauges.abort();
        schedules.abort();
    }
}

/// Replays `job` once and records the outcome (result, retry or failure).
async fn run(jobs: &Jobs, job: Job, route: &str, offload: &OffloadRoute, pool: &Pool) {
    let heartbeat = jobs.settings.visibility_timeout / 3;
    let replay = replay(jobs, &job, offload, pool);
    tokio::pin!(replay);
    let outcome = loop {
        tokio::select! {
            outcome = &mut replay => break outcome,
            _ = tokio::time::sleep(heartbeat) => {
                if let Err(e) = jobs.store.touch(&job).await {
                    tracing::warn!("jobs: touch {}: {e}", job.id);
                }
            }
        }
    };
    let name = route;
    let finish = match outcome {
        Outcome::Answered(result) => {
            jobs.metrics
                .job_finished(name, true, since(job.enqueued_ms));
            Finish::Done(result)
        }
        Outcome::Retryable(error) if job.attempt < offload.max_attempts.get() => {
            jobs.metrics.job_retried(name);
            let delay = backoff(job.attempt, offload.backoff, offload.max_backoff);
            let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            Finish::Retry {
                due_ms: now_ms().saturating_add(delay_ms),
                error,
            }
        }
        Outcome::Retryable(error) | Outcome::Fatal(error) => {
            jobs.metrics
                .job_finished(name, false, since(job.enqueued_ms));
            Finish::Failed(format!("attempt {}: {error}", job.attempt))
        }
    };
    if let Err(e) = jobs.store.finish(&job, finish, offload.keep).await {
        // The store will hand the job out again (restart or visibility timeout).
        tracing::warn!("jobs: finish {}: {e}", job.id);
    }
}

fn since(epoch_ms: u64) -> Duration {
    Duration::from_millis(now_ms().saturating_sub(epoch_ms))
}

/// Sends the stored request to a backend of `pool` and reads the answer.
async fn replay(jobs: &Jobs, job: &Job, offload: &OffloadRoute, pool: &Pool) -> Outcome {
    let mut peer = pool.peer(&mut Attempts::default());
    peer.options.read_timeout = Some(offload.timeout);
    peer.options.write_timeout = Some(offload.timeout);
    let request = match request_head(job) {
        Ok(head) => head,
        Err(e) => return Outcome::Fatal(format!("stored request is not valid: {e}")),
    };
    let (mut session, reused) = match jobs.connector.get_http_session(&*peer).await {
        Ok(s) => s,
        Err(e) => return Outcome::Retryable(format!("connect: {e}")),
    };
    // Failing on a reused keep-alive connection before any answer means the app closed it
    // idle; nothing reached the app, so it is as safe to retry as a connect error.
    let sent_failed = |e: Box<pingora::Error>| {
        if reused {
            Outcome::Retryable(format!("reused connection: {e}"))
        } else {
            Outcome::Fatal(format!("sending: {e}"))
        }
    };
    if let Err(e) = session.write_request_header(Box::new(request)).await {
        return sent_failed(e);
    }
    if !job.body.is_empty() {
        let body = Bytes::from(job.body.clone());
        if let Err(e) = session.write_request_body(body, true).await {
            return sent_failed(e);
        }
    }
    if let Err(e) = session.finish_request_body().await {
        return sent_failed(e);
    }
    if let Err(e) = session.read_response_header().await {
        return if reused && e.etype() != &pingora::ErrorType::ReadTimedout {
            Outcome::Retryable(format!("reused connection: {e}"))
        } else {
            Outcome::Fatal(format!("waiting for the answer: {e}"))
        };
    }
    let Some(head) = session.response_header() else {
        return Outcome::Fatal("no response head".to_string());
    };
    let status = head.status.as_u16();
    let headers: Vec<(String, String)> = head
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let mut truncated = false;
    loop {
        match session.read_response_body().await {
            Ok(Some(chunk)) => {
                let room = offload.max_result_size.saturating_sub(body.len() as u64);
                let take = usize::try_from(room).unwrap_or(usize::MAX).min(chunk.len());
                body.extend_from_slice(&chunk[..take]);
                if take < chunk.len() {
                    truncated = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return Outcome::Fatal(format!("reading the answer: {e}")),
        }
    }
    if !truncated {
        jobs.connector
            .release_http_session(session, &*peer, Some(pool.settings().idle_timeout))
            .await;
    }
    if matches!(status, 502..=504) {
        return Outcome::Retryable(format!("the app answered {status}"));
    }
    Outcome::Answered(JobResult {
        status,
        headers,
        body,
        truncated,
    })
}

/// The replayed request head: stored fields, then ours.
pub(crate) fn request_head(job: &Job) -> pingora::Result<RequestHeader> {
    let mut head = RequestHeader::build(job.method.as_str(), job.target.as_bytes(), None)?;
    for (name, value) in &job.headers {
        head.append_header(name.clone(), value.as_str())?;
    }
    head.insert_header(super::http::IDEMPOTENCY_KEY, job.id.as_str())?;
    head.insert_header(crate::headers::X_FRONTDOOR_JOB, job.id.as_str())?;
    head.insert_header(
        crate::headers::X_REQUEST_START,
        crate::headers::request_start_value(SystemTime::now()),
    )?;
    head.insert_header(crate::headers::X_FORWARDED_PROTO, "https")?;
    head.insert_header(::http::header::CONTENT_LENGTH, job.body.len().to_string())?;
    Ok(head)
}
