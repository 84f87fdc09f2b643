//! The work of `response_filter` and `response_body_filter` (their contracts are on the
//! phases): hints, edge-cache fill and invalidation, compression.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::Session;
use pingora::{Error, ErrorType, Result};

use super::{is_interim, Frontdoor, RequestCtx};
use crate::assets;
use crate::compression::{self, Compressor};
use crate::edge_cache;
use crate::headers::{self, HeaderEdit};
use crate::hints;
use crate::metrics::NO_ROUTE;

impl Frontdoor {
    /// `response_filter`'s work on a response head.
    pub(super) fn prepare_response(
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

    /// `response_body_filter`'s work on a chunk of the body.
    pub(super) fn prepare_body(
        &self,
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
}
