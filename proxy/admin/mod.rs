//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/status` (the capacity view and
//! the upgraded connections of each pool, as a page), `/status.json`, `/jobs`, and the
//! operator's actions ([`actions`]: deploy, pause, maintenance; loopback or the admin token
//! only). Loopback by default, and never
//! reachable through the public listeners (it is a separate listener, not a route).
//!
//! `/healthz` is answered from memory whatever the upstream does: it says this process is up
//! and serving. `/readyz` also says whether every pool has a backend up (health checks, ejection,
//! drain) and one that accepts connections,
//! which is what a balancer in front of several frontdoor nodes should check.

pub mod actions;
pub mod deploy;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

use crate::admission::status;
use crate::snapshot::Shared;

/// The admin app.
pub struct AdminApp {
    shared: Arc<Shared>,
}

impl AdminApp {
    /// An admin app reading `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        AdminApp { shared }
    }

    async fn ready(&self) -> (StatusCode, String) {
        let snapshot = self.shared.snapshot.load_full();
        let mut report = String::new();
        let mut ready = true;
        for pool in snapshot.pools.values() {
            // Up by health checks and ejection, and accepting connections now.
            let up = pool.any_up() && pool.any_reachable().await;
            ready &= up;
            report.push_str(&format!(
                "pool {}: {}\n",
                pool.name(),
                if up { "reachable" } else { "unreachable" }
            ));
        }
        (
            if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            report,
        )
    }
}

impl AdminApp {
    /// Every pool's status row: the capacity view of pools with admission, and every pool's
    /// upgraded connections (open now, of `max-upgraded`), by pool name.
    fn status_rows(&self) -> Vec<status::PoolStatus> {
        let snapshot = self.shared.snapshot.load_full();
        let mut rows = status::report(&self.shared.controllers);
        for name in snapshot.pools.keys() {
            if !rows.iter().any(|r| &r.pool == name) {
                rows.push(status::PoolStatus::without_admission(name));
            }
        }
        for row in &mut rows {
            row.upgraded = self.shared.upgraded.open(&row.pool);
            row.max_upgraded = snapshot
                .pools
                .get(&row.pool)
                .map_or(0, |p| p.settings().upgraded.max);
        }
        rows.sort_by(|a, b| a.pool.cmp(&b.pool));
        rows
    }

    /// `/jobs`: queued and running jobs, oldest first (at most 1,000), as JSON.
    async fn jobs(&self) -> Response<Vec<u8>> {
        let Some(jobs) = &self.shared.jobs else {
            return response(StatusCode::OK, "application/json", b"[]\n".to_vec());
        };
        match jobs.store.active(1000).await {
            Ok(list) => {
                let views: Vec<serde_json::Value> =
                    list.iter().map(crate::jobs::http::view).collect();
                let body = format!("{}\n", serde_json::Value::from(views));
                response(StatusCode::OK, "application/json", body.into_bytes())
            }
            Err(e) => response(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("job store: {e}\n").into_bytes(),
            ),
        }
    }
}

fn response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let head = session.req_header();
        let request = actions::AdminRequest {
            method: &head.method,
            path: head.uri.path(),
            query: head.uri.query(),
            peer: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            authorization: head
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        };
        if let Some(answer) = actions::respond(&self.shared, request).await {
            return answer;
        }
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/healthz" => response(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                let (status, report) = self.ready().await;
                response(status, "text/plain", report.into_bytes())
            }
            "/jobs" => self.jobs().await,
            "/metrics" => {
                // Cache sizes are read at scrape time, when moka's accounting has settled.
                let metrics = &self.shared.metrics;
                metrics.asset_bytes(self.shared.assets.bytes_held().await);
                metrics.edge_cache_bytes(self.shared.edge_cache.bytes_held());
                for row in status::report(&self.shared.controllers) {
                    metrics.capacity(&row.pool, row.view.measures(row.in_flight));
                }
                response(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    metrics.render(),
                )
            }
            "/status" => response(
                StatusCode::OK,
                "text/html; charset=utf-8",
                status::PAGE.as_bytes().to_vec(),
            ),
            "/status.json" => {
                let rows = self.status_rows();
                let body = serde_json::to_vec(&rows).unwrap_or_default();
                response(StatusCode::OK, "application/json", body)
            }
            _ => response(
                StatusCode::NOT_FOUND,
                "text/plain",
                b"not found: try /healthz, /readyz, /metrics, /status, /status.json, /jobs, /operations\n"
                    .to_vec(),
            ),
        }
    }
}
