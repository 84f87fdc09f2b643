//! The simulator's content: HTML pages shaped like the Dashboard's, and fingerprinted assets
//! generated deterministically at start-up (the same bytes, hence the same fingerprints, on
//! every run and every machine).

use bytes::Bytes;
use std::collections::HashMap;
use std::fmt::Write;

/// One static asset.
pub struct Asset {
    /// The body, uncompressed.
    pub body: Bytes,
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

/// Every asset by URL path, plus the paths pages reference.
pub struct Assets {
    /// `/assets/...` path → asset.
    pub by_path: HashMap<String, Asset>,
    /// The application bundle.
    pub js: String,
    /// The application stylesheet.
    pub css: String,
    /// Small vendor scripts, also loaded render-blocking from `<head>`.
    pub vendor: Vec<String>,
}

/// 64-bit FNV-1a: tiny, deterministic everywhere, good enough for fingerprints.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A small deterministic generator (SplitMix64), so assets vary like real code does.
struct Words(u64);

impl Words {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        list[(self.next() % list.len() as u64) as usize]
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const NOUNS: &[&str] = &[
    "course",
    "user",
    "timeline",
    "campaign",
    "article",
    "revision",
    "upload",
    "training",
    "module",
    "alert",
    "student",
    "instructor",
    "assignment",
    "school",
    "term",
    "wiki",
    "edit",
    "survey",
    "notification",
    "cohort",
];
const VERBS: &[&str] = &[
    "fetch",
    "render",
    "update",
    "build",
    "parse",
    "format",
    "validate",
    "sort",
    "filter",
    "merge",
    "toggle",
    "select",
    "compute",
    "normalize",
    "dispatch",
    "subscribe",
    "load",
    "save",
    "reset",
    "track",
];
const PROPS: &[&str] = &[
    "id",
    "title",
    "slug",
    "count",
    "start",
    "end",
    "status",
    "weeks",
    "blocks",
    "created_at",
    "updated_at",
    "characters",
    "references",
    "views",
    "enrolled",
    "expected",
    "progress",
    "flags",
    "role",
    "school",
];

fn camel(verb: &str, noun: &str, n: u64) -> String {
    let mut chars = noun.chars();
    let upper: String = chars
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(chars)
        .collect();
    format!("{verb}{upper}{n}")
}

/// About `size` bytes of JavaScript that reads like a bundled Rails app.
fn javascript(seed: u64, size: usize) -> String {
    let mut w = Words(seed);
    let mut out = String::with_capacity(size + 1024);
    out.push_str("(function () {\n  'use strict';\n  var registry = {};\n");
    let mut n = 0;
    while out.len() < size {
        n += 1;
        let (verb, noun) = (w.pick(VERBS), w.pick(NOUNS));
        let name = camel(verb, noun, n);
        let (a, b) = (w.pick(PROPS), w.pick(PROPS));
        let _ = write!(
            out,
            "  function {name}({noun}, options) {{\n    options = options || {{}};\n    if (!{noun} || {noun}.{a} === undefined) {{\n      return registry['{noun}:{b}'] || null;\n    }}\n    var result = [];\n    for (var i = 0; i < {noun}.{b}.length; i += {step}) {{\n      result.push({{ {a}: {noun}.{a}, {b}: {noun}.{b}[i], index: i * {mul} }});\n    }}\n    registry['{noun}:{a}:' + {noun}.id] = result;\n    return options.{verb} ? options.{verb}(result) : result;\n  }}\n  registry.{name} = {name};\n",
            step = 1 + w.below(4),
            mul = w.below(1000),
        );
    }
    out.push_str("  window.Dashboard = registry;\n})();\n");
    out
}

/// About `size` bytes of CSS.
fn stylesheet(seed: u64, size: usize) -> String {
    let mut w = Words(seed);
    let mut out = String::with_capacity(size + 256);
    let mut n = 0;
    while out.len() < size {
        n += 1;
        let _ = writeln!(
            out,
            ".{noun}-{prop}-{n} {{ margin: {m}px {m2}px; padding: {p}px; color: #{c:06x}; border: 1px solid #{b:06x}; display: {d}; }}",
            noun = w.pick(NOUNS),
            prop = w.pick(PROPS),
            m = w.below(40),
            m2 = w.below(40),
            p = w.below(24),
            c = w.below(0xff_ffff),
            b = w.below(0xff_ffff),
            d = w.pick(&["block", "flex", "grid", "inline-block", "none"]),
        );
    }
    out
}

fn fingerprinted(name: &str, ext: &str, body: &str) -> String {
    format!("/assets/{name}-{:016x}.{ext}", fnv1a(body.as_bytes()))
}

impl Assets {
    /// Generates the application bundle (~500 KB), stylesheet (~80 KB) and five vendor scripts.
    pub fn generate() -> Self {
        let mut by_path = HashMap::new();
        let mut add = |name: &str, ext: &str, body: String, content_type: &'static str| {
            let path = fingerprinted(name, ext, &body);
            by_path.insert(
                path.clone(),
                Asset {
                    body: Bytes::from(body),
                    content_type,
                },
            );
            path
        };
        let js = add(
            "application",
            "js",
            javascript(1, 500_000),
            "application/javascript",
        );
        let css = add("application", "css", stylesheet(2, 80_000), "text/css");
        let vendor = ["jquery", "lodash", "moment", "chart", "turbolinks"]
            .iter()
            .zip(10u64..)
            .map(|(name, seed)| {
                add(
                    name,
                    "js",
                    javascript(seed, 12_000),
                    "application/javascript",
                )
            })
            .collect();
        Assets {
            by_path,
            js,
            css,
            vendor,
        }
    }

