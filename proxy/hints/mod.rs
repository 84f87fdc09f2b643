//! Hints that let the browser start downloads before the page asks for them.
//!
//! - **Rules** ([`link`]): per route, `preload`/`prefetch` URL templates filled with the
//!   route's parameters (`/courses/{school}/{title}/course.json`).
//! - **Learned** ([`learned`]): the fingerprinted scripts and stylesheets the route's HTML
//!   last referenced, found while the body streams by ([`html`]).
//! - Both become one `Link` header on successful (2xx) HTML answers to GET, merged with the
//!   upstream's own `Link` without repeats, and, where the route enables it, a
//!   `103 Early Hints` sent to HTTP/1.1 clients as soon as the request is routed. Pingora 0.9
//!   drops 1xx on HTTP/2 (its h2 session keeps the stream's `SendResponse` private), so h2
//!   clients get the final-response header only.
//! - **Deferral** ([`html`]), opt-in per route: `defer` on render-blocking `<script src>` in
//!   `<head>`.

pub mod html;
pub mod learned;
pub mod link;

pub use html::HtmlPass;
pub use learned::{Learned, Observed};
pub use link::{Destination, Link, LinkTemplate, Rel};

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::Session;
use std::sync::Arc;
use std::time::Instant;

use crate::headers::HeaderEdit;
use crate::metrics::Metrics;
use crate::template::Params;

/// `[routes.hints]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHints {
    /// `preload` then `prefetch` templates, in file order.
    pub links: Vec<LinkTemplate>,
    /// Learn the fingerprinted assets of the route's HTML and preload them.
    pub learn: bool,
    /// Send `103 Early Hints` to HTTP/1.1 clients.
    pub early_hints: bool,
    /// Add `defer` to blocking scripts in `<head>` (opt-in).
    pub defer_scripts: Option<DeferScripts>,
}

impl Default for RouteHints {
    /// No rules, learning on, no 103, no deferral: what a route without `[routes.hints]` gets.
    fn default() -> Self {
        RouteHints {
            links: Vec::new(),
            learn: true,
            early_hints: false,
            defer_scripts: None,
        }
    }
}

/// Which scripts deferral touches, by `src` pattern (`*` matches any run of characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeferScripts {
    allow: Vec<String>,
    deny: Vec<String>,
}

impl DeferScripts {
    /// Scripts matching one `allow` pattern (every script when `allow` is empty) and no
    /// `deny` pattern.
    pub fn new(allow: Vec<String>, deny: Vec<String>) -> Self {
        DeferScripts { allow, deny }
    }

    /// Whether the script at `src` (as written in the page) gets `defer`.
    pub fn applies_to(&self, src: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|p| wildcard(p, src)))
            && !self.deny.iter().any(|p| wildcard(p, src))
    }
}

/// `*` matches any run of characters (none included); everything else matches itself.
fn wildcard(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The route a request matched, as hints see it.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    /// The route's name: the metrics label and the key of its learned assets.
    pub route: &'a str,
    /// The route's hint rules.
    pub hints: &'a RouteHints,
    /// What the request's path captured.
    pub params: &'a Params,
}

/// Every hint for a request of `matched`: the rules, then what was learned.
fn links(matched: Matched<'_>, learned: &Learned) -> Vec<Link> {
    let hints = matched.hints;
    let mut out: Vec<Link> = hints
        .links
        .iter()
        .map(|t| t.expand(matched.params))
        .collect();
    if hints.learn {
        out.extend(learned.get(matched.route).iter().cloned());
    }
    out
}

/// Sends `103 Early Hints` when the route enables it and the client can take it (HTTP/1.1,
/// not h2; a GET). `Ok(())` also when nothing was sent.
pub async fn send_early(
    session: &mut Session,
    matched: Option<Matched<'_>>,
    learned: &Learned,
    metrics: &Metrics,
) -> pingora::Result<()> {
    let Some(matched) = matched.filter(|m| m.hints.early_hints) else {
        return Ok(());
    };
    let head = session.req_header();
    // RFC 9110 §15.2: never a 1xx to an HTTP/1.0 client.
    if session.is_http2() || head.version != http::Version::HTTP_11 || !is_get(head) {
        return Ok(());
    }
    let Some(value) = link::merge(&links(matched, learned), &[]) else {
        return Ok(());
    };
    let mut early = ResponseHeader::build(103, Some(1))?;
    early.append_header(http::header::LINK, value)?;
    session
        .write_response_header(Box::new(early), false)
        .await?;
    metrics.hint(matched.route, "early_hints", 1);
    Ok(())
}

