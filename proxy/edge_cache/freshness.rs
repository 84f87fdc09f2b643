//! How fresh a stored response is (RFC 9111 §4.2): its freshness lifetime from `s-maxage`,
//! `max-age` or `Expires` − `Date`, and its current age from `Age`, `Date` and the time it
//! took to arrive (§4.2.3), counted in exact durations and rounded down only when `Age` is
//! written. No heuristic freshness: a response without an explicit lifetime is never fresh.

use http::{header, HeaderMap};
use std::time::{Duration, Instant, SystemTime};

use super::directives::{delta_seconds, CacheControl};

/// An HTTP-date (IMF-fixdate, RFC 850 or asctime, RFC 9110 §5.6.7).
pub fn http_date(text: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(text.trim()).ok()
}

/// The first HTTP-date of field `name`: a field given twice is read by its first line.
pub fn date_field(headers: &HeaderMap, name: &header::HeaderName) -> Option<SystemTime> {
    headers.get(name).and_then(|v| http_date(v.to_str().ok()?))
}

/// `SystemTime` as an IMF-fixdate.
pub fn format_date(at: SystemTime) -> String {
    httpdate::fmt_http_date(at)
}

/// `Age` as received: the first value of the first line; an invalid one is ignored (0).
pub fn age_value(headers: &HeaderMap) -> Duration {
    let first = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| delta_seconds(v.trim()))
        .unwrap_or(0);
    Duration::from_secs(first)
}

/// The freshness lifetime (§4.2.1): `s-maxage`, else `max-age`, else `Expires` − `Date`
/// (an `Expires` that is not a date means already expired). `None`: no explicit lifetime.
pub fn lifetime(
    cc: &CacheControl,
    targeted: bool,
    headers: &HeaderMap,
    response_time: SystemTime,
) -> Option<Duration> {
    if let Some(seconds) = cc.s_maxage.or(cc.max_age) {
        return Some(Duration::from_secs(seconds));
    }
    if targeted {
        // A targeted field replaces Expires as well (RFC 9213 §2.1).
        return None;
    }
    let expires = headers.get(header::EXPIRES)?;
    if headers.get_all(header::EXPIRES).iter().count() > 1 {
        return Some(Duration::ZERO);
    }
    let Some(expires) = expires.to_str().ok().and_then(http_date) else {
        return Some(Duration::ZERO);
    };
    let date = date_field(headers, &header::DATE).unwrap_or(response_time);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// When a stored response was asked for and received, and the age it arrived with.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// `corrected_initial_age` (§4.2.3): the larger of `Age` + response delay and
    /// `response_time` − `Date`.
    initial_age: Duration,
    /// When it was received, monotonic: resident time counts from here.
    received: Instant,
}

impl Timing {
    /// The timing of a response to a request sent at `request_time` and received at
    /// `response_time` (`received` is the same moment on the monotonic clock).
    pub fn new(
        headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
        received: Instant,
    ) -> Self {
        let apparent_age = date_field(headers, &header::DATE)
            .and_then(|date| response_time.duration_since(date).ok())
            .unwrap_or(Duration::ZERO);
        let response_delay = response_time
            .duration_since(request_time)
            .unwrap_or(Duration::ZERO);
        let corrected_age = age_value(headers).saturating_add(response_delay);
        Timing {
            initial_age: apparent_age.max(corrected_age),
            received,
        }
    }

    /// `current_age` now.
    pub fn current_age(&self) -> Duration {
        self.initial_age.saturating_add(self.received.elapsed())
    }

    /// How long it has been held here.
    pub fn resident(&self) -> Duration {
        self.received.elapsed()
    }
}

/// How long a stored response may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Served as fresh while its current age is below this.
    pub fresh: Duration,
    /// Then served stale while one background revalidation runs, for this long.
    pub stale_while_revalidate: Duration,
    /// Then (and during the above) served stale when the app fails, for this long.
    pub stale_if_error: Duration,
    /// Kept this long past `fresh` so that it can be revalidated instead of refetched.
    pub keep_for_revalidation: Duration,
}

/// Where a stored response stands at some age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Served as it is.
    Fresh,
    /// Served while one background revalidation runs.
    Stale,
    /// Revalidated with the app first; served stale if that fails (`stale-if-error`).
    Fallback,
    /// Revalidated with the app first; never served stale.
    Revalidate,
    /// Not served.
    Expired,
}

