//! The admin listener's actions. They change what the site serves, so each is refused
//! (`403`) unless its peer is a loopback address or it carries `Authorization: Bearer
//! <[admin] token>`; reading (`GET /operations`, and every other read-only endpoint) needs
//! neither.
//!
//! | request | action |
//! |---|---|
//! | `POST /pools/NAME/deploy?target=H:P[&target=…][&timeout-ms=N][&drain-timeout-ms=N]` | deploy ([`super::deploy`]) |
//! | `POST /pools/NAME/pause`, `POST /pools/NAME/resume` | hold the pool's new requests in its queue, or stop |
//! | `POST /pools/NAME/maintenance/on`, `…/off` | the pool's requests get the maintenance page, or stop |
//! | `POST /maintenance/on`, `POST /maintenance/off` | the same for every pool |
//! | `GET /operations` | the actions in force (JSON) |
//!
//! Answers are JSON: the action's outcome, or `{"error": "…"}`.

use http::{Method, Response, StatusCode};
use percent_encoding::percent_decode_str;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::deploy::{self, DeployRequest};
use crate::operate::{OperateError, Token, EVERY_POOL};
use crate::snapshot::Shared;

/// A deploy's health-check timeout when the request names none (kamal-proxy's default).
const DEFAULT_DEPLOY_TIMEOUT: Duration = Duration::from_secs(30);
/// A deploy's drain timeout when the request names none (kamal-proxy's default).
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// One request to the admin listener, as the actions need it.
pub struct AdminRequest<'a> {
    /// Its method.
    pub method: &'a Method,
    /// Its path.
    pub path: &'a str,
    /// Its query, if any.
    pub query: Option<&'a str>,
    /// The peer's address.
    pub peer: Option<IpAddr>,
    /// Its `Authorization` field.
    pub authorization: Option<&'a str>,
}

/// Whether a peer may act: loopback, or the configured token as a bearer token.
pub fn authorized(
    peer: Option<IpAddr>,
    authorization: Option<&str>,
    token: Option<&Token>,
) -> bool {
    if peer.is_some_and(|ip| ip.is_loopback() || ipv4_mapped_loopback(ip)) {
        return true;
    }
    let presented = authorization.and_then(|a| {
        let (scheme, value) = a.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(value.trim())
    });
    match (token, presented) {
        (Some(token), Some(presented)) => token.matches(presented),
        _ => false,
    }
}

/// `::ffff:127.0.0.1`: a loopback peer of a dual-stack listener.
fn ipv4_mapped_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

/// The action a path names: (action, pool).
fn action_of(path: &str) -> Option<(&'static str, String)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let action = match parts.as_slice() {
        ["maintenance", "on"] => return Some(("maintenance_on", EVERY_POOL.to_string())),
        ["maintenance", "off"] => return Some(("maintenance_off", EVERY_POOL.to_string())),
        ["pools", _, "deploy"] => "deploy",
        ["pools", _, "pause"] => "pause",
        ["pools", _, "resume"] => "resume",
        ["pools", _, "maintenance", "on"] => "maintenance_on",
        ["pools", _, "maintenance", "off"] => "maintenance_off",
        _ => return None,
    };
    let pool = percent_decode_str(parts[1])
        .decode_utf8()
        .ok()?
        .into_owned();
    Some((action, pool))
}

/// The values of `name` in `query`, decoded.
fn params(query: Option<&str>, name: &str) -> Vec<String> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(n, _)| *n == name)
        .filter_map(|(_, v)| {
            percent_decode_str(&v.replace('+', " "))
                .decode_utf8()
                .ok()
                .map(|v| v.into_owned())
        })
        .collect()
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Vec<u8>> {
    let mut response = Response::new(format!("{body}\n").into_bytes());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Vec<u8>> {
    json(status, &serde_json::json!({ "error": message }))
}

fn status_of(e: &OperateError) -> StatusCode {
    match e {
        OperateError::NoPool(_) => StatusCode::NOT_FOUND,
        OperateError::NoQueue(_) | OperateError::DeployRunning(_) => StatusCode::CONFLICT,
        OperateError::BadRequest(_) => StatusCode::BAD_REQUEST,
        OperateError::Unhealthy(_) => StatusCode::SERVICE_UNAVAILABLE,
        OperateError::State { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `host:port` to an address (a name is resolved now).
async fn target(text: &str) -> Result<SocketAddr, OperateError> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let bad = || OperateError::BadRequest(format!("target `{text}` is not host:port"));
    if !text.contains(':') {
        return Err(bad());
    }
    tokio::net::lookup_host(text)
        .await
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

fn millis(query: Option<&str>, name: &str, default: Duration) -> Result<Duration, OperateError> {
    match params(query, name).first() {
        None => Ok(default),
        Some(v) => v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
            OperateError::BadRequest(format!("{name} must be milliseconds, not `{v}`"))
        }),
    }
}

/// Answers `request` if it is an action or `/operations` (else `None`: another endpoint).
pub async fn respond(shared: &Arc<Shared>, request: AdminRequest<'_>) -> Option<Response<Vec<u8>>> {
    if request.path == "/operations" {
        let body = serde_json::to_value(&*shared.operations.state()).unwrap_or_default();
        return Some(json(StatusCode::OK, &body));
    }
    let (action, pool) = action_of(request.path)?;
    let metrics = &shared.metrics;
    if *request.method != Method::POST {
        return Some(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "actions are POST requests",
        ));
    }
    let token = shared.snapshot.load().config.admin.token.clone();
    if !authorized(request.peer, request.authorization, token.as_ref()) {
        tracing::warn!(
            "admin: {action} of `{pool}` refused to {}: not loopback, no valid token",
            request
                .peer
                .map_or_else(|| "?".to_string(), |ip| ip.to_string())
        );
        metrics.operator_action(action, label(shared, &pool), "refused");
        return Some(error(
            StatusCode::FORBIDDEN,
            "actions need a loopback peer or `Authorization: Bearer <[admin] token>`",
        ));
    }
    let outcome = act(shared, action, &pool, request.query).await;
    let result = if outcome.is_ok() { "ok" } else { "failed" };
    metrics.operator_action(action, label(shared, &pool), result);
    Some(match outcome {
        Ok(body) => {
            tracing::info!("admin: {action} of `{pool}`: {body}");
            json(StatusCode::OK, &body)
        }
        Err(e) => {
            tracing::warn!("admin: {action} of `{pool}` failed: {e}");
            error(status_of(&e), &e.to_string())
        }
    })
}

/// The metrics label of `pool`: a configured pool's name or `*`, else `unknown` (bounded).
fn label<'a>(shared: &Shared, pool: &'a str) -> &'a str {
    if pool == EVERY_POOL || shared.snapshot.load().pools.contains_key(pool) {
        pool
    } else {
        "unknown"
    }
}

