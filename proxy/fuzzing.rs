//! The bodies of the `cargo fuzz` targets in `tests/fuzz/`, one `pub fn(&[u8])` each, kept
//! here so that the fuzzer and the ordinary test suite run the same code: the unit test at
//! the bottom feeds every committed seed and crash (`tests/fuzz/corpus/<target>/`,
//! `tests/fuzz/regressions/<target>/`) through [`TARGETS`] on stable Rust.
//!
//! Each body drives one parser of untrusted (or operator-written) input and checks what must
//! hold whatever the input: no panic, and the invariants named in its comment. Multi-field
//! inputs are split on `\n`, so seeds stay readable text.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::admission::server_timing;
use crate::assets::{self, RangeRequest};
use crate::config::{Config, Outside};
use crate::edge_cache::{policy, CacheRoute};
use crate::encoding::{self, Encoding};
use crate::headers::{self, Forwarding};
use crate::hints::{link, Destination, LinkTemplate, Rel};
use crate::jobs::{store, KeyTemplate};
use crate::routing::{
    path_segments, HostPattern, Params, PathTemplate, Route, RouteTable, Segment,
};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target by its `tests/fuzz/fuzz_targets/<name>.rs` (and corpus folder) name.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("route", route),
    ("accept_encoding", accept_encoding),
    ("request_start", request_start),
    ("server_timing", server_timing),
    ("job_record", job_record),
    ("link", link),
    ("cache_control", cache_control),
    ("range", range),
];

/// Where the fuzzed config pretends to live; the sandbox answers for files beside it.
const CONFIG_PATH: &str = "/fuzz/frontdoor.toml";

/// `TOML [NUL backends-file]`: the whole path from text to a validated [`Config`] (the
/// `backends-file` of any pool reads the bytes after the first NUL, which TOML cannot
/// contain). Invariant: every error names a line and column inside the file it is about.
pub fn config(data: &[u8]) {
    let (toml, backends) = match data.iter().position(|b| *b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(toml) else {
        return;
    };
    let sandbox = Sandbox { backends };
    match Config::parse_in(Path::new(CONFIG_PATH), text, &sandbox) {
        Ok(config) => {
            let table = config.route_table();
            let _ = table.to_string();
            let _ = config.watched_files();
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "validation failed without an error");
            for error in &errors.0 {
                let source = if error.file == Path::new(CONFIG_PATH) {
                    text.to_string()
                } else {
                    String::from_utf8_lossy(backends).into_owned()
                };
                assert_place_is_in(&source, error.line, error.col, &error.to_string());
            }
            let _ = errors.to_string();
        }
    }
}

/// A line and column (1-based; line 0 = the whole file) must point into `source`.
fn assert_place_is_in(source: &str, line: usize, col: usize, shown: &str) {
    if line == 0 {
        return;
    }
    let lines: Vec<&str> = source.split('\n').collect();
    assert!(line <= lines.len(), "line out of range: {shown}");
    let width = lines.get(line - 1).map_or(0, |l| l.chars().count());
    assert!(
        (1..=width + 1).contains(&col),
        "column out of range: {shown}"
    );
}

/// The world of a fuzzed config: `cert.pem`/`key.pem` anywhere are a valid pair, any
/// `*.txt` is the backends file, a folder named `public` exists, and every host name
/// resolves to a loopback address derived from it. Nothing touches the disk or DNS.
struct Sandbox<'a> {
    backends: &'a [u8],
}

impl Outside for Sandbox<'_> {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let (cert, key) = dev_pair();
        match path.file_name().and_then(|n| n.to_str()) {
            Some("cert.pem") => Ok(cert.as_bytes().to_vec()),
            Some("key.pem") => Ok(key.as_bytes().to_vec()),
            Some(name) if name.ends_with(".txt") => Ok(self.backends.to_vec()),
            // `[error-pages]`
            Some(name) if name.ends_with(".html") => Ok(b"<h1>page</h1>".to_vec()),
            _ => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn directory(&self, path: &Path) -> Result<PathBuf, String> {
        // Asset sources, and `[sendfile]` roots.
        if path
            .file_name()
            .is_some_and(|n| n == "public" || n == "storage")
        {
            Ok(path.to_path_buf())
        } else {
            Err(format!("{}: no such directory", path.display()))
        }
    }

    fn resolve(&self, host_port: &str) -> io::Result<Vec<SocketAddr>> {
        let invalid = || io::Error::from(io::ErrorKind::InvalidInput);
        let (host, port) = host_port.rsplit_once(':').ok_or_else(invalid)?;
        let port: u16 = port.parse().map_err(|_| invalid())?;
        let valid_name = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid_name {
            return Err(io::ErrorKind::NotFound.into());
        }
        let [a, b, c, ..] = store::fnv1a(&[host.as_bytes()]).to_be_bytes();
        Ok(vec![SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, a, b, c)),
            port,
        )])
    }
}