    fn head(&self, title: &str) -> String {
        let mut head = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title} · Dashboard</title>\n<link rel=\"stylesheet\" href=\"{}\">\n",
            self.css
        );
        // Render-blocking scripts in <head>, as the Dashboard loads them.
        for path in self.vendor.iter().chain(std::iter::once(&self.js)) {
            let _ = writeln!(head, "<script src=\"{path}\"></script>");
        }
        head.push_str("</head>\n");
        head
    }

    /// `/` and `/training`.
    pub fn index_page(&self, title: &str) -> String {
        let mut page = self.head(title);
        let _ = write!(page, "<body>\n<h1>{title}</h1>\n<ul>\n");
        for (school, course) in [
            ("mit", "physics"),
            ("stanford", "wikipedia_101"),
            ("uw", "history_of_science"),
        ] {
            let _ = writeln!(
                page,
                "<li><a href=\"/courses/{school}/{course}\">{school}: {course}</a></li>"
            );
        }
        page.push_str("</ul>\n</body>\n</html>\n");
        page
    }

    /// A course page whose script fetches the course's four JSON documents.
    pub fn course_page(&self, school: &str, title: &str) -> String {
        let (school, title) = (escape(school), escape(title));
        let mut page = self.head(&format!("{school}/{title}"));
        let _ = write!(
            page,
            "<body>\n<h1>{title}</h1>\n<div id=\"course\" data-school=\"{school}\" data-title=\"{title}\">loading…</div>\n<script>\n(function () {{\n  var base = '/courses/{school}/{title}/';\n  Promise.all(['course', 'users', 'timeline', 'campaigns'].map(function (name) {{\n    return fetch(base + name + '.json', {{ credentials: 'same-origin' }}).then(function (r) {{ return r.json(); }});\n  }})).then(function (docs) {{\n    document.getElementById('course').textContent = docs.map(function (d) {{ return d.kind + ': ' + d.items.length; }}).join(', ');\n  }});\n}})();\n</script>\n</body>\n</html>\n"
        );
        page
    }
}

/// A course's JSON document `kind` (course, users, timeline, campaigns): a few KB.
pub fn course_json(school: &str, title: &str, kind: &str) -> String {
    let items: Vec<serde_json::Value> = (0..40)
        .map(|i| {
            serde_json::json!({
                "id": i,
                "name": format!("{kind} {i} of {school}/{title}"),
                "updated_at": format!("2026-11-{:02}T12:00:00Z", 1 + i % 28),
                "count": (i * 37) % 101,
            })
        })
        .collect();
    serde_json::json!({ "kind": kind, "school": school, "title": title, "items": items })
        .to_string()
}

/// HTML-escapes text taken from the URL.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_deterministic_and_fingerprinted_by_content() {
        let (a, b) = (Assets::generate(), Assets::generate());
        assert_eq!(a.js, b.js);
        let js = &a.by_path[&a.js];
        assert!(
            (480_000..540_000).contains(&js.body.len()),
            "{}",
            js.body.len()
        );
        assert!(a.js.ends_with(&format!("-{:016x}.js", fnv1a(&js.body))));
        assert_eq!(a.vendor.len(), 5);
        assert_eq!(a.by_path.len(), 7);
    }

    #[test]
    fn course_pages_escape_url_text_and_load_scripts_in_head() {
        let assets = Assets::generate();
        let page = assets.course_page("<x>", "t");
        assert!(page.contains("&lt;x&gt;") && !page.contains("<x>"));
        let head = &page[..page.find("</head>").unwrap_or(0)];
        assert_eq!(head.matches("<script src=").count(), 6);
    }
}
