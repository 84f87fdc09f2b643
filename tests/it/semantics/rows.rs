//! The rows: what the app answers for each (its script) and what each path must answer.

use super::app::{App, Reply, Seen};
use super::{Ctx, Row};
use std::time::{Duration, SystemTime};

/// An HTML body worth compressing.
fn page(tag: &str) -> String {
    (0..150)
        .map(|i| format!("<li>{tag} item {i}</li>\n"))
        .collect()
}

const HTML: (&str, &str) = ("content-type", "text/html; charset=utf-8");
const BR: (&str, &str) = ("accept-encoding", "br");
const GZIP: (&str, &str) = ("accept-encoding", "gzip");
const IDENTITY: (&str, &str) = ("accept-encoding", "identity");

fn date(at: SystemTime) -> String {
    httpdate::fmt_http_date(at)
}

/// Whether `inm` lists `tag` by weak comparison.
fn matches(inm: Option<&str>, tag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
    inm.is_some_and(|inm| inm.split(',').any(|t| opaque(t) == opaque(tag)))
}

/// The scripts, one per row prefix.
pub fn script(app: &App) {
    let cacheable = |tag: &'static str, cc: &'static str, etag: &'static str| {
        move |seen: &Seen, _n: usize| {
            if !etag.is_empty() && matches(seen.header("if-none-match"), etag) {
                return Reply::new(304, &[("etag", etag), ("cache-control", cc)], "");
            }
            let mut fields = vec![HTML, ("cache-control", cc)];
            if !etag.is_empty() {
                fields.push(("etag", etag));
            }
            Reply::new(200, &fields, &page(tag))
        }
    };
    for prefix in ["/plain/f1", "/cache/f1"] {
        app.script(
            prefix,
            cacheable("nt", "public, max-age=60, no-transform", "\"nt\""),
        );
    }
    for prefix in [
        "/plain/f2",
        "/cache/f2",
        "/plain/f3",
        "/cache/f3",
        "/cache/f4",
        "/cache/f5",
    ] {
        app.script(prefix, cacheable("v1", "public, max-age=60", "\"v1\""));
    }
    app.script("/assets/", |seen: &Seen, _| {
        let body = page(&seen.path);
        Reply::new(200, &[("content-type", "text/css")], &body)
    });
    app.script("/cache/f6", |seen: &Seen, n| {
        let cc = if seen.path.contains("public") {
            "public, max-age=60"
        } else {
            "max-age=60"
        };
        let who = seen.header("authorization").unwrap_or("anonymous");
        Reply::new(200, &[("cache-control", cc)], &format!("for {who} #{n}"))
    });
    app.script("/plain/x", |_: &Seen, _| Reply::new(200, &[], "reached"));
    app.script("/cache/f8", |_: &Seen, n| {
        let mut reply = Reply::new(
            200,
            &[("cache-control", "max-age=60")],
            &format!("fill {n}"),
        );
        reply.delay = Duration::from_millis(400);
        reply
    });
    app.script("/cache/f9", |seen: &Seen, n| match seen.method.as_str() {
        "POST" if seen.path.contains("keep") => Reply::new(500, &[], "failed"),
        "POST" => {
            let other = seen.path.replace("page", "other");
            Reply::new(303, &[("location", other.as_str())], "")
        }
        _ => Reply::new(200, &[("cache-control", "max-age=60")], &format!("v{n}")),
    });
    app.script("/cache/f10", |_: &Seen, n| {
        // Worth compressing: storing must not wait for it.
        Reply::new(
            200,
            &[HTML, ("cache-control", "max-age=60")],
            &page(&format!("v{n}")),
        )
    });
    app.script("/cache/f11", |_: &Seen, n| {
        let mut reply = Reply::new(200, &[("cache-control", "max-age=60")], &format!("v{n}"));
        reply.interim = vec!["103 Early Hints\r\nlink: </a.css>; rel=preload".to_string()];
        reply
    });
    app.script("/cache/f12", |seen: &Seen, n| {
        if seen.path.contains("lm") {
            let modified = "Sun, 06 Nov 1994 08:49:37 GMT";
            let fields = [("cache-control", "max-age=60"), ("last-modified", modified)];
            return Reply::new(200, &fields, "by date");
        }
        if seen.header("if-none-match") == Some("\"e1\"") {
            let fields = [
                ("etag", "\"e1\""),
                ("cache-control", "max-age=60"),
                ("x-version", "2"),
                ("content-type", "text/plain;charset=utf-8"),
                ("content-md5", "N7UdGUp1E+RbVvZSTy1R8g=="),
            ];
            return Reply::new(304, &fields, "");
        }
        let fields = [
            ("etag", "\"e1\""),
            ("cache-control", "max-age=1"),
            ("x-version", "1"),
            ("content-type", "text/plain"),
            ("content-md5", "rL0Y20zC+Fzt72VPzMSk2A=="),
        ];
        Reply::new(200, &fields, &format!("body {n}"))
    });
    app.script("/cache/f13", |seen: &Seen, n| {
        let vary = if seen.path.contains("star") {
            "*"
        } else {
            "Accept"
        };
        let accept = seen.header("accept").unwrap_or("none").to_string();
        let fields = [("cache-control", "max-age=60"), ("vary", vary)];
        Reply::new(200, &fields, &format!("{accept} #{n}"))
    });
    app.script("/cache/f14", |seen: &Seen, n| {
        let now = SystemTime::now();
        if seen.path.contains("old-age") {
            let fields = [("cache-control", "max-age=3600"), ("age", "7200, 0")];
            return Reply::new(200, &fields, &format!("#{n}"));
        }
        let sent = now - Duration::from_secs(10);
        let fields = [
            ("date", date(sent)),
            ("expires", date(sent + Duration::from_secs(3600))),
        ];
        let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        Reply::new(200, &fields, &format!("#{n}"))
    });
}