/// The response's validator: `ETag`, else `Last-Modified`.
fn validator(response: &ResponseHeader) -> Option<&str> {
    let headers = &response.headers;
    headers
        .get(http::header::ETAG)
        .or_else(|| headers.get(http::header::LAST_MODIFIED))
        .and_then(|v| v.to_str().ok())
}

fn is_get(head: &RequestHeader) -> bool {
    head.method == http::Method::GET
}

fn is_html(response: &ResponseHeader) -> bool {
    response
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split(';').next())
        .is_some_and(|media| {
            let media = media.trim();
            media.eq_ignore_ascii_case("text/html")
                || media.eq_ignore_ascii_case("application/xhtml+xml")
        })
}

/// The response phase: adds the `Link` header to a 2xx HTML answer to a GET and returns the
/// body pass it needs (learning, deferral), if any. Runs before compression, so it sees the
/// upstream's own `Content-Encoding`: an encoded body is not parsed.
pub fn on_response(
    request: &RequestHeader,
    response: &mut ResponseHeader,
    matched: Option<Matched<'_>>,
    learned: &Learned,
    metrics: &Metrics,
) -> Option<HtmlPass> {
    let matched = matched?;
    if !is_get(request) || !response.status.is_success() || !is_html(response) {
        return None;
    }
    let upstream: Vec<&str> = response
        .headers
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if let Some(value) = link::merge(&links(matched, learned), &link::existing(&upstream)) {
        if response.append_header(http::header::LINK, value).is_ok() {
            metrics.hint(matched.route, "link", 1);
        }
    }
    let hints = matched.hints;
    let encoded = response
        .headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
    let has_body = response.status != http::StatusCode::NO_CONTENT;
    // `no-transform` (RFC 9111 §5.2.2.6) forbids rewriting, not reading.
    let no_transform = response
        .headers
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|cc| cc.to_ascii_lowercase().contains("no-transform"));
    let defer = hints.defer_scripts.clone().filter(|_| !no_transform);
    if encoded || !has_body || !(hints.learn || defer.is_some()) {
        return None;
    }
    let learn =
        hints.learn && learned.should_sample(matched.route, validator(response), Instant::now());
    if !learn && defer.is_none() {
        return None;
    }
    let pass = HtmlPass::new(learn, defer);
    if pass.rewrites() {
        // The body changes length; a strong validator would now lie.
        response.unset(http::header::CONTENT_LENGTH.as_str());
        crate::headers::weaken_etag(response);
    }
    Some(pass)
}

