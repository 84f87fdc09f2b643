//! The `ProxyHttp` implementation: phases in lifecycle order, each a few lines that call the
//! modules doing the work. Read this file as frontdoor's table of contents.
//!
//! The longer phases hand their work to `impl Frontdoor` blocks in submodules: `request`
//! (`request_filter`'s steps), `admitting` (refusal, 503 with no backend up, a buffered body,
//! the admission slot), `assets` and `cached` (answers from memory; `cached` also fills and
//! invalidates the edge cache), `response` (the response head and body filters), `errors`
//! (`fail_to_proxy`), `own_answers` (frontdoor's own pages, sendfile), `upgrades`.

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::protocols::http::HttpTask;
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorType, Result};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::admission::{self, Permit};
use crate::buffering::request::{self as request_buffering, BufferedBody};
use crate::buffering::response::Lent;
use crate::compression::Compressor;
use crate::edge_cache::{self, Fill};
use crate::headers::{self, HeaderEdit};
use crate::hints;
use crate::hostile::BodyLimit;
use crate::metrics::{Retry, NO_ROUTE};
use crate::routing::RouteMatch;
use crate::sendfile;
use crate::snapshot::Shared;
use crate::upgraded::Place;
use crate::upstream::{Attempts, Pool};

mod admitting;
mod assets;
mod cached;
mod errors;
mod own_answers;
mod request;
mod response;
mod upgrades;

/// `Retry-After` of the 503 a pool without admission answers when no backend is up.
const NO_BACKEND_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Per-request facts, computed once.
pub struct RequestCtx {
    /// Wall-clock arrival of the request head, or the end of a buffered body (what
    /// `X-Request-Start` reports).
    arrival: SystemTime,
    /// Monotonic arrival, for durations.
    started: Instant,
    /// When the request was ready to take a slot: its head's arrival, or the end of a body
    /// buffered first (an upload is not queue time).
    ready: Instant,
    /// The requested host, lowercase, without port.
    host: Option<String>,
    /// The matched route and its parameters.
    route: Option<RouteMatch>,
    /// The route's pool.
    pool: Option<Arc<Pool>>,
    /// Kept from a trusted peer, else generated.
    request_id: String,
    /// Whether the downstream peer is a trusted proxy.
    trusted: bool,
    /// Backend attempts.
    attempts: Attempts,
    /// When the current upstream attempt began.
    upstream_started: Option<Instant>,
    /// Whether `request_started` was counted (so `logging` balances it exactly once).
    counted: bool,
    /// Compresses the response body when the upstream sent compressible text.
    compressor: Option<Compressor>,
    /// The edge-cache key of a GET that missed: its answer is stored if storable.
    cache_key: Option<String>,
    /// The answer being copied into the edge cache. Boxed, as `html_pass`: rare and large, and
    /// this context is moved with every request's future (its size is copied each time).
    fill: Option<Box<Fill>>,
    /// Held while this request fills its edge-cache key: others missing it wait.
    flight: Option<edge_cache::FlightGuard>,
    /// The admission slot held while the app works on the request.
    permit: Option<Permit>,
    /// The slot lent to the relay of a buffered answer, which frees it once the app is done.
    lent_permit: Option<Lent<Permit>>,
    /// Reads (learned hints) or rewrites (script deferral) an HTML body, before compression.
    html_pass: Option<Box<hints::HtmlPass>>,
    /// The route's request body limit, counted as the body streams upstream.
    body_limit: Option<BodyLimit>,
    /// An upgrade request's place among its pool's upgraded connections (open after the 101).
    upgrade: Option<Place>,
    /// The current attempt's response head arrived (a failure after it is never retried).
    head_seen: bool,
    /// The request body received in full, until Pingora is given it to send upstream.
    buffered: Option<BufferedBody>,
    /// The length of a body received in full (sent with this `Content-Length`).
    buffered_len: Option<u64>,
    /// The app answered with a file for frontdoor to send (X-Sendfile, X-Accel-Redirect).
    sendfile: Option<sendfile::Pending>,
}

impl RequestCtx {
    /// The app switched protocols: the connection is a tunnel now, not a request.
    fn upgraded(&self) -> bool {
        self.upgrade.as_ref().is_some_and(Place::is_open)
    }

    /// The matched route as the hints module sees it.
    fn hints_match(&self) -> Option<hints::Matched<'_>> {
        self.route.as_ref().map(|m| hints::Matched {
            route: &m.route.name,
            hints: &m.route.hints,
            params: &m.params,
        })
    }
}

/// The proxy service.
pub struct Frontdoor {
    shared: Arc<Shared>,
}

impl Frontdoor {
    /// A proxy reading `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Frontdoor { shared }
    }
}

fn peer_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// A 1xx answer other than `101 Switching Protocols` (which ends the HTTP exchange): the
/// final answer follows it.
fn is_interim(response: &ResponseHeader) -> bool {
    response.status.is_informational() && response.status != http::StatusCode::SWITCHING_PROTOCOLS
}

