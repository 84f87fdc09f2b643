//! Conditional and partial requests for stored bodies (assets and edge-cache entries):
//! `If-None-Match` (RFC 9110 §13.1.2), `If-Modified-Since` (§13.1.3), `If-Range` (§13.1.5) and
//! a single `Range` of bytes (§14.2).

use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime};

/// Whether `If-None-Match` matches `etag`: `*`, or any listed tag by weak comparison (a
/// `W/` prefix on either side is ignored, as §13.1.2 requires for this header).
pub fn none_match(if_none_match: &str, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    let ours = opaque(etag);
    if_none_match.trim() == "*" || if_none_match.split(',').any(|tag| opaque(tag) == ours)
}

/// An entity-tag's opaque part and whether it is weak; `None` if it is not one.
fn entity_tag(text: &str) -> Option<(bool, &str)> {
    let text = text.trim();
    let (weak, rest) = match text.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    (rest.len() >= 2 && rest.starts_with('"') && rest.ends_with('"')).then_some((weak, rest))
}

/// Whether `If-Range` lets a `Range` apply to a body with strong-or-weak `etag` and
/// `last_modified` (`date`: when the response was generated): a strong tag equal to `etag`,
/// or exactly the `Last-Modified` date when that date is strong (a second or more before
/// `Date`). Anything else, a weak tag included, means the whole body.
pub fn if_range(
    if_range: &str,
    etag: &str,
    last_modified: Option<SystemTime>,
    date: Option<SystemTime>,
) -> bool {
    if let Some((weak, tag)) = entity_tag(if_range) {
        return !weak
            && entity_tag(etag).is_some_and(|(ours_weak, ours)| !ours_weak && ours == tag);
    }
    let (Some(asked), Some(modified)) = (
        httpdate::parse_http_date(if_range.trim()).ok(),
        last_modified,
    ) else {
        return false;
    };
    let strong = date.is_some_and(|d| {
        d.duration_since(modified)
            .is_ok_and(|gap| gap >= Duration::from_secs(1))
    });
    strong && asked == modified
}

/// Whether `If-Modified-Since` says the client's copy is current: the body was last changed
/// at `modified`, no later than the date asked. An invalid date is ignored.
pub fn not_modified_since(if_modified_since: &str, modified: SystemTime) -> bool {
    httpdate::parse_http_date(if_modified_since.trim()).is_ok_and(|since| modified <= since)
}

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send everything (also for multiple ranges, which we do not serve).
    Full,
    /// One satisfiable range, inclusive, clamped to the body.
    Partial(RangeInclusive<u64>),
    /// A well-formed range that starts past the end: `416` with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Interprets `Range: bytes=a-b`, `bytes=a-`, `bytes=-n` against `len`.
pub fn range(header: &str, len: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (number(first), number(last), last.trim().is_empty()) {
        // bytes=-n: the last n bytes.
        (None, Some(suffix), _) if first.trim().is_empty() => {
            if suffix == 0 || len == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(len.saturating_sub(suffix)..=len - 1)
            }
        }
        (Some(start), _, true) if start < len => RangeRequest::Partial(start..=len - 1),
        (Some(start), Some(end), false) if start <= end && start < len => {
            RangeRequest::Partial(start..=end.min(len - 1))
        }
        (Some(start), _, _) if start >= len => RangeRequest::Unsatisfiable,
        _ => RangeRequest::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_uses_weak_comparison_and_lists() {
        assert!(none_match("\"abc-br\"", "\"abc-br\""));
        assert!(none_match("W/\"abc-br\"", "\"abc-br\""));
        assert!(none_match("\"x\", \"abc-br\"", "\"abc-br\""));
        assert!(none_match("*", "\"abc-br\""));
        assert!(!none_match("\"abc-gzip\"", "\"abc-br\""));
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let now = SystemTime::now();
        assert!(if_range("\"r1\"", "\"r1\"", None, None));
        assert!(!if_range("\"bogus\"", "\"r1\"", None, None));
        assert!(!if_range("W/\"r1\"", "\"r1\"", None, None));
        assert!(!if_range("\"r1\"", "W/\"r1\"", None, None));
        let modified = now - Duration::from_secs(3600);
        let text = httpdate::fmt_http_date(modified);
        let exact = httpdate::parse_http_date(&text).unwrap();
        assert!(if_range(&text, "\"r1\"", Some(exact), Some(now)));
        assert!(
            !if_range(&text, "\"r1\"", Some(exact), Some(exact)),
            "a weak date"
        );
        assert!(!if_range(&text, "\"r1\"", None, Some(now)));
    }

    #[test]
    fn if_modified_since_compares_dates() {
        let modified = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert!(not_modified_since(
            "Sun, 06 Nov 1994 08:49:37 GMT",
            modified
        ));
        assert!(not_modified_since(
            "Sunday, 06-Nov-94 08:49:38 GMT",
            modified
        ));
        assert!(!not_modified_since(
            "Sun, 06 Nov 1994 08:49:36 GMT",
            modified
        ));
        assert!(!not_modified_since("yesterday", modified));
    }

    #[test]
    fn single_byte_ranges_are_clamped_and_checked() {
        assert_eq!(range("bytes=0-99", 1000), RangeRequest::Partial(0..=99));
        assert_eq!(range("bytes=900-", 1000), RangeRequest::Partial(900..=999));
        assert_eq!(range("bytes=-100", 1000), RangeRequest::Partial(900..=999));
        assert_eq!(range("bytes=-5000", 1000), RangeRequest::Partial(0..=999));
        assert_eq!(
            range("bytes=990-5000", 1000),
            RangeRequest::Partial(990..=999)
        );
        assert_eq!(range("bytes=1000-", 1000), RangeRequest::Unsatisfiable);
        assert_eq!(range("bytes=-0", 1000), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn what_we_do_not_serve_falls_back_to_the_whole_body() {
        assert_eq!(range("bytes=0-1,5-6", 1000), RangeRequest::Full);
        assert_eq!(range("items=0-1", 1000), RangeRequest::Full);
        assert_eq!(range("bytes=5-1", 1000), RangeRequest::Full);
        assert_eq!(range("bytes=a-b", 1000), RangeRequest::Full);
        assert_eq!(range("bytes=-", 1000), RangeRequest::Full);
    }
}