/// One self-signed certificate and key (PEM) for every fuzzed config.
fn dev_pair() -> &'static (String, String) {
    static PAIR: OnceLock<(String, String)> = OnceLock::new();
    PAIR.get_or_init(|| {
        match rcgen::generate_simple_self_signed(vec!["localhost".to_string()]) {
            Ok(generated) => (generated.cert.pem(), generated.key_pair.serialize_pem()),
            // Without a certificate every config fails on its TLS section: still fuzzable.
            Err(_) => (String::new(), String::new()),
        }
    })
}

/// `template \n path \n host-pattern \n host \n dedup-key`: compile a route template and a
/// host pattern, match a request path against it in a table with a catch-all. Invariants:
/// a compiled template prints as a template that compiles the same; matching agrees with
/// plain backtracking on short paths and stays linear on long ones (libFuzzer's `-timeout`);
/// captured names are the template's; the catch-all `/{rest*}` answers whatever the other
/// route does not.
pub fn route(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\n');
    let mut next = || fields.next().unwrap_or("");
    let (template, path, host_pattern, host, key) = (next(), next(), next(), next(), next());
    let Ok(template) = PathTemplate::parse(template) else {
        return;
    };
    assert_eq!(
        PathTemplate::parse(&template.to_string()).as_ref(),
        Ok(&template),
        "a template does not survive printing"
    );
    let segments: Vec<&str> = path_segments(path).collect();
    let captured = template.matches(&segments);
    if segments.len() <= 12 {
        let mut expected = Params::new();
        let found = backtrack(template.segments(), &segments, &mut expected);
        assert_eq!(
            captured,
            found.then_some(expected),
            "differs from backtracking"
        );
    }
    if let Some(params) = captured {
        for (name, _) in &params {
            assert!(template.has_param(name), "captured unknown `{name}`");
        }
        if let Ok(key) = KeyTemplate::parse(key, |name| template.has_param(name)) {
            let _ = key.render(&params);
        }
    }
    let fuzzed = Route {
        host: HostPattern::parse(&host_pattern.to_ascii_lowercase()).ok(),
        methods: Some(vec![Method::GET]),
        ..Route::plain("fuzzed", template, "app")
    };
    let Ok(catch_all) = PathTemplate::parse("/{rest*}") else {
        return;
    };
    let table = RouteTable::new(vec![fuzzed, Route::plain("catch-all", catch_all, "app")]);
    let joined = format!("/{}", segments.join("/"));
    let host = Some(host).filter(|h| !h.is_empty());
    assert!(
        table.lookup(host, &Method::GET, &joined).is_some(),
        "the catch-all did not match {joined:?}"
    );
    let _ = table.to_string();
}

/// The obvious matcher (exponential in globs, quadratic in path length): the oracle that
/// [`PathTemplate::matches`] must agree with on short paths. Globs take the shortest span.
fn backtrack(template: &[Segment], path: &[&str], params: &mut Params) -> bool {
    let Some((first, rest)) = template.split_first() else {
        return path.is_empty();
    };
    match first {
        Segment::Literal(text) => {
            path.first() == Some(&text.as_str()) && backtrack(rest, &path[1..], params)
        }
        Segment::Param(name) | Segment::Glob(name) => {
            let glob = matches!(first, Segment::Glob(_));
            let (min, max) = match (glob, rest.is_empty()) {
                (false, _) => (1, 1.min(path.len())),
                (true, last) => (usize::from(!last), path.len()),
            };
            for take in min..=max {
                params.push((name.clone(), path[..take].join("/")));
                if backtrack(rest, &path[take..], params) {
                    return true;
                }
                params.pop();
            }
            false
        }
    }
}

