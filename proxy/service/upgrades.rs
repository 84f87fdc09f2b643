//! The phases' helpers for upgraded connections and for requests lost on a kept-alive
//! connection (their rules: [`crate::upgraded`], [`crate::upstream::reuse`]).

use pingora::prelude::Session;
use pingora::{Error, ErrorSource, ErrorType, Result, RetryType};

use super::{Frontdoor, RequestCtx, NO_BACKEND_RETRY_AFTER};
use crate::metrics::{Retry, NO_ROUTE};
use crate::upgraded;
use crate::upstream::reuse;

impl Frontdoor {
    /// Takes a place among the pool's upgraded connections for an upgrade request
    /// (`Ok(false)`), or answers 503 when `max-upgraded` are open (`Ok(true)`).
    pub(super) async fn reserve_upgrade(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let Some(pool) = &ctx.pool else {
            return Ok(false);
        };
        let max = pool.settings().upgraded.max;
        ctx.upgrade = self.shared.upgraded.reserve(pool.name(), max);
        if ctx.upgrade.is_some() {
            return Ok(false);
        }
        let retry_after = pool
            .admission()
            .map_or(NO_BACKEND_RETRY_AFTER, |a| a.settings().retry_after);
        upgraded::refuse(session, retry_after, &ctx.request_id).await?;
        Ok(true)
    }

    /// The app answered an upgrade request `101`: its slot goes to the next waiter and the
    /// request counts as answered; the connection counts as upgraded from now on, and each
    /// read from the client waits up to the pool's `upgraded-idle-timeout`.
    pub(super) fn switched(&self, session: &mut Session, ctx: &mut RequestCtx) {
        let (Some(place), Some(pool)) = (ctx.upgrade.as_mut(), &ctx.pool) else {
            return;
        };
        place.opened();
        ctx.permit = None;
        ctx.attempts.upgraded();
        session.set_read_timeout(Some(pool.settings().upgraded.idle_timeout));
        let route = ctx.route.as_ref().map_or(NO_ROUTE, |m| &m.route.name);
        self.shared
            .metrics
            .request_finished(route, 101, ctx.started.elapsed());
    }

    /// After an attempt failed with `e` on a connection Pingora got from its pool
    /// (`reused`) or made: whether the request goes again (once, on a new connection).
    pub(super) fn resend(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
        reused: bool,
    ) -> bool {
        // Pingora marks a connection closed or reset while the response head was awaited;
        // a request that could not be written was not read either.
        let lost = matches!(e.retry, RetryType::ReusedOnly) || e.etype() == &ErrorType::WriteError;
        let failure = reuse::Failure {
            reused,
            before_response: !ctx.head_seen && lost && e.esource() == &ErrorSource::Upstream,
            idempotent: session.req_header().method.is_idempotent(),
            body_replayable: !session.as_ref().retry_buffer_truncated(),
        };
        let again = ctx.attempts.resend(&failure);
        if let (true, Some(pool)) = (again, &ctx.pool) {
            self.shared
                .metrics
                .upstream_retry(pool.name(), Retry::ReusedConnection);
        }
        again
    }
}
