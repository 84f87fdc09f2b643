//! What the simulated Dashboard answers with: HTML pages, per-course JSON documents, and
//! fingerprinted assets generated once at start-up.
//!
//! Everything here is deterministic: the same bytes, hence the same fingerprints, on every
//! run, machine and Rust version (no `HashMap` iteration order, no `rand`, no floats in the
//! output), so benchmarks and cached assets stay comparable across runs.

use bytes::Bytes;
use std::collections::HashMap;
use std::fmt::Write;

/// One fingerprinted asset.
#[derive(Debug)]
pub(crate) struct Asset {
    /// The body, uncompressed.
    pub(crate) body: Bytes,
    /// Its `Content-Type`.
    pub(crate) content_type: &'static str,
}

/// Every asset by URL path, plus the paths the pages reference.
pub(crate) struct Assets {
    /// `/assets/<name>-<fingerprint>.<ext>` → asset.
    by_path: HashMap<String, Asset>,
    /// The application bundle.
    pub(crate) js: String,
    /// The application stylesheet.
    pub(crate) css: String,
    /// Vendor scripts, loaded render-blocking before the bundle.
    pub(crate) vendor: Vec<String>,
}

/// The JSON documents a course page fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CourseDoc {
    /// `course.json`: the course's metadata and totals.
    Course,
    /// `users.json`: enrolled students and instructors.
    Users,
    /// `timeline.json`: weeks and their blocks.
    Timeline,
    /// `campaigns.json`: the campaigns the course belongs to.
    Campaigns,
}

impl CourseDoc {
    /// The document named by the last path segment (`users.json`), if any.
    pub(crate) fn from_file_name(name: &str) -> Option<Self> {
        match name {
            "course.json" => Some(Self::Course),
            "users.json" => Some(Self::Users),
            "timeline.json" => Some(Self::Timeline),
            "campaigns.json" => Some(Self::Campaigns),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Course => "course",
            Self::Users => "users",
            Self::Timeline => "timeline",
            Self::Campaigns => "campaigns",
        }
    }
}

/// 64-bit FNV-1a: a few lines, fully specified, stable everywhere; enough for fingerprints.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64: a tiny generator whose output is fixed by its seed, so generated content
/// varies like real code (and compresses like it) yet never changes between runs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; `n` must not be 0.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        let i = self.below(list.len() as u64);
        list.get(i as usize).copied().unwrap_or("item")
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
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
    "week",
    "block",
    "gradeable",
    "tag",
    "category",
    "feedback",
    "question",
    "answer",
    "slide",
    "library",
    "exercise",
    "ticket",
    "message",
    "setting",
    "tracker",
    "draft",
    "review",
    "peer",
    "chart",
    "summary",
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
    "receive",
    "request",
    "persist",
    "restore",
    "archive",
    "assign",
    "enroll",
    "remove",
    "highlight",
    "summarize",
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
    "createdAt",
    "updatedAt",
    "characters",
    "references",
    "views",
    "enrolled",
    "expected",
    "progress",
    "flags",
    "role",
    "school",
    "username",
    "realName",
    "position",
    "kind",
    "content",
    "dueDate",
    "points",
    "published",
    "loading",
    "error",
    "items",
    "total",
    "offset",
    "limit",
    "selected",
    "visible",
];

const WORDS: &[&str] = &[
    "the",
    "your",
    "this",
    "each",
    "every",
    "new",
    "course",
    "students",
    "article",
    "edits",
    "has",
    "been",
    "will",
    "be",
    "saved",
    "removed",
    "added",
    "to",
    "from",
    "for",
    "with",
    "before",
    "after",
    "week",
    "assignment",
    "please",
    "choose",
    "a",
    "an",
    "timeline",
    "instructor",
    "wiki",
    "training",
    "module",
    "complete",
    "incomplete",
    "overdue",
    "upcoming",
    "draft",
    "sandbox",
    "review",
    "peer",
    "feedback",
    "could",
    "not",
    "load",
    "try",
    "again",
    "later",
    "are",
    "you",
    "sure",
    "delete",
    "campaign",
    "enrolled",
    "characters",
    "references",
    "views",
    "uploads",
    "of",
    "in",
    "on",
    "and",
    "or",
    "is",
    "now",
    "still",
    "already",
    "public",
    "private",
    "settings",
];

