//! The `ProxyHttp` implementation: phases in lifecycle order, each a few lines that call the
//! modules doing the work. Read this file as frontdoor's table of contents.

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::protocols::http::HttpTask;
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::admission::{self, Permit};
use crate::assets;
use crate::buffering::request::{self as request_buffering, BufferedBody, Received};
use crate::buffering::response::Lent;
use crate::compression::{self, Compressor};
use crate::edge_cache::{self, EdgeCache, Fill, Joined, Lookup, Origin, Revalidated};
use crate::error_pages::Why;
use crate::headers::{self, Forwarding, HeaderEdit};
use crate::hints;
use crate::hostile::{self, BodyLimit, Rejection};
use crate::jobs;
use crate::metrics::{Retry, NO_ROUTE};
use crate::routing::RouteMatch;
use crate::sendfile;
use crate::snapshot::Shared;
use crate::upgraded::{self, Place};
use crate::upstream::{Attempts, Pool};

mod own_answers;
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
        let retry_after = Some(retry_after.as_secs().max(1));
        self.error_page(session, ctx, Why::NoBackend, retry_after)
            .await?;
        Ok(true)
    }

    /// Receives the whole request body of a route that buffers bodies, before the request
    /// takes a slot (`Ok(false)`); `Ok(true)` = answered 408 (a read stalled past
    /// `body-timeout`) or 413 (more than `max-body` arrived).
    async fn buffer_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        settings: &request_buffering::Settings,
        timeout: std::time::Duration,
    ) -> Result<bool> {
        let (Some(matched), Some(limit)) = (&ctx.route, ctx.body_limit) else {
            return Ok(false);
        };
        if !matched.route.request_buffering || !request_buffering::has_body(session) {
            return Ok(false);
        }
        let buffers = &self.shared.request_buffers;
        match request_buffering::receive(session, limit, settings, buffers, timeout).await? {
            Received::Body(body) => {
                // The request arrives now as the app sees it (`X-Request-Start`, as nginx
                // stamps it after buffering) and as the queue measures it.
                ctx.arrival = SystemTime::now();
                ctx.ready = Instant::now();
                ctx.buffered_len = Some(body.len());
                ctx.buffered = Some(body);
                Ok(false)
            }
            Received::TimedOut => self.reject(session, ctx, Rejection::BodyTimeout).await,
            Received::TooLarge => self.reject(session, ctx, Rejection::BodyTooLarge).await,
        }
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
            .admit_preferring(matched.route.priority, ctx.ready, prefer)
            .await
        {
            Ok(permit) => {
                ctx.attempts.start_on(permit.backend());
                ctx.permit = Some(permit);
                Ok(false)
            }
            Err(shed) => {
                let retry_after = admission::retry_after_secs(admission.settings().retry_after);
                let why = Why::Busy(shed.reason());
                self.error_page(session, ctx, why, Some(retry_after))
                    .await?;
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
                self.shared.edge_cache.finish_fill(name, *fill);
            }
        }
    }

    /// A GET/HEAD on an edge-cache route answered from memory (`Ok(true)`), after revalidating
    /// a stale entry with the app if need be; a GET that misses is marked for filling and
    /// proxied (`Ok(false)`). Misses and revalidations of one key are collapsed: the first
    /// goes to the app, the others wait for it (bounded) and look again.
    async fn serve_cached(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let (Some(matched), Some(pool)) = (&ctx.route, &ctx.pool) else {
            return Ok(false);
        };
        let Some(rules) = &matched.route.cache else {
            return Ok(false);
        };
        let name = matched.route.name.clone();
        let head = session.req_header();
        if edge_cache::policy::request(rules, &head.method, &head.headers).is_err() {
            self.shared.metrics.edge_cache_request(&name, "bypass");
            return Ok(false);
        }
        let is_get = head.method == http::Method::GET;
        let path_and_query = head
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let key = EdgeCache::key(&name, rules, ctx.host.as_deref(), &path_and_query);
        let cache = &self.shared.edge_cache;
        let origin = |session: &Session, ctx: &RequestCtx| -> Result<Origin> {
            let mut request = edge_cache::revalidation_request(
                session.req_header(),
                &path_and_query,
                ctx.host.as_deref(),
            )?;
            self.forwarding(session, ctx).apply(&mut request);
            Ok(Origin {
                route_name: name.clone(),
                route: rules.clone(),
                pool: pool.clone(),
                request,
            })
        };
        let mut waited = false;
        let (entry, status) = loop {
            match cache.lookup(&key, &session.req_header().headers) {
                Lookup::Hit(entry) => break (entry, assets::CacheStatus::Hit),
                Lookup::Stale(entry) => {
                    cache.refresh_in_background(key.clone(), &entry, origin(session, ctx)?);
                    break (entry, assets::CacheStatus::Stale);
                }
                Lookup::Revalidate(entry, stale_if_error) => {
                    let guard = match cache.join(&key) {
                        Joined::Follower(done) if !waited => {
                            edge_cache::collapse::wait(done, edge_cache::collapse::WAIT).await;
                            waited = true;
                            continue;
                        }
                        Joined::Follower(_) => None,
                        Joined::Leader(guard) => Some(guard),
                    };
                    // Boxed: a revalidation's future (a request to the app) is several KB,
                    // and every hit would otherwise carry it and have it copied.
                    let origin = origin(session, ctx)?;
                    let outcome = Box::pin(cache.revalidate(&key, &entry, &origin)).await;
                    drop(guard);
                    self.shared
                        .metrics
                        .edge_cache_refreshed(&name, outcome.label());
                    match outcome {
                        Revalidated::NotModified(fresh) => {
                            break (fresh, assets::CacheStatus::Revalidated)
                        }
                        Revalidated::Stored(fresh) | Revalidated::Uncacheable(fresh) => {
                            break (fresh, assets::CacheStatus::Miss)
                        }
                        Revalidated::Failed(why, answer) => {
                            tracing::info!("revalidating {path_and_query} failed: {why}");
                            match answer {
                                _ if stale_if_error => break (entry, assets::CacheStatus::Stale),
                                Some(answer) => break (answer, assets::CacheStatus::Miss),
                                // The proxy answers the failure (502/504) as usual.
                                None => return Ok(false),
                            }
                        }
                        Revalidated::TooLarge => return Ok(false),
                    }
                }
                Lookup::Miss => {
                    if !waited {
                        // A HEAD fills nothing: it only waits for a GET's fill.
                        let joined = if is_get {
                            Some(cache.join(&key))
                        } else {
                            cache.follow(&key).map(Joined::Follower)
                        };
                        match joined {
                            Some(Joined::Leader(guard)) => ctx.flight = Some(guard),
                            Some(Joined::Follower(done)) => {
                                edge_cache::collapse::wait(done, edge_cache::collapse::WAIT).await;
                                waited = true;
                                continue;
                            }
                            None => {}
                        }
                    }
                    self.shared.metrics.edge_cache_request(&name, "miss");
                    if is_get {
                        ctx.cache_key = Some(key);
                    }
                    return Ok(false);
                }
            }
        };
        let result = match status {
            assets::CacheStatus::Hit => "hit",
            assets::CacheStatus::Stale => "stale",
            assets::CacheStatus::Revalidated => "revalidated",
            assets::CacheStatus::Miss => "miss",
        };
        self.shared.metrics.edge_cache_request(&name, result);
        let x_cache = rules.x_cache_header.then_some(status);
        edge_cache::respond(session, &entry, x_cache, &ctx.request_id).await?;
        Ok(true)
    }

    /// What the app is told about where a request came from.
    fn forwarding<'a>(&self, session: &Session, ctx: &'a RequestCtx) -> Forwarding<'a> {
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
    }

    /// After a successful unsafe request, drops what the edge cache holds for its URL and for
    /// the same-host URLs its `Location` and `Content-Location` name (RFC 9111 §4.4).
    fn invalidate_after(
        &self,
        request: &RequestHeader,
        response: &ResponseHeader,
        host: Option<&str>,
    ) {
        let snapshot = self.shared.snapshot.load();
        let own = request.uri.path_and_query().map(|p| p.as_str().to_string());
        for path_and_query in own
            .into_iter()
            .chain(edge_cache::named_locations(response, host))
        {
            let path = path_and_query.split('?').next().unwrap_or("/");
            let Some(found) = snapshot.routes.lookup(host, &http::Method::GET, path) else {
                continue;
            };
            if let Some(rules) = &found.route.cache {
                let key = EdgeCache::key(&found.route.name, rules, host, &path_and_query);
                self.shared.edge_cache.invalidate(&key);
            }
        }
    }
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
        // Each feature's future is boxed where it is awaited, and only for requests that use
        // the feature: awaited inline, the largest of them would size this phase's future
        // (moved into its box on every request, ~20 KB copied); boxed unconditionally, every
        // request would pay for it anyway.
        let jobs = self.shared.jobs.as_deref();
        let pages = &snapshot.config.error_pages;
        if jobs::http::is_status_path(session.req_header().uri.path())
            && Box::pin(jobs::http::serve_status(
                session,
                jobs,
                pages,
                &ctx.request_id,
            ))
            .await?
        {
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
        let in_maintenance = ctx
            .pool
            .as_ref()
            .is_some_and(|p| self.shared.operations.in_maintenance(p.name()));
        if in_maintenance && Box::pin(self.maintenance(session, ctx)).await? {
            return Ok(true);
        }
        if let (Some(matched), Some(jobs)) = (&ctx.route, jobs) {
            if let Some(offload) = &matched.route.offload {
                let (route, params) = (&matched.route.name, &matched.params);
                let body_timeout = limits.body_timeout;
                let matched = jobs::http::Matched {
                    route,
                    params,
                    offload,
                };
                let pages = &snapshot.config.error_pages;
                Box::pin(jobs::http::offload(
                    session,
                    jobs,
                    matched,
                    body_timeout,
                    pages,
                    &ctx.request_id,
                ))
                .await?;
                return Ok(true);
            }
        }
        let (assets, cache, buffering) = ctx.route.as_ref().map_or((false, false, false), |m| {
            let route = &m.route;
            (
                route.assets.is_some(),
                route.cache.is_some(),
                route.request_buffering,
            )
        });
        if assets && Box::pin(self.serve_asset(session, ctx)).await? {
            return Ok(true);
        }
        if cache && Box::pin(self.serve_cached(session, ctx)).await? {
            return Ok(true);
        }
        if self.unavailable(session, ctx).await? {
            return Ok(true);
        }
        if upgraded::requested(session.req_header()) {
            // No 103 before a 101; the slot is held until the app has switched protocols.
            if Box::pin(self.reserve_upgrade(session, ctx)).await? {
                return Ok(true);
            }
        } else {
            let (learned, metrics) = (&self.shared.learned, &self.shared.metrics);
            hints::send_early(session, ctx.hints_match(), learned, metrics).await?;
        }
        let settings = &snapshot.config.request_buffering;
        if buffering
            && Box::pin(self.buffer_body(session, ctx, settings, limits.body_timeout)).await?
        {
            return Ok(true);
        }
        if self.admit(session, ctx).await? {
            return Ok(true);
        }
        // Given only once admitted: a body Pingora has not replayed yet is "unfinished", and
        // an answer then (a shed 503) would close the connection.
        match ctx.buffered.take() {
            Some(body) => request_buffering::replay(session, body).map(|()| false),
            None => Ok(false),
        }
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
        if is_interim(response) {
            return Ok(());
        }
        response.set(headers::X_REQUEST_ID, &ctx.request_id);
        if response.status == http::StatusCode::SWITCHING_PROTOCOLS {
            self.switched(session, ctx);
            return Ok(());
        }
        let request = session.req_header();
        let (learned, metrics) = (&self.shared.learned, &self.shared.metrics);
        ctx.html_pass = hints::on_response(request, response, ctx.hints_match(), learned, metrics);
        let status = response.status.as_u16();
        if edge_cache::policy::is_unsafe(&request.method) && edge_cache::invalidates(status) {
            self.invalidate_after(request, response, ctx.host.as_deref());
        }
        if let (Some(key), Some(matched)) = (ctx.cache_key.take(), &ctx.route) {
            if let Some(rules) = &matched.route.cache {
                let waited = ctx
                    .upstream_started
                    .map_or(std::time::Duration::ZERO, |t| t.elapsed());
                // Boxed: large, and only for edge-cache misses (see `RequestCtx::fill`).
                ctx.fill = self
                    .shared
                    .edge_cache
                    .begin_fill(
                        &matched.route.name,
                        rules,
                        key,
                        &request.headers,
                        response,
                        waited,
                        ctx.flight.take(),
                    )
                    .map(Box::new);
                if rules.x_cache_header {
                    response.set("x-cache", assets::CacheStatus::Miss.as_str());
                }
            }
        }
        // Waiters for a fill that did not start look again now.
        ctx.flight = None;
        let accept = request
            .headers
            .get(http::header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok());
        let head_request = request.method == http::Method::HEAD;
        if let Some(encoding) = compression::choose(accept, response) {
            compression::rewrite_head(response, encoding);
            if !head_request {
                ctx.compressor = Compressor::new(encoding);
            }
        } else if status == 304 {
            let if_none_match = request
                .headers
                .get(http::header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok());
            compression::rewrite_not_modified(accept, if_none_match, response);
        }
        if headers::frame_rewritten_body(response, session.req_header()) {
            session.set_keepalive(None);
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
        if ctx.upgraded() {
            return Ok(None);
        }
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
            // the client has read the rest (a buffered answer's relay freed it earlier still).
            ctx.permit = None;
            if let Some(lent) = ctx.lent_permit.take() {
                drop(lent.take());
            }
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
    /// failures, 400 for a malformed request. The connection is closed after it, and the
    /// answer says so (`Connection: close`), so a client does not send its next request on it.
    /// An answer that named a file ends here too: the file is sent.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        if ctx.upgraded() {
            // An upgraded connection ended (idle timeout, a side gone): it carries another
            // protocol now, so no HTTP answer can be written on it.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        if let Some(pending) = ctx.sendfile.take() {
            return self.send_file(session, pending, ctx).await;
        }
        let code = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(code)) => *code,
            (
                ErrorSource::Upstream,
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
            ) => 504,
            (ErrorSource::Upstream, _) => 502,
            // A buffered request body frontdoor could not write or read back.
            (_, ErrorType::FileWriteError | ErrorType::FileReadError) => 500,
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
            session.set_keepalive(None);
        }
        let written = match code {
            0 => Ok(()),
            502 => self.error_page(session, ctx, Why::BadGateway, None).await,
            504 => {
                self.error_page(session, ctx, Why::GatewayTimeout, None)
                    .await
            }
            500 => self.error_page(session, ctx, Why::Internal, None).await,
            400 => respond(session, code, "bad request\n", &ctx.request_id).await,
            408 => respond(session, code, "request timeout\n", &ctx.request_id).await,
            413 => {
                respond(
                    session,
                    code,
                    Rejection::BodyTooLarge.body(),
                    &ctx.request_id,
                )
                .await
            }
            _ => respond(session, code, "error\n", &ctx.request_id).await,
        };
        if let Err(write_error) = written {
            tracing::debug!("could not send the {code} response: {write_error}");
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
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
