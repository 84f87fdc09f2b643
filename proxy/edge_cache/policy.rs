//! Which requests may be answered from the edge cache and which responses may be stored, and
//! for how long (RFC 9111 for a shared cache, RFC 5861 for the `stale-*` extensions).
//!
//! The rules are deliberately narrow, as Varnish's defaults are: only GET/HEAD without
//! credentials (unless the route allows them), only responses the app marked cacheable with
//! an explicit lifetime (`s-maxage` or `max-age`), never `private`, `no-store`, `no-cache` or
//! `Set-Cookie`, never a `Vary` on anything but `Accept-Encoding`, never a body the app
//! encoded itself (we store identity and compress once ourselves).

use http::{header, HeaderMap, Method};
use std::time::Duration;

use super::CacheRoute;

/// Why a request or response bypasses the cache. Expected outcomes, not faults; the
/// `Display` form is a fixed word, used as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Uncacheable {
    /// Only GET and HEAD are cached.
    #[error("method")]
    Method,
    /// The request carries a cookie and the route does not allow that.
    #[error("cookie")]
    Cookie,
    /// The request carries `Authorization` and the route does not allow that.
    #[error("authorization")]
    Authorization,
    /// A status a shared cache should not store here.
    #[error("status")]
    Status,
    /// `private`, `no-store` or `no-cache`, or no explicit lifetime.
    #[error("cache-control")]
    CacheControl,
    /// The response sets a cookie.
    #[error("set-cookie")]
    SetCookie,
    /// `Vary` names something other than `Accept-Encoding`.
    #[error("vary")]
    Vary,
    /// The app encoded the body itself.
    #[error("encoded")]
    Encoded,
    /// Larger than the route's `max-object-size`.
    #[error("too-large")]
    TooLarge,
}

/// How long a stored response may be served, measured from when it was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Served as fresh for this long.
    pub fresh: Duration,
    /// Then served stale while one background refresh runs, for this long.
    pub stale_while_revalidate: Duration,
    /// Then (and during the above) served stale when the app fails, for this long.
    pub stale_if_error: Duration,
}

/// Where a stored response stands at some age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Served as it is.
    Fresh,
    /// Served while one background refresh runs.
    Stale,
    /// Served only if asking the app fails.
    Fallback,
    /// Not served.
    Expired,
}

impl Lifetime {
    /// How long the entry is worth keeping at all.
    pub fn retain(&self) -> Duration {
        // Saturating: the stale windows may come from the config, which allows any length.
        self.fresh
            .saturating_add(self.stale_while_revalidate.max(self.stale_if_error))
    }

    /// Where an entry stored `age` ago stands.
    pub fn freshness(&self, age: Duration) -> Freshness {
        if age < self.fresh {
            Freshness::Fresh
        } else if age < self.fresh.saturating_add(self.stale_while_revalidate) {
            Freshness::Stale
        } else if age < self.fresh.saturating_add(self.stale_if_error) {
            Freshness::Fallback
        } else {
            Freshness::Expired
        }
    }
}

/// Whether `method` with `headers` may be answered from (and fill) the cache of `route`.
pub fn request(
    route: &CacheRoute,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), Uncacheable> {
    if method != Method::GET && method != Method::HEAD {
        return Err(Uncacheable::Method);
    }
    if !route.allow_cookies && headers.contains_key(header::COOKIE) {
        return Err(Uncacheable::Cookie);
    }
    if !route.allow_authorization && headers.contains_key(header::AUTHORIZATION) {
        return Err(Uncacheable::Authorization);
    }
    Ok(())
}

/// Statuses stored when the app gives them an explicit lifetime (RFC 9111 §3: the
/// heuristically cacheable ones, less those whose bodies we do not keep).
fn storable_status(status: u16) -> bool {
    matches!(status, 200 | 203 | 300 | 301 | 308 | 404 | 410)
}