const OPERATORS: &[&str] = &[
    "+", "-", "*", "===", "!==", "<", ">", "<=", ">=", "&&", "||",
];

fn upper_first(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(chars)
        .collect()
}

fn phrase(rng: &mut Rng, min: u64, extra: u64) -> String {
    let words: Vec<&str> = (0..min + rng.below(extra + 1))
        .map(|_| rng.pick(WORDS))
        .collect();
    upper_first(&words.join(" "))
}

/// Generates JavaScript that reads, and compresses, like an unminified Rails bundle: many
/// distinct functions with varied statements, string tables, numbers and property names.
struct ScriptWriter {
    rng: Rng,
    out: String,
    /// Names of the functions written so far, for later code to call.
    functions: Vec<String>,
}

impl ScriptWriter {
    fn new(seed: u64, capacity: usize) -> Self {
        ScriptWriter {
            rng: Rng(seed),
            out: String::with_capacity(capacity + 4096),
            functions: Vec::new(),
        }
    }

    fn expression(&mut self, locals: &[String], depth: u32) -> String {
        let local = |rng: &mut Rng| {
            let i = rng.below(locals.len() as u64) as usize;
            locals.get(i).cloned().unwrap_or_else(|| "this".to_string())
        };
        match self.rng.below(if depth > 1 { 4 } else { 9 }) {
            0 => local(&mut self.rng),
            1 => format!("{}.{}", local(&mut self.rng), self.rng.pick(PROPS)),
            2 => self.rng.below(5000).to_string(),
            3 => format!("'{}'", phrase(&mut self.rng, 1, 4)),
            4 => {
                let (a, b) = (
                    self.expression(locals, depth + 1),
                    self.expression(locals, depth + 1),
                );
                format!("{a} {} {b}", self.rng.pick(OPERATORS))
            }
            5 if !self.functions.is_empty() => {
                let i = self.rng.below(self.functions.len() as u64) as usize;
                let callee = self.functions.get(i).cloned().unwrap_or_default();
                let argument = self.expression(locals, depth + 1);
                format!("{callee}({argument})")
            }
            6 => {
                let (c, a, b) = (
                    self.expression(locals, depth + 1),
                    self.expression(locals, depth + 1),
                    self.expression(locals, depth + 1),
                );
                format!("({c}) ? {a} : {b}")
            }
            7 => {
                let mut object = String::from("{ ");
                for i in 0..1 + self.rng.below(3) {
                    if i > 0 {
                        object.push_str(", ");
                    }
                    let value = self.expression(locals, depth + 1);
                    let _ = write!(object, "{}: {value}", self.rng.pick(PROPS));
                }
                object.push_str(" }");
                object
            }
            _ => format!(
                "{}.{}({})",
                local(&mut self.rng),
                self.rng
                    .pick(&["map", "filter", "indexOf", "concat", "slice", "push"]),
                self.expression(locals, depth + 1)
            ),
        }
    }

