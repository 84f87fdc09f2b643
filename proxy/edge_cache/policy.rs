//! Which requests may be answered from the edge cache and which responses may be stored, and
//! for how long: RFC 9111 for a shared cache, RFC 9213 for `CDN-Cache-Control`, RFC 5861 for
//! the `stale-*` extensions.
//!
//! Stored: answers to GET with a final status other than 206 and 304 (any status with
//! `must-understand` only if we know it) that carry an explicit lifetime (`s-maxage`,
//! `max-age`, `Expires`), or `no-cache` and a validator to revalidate with. Never `private`,
//! `no-store`, `Set-Cookie`, `Vary: *`; an answer to a request with `Authorization` only with
//! `public`, `s-maxage` or `must-revalidate` (§3.5). No heuristic freshness: an answer
//! without an explicit lifetime is never reused without asking the app.

use http::{header, HeaderMap, HeaderName, Method};
use std::time::{Duration, SystemTime};

use super::directives::CacheControl;
use super::freshness::{self, Lifetime, Timing};
use super::CacheRoute;

/// How long past its fresh time an entry with a validator is kept, to be revalidated (a
/// `304`) instead of fetched again in full.
pub const KEEP_FOR_REVALIDATION: Duration = Duration::from_secs(600);

/// At most this many stored variants per URL (`Vary`); a new one replaces the oldest.
pub const MAX_VARIANTS: usize = 8;

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
    /// The request carries `Authorization` and the route does not allow that, or the answer
    /// does not say it may be shared (`public`, `s-maxage`, `must-revalidate`).
    #[error("authorization")]
    Authorization,
    /// A status a shared cache should not store here.
    #[error("status")]
    Status,
    /// `private` or `no-store`, or no explicit lifetime (and nothing to revalidate with).
    #[error("cache-control")]
    CacheControl,
    /// The response sets a cookie.
    #[error("set-cookie")]
    SetCookie,
    /// `Vary: *`.
    #[error("vary")]
    Vary,
    /// Larger than the route's `max-object-size`.
    #[error("too-large")]
    TooLarge,
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

/// Whether a method may change what the app holds, so that stored answers for its URL must
/// go after a non-error answer (RFC 9111 §4.4): anything but GET, HEAD, OPTIONS and TRACE.
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Statuses whose meaning (and body rules) we know, for `must-understand`.
fn understood_status(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 302 | 303 | 307 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// What the policy decided for a storable response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storable {
    /// How long it may be served.
    pub lifetime: Lifetime,
    /// The request fields `Vary` names, lowercase, in the app's order.
    pub vary: Vec<HeaderName>,
    /// `no-transform`: stored and served as the app sent it, never compressed by us.
    pub no_transform: bool,
    /// Fields `no-cache="…"` names: not stored.
    pub unstored_fields: Vec<String>,
}

/// Whether a response with `status` and `headers` to a request with `request` fields may be
/// stored for `route`, and for how long.
pub fn response(
    route: &CacheRoute,
    request: &HeaderMap,
    status: u16,
    headers: &HeaderMap,
    timing: &Timing,
    response_time: SystemTime,
) -> Result<Storable, Uncacheable> {
    let (cc, targeted) = CacheControl::for_response(headers);
    if !(200..600).contains(&status) || status == 206 || status == 304 {
        return Err(Uncacheable::Status);
    }
    if cc.must_understand && !understood_status(status) {
        return Err(Uncacheable::Status);
    }
    if cc.no_store && !cc.must_understand || cc.private {
        return Err(Uncacheable::CacheControl);
    }
    if headers.contains_key(header::SET_COOKIE) {
        return Err(Uncacheable::SetCookie);
    }
    if request.contains_key(header::AUTHORIZATION)
        && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
    {
        return Err(Uncacheable::Authorization);
    }
    let vary = vary_names(headers).ok_or(Uncacheable::Vary)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.max_object_size) {
        return Err(Uncacheable::TooLarge);
    }
    let has_validator =
        headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED);
    let explicit = freshness::lifetime(&cc, targeted, headers, response_time);
    let fresh = if cc.no_cache {
        Some(Duration::ZERO)
    } else {
        explicit
    };
    let Some(fresh) = fresh else {
        return Err(Uncacheable::CacheControl);
    };
    let route_default = |d: Duration| {
        if cc.forbids_stale() {
            Duration::ZERO
        } else {
            d
        }
    };
    let lifetime = Lifetime {
        fresh,
        stale_while_revalidate: cc.stale_while_revalidate.map_or(
            route_default(route.stale_while_revalidate),
            Duration::from_secs,
        ),
        stale_if_error: cc
            .stale_if_error
            .map_or(route_default(route.stale_if_error), Duration::from_secs),
        keep_for_revalidation: if has_validator {
            KEEP_FOR_REVALIDATION
        } else {
            Duration::ZERO
        },
    };
    if lifetime.retain() <= timing.current_age() {
        // Stale on arrival with nothing to revalidate with: it could never be served.
        return Err(Uncacheable::CacheControl);
    }
    Ok(Storable {
        lifetime,
        vary,
        no_transform: cc.no_transform,
        unstored_fields: cc.no_cache_fields,
    })
}

/// The field names `Vary` lists, lowercase and without repeats; `None` for `*`.
pub fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::VARY) {
        let text = value.to_str().ok()?;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) else {
                return None;
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Some(names)
}