/// Writes a small complete response; used for answers frontdoor gives itself.
async fn respond(
    session: &mut Session,
    status: u16,
    body: &'static str,
    request_id: &str,
) -> Result<()> {
    let mut head = ResponseHeader::build(status, Some(4))?;
    head.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    head.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    head.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    head.set(headers::X_REQUEST_ID, request_id);
    session.write_response_header(Box::new(head), false).await?;
    session
        .write_response_body(Some(Bytes::from_static(body.as_bytes())), true)
        .await
}

#[async_trait]
impl ProxyHttp for Frontdoor {
    type CTX = RequestCtx;

    /// No downstream modules: Pingora's default adds its compression module (disabled), which
    /// would cost every request a context and its filter calls; frontdoor compresses itself
    /// ([`compression`]).
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            arrival: SystemTime::now(),
            started: Instant::now(),
            ready: Instant::now(),
            host: None,
            route: None,
            pool: None,
            request_id: String::new(),
            trusted: false,
            attempts: Attempts::default(),
            upstream_started: None,
            counted: false,
            compressor: None,
            cache_key: None,
            fill: None,
            flight: None,
            permit: None,
            lent_permit: None,
            html_pass: None,
            body_limit: None,
            upgrade: None,
            head_seen: false,
            buffered: None,
            buffered_len: None,
            sendfile: None,
        }
    }

    /// Stamps the arrival time: the request head has just been read. The body that may follow
    /// gets `body-timeout` for each read.
    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.arrival = SystemTime::now();
        ctx.started = Instant::now();
        ctx.ready = ctx.started;
        ctx.counted = true;
        self.shared.metrics.request_started();
        let body_timeout = self.shared.snapshot.load().config.limits.body_timeout;
        session.set_read_timeout(Some(body_timeout));
        // HTTP/1.1 requests written back to back are answered one after the other, in order
        // (RFC 9112 §9.3.2); without this Pingora drops what follows the first request.
        session.set_pipelining_enabled(true);
        Ok(())
    }

    /// Routes the request. `Ok(true)` = a response was already written: a hostile or
    /// oversized head (400, 414, 431) or declared body (413), no route (404), a
    /// job's status, an offloaded request's 202 (it never takes a slot), an asset or an
    /// edge-cache entry from memory, a buffered body that stalled (408) or grew over its
    /// limit (413), a shed request (503). A request going upstream may get `103 Early Hints`
    /// first; on a buffering route its whole body is received (after `100 Continue` if the
    /// client waits for one) before it waits for a slot.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        self.route_and_admit(session, ctx).await
    }

    /// Counts the request body against the route's `max-body` as it streams (a chunked body
    /// declares no length); over it, the request fails with 413. An upgraded connection's
    /// bytes are not a body.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.upgraded() {
            return Ok(());
        }
        match (ctx.body_limit.as_mut(), body.as_ref()) {
            (Some(limit), Some(chunk)) => limit.stream(chunk.len(), &self.shared.metrics),
            _ => Ok(()),
        }
    }

    /// The backend of the route's pool: the admission slot's, else the pool's choice (least
    /// busy, round robin or hash) among backends up; on a retry, one not tried yet.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let pool = ctx
            .pool
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no pool"))?;
        ctx.upstream_started = Some(Instant::now());
        if let Some(lent) = ctx.lent_permit.take() {
            // A retry: the last attempt's answer never completed, so its relay kept the slot.
            ctx.permit = ctx.permit.take().or_else(|| lent.take());
        }
        let peer = pool.peer(&mut ctx.attempts);
        // A retry on another backend takes the admission slot with it.
        if let (Some(permit), Some(addr)) = (ctx.permit.as_mut(), ctx.attempts.current()) {
            permit.move_to(addr);
        }
        Ok(peer)
    }

    /// A failed connect counts toward the backend's ejection and is retried on another
    /// backend that is up, whatever the method: nothing was sent, so nothing can run twice.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(pool) = &ctx.pool {
            self.shared.metrics.upstream_connect_failed(pool.name());
            let again = pool.connect_failed(&ctx.attempts);
            if again {
                self.shared
                    .metrics
                    .upstream_retry(pool.name(), Retry::ConnectFailed);
            }
            e.set_retry(again);
        }
        e
    }

    /// A failure after connecting: sent again once, on a new connection, only when a reused
    /// connection failed before the response head and the method is idempotent
    /// ([`crate::upstream::reuse`]); anything else is final (never Pingora's up to 16 tries).
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let again = self.resend(session, &e, ctx, client_reused);
        e.set_retry(again);
        e
    }

    /// A connect succeeded: the backend's run of connect failures ends.
    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(pool) = &ctx.pool {
            pool.connected(&ctx.attempts);
        }
        Ok(())
    }

    /// Tells the app where the request came from and when it arrived.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.forwarding(session, ctx).apply(upstream);
        if let Some(length) = ctx.buffered_len {
            request_buffering::frame_upstream(upstream, length)?;
        }
        sendfile::announce(
            upstream,
            self.shared.snapshot.load().config.sendfile.as_ref(),
        );
        if ctx.cache_key.is_some() {
            // A fill needs the whole answer, not a 304 or a slice for this one client (as nginx's
            // proxy_cache does).
            edge_cache::policy::strip_conditionals(upstream);
        }
        Ok(())
    }

    /// Reads the app's answer ahead of the client (buffering::response), except on routes
    /// with `response-buffering = false` and for upgrades; the slot goes with the relay,
    /// which frees it once the app's last byte is in.
    fn upstream_response_tasks(
        &self,
        session: &mut Session,
        upstream: tokio::sync::mpsc::Receiver<HttpTask>,
        ctx: &mut RequestCtx,
    ) -> (
        tokio::sync::mpsc::Receiver<HttpTask>,
        Option<crate::buffering::response::RelayFuture>,
    ) {
        let buffered = ctx
            .route
            .as_ref()
            .is_some_and(|m| m.route.response_buffering);
        let upgrade = session
            .req_header()
            .headers
            .contains_key(http::header::UPGRADE);
        if !buffered || upgrade {
            return (upstream, None);
        }
        let lent = ctx.permit.take().map(Lent::new);
        ctx.lent_permit.clone_from(&lent);
        let (receiver, relay) = self.shared.response_buffers.relay(upstream, move || {
            drop(lent.and_then(|lent| lent.take()));
        });
        (receiver, Some(relay))
    }

    /// Times the backend and drops its hop-by-hop fields. The app's own 1xx (Rails'
    /// `send_early_hints`) is relayed as it is, minus hop-by-hop fields.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.head_seen = true;
        if is_interim(upstream) {
            // An interim answer (102, Rails' 103) is relayed as the app sent it, minus
            // hop-by-hop fields.
            headers::strip_hop_by_hop(upstream);
            return Ok(());
        }
        if let (Some(pool), Some(started)) = (&ctx.pool, ctx.upstream_started) {
            self.shared
                .metrics
                .upstream_responded(pool.name(), started.elapsed());
        }
        if upstream.status != http::StatusCode::SWITCHING_PROTOCOLS {
            headers::strip_hop_by_hop(upstream);
        }
        // Where frontdoor holds the queue it reports queue time itself: the app's own figure
        // goes to the metrics, not to the client.
        if let Some(pool) = ctx.pool.as_ref().filter(|p| p.admission().is_some()) {
            if let Some(queued) = admission::server_timing::take_queue_time(upstream) {
                self.shared.metrics.app_queued(pool.name(), queued);
            }
        }
        self.divert_to_sendfile(upstream, ctx)
    }

    /// Returns the request id to the client; adds `Link` hints to HTML; drops what the edge
    /// cache holds for the URL of a successful unsafe request; starts an edge-cache fill of a
    /// storable answer (hints included); chooses compression for dynamic text (HEAD gets the
    /// fields GET would, a 304 those of the 200 it confirms). Interim answers pass untouched.
    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.prepare_response(session, response, ctx)
    }

    /// Reads or rewrites HTML (hints), copies a storable answer into the edge cache, then
    /// compresses the body chosen in `response_filter`, chunk by chunk.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        self.prepare_body(body, end_of_stream, ctx)
    }

    /// Errors before a response: 504 for upstream timeouts (as nginx), 502 for other upstream
    /// failures, 400 for a malformed request. The connection is closed after it, and the
    /// answer says so (`Connection: close`), so a client does not send its next request on it.
    /// An answer that named a file ends here too: the file is sent.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        self.answer_failure(session, e, ctx).await
    }

    /// A file sent for the app ended the proxying on purpose: not an error.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        sendfile::is_diverted(error)
    }

    /// Metrics and the access log.
    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        if !ctx.counted {
            return;
        }
        let error = error.filter(|e| !sendfile::is_diverted(e));
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let route = ctx.route.as_ref().map_or(NO_ROUTE, |m| &m.route.name);
        let elapsed = ctx.started.elapsed();
        if !ctx.upgraded() {
            // An upgraded connection's request was counted at its 101.
            self.shared.metrics.request_finished(route, status, elapsed);
        }
        let head = session.req_header();
        tracing::info!(
            target: crate::accesslog::TARGET,
            client = %peer_ip(session).map_or_else(|| "-".to_string(), |ip| ip.to_string()),
            method = %head.method,
            path = %head.uri.path(),
            proto = if session.is_http2() { "h2" } else { "http/1.1" },
            status,
            route,
            duration_ms = %format_args!("{:.3}", elapsed.as_secs_f64() * 1000.0),
            attempts = ctx.attempts.made,
            request_id = %ctx.request_id,
            error = error.map(|e| e.etype().as_str()),
        );
    }
}