    fn statements(&mut self, locals: &mut Vec<String>, indent: usize, depth: u32) {
        let pad = " ".repeat(indent);
        for _ in 0..2 + self.rng.below(4) {
            match self.rng.below(if depth > 1 { 3 } else { 7 }) {
                0 => {
                    let name = format!(
                        "{}{}",
                        self.rng.pick(NOUNS),
                        upper_first(self.rng.pick(PROPS))
                    );
                    let value = self.expression(locals, 0);
                    let _ = writeln!(self.out, "{pad}var {name} = {value};");
                    locals.push(name);
                }
                1 => {
                    let target = locals
                        .get(self.rng.below(locals.len() as u64) as usize)
                        .cloned()
                        .unwrap_or_else(|| "this".to_string());
                    let value = self.expression(locals, 0);
                    let _ = writeln!(
                        self.out,
                        "{pad}{target}.{} = {value};",
                        self.rng.pick(PROPS)
                    );
                }
                2 => {
                    let value = self.expression(locals, 1);
                    let _ = writeln!(
                        self.out,
                        "{pad}I18n.{}('{}', {value});",
                        self.rng.pick(&["t", "notify", "warn", "log"]),
                        phrase(&mut self.rng, 2, 6)
                    );
                }
                3 => {
                    let condition = self.expression(locals, 0);
                    let _ = writeln!(self.out, "{pad}if ({condition}) {{");
                    self.statements(locals, indent + 2, depth + 1);
                    if self.rng.chance(40) {
                        let _ = writeln!(self.out, "{pad}}} else {{");
                        self.statements(locals, indent + 2, depth + 1);
                    }
                    let _ = writeln!(self.out, "{pad}}}");
                }
                4 => {
                    let list = self.expression(locals, 1);
                    let index = ["i", "j", "k", "n"][self.rng.below(4) as usize];
                    let _ = writeln!(
                        self.out,
                        "{pad}for (var {index} = 0; {index} < ({list}).length; {index} += {}) {{",
                        1 + self.rng.below(3)
                    );
                    locals.push(index.to_string());
                    self.statements(locals, indent + 2, depth + 1);
                    let _ = writeln!(self.out, "{pad}}}");
                }
                5 => {
                    let subject = self.expression(locals, 1);
                    let _ = writeln!(self.out, "{pad}switch ({subject}) {{");
                    for _ in 0..2 + self.rng.below(3) {
                        let _ = writeln!(self.out, "{pad}  case '{}':", self.rng.pick(NOUNS));
                        self.statements(locals, indent + 4, depth + 2);
                        let _ = writeln!(self.out, "{pad}    break;");
                    }
                    let _ = writeln!(self.out, "{pad}  default:\n{pad}    return null;");
                    let _ = writeln!(self.out, "{pad}}}");
                }
                _ => {
                    let element = self.rng.pick(&["div", "span", "li", "a", "button", "td"]);
                    let class = format!(
                        "{}-{}",
                        self.rng.pick(NOUNS),
                        self.rng
                            .pick(&["list", "item", "header", "row", "button", "panel"])
                    );
                    let child = self.expression(locals, 1);
                    let _ = writeln!(
                        self.out,
                        "{pad}children.push(React.createElement('{element}', {{ className: '{class}', key: {} }}, {child}));",
                        self.rng.below(100)
                    );
                }
            }
        }
    }

    fn function(&mut self, n: usize) {
        let name = format!(
            "{}{}{}",
            self.rng.pick(VERBS),
            upper_first(self.rng.pick(NOUNS)),
            if self.rng.chance(30) {
                upper_first(self.rng.pick(PROPS))
            } else {
                String::new()
            }
        );
        let name = format!("{name}_{n}");
        let mut locals: Vec<String> = (0..1 + self.rng.below(3))
            .map(|_| self.rng.pick(NOUNS).to_string())
            .collect();
        locals.dedup();
        let _ = writeln!(
            self.out,
            "\n  /**\n   * {}.\n   */\n  function {name}({}) {{\n    var children = [];",
            phrase(&mut self.rng, 3, 8),
            locals.join(", ")
        );
        self.statements(&mut locals, 4, 0);
        let result = self.expression(&locals, 0);
        let _ = writeln!(self.out, "    return {result};\n  }}");
        let _ = writeln!(
            self.out,
            "  Dashboard.{}.{name} = {name};",
            self.rng.pick(NOUNS)
        );
        self.functions.push(name);
    }

    fn string_table(&mut self) {
        let _ = writeln!(self.out, "\n  I18n.translations['en'] = {{");
        for _ in 0..8 + self.rng.below(16) {
            let _ = writeln!(
                self.out,
                "    '{}.{}.{}': '{}',",
                self.rng.pick(NOUNS),
                self.rng.pick(VERBS),
                self.rng.pick(PROPS),
                phrase(&mut self.rng, 3, 9)
            );
        }
        let _ = writeln!(self.out, "  }};");
    }

    /// At least `size` bytes: whole functions, inside one IIFE as Sprockets wraps a bundle.
    fn bundle(mut self, name: &str, size: usize) -> String {
        let _ = writeln!(
            self.out,
            "/*! {name} (generated by the frontdoor simulator) */\n(function (window, React, I18n) {{\n  'use strict';\n  var Dashboard = window.Dashboard = window.Dashboard || {{}};"
        );
        for noun in NOUNS {
            let _ = writeln!(self.out, "  Dashboard.{noun} = Dashboard.{noun} || {{}};");
        }
        let mut n = 0;
        while self.out.len() < size {
            n += 1;
            if self.rng.chance(8) {
                self.string_table();
            } else {
                self.function(n);
            }
        }
        let _ = writeln!(
            self.out,
            "}})(window, window.React || {{ createElement: function () {{ return null; }} }}, window.I18n || {{ translations: {{}}, t: function () {{}}, notify: function () {{}}, warn: function () {{}}, log: function () {{}} }});"
        );
        self.out
    }
}

