//! Request paths: one reading for the router, the asset directory and the app.
//!
//! The router matches the raw path; Rails decodes it. A path whose decoded form differs in
//! structure (`%2e%2e`, `%2f`, `\`) could match a public route and reach the app as another,
//! so those are refused (400). What is only spelled differently is normalised, and the
//! normalised path is what both the router and the app see (the upstream request is rewritten):
//! repeated slashes are merged (nginx's `merge_slashes`) and percent-escapes of unreserved
//! characters are decoded (RFC 3986 §6.2.2.2: `/%61dmin` is `/admin`).

use super::Rejection;

/// What to do with `%2F` and `%5C` (an encoded `/` or `\`) in a path: `[proxy]
/// encoded-slashes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodedSlashes {
    /// `400`: an app or a server behind it that decodes before routing would read another
    /// path than the router matched (the classic traversal).
    #[default]
    Refuse,
    /// Kept encoded inside their segment (as `%2F`/`%5C`), as nginx passes them and as Rails
    /// routes them (it matches before decoding): for apps with slashes in parameters.
    Pass,
}

/// The path to route and forward: `Ok(None)` when `path` is already normal, `Ok(Some(p))`
/// with its normal form, or the reason it is refused.
pub fn normalise(path: &str, slashes: EncodedSlashes) -> Result<Option<String>, Rejection> {
    if !path.starts_with('/') {
        // `*` (OPTIONS) and authority-form never reach a route; leave them to the router.
        return Ok(None);
    }
    if path.contains('\\') {
        return Err(Rejection::BadPath("backslash"));
    }
    if is_plain(path) {
        // The common case, without allocating: nothing to decode, merge or refuse.
        return Ok(None);
    }
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        let decoded = segment_normal(segment, slashes, &mut out)?;
        // With encoded slashes passed, `%2e%2e%2Fsecret` is one segment to the router but
        // `../secret` to an app that decodes after routing: each piece between decoded
        // slashes must not be a dot segment either.
        if decoded
            .split(|b| *b == b'/' || *b == b'\\')
            .any(|piece| piece == b"." || piece == b"..")
        {
            return Err(Rejection::BadPath("dot segment"));
        }
        if std::str::from_utf8(&decoded).is_err() {
            return Err(Rejection::BadPath("not UTF-8 once decoded"));
        }
    }
    if path.ends_with('/') {
        out.push('/');
    }
    Ok((out != path).then_some(out))
}

/// No escape, control character, repeated slash or dot segment.
fn is_plain(path: &str) -> bool {
    !path.bytes().any(|b| b == b'%' || b.is_ascii_control())
        && !path.contains("//")
        && path.split('/').all(|s| s != "." && s != "..")
}

/// Appends the normal spelling of `segment` to `out`; returns its decoded bytes.
fn segment_normal(
    segment: &str,
    slashes: EncodedSlashes,
    out: &mut String,
) -> Result<Vec<u8>, Rejection> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            if b.is_ascii_control() {
                return Err(Rejection::BadPath("control character"));
            }
            decoded.push(b);
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or(Rejection::BadPath("bad percent-escape"))?;
        match hex {
            b'/' | b'\\' if slashes == EncodedSlashes::Refuse => {
                return Err(Rejection::BadPath("encoded slash"))
            }
            c if c.is_ascii_control() => return Err(Rejection::BadPath("control character")),
            c if c.is_ascii_alphanumeric() || b"-._~".contains(&c) => out.push(char::from(c)),
            c => out.push_str(&format!("%{c:02X}")),
        }
        decoded.push(hex);
        i += 3;
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_left_alone() {
        for path in ["/", "/a/b", "/a/b/", "/caf%C3%A9", "/a%20b", "/%2B1"] {
            assert_eq!(normalise(path, EncodedSlashes::Refuse), Ok(None), "{path}");
        }
    }

    #[test]
    fn spellings_of_the_same_path_are_normalised() {
        assert_eq!(
            normalise("//admin", EncodedSlashes::Refuse),
            Ok(Some("/admin".into()))
        );
        assert_eq!(
            normalise("/a//b///c/", EncodedSlashes::Refuse),
            Ok(Some("/a/b/c/".into()))
        );
        assert_eq!(
            normalise("/%61dmin/%7euser", EncodedSlashes::Refuse),
            Ok(Some("/admin/~user".into()))
        );
        assert_eq!(
            normalise("/caf%c3%a9", EncodedSlashes::Refuse),
            Ok(Some("/caf%C3%A9".into()))
        );
    }

    #[test]
    fn encoded_slashes_pass_encoded_when_the_operator_allows_them() {
        let pass = EncodedSlashes::Pass;
        assert_eq!(
            normalise("/files/a%2fb", pass),
            Ok(Some("/files/a%2Fb".into()))
        );
        assert_eq!(normalise("/files/a%5Cb", pass), Ok(None));
        // Still refused: what an encoded slash does not excuse.
        for path in [
            "/public/%2e%2e/admin",
            "/x/%2e%2e%2Fsecret",
            "/x/a%2F..%2Fsecret",
            "/x/a%5C..",
            "/x/.%2fa",
            "/a%00",
            "/a\\b",
            "/a%ff",
        ] {
            assert!(
                matches!(normalise(path, pass), Err(Rejection::BadPath(_))),
                "{path}"
            );
        }
    }

    #[test]
    fn paths_read_differently_by_the_app_are_refused() {
        for path in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public/.%2E/admin",
            "/public/./x",
            "/public%2fx",
            "/public%2F..%2Fadmin",
            "/public\\..\\admin",
            "/a%5cb",
            "/a%00.js",
            "/a%ff",
            "/a%c3",
            "/a%zz",
            "/a%2",
        ] {
            assert!(
                matches!(
                    normalise(path, EncodedSlashes::Refuse),
                    Err(Rejection::BadPath(_))
                ),
                "{path}"
            );
        }
    }
}