async fn act(
    shared: &Arc<Shared>,
    action: &str,
    pool: &str,
    query: Option<&str>,
) -> Result<serde_json::Value, OperateError> {
    let known = || {
        shared
            .snapshot
            .load()
            .pools
            .get(pool)
            .cloned()
            .ok_or_else(|| OperateError::NoPool(pool.to_string()))
    };
    let operations = &shared.operations;
    match action {
        "deploy" => {
            let mut targets = Vec::new();
            for text in params(query, "target") {
                targets.push(target(&text).await?);
            }
            let request = DeployRequest {
                targets,
                timeout: millis(query, "timeout-ms", DEFAULT_DEPLOY_TIMEOUT)?,
                drain_timeout: millis(query, "drain-timeout-ms", DEFAULT_DRAIN_TIMEOUT)?,
            };
            let report = deploy::deploy(shared, pool, request).await?;
            Ok(serde_json::to_value(report).unwrap_or_default())
        }
        "pause" | "resume" => {
            if known()?.admission().is_none() {
                return Err(OperateError::NoQueue(pool.to_string()));
            }
            let pause = action == "pause";
            let written = operations.update(|s| {
                if pause {
                    s.paused.insert(pool.to_string());
                } else {
                    s.paused.remove(pool);
                }
            });
            shared.apply_pauses();
            written?;
            Ok(serde_json::json!({ "pool": pool, "paused": pause }))
        }
        _ => {
            if pool != EVERY_POOL {
                known()?;
            }
            let on = action == "maintenance_on";
            operations.update(|s| {
                if on {
                    s.maintenance.insert(pool.to_string());
                } else if pool == EVERY_POOL {
                    s.maintenance.clear();
                } else {
                    s.maintenance.remove(pool);
                }
            })?;
            Ok(serde_json::json!({ "pool": pool, "maintenance": on }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_peers_act_others_need_the_token() {
        let token = Token::new("0123456789abcdef-secret".into());
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(authorized(Some(loopback), None, None));
        assert!(authorized(Some("::1".parse().unwrap()), None, None));
        assert!(authorized(Some(mapped), None, None));
        assert!(!authorized(Some(other), None, Some(&token)));
        assert!(!authorized(
            Some(other),
            Some("Bearer 0123456789abcdef-secret"),
            None
        ));
        assert!(!authorized(None, None, Some(&token)));
        assert!(authorized(
            Some(other),
            Some("Bearer 0123456789abcdef-secret"),
            Some(&token)
        ));
        assert!(authorized(
            Some(other),
            Some("bearer  0123456789abcdef-secret "),
            Some(&token)
        ));
        for wrong in [
            "Bearer 0123456789abcdef-secreT",
            "Bearer 0123456789abcdef-secret-and-more",
            "Bearer 0123456789abcdef",
            "Basic 0123456789abcdef-secret",
            "0123456789abcdef-secret",
            "Bearer ",
        ] {
            assert!(
                !authorized(Some(other), Some(wrong), Some(&token)),
                "{wrong}"
            );
        }
    }

    #[test]
    fn paths_name_an_action_and_a_pool() {
        assert_eq!(
            action_of("/pools/app/deploy"),
            Some(("deploy", "app".into()))
        );
        assert_eq!(action_of("/pools/app/pause"), Some(("pause", "app".into())));
        assert_eq!(
            action_of("/pools/my%20app/maintenance/on"),
            Some(("maintenance_on", "my app".into()))
        );
        assert_eq!(
            action_of("/maintenance/off"),
            Some(("maintenance_off", "*".into()))
        );
        assert_eq!(action_of("/pools/app"), None);
        assert_eq!(action_of("/metrics"), None);
        let q = Some("target=127.0.0.1%3A3001&target=b:2&timeout-ms=500");
        assert_eq!(params(q, "target"), vec!["127.0.0.1:3001", "b:2"]);
        assert_eq!(
            millis(q, "timeout-ms", Duration::ZERO).unwrap(),
            Duration::from_millis(500)
        );
        assert!(millis(Some("timeout-ms=5s"), "timeout-ms", Duration::ZERO).is_err());
    }
}
