//! HTTP/2 abuse: rapid reset, SETTINGS and PING floods, streams over the limit, CONTINUATION
//! floods. Each attack runs on its own connection while a bystander client keeps fetching on
//! another; frontdoor runs one worker thread, so both share it. The attacker's requests go to
//! their own counting origin, so the tests see how many of them reached the app.
//! CPU during each attack is measured by `benches/h2abuse.sh`, not here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::common::h2wire::{self, frame};
use crate::common::*;

/// frontdoor with `/attack/...` routed to the `attacked` origin and everything else to `app`.
struct Scene {
    attacked: ScriptedOrigin,
    _app: ScriptedOrigin,
    fd: Frontdoor,
}

impl Scene {
    async fn start(attacked: OriginReply, extra: &str) -> Scene {
        let attacked = ScriptedOrigin::start(attacked).await;
        let app = ScriptedOrigin::start(OriginReply::ok("ok", &[])).await;
        let ports = Ports::new();
        let rest = format!(
            r#"{extra}
{pools}
[[routes]]
name = "attack"
path = "/attack/{{rest*}}"
pool = "a"

[[routes]]
name = "rest"
path = "/{{rest*}}"
pool = "b"
"#,
            pools = pools_a_b(attacked.addr, app.addr)
        );
        let fd = Frontdoor::start(ports, &config_text(ports, &rest)).await;
        Scene {
            attacked,
            _app: app,
            fd,
        }
    }

    /// The default scene, and a bystander that has been served once.
    async fn with_bystander() -> (Scene, Bystander) {
        let scene = Scene::start(OriginReply::ok("attacked", &[]), "").await;
        let bystander = Bystander::start(&scene.fd);
        bystander.served(1).await;
        (scene, bystander)
    }
}

fn https_addr(fd: &Frontdoor) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], fd.ports.https))
}

/// Another client fetching over its own HTTP/2 connection until stopped.
struct Bystander {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Bystander {
    fn start(fd: &Frontdoor) -> Bystander {
        let (client, url) = (fd.client(), fd.url("/bystander"));
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let (stopped, counted) = (stop.clone(), ok.clone());
        let task = tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 && r.version() == reqwest::Version::HTTP_2 => {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => failures.push(format!("status {} {:?}", r.status(), r.version())),
                    Err(e) => failures.push(format!("{e:?}")),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failures
        });
        Bystander { stop, ok, task }
    }

