use super::*;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

fn head(content_type: &str) -> HttpTask {
    let mut head = ResponseHeader::build(200, None).unwrap();
    head.insert_header("content-type", content_type).unwrap();
    HttpTask::Header(Box::new(head), false)
}

/// 64 KiB chunks of a pattern that shows any reordering.
fn chunk(i: usize) -> Bytes {
    Bytes::from(vec![(i % 251) as u8; 64 << 10])
}

struct Setup {
    buffers: Arc<Buffers>,
    upstream: mpsc::Sender<HttpTask>,
    downstream: mpsc::Receiver<HttpTask>,
    complete: Arc<AtomicBool>,
}

fn setup(settings: Settings) -> Setup {
    let buffers = Arc::new(Buffers::new(settings, Arc::new(Metrics::new().unwrap())));
    // Pingora's channel between the upstream half and the relay.
    let (upstream, from_upstream) = mpsc::channel(4);
    let complete = Arc::new(AtomicBool::new(false));
    let done = complete.clone();
    let (downstream, relay) = buffers.relay(from_upstream, move || {
        done.store(true, Ordering::SeqCst);
    });
    // Pingora joins the relay with its two halves; here it runs on its own.
    tokio::spawn(relay);
    Setup {
        buffers,
        upstream,
        downstream,
        complete,
    }
}

/// Sends `tasks` as the upstream half does; whether all went within a second.
async fn send_all(upstream: &mpsc::Sender<HttpTask>, tasks: Vec<HttpTask>) -> bool {
    tokio::time::timeout(Duration::from_secs(1), async {
        for task in tasks {
            upstream.send(task).await.unwrap();
        }
    })
    .await
    .is_ok()
}

/// Reads the downstream side to its end: the body, and whether a `Failed` came last.
async fn drain(downstream: &mut mpsc::Receiver<HttpTask>) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    let mut failed = false;
    while let Some(task) = downstream.recv().await {
        match task {
            HttpTask::Body(Some(data), _) => body.extend_from_slice(&data),
            HttpTask::Failed(_) => failed = true,
            _ => {}
        }
    }
    (body, failed)
}

fn answer(chunks: usize) -> (Vec<HttpTask>, Vec<u8>) {
    let mut tasks = vec![head("application/octet-stream")];
    let mut expected = Vec::new();
    for i in 0..chunks {
        expected.extend_from_slice(&chunk(i));
        tasks.push(HttpTask::Body(Some(chunk(i)), i + 1 == chunks));
    }
    (tasks, expected)
}

#[tokio::test]
async fn the_whole_answer_is_taken_while_the_client_reads_nothing() {
    let mut s = setup(Settings::default());
    // 3 MiB: 1 MiB in memory, the rest in the file.
    let (tasks, expected) = answer(48);
    assert!(send_all(&s.upstream, tasks).await, "the app was held back");
    drop(s.upstream);
    for _ in 0..500 {
        if s.complete.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.complete.load(Ordering::SeqCst), "the slot is let go");
    assert_eq!(s.buffers.in_memory(), MEMORY_PER_RESPONSE);
    let (body, failed) = drain(&mut s.downstream).await;
    assert!(!failed);
    assert_eq!(body, expected, "every byte, in order");
    assert_eq!(s.buffers.in_memory(), 0);
}

#[tokio::test]
async fn a_page_the_client_has_room_for_goes_straight_through() {
    let mut s = setup(Settings::default());
    // Head, body, end: what the downstream half's channel takes at once.
    let (tasks, expected) = answer(2);
    assert!(send_all(&s.upstream, tasks).await);
    // Complete before the client has read anything; the upstream half need not close first.
    for _ in 0..500 {
        if s.complete.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.complete.load(Ordering::SeqCst), "the slot is let go");
    // Nothing waits in the buffers: the tasks are with the downstream half already.
    assert_eq!(s.buffers.in_memory(), 0);
    let (body, failed) = drain(&mut s.downstream).await;
    assert!(!failed);
    assert_eq!(body, expected);
}

#[tokio::test]
async fn an_event_stream_goes_at_the_clients_pace() {
    let mut s = setup(Settings::default());
    let mut tasks = vec![head("text/event-stream; charset=utf-8")];
    tasks.extend((0..32).map(|i| HttpTask::Body(Some(chunk(i)), false)));
    let sender = s.upstream.clone();
    let sending = tokio::spawn(async move { send_all(&sender, tasks).await });
    assert!(!sending.await.unwrap(), "the stream was read ahead");
    assert!(!s.complete.load(Ordering::SeqCst));
    // A few tasks at most wait between the app and the client.
    assert!(s.buffers.in_memory() <= 2 * (64 << 10));
    let draining = tokio::spawn(async move { drain(&mut s.downstream).await });
    assert!(send_all(&s.upstream, vec![HttpTask::Body(None, true)]).await);
    drop(s.upstream);
    let (body, _) = draining.await.unwrap();
    assert!(!body.is_empty());
    assert!(s.complete.load(Ordering::SeqCst));
}

#[tokio::test]
async fn without_a_file_the_app_waits_once_memory_is_full() {
    let mut s = setup(Settings {
        memory: 256 << 10,
        file: 0,
    });
    let (tasks, expected) = answer(32);
    let sender = s.upstream.clone();
    let sending = tokio::spawn(async move { send_all(&sender, tasks).await });
    assert!(!sending.await.unwrap(), "2 MiB held in 256 KiB");
    assert!(s.buffers.in_memory() <= (256 << 10) + (64 << 10));
    drop(s.upstream);
    let (body, _) = drain(&mut s.downstream).await;
    // The sends that timed out were dropped with their task: what came through is a prefix.
    assert!(!body.is_empty() && expected.starts_with(&body));
    assert!(!s.complete.load(Ordering::SeqCst));
    assert_eq!(s.buffers.in_memory(), 0);
}

#[tokio::test]
async fn a_failed_answer_is_passed_on_and_keeps_the_slot() {
    let mut s = setup(Settings::default());
    let tasks = vec![
        head("text/html"),
        HttpTask::Body(Some(chunk(0)), false),
        HttpTask::Failed(pingora::Error::new_up(pingora::ErrorType::ReadError)),
    ];
    assert!(send_all(&s.upstream, tasks).await);
    drop(s.upstream);
    let (body, failed) = drain(&mut s.downstream).await;
    assert_eq!(body, chunk(0));
    assert!(failed, "the failure comes last");
    assert!(!s.complete.load(Ordering::SeqCst), "a retry keeps the slot");
}

#[test]
fn upgrades_event_streams_and_opt_outs_are_not_read_ahead() {
    let with = |status: u16, fields: &[(&str, &str)]| {
        let mut head = ResponseHeader::build(status, None).unwrap();
        for (name, value) in fields {
            head.insert_header(name.to_string(), *value).unwrap();
        }
        read_ahead(&head)
    };
    assert!(with(200, &[("content-type", "text/html")]));
    assert!(with(200, &[("x-accel-buffering", "yes")]));
    assert!(!with(101, &[("upgrade", "websocket")]));
    assert!(!with(
        200,
        &[("content-type", "Text/Event-Stream ; charset=utf-8")]
    ));
    assert!(!with(200, &[("x-accel-buffering", "no")]));
}