/// The directives of a `Cache-Control` field that matter to a shared cache.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CacheControl {
    /// `private` (with or without field names: we treat both as "not for us").
    pub private: bool,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache`: must revalidate every time, which we do not do.
    pub no_cache: bool,
    /// `max-age`, seconds.
    pub max_age: Option<u64>,
    /// `s-maxage`, seconds (overrides `max-age` for shared caches).
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate`, seconds.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error`, seconds.
    pub stale_if_error: Option<u64>,
}

impl CacheControl {
    /// Parses every `Cache-Control` field of `headers`. Unknown directives are ignored; a
    /// malformed number leaves its directive unset (so the response is not cached on it).
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut cc = CacheControl::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(text) = value.to_str() else { continue };
            for directive in text.split(',') {
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive.trim(), None),
                };
                let seconds = || arg.and_then(delta_seconds);
                match name.to_ascii_lowercase().as_str() {
                    "private" => cc.private = true,
                    "no-store" => cc.no_store = true,
                    "no-cache" => cc.no_cache = true,
                    "max-age" => cc.max_age = seconds(),
                    "s-maxage" => cc.s_maxage = seconds(),
                    "stale-while-revalidate" => cc.stale_while_revalidate = seconds(),
                    "stale-if-error" => cc.stale_if_error = seconds(),
                    _ => {}
                }
            }
        }
        cc
    }
}

/// The greatest delta-seconds a cache must represent (RFC 9111 §1.2.2: larger values,
/// including ones past `u64`, count as 2^31). Without the cap `max-age=18446744073709551615,
/// stale-while-revalidate=…` overflowed the lifetime sums (found by the `cache_control` fuzz
/// target).
const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// A delta-seconds value (digits only), capped at [`MAX_DELTA_SECONDS`].
fn delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        text.parse::<u64>()
            .map_or(MAX_DELTA_SECONDS, |n| n.min(MAX_DELTA_SECONDS)),
    )
}

/// Whether a response with `status` and `headers` may be stored for `route`, and for how long.
/// `Age` from an upstream cache is taken off the fresh time.
pub fn response(
    route: &CacheRoute,
    status: u16,
    headers: &HeaderMap,
) -> Result<Lifetime, Uncacheable> {
    if !storable_status(status) {
        return Err(Uncacheable::Status);
    }
    if headers.contains_key(header::SET_COOKIE) {
        return Err(Uncacheable::SetCookie);
    }
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Err(Uncacheable::Encoded);
    }
    for vary in headers.get_all(header::VARY) {
        let only_encoding = vary.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .all(|f| f.is_empty() || f.eq_ignore_ascii_case("accept-encoding"))
        });
        if !only_encoding {
            return Err(Uncacheable::Vary);
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.max_object_size) {
        return Err(Uncacheable::TooLarge);
    }
    let cc = CacheControl::parse(headers);
    if cc.private || cc.no_store || cc.no_cache {
        return Err(Uncacheable::CacheControl);
    }
    let max_age = cc
        .s_maxage
        .or(cc.max_age)
        .ok_or(Uncacheable::CacheControl)?;
    let age = headers
        .get(header::AGE)
        .and_then(|v| delta_seconds(v.to_str().ok()?.trim()))
        .unwrap_or(0);
    let lifetime = Lifetime {
        fresh: Duration::from_secs(max_age.saturating_sub(age)),
        stale_while_revalidate: cc
            .stale_while_revalidate
            .map_or(route.stale_while_revalidate, Duration::from_secs),
        stale_if_error: cc
            .stale_if_error
            .map_or(route.stale_if_error, Duration::from_secs),
    };
    if lifetime.retain().is_zero() {
        return Err(Uncacheable::CacheControl);
    }
    Ok(lifetime)
}

/// Removes the request fields that would make the app answer 304 or a part: a fill stores
/// the whole answer.
pub fn strip_conditionals(request: &mut pingora::http::RequestHeader) {
    for name in [
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_RANGE,
        header::RANGE,
    ] {
        request.remove_header(&name);
    }
}

