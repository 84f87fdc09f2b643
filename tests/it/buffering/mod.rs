//! Request buffering: slow uploads are received by frontdoor before they take the pool's one
//! slot, `Expect: 100-continue` is answered on both protocols, stalled bodies get 408, large
//! bodies spill to disk intact, and an HTTP/2 upload without a length reaches a strict app
//! framed once.

mod app;

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use app::StrictApp;

/// A pool of one slot on the strict app (the queue waits long and never sheds, so the
/// unbuffered case shows plain waiting); routes: `/upload/…` buffered (the default),
/// `/streamed/…` with `request-buffering = false`, `/small/…` with a 64 KiB `max-body`,
/// `/jobs/…` offloaded (64 KiB), everything else buffered too.
fn config(app: SocketAddr, jobs: &std::path::Path, proxy: &str) -> String {
    format!(
        r#"
[proxy]
{proxy}

[pools.app]
backends = ["{app}"]
connect-timeout = "500ms"
read-timeout = "20s"
[pools.app.admission]
slots = 1
queue-timeout = "30s"
target = "30s"

[[routes]]
name = "streamed"
path = "/streamed/{{rest*}}"
pool = "app"
request-buffering = false

[[routes]]
name = "small"
path = "/small/{{rest*}}"
pool = "app"
max-body = "64KiB"

[[routes]]
name = "jobs"
path = "/jobs/{{rest*}}"
pool = "app"
[routes.offload]
max-body = "64KiB"

[[routes]]
name = "all"
path = "/{{rest*}}"
pool = "app"

[jobs]
store = "embedded"
path = "{jobs}"
poll-interval = "50ms"
"#,
        jobs = jobs.join("jobs.redb").display(),
    )
}

struct Setup {
    app: StrictApp,
    fd: Frontdoor,
    _jobs: tempfile::TempDir,
}

async fn start(proxy: &str) -> Setup {
    let app = StrictApp::start().await;
    let jobs = tempfile::tempdir().expect("tempdir");
    let ports = Ports::new();
    let fd = Frontdoor::start(
        ports,
        &config_text(ports, &config(app.addr, jobs.path(), proxy)),
    )
    .await;
    Setup {
        app,
        fd,
        _jobs: jobs,
    }
}

/// Bytes that differ from position to position, so a lost or repeated piece shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
        .collect()
}

