//! Upgraded connections (WebSocket, ActionCable) through frontdoor: they give their admission
//! slot back at the 101, are counted and capped per pool, idle on a timeout of their own,
//! survive a reload, and are closed at the end of the grace period after SIGTERM.

use crate::common::*;
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Pool `app` on `origin` with two slots and a short queue timeout (a request that found no
/// slot would get 503 after 1 s), `keys` on the pool, a catch-all route.
fn cable(origin: SocketAddr, keys: &str) -> String {
    format!(
        r#"
[pools.app]
backends = ["{origin}"]
connect-timeout = "500ms"
read-timeout = "2s"
{keys}

[pools.app.admission]
slots = 2
queue-timeout = "1s"

[[routes]]
name = "all"
path = "/{{rest*}}"
pool = "app"
"#
    )
}

/// Sends `text` and waits (10 s at most) for it to come back, skipping the app's ticks.
async fn echo(socket: &mut WebSocket, text: &str) {
    socket.send(Message::text(text)).await.expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text => return,
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "tick" => continue,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("no echo of {text}: {other:?}"),
        }
    }
}

/// Whether the socket ends (closed, reset) within `limit`; ticks are read past.
async fn ends_within(socket: &mut WebSocket, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// `n` WebSocket clients connecting at once to `/cable`.
async fn connect(fd: &Frontdoor, n: usize) -> Vec<WebSocket> {
    join_all((0..n).map(|_| fd.websocket("/cable")))
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|refused| panic!("refused: {}", refused.status())))
        .collect()
}

