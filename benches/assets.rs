//! The hit paths: encoding negotiation, an asset cache lookup and an edge-cache key and lookup,
//! what every such request pays before its bytes are written. `cargo bench --bench assets`;
//! figures in BENCHMARKS.md.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use frontdoor::assets::{self, AssetCache, AssetRoute, AssetSource};
use frontdoor::edge_cache;
use frontdoor::edge_cache::{CacheRoute, EdgeCache, Lookup};
use frontdoor::encoding::{negotiate, Encoding};
use frontdoor::metrics::Metrics;
use frontdoor::upstream::{Pool, PoolSettings};
use pingora::http::ResponseHeader;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

fn negotiation(c: &mut Criterion) {
    let all = Encoding::PREFERENCE;
    c.bench_function("negotiate_chrome", |b| {
        b.iter(|| negotiate(black_box(Some("gzip, deflate, br, zstd")), black_box(&all)))
    });
    c.bench_function("negotiate_q_values", |b| {
        b.iter(|| {
            negotiate(
                black_box(Some("br;q=0.5, gzip;q=0.8, identity;q=0.1, *;q=0")),
                black_box(&all),
            )
        })
    });
}

fn cache_hit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(dir.path()).expect("root");
    std::fs::create_dir_all(root.join("assets")).expect("mkdir");
    let path = "/assets/application-3f9a1c2b4d5e6f70.js";
    std::fs::write(root.join(&path[1..]), "x".repeat(500_000)).expect("write");
    let settings = assets::Settings {
        capacity: 64 << 20,
        compression_threads: NonZeroUsize::MIN,
    };
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let cache = Arc::new(AssetCache::new(&settings, metrics));
    let route = AssetRoute {
        source: AssetSource::Directory(root),
        max_object_size: 16 << 20,
        x_cache_header: true,
        manifest: None,
        warm: false,
    };
    let pool = Pool::new(
        "app",
        PoolSettings {
            backends: vec![frontdoor::upstream::Backend {
                addr: frontdoor::upstream::BackendAddr::Tcp("127.0.0.1:9".parse().expect("addr")),
                weight: 1,
                drain: false,
            }],
            backends_file: None,
            balance: frontdoor::upstream::Balance::LeastBusy,
            ejection: frontdoor::upstream::Ejection {
                after: 3,
                duration: Duration::from_secs(10),
            },
            health: None,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            non_idempotent_max_idle: Duration::from_secs(1),
            upgraded: frontdoor::upgraded::UpgradedSettings {
                max: 10,
                idle_timeout: Duration::from_secs(60),
            },
            connect_retries: 0,
            admission: None,
        },
        None,
    );
    runtime
        .block_on(cache.get("assets", &route, path, None, &pool))
        .expect("filled");
    c.bench_function("asset_cache_hit", |b| {
        b.to_async(&runtime)
            .iter(|| cache.get("assets", &route, black_box(path), None, &pool))
    });
}

fn edge_cache_hit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let settings = edge_cache::Settings {
        capacity: 64 << 20,
        compression_threads: NonZeroUsize::MIN,
    };
    let cache = Arc::new(EdgeCache::new(
        &settings,
        Arc::new(Metrics::new().expect("metrics")),
    ));
    let route = CacheRoute {
        version: 1,
        max_object_size: 1 << 20,
        allow_cookies: false,
        allow_authorization: false,
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        x_cache_header: true,
    };
    let mut head = ResponseHeader::build(200, None).expect("head");
    head.insert_header("content-type", "application/json")
        .expect("field");
    head.insert_header("cache-control", "public, max-age=3600")
        .expect("field");
    // What a browser's request carries (the lookup matches stored variants against it).
    let mut request = http::HeaderMap::new();
    request.insert("accept", http::HeaderValue::from_static("application/json"));
    request.insert(
        "accept-encoding",
        http::HeaderValue::from_static("gzip, deflate, br, zstd"),
    );
    // A thousand course documents stored, then one looked up by its request.
    runtime.block_on(async {
        for i in 0..1000 {
            let path = format!("/courses/mit/c{i}/course.json");
            let key = EdgeCache::key("course-json", &route, Some("dashboard.example"), &path);
            let mut fill = cache
                .begin_fill(
                    "course-json",
                    &route,
                    key,
                    &http::HeaderMap::new(),
                    &head,
                    Duration::ZERO,
                    None,
                )
                .expect("storable");
            assert!(fill.push(format!("{{\"course\":{i}}}").as_bytes()));
            cache.finish_fill("course-json", fill);
        }
        while cache.bytes_held() == 0
            || !matches!(lookup(&cache, &route, &request, 999), Lookup::Hit(_))
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    c.bench_function("edge_cache_key_and_hit", |b| {
        b.iter(|| lookup(&cache, &route, &request, black_box(500)))
    });
}

fn lookup(cache: &EdgeCache, route: &CacheRoute, request: &http::HeaderMap, i: usize) -> Lookup {
    let path = format!("/courses/mit/c{i}/course.json");
    cache.lookup(
        &EdgeCache::key("course-json", route, Some("dashboard.example"), &path),
        request,
    )
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = negotiation, cache_hit, edge_cache_hit
}
criterion_main!(benches);
