//! The plain-HTTP listener: every request gets `301` to the same host and path over HTTPS,
//! but ACME's HTTP-01 validations, which get their key authorization.

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

use crate::acme::challenge::Challenges;

/// The redirecting app.
pub struct RedirectApp {
    https_port: u16,
    acme: Option<Arc<Challenges>>,
}

impl RedirectApp {
    /// Redirects to `https_port` (omitted from the URL when 443).
    pub fn new(https_port: u16) -> Self {
        RedirectApp {
            https_port,
            acme: None,
        }
    }

    /// Answers the HTTP-01 validations of `challenges` (none: every request redirects).
    pub fn with_acme(mut self, challenges: Option<Arc<Challenges>>) -> Self {
        self.acme = challenges;
        self
    }

    /// The `Location` for a request to `host` (with or without port) and `path_and_query`.
    pub fn location(&self, host: &str, path_and_query: &str) -> Option<String> {
        let name = host_without_port(host)?;
        let port = if self.https_port == 443 {
            String::new()
        } else {
            format!(":{}", self.https_port)
        };
        Some(format!("https://{name}{port}{path_and_query}"))
    }
}

/// `example.com:80` → `example.com`, `[::1]:80` → `[::1]`; `None` for anything that is not a
/// plausible host, so a forged Host cannot inject into the Location header.
fn host_without_port(host: &str) -> Option<&str> {
    let name = if host.starts_with('[') {
        &host[..=host.find(']')?]
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let plausible = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    plausible.then_some(name)
}

#[async_trait]
impl ServeHttp for RedirectApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let head = session.req_header();
        let answer = self
            .acme
            .as_ref()
            .and_then(|c| c.http_answer(head.uri.path()));
        if let Some(key_authorization) = answer {
            let mut response = Response::new(key_authorization.into_bytes());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/octet-stream"),
            );
            return response;
        }
        let host = head
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| head.uri.host());
        let path_and_query = head.uri.path_and_query().map_or("/", |p| p.as_str());
        let location = host.and_then(|h| self.location(h, path_and_query));
        let mut response = Response::new(Vec::new());
        match location.and_then(|l| http::HeaderValue::from_str(&l).ok()) {
            Some(location) => {
                *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
                response
                    .headers_mut()
                    .insert(http::header::LOCATION, location);
            }
            None => {
                *response.status_mut() = StatusCode::BAD_REQUEST;
                *response.body_mut() = b"a Host header is required\n".to_vec();
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_keeps_host_and_path_and_swaps_port() {
        let app = RedirectApp::new(8443);
        assert_eq!(
            app.location("example.com:8080", "/a?b=1").as_deref(),
            Some("https://example.com:8443/a?b=1")
        );
        assert_eq!(
            app.location("[::1]:8080", "/").as_deref(),
            Some("https://[::1]:8443/")
        );
        assert_eq!(
            RedirectApp::new(443)
                .location("example.com", "/x")
                .as_deref(),
            Some("https://example.com/x")
        );
        assert_eq!(app.location("evil.com/x", "/"), None);
    }
}