/// The body phase: passes `body` through the HTML pass; at the end, records what it learned.
pub fn on_body(
    pass: &mut Option<Box<HtmlPass>>,
    body: &mut Option<Bytes>,
    end_of_stream: bool,
    route: &Arc<str>,
    learned: &Learned,
    metrics: &Metrics,
) {
    let Some(active) = pass.as_mut() else {
        return;
    };
    if let Some(chunk) = body.take() {
        *body = Some(active.push(chunk));
    }
    if !end_of_stream {
        return;
    }
    let Some(done) = pass.take() else {
        return;
    };
    let (rest, summary) = done.finish();
    if !rest.is_empty() {
        *body = Some(match body.take() {
            Some(chunk) if !chunk.is_empty() => [chunk, rest].concat().into(),
            _ => rest,
        });
    }
    if let Some(assets) = summary.assets {
        if learned.observe(route, &assets) == Observed::Updated {
            metrics.hint(route, "learned_update", 1);
        }
    }
    if summary.deferred > 0 {
        metrics.hint(route, "deferred_script", summary.deferred as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::PathTemplate;

    /// The course route's hints (its rule plus `hints`) and the params of its page.
    fn course(hints: RouteHints) -> (RouteHints, Params) {
        let template = PathTemplate::parse("/courses/{school}/{title}").unwrap();
        let rule = LinkTemplate::parse(
            "/courses/{school}/{title}/course.json",
            Rel::Preload,
            Destination::Fetch,
            &template,
        )
        .unwrap();
        let hints = RouteHints {
            links: vec![rule],
            ..hints
        };
        let params = vec![
            (Arc::from("school"), "mit".to_string()),
            (Arc::from("title"), "physics".to_string()),
        ];
        (hints, params)
    }

    fn response(status: u16, headers: &[(&'static str, &str)]) -> ResponseHeader {
        let mut head = ResponseHeader::build(status, None).unwrap();
        for (name, value) in headers {
            head.append_header(*name, *value).unwrap();
        }
        head
    }

    fn respond(method: &str, response: &mut ResponseHeader, hints: RouteHints) -> Option<HtmlPass> {
        let request = RequestHeader::build(method, b"/courses/mit/physics", None).unwrap();
        let metrics = Metrics::new().unwrap();
        let (hints, params) = course(hints);
        let matched = Matched {
            route: "course",
            hints: &hints,
            params: &params,
        };
        on_response(
            &request,
            response,
            Some(matched),
            &Learned::default(),
            &metrics,
        )
    }

    fn link_values(response: &ResponseHeader) -> Vec<&str> {
        response
            .headers
            .get_all(http::header::LINK)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    const HTML: (&str, &str) = ("content-type", "text/html; charset=utf-8");
    const OURS: &str = "</courses/mit/physics/course.json>; rel=preload; as=fetch; crossorigin";

    #[test]
    fn only_successful_html_answers_to_get_get_links() {
        let mut ok = response(200, &[HTML, ("link", "</x.css>; rel=preload; as=style")]);
        assert!(respond("GET", &mut ok, RouteHints::default()).is_some());
        assert_eq!(
            link_values(&ok),
            vec!["</x.css>; rel=preload; as=style", OURS]
        );
        for (method, status, content_type) in [
            ("GET", 404, "text/html"),
            ("GET", 500, "text/html"),
            ("GET", 302, "text/html"),
            ("GET", 200, "application/json"),
            ("HEAD", 200, "text/html"),
            ("POST", 200, "text/html"),
        ] {
            let mut head = response(status, &[("content-type", content_type)]);
            assert!(respond(method, &mut head, RouteHints::default()).is_none());
            assert!(
                link_values(&head).is_empty(),
                "{method} {status} {content_type}"
            );
        }
    }

    #[test]
    fn deferral_drops_the_length_and_weakens_the_etag_unless_no_transform() {
        let defer = RouteHints {
            learn: false,
            defer_scripts: Some(DeferScripts::new(vec![], vec![])),
            ..RouteHints::default()
        };
        let mut head = response(200, &[HTML, ("content-length", "10"), ("etag", "\"v1\"")]);
        let pass = respond("GET", &mut head, defer.clone()).unwrap();
        assert!(pass.rewrites());
        assert!(head.headers.get("content-length").is_none());
        assert_eq!(head.headers["etag"], "W/\"v1\"");

        let mut kept = response(
            200,
            &[
                HTML,
                ("content-length", "10"),
                ("cache-control", "no-transform"),
            ],
        );
        assert!(respond("GET", &mut kept, defer.clone()).is_none());
        assert_eq!(kept.headers["content-length"], "10");

        let mut encoded = response(200, &[HTML, ("content-encoding", "br")]);
        assert!(respond("GET", &mut encoded, defer).is_none());
        assert_eq!(
            link_values(&encoded),
            vec![OURS],
            "encoded pages still get links"
        );
    }

    #[test]
    fn wildcards_match_runs_of_characters() {
        assert!(wildcard("*", "/anything"));
        assert!(wildcard("/assets/jquery-*.js", "/assets/jquery-0123.js"));
        assert!(!wildcard("/assets/jquery-*.js", "/assets/jquery-0123.css"));
        assert!(wildcard("*/vendor/*", "/assets/vendor/x.js"));
        assert!(!wildcard("/a", "/ab"));
        assert!(wildcard("/a*b*b", "/abb"));
        assert!(!wildcard("/a*bb", "/ab"));
    }

    #[test]
    fn deny_wins_over_allow() {
        let d = DeferScripts::new(vec!["/assets/*".into()], vec!["/assets/jquery-*".into()]);
        assert!(d.applies_to("/assets/app-1.js"));
        assert!(!d.applies_to("/assets/jquery-1.js"));
        assert!(!d.applies_to("/packs/app-1.js"));
        assert!(DeferScripts::new(vec![], vec![]).applies_to("/x.js"));
    }
}
