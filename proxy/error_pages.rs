//! frontdoor's own error answers, in one place: `502` (the app could not be reached), `504`
//! (it did not answer in time), `503` (no backend up, a shed request, maintenance, the job
//! store down) and `500`.
//!
//! A browser (its `Accept` prefers `text/html`) gets the operator's page for the status
//! (`[error-pages]`, e.g. the app's `public/503.html`), else a short built-in page; anything
//! else (`fetch`, `curl`, an API client) gets JSON. The answer never reaches the app, is never
//! cached (`Cache-Control: no-store`), and a `503` carries `Retry-After`. Pages are read and
//! checked when the config is loaded and again on every reload, so a missing file is a
//! config error, never a blank answer.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The statuses an operator may give a page of their own.
pub const STATUSES: [u16; 4] = [500, 502, 503, 504];

/// The largest page accepted (Rails' own pages are a few KiB; pages are re-read to detect a
/// change, so they stay small).
pub const MAX_PAGE_BYTES: usize = 256 * 1024;

/// One page of the operator's, read at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Where it was read from (a reload reads it again).
    pub path: PathBuf,
    /// The HTML.
    pub html: Bytes,
}

/// `[error-pages]`, validated: the operator's pages by status, and the maintenance page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorPages {
    /// Pages by status (one of [`STATUSES`]).
    pub pages: BTreeMap<u16, Page>,
    /// The page of maintenance mode; without one, the `503` page.
    pub maintenance: Option<Page>,
}

impl ErrorPages {
    /// The files the pages were read from (watched for changes like the config).
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.pages
            .values()
            .chain(self.maintenance.as_ref())
            .map(|p| &p.path)
    }

    fn page(&self, why: &Why) -> Option<&Page> {
        match why {
            Why::Maintenance => self.maintenance.as_ref().or_else(|| self.pages.get(&503)),
            _ => self.pages.get(&why.status()),
        }
    }
}

/// Why frontdoor answers an error itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `502`: the app could not be reached or broke off its answer.
    BadGateway,
    /// `504`: the app did not answer in time.
    GatewayTimeout,
    /// `503`: every backend of the pool is down or draining.
    NoBackend,
    /// `503`: admission control refused the request (the reason: overload, queue-full,
    /// queue-timeout).
    Busy(&'static str),
    /// `503`: the pool is in maintenance (`frontdoor maintenance on`).
    Maintenance,
    /// `503`: the job store could not take or show a job.
    JobStore,
    /// `500`: frontdoor failed.
    Internal,
}

impl Why {
    /// The status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            Why::BadGateway => 502,
            Why::GatewayTimeout => 504,
            Why::NoBackend | Why::Busy(_) | Why::Maintenance | Why::JobStore => 503,
            Why::Internal => 500,
        }
    }

    /// The `error` of the JSON answer, and the text of the built-in page.
    fn message(&self) -> &'static str {
        match self {
            Why::BadGateway => "bad gateway: the app could not be reached",
            Why::GatewayTimeout => "gateway timeout: the app did not answer in time",
            Why::NoBackend => "service unavailable: no backend is up",
            Why::Busy(_) => "server too busy",
            Why::Maintenance => "down for maintenance",
            Why::JobStore => "the job store is unavailable",
            Why::Internal => "internal error",
        }
    }

    /// The title of the built-in page.
    fn title(&self) -> &'static str {
        match self {
            Why::BadGateway | Why::GatewayTimeout | Why::NoBackend | Why::JobStore => {
                "The site is having a problem"
            }
            Why::Busy(_) => "Server too busy",
            Why::Maintenance => "Down for maintenance",
            Why::Internal => "Something went wrong",
        }
    }
}

/// Whether `accept` prefers HTML to JSON: `text/html` is listed with a q-value above 0 and
/// at least that of `application/json`. A browser navigating sends
/// `text/html,…,*/*;q=0.8`; `fetch()` sends `*/*`, API clients `application/json`.
pub fn prefers_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let (mut html, mut json) = (None::<f32>, None::<f32>);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").map(str::trim))
            .find_map(|v| v.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "text/html" => html = Some(html.map_or(q, |h| h.max(q))),
            "application/json" => json = Some(json.map_or(q, |j| j.max(q))),
            _ => {}
        }
    }
    html.is_some_and(|h| h > 0.0 && h >= json.unwrap_or(0.0))
}