/// Upstream statuses that count as "the app failed" for `stale-if-error` (RFC 5861 §4).
pub fn is_error_status(status: u16) -> bool {
    matches!(status, 500 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn route() -> CacheRoute {
        CacheRoute {
            version: 1,
            max_object_size: 1000,
            allow_cookies: false,
            allow_authorization: false,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::from_secs(7),
            x_cache_header: true,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_get_and_head_without_credentials_use_the_cache() {
        let r = route();
        assert_eq!(request(&r, &Method::GET, &headers(&[])), Ok(()));
        assert_eq!(request(&r, &Method::HEAD, &headers(&[])), Ok(()));
        assert_eq!(
            request(&r, &Method::POST, &headers(&[])),
            Err(Uncacheable::Method)
        );
        let cookie = headers(&[("cookie", "session=1")]);
        assert_eq!(request(&r, &Method::GET, &cookie), Err(Uncacheable::Cookie));
        let auth = headers(&[("authorization", "Bearer x")]);
        assert_eq!(
            request(&r, &Method::GET, &auth),
            Err(Uncacheable::Authorization)
        );
        let allowing = CacheRoute {
            allow_cookies: true,
            allow_authorization: true,
            ..route()
        };
        assert_eq!(request(&allowing, &Method::GET, &cookie), Ok(()));
        assert_eq!(request(&allowing, &Method::GET, &auth), Ok(()));
    }

    #[test]
    fn lifetime_comes_from_s_maxage_then_max_age_less_age() {
        let r = route();
        let life = response(
            &r,
            200,
            &headers(&[("cache-control", "public, max-age=60")]),
        );
        assert_eq!(
            life,
            Ok(Lifetime {
                fresh: Duration::from_secs(60),
                stale_while_revalidate: Duration::ZERO,
                stale_if_error: Duration::from_secs(7),
            })
        );
        let shared = headers(&[
            ("cache-control", "max-age=10, s-maxage=30"),
            (
                "cache-control",
                "stale-while-revalidate=5, stale-if-error=\"90\"",
            ),
            ("age", "4"),
        ]);
        assert_eq!(
            response(&r, 200, &shared),
            Ok(Lifetime {
                fresh: Duration::from_secs(26),
                stale_while_revalidate: Duration::from_secs(5),
                stale_if_error: Duration::from_secs(90),
            })
        );
        assert_eq!(
            response(&r, 404, &headers(&[("cache-control", "public, max-age=5")])).map(|l| l.fresh),
            Ok(Duration::from_secs(5))
        );
    }

    #[test]
    fn lifetimes_past_2_pow_31_seconds_count_as_2_pow_31() {
        let huge = headers(&[
            (
                "cache-control",
                "max-age=18446744073709551616, stale-while-revalidate=18446744073709551615",
            ),
            ("age", "99999999999999999999999"),
        ]);
        let life = response(&route(), 200, &huge);
        assert_eq!(
            life.map(|l| (l.fresh, l.stale_while_revalidate)),
            Ok((Duration::ZERO, Duration::from_secs(1 << 31)))
        );
        let forever = Lifetime {
            fresh: Duration::MAX,
            stale_while_revalidate: Duration::MAX,
            stale_if_error: Duration::MAX,
        };
        assert_eq!(forever.retain(), Duration::MAX);
        assert_eq!(forever.freshness(Duration::MAX), Freshness::Expired);
    }

    #[test]
    fn private_cookies_vary_encodings_and_errors_are_never_stored() {
        let r = CacheRoute {
            stale_if_error: Duration::ZERO,
            ..route()
        };
        type Fields = &'static [(&'static str, &'static str)];
        let cases: &[(u16, Fields, Uncacheable)] = &[
            (
                200,
                &[("cache-control", "private, max-age=60")],
                Uncacheable::CacheControl,
            ),
            (
                200,
                &[("cache-control", "no-store")],
                Uncacheable::CacheControl,
            ),
            (
                200,
                &[("cache-control", "public, no-cache, max-age=9")],
                Uncacheable::CacheControl,
            ),
            (
                200,
                &[("cache-control", "public")],
                Uncacheable::CacheControl,
            ),
            (200, &[], Uncacheable::CacheControl),
            (
                200,
                &[("cache-control", "max-age=soon")],
                Uncacheable::CacheControl,
            ),
            (
                200,
                &[("cache-control", "max-age=0")],
                Uncacheable::CacheControl,
            ),
            (
                200,
                &[("cache-control", "max-age=60"), ("set-cookie", "a=1")],
                Uncacheable::SetCookie,
            ),
            (
                200,
                &[("cache-control", "max-age=60"), ("vary", "Cookie")],
                Uncacheable::Vary,
            ),
            (
                200,
                &[("cache-control", "max-age=60"), ("vary", "*")],
                Uncacheable::Vary,
            ),
            (
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("content-encoding", "gzip"),
                ],
                Uncacheable::Encoded,
            ),
            (
                200,
                &[("cache-control", "max-age=60"), ("content-length", "1001")],
                Uncacheable::TooLarge,
            ),
            (500, &[("cache-control", "max-age=60")], Uncacheable::Status),
            (206, &[("cache-control", "max-age=60")], Uncacheable::Status),
            (302, &[("cache-control", "max-age=60")], Uncacheable::Status),
        ];
        for (status, pairs, why) in cases {
            assert_eq!(
                response(&r, *status, &headers(pairs)),
                Err(*why),
                "{status} {pairs:?}"
            );
        }
        let vary_encoding =
            headers(&[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")]);
        assert!(response(&r, 200, &vary_encoding).is_ok());
    }

    #[test]
    fn errors_for_stale_if_error_are_the_rfc_5861_ones() {
        assert!([500, 502, 503, 504].into_iter().all(is_error_status));
        assert!(![200, 404, 501, 505].into_iter().any(is_error_status));
    }
}
