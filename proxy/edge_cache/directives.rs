//! The cache directives of a response or request: `Cache-Control` (RFC 9111 §5.2) and the
//! targeted `CDN-Cache-Control` (RFC 9213), which a cache in front of the app uses instead of
//! `Cache-Control` when it is present and valid.
//!
//! Parsing follows the grammar, not a substring search: a `max-age` inside a quoted value is no
//! directive, names are case-insensitive, a delta-seconds is digits only (leading zeros allowed)
//! and counts as at most 2^31. A directive given twice with different values, or with a value
//! that is not delta-seconds, is invalid: the response is then stale (§4.2.1), never fresher.

use http::{header, HeaderMap, HeaderName};

/// `CDN-Cache-Control` (RFC 9213): directives for caches operated for the origin.
pub const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// The greatest delta-seconds a cache must represent (RFC 9111 §1.2.2: larger values,
/// including ones past `u64`, count as 2^31). Without the cap `max-age=18446744073709551615,
/// stale-while-revalidate=…` overflowed the lifetime sums (found by the `cache_control` fuzz
/// target).
pub const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// The directives that matter to a shared cache.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CacheControl {
    /// `public`.
    pub public: bool,
    /// `private` (with or without field names: we treat both as "not for us").
    pub private: bool,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` without field names: stored, but revalidated on every use.
    pub no_cache: bool,
    /// The fields named by `no-cache="…"`: not stored (§5.2.2.4).
    pub no_cache_fields: Vec<String>,
    /// `no-transform`: no content coding may be added (RFC 9110 §7.7).
    pub no_transform: bool,
    /// `must-revalidate`: never served stale.
    pub must_revalidate: bool,
    /// `proxy-revalidate`: never served stale by a shared cache.
    pub proxy_revalidate: bool,
    /// `must-understand`: stored only if the status is understood.
    pub must_understand: bool,
    /// `max-age`, seconds; `Some(0)` when present but invalid.
    pub max_age: Option<u64>,
    /// `s-maxage`, seconds; `Some(0)` when present but invalid.
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate`, seconds.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error`, seconds.
    pub stale_if_error: Option<u64>,
}

impl CacheControl {
    /// The directives a shared cache in front of the app follows for a response: those of a
    /// valid `CDN-Cache-Control`, else those of `Cache-Control`. The second value says whether
    /// the targeted field was used (then `Expires` is ignored too, RFC 9213 §2.1).
    pub fn for_response(headers: &HeaderMap) -> (Self, bool) {
        if let Some(targeted) = targeted(headers) {
            return (targeted, true);
        }
        (Self::parse(headers), false)
    }

    /// Parses every `Cache-Control` field of `headers`. Unknown directives are ignored.
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut cc = CacheControl::default();
        let mut seen: Vec<(String, Option<String>)> = Vec::new();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(text) = value.to_str() else { continue };
            for (name, arg) in directives(text) {
                cc.apply(&name, arg.as_deref(), &mut seen);
            }
        }
        cc
    }

    fn apply(&mut self, name: &str, arg: Option<&str>, seen: &mut Vec<(String, Option<String>)>) {
        // The same directive twice with another value makes its value invalid (§4.2.1).
        let conflicting = seen.iter().any(|(n, a)| n == name && a.as_deref() != arg);
        seen.push((name.to_string(), arg.map(str::to_string)));
        let seconds = || {
            if conflicting {
                Some(0)
            } else {
                Some(arg.and_then(delta_seconds).unwrap_or(0))
            }
        };
        match name {
            "public" => self.public = true,
            "private" => self.private = true,
            "no-store" => self.no_store = true,
            "no-cache" => match arg {
                Some(fields) => self
                    .no_cache_fields
                    .extend(fields.split(',').map(|f| f.trim().to_ascii_lowercase())),
                None => self.no_cache = true,
            },
            "no-transform" => self.no_transform = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "must-understand" => self.must_understand = true,
            "max-age" => self.max_age = seconds(),
            "s-maxage" => self.s_maxage = seconds(),
            "stale-while-revalidate" => self.stale_while_revalidate = arg.and_then(delta_seconds),
            "stale-if-error" => self.stale_if_error = arg.and_then(delta_seconds),
            _ => {}
        }
    }

    /// Whether a stale copy may never be served without asking the app (RFC 9111 §4.2.4): the
    /// app's own `stale-while-revalidate`/`stale-if-error` still apply, a route's defaults not.
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.no_cache || self.s_maxage.is_some()
    }
}

/// Whether a response carries `Cache-Control: no-transform`.
pub fn no_transform(headers: &HeaderMap) -> bool {
    CacheControl::parse(headers).no_transform
}

/// The directives of one field value, names lowercase, quoted values unquoted. A comma inside
/// quotes separates nothing.
pub fn directives(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let mut name = String::new();
        while let Some(c) = chars.peek().copied() {
            if c == '=' || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        let mut value = None;
        let mut spaced = false;
        if chars.peek() == Some(&'=') {
            chars.next();
            spaced = name.ends_with(char::is_whitespace)
                || chars.peek().is_some_and(|c| c.is_whitespace());
            let mut v = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                v.push(escaped);
                            }
                        }
                        '"' => break,
                        c => v.push(c),
                    }
                }
                // Anything between the closing quote and the next comma is junk.
                while chars.peek().is_some_and(|c| *c != ',') {
                    chars.next();
                }
            } else {
                while let Some(c) = chars.peek().copied() {
                    if c == ',' {
                        break;
                    }
                    v.push(c);
                    chars.next();
                }
                v = v.trim().to_string();
            }
            value = Some(v);
        }
        let name = name.trim();
        // `max-age = 5`: no such directive (the grammar has no spaces around `=`).
        if !name.is_empty() && !name.contains(char::is_whitespace) && !spaced {
            out.push((name.to_ascii_lowercase(), value));
        }
    }
}

/// A delta-seconds value (digits only), capped at [`MAX_DELTA_SECONDS`].
pub fn delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        text.parse::<u64>()
            .map_or(MAX_DELTA_SECONDS, |n| n.min(MAX_DELTA_SECONDS)),
    )
}

/// The directives of a valid, non-empty `CDN-Cache-Control` (a Structured Fields dictionary,
/// RFC 8941 §3.2); `None` if it is absent or invalid, and `Cache-Control` applies.
fn targeted(headers: &HeaderMap) -> Option<CacheControl> {
    let mut lines = headers.get_all(CDN_CACHE_CONTROL).iter().peekable();
    lines.peek()?;
    let mut text = String::new();
    for line in lines {
        if !text.is_empty() {
            text.push(',');
        }
        text.push_str(line.to_str().ok()?);
    }
    let members = sf_dictionary(&text)?;
    if members.is_empty() {
        return None;
    }
    let mut cc = CacheControl::default();
    let mut seen = Vec::new();
    for (name, value) in members {
        match value {
            // `max-age="10000"` is a string, not an integer: the directive is ignored.
            SfValue::Integer(n) => {
                let arg = u64::try_from(n)
                    .ok()
                    .map(|n| n.min(MAX_DELTA_SECONDS).to_string());
                if arg.is_some() {
                    cc.apply(&name, arg.as_deref(), &mut seen);
                }
            }
            SfValue::True => cc.apply(&name, None, &mut seen),
            SfValue::Other => {}
        }
    }
    Some(cc)
}

enum SfValue {
    Integer(i64),
    True,
    Other,
}

/// A Structured Fields dictionary, just enough of RFC 8941 to tell a valid one: keys, and
/// integers, booleans, strings, tokens and decimals as values, parameters skipped.
fn sf_dictionary(text: &str) -> Option<Vec<(String, SfValue)>> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_sp = |i: &mut usize| {
        while *i < bytes.len() && (bytes[*i] == b' ' || bytes[*i] == b'\t') {
            *i += 1;
        }
    };
    skip_sp(&mut i);
    if i == bytes.len() {
        return Some(out);
    }
    loop {
        let key_start = i;
        if !(i < bytes.len() && (bytes[i].is_ascii_lowercase() || bytes[i] == b'*')) {
            return None;
        }
        while i < bytes.len()
            && (bytes[i].is_ascii_lowercase()
                || bytes[i].is_ascii_digit()
                || b"_-.*".contains(&bytes[i]))
        {
            i += 1;
        }
        let key = text[key_start..i].to_string();
        let value = if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            sf_bare_item(bytes, &mut i)?
        } else {
            SfValue::True
        };
        // Parameters: `;name` or `;name=item`.
        while i < bytes.len() && bytes[i] == b';' {
            i += 1;
            skip_sp(&mut i);
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_lowercase()
                    || bytes[i].is_ascii_digit()
                    || b"_-.*".contains(&bytes[i]))
            {
                i += 1;
            }
            if start == i {
                return None;
            }
            if i < bytes.len() && bytes[i] == b'=' {
                i += 1;
                sf_bare_item(bytes, &mut i)?;
            }
        }
        out.push((key, value));
        skip_sp(&mut i);
        if i == bytes.len() {
            return Some(out);
        }
        if bytes[i] != b',' {
            return None;
        }
        i += 1;
        skip_sp(&mut i);
        if i == bytes.len() {
            return None;
        }
    }
}

fn sf_bare_item(bytes: &[u8], i: &mut usize) -> Option<SfValue> {
    let first = *bytes.get(*i)?;
    match first {
        b'-' | b'0'..=b'9' => {
            let start = *i;
            *i += 1;
            while *i < bytes.len() && (bytes[*i].is_ascii_digit() || bytes[*i] == b'.') {
                *i += 1;
            }
            let text = std::str::from_utf8(&bytes[start..*i]).ok()?;
            if text.contains('.') {
                text.parse::<f64>().ok()?;
                Some(SfValue::Other)
            } else if text.len() > 16 {
                None
            } else {
                text.parse::<i64>().ok().map(SfValue::Integer)
            }
        }
        b'"' => {
            *i += 1;
            loop {
                match *bytes.get(*i)? {
                    b'\\' => *i += 2,
                    b'"' => {
                        *i += 1;
                        return Some(SfValue::Other);
                    }
                    c if (0x20..0x7f).contains(&c) => *i += 1,
                    _ => return None,
                }
            }
        }
        b'?' => {
            let value = match bytes.get(*i + 1)? {
                b'1' => SfValue::True,
                b'0' => SfValue::Other,
                _ => return None,
            };
            *i += 2;
            Some(value)
        }
        c if c.is_ascii_alphabetic() || c == b'*' => {
            *i += 1;
            while *i < bytes.len()
                && (bytes[*i].is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&bytes[*i]))
            {
                *i += 1;
            }
            Some(SfValue::Other)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn quoted_values_hide_directives_and_names_ignore_case() {
        let cc = CacheControl::parse(&headers(&[(
            "cache-control",
            "foo=\"max-age=8888\", MaX-AgE=003600, no-cache=\"a, b\"",
        )]));
        assert_eq!(cc.max_age, Some(3600));
        assert_eq!(cc.no_cache_fields, vec!["a", "b"]);
        assert!(!cc.no_cache);
        let cc = CacheControl::parse(&headers(&[(
            "cache-control",
            "max-age=1, foo=\"x, max-age=99\"",
        )]));
        assert_eq!(cc.max_age, Some(1));
    }

    #[test]
    fn invalid_or_conflicting_values_mean_stale() {
        for value in [
            "max-age=-1",
            "max-age='3600'",
            "max-age=3600.0",
            "max-age=a100",
        ] {
            let cc = CacheControl::parse(&headers(&[("cache-control", value)]));
            assert_eq!(cc.max_age, Some(0), "{value}");
        }
        let cc = CacheControl::parse(&headers(&[
            ("cache-control", "max-age=3600"),
            ("cache-control", "max-age=1"),
        ]));
        assert_eq!(cc.max_age, Some(0));
        let cc = CacheControl::parse(&headers(&[("cache-control", "max-age = 3600")]));
        assert_eq!(cc.max_age, None);
    }

    #[test]
    fn a_valid_cdn_cache_control_replaces_cache_control() {
        let (cc, targeted) = CacheControl::for_response(&headers(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=10000"),
        ]));
        assert!(targeted);
        assert_eq!((cc.no_store, cc.max_age), (false, Some(10000)));
        let (cc, _) = CacheControl::for_response(&headers(&[
            ("cache-control", "max-age=10000"),
            ("cdn-cache-control", "private"),
        ]));
        assert!(cc.private);
        // Not a Structured Field: Cache-Control applies.
        let (cc, targeted) = CacheControl::for_response(&headers(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=10000, &&&&&"),
        ]));
        assert!(!targeted && cc.no_store);
        // A string where an integer belongs: that directive is ignored.
        let (cc, targeted) = CacheControl::for_response(&headers(&[
            ("cache-control", "max-age=5"),
            ("cdn-cache-control", "max-age=\"10000\""),
        ]));
        assert!(targeted);
        assert_eq!(cc.max_age, None);
    }

    #[test]
    fn delta_seconds_are_capped_at_2_pow_31() {
        assert_eq!(delta_seconds("99999999999999999999999"), Some(1 << 31));
        assert_eq!(delta_seconds("2147483649"), Some(1 << 31));
        assert_eq!(delta_seconds("12"), Some(12));
        assert_eq!(delta_seconds("-1"), None);
        assert_eq!(delta_seconds(""), None);
    }
}
