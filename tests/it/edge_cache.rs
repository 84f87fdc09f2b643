//! The edge cache for dynamic responses: fresh hits, stale-while-revalidate with one refresh,
//! stale-if-error, what is never stored, and the version bump that purges.

use crate::common::*;
use std::time::Duration;

fn cache_route(origin: std::net::SocketAddr, rules: &str) -> String {
    format!(
        r#"
[pools.app]
backends = ["{origin}"]

[[routes]]
name = "api"
path = "/api/{{rest*}}"
pool = "app"
[routes.cache]
{rules}

[[routes]]
name = "app"
path = "/{{rest*}}"
pool = "app"
"#
    )
}

/// A JSON body big enough to be worth compressing.
fn document(version: &str) -> String {
    let items: Vec<String> = (0..200)
        .map(|i| format!(r#"{{"id":{i},"name":"course {i}","version":"{version}"}}"#))
        .collect();
    format!("[{}]", items.join(","))
}

fn json_reply(version: &str, cache_control: &str) -> OriginReply {
    OriginReply::ok(
        &document(version),
        &[
            ("content-type", "application/json"),
            ("cache-control", cache_control),
        ],
    )
}

const STORES: &str = "frontdoor_edge_cache_stores_total{route=\"api\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cacheable_answers_come_from_memory_compressed_until_they_expire() {
    let origin = ScriptedOrigin::start(json_reply("v1", "public, max-age=2")).await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &cache_route(origin.addr, ""))).await;
    let h2 = fd.client();
    let h1 = fd.client_builder().http1_only().build().expect("client");
    let url = fd.url("/api/courses?page=1");

    let (status, headers, body) = fetch(&h2, &url, &[("accept-encoding", "br")]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-cache"), Some("MISS"));
    let encoding = header(&headers, "content-encoding");
    assert_eq!(decode(encoding, &body), document("v1").as_bytes());
    assert_eq!(fd.wait_metric(STORES, 1.0).await, 1.0);
    // Stored at once, compressed just after: wait for Brotli.
    let br_saved = "frontdoor_edge_cache_compression_saved_bytes_total{encoding=\"br\"}";
    assert!(fd.wait_metric(br_saved, 1.0).await > 0.0);

    for client in [&h2, &h1] {
        for (accept, expected) in [
            ("gzip, deflate, br, zstd", Some("br")),
            ("gzip", Some("gzip")),
            ("identity", None),
        ] {
            let (status, headers, body) = fetch(client, &url, &[("accept-encoding", accept)]).await;
            assert_eq!(status, 200);
            assert_eq!(header(&headers, "x-cache"), Some("HIT"), "{accept}");
            assert_eq!(header(&headers, "content-encoding"), expected, "{accept}");
            assert_eq!(decode(expected, &body), document("v1").as_bytes());
            assert_eq!(header(&headers, "cache-control"), Some("public, max-age=2"));
            assert_eq!(header(&headers, "content-type"), Some("application/json"));
            assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
            assert!(header(&headers, "age").is_some_and(|a| a.parse::<u64>().is_ok()));
            assert!(header(&headers, "x-request-id").is_some());
        }
    }
    // A conditional request with the ETag of the answer gets 304 from memory.
    let (_, headers, _) = fetch(&h1, &url, &[("accept-encoding", "br")]).await;
    let etag = header(&headers, "etag").expect("etag").to_string();
    let (status, _, body) = fetch(
        &h1,
        &url,
        &[("accept-encoding", "br"), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!((status, body.len()), (304, 0));
    // HEAD from the stored GET.
    let head = h1.head(&url).send().await.expect("HEAD");
    assert_eq!(head.headers()["x-cache"], "HIT");
    assert_eq!(
        head.headers()["content-length"],
        document("v1").len().to_string().as_str()
    );
    // Another query is another entry.
    let (_, headers, _) = fetch(&h1, &fd.url("/api/courses?page=2"), &[]).await;
    assert_eq!(header(&headers, "x-cache"), Some("MISS"));
    assert_eq!(
        origin.hits(),
        2,
        "one fill per key, every other answer from memory"
    );

    // Past max-age (no stale window): the next request goes to the app again.
    origin.set(json_reply("v2", "public, max-age=2"));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, headers, body) = fetch(&h1, &url, &[]).await;
    assert_eq!(header(&headers, "x-cache"), Some("MISS"));
    assert_eq!(body, document("v2").as_bytes());
    assert_eq!(origin.hits(), 3);
    assert_eq!(fd.wait_metric(STORES, 3.0).await, 3.0);

    let hits = fd
        .metric("frontdoor_edge_cache_requests_total{result=\"hit\",route=\"api\"}")
        .await;
    assert_eq!(hits, 9.0);
    assert!(fd.metric("frontdoor_edge_cache_bytes").await > 0.0);
    assert!(
        fd.metric("frontdoor_edge_cache_compression_saved_bytes_total{encoding=\"br\"}")
            .await
            > 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_answers_at_once_and_refreshes_once() {
    let origin = ScriptedOrigin::start(json_reply(
        "v1",
        "public, max-age=1, stale-while-revalidate=60",
    ))
    .await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &cache_route(origin.addr, ""))).await;
    let client = fd.client();
    let url = fd.url("/api/timeline");
    let (_, headers, _) = fetch(&client, &url, &[]).await;
    assert_eq!(header(&headers, "x-cache"), Some("MISS"));
    assert_eq!(fd.wait_metric(STORES, 1.0).await, 1.0);

    // The app is now slow and has new content; the entry goes stale.
    let mut slow = json_reply("v2", "public, max-age=60");
    slow.delay = Duration::from_millis(800);
    origin.set(slow);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answers = futures_join(
        (0..20)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move { fetch(&client, &url, &[]).await })
            })
            .collect(),
    )
    .await;
    for (status, headers, body) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(header(headers, "x-cache"), Some("STALE"));
        assert_eq!(body, document("v1").as_bytes(), "the stale answer, at once");
    }
    // Twenty stale answers, one refresh.
    assert_eq!(
        fd.wait_metric(
            "frontdoor_edge_cache_refreshes_total{result=\"stored\",route=\"api\"}",
            1.0
        )
        .await,
        1.0
    );
    assert_eq!(origin.hits(), 2);
    let (_, headers, body) = fetch(&client, &url, &[]).await;
    assert_eq!(header(&headers, "x-cache"), Some("HIT"));
    assert_eq!(body, document("v2").as_bytes());
    assert_eq!(origin.hits(), 2);
}

