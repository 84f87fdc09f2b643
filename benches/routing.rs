//! Route matching over a realistic 100-route table, the X-Request-Start stamp, and the
//! hostile-input screen of a head (framing scan, limits, path normalisation): what every
//! proxied request pays for before it reaches the upstream.
//!
//! `cargo bench --bench routing`; figures in BENCHMARKS.md.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use frontdoor::routing::{HostPattern, PathTemplate, Route, RouteTable};
use http::Method;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn route(name: String, host: Option<&str>, methods: Option<Vec<Method>>, path: &str) -> Route {
    Route {
        name: Arc::from(name.as_str()),
        host: host.map(|h| HostPattern::parse(h).expect("host")),
        methods,
        template: PathTemplate::parse(path).expect("template"),
        pool: Arc::from("app"),
        assets: None,
        cache: None,
        priority: frontdoor::admission::Priority::Normal,
        hints: Default::default(),
        offload: None,
        max_body: None,
        request_buffering: true,
        response_buffering: true,
    }
}

/// 100 Rails-like routes: resources with member and collection paths, a few host- and
/// method-specific ones, globs in the middle and a catch-all.
fn table() -> RouteTable {
    let resources = [
        "courses",
        "users",
        "articles",
        "campaigns",
        "alerts",
        "trainings",
        "revisions",
        "uploads",
        "surveys",
        "wikis",
        "cohorts",
        "schools",
        "terms",
        "modules",
        "notifications",
        "assignments",
        "blocks",
        "weeks",
        "tags",
        "reports",
    ];
    let mut routes = Vec::new();
    for resource in resources {
        routes.push(route(
            format!("{resource}-index"),
            None,
            Some(vec![Method::GET]),
            &format!("/api/v1/{resource}"),
        ));
        routes.push(route(
            format!("{resource}-show"),
            None,
            None,
            &format!("/api/v1/{resource}/{{id}}"),
        ));
        routes.push(route(
            format!("{resource}-edit"),
            None,
            Some(vec![Method::GET]),
            &format!("/{resource}/{{id}}/edit"),
        ));
        routes.push(route(
            format!("{resource}-sub"),
            Some("admin.example.com"),
            None,
            &format!("/admin/{resource}/{{id}}/{{sub*}}"),
        ));
    }
    routes.push(route(
        "course".into(),
        None,
        None,
        "/courses/{school}/{title}",
    ));
    routes.push(route(
        "course-json".into(),
        None,
        Some(vec![Method::GET]),
        "/courses/{school}/{title}/{doc}",
    ));
    routes.push(route(
        "manual-update".into(),
        None,
        None,
        "/courses/{id*}/manual_update",
    ));
    routes.push(route(
        "export".into(),
        None,
        None,
        "/courses/{id*}/export.csv",
    ));
    routes.push(route(
        "assets".into(),
        None,
        Some(vec![Method::GET, Method::HEAD]),
        "/assets/{file*}",
    ));
    routes.push(route(
        "packs".into(),
        None,
        Some(vec![Method::GET, Method::HEAD]),
        "/packs/{file*}",
    ));
    for i in 0..13 {
        routes.push(route(
            format!("page-{i}"),
            Some("*.example.com"),
            None,
            &format!("/pages/p{i}/{{slug}}"),
        ));
    }
    routes.push(route("catch-all".into(), None, None, "/{rest*}"));
    assert_eq!(routes.len(), 100);
    RouteTable::new(routes)
}

fn routing(c: &mut Criterion) {
    let table = table();
    let mut group = c.benchmark_group("route_lookup_100_routes");
    let cases: [(&str, Option<&str>, Method, &str); 6] = [
        (
            "host_specific_first",
            Some("admin.example.com"),
            Method::GET,
            "/admin/users/7/history/2024",
        ),
        (
            "course_page",
            Some("dashboard.example.org"),
            Method::GET,
            "/courses/mit/physics",
        ),
        (
            "glob_in_middle",
            None,
            Method::POST,
            "/courses/mit/physics/manual_update",
        ),
        ("api_member", None, Method::GET, "/api/v1/reports/42"),
        (
            "asset",
            None,
            Method::GET,
            "/assets/application-3f9a1c2b4d5e6f70.js",
        ),
        (
            "catch_all",
            None,
            Method::GET,
            "/some/unrouted/path/deep/below",
        ),
    ];
    for (name, host, method, path) in cases {
        let expected = table
            .lookup(host, &method, path)
            .map(|m| m.route.name.to_string());
        assert!(expected.is_some(), "{name} matches");
        group.bench_function(name, |b| {
            b.iter(|| table.lookup(black_box(host), black_box(&method), black_box(path)))
        });
    }
    group.finish();
    c.bench_function("x_request_start_value", |b| {
        b.iter(|| frontdoor::headers::request_start_value(black_box(SystemTime::now())))
    });
    hostile(c);
}

/// A Chrome-like HTTP/1.1 head of ~700 bytes, screened as `request_filter` does.
fn hostile(c: &mut Criterion) {
    use frontdoor::hostile::{check_head, path, Limits};
    let head = "GET /courses/mit/physics?tab=overview HTTP/1.1\r\nHost: dashboard.example.org\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36\r\n\
        Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
        Accept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
        Cookie: _dashboard_session=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n\
        Referer: https://dashboard.example.org/courses\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n\
        Sec-Fetch-Site: same-origin\r\nUpgrade-Insecure-Requests: 1\r\nConnection: keep-alive\r\n\r\n";
    let limits = Limits::default();
    let raw = head.as_bytes();
    assert_eq!(check_head(Some(raw), raw.len(), 37, 12, &limits), Ok(()));
    c.bench_function("hostile_check_head_700b", |b| {
        b.iter(|| check_head(black_box(Some(raw)), raw.len(), 37, 12, &limits))
    });
    c.bench_function("hostile_path_already_normal", |b| {
        b.iter(|| path::normalise(black_box("/courses/mit/physics"), Default::default()))
    });
    c.bench_function("hostile_path_normalised", |b| {
        b.iter(|| path::normalise(black_box("//courses/%6dit//physics"), Default::default()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = routing
}
criterion_main!(benches);
