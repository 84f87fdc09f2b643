//! One stored response: the app's fields as it sent them (less what a cache must not store),
//! its body in every encoding we keep, when it arrived (for `Age`), how long it may be served,
//! and the request fields it was selected by (`Vary`).

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue};
use std::sync::atomic::AtomicBool;
use std::time::{Instant, SystemTime};

use super::freshness::{self, Freshness, Lifetime, Timing};
use super::policy::Storable;
use crate::assets::{Answer, Asset, CacheStatus};

/// Fields a cache does not store (RFC 9111 §3.1: hop-by-hop and proxy fields), that describe
/// one transfer (`Content-Length`, `Age`, recomputed on each answer), or that are frontdoor's
/// own per request.
const NOT_STORED: [&str; 13] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authentication-info",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "age",
    "x-cache",
];

/// Fields an answer from memory writes itself: not sent from the stored list.
const ANSWERED_SEPARATELY: [HeaderName; 4] = [
    header::ETAG,
    header::VARY,
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
];

/// A response as it arrived from the app, for storing.
#[derive(Debug)]
pub struct Received {
    /// Its status.
    pub status: u16,
    /// Its fields, hop-by-hop ones already removed.
    pub headers: HeaderMap,
    /// When the request that got it was sent.
    pub request_time: SystemTime,
    /// When it arrived.
    pub response_time: SystemTime,
    /// The same moment, monotonic.
    pub received: Instant,
}

impl Received {
    /// A response that arrives now to a request sent `waited` ago.
    pub fn now(status: u16, headers: HeaderMap, waited: std::time::Duration) -> Self {
        let response_time = SystemTime::now();
        Received {
            status,
            headers,
            request_time: response_time.checked_sub(waited).unwrap_or(response_time),
            response_time,
            received: Instant::now(),
        }
    }

    /// Its timing (age at arrival).
    pub fn timing(&self) -> Timing {
        Timing::new(
            &self.headers,
            self.request_time,
            self.response_time,
            self.received,
        )
    }
}

/// One stored response.
#[derive(Debug)]
pub struct Entry {
    pub(super) status: u16,
    /// The stored fields (what a `304` updates).
    pub(super) stored: HeaderMap,
    /// The stored fields an answer sends as they are.
    answer_fields: Vec<(HeaderName, HeaderValue)>,
    etag: Option<String>,
    vary: Option<String>,
    content_encoding: Option<HeaderValue>,
    last_modified: Option<SystemTime>,
    date: Option<SystemTime>,
    pub(super) body: Asset,
    pub(super) timing: Timing,
    pub(super) lifetime: Lifetime,
    /// The request fields `Vary` names and the values this answer was selected by.
    pub(super) selecting: Vec<(HeaderName, Option<String>)>,
    /// The body is served exactly as the app sent it (it encoded it, or said `no-transform`).
    pub(super) as_sent: bool,
    /// Set while a background revalidation of this entry runs (one at a time).
    pub(super) refreshing: AtomicBool,
}

/// The value a request gives a selecting field: every line, each list member trimmed, joined
/// by commas (so `a, b` and `a,b` and two lines `a` and `b` select alike); `None` if absent.
pub fn selecting_value(request: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut lines = request.get_all(name).iter().peekable();
    lines.peek()?;
    let mut out = String::new();
    for line in lines {
        for member in String::from_utf8_lossy(line.as_bytes()).split(',') {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(member.trim());
        }
    }
    Some(out)
}

/// Whether the body was encoded by the app itself.
pub fn app_encoded(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"))
}

impl Entry {
    /// The entry for `received` with `body`, as `storable` says, selected by the fields of
    /// `request` that `Vary` names (`Accept-Encoding` only when we do not encode ourselves).
    pub fn new(received: &Received, storable: Storable, request: &HeaderMap, body: Bytes) -> Self {
        let mut stored = HeaderMap::with_capacity(received.headers.len() + 1);
        for (name, value) in &received.headers {
            let unstored = NOT_STORED.contains(&name.as_str())
                || *name == crate::headers::X_REQUEST_ID
                || storable.unstored_fields.iter().any(|f| f == name.as_str());
            if !unstored {
                stored.append(name.clone(), value.clone());
            }
        }
        if !stored.contains_key(header::DATE) {
            // RFC 9110 §6.6.1: a cache adds the Date the origin should have sent.
            if let Ok(date) = HeaderValue::from_str(&freshness::format_date(received.response_time))
            {
                stored.insert(header::DATE, date);
            }
        }
        let as_sent = storable.no_transform || app_encoded(&stored);
        let selecting = storable
            .vary
            .iter()
            .filter(|name| as_sent || **name != header::ACCEPT_ENCODING)
            .map(|name| (name.clone(), selecting_value(request, name)))
            .collect();
        let content_type = stored.get(header::CONTENT_TYPE).cloned();
        Entry::assemble(
            received.status,
            stored,
            Asset::new(body, content_type),
            received.timing(),
            storable.lifetime,
            selecting,
            as_sent,
        )
    }