async fn futures_join<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_answers_when_the_app_fails_or_is_down() {
    let origin =
        ScriptedOrigin::start(json_reply("v1", "public, max-age=1, stale-if-error=60")).await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &cache_route(origin.addr, ""))).await;
    let client = fd.client();
    let url = fd.url("/api/users");
    fetch(&client, &url, &[]).await;
    assert_eq!(fd.wait_metric(STORES, 1.0).await, 1.0);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // The app answers 503: the stale entry answers instead.
    origin.set(OriginReply {
        status: 503,
        ..OriginReply::ok("down for maintenance", &[])
    });
    let (status, headers, body) = fetch(&client, &url, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-cache"), Some("STALE"));
    assert_eq!(body, document("v1").as_bytes());
    assert_eq!(origin.hits(), 2, "the app was asked");

    // The app is down: still the stale entry.
    origin.stop();
    let (status, headers, body) = fetch(&client, &url, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-cache"), Some("STALE"));
    assert_eq!(body, document("v1").as_bytes());

    // Without an entry, the app's failure is the client's answer.
    let (status, _, _) = fetch(&client, &fd.url("/api/never-cached"), &[]).await;
    assert_eq!(status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_cookie_and_uncacheable_answers_always_reach_the_app() {
    let origin = ScriptedOrigin::start(json_reply("v1", "private, max-age=60")).await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &cache_route(origin.addr, ""))).await;
    let client = fd.client();
    let url = fd.url("/api/me");
    let mut expected_hits = 0;
    for reply in [
        json_reply("v1", "private, max-age=60"),
        json_reply("v1", "no-store"),
        json_reply("v1", "public"),
        OriginReply::ok(
            &document("v1"),
            &[
                ("content-type", "application/json"),
                ("cache-control", "public, max-age=60"),
                ("set-cookie", "session=abc"),
            ],
        ),
        OriginReply::ok(
            &document("v1"),
            &[("cache-control", "public, max-age=60"), ("vary", "*")],
        ),
    ] {
        origin.set(reply.clone());
        for _ in 0..2 {
            let (status, headers, _) = fetch(&client, &url, &[]).await;
            expected_hits += 1;
            assert_eq!(status, 200);
            assert_eq!(header(&headers, "x-cache"), Some("MISS"), "{reply:?}");
        }
        assert_eq!(origin.hits(), expected_hits, "{reply:?}");
    }

    // A cacheable answer, but the request carries a cookie or credentials: never from the
    // cache, never into it.
    origin.set(json_reply("v1", "public, max-age=60"));
    for credentials in [("cookie", "session=abc"), ("authorization", "Bearer t")] {
        for _ in 0..2 {
            let (_, headers, _) = fetch(&client, &fd.url("/api/shared"), &[credentials]).await;
            expected_hits += 1;
            assert_eq!(header(&headers, "x-cache"), None);
        }
    }
    assert_eq!(origin.hits(), expected_hits);
    assert_eq!(fd.metric(STORES).await, 0.0);
    assert_eq!(
        fd.metric("frontdoor_edge_cache_uncacheable_total{reason=\"set-cookie\",route=\"api\"}")
            .await,
        2.0
    );
    // Other methods are never answered from the cache.
    let post = client
        .post(fd.url("/api/shared"))
        .send()
        .await
        .expect("POST");
    assert!(post.headers().get("x-cache").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bumping_the_route_version_on_reload_purges_every_entry() {
    let origin = ScriptedOrigin::start(json_reply("v1", "public, max-age=600")).await;
    let ports = Ports::new();
    let config = |version: u32| {
        config_text(
            ports,
            &cache_route(origin.addr, &format!("version = {version}")),
        )
    };
    let fd = Frontdoor::start(ports, &config(1)).await;
    let client = fd.client();
    let url = fd.url("/api/campaigns");
    fetch(&client, &url, &[]).await;
    assert_eq!(fd.wait_metric(STORES, 1.0).await, 1.0);
    let (_, headers, _) = fetch(&client, &url, &[("if-none-match", "\"nope\"")]).await;
    assert_eq!(header(&headers, "x-cache"), Some("HIT"));

    origin.set(json_reply("v2", "public, max-age=600"));
    fd.rewrite_config(&config(2));
    fd.sighup();
    let reloads = "frontdoor_config_reloads_total{result=\"ok\"}";
    assert_eq!(fd.wait_metric(reloads, 1.0).await, 1.0);
    let (status, headers, body) = fetch(&client, &url, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-cache"), Some("MISS"));
    assert_eq!(body, document("v2").as_bytes());
    assert_eq!(origin.hits(), 2);
    // The conditional request of the fill was not passed on: the app answered in full.
    assert!(origin.last_request().get("if-none-match").is_none());
}
