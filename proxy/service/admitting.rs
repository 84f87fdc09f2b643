//! What `request_filter` does before a request goes to the app: refuse it, answer 503 when
//! no backend is up, receive a buffered body, take an admission slot (the rules:
//! [`crate::hostile`], [`crate::buffering::request`], [`crate::admission`]).

use pingora::prelude::Session;
use pingora::Result;
use std::time::{Instant, SystemTime};

use super::{peer_ip, respond, Frontdoor, RequestCtx, NO_BACKEND_RETRY_AFTER};
use crate::admission;
use crate::buffering::request::{self as request_buffering, Received};
use crate::error_pages::Why;
use crate::hostile::Rejection;

impl Frontdoor {
    /// Answers a refused request (`Ok(true)`), counts it, and closes the connection after it:
    /// what follows a hostile head on the same connection cannot be trusted.
    pub(super) async fn reject(
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
    pub(super) async fn unavailable(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
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
    pub(super) async fn buffer_body(
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
    pub(super) async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
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
}
