//! The work of `request_filter` (its contract is on the phase), and what the app is told
//! about where a request came from.

use pingora::http::RequestHeader;
use pingora::prelude::Session;
use pingora::Result;

use super::{peer_ip, respond, Frontdoor, RequestCtx};
use crate::buffering::request as request_buffering;
use crate::headers::{self, Forwarding};
use crate::hints;
use crate::hostile;
use crate::jobs;
use crate::upgraded;

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

impl Frontdoor {
    /// `request_filter`, step by step: `Ok(true)` = a response was already written.
    pub(super) async fn route_and_admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
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

    /// What the app is told about where a request came from.
    pub(super) fn forwarding<'a>(&self, session: &Session, ctx: &'a RequestCtx) -> Forwarding<'a> {
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
}
