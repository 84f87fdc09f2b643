//! Every HTTP/1.1 answer either keeps its connection for the next request or says
//! `Connection: close` and closes it. A client reuses a connection whose last answer said
//! `keep-alive`; closing it anyway loses the client's next request on it (Node's fetch fails
//! with "other side closed", and browsers retry only some requests). The public cache test
//! suite found it on the 502 after an app dropped a request: its next test's request, sent on
//! the same connection three seconds later, failed.

use crate::common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Routes on the raw origin: `/plain/…` proxied, `/timeout/…` with a 100 ms read timeout,
/// `/streamed/…` not buffered, `/sie/…` and `/strict/…` edge-cached (with and without a
/// `stale-if-error` default). Bodies over 16 bytes are refused, a body read waits 300 ms.
fn config(origin: std::net::SocketAddr) -> String {
    format!(
        r#"
[proxy]
max-body = "16B"
body-timeout = "300ms"

[pools.app]
backends = ["{origin}"]
connect-timeout = "500ms"
read-timeout = "5s"

[pools.impatient]
backends = ["{origin}"]
connect-timeout = "500ms"
read-timeout = "100ms"

[[routes]]
name = "plain"
path = "/plain/{{rest*}}"
pool = "app"

[[routes]]
name = "timeout"
path = "/timeout/{{rest*}}"
pool = "impatient"

[[routes]]
name = "streamed"
path = "/streamed/{{rest*}}"
pool = "app"
request-buffering = false

[[routes]]
name = "sie"
path = "/sie/{{rest*}}"
pool = "app"
[routes.cache]
stale-if-error = "60s"

[[routes]]
name = "strict"
path = "/strict/{{rest*}}"
pool = "app"
[routes.cache]
"#
    )
}

/// One answer read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// The head says `Connection: close`.
    says_close: bool,
}

/// Reads one answer (its head and its `Content-Length` body); `None` when the connection
/// ended first.
async fn read_answer(raw: &mut TlsStream<TcpStream>) -> Option<Answer> {
    let mut bytes = Vec::new();
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 4096];
        match raw.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let field = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
            .map(str::to_string)
    };
    let length: usize = field("content-length")
        .unwrap_or_else(|| panic!("no content-length: {head}"))
        .parse()
        .expect("length");
    while bytes.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        match raw.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
    let says_close = field("connection").is_some_and(|v| v == "close");
    Some(Answer { status, says_close })
}

/// Whether the connection ends (EOF, with or without a TLS close_notify) within 5 s.
async fn ends(raw: &mut TlsStream<TcpStream>) -> bool {
    let mut rest = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await {
        Ok(Ok(_)) => rest.is_empty(),
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::UnexpectedEof && rest.is_empty(),
        Err(_) => false,
    }
}

/// Sends `request` on a new connection and checks what follows its answer: a `keep-alive` answer is followed by a working connection (a next request,
/// sent a moment later as a pooled client would, is answered), a `close` one by its end.
async fn check(fd: &Frontdoor, what: &str, request: &[u8]) -> Answer {
    let mut raw = fd.raw_h1().await;
    raw.write_all(request).await.expect("write");
    let answer = tokio::time::timeout(Duration::from_secs(10), read_answer(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer in 10 s"))
        .unwrap_or_else(|| panic!("{what}: the connection ended without an answer"));
    if answer.says_close {
        assert!(
            ends(&mut raw).await,
            "{what}: {answer:?} but the connection stays open"
        );
        return answer;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let next = raw
        .write_all(b"GET /plain/next HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let next = match next {
        Ok(()) => read_answer(&mut raw).await,
        Err(_) => None,
    };
    let next = next.unwrap_or_else(|| {
        panic!("{what}: {answer:?} said keep-alive, but the next request on it was lost")
    });
    assert_eq!(next.status, 200, "{what}: the next request");
    answer
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_keeps_its_connection_or_says_connection_close() {
    let origin = RawOrigin::start().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &config(origin.addr))).await;

    // (what, request, expected status, the answer closes its connection)
    let chunked = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        )
        .into_bytes()
    };
    let too_long = format!("{:x}\r\n{}\r\n0\r\n\r\n", 40, "x".repeat(40));
    let cases: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        ("a proxied answer", get("/plain/a"), 200, false),
        ("no route", get("/nowhere"), 404, false),
        ("the app dropped the request", get("/plain/drop"), 502, true),
        ("the app was too slow", get("/timeout/slow"), 504, true),
        (
            "a declared body over max-body",
            b"POST /plain/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 40\r\n\r\n".to_vec(),
            413,
            true,
        ),
        (
            "a buffered chunked body over max-body",
            chunked("/plain/a", &too_long),
            413,
            true,
        ),
        (
            "a streamed chunked body over max-body",
            chunked("/streamed/a", &too_long),
            413,
            true,
        ),
        (
            "a malformed chunk",
            chunked("/plain/a", "zz\r\nx\r\n0\r\n\r\n"),
            400,
            true,
        ),
        (
            "a stalled body",
            b"POST /plain/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nab".to_vec(),
            408,
            true,
        ),
        ("a refused path", get("/plain/a%2Fb"), 400, true),
        (
            "a head no parser accepts",
            b"GET /plain/a HTTP/1.1\r\nHost: localhost\r\nNo colon here\r\n\r\n".to_vec(),
            400,
            true,
        ),
        (
            "two lengths",
            b"POST /plain/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
                .to_vec(),
            400,
            true,
        ),
    ];
    for (what, request, status, closes) in cases {
        let answer = check(&fd, what, &request).await;
        assert_eq!(
            (answer.status, answer.says_close),
            (status, closes),
            "{what}"
        );
    }

    // The edge cache: a stored answer goes stale (max-age=1), then the app drops every request
    // for it. With stale-if-error the stale copy is the answer and the connection stays; without
    // it the 502 closes it, and says so.
    for path in ["/sie/cached/x", "/strict/cached/x"] {
        assert_eq!(check(&fd, "a fill", &get(path)).await.status, 200);
        assert_eq!(check(&fd, "a hit", &get(path)).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.drop_from_now("/sie/cached/x");
    origin.drop_from_now("/strict/cached/x");
    let stale = check(&fd, "stale if error", &get("/sie/cached/x")).await;
    assert_eq!((stale.status, stale.says_close), (200, false));
    let failed = check(&fd, "no stale copy allowed", &get("/strict/cached/x")).await;
    assert_eq!((failed.status, failed.says_close), (502, true));
}
