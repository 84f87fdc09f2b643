//! Requests the app never answered and the connections they go on: a request lost on a
//! kept-alive connection goes again at most once, on a new connection, and only if its method
//! is idempotent; frontdoor's own 502 says `Connection: close`; a POST never goes on a
//! connection idle longer than `non-idempotent-max-idle`; idle connections close after
//! `idle-timeout`.

use crate::common::*;
use futures_util::future::join_all;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Pool `app` on `origin` with `keys`, and a catch-all route.
fn app(origin: SocketAddr, keys: &str) -> String {
    format!(
        r#"
[pools.app]
backends = ["{origin}"]
connect-timeout = "500ms"
read-timeout = "5s"
{keys}

[[routes]]
name = "all"
path = "/{{rest*}}"
pool = "app"
"#
    )
}

const RESENT: &str = "frontdoor_upstream_retries_total{pool=\"app\",reason=\"reused_connection\"}";

/// The app connection that served a request (the origin's `X-Connection`).
async fn connection(response: reqwest::Response) -> u64 {
    assert_eq!(response.status(), 200);
    response.headers()["x-connection"]
        .to_str()
        .expect("text")
        .parse()
        .expect("number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_app_drops_reaches_it_twice_at_most_if_idempotent_once_if_not() {
    let origin = RawOrigin::start().await;
    let ports = Ports::new();
    let config = config_text(ports, &app(origin.addr, "idle-timeout = \"60s\""));
    let fd = Frontdoor::start(ports, &config).await;
    let client = fd.client();

    // Twenty requests at once leave twenty kept-alive connections to the app, idle.
    let slow = join_all((0..20).map(|_| client.get(fd.url("/slow")).send())).await;
    for response in slow {
        assert_eq!(response.expect("slow").status(), 200);
    }
    assert_eq!(origin.connections(), 20);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The app drops the GET on a kept-alive connection, then again on a new one: two copies
    // reached it (not one per pooled connection), and the client gets 502.
    let response = client.get(fd.url("/drop")).send().await.expect("get");
    assert_eq!(response.status(), 502);
    assert_eq!(origin.hits("/drop"), 2);
    assert_eq!(
        origin.connections(),
        21,
        "the second copy went on a new connection"
    );
    assert_eq!(fd.metric(RESENT).await, 1.0);

    // A POST is never sent again, even when lost on a kept-alive connection (the first POST
    // leaves one, recent enough for the next).
    let post = |path: &str| client.post(fd.url(path)).body("x").send();
    assert_eq!(post("/ok").await.expect("post").status(), 200);
    let response = post("/drop").await.expect("post");
    assert_eq!(response.status(), 502);
    assert_eq!(origin.hits("/drop"), 3);
    assert_eq!(fd.metric(RESENT).await, 1.0);

    // The 502 closes the connection, and says so.
    let mut raw = fd.raw_h1().await;
    raw.write_all(b"GET /drop HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    // Pingora closes without a TLS close_notify: an unexpected EOF is the end too.
    let read = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer))
        .await
        .expect("the connection is closed after the 502");
    assert!(
        read.is_ok() || read.is_err_and(|e| e.kind() == std::io::ErrorKind::UnexpectedEof),
        "read"
    );
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 502"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(!answer.contains("keep-alive"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_never_goes_on_a_connection_idle_past_its_threshold_and_idle_ones_close() {
    let origin = RawOrigin::start().await;
    let ports = Ports::new();
    let config = config_text(
        ports,
        &app(origin.addr, "non-idempotent-max-idle = \"500ms\""),
    );
    let fd = Frontdoor::start(ports, &config).await;
    let client = fd.client();
    let pause = || tokio::time::sleep(Duration::from_millis(100));

    // GETs share the kept-alive connections.
    let get = connection(client.get(fd.url("/a")).send().await.expect("get")).await;
    pause().await;
    assert_eq!(
        connection(client.get(fd.url("/a")).send().await.expect("get")).await,
        get
    );

    // POSTs in quick succession reuse a connection of their own (within 500 ms a window
    // changes at most once: two connections at most for three POSTs)...
    let post = || async {
        connection(
            client
                .post(fd.url("/a"))
                .body("x")
                .send()
                .await
                .expect("post"),
        )
        .await
    };
    let mut posts = Vec::new();
    for _ in 0..3 {
        posts.push(post().await);
        pause().await;
    }
    assert!(!posts.contains(&get), "a POST took an idle GET connection");
    posts.dedup();
    assert!(posts.len() <= 2, "{posts:?}");
    // ...but none idle past 500 ms: the next one takes a new connection.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let seen = origin.connections();
    assert!(post().await > seen.max(get));

    // The default idle-timeout (4 s) closes the GET connection: the next GET connects anew.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let fresh = connection(client.get(fd.url("/a")).send().await.expect("get")).await;
    assert!(fresh > get, "GET connection {get} kept past idle-timeout");
    assert_eq!(fd.metric(RESENT).await, 0.0);
}