/// At least `size` bytes of CSS with varied selectors, properties and media queries.
fn stylesheet(seed: u64, size: usize) -> String {
    let mut rng = Rng(seed);
    let mut out = String::with_capacity(size + 1024);
    out.push_str("/*! application.css (generated by the frontdoor simulator) */\n");
    while out.len() < size {
        let media = rng.chance(10);
        if media {
            let _ = writeln!(
                out,
                "@media (max-width: {}px) {{",
                [480, 640, 768, 1024, 1280][rng.below(5) as usize]
            );
        }
        let mut selector = format!(
            ".{}-{}",
            rng.pick(NOUNS),
            rng.pick(&["list", "item", "header", "row", "button", "panel", "title"])
        );
        if rng.chance(40) {
            let _ = write!(
                selector,
                " {}",
                rng.pick(&["a", "li", "span", "td", "h2", "p", "img"])
            );
        }
        if rng.chance(30) {
            let _ = write!(
                selector,
                ":{}",
                rng.pick(&["hover", "focus", "first-child", "last-child", "active"])
            );
        }
        if rng.chance(25) {
            let _ = write!(selector, ".is-{}", rng.pick(PROPS).to_ascii_lowercase());
        }
        let _ = writeln!(out, "{selector} {{");
        for _ in 0..2 + rng.below(6) {
            let declaration = match rng.below(10) {
                0 => format!("margin: {}px {}px", rng.below(40), rng.below(40)),
                1 => format!("padding: {}px", rng.below(32)),
                2 => format!("color: #{:06x}", rng.below(0x100_0000)),
                3 => format!("background-color: #{:06x}", rng.below(0x100_0000)),
                4 => format!(
                    "border: {}px {} #{:06x}",
                    1 + rng.below(3),
                    rng.pick(&["solid", "dashed", "dotted"]),
                    rng.below(0x100_0000)
                ),
                5 => format!(
                    "display: {}",
                    rng.pick(&["block", "flex", "grid", "inline-block", "none"])
                ),
                6 => format!(
                    "font: {} {}px/{}.{} {}",
                    rng.pick(&["normal", "bold", "300", "600"]),
                    11 + rng.below(14),
                    1 + rng.below(2),
                    rng.below(10),
                    rng.pick(&[
                        "Helvetica, Arial, sans-serif",
                        "Georgia, serif",
                        "monospace"
                    ])
                ),
                7 => format!("width: {}%", 10 + rng.below(91)),
                8 => format!(
                    "transition: {} {}ms ease-{}",
                    rng.pick(&["opacity", "transform", "color", "all"]),
                    50 * (1 + rng.below(8)),
                    rng.pick(&["in", "out", "in-out"])
                ),
                _ => format!(
                    "box-shadow: 0 {}px {}px rgba(0, 0, 0, 0.{})",
                    rng.below(6),
                    rng.below(20),
                    1 + rng.below(9)
                ),
            };
            let _ = writeln!(out, "  {declaration};");
        }
        out.push_str("}\n");
        if media {
            out.push_str("}\n");
        }
    }
    out
}

/// Paths and sizes only: the bodies are hundreds of KB.
impl std::fmt::Debug for Assets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sizes: Vec<(&str, usize)> = self
            .by_path
            .iter()
            .map(|(path, asset)| (path.as_str(), asset.body.len()))
            .collect();
        sizes.sort_unstable();
        f.debug_struct("Assets").field("sizes", &sizes).finish()
    }
}

