//! The request side of jobs: an offload route's request becomes a job, answered `202
//! Accepted` once the store has it durably; `/_frontdoor/jobs/<id>` reports and cancels.
//!
//! API callers get JSON; a browser (`Accept: text/html`) gets a small page that refreshes
//! itself every `retry-after` until the job has finished.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use std::time::Duration;

use super::store::{self, Cancelled, Enqueued, Job, NewJob};
use super::{Jobs, OffloadRoute, STATUS_PREFIX};
use crate::buffering::request::{self as request_buffering, Piece};
use crate::error_pages::{self, ErrorPages, Why};
use crate::template::Params;

/// The client's idempotency header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What an answer looks like for this client.
fn wants_html(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

async fn write(
    session: &mut Session,
    status: u16,
    content_type: &str,
    extra: &[(&str, String)],
    body: String,
    request_id: &str,
) -> Result<()> {
    let mut head = ResponseHeader::build(status, Some(6))?;
    head.insert_header(::http::header::CONTENT_TYPE, content_type)?;
    head.insert_header(::http::header::CONTENT_LENGTH, body.len().to_string())?;
    head.insert_header(::http::header::CACHE_CONTROL, "no-store")?;
    head.insert_header(crate::headers::X_REQUEST_ID, request_id)?;
    for (name, value) in extra {
        head.insert_header(name.to_string(), value.as_str())?;
    }
    session.write_response_header(Box::new(head), false).await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await
}

async fn plain(session: &mut Session, status: u16, text: &str, request_id: &str) -> Result<()> {
    write(
        session,
        status,
        "text/plain; charset=utf-8",
        &[],
        format!("{text}\n"),
        request_id,
    )
    .await
}

/// The store failed: frontdoor's own `503` (the operator's page or JSON), retried in a second.
async fn store_unavailable(
    session: &mut Session,
    pages: &ErrorPages,
    request_id: &str,
) -> Result<()> {
    error_pages::respond(session, pages, Why::JobStore, Some(1), request_id).await
}

fn status_url(id: &str) -> String {
    format!("{STATUS_PREFIX}{id}")
}

/// The job as the status endpoint shows it.
pub fn view(job: &Job) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": job.id,
        "state": job.state,
        "route": job.route,
        "attempt": job.attempt,
        "enqueued_ms": job.enqueued_ms,
        "status_url": status_url(&job.id),
    });
    if let Some(finished) = job.finished_ms {
        v["finished_ms"] = finished.into();
    }
    if let Some(error) = &job.last_error {
        v["error"] = error.as_str().into();
    }
    if let Some(result) = &job.result {
        let mut r = serde_json::json!({
            "status": result.status,
            "headers": result.headers,
            "truncated": result.truncated,
        });
        match std::str::from_utf8(&result.body) {
            Ok(text) => r["body"] = text.into(),
            Err(_) => r["body_hex"] = hex::encode(&result.body).into(),
        }
        v["result"] = r;
    }
    v
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(job: &Job, refresh: Duration) -> String {
    let state = serde_json::to_value(job.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let refresh_tag = if job.state.is_active() {
        format!(
            "<meta http-equiv=\"refresh\" content=\"{}\">",
            refresh.as_secs().max(1)
        )
    } else {
        String::new()
    };
    let detail = match (&job.result, &job.last_error) {
        (Some(result), _) => format!(
            "<p>The app answered {}.</p><pre>{}</pre>",
            result.status,
            escape(&String::from_utf8_lossy(&result.body))
        ),
        (None, Some(error)) if !job.state.is_active() => {
            format!("<p>It failed: {}</p>", escape(error))
        }
        _ => format!(
            "<p>Attempt {}. This page refreshes itself.</p>",
            job.attempt
        ),
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">{refresh_tag}\
         <title>Job {state}</title></head><body><h1>Your request is {state}</h1>{detail}\
         </body></html>\n"
    )
}

async fn show(
    session: &mut Session,
    status: u16,
    job: &Job,
    retry_after: Duration,
    request_id: &str,
) -> Result<()> {
    let mut extra = vec![("location", status_url(&job.id))];
    if job.state.is_active() {
        extra.push(("retry-after", retry_after.as_secs().max(1).to_string()));
    }
    if wants_html(session) {
        let body = page(job, retry_after);
        write(
            session,
            status,
            "text/html; charset=utf-8",
            &extra,
            body,
            request_id,
        )
        .await
    } else {
        let body = format!("{}\n", view(job));
        write(
            session,
            status,
            "application/json",
            &extra,
            body,
            request_id,
        )
        .await
    }
}

/// Whether `path` is a job's status URL (what [`serve_status`] answers).
pub fn is_status_path(path: &str) -> bool {
    path.starts_with(STATUS_PREFIX)
}

/// Answers `GET`/`HEAD`/`DELETE /_frontdoor/jobs/<id>`: `Ok(false)` when the path is not a
/// job status path, so routing goes on.
pub async fn serve_status(
    session: &mut Session,
    jobs: Option<&Jobs>,
    pages: &ErrorPages,
    request_id: &str,
) -> Result<bool> {
    let path = session.req_header().uri.path();
    let Some(id) = path.strip_prefix(STATUS_PREFIX) else {
        return Ok(false);
    };
    let id = id.to_string();
    // Boxed: the answer's future (job store reads) is KBs that every request would otherwise
    // carry and have copied, status path or not.
    Box::pin(answer_status(session, jobs, id, pages, request_id)).await
}

/// The answer of [`serve_status`] for the job `id`.
async fn answer_status(
    session: &mut Session,
    jobs: Option<&Jobs>,
    id: String,
    pages: &ErrorPages,
    request_id: &str,
) -> Result<bool> {
    let Some(jobs) = jobs.filter(|_| store::is_job_id(&id)) else {
        plain(session, 404, "no such job", request_id).await?;
        return Ok(true);
    };
    let method = session.req_header().method.clone();
    if method == ::http::Method::DELETE {
        match jobs.store.cancel(&id).await {
            Ok(Cancelled::Cancelled) => match jobs.store.get(&id).await {
                Ok(Some(job)) => show(session, 200, &job, Duration::ZERO, request_id).await?,
                _ => plain(session, 200, "cancelled", request_id).await?,
            },
            Ok(Cancelled::TooLate(state)) => {
                let text = format!("the job is {state:?}, too late to cancel").to_lowercase();
                plain(session, 409, &text, request_id).await?
            }
            Ok(Cancelled::Unknown) => plain(session, 404, "no such job", request_id).await?,
            Err(e) => {
                tracing::warn!("jobs: cancel {id}: {e}");
                store_unavailable(session, pages, request_id).await?
            }
        }
        return Ok(true);
    }
    if method != ::http::Method::GET && method != ::http::Method::HEAD {
        plain(session, 405, "use GET or DELETE", request_id).await?;
        return Ok(true);
    }
    match jobs.store.get(&id).await {
        Ok(Some(job)) => {
            let retry_after = Duration::from_secs(1);
            show(session, 200, &job, retry_after, request_id).await?
        }
        Ok(None) => plain(session, 404, "no such job", request_id).await?,
        Err(e) => {
            tracing::warn!("jobs: status {id}: {e}");
            store_unavailable(session, pages, request_id).await?
        }
    }
    Ok(true)
}

/// What came of reading a job's body.
enum JobBody {
    /// The whole body.
    Read(Vec<u8>),
    /// Longer than the route's `max-body` (declared or as it arrived).
    TooLarge,
    /// A read waited longer than `body-timeout`.
    TimedOut,
}

/// Reads the body up to `max` bytes, as a buffered proxied body is read: `100 Continue`
/// first if the client waits for it (not when its declared length is refused), each read
/// within `timeout`.
async fn read_body(session: &mut Session, max: u64, timeout: Duration) -> Result<JobBody> {
    let declared = session
        .req_header()
        .headers
        .get(::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Ok(JobBody::TooLarge);
    }
    request_buffering::send_continue(session).await?;
    let mut body = Vec::new();
    loop {
        match request_buffering::next_piece(session, timeout).await? {
            Piece::Data(chunk) if (body.len() + chunk.len()) as u64 > max => {
                return Ok(JobBody::TooLarge)
            }
            Piece::Data(chunk) => body.extend_from_slice(&chunk),
            Piece::End => return Ok(JobBody::Read(body)),
            Piece::TimedOut => return Ok(JobBody::TimedOut),
        }
    }
}

/// The offload route a request matched: its name, what its path captured, its settings.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    /// The route's name (jobs are stored by it).
    pub route: &'a str,
    /// What the request's path captured (for the dedup key).
    pub params: &'a Params,
    /// The route's offload settings.
    pub offload: &'a OffloadRoute,
}