/// Removes the request fields that would make the app answer 304 or a part: a fill stores
/// the whole answer.
pub fn strip_conditionals(request: &mut pingora::http::RequestHeader) {
    for name in [
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
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
    use std::time::Instant;

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

    fn check(
        r: &CacheRoute,
        req: &HeaderMap,
        status: u16,
        h: &HeaderMap,
    ) -> Result<Storable, Uncacheable> {
        let now = SystemTime::now();
        let timing = Timing::new(h, now, now, Instant::now());
        response(r, req, status, h, &timing, now)
    }

    fn lifetime(
        status: u16,
        pairs: &[(&'static str, &'static str)],
    ) -> Result<Lifetime, Uncacheable> {
        check(&route(), &HeaderMap::new(), status, &headers(pairs)).map(|s| s.lifetime)
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
    fn answers_to_authorized_requests_are_shared_only_when_the_app_says_so() {
        let r = CacheRoute {
            allow_authorization: true,
            ..route()
        };
        let alice = headers(&[("authorization", "Bearer alice")]);
        let private = headers(&[("cache-control", "max-age=60")]);
        assert_eq!(
            check(&r, &alice, 200, &private).map(|_| ()),
            Err(Uncacheable::Authorization)
        );
        for shared in [
            "public, max-age=60",
            "s-maxage=60",
            "max-age=60, must-revalidate",
        ] {
            let h = headers(&[("cache-control", shared)]);
            assert!(check(&r, &alice, 200, &h).is_ok(), "{shared}");
        }
    }

    #[test]
    fn lifetime_comes_from_s_maxage_then_max_age_and_stale_windows() {
        assert_eq!(
            lifetime(200, &[("cache-control", "public, max-age=60")]),
            Ok(Lifetime {
                fresh: Duration::from_secs(60),
                stale_while_revalidate: Duration::ZERO,
                stale_if_error: Duration::from_secs(7),
                keep_for_revalidation: Duration::ZERO,
            })
        );
        assert_eq!(
            lifetime(
                200,
                &[
                    ("cache-control", "max-age=10, s-maxage=30"),
                    (
                        "cache-control",
                        "stale-while-revalidate=5, stale-if-error=\"90\""
                    ),
                    ("etag", "\"v1\""),
                ]
            ),
            Ok(Lifetime {
                fresh: Duration::from_secs(30),
                stale_while_revalidate: Duration::from_secs(5),
                stale_if_error: Duration::from_secs(90),
                keep_for_revalidation: KEEP_FOR_REVALIDATION,
            })
        );
        // must-revalidate: the route's default stale-if-error does not apply.
        assert_eq!(
            lifetime(200, &[("cache-control", "max-age=5, must-revalidate")])
                .map(|l| l.stale_if_error),
            Ok(Duration::ZERO)
        );
        assert_eq!(
            lifetime(404, &[("cache-control", "public, max-age=5")]).map(|l| l.fresh),
            Ok(Duration::from_secs(5))
        );
        // no-cache with a validator: stored, revalidated on every use.
        assert_eq!(
            lifetime(200, &[("cache-control", "no-cache"), ("etag", "\"a\"")]).map(|l| l.fresh),
            Ok(Duration::ZERO)
        );
    }

    #[test]
    fn private_cookies_vary_star_and_partial_answers_are_never_stored() {
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
                &[("cache-control", "no-store, max-age=60")],
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
                &[("cache-control", "max-age=60"), ("age", "60")],
                Uncacheable::CacheControl,
            ),
            (
                200,
                &[("cache-control", "max-age=60"), ("set-cookie", "a=1")],
                Uncacheable::SetCookie,
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
                    ("vary", "Accept"),
                    ("vary", "*"),
                ],
                Uncacheable::Vary,
            ),
            (
                200,
                &[("cache-control", "max-age=60"), ("content-length", "1001")],
                Uncacheable::TooLarge,
            ),
            (206, &[("cache-control", "max-age=60")], Uncacheable::Status),
            (304, &[("cache-control", "max-age=60")], Uncacheable::Status),
            (
                599,
                &[("cache-control", "max-age=60, no-store, must-understand")],
                Uncacheable::Status,
            ),
            (
                200,
                &[
                    ("cdn-cache-control", "private"),
                    ("cache-control", "max-age=60"),
                ],
                Uncacheable::CacheControl,
            ),
        ];
        for (status, pairs, why) in cases {
            assert_eq!(
                check(&r, &HeaderMap::new(), *status, &headers(pairs)).map(|_| ()),
                Err(*why),
                "{status} {pairs:?}"
            );
        }
        let vary = headers(&[
            ("cache-control", "max-age=60"),
            ("vary", "Accept, accept-encoding"),
        ]);
        let stored = check(&r, &HeaderMap::new(), 200, &vary).expect("storable");
        assert_eq!(stored.vary, vec![header::ACCEPT, header::ACCEPT_ENCODING]);
        for status in [200, 302, 500, 599] {
            let h = headers(&[("cache-control", "max-age=60")]);
            assert!(check(&r, &HeaderMap::new(), status, &h).is_ok(), "{status}");
        }
        let understood = headers(&[("cache-control", "max-age=60, no-store, must-understand")]);
        assert!(check(&r, &HeaderMap::new(), 200, &understood).is_ok());
    }

    #[test]
    fn unsafe_methods_and_errors_for_stale_if_error() {
        assert!(is_unsafe(&Method::POST) && is_unsafe(&Method::DELETE));
        assert!(is_unsafe(&Method::from_bytes(b"M-SEARCH").unwrap()));
        assert!(!is_unsafe(&Method::GET) && !is_unsafe(&Method::OPTIONS));
        assert!([500, 502, 503, 504].into_iter().all(is_error_status));
        assert!(![200, 404, 501, 505].into_iter().any(is_error_status));
    }
}
