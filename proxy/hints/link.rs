//! `Link` header values: URL templates from the config expanded with a route's parameters,
//! the attributes each destination needs, and merging with what the upstream sent.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use std::fmt;
use std::sync::Arc;

use crate::template::{Params, PathTemplate};

/// Bytes encoded in a substituted parameter: everything that could end a path segment, a
/// query value or the `<…>` of a `Link` value, and `%` itself (values are decoded first, so
/// a value is encoded exactly once).
const VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'\'')
    .add(b'+')
    .add(b',')
    .add(b'/')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Bytes a literal part of a template may not contain (they would break the header value).
const FORBIDDEN_LITERAL: &[char] = &['<', '>', ',', ';', ' ', '"', '\\'];

/// `rel` of a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rel {
    /// Needed by this page: fetch now, at high priority.
    Preload,
    /// Likely needed by the next navigation: fetch when idle.
    Prefetch,
}

impl Rel {
    fn token(self) -> &'static str {
        match self {
            Rel::Preload => "preload",
            Rel::Prefetch => "prefetch",
        }
    }
}

/// The `as` destination of a hint; decides the attributes the browser needs to reuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// `fetch()`/XHR: sent with `crossorigin` (fetch's default `same-origin` credentials),
    /// or the browser downloads the document a second time.
    Fetch,
    /// A classic `<script src>`.
    Script,
    /// A stylesheet.
    Style,
    /// A web font (always CORS, hence `crossorigin`).
    Font,
    /// An image.
    Image,
}

impl Destination {
    /// Parses the `as` value of the config.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "fetch" => Ok(Destination::Fetch),
            "script" => Ok(Destination::Script),
            "style" => Ok(Destination::Style),
            "font" => Ok(Destination::Font),
            "image" => Ok(Destination::Image),
            other => Err(format!(
                "`{other}` is not a destination: use fetch, script, style, font or image"
            )),
        }
    }

    /// The destination a URL's extension implies, if it is a common one.
    pub fn from_extension(url: &str) -> Option<Self> {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Destination::Fetch),
            "js" => Some(Destination::Script),
            "css" => Some(Destination::Style),
            "woff" | "woff2" | "ttf" | "otf" => Some(Destination::Font),
            "png" | "jpg" | "jpeg" | "gif" | "webp" | "avif" | "svg" => Some(Destination::Image),
            _ => None,
        }
    }

    fn token(self) -> &'static str {
        match self {
            Destination::Fetch => "fetch",
            Destination::Script => "script",
            Destination::Style => "style",
            Destination::Font => "font",
            Destination::Image => "image",
        }
    }

    fn cors(self) -> bool {
        matches!(self, Destination::Fetch | Destination::Font)
    }
}

/// One hint, ready to be written: `</a.json>; rel=preload; as=fetch; crossorigin`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Link {
    /// The URL (already encoded).
    pub url: String,
    /// `preload` or `prefetch`.
    pub rel: Rel,
    /// What it is for.
    pub destination: Destination,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<{}>; rel={}; as={}",
            self.url,
            self.rel.token(),
            self.destination.token()
        )?;
        if self.destination.cors() {
            f.write_str("; crossorigin")?;
        }
        Ok(())
    }
}

/// One part of a hint template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `{name}`: the captured value, encoded as one segment.
    Param(Arc<str>),
    /// `{name*}`: a glob's captured segments, each encoded, joined by `/`.
    Glob(Arc<str>),
}

/// A hint URL template (`/courses/{school}/{title}/course.json`), checked against the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTemplate {
    parts: Vec<Part>,
    rel: Rel,
    destination: Destination,
}

