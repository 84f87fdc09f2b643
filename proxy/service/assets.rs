//! Fingerprinted assets answered from memory in `request_filter`, before the request takes a
//! slot (the cache itself: [`crate::assets`]).

use pingora::prelude::Session;
use pingora::Result;

use super::{Frontdoor, RequestCtx};
use crate::assets;

impl Frontdoor {
    /// A fingerprinted GET/HEAD on an asset route is answered from memory (`Ok(true)`);
    /// anything else, or an asset the cache bypasses, is left to the proxy (`Ok(false)`).
    pub(super) async fn serve_asset(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
    ) -> Result<bool> {
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