/// Waits until the entry at `path` answers from memory with `encoding` (compression is done
/// after storing).
async fn until_encoded(ctx: &Ctx<'_>, path: &str, accept: (&str, &str), encoding: &str) {
    for _ in 0..200 {
        let r = ctx.get(path, &[accept]).await;
        if r.field("content-encoding") == Some(encoding) && r.field("x-cache") == Some("HIT") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} never served {encoding}");
}

fn f1<'a>(ctx: &'a Ctx<'a>) -> super::RowFuture<'a> {
    Box::pin(async move {
        for prefix in ["/plain/f1", "/cache/f1"] {
            let path = ctx.path(prefix, "/page");
            for _ in 0..3 {
                let r = ctx.get(&path, &[BR]).await;
                assert_eq!(r.field("content-encoding"), None, "{path}: no coding added");
                assert_eq!(r.field("etag"), Some("\"nt\""), "{path}");
                assert_eq!(r.body, page("nt").as_bytes(), "{path}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
}

fn f2<'a>(ctx: &'a Ctx<'a>) -> super::RowFuture<'a> {
    Box::pin(async move {
        let asset = ctx.path("/assets/app", "-0123456789abcdef.css");
        for path in [
            ctx.path("/plain/f2", "/p"),
            ctx.path("/cache/f2", "/p"),
            asset,
        ] {
            if !path.starts_with("/plain") {
                until_encoded(ctx, &path, GZIP, "gzip").await;
            }
            let get = ctx.get(&path, &[GZIP]).await;
            let head = ctx.ask("HEAD", &path, &[GZIP]).await;
            for name in [
                "content-encoding",
                "vary",
                "content-length",
                "etag",
                "content-type",
            ] {
                assert_eq!(head.field(name), get.field(name), "{path}: HEAD's {name}");
            }
            assert_eq!(get.field("content-encoding"), Some("gzip"), "{path}");
        }
    })
}

fn f3<'a>(ctx: &'a Ctx<'a>) -> super::RowFuture<'a> {
    Box::pin(async move {
        let asset = ctx.path("/assets/f3", "-0123456789abcdef.css");
        for path in [
            ctx.path("/plain/f3", "/p"),
            ctx.path("/cache/f3", "/p"),
            asset,
        ] {
            if !path.starts_with("/plain") {
                until_encoded(ctx, &path, GZIP, "gzip").await;
            }
            let full = ctx.get(&path, &[GZIP]).await;
            let etag = full.field("etag").expect("etag").to_string();
            if !path.starts_with("/assets") {
                assert_eq!(
                    etag, "W/\"v1\"",
                    "{path}: the app's tag, weak on gzip: {:?}",
                    full.headers
                );
            }
            let not_modified = ctx.get(&path, &[GZIP, ("if-none-match", &etag)]).await;
            assert_eq!(not_modified.status, 304, "{path}");
            assert_eq!(not_modified.field("etag"), Some(etag.as_str()), "{path}");
            let vary = not_modified
                .field("vary")
                .unwrap_or("")
                .to_ascii_lowercase();
            assert!(vary.contains("accept-encoding"), "{path}: Vary {vary:?}");
            assert_eq!(not_modified.field("content-encoding"), None, "{path}");
        }
    })
}

fn f4<'a>(ctx: &'a Ctx<'a>) -> super::RowFuture<'a> {
    Box::pin(async move {
        let asset = ctx.path("/assets/f4", "-0123456789abcdef.css");
        let cached = ctx.path("/cache/f4", "/p");
        for path in [cached, asset] {
            let full = ctx.get(&path, &[IDENTITY]).await;
            let tag = full.field("etag").expect("etag").to_string();
            let range = ("range", "bytes=0-9");
            let bogus = ctx.get(&path, &[range, ("if-range", "\"bogus\"")]).await;
            assert_eq!(
                bogus.status, 200,
                "{path}: a stale If-Range means the whole body"
            );
            assert_eq!(bogus.body, full.body, "{path}");
            let current = ctx.get(&path, &[range, ("if-range", &tag)]).await;
            assert_eq!(current.status, 206, "{path}");
            assert_eq!(current.body, &full.body[..10], "{path}");
        }
    })
}

fn f5<'a>(ctx: &'a Ctx<'a>) -> super::RowFuture<'a> {
    Box::pin(async move {
        let path = ctx.path("/cache/f5", "/p");
        let miss = ctx.get(&path, &[IDENTITY]).await;
        assert_eq!(miss.field("etag"), Some("\"v1\""));
        let hit = ctx.get(&path, &[IDENTITY]).await;
        assert_eq!(hit.field("x-cache"), Some("HIT"));
        assert_eq!(
            hit.field("etag"),
            Some("\"v1\""),
            "the app's validator on hits"
        );
        let again = ctx
            .get(&path, &[IDENTITY, ("if-none-match", "\"v1\"")])
            .await;
        assert_eq!((again.status, again.field("x-cache")), (304, Some("HIT")));
        assert_eq!(ctx.app.seen(&path).len(), 1);
    })
}

fn f6<'a>(ctx: &'a Ctx<'a>) -> super::RowFuture<'a> {
    Box::pin(async move {
        let path = ctx.path("/cache/f6", "/me");
        let alice = ctx.get(&path, &[("authorization", "Bearer alice")]).await;
        assert_eq!(alice.body, b"for Bearer alice #0");
        let anonymous = ctx.get(&path, &[]).await;
        assert_eq!(
            anonymous.body, b"for anonymous #1",
            "alice's answer is not shared"
        );
        let bob = ctx.get(&path, &[("authorization", "Bearer bob")]).await;
        assert_ne!(bob.body, alice.body);
        // Marked public: shared.
        let shared = ctx.path("/cache/f6", "/public");
        ctx.get(&shared, &[("authorization", "Bearer alice")]).await;
        let anonymous = ctx.get(&shared, &[]).await;
        assert_eq!(anonymous.field("x-cache"), Some("HIT"));
    })
}

fn f7<'a>(ctx: &'a Ctx<'a>) -> super::RowFuture<'a> {
    Box::pin(async move {
        for path in ["/plain/x/%2e%2e%2Fsecret", "/plain/x/a%2F..%2Fsecret"] {
            let r = ctx.get(path, &[]).await;
            assert_eq!(r.status, 400, "{path}");
        }
        assert!(ctx.app.seen("/plain/x").is_empty());
    })
}

fn f8<'a>(ctx: &'a Ctx<'a>) -> super::RowFuture<'a> {
    Box::pin(async move {
        let path = ctx.path("/cache/f8", "/cold");
        let herd: Vec<_> = (0..8)
            .map(|_| {
                let (client, url) = (ctx.client.clone(), ctx.fd.url(&path));
                tokio::spawn(async move {
                    let r = client.get(url).send().await.expect("request");
                    (r.status().as_u16(), r.bytes().await.expect("body"))
                })
            })
            .collect();
        for request in herd {
            let (status, body) = request.await.expect("task");
            assert_eq!((status, &body[..]), (200, &b"fill 0"[..]));
        }
        assert_eq!(ctx.app.seen(&path).len(), 1, "one fill for the herd");
    })
}

fn f9<'a>(ctx: &'a Ctx<'a>) -> super::RowFuture<'a> {
    Box::pin(async move {
        let (page, other, keep) = (
            ctx.path("/cache/f9", "/page"),
            ctx.path("/cache/f9", "/other"),
            ctx.path("/cache/f9", "/keep"),
        );
        for path in [&page, &other, &keep] {
            ctx.get(path, &[]).await;
            assert_eq!(
                ctx.get(path, &[]).await.field("x-cache"),
                Some("HIT"),
                "{path}"
            );
        }
        let posted = ctx.ask("POST", &page, &[]).await;
        assert_eq!(posted.status, 303);
        assert_eq!(ctx.ask("POST", &keep, &[]).await.status, 500);
        for (path, expected) in [(&page, "MISS"), (&other, "MISS"), (&keep, "HIT")] {
            let r = ctx.get(path, &[]).await;
            assert_eq!(r.field("x-cache"), Some(expected), "{path} after the POST");
        }
    })
}

fn f10<'a>(ctx: &'a Ctx<'a>) -> super::RowFuture<'a> {
    Box::pin(async move {
        let path = ctx.path("/cache/f10", "/p");
        assert_eq!(ctx.get(&path, &[]).await.field("x-cache"), Some("MISS"));
        let next = ctx.get(&path, &[]).await;
        assert_eq!(
            next.field("x-cache"),
            Some("HIT"),
            "stored once the answer is complete"
        );
        assert_eq!(ctx.app.seen(&path).len(), 1);
    })
}

fn f11<'a>(ctx: &'a Ctx<'a>) -> super::RowFuture<'a> {
    Box::pin(async move {
        let path = ctx.path("/cache/f11", "/p");
        assert_eq!(ctx.get(&path, &[]).await.body, b"v0");
        let hit = ctx.get(&path, &[]).await;
        assert_eq!(
            (hit.field("x-cache"), &hit.body[..]),
            (Some("HIT"), &b"v0"[..])
        );
        if ctx.proto == "h1" {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let raw_path = ctx.path("/cache/f11", "/raw");
            let mut tls = ctx.fd.raw_h1().await;
            let request =
                format!("GET {raw_path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
            tls.write_all(request.as_bytes()).await.expect("write");
            let mut bytes = Vec::new();
            let _ = tls.read_to_end(&mut bytes).await;
            let text = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
            let (interim, _) = text.split_once("http/1.1 200").expect("a final answer");
            assert!(interim.starts_with("http/1.1 103"), "{text}");
            assert!(interim.contains("link: </a.css>"), "{interim}");
            assert!(
                !interim.contains("x-request-id") && !interim.contains("x-cache"),
                "{interim}"
            );
        }
    })
}

fn f12<'a>(ctx: &'a Ctx<'a>) -> super::RowFuture<'a> {
    Box::pin(async move {
        let path = ctx.path("/cache/f12", "/p");
        let first = ctx.get(&path, &[]).await;
        assert_eq!(first.body, b"body 0");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let revalidated = ctx.get(&path, &[]).await;
        assert_eq!(revalidated.status, 200);
        assert_eq!(revalidated.field("x-cache"), Some("REVALIDATED"));
        assert_eq!(revalidated.body, b"body 0", "the stored body");
        assert_eq!(
            revalidated.field("x-version"),
            Some("2"),
            "fields from the 304"
        );
        assert_eq!(
            revalidated.field("content-type"),
            Some("text/plain;charset=utf-8"),
            "the media type from the 304"
        );
        assert_eq!(
            revalidated.field("content-md5"),
            Some("rL0Y20zC+Fzt72VPzMSk2A=="),
            "the digest of the stored body, not the 304's"
        );
        let seen = ctx.app.seen(&path);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].header("if-none-match"), Some("\"e1\""));
        assert_eq!(ctx.get(&path, &[]).await.field("x-cache"), Some("HIT"));
        // A client's If-Modified-Since is answered from memory.
        let lm = ctx.path("/cache/f12", "/lm");
        ctx.get(&lm, &[]).await;
        let since = ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(ctx.get(&lm, &[since]).await.status, 304);
        let earlier = ("if-modified-since", "Sat, 05 Nov 1994 08:49:37 GMT");
        assert_eq!(ctx.get(&lm, &[earlier]).await.status, 200);
        assert_eq!(ctx.app.seen(&lm).len(), 1);
    })
}

fn f13<'a>(ctx: &'a Ctx<'a>) -> super::RowFuture<'a> {
    Box::pin(async move {
        let path = ctx.path("/cache/f13", "/p");
        let (json, html) = (("accept", "application/json"), ("accept", "text/html"));
        assert_eq!(ctx.get(&path, &[json]).await.body, b"application/json #0");
        assert_eq!(ctx.get(&path, &[html]).await.body, b"text/html #1");
        for (accept, body) in [(json, "application/json #0"), (html, "text/html #1")] {
            let r = ctx.get(&path, &[accept]).await;
            assert_eq!(
                (r.field("x-cache"), &r.body[..]),
                (Some("HIT"), body.as_bytes())
            );
        }
        let star = ctx.path("/cache/f13", "/star");
        ctx.get(&star, &[json]).await;
        assert_eq!(ctx.get(&star, &[json]).await.field("x-cache"), Some("MISS"));
    })
}

fn f14<'a>(ctx: &'a Ctx<'a>) -> super::RowFuture<'a> {
    Box::pin(async move {
        let path = ctx.path("/cache/f14", "/expires");
        let miss = ctx.get(&path, &[]).await;
        let sent = miss.field("date").expect("date").to_string();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let hit = ctx.get(&path, &[]).await;
        assert_eq!(hit.field("x-cache"), Some("HIT"), "fresh by Expires");
        assert_eq!(
            hit.field("date"),
            Some(sent.as_str()),
            "Date as the app sent it"
        );
        let age: u64 = hit.field("age").expect("age").parse().expect("number");
        assert!((11..20).contains(&age), "Age counts from Date: {age}");
        let old = ctx.path("/cache/f14", "/old-age");
        ctx.get(&old, &[]).await;
        assert_eq!(
            ctx.get(&old, &[]).await.field("x-cache"),
            Some("MISS"),
            "Age: 7200, 0"
        );
    })
}

/// Every row, in the issue's order.
pub const ROWS: &[Row] = &[
    Row {
        fault: 1,
        name: "no-transform is never compressed, stored or not",
        run: f1,
    },
    Row {
        fault: 2,
        name: "HEAD carries what GET would",
        run: f2,
    },
    Row {
        fault: 3,
        name: "a 304 carries the 200's ETag and Vary",
        run: f3,
    },
    Row {
        fault: 4,
        name: "If-Range that does not match means the whole 200",
        run: f4,
    },
    Row {
        fault: 5,
        name: "edge-cache hits keep the app's ETag",
        run: f5,
    },
    Row {
        fault: 6,
        name: "answers to Authorization are shared only when public",
        run: f6,
    },
    Row {
        fault: 7,
        name: "dot segments are refused with encoded slashes passed",
        run: f7,
    },
    Row {
        fault: 8,
        name: "concurrent misses are collapsed",
        run: f8,
    },
    Row {
        fault: 9,
        name: "unsafe methods invalidate the URL and its Location",
        run: f9,
    },
    Row {
        fault: 10,
        name: "a stored answer is visible once complete",
        run: f10,
    },
    Row {
        fault: 11,
        name: "interim responses are relayed clean and do not stop storing",
        run: f11,
    },
    Row {
        fault: 12,
        name: "stale entries are revalidated; If-Modified-Since on hits",
        run: f12,
    },
    Row {
        fault: 13,
        name: "Vary selects stored variants; Vary: * never matches",
        run: f13,
    },
    Row {
        fault: 14,
        name: "Expires, Age and Date per RFC 9111",
        run: f14,
    },
];