    fn assemble(
        status: u16,
        stored: HeaderMap,
        body: Asset,
        timing: Timing,
        lifetime: Lifetime,
        selecting: Vec<(HeaderName, Option<String>)>,
        as_sent: bool,
    ) -> Self {
        let text = |name: &HeaderName| {
            let mut lines = stored.get_all(name).iter().filter_map(|v| v.to_str().ok());
            let first = lines.next()?.to_string();
            Some(lines.fold(first, |all, line| format!("{all}, {line}")))
        };
        let last_modified = freshness::date_field(&stored, &header::LAST_MODIFIED);
        let date = freshness::date_field(&stored, &header::DATE);
        Entry {
            status,
            answer_fields: stored
                .iter()
                .filter(|(name, _)| !ANSWERED_SEPARATELY.contains(name))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
            etag: stored
                .get(header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            vary: text(&header::VARY),
            content_encoding: stored
                .get(header::CONTENT_ENCODING)
                .cloned()
                .filter(|_| as_sent),
            last_modified,
            date,
            stored,
            body,
            timing,
            lifetime,
            selecting,
            as_sent,
            refreshing: AtomicBool::new(false),
        }
    }

    /// The stored fields updated by those of a `304` (RFC 9111 §4.3.4, §3.2): each field the
    /// 304 carries replaces the stored ones, except those describing the stored bytes (their
    /// coding, range and digest: `Content-MD5` is the MD5 of the body kept, RFC 1864).
    pub fn merged_fields(&self, not_modified: &HeaderMap) -> HeaderMap {
        let mut stored = self.stored.clone();
        let mut replaced: Vec<&HeaderName> = Vec::new();
        for (name, value) in not_modified {
            let keep_stored = NOT_STORED.contains(&name.as_str())
                || *name == header::CONTENT_ENCODING
                || *name == header::CONTENT_RANGE
                || name.as_str() == "content-md5"
                || *name == crate::headers::X_REQUEST_ID;
            if keep_stored {
                continue;
            }
            if !replaced.contains(&name) {
                stored.remove(name);
                replaced.push(name);
            }
            stored.append(name.clone(), value.clone());
        }
        stored
    }

    /// This entry with `merged` fields (from [`Entry::merged_fields`]) after the `304`
    /// `not_modified`: the same body (under the `Content-Type` the fields now say), a new age
    /// and lifetime.
    pub fn updated(&self, merged: HeaderMap, not_modified: &Received, lifetime: Lifetime) -> Entry {
        let content_type = merged.get(header::CONTENT_TYPE).cloned();
        Entry::assemble(
            self.status,
            merged,
            self.body.reused(content_type),
            not_modified.timing(),
            lifetime,
            self.selecting.clone(),
            self.as_sent,
        )
    }

    /// Whether a `304` with `fields` is about this entry (§4.3.4): its validator matches ours
    /// (weak comparison), or it carries none.
    pub fn validated_by(&self, fields: &HeaderMap) -> bool {
        let opaque = |v: &HeaderValue| {
            v.to_str()
                .ok()
                .map(|t| t.trim().trim_start_matches("W/").to_string())
        };
        if let Some(tag) = fields.get(header::ETAG) {
            return self.stored.get(header::ETAG).and_then(opaque) == opaque(tag);
        }
        if let Some(modified) = fields.get(header::LAST_MODIFIED) {
            return self.stored.get(header::LAST_MODIFIED) == Some(modified);
        }
        true
    }

    /// Whether the request fields `request` select this entry (`Vary` matching, §4.1).
    pub fn selected_by(&self, request: &HeaderMap) -> bool {
        self.selecting
            .iter()
            .all(|(name, value)| selecting_value(request, name) == *value)
    }

    /// Where it stands now.
    pub fn freshness(&self) -> Freshness {
        self.lifetime.freshness(self.timing.current_age())
    }

    /// How much longer it is worth keeping.
    pub fn remaining(&self) -> std::time::Duration {
        self.lifetime
            .retain()
            .saturating_sub(self.timing.current_age())
    }

    /// Its status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The app's validators, for a conditional request: `ETag`, `Last-Modified` as sent.
    pub fn validators(&self) -> (Option<&HeaderValue>, Option<&HeaderValue>) {
        (
            self.stored.get(header::ETAG),
            self.stored.get(header::LAST_MODIFIED),
        )
    }

    /// The fields of an answer from this entry: the stored ones, then the current `Age`.
    pub fn answer_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = Vec::with_capacity(self.answer_fields.len() + 1);
        headers.extend(self.answer_fields.iter().cloned());
        let age = self.timing.current_age().as_secs();
        headers.push((header::AGE, HeaderValue::from(age)));
        headers
    }

    /// How to answer from it, with `headers` from [`Entry::answer_headers`].
    pub fn answer<'a>(
        &'a self,
        headers: &'a [(HeaderName, HeaderValue)],
        x_cache: Option<CacheStatus>,
    ) -> Answer<'a> {
        Answer {
            status: self.status,
            headers,
            x_cache,
            etag: self.etag.as_deref(),
            vary: self.vary.as_deref(),
            content_encoding: self.content_encoding.as_ref(),
            modified: self.last_modified.or(self.date),
            last_modified: self.last_modified,
            date: self.date,
            negotiate: !self.as_sent,
        }
    }

    pub(super) fn weight(&self) -> u32 {
        let fields: usize = self
            .stored
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        self.body
            .weight()
            .saturating_add(u32::try_from(fields.saturating_mul(2)).unwrap_or(u32::MAX))
    }
}