impl Assets {
    /// Generates the application bundle (~500 KB), the stylesheet (~80 KB) and five vendor
    /// scripts (8–30 KB). Takes a few milliseconds; done once per [`super::Simulator`].
    /// A `release` other than 0 ends every file with a comment naming it, which changes every
    /// fingerprint, as a deploy does.
    pub(crate) fn generate(release: u64) -> Self {
        let mut by_path = HashMap::new();
        let mut add = |name: &str, ext: &str, mut body: String, content_type: &'static str| {
            if release != 0 {
                let _ = writeln!(body, "/* release {release} */");
            }
            let path = format!("/assets/{name}-{:016x}.{ext}", fnv1a(body.as_bytes()));
            by_path.insert(
                path.clone(),
                Asset {
                    body: Bytes::from(body),
                    content_type,
                },
            );
            path
        };
        let vendor = [
            ("jquery", 30_000),
            ("lodash", 24_000),
            ("moment", 16_000),
            ("chart", 12_000),
            ("turbolinks", 8_000),
        ]
        .into_iter()
        .zip(10u64..)
        .map(|((name, size), seed)| {
            let body = ScriptWriter::new(seed, size).bundle(name, size);
            add(name, "js", body, "application/javascript")
        })
        .collect();
        let js = add(
            "application",
            "js",
            ScriptWriter::new(1, 500_000).bundle("application", 500_000),
            "application/javascript",
        );
        let css = add("application", "css", stylesheet(2, 80_000), "text/css");
        Assets {
            by_path,
            js,
            css,
            vendor,
        }
    }

    /// The asset at `path` (`/assets/...`), if there is one.
    pub(crate) fn get(&self, path: &str) -> Option<&Asset> {
        self.by_path.get(path)
    }

    /// Every asset path, in no particular order.
    #[cfg(test)]
    pub(crate) fn paths(&self) -> impl Iterator<Item = &str> {
        self.by_path.keys().map(String::as_str)
    }

    /// `<!DOCTYPE>` through `</head>`: the stylesheet, then six render-blocking scripts
    /// (vendor first, the bundle last), as the Dashboard's layout loads them.
    fn head(&self, title: &str) -> String {
        let mut head = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title} · Dashboard</title>\n<link rel=\"stylesheet\" media=\"all\" href=\"{}\">\n",
            self.css
        );
        for path in self.vendor.iter().chain(std::iter::once(&self.js)) {
            let _ = writeln!(head, "<script src=\"{path}\"></script>");
        }
        head.push_str("</head>\n");
        head
    }

    fn course_links(page: &mut String) {
        page.push_str("<ul class=\"course-list\">\n");
        for (school, title) in [
            ("mit", "physics"),
            ("stanford", "wikipedia_101"),
            ("uw", "history_of_science"),
            ("ucl", "medieval_manuscripts"),
        ] {
            let _ = writeln!(
                page,
                "<li class=\"course-item\"><a href=\"/courses/{school}/{title}\">{school}: {title}</a></li>"
            );
        }
        page.push_str("</ul>\n");
    }

    /// `GET /`: the Dashboard's home, linking to a few courses.
    pub(crate) fn home_page(&self) -> String {
        let mut page = self.head("Home");
        page.push_str("<body>\n<header class=\"course-header\"><h1>Dashboard</h1></header>\n<main>\n<h2>Your courses</h2>\n");
        Self::course_links(&mut page);
        page.push_str(
            "<p><a href=\"/training\">Training library</a></p>\n</main>\n</body>\n</html>\n",
        );
        page
    }

    /// `GET /training`: the training library, linking to a few courses.
    pub(crate) fn training_page(&self) -> String {
        let mut page = self.head("Training");
        page.push_str("<body>\n<header class=\"training-header\"><h1>Training library</h1></header>\n<main>\n<ol class=\"module-list\">\n");
        for (i, module) in [
            "Editing basics",
            "Evaluating articles",
            "Finding sources",
            "Moving work out of the sandbox",
            "Peer review",
        ]
        .iter()
        .enumerate()
        {
            let _ = writeln!(
                page,
                "<li class=\"module-item\" data-module=\"{}\">{module}</li>",
                i + 1
            );
        }
        page.push_str("</ol>\n<h2>Courses using these modules</h2>\n");
        Self::course_links(&mut page);
        page.push_str("</main>\n</body>\n</html>\n");
        page
    }

    /// `GET /courses/{school}/{title}`: a shell whose inline script fetches the course's four
    /// JSON documents and renders a summary, as the Dashboard's course page does.
    pub(crate) fn course_page(&self, school: &str, title: &str) -> String {
        let (school, title) = (escape_html(school), escape_html(title));
        let mut page = self.head(&format!("{title} ({school})"));
        // URL text reaches the script only through a data attribute (HTML-escaped above)
        // and leaves it only through textContent, so no path can inject markup or script.
        let _ = write!(
            page,
            r#"<body>
<header class="course-header"><h1>{title}</h1><p>{school}</p></header>
<main id="course" class="course-panel" data-base="/courses/{school}/{title}/">Loading…</main>
<script>
(function () {{
  var root = document.getElementById('course');
  var base = root.getAttribute('data-base');
  var names = ['course.json', 'users.json', 'timeline.json', 'campaigns.json'];
  Promise.all(names.map(function (name) {{
    return fetch(base + name, {{ credentials: 'same-origin', headers: {{ Accept: 'application/json' }} }})
      .then(function (response) {{
        if (!response.ok) {{ throw new Error(name + ': HTTP ' + response.status); }}
        return response.json();
      }});
  }})).then(function (docs) {{
    var course = docs[0], users = docs[1], timeline = docs[2], campaigns = docs[3];
    root.textContent = '';
    [
      course.course.title + ' at ' + course.course.school,
      users.users.length + ' participants',
      timeline.weeks.length + ' weeks',
      'Campaigns: ' + campaigns.campaigns.map(function (c) {{ return c.title; }}).join(', ')
    ].forEach(function (line) {{
      var p = document.createElement('p');
      p.textContent = line;
      root.appendChild(p);
    }});
  }}).catch(function (error) {{
    root.textContent = 'Could not load the course: ' + error.message;
  }});
}})();
</script>
</body>
</html>
"#
        );
        page
    }
}

