//! The work of `fail_to_proxy` (its contract is on the phase): the answer to an error before
//! a response, or the file an answer named.

use pingora::prelude::Session;
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorSource, ErrorType};

use super::{respond, Frontdoor, RequestCtx};
use crate::error_pages::Why;
use crate::hostile::Rejection;

impl Frontdoor {
    /// `fail_to_proxy`'s answer to `e`.
    pub(super) async fn answer_failure(
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
}
