//! Hostile HTTP: smuggling attempts, limits, slow clients, path tricks and forged fields,
//! sent as raw bytes over real TLS, with an app that records exactly what reached it.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// Writes `request` on a fresh HTTP/1.1 TLS connection and reads until frontdoor closes it
/// (every refusal closes the connection); returns what came back.
async fn exchange(fd: &Frontdoor, request: &[u8]) -> String {
    let mut stream = fd.raw_h1().await;
    // A refusal may close the connection before the whole request is written.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status of a raw answer, 0 when the connection closed without one.
fn status(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn access_log(fd: &Frontdoor) -> String {
    std::fs::read_to_string(fd.dir.path().join("access.log")).unwrap_or_default()
}

/// Waits (up to 10 s) until the access log has `at_least` lines containing `needle`.
async fn wait_log_lines(fd: &Frontdoor, needle: &str, at_least: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let count = access_log(fd)
            .lines()
            .filter(|l| l.contains(needle))
            .count();
        if count >= at_least || std::time::Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A request smuggled inside another's body: it must never reach the app as a request.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";

fn post(fields: &str, body: &str) -> Vec<u8> {
    format!("POST /form HTTP/1.1\r\nHost: localhost\r\n{fields}\r\n{body}").into_bytes()
}

async fn recording_frontdoor(proxy: &str, extra_routes: &str) -> (RecordingOrigin, Frontdoor) {
    let app = RecordingOrigin::start().await;
    let ports = Ports::new();
    let rest = format!(
        "\n[proxy]\n{proxy}\n{extra_routes}\n{}",
        one_pool(&[app.addr])
    );
    let fd = Frontdoor::start(ports, &config_text(ports, &rest)).await;
    (app, fd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_are_refused_before_the_app_sees_a_byte() {
    let (app, fd) = recording_frontdoor("", "").await;

    // The control: one well-formed chunked request arrives once, as one request.
    let ok = exchange(
        &fd,
        &post(
            "Transfer-Encoding: chunked\r\nConnection: close\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
        ),
    )
    .await;
    assert_eq!(status(&ok), 200, "{ok}");
    assert_eq!(app.request_lines(), ["POST /form HTTP/1.1"]);
    let forwarded_before = app.bytes().len();

    let framing = format!("0\r\n\r\n{SMUGGLED}");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "CL then TE",
            post("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", &framing),
        ),
        (
            "TE then CL",
            post("Transfer-Encoding: chunked\r\nContent-Length: 48\r\n", &framing),
        ),
        (
            "differing CLs",
            post("Content-Length: 5\r\nContent-Length: 48\r\n", &framing),
        ),
        (
            "CL list",
            post("Content-Length: 5, 48\r\n", &framing),
        ),
        (
            "CL not a number",
            post("Content-Length: +5\r\n", &framing),
        ),
        (
            "chunked not last",
            post("Transfer-Encoding: chunked, identity\r\n", &framing),
        ),
        (
            "identity before chunked",
            post("Transfer-Encoding: identity, chunked\r\n", &framing),
        ),
        ("xchunked", post("Transfer-Encoding: xchunked\r\n", &framing)),
        (
            "TE twice",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                &framing,
            ),
        ),
        (
            "TE with a vertical tab",
            post("Transfer-Encoding:\x0bchunked\r\n", &framing),
        ),
        (
            "space before colon",
            post("Transfer-Encoding : chunked\r\n", &framing),
        ),
        (
            "obsolete line folding",
            post("X-Note: a\r\n Transfer-Encoding: chunked\r\n", &framing),
        ),
        (
            "folded TE value",
            post("Transfer-Encoding: identity\r\n chunked\r\n", &framing),
        ),
        (
            "bare CR",
            post("X-Note: a\rTransfer-Encoding: chunked\r\n", &framing),
        ),
        (
            "bare LF",
            post("X-Note: a\nTransfer-Encoding: chunked\r\n", &framing),
        ),
        ("NUL in a value", post("X-Note: a\0b\r\nContent-Length: 0\r\n", "")),
        (
            "Host twice",
            b"GET /form HTTP/1.1\r\nHost: localhost\r\nHost: admin.internal\r\n\r\n".to_vec(),
        ),
        (
            "absolute form naming another host",
            b"GET http://admin.internal/form HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ),
        (
            "TE on HTTP/1.0",
            format!(
                "POST /form HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{framing}"
            )
            .into_bytes(),
        ),
    ];
    for (name, request) in &cases {
        let answer = exchange(&fd, request).await;
        assert!(
            matches!(status(&answer), 400 | 0),
            "{name}: answered {answer:?}"
        );
        assert_eq!(
            app.bytes().len(),
            forwarded_before,
            "{name}: the app received {:?}",
            app.text()
        );
    }

    // Every refusal is counted (ours as `framing`, Pingora's own as `malformed`) and logged.
    let ours = fd
        .wait_metric("frontdoor_rejected_requests_total{reason=\"framing\"}", 5.0)
        .await;
    assert_eq!(
        ours, 5.0,
        "CL+TE both orders, identity-then-chunked, TE twice, bare LF"
    );
    let total = cases.len() as f64;
    let pingoras = fd
        .wait_metric(
            "frontdoor_rejected_requests_total{reason=\"malformed\"}",
            total - ours,
        )
        .await;
    assert_eq!(ours + pingoras, total);
    assert_eq!(
        wait_log_lines(&fd, "status=400", cases.len()).await,
        cases.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunk_sizes_never_smuggle_a_request() {
    let (app, fd) = recording_frontdoor("", "").await;
    for (name, size) in [
        ("not hex", "zz"),
        ("negative", "-1"),
        ("overflowing", "10000000000000000000000"),
        ("hex prefix", "0x5"),
    ] {
        let request = post(
            "Transfer-Encoding: chunked\r\n",
            &format!("{size}\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
        );
        let answer = exchange(&fd, &request).await;
        assert!(
            matches!(status(&answer), 400 | 0),
            "{name}: answered {answer:?}"
        );
    }
    // The head may have gone on before the body went bad; the app saw it cut short, and
    // nothing that follows as a request.
    assert!(
        app.request_lines()
            .iter()
            .all(|l| l == "POST /form HTTP/1.1"),
        "{:?}",
        app.request_lines()
    );
    assert!(!app.text().contains("smuggled"), "{}", app.text());
    let sample = "frontdoor_rejected_requests_total{reason=\"malformed\"}";
    assert_eq!(fd.wait_metric(sample, 4.0).await, 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_431_414_and_413_and_keep_the_app_out() {
    let proxy = "max-header-bytes = \"2KiB\"\nmax-headers = 20\nmax-uri-bytes = \"1KiB\"";
    let upload = "\n[[routes]]\nname = \"upload\"\npath = \"/upload\"\npool = \"app\"\nmax-body = \"1KiB\"\n";
    let (app, fd) = recording_frontdoor(proxy, upload).await;
    let client = fd.client();

    let big = "a".repeat(3000);
    let response = client
        .get(fd.url("/big"))
        .header("x-big", &big)
        .send()
        .await;
    assert_eq!(response.expect("big header").status(), 431);
    let mut many = client.get(fd.url("/many"));
    for i in 0..30 {
        many = many.header(format!("x-field-{i}"), "1");
    }
    assert_eq!(many.send().await.expect("many").status(), 431);
    let long = format!("/{}", "a".repeat(2000));
    let response = client.get(fd.url(&long)).send().await.expect("long");
    assert_eq!(response.status(), 414);

    // HTTP/1.1 too, and past Pingora's own cap of 256 fields (its 400).
    let head = format!("GET /big HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n");
    assert_eq!(status(&exchange(&fd, head.as_bytes()).await), 431);
    let fields: String = (0..300).map(|i| format!("X-F{i}: 1\r\n")).collect();
    let head = format!("GET /many HTTP/1.1\r\nHost: localhost\r\n{fields}\r\n");
    assert_eq!(status(&exchange(&fd, head.as_bytes()).await), 400);

    // A declared body over the route's limit, and one under the default limit elsewhere.
    let body = vec![b'x'; 2048];
    let response = client
        .post(fd.url("/upload"))
        .body(body.clone())
        .send()
        .await;
    assert_eq!(response.expect("upload").status(), 413);
    let response = client.post(fd.url("/other")).body(body).send().await;
    assert_eq!(response.expect("other").status(), 200);
    assert_eq!(app.request_lines(), ["POST /other HTTP/1.1"]);

    // A chunked body declares nothing: it is counted as it streams.
    let chunk = format!("200\r\n{}\r\n", "y".repeat(512));
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
        chunk.repeat(4)
    );
    let answer = exchange(&fd, request.as_bytes()).await;
    assert_eq!(status(&answer), 413, "{answer}");
    let forwarded = app.text();
    assert!(
        forwarded.matches('y').count() <= 1024,
        "more than the limit reached the app"
    );

    for (reason, count) in [
        ("header_too_large", 2.0),
        ("too_many_headers", 1.0),
        ("uri_too_long", 1.0),
        ("body_too_large", 2.0),
        ("malformed", 1.0),
    ] {
        let sample = format!("frontdoor_rejected_requests_total{{reason=\"{reason}\"}}");
        assert_eq!(fd.wait_metric(&sample, count).await, count, "{reason}");
    }
    assert_eq!(wait_log_lines(&fd, "status=431", 3).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_hold_no_slot_and_are_closed_after_the_header_timeout() {
    let app = RecordingOrigin::start().await;
    let ports = Ports::new();
    let rest = format!(
        r#"
[proxy]
header-timeout = "8s"

[pools.app]
backends = ["{}"]
[pools.app.admission]
slots = 1
queue-length = 1

[[routes]]
name = "all"
path = "/{{rest*}}"
pool = "app"
"#,
        app.addr
    );
    let fd = Frontdoor::start(ports, &config_text(ports, &rest)).await;

    // Twenty clients each send a head a field every 200 ms, never finishing it.
    let slow = 20;
    let mut tasks = Vec::new();
    for _ in 0..slow {
        let mut stream = fd.raw_h1().await;
        tasks.push(tokio::spawn(async move {
            let _ = stream
                .write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n")
                .await;
            for i in 0.. {
                let field = format!("X-Drip-{i}: 1\r\n");
                if stream.write_all(field.as_bytes()).await.is_err() {
                    break;
                }
                let mut byte = [0u8; 1];
                match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await
                {
                    Ok(Ok(0) | Err(_)) => break,
                    Ok(Ok(_)) => panic!("a slow head got an answer"),
                    Err(_) => {}
                }
            }
        }));
    }
    // And one on the plain-HTTP listener, which only redirects.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", fd.ports.http))
        .await
        .expect("connect http");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile a normal request takes the one slot and is answered.
    let response = fd
        .client()
        .get(fd.url("/normal"))
        .send()
        .await
        .expect("normal");
    assert_eq!(response.status(), 200);
    assert!(
        tasks.iter().all(|t| !t.is_finished()),
        "the slow heads were cut before the normal request was served"
    );

    // Every slow head is closed by frontdoor (the tasks end on EOF or a reset), counted,
    // and logged as a 408; none reached the app.
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("a slow head was never closed")
            .expect("slow client");
    }
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), plain.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the slow head on the plain-HTTP listener was never closed"
    );
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    let sample = "frontdoor_rejected_requests_total{reason=\"header_timeout\"}";
    let cut = slow + 1;
    assert_eq!(fd.wait_metric(sample, cut as f64).await, cut as f64);
    assert_eq!(wait_log_lines(&fd, "status=408", cut).await, cut);
    assert_eq!(app.request_lines(), ["GET /normal HTTP/1.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_answered_408_after_the_body_timeout() {
    let (app, fd) = recording_frontdoor("body-timeout = \"1s\"", "").await;
    let mut stream = fd.raw_h1().await;
    stream
        .write_all(b"POST /form HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nab")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status(&answer), 408, "{answer}");
    let sample = "frontdoor_rejected_requests_total{reason=\"body_timeout\"}";
    assert_eq!(fd.wait_metric(sample, 1.0).await, 1.0);
    // The app saw at most the head and the two bytes, then the request cut short.
    let seen = app.text();
    let body = seen.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    assert!(body == "ab" || body.is_empty(), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_route_as_the_app_reads_them() {
    let public = RecordingOrigin::start().await;
    let admin = RecordingOrigin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("public");
    std::fs::create_dir_all(root.join("assets")).expect("assets dir");
    std::fs::write(root.join("assets/app-0123456789abcdef.js"), "ok").expect("asset");
    std::fs::write(dir.path().join("secret-0123456789abcdef.txt"), "SECRET").expect("secret");
    let ports = Ports::new();
    let rest = format!(
        r#"
[pools.public]
backends = ["{public}"]
[pools.admin]
backends = ["{admin}"]

[[routes]]
name = "assets"
path = "/assets/{{rest*}}"
pool = "public"
[routes.assets]
source = "{root}"

[[routes]]
name = "admin"
path = "/admin/{{rest*}}"
pool = "admin"

[[routes]]
name = "public"
path = "/{{rest*}}"
pool = "public"
"#,
        public = public.addr,
        admin = admin.addr,
        root = root.display(),
    );
    let ca = TestCa::new();
    ca.issue(dir.path(), "localhost", &["localhost", "127.0.0.1"]);
    let fd = Frontdoor::start_in(dir, ca, ports, &config_text(ports, &rest)).await;

    for path in [
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/.%2E/admin/x",
        "/public%2f..%2fadmin/x",
        "/public\\..\\admin/x",
        "/public/x%00.js",
        "/public/%ff",
        "/assets/../../secret-0123456789abcdef.txt",
        "/assets/%2e%2e/%2e%2e/secret-0123456789abcdef.txt",
        "/assets/..%5c..%5csecret-0123456789abcdef.txt",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let answer = exchange(&fd, request.as_bytes()).await;
        assert_eq!(status(&answer), 400, "{path}: {answer}");
        assert!(!answer.contains("SECRET"), "{path}");
    }
    // Raw bytes that are not UTF-8 (the router would see a lossy rendering).
    let answer = exchange(
        &fd,
        b"GET /public/\xff\xfe HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 400, "{answer}");
    // Other spellings of an admin path reach the admin route, as the path the app reads.
    for path in ["//admin/x", "/%61dmin/x", "/admin//x"] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let answer = exchange(&fd, request.as_bytes()).await;
        assert_eq!(status(&answer), 200, "{path}: {answer}");
    }
    assert_eq!(admin.request_lines(), ["GET /admin/x HTTP/1.1"; 3]);
    assert_eq!(public.request_lines(), Vec::<String>::new());
    let asset = fd
        .client()
        .get(fd.url("/assets/app-0123456789abcdef.js"))
        .send()
        .await
        .expect("asset");
    assert_eq!(asset.text().await.expect("body"), "ok");
    let sample = "frontdoor_rejected_requests_total{reason=\"bad_path\"}";
    assert_eq!(fd.wait_metric(sample, 10.0).await, 10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slashes_reach_the_app_encoded_when_the_operator_allows_them() {
    let (app, fd) = recording_frontdoor("encoded-slashes = \"pass\"", "").await;
    let request =
        b"GET /files/report%2f2024.csv HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let answer = exchange(&fd, request).await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(
        app.request_lines(),
        ["GET /files/report%2F2024.csv HTTP/1.1"]
    );
    // Dot segments stay refused: an encoded slash excuses nothing else.
    let request = b"GET /files/%2e%2e/x HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let answer = exchange(&fd, request).await;
    assert_eq!(status(&answer), 400, "{answer}");
    assert_eq!(app.request_lines().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_only_frontdoor_may_set_are_replaced_or_dropped() {
    let (app, fd) = recording_frontdoor("", "").await;
    let response = fd
        .client()
        .get(fd.url("/page"))
        .header("X-Request-Start", "t=1000000000.000")
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Forwarded-Proto", "http")
        .header("X-Forwarded-Host", "evil.example")
        .header("Forwarded", "for=6.6.6.6;proto=http")
        .header("X-Request-Id", "forged-id")
        .header("Idempotency-Key", "the-clients-own-key")
        .header("X-Frontdoor-Schedule", "nightly")
        .header("X-Frontdoor-Job", "forged-job-id")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let seen = app.text().to_ascii_lowercase();
    for forged in [
        "t=1000000000.000",
        "6.6.6.6",
        "x-forwarded-proto: http\r\n",
        "evil.example",
        "forwarded: for",
        "forged-id",
        "x-frontdoor-",
    ] {
        assert!(!seen.contains(forged), "{forged} reached the app:\n{seen}");
    }
    // The client's own idempotency key passes (an API's business); the replay marker the app
    // can trust is `X-Frontdoor-Job`, which no client can send.
    assert!(
        seen.contains("idempotency-key: the-clients-own-key\r\n"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\r\n"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: https\r\n"), "{seen}");
    assert!(seen.contains("x-forwarded-host: localhost\r\n"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_are_not_served_on_the_public_listeners() {
    let (app, fd) = recording_frontdoor("", "").await;
    let paths = ["/metrics", "/status", "/status.json", "/readyz", "/jobs"];
    for path in paths {
        // HTTPS: the app's own path (proxied), never frontdoor's admin answer.
        let response = fd.client().get(fd.url(path)).send().await.expect("https");
        let body = response.text().await.expect("body");
        assert_eq!(body, "recorded", "{path}");
        // The redirect listener only redirects.
        let plain: SocketAddr = ([127, 0, 0, 1], fd.ports.http).into();
        let response = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
            .get(format!("http://{plain}{path}"))
            .send()
            .await
            .expect("http");
        assert!(response.status().is_redirection(), "{path}");
        let body = response.text().await.expect("body");
        assert!(!body.contains("frontdoor_"), "{path}: {body}");
    }
    assert_eq!(app.request_lines().len(), paths.len());
    // The admin listener does serve them.
    assert!(fd.metrics().await.contains("frontdoor_requests_total"));
}