/// `n` page requests at once: each is answered 200 (with no free slot they would wait and get
/// 503 after the pool's 1 s queue timeout).
async fn pages(client: &reqwest::Client, fd: &Frontdoor, n: usize) {
    let statuses = join_all((0..n).map(|i| client.get(fd.url(&format!("/page/{i}"))).send())).await;
    for status in statuses {
        assert_eq!(status.expect("page").status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_give_their_slot_back_idle_70s_survive_a_reload_and_are_capped() {
    let origin = RawOrigin::start().await;
    let ports = Ports::new();
    let config = |queue: usize| {
        config_text(
            ports,
            &cable(origin.addr, "max-upgraded = 53").replace(
                "queue-timeout = \"1s\"",
                &format!("queue-timeout = \"1s\"\nqueue-length = {queue}"),
            ),
        )
    };
    let fd = Frontdoor::start(ports, &config(100)).await;
    let client = fd.client();
    let gauge = "frontdoor_upgraded_connections{pool=\"app\"}";

    // Three browser tabs on a pool of two slots: all three switch, and pages are served.
    let mut sockets = connect(&fd, 3).await;
    for (i, socket) in sockets.iter_mut().enumerate() {
        echo(socket, &format!("tab {i}")).await;
    }
    pages(&client, &fd, 10).await;
    assert_eq!(fd.wait_metric(gauge, 3.0).await, 3.0);

    // Fifty more.
    sockets.extend(connect(&fd, 50).await);
    for (i, socket) in sockets.iter_mut().enumerate().skip(3) {
        echo(socket, &format!("tab {i}")).await;
    }
    pages(&client, &fd, 10).await;
    assert_eq!(fd.wait_metric(gauge, 53.0).await, 53.0);
    assert_eq!(origin.sockets(), 53);

    // max-upgraded: the 54th is refused before it reaches the app.
    let refused = fd.websocket("/cable").await.expect_err("54th refused");
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        fd.metric("frontdoor_upgraded_connections_refused_total{pool=\"app\"}")
            .await,
        1.0
    );

    // On /status.json and in `frontdoor status`.
    let rows: serde_json::Value = reqwest::get(fd.admin_url("/status.json"))
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(rows[0]["pool"], "app");
    assert_eq!(rows[0]["upgraded"], 53);
    assert_eq!(rows[0]["max_upgraded"], 53);
    let admin = format!("127.0.0.1:{}", ports.admin);
    let (code, out, err) = run_cli(&["status", "--admin", &admin], std::path::Path::new("."));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("app ") && l.trim_end().ends_with("53/53")),
        "{out}"
    );

    // 70 s without a byte on any socket (past the pool's 2 s read-timeout and the 60 s
    // body-timeout); meanwhile pages are served and the config is reloaded.
    let quiet_since = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    pages(&client, &fd, 10).await;
    let reloads = "frontdoor_config_reloads_total{result=\"ok\"}";
    fd.rewrite_config(&config(200));
    fd.sighup();
    assert_eq!(fd.wait_metric(reloads, 1.0).await, 1.0);
    pages(&client, &fd, 10).await;
    tokio::time::sleep(Duration::from_secs(70).saturating_sub(quiet_since.elapsed())).await;
    pages(&client, &fd, 10).await;
    for (i, socket) in sockets.iter_mut().enumerate() {
        echo(socket, &format!("tab {i} after 70 s")).await;
    }
    assert_eq!(fd.metric(gauge).await, 53.0);

    // Closed ones are counted and free their place.
    for mut socket in sockets.drain(..3) {
        socket.close(None).await.expect("close");
    }
    let closed = "frontdoor_upgraded_connections_closed_total{pool=\"app\"}";
    assert_eq!(fd.wait_metric(closed, 3.0).await, 3.0);
    assert_eq!(fd.metric(gauge).await, 50.0);
    let opened = "frontdoor_upgraded_connections_opened_total{pool=\"app\"}";
    assert_eq!(fd.metric(opened).await, 53.0);
    let mut again = fd.websocket("/cable").await.expect("a place is free");
    echo(&mut again, "back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_closes_after_its_idle_timeout_unless_the_app_pings() {
    let origin = RawOrigin::start().await;
    let ports = Ports::new();
    let keys = "read-timeout = \"10s\"\nupgraded-idle-timeout = \"1s\"";
    let pool = cable(origin.addr, "").replace("read-timeout = \"2s\"", keys);
    let fd = Frontdoor::start(ports, &config_text(ports, &pool)).await;

    let mut quiet = fd.websocket("/cable").await.expect("quiet");
    let mut pinged = fd.websocket("/ticks").await.expect("pinged");
    echo(&mut quiet, "hello").await;
    echo(&mut pinged, "hello").await;
    // The client says nothing; the app pings every 300 ms on one socket only.
    assert!(
        ends_within(&mut quiet, Duration::from_secs(5)).await,
        "a connection idle both ways stays open"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    echo(&mut pinged, "still here").await;
    let closed = "frontdoor_upgraded_connections_closed_total{pool=\"app\"}";
    assert_eq!(fd.wait_metric(closed, 1.0).await, 1.0);
    assert_eq!(
        fd.metric("frontdoor_upgraded_connections{pool=\"app\"}")
            .await,
        1.0
    );
    // An idle tunnel is not a stalled request body, and no HTTP answer is written into it.
    let metrics = fd.metrics().await;
    assert!(!metrics.contains("reason=\"body_timeout\""), "{metrics}");
    assert!(!metrics.contains("class=\"5xx\""), "{metrics}");
    assert!(!metrics.contains("class=\"4xx\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_connections_work_through_the_grace_period_and_close_at_its_end() {
    let origin = RawOrigin::start().await;
    let ports = Ports::new();
    let config = config_text(ports, &cable(origin.addr, ""))
        .replace("grace-period = \"0s\"", "grace-period = \"3s\"");
    let mut fd = Frontdoor::start(ports, &config).await;
    let mut socket = fd.websocket("/cable").await.expect("socket");
    echo(&mut socket, "before").await;

    fd.signal("TERM");
    let term = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    echo(&mut socket, "during the grace period").await;
    assert!(
        ends_within(&mut socket, Duration::from_secs(10)).await,
        "still open after the grace period"
    );
    let closed = term.elapsed();
    assert!(
        closed >= Duration::from_millis(2800),
        "closed after {closed:?}"
    );
    assert!(fd.wait_exit(Duration::from_secs(10)).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_reads_like_a_response_head_is_not_taken_for_one() {
    let origin = RawOrigin::start().await;
    let ports = Ports::new();
    let proxy = "\n[proxy]\nheader-timeout = \"1s\"\n";
    let fd = Frontdoor::start(
        ports,
        &config_text(ports, &format!("{proxy}{}", cable(origin.addr, ""))),
    )
    .await;
    let mut socket = fd.websocket("/split").await.expect("socket");
    match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => assert!(t.as_str().starts_with("HTTP/1.1 200")),
        other => panic!("no first message: {other:?}"),
    }
    // What the client sends next is WebSocket frames, never a request head that must end
    // within the header-timeout.
    echo(&mut socket, "a").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    echo(&mut socket, "b").await;
}