impl Lifetime {
    /// How long the entry is worth keeping at all, counted in current age.
    pub fn retain(&self) -> Duration {
        // Saturating: the stale windows may come from the config, which allows any length.
        self.fresh.saturating_add(
            self.stale_while_revalidate
                .max(self.stale_if_error)
                .max(self.keep_for_revalidation),
        )
    }

    /// Where an entry of current age `age` stands.
    pub fn freshness(&self, age: Duration) -> Freshness {
        if age < self.fresh {
            Freshness::Fresh
        } else if age < self.fresh.saturating_add(self.stale_while_revalidate) {
            Freshness::Stale
        } else if age < self.fresh.saturating_add(self.stale_if_error) {
            Freshness::Fallback
        } else if age < self.fresh.saturating_add(self.keep_for_revalidation) {
            Freshness::Revalidate
        } else {
            Freshness::Expired
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn age_is_read_from_its_first_value_and_invalid_ones_are_ignored() {
        let age = |v: &str| age_value(&headers(&[("age", v)])).as_secs();
        assert_eq!(age("7200, 0"), 7200);
        assert_eq!(age("0, 7200"), 0);
        assert_eq!(age("old"), 0);
        assert_eq!(age("-5"), 0);
        assert_eq!(age("1.5"), 0);
        assert_eq!(age("2147483649"), 1 << 31);
        let two = headers(&[("age", "7200"), ("age", "0")]);
        assert_eq!(age_value(&two).as_secs(), 7200);
    }

    #[test]
    fn lifetime_comes_from_s_maxage_max_age_then_expires_minus_date() {
        let now = SystemTime::now();
        let at = |secs: i64| {
            let t = if secs >= 0 {
                now + Duration::from_secs(secs as u64)
            } else {
                now - Duration::from_secs((-secs) as u64)
            };
            format_date(t)
        };
        let life = |h: HeaderMap| {
            let (cc, targeted) = CacheControl::for_response(&h);
            lifetime(&cc, targeted, &h, now).map(|d| d.as_secs())
        };
        assert_eq!(
            life(headers(&[("cache-control", "max-age=10, s-maxage=3")])),
            Some(3)
        );
        assert_eq!(
            life(headers(&[("expires", &at(100)), ("date", &at(0))])),
            Some(100)
        );
        // Expires is measured against the app's Date, not ours.
        assert_eq!(
            life(headers(&[("expires", &at(100)), ("date", &at(-50))])),
            Some(150)
        );
        assert_eq!(life(headers(&[("expires", "0")])), Some(0));
        assert_eq!(life(headers(&[("expires", &at(-10))])), Some(0));
        assert_eq!(
            life(headers(&[
                ("expires", &at(-10)),
                ("cache-control", "max-age=60")
            ])),
            Some(60)
        );
        assert_eq!(life(headers(&[("cache-control", "public")])), None);
        assert_eq!(
            life(headers(&[
                ("cdn-cache-control", "no-cache"),
                ("expires", &at(100))
            ])),
            None
        );
    }

    #[test]
    fn current_age_counts_date_age_and_the_response_delay() {
        let now = SystemTime::now();
        let date = format_date(now - Duration::from_secs(30));
        let timing = Timing::new(&headers(&[("date", &date)]), now, now, Instant::now());
        assert!((29..=31).contains(&timing.current_age().as_secs()));
        let timing = Timing::new(
            &headers(&[("age", "100"), ("date", &format_date(now))]),
            now - Duration::from_secs(2),
            now,
            Instant::now(),
        );
        assert_eq!(timing.current_age().as_secs(), 102);
    }

    #[test]
    fn lifetimes_past_2_pow_31_seconds_do_not_overflow() {
        let forever = Lifetime {
            fresh: Duration::MAX,
            stale_while_revalidate: Duration::MAX,
            stale_if_error: Duration::MAX,
            keep_for_revalidation: Duration::ZERO,
        };
        assert_eq!(forever.retain(), Duration::MAX);
        assert_eq!(forever.freshness(Duration::MAX), Freshness::Expired);
        let life = Lifetime {
            fresh: Duration::from_secs(10),
            stale_while_revalidate: Duration::from_secs(5),
            stale_if_error: Duration::from_secs(20),
            keep_for_revalidation: Duration::from_secs(60),
        };
        let at = |s| life.freshness(Duration::from_secs(s));
        assert_eq!(
            [at(9), at(12), at(20), at(40), at(80)],
            [
                Freshness::Fresh,
                Freshness::Stale,
                Freshness::Fallback,
                Freshness::Revalidate,
                Freshness::Expired
            ]
        );
    }
}