/// Stores the request of an offload route as a job and answers 202 (or the existing job's
/// status for a duplicate, 413 for a body over the limit, 408 for a body stalled longer than
/// `body_timeout`, 422 for an idempotency key reused with another payload, 503 when the store
/// fails).
pub async fn offload(
    session: &mut Session,
    jobs: &Jobs,
    matched: Matched<'_>,
    body_timeout: Duration,
    pages: &ErrorPages,
    request_id: &str,
) -> Result<()> {
    let Matched {
        route,
        params,
        offload,
    } = matched;
    let route = route.to_string();
    let body = match read_body(session, offload.max_body, body_timeout).await? {
        JobBody::Read(body) => body,
        JobBody::TooLarge => {
            session.set_keepalive(None);
            return plain(session, 413, "request body too large for a job", request_id).await;
        }
        JobBody::TimedOut => {
            jobs.metrics.rejected("body_timeout");
            session.set_keepalive(None);
            return plain(session, 408, "request timeout", request_id).await;
        }
    };
    let head = session.req_header();
    let method = head.method.as_str().to_string();
    let target = head
        .uri
        .path_and_query()
        .map_or_else(|| head.uri.path().to_string(), |p| p.as_str().to_string());
    let mut headers = Vec::new();
    let host = head
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            head.headers
                .get(::http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
    if let Some(host) = host {
        headers.push(("host".to_string(), host));
    }
    for name in &offload.headers {
        for value in head.headers.get_all(name) {
            if let Ok(value) = value.to_str() {
                headers.push((name.as_str().to_string(), value.to_string()));
            }
        }
    }
    headers.push((
        crate::headers::X_REQUEST_ID.to_string(),
        request_id.to_string(),
    ));
    // The client, as the app would have seen it through the proxy (without a trusted chain:
    // the replay is frontdoor's own request).
    if let Some(peer) = session.client_addr().and_then(|a| a.as_inet()) {
        headers.push((
            crate::headers::X_FORWARDED_FOR.to_string(),
            peer.ip().to_string(),
        ));
    }
    let idempotency_key = head
        .headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|k| !k.is_empty() && k.len() <= 255);
    let job = NewJob {
        route: route.clone(),
        method,
        target,
        headers,
        body,
        dedup: offload.key.as_ref().map(|k| k.render(params)),
        idempotency_key,
    }
    .queued();
    let dedup_ttl = dedup_ttl(offload);
    match jobs.store.enqueue(job, dedup_ttl).await {
        Ok(Enqueued::New(job)) => {
            jobs.metrics.job_enqueued(&route);
            jobs.wake.notify_one();
            show(session, 202, &job, offload.retry_after, request_id).await
        }
        Ok(Enqueued::Deduplicated(job)) => {
            jobs.metrics.job_deduplicated(&route);
            show(session, 202, &job, offload.retry_after, request_id).await
        }
        Ok(Enqueued::Replayed(job)) => {
            show(session, 202, &job, offload.retry_after, request_id).await
        }
        Ok(Enqueued::Conflict) => {
            plain(
                session,
                422,
                "this Idempotency-Key was used with a different request",
                request_id,
            )
            .await
        }
        Err(e) => {
            tracing::warn!("jobs: enqueue on {route}: {e}");
            store_unavailable(session, pages, request_id).await
        }
    }
}

/// How long a dedup key may outlive a job whose node was lost: every attempt at its
/// timeout plus the backoffs between them.
pub fn dedup_ttl(offload: &OffloadRoute) -> Duration {
    let attempts = offload.max_attempts.get();
    (offload.timeout + offload.max_backoff).saturating_mul(attempts) + Duration::from_secs(60)
}