/// The built-in page for browsers when the operator has none for the status; a `503` with
/// `Retry-After` reloads itself after it.
fn built_in_page(why: &Why, retry_after: Option<u64>) -> String {
    let refresh = retry_after.map_or(String::new(), |s| {
        format!("<meta http-equiv=\"refresh\" content=\"{s}\">")
    });
    let next = retry_after.map_or(String::new(), |s| {
        format!(" This page will try again in {s} seconds.")
    });
    let detail = match why {
        Why::Busy(_) => "Too many requests are waiting right now.",
        Why::Maintenance => "The site is down for maintenance and will be back shortly.",
        _ => "Please try again in a moment.",
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>{refresh}\
         </head><body><h1>{title}</h1><p>{detail}{next}</p></body></html>\n",
        title = why.title()
    )
}

/// The JSON answer for API clients.
fn json_body(why: &Why, retry_after: Option<u64>) -> String {
    let mut body = serde_json::json!({ "error": why.message(), "status": why.status() });
    if let Why::Busy(reason) = why {
        body["reason"] = (*reason).into();
    }
    if let Some(seconds) = retry_after {
        body["retry_after"] = seconds.into();
    }
    format!("{body}\n")
}

/// Writes frontdoor's error answer for `why`: the operator's page or the built-in one to a
/// browser, JSON to anything else. `retry_after` (seconds) goes into `Retry-After`.
pub async fn respond(
    session: &mut Session,
    pages: &ErrorPages,
    why: Why,
    retry_after: Option<u64>,
    request_id: &str,
) -> pingora::Result<()> {
    let accept = session
        .req_header()
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let (content_type, body) = if prefers_html(accept) {
        let html = pages.page(&why).map_or_else(
            || Bytes::from(built_in_page(&why, retry_after)),
            |page| page.html.clone(),
        );
        ("text/html; charset=utf-8", html)
    } else {
        (
            "application/json",
            Bytes::from(json_body(&why, retry_after)),
        )
    };
    let mut head = ResponseHeader::build(why.status(), Some(6))?;
    head.insert_header(http::header::CONTENT_TYPE, content_type)?;
    head.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    head.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    if let Some(seconds) = retry_after {
        head.insert_header(http::header::RETRY_AFTER, seconds.to_string())?;
    }
    head.insert_header(crate::headers::X_REQUEST_ID, request_id)?;
    session.write_response_header(Box::new(head), false).await?;
    session.write_response_body(Some(body), true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_prefer_html_and_api_clients_do_not() {
        let chrome =
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
        assert!(prefers_html(Some(chrome)));
        assert!(prefers_html(Some("text/html")));
        assert!(prefers_html(Some("application/json;q=0.5, text/html")));
        for api in [
            None,
            Some("*/*"),
            Some("application/json"),
            Some("application/json, text/html;q=0.9"),
            Some("text/html;q=0"),
            Some("text/plain"),
        ] {
            assert!(!prefers_html(api), "{api:?}");
        }
    }

    fn page(html: &'static str) -> Page {
        Page {
            path: PathBuf::from("x.html"),
            html: Bytes::from_static(html.as_bytes()),
        }
    }

    #[test]
    fn maintenance_uses_its_own_page_else_the_503_page() {
        let mut pages = ErrorPages::default();
        assert_eq!(pages.page(&Why::Maintenance), None);
        pages.pages.insert(503, page("503"));
        assert_eq!(pages.page(&Why::Maintenance), Some(&page("503")));
        assert_eq!(pages.page(&Why::NoBackend), Some(&page("503")));
        assert_eq!(pages.page(&Why::BadGateway), None);
        pages.maintenance = Some(page("m"));
        assert_eq!(pages.page(&Why::Maintenance), Some(&page("m")));
    }

    #[test]
    fn json_names_the_error_the_reason_and_the_wait() {
        let body: serde_json::Value =
            serde_json::from_str(&json_body(&Why::Busy("queue-full"), Some(3))).unwrap();
        assert_eq!(body["error"], "server too busy");
        assert_eq!(body["reason"], "queue-full");
        assert_eq!(body["retry_after"], 3);
        assert_eq!(body["status"], 503);
        let body: serde_json::Value =
            serde_json::from_str(&json_body(&Why::BadGateway, None)).unwrap();
        assert_eq!(body["status"], 502);
        assert!(body.get("retry_after").is_none());
    }

    #[test]
    fn the_built_in_page_refreshes_after_retry_after() {
        let html = built_in_page(&Why::Busy("overload"), Some(4));
        assert!(html.contains("content=\"4\""), "{html}");
        assert!(html.contains("Server too busy"));
        assert!(!built_in_page(&Why::BadGateway, None).contains("refresh"));
    }
}