    /// Waits until `more` further requests succeeded (the bystander is being served now).
    async fn served(&self, more: u64) {
        let target = self.ok.load(Ordering::SeqCst) + more;
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.ok.load(Ordering::SeqCst) < target {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the bystander is served while the attack runs");
    }

    /// Stops; every request it made succeeded, and there were some.
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let failures = self.task.await.expect("bystander task");
        let ok = self.ok.load(Ordering::SeqCst);
        assert!(failures.is_empty(), "bystander failures: {failures:?}");
        assert!(ok > 0, "the bystander made no request");
        ok
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_goaway_and_the_app_sees_few_of_the_requests() {
    const CONNECTIONS: usize = 5;
    const STREAMS_PER_CONNECTION: usize = 2_000;
    let (Scene { attacked, fd, _app }, bystander) = Scene::with_bystander().await;

    let mut opened = 0;
    for _ in 0..CONNECTIONS {
        let tls = h2wire::connect_h2(https_addr(&fd), &fd.ca.pem()).await;
        let (mut client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
        let connection = tokio::spawn(connection);
        // HEADERS then RST_STREAM(CANCEL) at once, as fast as the library lets us.
        for n in 0..STREAMS_PER_CONNECTION {
            client = match client.ready().await {
                Ok(ready) => ready,
                Err(_) => break,
            };
            let request = http::Request::get(fd.url(&format!("/attack/{n}")))
                .body(())
                .expect("request");
            let Ok((_response, mut stream)) = client.send_request(request, false) else {
                break;
            };
            stream.send_reset(h2::Reason::CANCEL);
            opened += 1;
        }
        let ended = tokio::time::timeout(Duration::from_secs(10), connection)
            .await
            .expect("frontdoor closes the attacking connection")
            .expect("connection task");
        let error = ended.expect_err("the connection ends in an error, not cleanly");
        // GOAWAY(ENHANCE_YOUR_CALM); when the client is still writing as the server closes,
        // the library may see the closed socket before it reads the GOAWAY. (How many streams
        // the library took before that depends on scheduling: it buffers them.)
        assert!(
            (error.is_go_away() && error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM))
                || error.is_io(),
            "{error:?}"
        );
    }
    bystander.served(5).await;
    bystander.finish().await;
    let reached = attacked.hits();
    // Each connection is cut off after a handful of reset streams: the app sees a bounded
    // number of requests, not thousands.
    assert!(
        reached <= 50 * CONNECTIONS as u64,
        "{reached} of {opened} reset requests reached the app"
    );
}

/// How a flood of frames nobody reads the answers to ended.
#[derive(Debug, PartialEq)]
enum Flood {
    /// Every frame was written: the server read them all.
    Completed,
    /// Writing stopped making progress: the server stopped reading.
    Stalled,
    /// The server closed the connection.
    Closed,
}

/// Writes `count` copies of `one` after the handshake, never reading; returns how it ended,
/// how many frames were written, and the connection (left open while the caller checks on
/// the others).
async fn flood_without_reading(
    fd: &Frontdoor,
    one: &[u8],
    count: usize,
) -> (Flood, usize, impl Sized) {
    const BATCH: usize = 1_000;
    let mut tls = h2wire::handshake_h2(https_addr(fd), &fd.ca.pem()).await;
    let batch = one.repeat(BATCH);
    let mut written = 0;
    let ending = loop {
        if written >= count {
            break Flood::Completed;
        }
        match tokio::time::timeout(Duration::from_secs(3), tls.write_all(&batch)).await {
            Err(_) => break Flood::Stalled,
            Ok(Err(_)) => break Flood::Closed,
            Ok(Ok(())) => written += BATCH,
        }
    };
    (ending, written, tls)
}

/// A flood of `one` (2 million frames, tens of MB of answers) neither completes nor grows
/// frontdoor's memory, and the bystander is served during and after it.
async fn flood_is_bounded(one: Vec<u8>) {
    const FRAMES: usize = 2_000_000;
    let (
        Scene {
            fd,
            attacked: _attacked,
            _app,
        },
        bystander,
    ) = Scene::with_bystander().await;
    let rss_before = fd.rss_kib();
    let (ending, written, _open) = flood_without_reading(&fd, &one, FRAMES).await;
    bystander.served(5).await;
    let grown_mib = fd.rss_kib().saturating_sub(rss_before) / 1024;
    bystander.finish().await;
    assert_ne!(
        ending,
        Flood::Completed,
        "frontdoor read all {written} frames while their answers went unread"
    );
    assert!(
        grown_mib < 32,
        "RSS grew by {grown_mib} MiB during the flood"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_without_reading_is_bounded() {
    flood_is_bounded(frame(h2wire::PING, 0, 0, b"flooding")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_flood_without_reading_is_bounded() {
    // SETTINGS_ENABLE_PUSH = 0: harmless, but each frame must be applied and acknowledged.
    flood_is_bounded(frame(h2wire::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 0])).await;
}

/// Frames the reading flood offers: 17 MB, far more than loopback socket buffers hold, so a
/// writer that gets them all out was answered (not merely buffered) on a slow, loaded machine.
const READING_FLOOD: usize = 1_000_000;

/// Sends `one` as fast as possible while reading every answer (the flood that costs the server
/// most); returns how many frames were written before frontdoor hung up.
async fn flood_while_reading(fd: &Frontdoor, one: &[u8]) -> usize {
    const FRAMES: usize = READING_FLOOD;
    let tls = h2wire::handshake_h2(https_addr(fd), &fd.ca.pem()).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let batch = one.repeat(100);
    let writing = tokio::spawn(async move {
        let mut sent = 0;
        while sent < FRAMES {
            if writer.write_all(&batch).await.is_err() {
                break;
            }
            sent += 100;
        }
        sent
    });
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(_)) = h2wire::read_frame(&mut reader).await {}
    })
    .await
    .expect("frontdoor closes the connection");
    writing.await.expect("writer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_frame_floods_that_read_their_answers_are_cut_off() {
    let (Scene { fd, attacked, _app }, bystander) = Scene::with_bystander().await;
    let ping = frame(h2wire::PING, 0, 0, b"flooding");
    let settings = frame(h2wire::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 0]);
    for (n, one) in [ping, settings].iter().enumerate() {
        let sent = flood_while_reading(&fd, one).await;
        assert!(sent < READING_FLOOD, "frontdoor answered all {sent} frames");
        let sample = "frontdoor_rejected_requests_total{reason=\"h2_flood\"}";
        assert_eq!(fd.wait_metric(sample, n as f64 + 1.0).await, n as f64 + 1.0);
    }
    bystander.served(5).await;
    bystander.finish().await;
    assert_eq!(attacked.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_the_limit_are_refused_at_once_not_queued() {
    const STREAMS: u32 = 300;
    const LIMIT: u32 = 128;
    let slow = OriginReply {
        delay: Duration::from_secs(2),
        ..OriginReply::ok("slow", &[])
    };
    let Scene { attacked, fd, _app } = Scene::start(slow, "").await;
    let mut tls = h2wire::handshake_h2(https_addr(&fd), &fd.ca.pem()).await;
    let authority = format!("localhost:{}", fd.ports.https);
    let burst: Vec<u8> = (0..STREAMS)
        .flat_map(|n| {
            let block = h2wire::get_request(&authority, &format!("/attack/{n}"));
            frame(
                h2wire::HEADERS,
                h2wire::END_STREAM | h2wire::END_HEADERS,
                2 * n + 1,
                &block,
            )
        })
        .collect();
    tls.write_all(&burst).await.expect("burst");

    let (mut refused, mut answered) = (0u32, 0u32);
    let mut refused_after_an_answer = 0;
    let mut goaway = None;
    let read_all = tokio::time::timeout(Duration::from_secs(20), async {
        while refused + answered < STREAMS {
            let Some(f) = h2wire::read_frame(&mut tls).await.expect("read") else {
                break;
            };
            match (f.kind, f.reason()) {
                (h2wire::RST_STREAM, Some(h2::Reason::REFUSED_STREAM)) => {
                    refused += 1;
                    if answered > 0 {
                        refused_after_an_answer += 1;
                    }
                }
                (h2wire::RST_STREAM, other) => panic!("stream {} reset: {other:?}", f.stream),
                (h2wire::HEADERS, _) => answered += 1,
                (h2wire::GOAWAY, reason) => {
                    goaway = reason;
                    break;
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(read_all.is_ok(), "refused {refused}, answered {answered}");
    assert_eq!(goaway, None);
    assert_eq!((refused, answered), (STREAMS - LIMIT, LIMIT));
    // Refusals went out before the first answer (the origin takes 2 s): nothing was queued.
    assert_eq!(refused_after_an_answer, 0);
    assert_eq!(attacked.hits(), u64::from(LIMIT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_limit_is_a_config_key() {
    let extra = "[proxy]\nh2-max-concurrent-streams = 10\n";
    let Scene {
        fd,
        attacked: _attacked,
        _app,
    } = Scene::start(OriginReply::ok("ok", &[]), extra).await;
    let tls = h2wire::connect_h2(https_addr(&fd), &fd.ca.pem()).await;
    let (client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(connection);
    // A well-behaved client reads the limit from SETTINGS (with the first answer at the
    // latest) and stays under it.
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::get(fd.url("/bystander"))
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    assert_eq!(response.await.expect("response").status(), 200);
    assert_eq!(client.current_max_send_streams(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_off() {
    const FRAMES: usize = 100_000;
    let (Scene { attacked, fd, _app }, bystander) = Scene::with_bystander().await;
    let tls = h2wire::handshake_h2(https_addr(&fd), &fd.ca.pem()).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let authority = format!("localhost:{}", fd.ports.https);
    // A header block that never ends (CVE-2024-27316): HEADERS without END_HEADERS, then
    // CONTINUATION frames without it, each one empty so that no size limit is reached.
    let writing = tokio::spawn(async move {
        let block = h2wire::get_request(&authority, "/attack/continued");
        let mut sent = 0;
        if writer
            .write_all(&frame(h2wire::HEADERS, h2wire::END_STREAM, 1, &block))
            .await
            .is_err()
        {
            return sent;
        }
        let batch = frame(h2wire::CONTINUATION, 0, 1, &[]).repeat(1_000);
        while sent < FRAMES {
            if writer.write_all(&batch).await.is_err() {
                break;
            }
            sent += 1_000;
        }
        sent
    });
    let mut goaway = None;
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(f)) = h2wire::read_frame(&mut reader).await {
            if f.kind == h2wire::GOAWAY {
                goaway = f.reason();
            }
        }
    })
    .await
    .expect("frontdoor closes the connection");
    let sent = writing.await.expect("writer");
    assert_eq!(
        goaway,
        Some(h2::Reason::ENHANCE_YOUR_CALM),
        "after {sent} frames"
    );
    bystander.served(5).await;
    bystander.finish().await;
    assert_eq!(attacked.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_lists_over_the_limit_get_431_and_never_reach_the_app() {
    let extra = "[proxy]\nh2-max-header-list-size = \"8KiB\"\n";
    let Scene { attacked, fd, _app } = Scene::start(OriginReply::ok("ok", &[]), extra).await;
    let tls = h2wire::connect_h2(https_addr(&fd), &fd.ca.pem()).await;
    let (client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let get = |size: usize| {
        http::Request::get(fd.url("/attack/headers"))
            .header("x-filler", "a".repeat(size))
            .body(())
            .expect("request")
    };
    // A small request first, so that the client has the server's SETTINGS.
    let (small, _) = client.send_request(get(100), true).expect("send");
    assert_eq!(small.await.expect("small").status(), 200);
    assert_eq!(attacked.hits(), 1);
    // 10 KiB: under Pingora's default of 64 KiB, over the configured 8 KiB.
    let mut client = client.ready().await.expect("ready");
    let (large, _) = client.send_request(get(10 * 1024), true).expect("send");
    assert_eq!(large.await.expect("large").status(), 431);
    assert_eq!(attacked.hits(), 1);
}