/// A course's JSON document: a few KB, shaped like the Dashboard's, the same for the same
/// school, title and document.
pub(crate) fn course_json(school: &str, title: &str, doc: CourseDoc) -> String {
    let slug = format!("{school}/{title}");
    let mut rng = Rng(fnv1a(slug.as_bytes()) ^ fnv1a(doc.name().as_bytes()));
    let date = |rng: &mut Rng| {
        format!(
            "2026-{:02}-{:02}T{:02}:{:02}:00Z",
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60)
        )
    };
    let value = match doc {
        CourseDoc::Course => serde_json::json!({
            "course": {
                "id": fnv1a(slug.as_bytes()) % 100_000,
                "slug": slug,
                "school": school,
                "title": title,
                "term": "Fall 2026",
                "description": (0..12).map(|_| phrase(&mut rng, 6, 10)).collect::<Vec<_>>().join(". "),
                "start": "2026-09-01T00:00:00Z",
                "end": "2026-12-15T23:59:59Z",
                "published": true,
                "enrolled": 10 + rng.below(90),
                "expected_students": 20 + rng.below(80),
                "edit_count": rng.below(20_000),
                "character_sum": rng.below(2_000_000),
                "references_count": rng.below(5_000),
                "view_count": rng.below(10_000_000),
                "upload_count": rng.below(300),
                "flags": { "peer_review": rng.chance(50), "online_volunteers": rng.chance(50) },
                "updated_at": date(&mut rng),
            }
        }),
        CourseDoc::Users => serde_json::json!({
            "course": slug,
            "users": (0..30).map(|i| serde_json::json!({
                "id": 1000 + i,
                "username": format!("{}_{}{}", school, rng.pick(NOUNS), rng.below(1000)),
                "real_name": upper_first(&format!("{} {}", rng.pick(WORDS), rng.pick(NOUNS))),
                "role": if i < 2 { "instructor" } else { "student" },
                "character_sum_ms": rng.below(50_000),
                "references_count": rng.below(200),
                "recent_revisions": rng.below(40),
                "enrolled_at": date(&mut rng),
            })).collect::<Vec<_>>(),
        }),
        CourseDoc::Timeline => serde_json::json!({
            "course": slug,
            "weeks": (0..14).map(|w| serde_json::json!({
                "id": 500 + w,
                "order": w + 1,
                "title": phrase(&mut rng, 2, 3),
                "blocks": (0..2 + rng.below(3)).map(|b| serde_json::json!({
                    "id": 5000 + w * 10 + b,
                    "kind": rng.below(4),
                    "title": phrase(&mut rng, 2, 4),
                    "content": phrase(&mut rng, 8, 12),
                    "due_date": date(&mut rng),
                    "points": rng.below(20),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
        CourseDoc::Campaigns => serde_json::json!({
            "course": slug,
            "campaigns": (0..12).map(|c| serde_json::json!({
                "id": 70 + c,
                "slug": format!("{}_{}", rng.pick(NOUNS), 2020 + rng.below(7)),
                "title": upper_first(&format!("{} {} {}", rng.pick(WORDS), rng.pick(NOUNS), 2020 + rng.below(7))),
                "description": phrase(&mut rng, 10, 15),
                "courses_count": rng.below(400),
                "school_in_campaign": school,
                "created_at": date(&mut rng),
            })).collect::<Vec<_>>(),
        }),
    };
    value.to_string()
}

/// Escapes text taken from the URL for HTML text and double-quoted attributes.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn another_release_changes_every_fingerprint_and_keeps_the_naming() {
        let (a, b) = (Assets::generate(0), Assets::generate(1));
        assert_eq!(b.paths().count(), 7);
        for path in b.paths() {
            assert!(a.get(path).is_none(), "{path} is in both releases");
            assert!(crate::assets::is_fingerprinted(path), "{path}");
        }
        assert!(b.home_page().contains(&b.js) && !b.home_page().contains(&a.js));
    }

    #[test]
    fn assets_are_the_same_on_every_generation_and_named_by_their_hash() {
        let (a, b) = (Assets::generate(0), Assets::generate(0));
        assert_eq!((&a.js, &a.css, &a.vendor), (&b.js, &b.css, &b.vendor));
        assert_eq!(a.paths().count(), 7);
        for path in a.paths() {
            let asset = a.get(path).unwrap();
            assert!(
                path.contains(&format!("-{:016x}.", fnv1a(&asset.body))),
                "{path}"
            );
        }
        let js = a.get(&a.js).unwrap().body.len();
        let css = a.get(&a.css).unwrap().body.len();
        assert!((500_000..520_000).contains(&js), "bundle is {js} bytes");
        assert!(
            (50_000..100_000).contains(&css),
            "stylesheet is {css} bytes"
        );
    }

    #[test]
    fn the_bundle_is_varied_not_one_repeated_line() {
        let assets = Assets::generate(0);
        let body = &assets.get(&assets.js).unwrap().body;
        let text = std::str::from_utf8(body).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut distinct = lines.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(
            distinct.len() * 2 > lines.len(),
            "{} distinct of {} lines",
            distinct.len(),
            lines.len()
        );
    }

    #[test]
    fn pages_load_the_stylesheet_and_six_blocking_scripts_in_head() {
        let assets = Assets::generate(0);
        for page in [
            assets.home_page(),
            assets.training_page(),
            assets.course_page("mit", "physics"),
        ] {
            let head = &page[..page.find("</head>").unwrap()];
            assert_eq!(head.matches("<script src=").count(), 6);
            assert!(head.contains(&format!("<script src=\"{}\"></script>", assets.js)));
            assert!(head.contains(&format!("href=\"{}\"", assets.css)));
            assert!(!head.contains("async") && !head.contains("defer"));
        }
        assert!(assets.home_page().contains("href=\"/courses/mit/physics\""));
    }

    #[test]
    fn course_pages_fetch_the_four_documents_and_escape_url_text() {
        let assets = Assets::generate(0);
        let page = assets.course_page("mit", "physics");
        assert!(page.contains("data-base=\"/courses/mit/physics/\""));
        for name in [
            "course.json",
            "users.json",
            "timeline.json",
            "campaigns.json",
        ] {
            assert!(page.contains(&format!("'{name}'")), "{name}");
        }
        assert!(page.contains("fetch(base + name"));
        let hostile = assets.course_page("<x>", "a\"b'");
        assert!(hostile.contains("&lt;x&gt;") && !hostile.contains("<x>"));
        assert!(hostile.contains("a&quot;b&#39;"));
    }

    #[test]
    fn course_documents_are_a_few_kb_deterministic_and_name_the_course() {
        for doc in [
            CourseDoc::Course,
            CourseDoc::Users,
            CourseDoc::Timeline,
            CourseDoc::Campaigns,
        ] {
            let body = course_json("mit", "physics", doc);
            assert_eq!(body, course_json("mit", "physics", doc));
            assert!(
                (1_000..16_000).contains(&body.len()),
                "{doc:?}: {}",
                body.len()
            );
            assert!(body.contains("mit"), "{doc:?}");
            assert!(body.contains("physics"), "{doc:?}");
            serde_json::from_str::<serde_json::Value>(&body).unwrap();
        }
        assert_ne!(
            course_json("mit", "physics", CourseDoc::Users),
            course_json("mit", "chemistry", CourseDoc::Users)
        );
    }
}
