//! The edge cache in the phases: answers from memory (revalidated, collapsed) in
//! `request_filter`, the fill of a storable answer in `response_body_filter`, invalidation
//! after an unsafe request (the cache itself: [`crate::edge_cache`]).

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::Session;
use pingora::Result;

use super::{Frontdoor, RequestCtx};
use crate::assets;
use crate::edge_cache::{self, EdgeCache, Joined, Lookup, Origin, Revalidated};

impl Frontdoor {
    /// Appends a chunk of the upstream's answer to the fill; stores it at the end of the body.
    pub(super) fn fill_cache(
        &self,
        chunk: Option<&Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) {
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
    pub(super) async fn serve_cached(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
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

    /// After a successful unsafe request, drops what the edge cache holds for its URL and for
    /// the same-host URLs its `Location` and `Content-Location` name (RFC 9111 §4.4).
    pub(super) fn invalidate_after(
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
