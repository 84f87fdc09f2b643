//! The app's answer is read as fast as the app writes it: a slow client does not hold the
//! app's slot. Event streams and routes with `response-buffering = false` go at the client's
//! pace (and hold the slot until the client is done: the documented trade-off).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::h1wire::{Framing, H1Conn};
use crate::common::h2wire;
use crate::common::stream_origin::{is_pattern, StreamingOrigin};
use crate::common::*;

/// More than the kernel's socket buffers hold, on both sides of frontdoor.
const BIG: u64 = 64 << 20;

/// One backend with one slot; `/export/...` is not buffered.
fn config(ports: Ports, origin: std::net::SocketAddr) -> String {
    config_text(
        ports,
        &format!(
            r#"
[pools.app]
backends = ["{origin}"]
read-timeout = "30s"
[pools.app.admission]
slots = 1
queue-timeout = "60s"

[[routes]]
name = "export"
path = "/export/{{rest*}}"
pool = "app"
response-buffering = false

[[routes]]
name = "app"
path = "/{{rest*}}"
pool = "app"
"#
        ),
    )
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes()
}

/// A client reading at about 200 KiB/s until told to stop; counts what it read.
struct SlowReader {
    read: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowReader {
    /// Sends `path` on a new HTTP/1.1 connection, checks the head, then trickles the body.
    async fn start(fd: &Frontdoor, path: &str) -> SlowReader {
        let mut conn = H1Conn::new(fd.raw_h1().await);
        conn.send(&get(path)).await;
        let (status, headers) = conn.read_head().await.expect("a head");
        assert_eq!(status, 200);
        let length = headers.iter().find(|(n, _)| n == "content-length");
        assert_eq!(
            length.map(|(_, v)| v.as_str()),
            Some(BIG.to_string().as_str())
        );
        let (read, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (counter, stopped) = (read.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !stopped.load(Ordering::SeqCst) {
                let n = conn.read_raw(20 << 10).await;
                if n == 0 {
                    break;
                }
                counter.fetch_add(n as u64, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        SlowReader { read, stop, task }
    }

    fn read(&self) -> u64 {
        self.read.load(Ordering::SeqCst)
    }

    /// Stops reading and closes the connection.
    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Waits (up to `limit`) for `done`.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_does_not_hold_the_slot() {
    let origin = StreamingOrigin::start().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config(ports, origin.addr)).await;
    let slow = SlowReader::start(&fd, &format!("/big/{BIG}")).await;
    // The app writes its whole answer while the client has read a small part of it.
    assert!(
        eventually(Duration::from_secs(60), || origin.finished() == 1).await,
        "the app could not finish its answer; the client read {} bytes",
        slow.read()
    );
    let spilled = fd.metric("frontdoor_response_buffer_spilled_total").await;
    assert_eq!(spilled, 1.0, "the answer outgrew its memory");
    assert!(
        fd.metric("frontdoor_response_buffer_bytes{store=\"file\"}")
            .await
            > 0.0
    );

    // The slot is free: another request is answered at once, over HTTP/2.
    let (status, _, body) = fetch(&fd.client(), &fd.url("/small"), &[]).await;
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
    assert!(
        slow.read() < BIG / 4,
        "the slow client had read {} bytes",
        slow.read()
    );
    slow.stop().await;
    // What it left behind is let go: memory and file.
    for store in ["memory", "file"] {
        let sample = format!("frontdoor_response_buffer_bytes{{store=\"{store}\"}}");
        let mut held = fd.metric(&sample).await;
        for _ in 0..250 {
            if held == 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            held = fd.metric(&sample).await;
        }
        assert_eq!(held, 0.0, "{sample}");
    }

    // A client that reads it all gets every byte, in order, over both protocols.
    let mut conn = H1Conn::new(fd.raw_h1().await);
    conn.send(&get(&format!("/big/{BIG}"))).await;
    let answer = conn.read_response(false).await.expect("an answer");
    assert_eq!(answer.framing, Framing::Length(BIG as usize));
    assert!(is_pattern(&answer.body), "the body came through intact");
    let (status, _, body) = fetch(&fd.client(), &fd.url("/big/8388608"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), 8 << 20);
    assert!(is_pattern(&body));
    assert_eq!(origin.finished(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_that_stops_reading_does_not_hold_the_slot() {
    let origin = StreamingOrigin::start().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config(ports, origin.addr)).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ports.https));
    let tls = h2wire::connect_h2(addr, &fd.ca.pem()).await;
    let (client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::get(fd.url("/big/16777216"))
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    let response = response.await.expect("response");
    assert_eq!(response.status(), 200);
    // The body is never read: the stream's flow-control window stays closed.
    let _unread = response.into_body();
    assert!(
        eventually(Duration::from_secs(30), || origin.finished() == 1).await,
        "the app could not finish its answer"
    );
    let (status, _, _) = fetch(&fd.client(), &fd.url("/small"), &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_delivers_each_event_as_it_is_written() {
    let origin = StreamingOrigin::start().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config(ports, origin.addr)).await;
    for client in [
        fd.client(),
        fd.client_builder().http1_only().build().expect("client"),
    ] {
        let events = origin.events();
        let mut response = client.get(fd.url("/events")).send().await.expect("events");
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(response.headers(), "content-type"),
            Some("text/event-stream")
        );
        for i in 0..3 {
            // The next event is written only once the client has the last one.
            let event = format!("id: {i}\ndata: tick {i}\n\n");
            events.send(event.clone().into()).expect("send event");
            let mut got = Vec::new();
            while got.len() < event.len() {
                let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
                    .await
                    .unwrap_or_else(|_| panic!("event {i} did not arrive"))
                    .expect("chunk")
                    .expect("more");
                got.extend_from_slice(&chunk);
            }
            assert_eq!(String::from_utf8_lossy(&got), event);
        }
        drop(events);
        // The stream ends with the app's (HTTP/2 may close it with an empty DATA frame).
        while let Some(rest) = response.chunk().await.expect("end") {
            assert!(rest.is_empty(), "{rest:?}");
        }
    }
    assert_eq!(
        fd.metric("frontdoor_response_buffer_spilled_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbuffered_route_holds_the_slot_until_its_client_is_done() {
    let origin = StreamingOrigin::start().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config(ports, origin.addr)).await;
    let slow = SlowReader::start(&fd, &format!("/export/big/{BIG}")).await;
    // Another request waits in the queue for the slot the export holds...
    let client = fd.client();
    let url = fd.url("/small");
    let waiting = tokio::spawn(async move { fetch(&client, &url, &[]).await });
    let queued = fd
        .wait_metric("frontdoor_queue_length{pool=\"app\"}", 1.0)
        .await;
    assert_eq!(queued, 1.0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "the slot was free");
    // ... because the app is held back at the client's pace.
    assert_eq!(origin.finished(), 0);
    assert_eq!(
        fd.metric("frontdoor_response_buffer_spilled_total").await,
        0.0
    );
    // The export's client leaves: the slot goes to the waiting request.
    slow.stop().await;
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("answered once the slot is free")
        .expect("task");
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
}

/// Answers small and mid-sized (a page; a few of the app's writes, more than Pingora's
/// channel of four tasks holds) to an HTTP/2 client whose flow-control window is closed:
/// frontdoor cannot send a byte of the body. Each frees the only slot as soon as the app has
/// written it, whether it went straight through the relay or waited in it, and reaches the
/// client whole, in order, once the window opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_answer_frees_the_slot_while_the_client_takes_nothing() {
    let origin = StreamingOrigin::start().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config(ports, origin.addr)).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ports.https));
    for (i, len) in [2_000usize, 300_000].into_iter().enumerate() {
        let tls = h2wire::connect_h2(addr, &fd.ca.pem()).await;
        let (client, mut connection) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, bytes::Bytes>(tls)
            .await
            .expect("h2 handshake");
        let (open, opened) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            tokio::select! {
                _ = &mut connection => return,
                _ = opened => {}
            }
            connection.set_initial_window_size(1 << 20).expect("window");
            let _ = connection.await;
        });
        let mut client = client.ready().await.expect("ready");
        let request = http::Request::get(fd.url(&format!("/big/{len}")))
            .body(())
            .expect("request");
        let (response, _) = client.send_request(request, true).expect("send");
        let response = response.await.expect("response");
        assert_eq!(response.status(), 200);
        assert!(
            eventually(Duration::from_secs(30), || origin.finished()
                == i as u64 + 1)
            .await,
            "the app could not finish its {len}-byte answer"
        );
        // The slot is free although the client has none of the body yet.
        let (status, _, body) = tokio::time::timeout(
            Duration::from_secs(10),
            fetch(&fd.client(), &fd.url("/small"), &[]),
        )
        .await
        .unwrap_or_else(|_| panic!("the {len}-byte answer still held the slot"));
        assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
        // The client opens its window: every byte arrives, in order.
        open.send(()).expect("connection task");
        let mut body = response.into_body();
        let mut got = Vec::new();
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.data())
            .await
            .expect("the body moves once the window is open")
        {
            let chunk = chunk.expect("chunk");
            let _ = body.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got.len(), len);
        assert!(is_pattern(&got), "the body came through intact");
    }
}