impl LinkTemplate {
    /// Compiles `source` for a route with `route`'s parameters. `{name}` must name one of
    /// them; a template is a same-origin absolute path (it may have a query).
    pub fn parse(
        source: &str,
        rel: Rel,
        destination: Destination,
        route: &PathTemplate,
    ) -> Result<Self, String> {
        if !source.starts_with('/') || source.starts_with("//") {
            return Err(format!(
                "`{source}`: a hint is a path on this site, starting with one `/`"
            ));
        }
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find('{') {
            let (literal, after) = rest.split_at(open);
            let close = after
                .find('}')
                .ok_or_else(|| format!("`{source}`: `{{` without `}}`"))?;
            let name = &after[1..close];
            push_literal(&mut parts, literal, source)?;
            let (bare, glob) = match name.strip_suffix('*') {
                Some(bare) => (bare, true),
                None => (name, false),
            };
            if !route.has_param(bare) {
                return Err(format!(
                    "`{source}` names `{{{name}}}`, which the route's path `{route}` does not capture"
                ));
            }
            let name: Arc<str> = Arc::from(bare);
            parts.push(if glob {
                Part::Glob(name)
            } else {
                Part::Param(name)
            });
            rest = &after[close + 1..];
        }
        push_literal(&mut parts, rest, source)?;
        Ok(LinkTemplate {
            parts,
            rel,
            destination,
        })
    }

    /// The hint for a request whose route captured `params`.
    pub fn expand(&self, params: &Params) -> Link {
        let mut url = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => url.push_str(text),
                Part::Param(name) | Part::Glob(name) => {
                    let value = params
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or("", |(_, v)| v.as_str());
                    let glob = matches!(part, Part::Glob(_));
                    let segments: Vec<String> = if glob {
                        value.split('/').map(encode).collect()
                    } else {
                        vec![encode(value)]
                    };
                    url.push_str(&segments.join("/"));
                }
            }
        }
        Link {
            url,
            rel: self.rel,
            destination: self.destination,
        }
    }
}

fn push_literal(parts: &mut Vec<Part>, literal: &str, source: &str) -> Result<(), String> {
    if literal.contains('}') {
        return Err(format!("`{source}`: `}}` without `{{`"));
    }
    // Control characters too: one in a literal made the whole `Link` value unsendable
    // (found by the `link` fuzz target).
    let printable = literal.bytes().all(|b| b.is_ascii_graphic());
    if literal.contains(FORBIDDEN_LITERAL) || !printable {
        return Err(format!(
            "`{source}`: write spaces, quotes, `<>,;\\`, control and non-ASCII characters %-encoded"
        ));
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal.to_string()));
    }
    Ok(())
}

/// A captured value as it goes into a URL: decoded once (the request path is already
/// encoded), then encoded, so `%20` stays `%20` and a raw `>` cannot end the `<…>`.
fn encode(raw: &str) -> String {
    let decoded = percent_decode_str(raw).decode_utf8_lossy();
    utf8_percent_encode(&decoded, VALUE).to_string()
}

