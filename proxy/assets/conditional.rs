//! Conditional and partial requests for cached assets: `If-None-Match` (RFC 9110 §13.1.2)
//! and a single `Range` of bytes (§14.2).

use std::ops::RangeInclusive;

/// Whether `If-None-Match` matches `etag`: `*`, or any listed tag by weak comparison (a
/// `W/` prefix on either side is ignored, as §13.1.2 requires for this header).
pub fn none_match(if_none_match: &str, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    let ours = opaque(etag);
    if_none_match.trim() == "*" || if_none_match.split(',').any(|tag| opaque(tag) == ours)
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