/// An `Accept-Encoding` value against every set of available codings. Invariant: the
/// choice is one of those available.
pub fn accept_encoding(data: &[u8]) {
    let header = String::from_utf8_lossy(data);
    for mask in 0u8..8 {
        let available: Vec<Encoding> = Encoding::PREFERENCE
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, e)| *e)
            .collect();
        if let Some(chosen) = encoding::negotiate(Some(&header), &available) {
            assert!(
                available.contains(&chosen),
                "chose {chosen:?} of {available:?}"
            );
        }
    }
}

/// `X-Request-Start \n X-Forwarded-For \n X-Forwarded-Proto \n host`: the simulator's
/// parser (what the app side reads), and the forwarding headers set for trusted and
/// untrusted peers. Invariants: an untrusted peer's stamp is replaced by ours
/// (`t=<secs>.<3 digits>`, the form rack-timeout accepts) and its chain by the peer alone; a
/// trusted peer's stamp is kept.
pub fn request_start(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\n');
    let mut next = || fields.next().unwrap_or("");
    let (start, forwarded_for, proto, host) = (next(), next(), next(), next());
    let _ = crate::simulator::parse_request_start(start);
    let arrival = SystemTime::UNIX_EPOCH + Duration::from_millis(1_732_270_000_123);
    let peer = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    for trusted in [false, true] {
        let Ok(mut head) = pingora::http::RequestHeader::build("GET", b"/", None) else {
            return;
        };
        for (name, value) in [
            (headers::X_REQUEST_START, start),
            (headers::X_FORWARDED_FOR, forwarded_for),
            (headers::X_FORWARDED_PROTO, proto),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                let _ = head.insert_header(name, value);
            }
        }
        let had_start = head.headers.contains_key(headers::X_REQUEST_START);
        Forwarding {
            peer: Some(peer),
            trusted,
            arrival,
            scheme: "https",
            host: Some(host),
            request_id: "fuzz",
        }
        .apply(&mut head);
        let stamp = head
            .headers
            .get(headers::X_REQUEST_START)
            .map_or(&b""[..], HeaderValue::as_bytes);
        if trusted && had_start {
            assert_eq!(stamp, start.as_bytes(), "a trusted stamp changed");
        } else {
            assert_eq!(stamp, b"t=1732270000.123", "an untrusted stamp survived");
            let stamp = String::from_utf8_lossy(stamp);
            assert!(crate::simulator::parse_request_start(&stamp).is_some());
        }
        if !trusted {
            assert_eq!(head.headers[headers::X_FORWARDED_FOR], "192.0.2.7");
        }
    }
}

/// `Server-Timing` field values, one a line, as the app sends them. Invariant: the queue
/// entry is taken out, whatever else the fields say.
pub fn server_timing(data: &[u8]) {
    let Ok(mut response) = pingora::http::ResponseHeader::build(200, None) else {
        return;
    };
    for line in data.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            let _ = response.append_header("server-timing", value);
        }
    }
    let _ = server_timing::take_queue_time(&mut response);
    for value in response.headers.get_all("server-timing") {
        let text = value.to_str().unwrap_or("");
        for entry in text.split(',') {
            let name = entry.split(';').next().unwrap_or("").trim();
            assert!(!name.eq_ignore_ascii_case("queue"), "left {text:?}");
        }
    }
}

/// A stored job record, as the embedded store's file or Redis hands it back. Invariants: a
/// record that decodes encodes to one that decodes to the same job; its status view and
/// replayed request head are built without a panic.
pub fn job_record(data: &[u8]) {
    let Ok(job) = store::decode_record(data) else {
        return;
    };
    let Ok(bytes) = store::encode_record(&job) else {
        panic!("a decoded job does not encode");
    };
    match store::decode_record(&bytes) {
        Ok(again) => assert_eq!(again, job, "a job changed through its record"),
        Err(e) => panic!("a re-encoded job does not decode: {e}"),
    }
    let _ = crate::jobs::http::view(&job);
    let _ = crate::jobs::worker::request_head(&job);
}

/// `route-template \n hint-template \n request-path \n upstream Link values…`: a route's
/// preload hint expanded with what a request captured, merged with the app's own `Link`.
/// Invariant: the merged value is a valid header value (captured text cannot break out).
pub fn link(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\n');
    let mut next = || fields.next().unwrap_or("");
    let (route, hint, path) = (next(), next(), next());
    let upstream: Vec<&str> = fields.collect();
    let existing = link::existing(&upstream);
    let Ok(route) = PathTemplate::parse(route) else {
        return;
    };
    let Ok(hint) = LinkTemplate::parse(hint, Rel::Preload, Destination::Fetch, &route) else {
        return;
    };
    let segments: Vec<&str> = path_segments(path).collect();
    let Some(params) = route.matches(&segments) else {
        return;
    };
    let expanded = hint.expand(&params);
    if let Some(merged) = link::merge(&[expanded], &existing) {
        assert!(
            HeaderValue::from_str(&merged).is_ok(),
            "not a header value: {merged:?}"
        );
    }
}