/// `(url, rel)` of each link in `Link` header values, for de-duplication. Splits on commas
/// outside `<…>` and quotes; a value that does not parse contributes nothing.
pub fn existing(values: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for value in values {
        let mut item = String::new();
        let (mut in_url, mut in_quote) = (false, false);
        for c in value.chars() {
            match c {
                '<' if !in_quote => in_url = true,
                '>' if !in_quote => in_url = false,
                '"' if !in_url => in_quote = !in_quote,
                ',' if !in_url && !in_quote => {
                    out.extend(parse_one(&item));
                    item.clear();
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        out.extend(parse_one(&item));
    }
    out
}

fn parse_one(item: &str) -> Option<(String, String)> {
    let item = item.trim();
    let url = item.strip_prefix('<')?.split('>').next()?.to_string();
    let rel = item
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("rel"))
        .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase())
        .unwrap_or_default();
    Some((url, rel))
}

/// `links` without the ones `upstream` (`(url, rel)` pairs) already has, or that come twice,
/// joined into one `Link` header value; `None` when nothing is left.
pub fn merge(links: &[Link], upstream: &[(String, String)]) -> Option<String> {
    let mut seen: Vec<(&str, &str)> = upstream
        .iter()
        .map(|(u, r)| (u.as_str(), r.as_str()))
        .collect();
    let mut out: Vec<String> = Vec::new();
    for link in links {
        let key = (link.url.as_str(), link.rel.token());
        if seen
            .iter()
            .any(|(u, rels)| *u == key.0 && rels.split(' ').any(|r| r == key.1))
        {
            continue;
        }
        seen.push(key);
        out.push(link.to_string());
    }
    (!out.is_empty()).then(|| out.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> PathTemplate {
        PathTemplate::parse("/courses/{school}/{title}").unwrap()
    }

    fn params(school: &str, title: &str) -> Params {
        vec![
            (Arc::from("school"), school.to_string()),
            (Arc::from("title"), title.to_string()),
        ]
    }

    #[test]
    fn fetch_hints_carry_crossorigin_and_scripts_do_not() {
        let t = LinkTemplate::parse(
            "/courses/{school}/{title}/course.json",
            Rel::Preload,
            Destination::Fetch,
            &route(),
        )
        .unwrap();
        assert_eq!(
            t.expand(&params("mit", "physics")).to_string(),
            "</courses/mit/physics/course.json>; rel=preload; as=fetch; crossorigin"
        );
        let s = LinkTemplate::parse("/a.js", Rel::Prefetch, Destination::Script, &route()).unwrap();
        assert_eq!(
            s.expand(&params("a", "b")).to_string(),
            "</a.js>; rel=prefetch; as=script"
        );
    }

    #[test]
    fn values_are_encoded_once_and_cannot_break_the_header() {
        let t = LinkTemplate::parse(
            "/c/{school}/{title}.json?v={title}",
            Rel::Preload,
            Destination::Fetch,
            &route(),
        )
        .unwrap();
        let link = t.expand(&params("new%20york", "a>b,c;d&e=f"));
        assert_eq!(
            link.url,
            "/c/new%20york/a%3Eb%2Cc%3Bd%26e%3Df.json?v=a%3Eb%2Cc%3Bd%26e%3Df"
        );
        let unicode = t.expand(&params("z%C3%BCrich", "é"));
        assert!(
            unicode.url.starts_with("/c/z%C3%BCrich/%C3%A9.json"),
            "{}",
            unicode.url
        );
    }

    #[test]
    fn globs_keep_their_slashes() {
        let route = PathTemplate::parse("/docs/{path*}").unwrap();
        let t = LinkTemplate::parse(
            "/data/{path*}.json",
            Rel::Preload,
            Destination::Fetch,
            &route,
        )
        .unwrap();
        let p: Params = vec![(Arc::from("path"), "a b/c".to_string())];
        assert_eq!(t.expand(&p).url, "/data/a%20b/c.json");
    }

    #[test]
    fn unknown_params_and_bad_templates_are_errors() {
        let e = LinkTemplate::parse("/x/{course}", Rel::Preload, Destination::Fetch, &route())
            .unwrap_err();
        assert!(e.contains("`{course}`"), "{e}");
        assert!(LinkTemplate::parse("x.json", Rel::Preload, Destination::Fetch, &route()).is_err());
        assert!(
            LinkTemplate::parse("//cdn/x", Rel::Preload, Destination::Fetch, &route()).is_err()
        );
        assert!(
            LinkTemplate::parse("/{school", Rel::Preload, Destination::Fetch, &route()).is_err()
        );
        assert!(LinkTemplate::parse("/a b", Rel::Preload, Destination::Fetch, &route()).is_err());
        let control = "/index\u{5}.json";
        assert!(LinkTemplate::parse(control, Rel::Preload, Destination::Fetch, &route()).is_err());
    }

    #[test]
    fn merge_skips_what_upstream_sent_and_duplicates() {
        let a = Link {
            url: "/a.css".into(),
            rel: Rel::Preload,
            destination: Destination::Style,
        };
        let b = Link {
            url: "/b.json".into(),
            rel: Rel::Preload,
            destination: Destination::Fetch,
        };
        let upstream =
            existing(&[r#"</a.css>; rel="preload"; as=style, <https://x/y,z>; rel=preconnect"#]);
        assert_eq!(
            upstream,
            vec![
                ("/a.css".to_string(), "preload".to_string()),
                ("https://x/y,z".to_string(), "preconnect".to_string())
            ]
        );
        assert_eq!(
            merge(&[a.clone(), b.clone(), b.clone()], &upstream).as_deref(),
            Some("</b.json>; rel=preload; as=fetch; crossorigin")
        );
        assert_eq!(merge(&[a], &upstream), None);
    }

    #[test]
    fn destinations_follow_extensions() {
        assert_eq!(
            Destination::from_extension("/a/b.json?x=1"),
            Some(Destination::Fetch)
        );
        assert_eq!(
            Destination::from_extension("/a.CSS"),
            Some(Destination::Style)
        );
        assert_eq!(Destination::from_extension("/a/b"), None);
    }
}
