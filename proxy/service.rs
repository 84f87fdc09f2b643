//! The `ProxyHttp` implementation: phases in lifecycle order, each a few lines that call the
//! modules doing the work. Read this file as frontdoor's table of contents.

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::admission::{self, Permit};
use crate::assets;
use crate::compression::{self, Compressor};
use crate::edge_cache::{self, EdgeCache, Fill, Origin};
use crate::headers::{self, Forwarding, HeaderEdit};
use crate::hints;
use crate::hostile::{self, BodyLimit, Rejection};
use crate::jobs;
use crate::metrics::NO_ROUTE;
use crate::routing::RouteMatch;
use crate::snapshot::Shared;
use crate::upstream::{Attempts, Pool};

/// `Retry-After` of the 503 a pool without admission answers when no backend is up.
const NO_BACKEND_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Per-request facts, computed once.
pub struct RequestCtx {
    /// Wall-clock arrival of the request head (what `X-Request-Start` reports).
    arrival: SystemTime,
    /// Monotonic arrival, for durations.
    started: Instant,
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
    /// The answer being copied into the edge cache.
    fill: Option<Fill>,
    /// The admission slot held while the app works on the request.
    permit: Option<Permit>,
    /// Reads (learned hints) or rewrites (script deferral) an HTML body, before compression.
    html_pass: Option<hints::HtmlPass>,
    /// The route's request body limit, counted as the body streams upstream.
    body_limit: Option<BodyLimit>,
}

impl RequestCtx {
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

/// Whether the request came over TLS (the HTTPS listener), not plain HTTP (`http-mode =
/// "serve"` behind a balancer).
fn arrived_over_tls(session: &Session) -> bool {
    session
        .digest()
        .is_some_and(|digest| digest.ssl_digest.is_some())
}

/// The requested host, lowercase and without port: `:authority` on h2, `Host` on h1.
fn request_host(head: &RequestHeader) -> Option<String> {
    let raw = head.uri.host().map(str::to_string).or_else(|| {
        head.headers
            .get(http::header::HOST)?
            .to_str()
            .ok()
            .map(str::to_string)
    })?;
    let name = match raw.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6).to_string(),
        None => raw
            .rsplit_once(':')
            .map_or(raw.as_str(), |(n, _)| n)
            .to_string(),
    };
    Some(name.to_ascii_lowercase())
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

impl Frontdoor {
    /// A fingerprinted GET/HEAD on an asset route is answered from memory (`Ok(true)`);
    /// anything else, or an asset the cache bypasses, is left to the proxy (`Ok(false)`).
    async fn serve_asset(&self, session: &mut Session, ctx: &RequestCtx) -> Result<bool> {
        let (Some(matched), Some(pool)) = (&ctx.route, &ctx.pool) else {
            return Ok(false);
        };
        let Some(asset_route) = &matched.route.assets else {
            return Ok(false);
        };
        let head = session.req_header();
        let readable = head.method == http::Method::GET || head.method == http::Method::HEAD;
        if !readable || !assets::is_fingerprinted(head.uri.path()) {
            return Ok(false);
        }
        let path = head.uri.path().to_string();
        let name = &matched.route.name;
        match self
            .shared
            .assets
            .get(name, asset_route, &path, ctx.host.as_deref(), pool)
            .await
        {
            Ok((asset, status)) => {
                let result = if status == assets::CacheStatus::Hit {
                    "hit"
                } else {
                    "miss"
                };
                self.shared.metrics.asset_request(name, result);
                let x_cache = asset_route.x_cache_header.then_some(status);
                assets::respond(session, &asset, x_cache, &ctx.request_id).await?;
                Ok(true)
            }
            Err(bypass) => {
                self.shared.metrics.asset_request(name, "bypass");
                tracing::debug!("asset {path} proxied: {bypass}");
                Ok(false)
            }
        }
    }
}

impl Frontdoor {
    /// Answers a refused request (`Ok(true)`), counts it, and closes the connection after it:
    /// what follows a hostile head on the same connection cannot be trusted.
    async fn reject(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        rejection: Rejection,
    ) -> Result<bool> {
        self.shared.metrics.rejected(rejection.reason());
        tracing::debug!("request refused: {}", rejection.detail());
        session.set_keepalive(None);
        let status = rejection.status();
        respond(session, status, rejection.body(), &ctx.request_id).await?;
        Ok(true)
    }

