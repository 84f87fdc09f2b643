//! Revalidation (RFC 9111 §4.3): frontdoor asks the app whether a stale entry is still good,
//! with `If-None-Match`/`If-Modified-Since` built from the stored `ETag`/`Last-Modified`. A
//! `304` updates the stored fields and keeps the body; a full answer replaces the entry (or
//! answers once, if it may not be stored).

use http::{header, HeaderMap};
use pingora::http::RequestHeader;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::entry::{Entry, Received};
use super::freshness::Lifetime;
use super::{policy, EdgeCache, Origin};
use crate::headers::HeaderEdit;
use crate::upstream::{self, FetchError};

/// Request fields not copied from the client into frontdoor's own request: one hop's, the
/// conditionals and ranges of the client (ours replace them), and what we set ourselves.
const NOT_COPIED: [header::HeaderName; 14] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::CONTENT_LENGTH,
    header::HOST,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
];

/// The GET frontdoor sends for `path_and_query` on behalf of a client's `request`: the
/// client's fields (so that `Vary`ing fields, cookies and credentials the route allows reach
/// the app as the client sent them), less the ones above.
pub fn revalidation_request(
    request: &RequestHeader,
    path_and_query: &str,
    host: Option<&str>,
) -> pingora::Result<RequestHeader> {
    let mut own = RequestHeader::build("GET", path_and_query.as_bytes(), None)?;
    own.insert_header(header::HOST, host.unwrap_or("localhost"))?;
    for (name, value) in &request.headers {
        if !NOT_COPIED.contains(name) && name.as_str() != "keep-alive" {
            own.append_header(name.clone(), value.clone())?;
        }
    }
    Ok(own)
}

/// How a revalidation ended.
#[derive(Debug)]
pub enum Revalidated {
    /// The app sent a new answer, now stored.
    Stored(Arc<Entry>),
    /// The app confirmed the entry (`304`); it is stored with its updated fields.
    NotModified(Arc<Entry>),
    /// The app's answer may not be stored (the old entry was dropped): it answers this
    /// request only.
    Uncacheable(Arc<Entry>),
    /// The app could not be reached, failed, or answered 500/502/503/504 (that answer, when
    /// there is one, for a caller that may not serve stale).
    Failed(String, Option<Arc<Entry>>),
    /// The new answer is over `max-object-size`: proxy the request instead.
    TooLarge,
}

impl Revalidated {
    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Revalidated::Stored(_) => "stored",
            Revalidated::NotModified(_) => "revalidated",
            Revalidated::Uncacheable(_) | Revalidated::TooLarge => "uncacheable",
            Revalidated::Failed(..) => "error",
        }
    }
}

/// An answer that is not stored: nothing about it is reused.
fn once() -> policy::Storable {
    policy::Storable {
        lifetime: Lifetime {
            fresh: Duration::ZERO,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            keep_for_revalidation: Duration::ZERO,
        },
        vary: Vec::new(),
        no_transform: true,
        unstored_fields: Vec::new(),
    }
}

impl EdgeCache {
    /// Asks the app whether `entry` (stored under `key`) is still good.
    pub async fn revalidate(
        self: &Arc<Self>,
        key: &str,
        entry: &Arc<Entry>,
        origin: &Origin,
    ) -> Revalidated {
        let client_fields: HeaderMap = origin.request.headers.clone();
        let mut request = origin.request.clone();
        if !entry.as_sent {
            // We store identity and encode it ourselves.
            request.set("accept-encoding", "identity");
        }
        let (etag, modified) = entry.validators();
        if let Some(etag) = etag {
            let _ = request.insert_header(header::IF_NONE_MATCH, etag.clone());
        }
        if let Some(modified) = modified {
            let _ = request.insert_header(header::IF_MODIFIED_SINCE, modified.clone());
        }
        let started = Instant::now();
        let max = origin.route.max_object_size;
        let (mut head, body) =
            match upstream::fetch(&self.connector, &origin.pool, request, max).await {
                Ok(answer) => answer,
                Err(FetchError::TooLarge) => {
                    self.remove(key, entry);
                    return Revalidated::TooLarge;
                }
                Err(FetchError::Failed(why)) => return Revalidated::Failed(why, None),
            };
        crate::headers::strip_hop_by_hop(head.as_mut());
        let status = head.status.as_u16();
        let received = Received::now(status, head.headers.clone(), started.elapsed());
        let timing = received.timing();
        let route = &origin.route;
        if status == 304 && entry.validated_by(&received.headers) {
            let merged = entry.merged_fields(&received.headers);
            let checked = policy::response(
                route,
                &client_fields,
                entry.status(),
                &merged,
                &timing,
                received.response_time,
            );
            return match checked {
                Ok(storable) => {
                    let updated = Arc::new(entry.updated(merged, &received, storable.lifetime));
                    self.insert(key, updated.clone());
                    Revalidated::NotModified(updated)
                }
                Err(_) => {
                    self.remove(key, entry);
                    let once = entry.updated(merged, &received, once().lifetime);
                    Revalidated::Uncacheable(Arc::new(once))
                }
            };
        }
        if status == 304 || (100..200).contains(&status) {
            return Revalidated::Failed(format!("the app answered {status}"), None);
        }
        if policy::is_error_status(status) {
            let answer = Entry::new(&received, once(), &client_fields, body);
            return Revalidated::Failed(
                format!("the app answered {status}"),
                Some(Arc::new(answer)),
            );
        }
        let checked = policy::response(
            route,
            &client_fields,
            status,
            &received.headers,
            &timing,
            received.response_time,
        );
        match checked {
            Ok(storable) => {
                let fresh = Arc::new(Entry::new(&received, storable, &client_fields, body));
                self.store(&origin.route_name, key.to_string(), fresh.clone());
                Revalidated::Stored(fresh)
            }
            Err(why) => {
                self.metrics
                    .edge_cache_uncacheable(&origin.route_name, why.to_string().as_str());
                // The app no longer lets this be cached: drop the old answer.
                self.remove(key, entry);
                let once = Entry::new(&received, once(), &client_fields, body);
                Revalidated::Uncacheable(Arc::new(once))
            }
        }
    }
}
