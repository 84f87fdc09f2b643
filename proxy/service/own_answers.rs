//! The answers frontdoor gives instead of the app's: its own error pages, the maintenance
//! page, and a file the app named (X-Sendfile). Part of `service` (the phases call these).

use pingora::http::ResponseHeader;
use pingora::prelude::Session;
use pingora::proxy::FailToProxy;
use pingora::Result;

use super::{Frontdoor, RequestCtx, NO_BACKEND_RETRY_AFTER};
use crate::error_pages::{self, Why};
use crate::sendfile;

impl Frontdoor {
    /// An answer naming a file (where `[sendfile]` is on): its head is kept for `send_file`,
    /// the app's slot is given back now, and the proxying ends (`Err`, handed to
    /// `fail_to_proxy`).
    pub(super) fn divert_to_sendfile(
        &self,
        upstream: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if self.shared.snapshot.load().config.sendfile.is_none() {
            return Ok(());
        }
        let Some(requested) = sendfile::take(upstream) else {
            return Ok(());
        };
        ctx.permit = None;
        ctx.sendfile = Some(sendfile::Pending {
            head: upstream.clone(),
            requested,
        });
        Err(sendfile::diverted())
    }

    /// Sends the file an answer named (`sendfile::serve`).
    pub(super) async fn send_file(
        &self,
        session: &mut Session,
        pending: sendfile::Pending,
        ctx: &RequestCtx,
    ) -> FailToProxy {
        let snapshot = self.shared.snapshot.load_full();
        let result = match &snapshot.config.sendfile {
            Some(settings) => {
                let metrics = &self.shared.metrics;
                sendfile::serve(session, pending, settings, metrics, &ctx.request_id).await
            }
            // A reload turned sendfile off meanwhile.
            None => self
                .error_page(session, ctx, Why::BadGateway, None)
                .await
                .map(|()| 502),
        };
        let error_code = result.unwrap_or_else(|e| {
            tracing::debug!("sendfile: {e}");
            0
        });
        FailToProxy {
            error_code,
            can_reuse_downstream: error_code > 0,
        }
    }

    /// While the route's pool is in maintenance (`frontdoor maintenance on`), its requests get
    /// the maintenance page (`Ok(true)`); fingerprinted assets still come from memory, for
    /// the page's own styles and images.
    pub(super) async fn maintenance(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let Some(pool) = ctx.pool.clone() else {
            return Ok(false);
        };
        if !self.shared.operations.in_maintenance(pool.name()) {
            return Ok(false);
        }
        if self.serve_asset(session, ctx).await? {
            return Ok(true);
        }
        let retry_after = pool
            .admission()
            .map_or(NO_BACKEND_RETRY_AFTER, |a| a.settings().retry_after);
        let retry_after = Some(retry_after.as_secs().max(1));
        self.error_page(session, ctx, Why::Maintenance, retry_after)
            .await?;
        Ok(true)
    }

    /// Writes frontdoor's own error answer (`error_pages`: the operator's page or JSON).
    pub(super) async fn error_page(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        why: Why,
        retry_after: Option<u64>,
    ) -> Result<()> {
        let pages = &self.shared.snapshot.load().config.error_pages;
        error_pages::respond(session, pages, why, retry_after, &ctx.request_id).await
    }
}