    /// Answers 503 at once, without trying to connect, when every backend of the route's
    /// pool is down or draining (`Ok(true)`); else prepares the backend attempts.
    async fn unavailable(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(pool) = &ctx.pool else {
            return Ok(false);
        };
        ctx.attempts = pool.attempts_for(session.req_header(), peer_ip(session));
        if pool.any_up() {
            return Ok(false);
        }
        let retry_after = pool
            .admission()
            .map_or(NO_BACKEND_RETRY_AFTER, |a| a.settings().retry_after);
        let mut head = ResponseHeader::build(503, Some(5))?;
        let body = "service unavailable: no backend is up\n";
        head.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
        head.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        head.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        head.insert_header(
            http::header::RETRY_AFTER,
            retry_after.as_secs().max(1).to_string(),
        )?;
        head.set(headers::X_REQUEST_ID, &ctx.request_id);
        session.write_response_header(Box::new(head), false).await?;
        session
            .write_response_body(Some(Bytes::from_static(body.as_bytes())), true)
            .await?;
        Ok(true)
    }

    /// Takes a slot of the route's pool, waiting in its queue if need be (`Ok(false)`), or
    /// answers 503 when admission control sheds the request (`Ok(true)`).
    async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let (Some(matched), Some(pool)) = (&ctx.route, &ctx.pool) else {
            return Ok(false);
        };
        let Some(admission) = pool.admission() else {
            return Ok(false);
        };
        let prefer = pool.preferred(&ctx.attempts);
        match admission
            .admit_preferring(matched.route.priority, ctx.started, prefer)
            .await
        {
            Ok(permit) => {
                ctx.attempts.start_on(permit.backend());
                ctx.permit = Some(permit);
                Ok(false)
            }
            Err(shed) => {
                let retry_after = admission.settings().retry_after;
                admission::respond_shed(session, shed, retry_after, &ctx.request_id).await?;
                Ok(true)
            }
        }
    }

    /// Appends a chunk of the upstream's answer to the fill; stores it at the end of the body.
    fn fill_cache(&self, chunk: Option<&Bytes>, end_of_stream: bool, ctx: &mut RequestCtx) {
        let (Some(fill), Some(matched)) = (ctx.fill.as_mut(), &ctx.route) else {
            return;
        };
        let name = &matched.route.name;
        if chunk.is_some_and(|c| !fill.push(c)) {
            let too_large = edge_cache::Uncacheable::TooLarge.to_string();
            self.shared.metrics.edge_cache_uncacheable(name, &too_large);
            ctx.fill = None;
        } else if end_of_stream {
            if let Some(fill) = ctx.fill.take() {
                self.shared.edge_cache.finish_fill(name, fill);
            }
        }
    }

    /// A GET/HEAD on an edge-cache route answered from memory (`Ok(true)`); a GET that
    /// misses is marked for filling and proxied (`Ok(false)`).
    async fn serve_cached(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let (Some(matched), Some(pool)) = (&ctx.route, &ctx.pool) else {
            return Ok(false);
        };
        let Some(rules) = &matched.route.cache else {
            return Ok(false);
        };
        let name = &matched.route.name;
        let head = session.req_header();
        if edge_cache::policy::request(rules, &head.method, &head.headers).is_err() {
            self.shared.metrics.edge_cache_request(name, "bypass");
            return Ok(false);
        }
        let path_and_query = head.uri.path_and_query().map_or("/", |p| p.as_str());
        let key = EdgeCache::key(name, rules, ctx.host.as_deref(), path_and_query);
        let origin = || Origin {
            route_name: name.clone(),
            route: rules.clone(),
            pool: pool.clone(),
            host: ctx.host.clone(),
            path_and_query: path_and_query.to_string(),
        };
        let Some((entry, status)) = self.shared.edge_cache.find(&key, origin).await else {
            self.shared.metrics.edge_cache_request(name, "miss");
            if head.method == http::Method::GET {
                ctx.cache_key = Some(key);
            }
            return Ok(false);
        };
        let result = match status {
            assets::CacheStatus::Hit => "hit",
            assets::CacheStatus::Stale => "stale",
            assets::CacheStatus::Miss => "miss",
        };
        self.shared.metrics.edge_cache_request(name, result);
        let x_cache = rules.x_cache_header.then_some(status);
        edge_cache::respond(session, &entry, x_cache, &ctx.request_id).await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for Frontdoor {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            arrival: SystemTime::now(),
            started: Instant::now(),
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
            permit: None,
            html_pass: None,
            body_limit: None,
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
        ctx.counted = true;
        self.shared.metrics.request_started();
        let body_timeout = self.shared.snapshot.load().config.limits.body_timeout;
        session.set_read_timeout(Some(body_timeout));
        Ok(())
    }

    /// Routes the request. `Ok(true)` = a response was already written: a hostile or
    /// oversized head (400, 414, 431) or declared body (413), no route (404), a
    /// job's status, an offloaded request's 202 (it never takes a slot), an asset or an
    /// edge-cache entry from memory, a shed request (503). A request going upstream may get
    /// `103 Early Hints` first, before it waits for a slot.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.shared.snapshot.load_full();
        ctx.trusted = headers::is_trusted(peer_ip(session), snapshot.trusted_proxies());
        ctx.request_id = session
            .req_header()
            .headers
            .get(headers::X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|id| ctx.trusted && headers::acceptable_request_id(id))
            .map_or_else(headers::new_request_id, str::to_string);
        let limits = &snapshot.config.limits;
        if let Err(rejection) = hostile::screen_head(session, limits) {
            return self.reject(session, ctx, rejection).await;
        }
        let jobs = self.shared.jobs.as_deref();
        if jobs::http::serve_status(session, jobs, &ctx.request_id).await? {
            return Ok(true);
        }
        let acme_answer = self
            .shared
            .acme_challenges
            .as_ref()
            .and_then(|c| c.http_answer(session.req_header().uri.path()));
        if let Some(key_authorization) = acme_answer {
            // HTTP-01 on a plain listener that serves (`http-mode = "serve"`).
            crate::acme::challenge::respond(session, key_authorization).await?;
            return Ok(true);
        }
        let head = session.req_header();
        let health = snapshot.config.health_path.as_deref();
        let readable = head.method == http::Method::GET || head.method == http::Method::HEAD;
        if readable && health == Some(head.uri.path()) {
            respond(session, 200, "ok\n", &ctx.request_id).await?;
            return Ok(true);
        }
        ctx.host = request_host(head);
        ctx.route = snapshot
            .routes
            .lookup(ctx.host.as_deref(), &head.method, head.uri.path());
        ctx.pool = ctx
            .route
            .as_ref()
            .and_then(|m| snapshot.pools.get(m.route.pool.as_ref()).cloned());
        if ctx.pool.is_none() {
            respond(session, 404, "no route for this request\n", &ctx.request_id).await?;
            return Ok(true);
        }
        let route_max = ctx.route.as_ref().and_then(|m| m.route.max_body);
        match hostile::body_limit(session.req_header(), route_max, limits) {
            Ok(limit) => ctx.body_limit = Some(limit),
            Err(rejection) => return self.reject(session, ctx, rejection).await,
        }
        if let (Some(matched), Some(jobs)) = (&ctx.route, jobs) {
            if let Some(offload) = &matched.route.offload {
                let (route, params) = (&matched.route.name, &matched.params);
                jobs::http::offload(session, jobs, route, params, offload, &ctx.request_id).await?;
                return Ok(true);
            }
        }
        if self.serve_asset(session, ctx).await? || self.serve_cached(session, ctx).await? {
            return Ok(true);
        }
        if self.unavailable(session, ctx).await? {
            return Ok(true);
        }
        let (learned, metrics) = (&self.shared.learned, &self.shared.metrics);
        hints::send_early(session, ctx.hints_match(), learned, metrics).await?;
        self.admit(session, ctx).await
    }

    /// Counts the request body against the route's `max-body` as it streams (a chunked body
    /// declares no length); over it, the request fails with 413.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
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
            e.set_retry(pool.connect_failed(&ctx.attempts));
        }
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
        Forwarding {
            peer: peer_ip(session),
            trusted: ctx.trusted,
            arrival: ctx.arrival,
            scheme: if arrived_over_tls(session) {
                "https"
            } else {
                "http"
            },
            host: ctx.host.as_deref(),
            request_id: &ctx.request_id,
        }
        .apply(upstream);
        if ctx.cache_key.is_some() {
            // A fill needs the whole answer, not a 304 or a slice for this one client (as nginx's
            // proxy_cache does).
            edge_cache::policy::strip_conditionals(upstream);
        }
        Ok(())
    }

    /// Times the backend and drops its hop-by-hop fields. The app's own 1xx (Rails'
    /// `send_early_hints`) is relayed as it is, minus hop-by-hop fields.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if is_interim(upstream) {
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
        Ok(())
    }

    /// Returns the request id to the client; adds `Link` hints to HTML; starts an edge-cache
    /// fill of a storable answer (hints included); chooses compression for dynamic text. An
    /// interim answer (the app's 103) passes untouched: all of that is for the final one.
    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if is_interim(response) {
            return Ok(());
        }
        response.set(headers::X_REQUEST_ID, &ctx.request_id);
        let request = session.req_header();
        let (learned, metrics) = (&self.shared.learned, &self.shared.metrics);
        ctx.html_pass = hints::on_response(request, response, ctx.hints_match(), learned, metrics);
        if let (Some(key), Some(matched)) = (ctx.cache_key.take(), &ctx.route) {
            if let Some(rules) = &matched.route.cache {
                ctx.fill =
                    self.shared
                        .edge_cache
                        .begin_fill(&matched.route.name, rules, key, response);
                if rules.x_cache_header {
                    response.set("x-cache", assets::CacheStatus::Miss.as_str());
                }
            }
        }
        let accept = request
            .headers
            .get(http::header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok());
        if let Some(encoding) =
            compression::choose(request.method == http::Method::HEAD, accept, response)
        {
            compression::rewrite_head(response, encoding);
            ctx.compressor = Compressor::new(encoding);
        }
        Ok(())
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
        if let Some(matched) = &ctx.route {
            let (learned, metrics) = (&self.shared.learned, &self.shared.metrics);
            let route = &matched.route.name;
            hints::on_body(
                &mut ctx.html_pass,
                body,
                end_of_stream,
                route,
                learned,
                metrics,
            );
        }
        self.fill_cache(body.as_ref(), end_of_stream, ctx);
        if end_of_stream {
            // The app has answered in full: its slot goes to the next waiter now, not after
            // the client has read the answer.
            ctx.permit = None;
        }
        let Some(compressor) = ctx.compressor.as_mut() else {
            return Ok(None);
        };
        let failed = |e: std::io::Error| {
            Error::because(ErrorType::InternalError, "compressing the response", e)
        };
        let mut out = match body.take() {
            Some(chunk) => compressor.push(&chunk).map_err(failed)?,
            None => Bytes::new(),
        };
        if end_of_stream {
            if let Some(compressor) = ctx.compressor.take() {
                let (rest, outcome) = compressor.finish().map_err(failed)?;
                let route = ctx.route.as_ref().map_or(NO_ROUTE, |m| &m.route.name);
                self.shared.metrics.response_compressed(
                    route,
                    outcome.encoding.token(),
                    outcome.bytes_in,
                    outcome.bytes_out,
                );
                out = if out.is_empty() {
                    rest
                } else {
                    [out, rest].concat().into()
                };
            }
        }
        *body = (!out.is_empty() || end_of_stream).then_some(out);
        Ok(None)
    }

    /// Errors before a response: 504 for upstream timeouts (as nginx), 502 for other upstream
    /// failures, 400 for a malformed request.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(code)) => *code,
            (
                ErrorSource::Upstream,
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
            ) => 504,
            (ErrorSource::Upstream, _) => 502,
            (ErrorSource::Downstream, ErrorType::ReadTimedout) => {
                // A body slower than `body-timeout` between reads (as nginx's 408).
                self.shared.metrics.rejected("body_timeout");
                408
            }
            (
                ErrorSource::Downstream,
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
            ) => 0,
            (ErrorSource::Downstream, _) => {
                // A body Pingora could not frame (a bad chunk size): the head had passed.
                self.shared.metrics.rejected("malformed");
                400
            }
            _ => 500,
        };
        if code > 0 {
            let body = match code {
                502 => "bad gateway: the app could not be reached\n",
                504 => "gateway timeout: the app did not answer in time\n",
                400 => "bad request\n",
                408 => "request timeout\n",
                413 => Rejection::BodyTooLarge.body(),
                _ => "error\n",
            };
            if let Err(write_error) = respond(session, code, body, &ctx.request_id).await {
                tracing::debug!("could not send the {code} response: {write_error}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Metrics and the access log.
    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        if !ctx.counted {
            return;
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let route = ctx.route.as_ref().map_or(NO_ROUTE, |m| &m.route.name);
        let elapsed = ctx.started.elapsed();
        self.shared.metrics.request_finished(route, status, elapsed);
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