/// Response header fields (`name: value` a line) of an app's answer on a cached route.
/// Invariant: whatever lifetimes they claim, the lifetime and its sums are computed without
/// overflow.
pub fn cache_control(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            headers.append(name, value);
        }
    }
    let route = CacheRoute {
        version: 1,
        max_object_size: 1 << 20,
        allow_cookies: false,
        allow_authorization: false,
        stale_while_revalidate: Duration::from_secs(10),
        stale_if_error: Duration::from_secs(60),
        x_cache_header: true,
    };
    let _ = policy::request(&route, &Method::GET, &headers);
    let now = std::time::SystemTime::now();
    let timing =
        crate::edge_cache::freshness::Timing::new(&headers, now, now, std::time::Instant::now());
    let _ = timing.current_age();
    for status in [200, 404, 503] {
        if let Ok(storable) = policy::response(&route, &headers, status, &headers, &timing, now) {
            let lifetime = storable.lifetime;
            let _ = lifetime.retain();
            let _ = lifetime.freshness(lifetime.retain());
        }
    }
}

/// `Range \n body-length` (and the same text as `If-None-Match` against an ETag). Invariant:
/// a partial answer lies inside the body.
pub fn range(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (header, len) = text.split_once('\n').unwrap_or((&text, ""));
    let len: u64 = len.trim().parse().unwrap_or(data.len() as u64);
    if let RangeRequest::Partial(r) = assets::range(header, len) {
        assert!(
            r.start() <= r.end() && *r.end() < len,
            "{r:?} of {len} bytes"
        );
    }
    let _ = assets::none_match(header, "\"abc\"");
    let _ = assets::none_match("W/\"abc\", \"def\"", header);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `tests/fuzz/<kind>/<target>/`, by target.
    fn inputs(kind: &str) -> Vec<(String, PathBuf)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz")
            .join(kind);
        let mut out = Vec::new();
        let Ok(dirs) = std::fs::read_dir(&root) else {
            return out;
        };
        for dir in dirs.flatten() {
            let target = dir.file_name().to_string_lossy().into_owned();
            for file in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                out.push((target.clone(), file.path()));
            }
        }
        out
    }

    fn run(kind: &str) -> usize {
        let inputs = inputs(kind);
        for (target, path) in &inputs {
            let Some((_, body)) = TARGETS.iter().find(|(name, _)| name == target) else {
                panic!("{}: no fuzz target named {target}", path.display());
            };
            let data = std::fs::read(path).unwrap();
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(outcome.is_ok(), "{} panicked", path.display());
        }
        inputs.len()
    }

    #[test]
    fn every_seed_of_every_fuzz_target_runs_without_a_panic() {
        let seeds = inputs("corpus");
        for (name, _) in TARGETS {
            assert!(
                seeds.iter().any(|(target, _)| target == name),
                "tests/fuzz/corpus/{name}/ has no seed"
            );
        }
        assert_eq!(run("corpus"), seeds.len());
    }

    #[test]
    fn the_sandbox_accepts_the_shipped_configs_so_fuzzing_starts_deep() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for file in [
            "config/dashboard.toml",
            "config/demo.toml",
            "docker/frontdoor.toml",
        ] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            let sandbox = Sandbox { backends: b"" };
            if let Err(e) = Config::parse_in(Path::new(CONFIG_PATH), &text, &sandbox) {
                panic!("{file}: {e}");
            }
        }
        let seed = std::fs::read(root.join("tests/fuzz/corpus/config/backends-file")).unwrap();
        let nul = seed.iter().position(|b| *b == 0).unwrap();
        let text = std::str::from_utf8(&seed[..nul]).unwrap();
        let sandbox = Sandbox {
            backends: &seed[nul + 1..],
        };
        let config = Config::parse_in(Path::new(CONFIG_PATH), text, &sandbox).unwrap();
        assert_eq!(config.pools["app"].backends.len(), 4);
    }

    #[test]
    fn every_crash_the_fuzzers_found_stays_fixed() {
        run("regressions");
    }
}