/// Reads one response head (up to its blank line) from a raw HTTP/1.1 connection.
async fn read_head(stream: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn status_of(head: &str) -> u16 {
    head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Reads the body of a response whose head was read, by its `Content-Length`.
async fn read_body(stream: &mut (impl AsyncReadExt + Unpin), head: &str) -> String {
    let length = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("response body");
    String::from_utf8_lossy(&body).into_owned()
}

/// Sends `body` on a raw HTTP/1.1 connection at about 20 KiB/s (2 KiB every 100 ms); returns
/// when the last piece began to be written (nothing can have the whole body before that) and
/// the response (status, body).
async fn trickle(fd: &Frontdoor, path: &str, body: Vec<u8>) -> (Instant, u16, String) {
    let mut stream = fd.raw_h1().await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let mut last_piece = Instant::now();
    for piece in body.chunks(2048) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        last_piece = Instant::now();
        stream.write_all(piece).await.expect("piece");
        stream.flush().await.expect("flush");
    }
    let head = read_head(&mut stream).await;
    let answer = read_body(&mut stream, &head).await;
    (last_piece, status_of(&head), answer)
}

/// An HTTP/2 connection to frontdoor.
async fn h2_client(fd: &Frontdoor) -> h2::client::SendRequest<Bytes> {
    let addr = SocketAddr::from(([127, 0, 0, 1], fd.ports.https));
    let tls = h2wire::connect_h2(addr, &fd.ca.pem()).await;
    let (client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(connection);
    client
}

fn h2_request(fd: &Frontdoor, path: &str, fields: &[(&str, &str)]) -> http::Request<()> {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("https://localhost:{}{path}", fd.ports.https));
    for (name, value) in fields {
        request = request.header(*name, *value);
    }
    request.body(()).expect("request")
}

/// The status and body of an HTTP/2 response.
async fn h2_answer(response: h2::client::ResponseFuture) -> (u16, String) {
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("an answer in time")
        .expect("response");
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(data) = body.data().await {
        let data = data.expect("data");
        let _ = body.flow_control().release_capacity(data.len());
        text.extend_from_slice(&data);
    }
    (status, String::from_utf8_lossy(&text).into_owned())
}

/// The first interim response (`Some(100)`), or `None` when the final one came first.
async fn h2_interim(response: &mut h2::client::ResponseFuture) -> Option<u16> {
    let interim = std::future::poll_fn(|cx| response.poll_informational(cx));
    tokio::time::timeout(Duration::from_secs(5), interim)
        .await
        .expect("an interim or final response in time")
        .map(|r| r.expect("interim").status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_received_before_it_takes_the_only_slot() {
    let Setup { app, fd, .. } = start("").await;
    // 128 KiB at ~20 KiB/s (6.4 s): the issue's 2 MiB would take 100 s at that rate, and the
    // order of events asserted below is the same.
    let body = pattern(128 * 1024);
    let upload = trickle(&fd, "/upload/slow", body.clone());
    let client = fd.client();
    let mut pages_done = Vec::new();
    let pages = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for i in 0..3 {
            let response = client
                .get(fd.url(&format!("/page/{i}")))
                .send()
                .await
                .expect("page");
            assert_eq!(response.status(), 200);
            pages_done.push(Instant::now());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let ((last_piece, status, answer), ()) = tokio::join!(upload, pages);
    let last_piece_wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
        - last_piece.elapsed().as_secs_f64();
    assert_eq!((status, answer.as_str()), (200, "received 131072 bytes"));
    // Pages were served while the upload was still coming in: it held no slot.
    assert!(
        pages_done.iter().all(|done| *done < last_piece),
        "a page waited for the upload"
    );
    // The app got the request only once the client had sent it all, framed by its length.
    let seen = app
        .request("/upload/slow")
        .expect("the upload reached the app");
    assert!(
        seen.head_at >= last_piece,
        "the app saw the head before the body was in"
    );
    assert_eq!(seen.field("content-length"), Some("131072"));
    assert!(!seen.chunked);
    assert!(seen.body == body, "the body arrived changed");
    // The upload is not queue time: neither in frontdoor's queue measure (4 requests, the
    // upload's 6 s would dominate the sum) nor in the `X-Request-Start` the app reads.
    let queued = fd.metric("frontdoor_queue_seconds_sum{pool=\"app\"}").await;
    assert!(queued < 1.0, "queue time {queued} s includes the upload");
    let stamp: f64 = seen
        .field("x-request-start")
        .and_then(|v| v.strip_prefix("t="))
        .and_then(|v| v.parse().ok())
        .expect("X-Request-Start");
    assert!(
        stamp + 0.002 >= last_piece_wall,
        "X-Request-Start {stamp} is before the last piece was sent at {last_piece_wall}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbuffered_upload_holds_the_slot_while_the_client_sends_it() {
    let Setup { app, fd, .. } = start("").await;
    // The trade-off of `request-buffering = false`: the app reads the body as it arrives, so
    // the upload holds the pool's one slot and a page waits until it is over.
    let body = pattern(128 * 1024);
    let upload = trickle(&fd, "/streamed/slow", body.clone());
    let page = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while app.head_at("/streamed/slow").is_none() {
            assert!(
                Instant::now() < deadline,
                "the upload never reached the app"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let response = fd
            .client_builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
            .get(fd.url("/page/waiting"))
            .send()
            .await
            .expect("page");
        assert_eq!(response.status(), 200);
        Instant::now()
    };
    let ((last_piece, status, _), page_done) = tokio::join!(upload, page);
    assert_eq!(status, 200);
    assert!(
        page_done > last_piece,
        "the page was served during the upload"
    );
    let seen = app.request("/streamed/slow").expect("upload");
    assert!(
        seen.head_at < last_piece,
        "the app saw the upload only at its end"
    );
    assert!(seen.body == body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_over_h1_and_h2_on_proxied_and_offload_routes() {
    let Setup { app, fd, .. } = start("").await;

    // HTTP/1.1: the 100 comes before the client sends a byte of body, then the final answer.
    for (path, final_status) in [("/upload/expect-h1", 200), ("/jobs/expect-h1", 202)] {
        let mut stream = fd.raw_h1().await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("head");
        let interim = read_head(&mut stream).await;
        assert_eq!(status_of(&interim), 100, "{path}: {interim}");
        stream.write_all(b"hello world").await.expect("body");
        let last = read_head(&mut stream).await;
        assert_eq!(status_of(&last), final_status, "{path}: {last}");
        assert!(
            last.to_ascii_lowercase().contains("connection: keep-alive"),
            "{path}: the connection is kept: {last}"
        );
    }
    // A body refused by its length gets the final status instead, and no 100.
    for path in ["/small/too-big-h1", "/jobs/too-big-h1"] {
        let mut stream = fd.raw_h1().await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\nExpect: 100-continue\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("head");
        let first = read_head(&mut stream).await;
        assert_eq!(status_of(&first), 413, "{path}: {first}");
    }

    // HTTP/2: the same, the 100 as an interim HEADERS frame before the final response.
    let mut client = h2_client(&fd).await;
    for (path, final_status) in [("/upload/expect-h2", 200), ("/jobs/expect-h2", 202)] {
        let fields = [("expect", "100-continue"), ("content-length", "11")];
        let request = h2_request(&fd, path, &fields);
        client = client.ready().await.expect("ready");
        let (mut response, mut send) = client.send_request(request, false).expect("send");
        assert_eq!(h2_interim(&mut response).await, Some(100), "{path}");
        send.send_data(Bytes::from_static(b"hello world"), true)
            .expect("body");
        assert_eq!(h2_answer(response).await.0, final_status, "{path}");
    }
    for path in ["/small/too-big-h2", "/jobs/too-big-h2"] {
        let fields = [("expect", "100-continue"), ("content-length", "1048576")];
        let request = h2_request(&fd, path, &fields);
        client = client.ready().await.expect("ready");
        let (mut response, _send) = client.send_request(request, false).expect("send");
        assert_eq!(h2_interim(&mut response).await, None, "{path}: a 100 came");
        assert_eq!(h2_answer(response).await.0, 413, "{path}");
    }

    // The proxied bodies reached the app whole, framed by length, without the `Expect` the
    // app would have answered again.
    for path in ["/upload/expect-h1", "/upload/expect-h2"] {
        let seen = app.request(path).expect(path);
        assert_eq!(seen.body, b"hello world", "{path}");
        assert_eq!(seen.field("content-length"), Some("11"), "{path}");
        assert_eq!(seen.field("expect"), None, "{path}");
    }
    assert!(app.request("/small/too-big-h1").is_none());
    assert!(app.request("/small/too-big-h2").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_without_ever_holding_the_slot() {
    let Setup { app, fd, .. } = start("body-timeout = \"2s\"").await;
    // HTTP/1.1 and HTTP/2 uploads that send 10 of their 100 bytes and stop.
    let mut h1 = fd.raw_h1().await;
    h1.write_all(b"POST /upload/stalled-h1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .expect("h1 stall");
    let client = h2_client(&fd).await;
    let request = h2_request(&fd, "/upload/stalled-h2", &[("content-length", "100")]);
    let mut client = client.ready().await.expect("ready");
    let (h2_response, mut send) = client.send_request(request, false).expect("send");
    send.send_data(Bytes::from_static(b"0123456789"), false)
        .expect("h2 stall");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile the pool's one slot serves a page at once.
    let response = fd.client().get(fd.url("/page")).send().await.expect("page");
    assert_eq!(response.status(), 200);
    let mut early = [0u8; 1];
    let nothing_yet = tokio::time::timeout(Duration::from_millis(100), h1.read(&mut early)).await;
    assert!(
        nothing_yet.is_err(),
        "the stalled upload was answered before the page"
    );

    let head = read_head(&mut h1).await;
    assert_eq!(status_of(&head), 408, "{head}");
    assert_eq!(h2_answer(h2_response).await.0, 408);
    let sample = "frontdoor_rejected_requests_total{reason=\"body_timeout\"}";
    assert_eq!(fd.wait_metric(sample, 2.0).await, 2.0);
    assert!(app.head_at("/upload/stalled-h1").is_none());
    assert!(app.head_at("/upload/stalled-h2").is_none());
    let log = std::fs::read_to_string(fd.dir.path().join("access.log")).unwrap_or_default();
    assert_eq!(
        log.lines().filter(|l| l.contains("status=408")).count(),
        2,
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_memory_bounds_spills_to_disk_and_arrives_intact() {
    let spill = tempfile::tempdir().expect("spill dir");
    let proxy = format!(
        "request-buffer-size = \"16KiB\"\nrequest-buffer-memory = \"32KiB\"\nrequest-buffer-dir = \"{}\"",
        spill.path().display()
    );
    let Setup { app, fd, .. } = start(&proxy).await;
    let body = pattern(3 * 1024 * 1024 + 17);
    let small = pattern(1000);
    let client = fd.client();
    let (big, little) = tokio::join!(
        client.post(fd.url("/upload/big")).body(body.clone()).send(),
        client
            .post(fd.url("/upload/little"))
            .body(small.clone())
            .send(),
    );
    assert_eq!(big.expect("big").status(), 200);
    assert_eq!(little.expect("little").status(), 200);
    let seen = app.request("/upload/big").expect("big upload");
    assert_eq!(seen.field("content-length"), Some("3145745"));
    assert!(seen.body == body, "the spilled body arrived changed");
    assert!(app.request("/upload/little").expect("little").body == small);

    let disk = "frontdoor_request_bodies_buffered_total{storage=\"disk\"}";
    let memory = "frontdoor_request_bodies_buffered_total{storage=\"memory\"}";
    assert_eq!(fd.metric(disk).await, 1.0);
    assert_eq!(fd.metric(memory).await, 1.0);
    // Everything is given back, and the spill file had no name to leave behind.
    assert_eq!(
        fd.metric("frontdoor_request_buffer_memory_bytes").await,
        0.0
    );
    assert_eq!(fd.metric("frontdoor_request_buffer_disk_bytes").await, 0.0);
    assert_eq!(std::fs::read_dir(spill.path()).expect("dir").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_upload_without_a_length_reaches_a_strict_app_framed_once() {
    let Setup { app, fd, .. } = start("").await;
    // `curl --http2 -T -`: no content-length, DATA frames, then an empty DATA frame that
    // ends the stream; through a buffered and an unbuffered route, twice each.
    let mut client = h2_client(&fd).await;
    let paths = ["/upload/a", "/streamed/a", "/upload/b", "/streamed/b"];
    for path in paths {
        client = client.ready().await.expect("ready");
        let (response, mut send) = client
            .send_request(h2_request(&fd, path, &[]), false)
            .expect("send");
        for piece in ["hello ", "world"] {
            send.send_data(Bytes::from_static(piece.as_bytes()), false)
                .expect("data");
        }
        send.send_data(Bytes::new(), true).expect("end");
        assert_eq!(
            h2_answer(response).await,
            (200, "received 11 bytes".to_string()),
            "{path}"
        );
    }
    assert_eq!(
        String::from_utf8_lossy(&app.stray()),
        "",
        "bytes after a request"
    );
    let seen = app.seen();
    assert_eq!(seen.len(), 4);
    for request in &seen {
        assert_eq!(request.method, "POST");
        assert_eq!(request.body, b"hello world", "{}", request.path);
        let buffered = request.path.starts_with("/upload/");
        assert_eq!(request.chunked, !buffered, "{}", request.path);
        if buffered {
            assert_eq!(request.field("content-length"), Some("11"));
        }
    }
    // Nothing made frontdoor give up its upstream connection.
    assert!(
        seen.iter().all(|r| r.connection == 0),
        "{:?}",
        seen.iter().map(|r| r.connection).collect::<Vec<_>>()
    );
}
