//! `103 Early Hints` over HTTP/2 (where Chrome uses them), frontdoor's own and the app's.
//! The h2 client here is the `h2` crate itself: it reports 1xx heads apart from the final one.

use crate::common::*;
use bytes::Bytes;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// A page big enough to span many DATA frames.
fn page() -> String {
    let rows: String = (0..4_000)
        .map(|i| format!("<tr><td>row {i}</td><td>{}</td></tr>\n", i * 31 % 997))
        .collect();
    format!("<!DOCTYPE html><html><head><title>t</title></head><body><table>{rows}</table></body></html>")
}

/// An HTTP/1.1 app that reads a request head, sends `interim` (if any) at once, waits for
/// `release`, then answers 200 with [`page`] and closes: a Rails action that calls
/// `send_early_hints` and then renders for a while.
async fn thinking_app(interim: Option<&'static str>) -> (SocketAddr, Arc<Notify>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let release = Arc::new(Notify::new());
    let held = release.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let held = held.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                if let Some(interim) = interim {
                    if stream.write_all(interim.as_bytes()).await.is_err() {
                        return;
                    }
                }
                held.notified().await;
                let body = page();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nLink: </app.css>; rel=preload; as=style\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (addr, release)
}

fn config(ports: Ports, app: SocketAddr, early_hints: bool) -> String {
    config_text(
        ports,
        &format!(
            r#"
[pools.app]
backends = ["{app}"]
read-timeout = "30s"

[[routes]]
name = "page"
path = "/courses/{{school}}/{{title}}"
pool = "app"
[routes.hints]
learn = false
early-hints = {early_hints}
preload = [{{ href = "/courses/{{school}}/{{title}}/course.json", as = "fetch" }}]

[[routes]]
name = "app"
path = "/{{rest*}}"
pool = "app"
"#
        ),
    )
}

/// An HTTP/2 connection to frontdoor through the `h2` crate's client.
async fn h2_client(fd: &Frontdoor) -> h2::client::SendRequest<Bytes> {
    let addr = SocketAddr::from(([127, 0, 0, 1], fd.ports.https));
    let tls = h2wire::connect_h2(addr, &fd.ca.pem()).await;
    let (send, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send.ready().await.expect("ready")
}

fn get(path: &str) -> http::Request<()> {
    http::Request::get(format!("https://localhost{path}"))
        .body(())
        .expect("request")
}

/// Whether `future` is still pending when polled once now.
async fn pending<F: std::future::Future + Unpin>(future: &mut F) -> bool {
    poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx).is_pending()))
        .await
}

/// The whole body of `response`, flow control released as it is read.
async fn body_of(response: http::Response<h2::RecvStream>) -> Vec<u8> {
    let mut stream = response.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = stream.data().await {
        let chunk = chunk.expect("data");
        let _ = stream.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_reach_h2_clients_while_the_app_thinks_and_the_body_is_complete() {
    let (app, release) = thinking_app(None).await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config(ports, app, true)).await;
    let mut client = h2_client(&fd).await;
    let (mut response, _) = client
        .send_request(get("/courses/mit/physics"), true)
        .expect("send");

    let early = poll_fn(|cx| response.poll_informational(cx))
        .await
        .expect("a 1xx before the end")
        .expect("no h2 error");
    assert_eq!(early.status(), 103);
    assert_eq!(
        header(early.headers(), "link"),
        Some("</courses/mit/physics/course.json>; rel=preload; as=fetch; crossorigin")
    );
    // The app has not answered yet: the final head cannot have come.
    assert!(
        pending(&mut response).await,
        "final head before the app answered"
    );

    release.notify_one();
    let response = response.await.expect("final response");
    assert_eq!(response.status(), 200);
    let links: Vec<&str> = response
        .headers()
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        links
            .iter()
            .any(|l| l.contains("</courses/mit/physics/course.json>")),
        "{links:?}"
    );
    let encoding = header(response.headers(), "content-encoding").map(str::to_string);
    let body = body_of(response).await;
    assert_eq!(decode(encoding.as_deref(), &body), page().as_bytes());
    assert_eq!(
        fd.metric("frontdoor_hints_total{kind=\"early_hints\",route=\"page\"}")
            .await,
        1.0
    );
}

/// What Puma writes for `request.send_early_hints("Link" => ...)`, with hop-by-hop fields a
/// proxy must not pass on.
const APP_103: &str = "HTTP/1.1 103 Early Hints\r\nLink: </assets/application-0123456789.css>; rel=preload; as=style\r\nConnection: X-Trace\r\nX-Trace: internal\r\nKeep-Alive: timeout=5\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_own_early_hints_are_relayed_on_both_protocols_minus_hop_by_hop_fields() {
    let (app, release) = thinking_app(Some(APP_103)).await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config(ports, app, false)).await;

    // HTTP/2.
    let mut client = h2_client(&fd).await;
    let (mut response, _) = client.send_request(get("/dashboard"), true).expect("send");
    let early = poll_fn(|cx| response.poll_informational(cx))
        .await
        .expect("the app's 103")
        .expect("no h2 error");
    assert_eq!(early.status(), 103);
    assert_eq!(
        header(early.headers(), "link"),
        Some("</assets/application-0123456789.css>; rel=preload; as=style")
    );
    for hop in ["connection", "x-trace", "keep-alive"] {
        assert!(
            !early.headers().contains_key(hop),
            "{hop}: {:?}",
            early.headers()
        );
    }
    assert!(pending(&mut response).await);
    release.notify_one();
    let response = response.await.expect("final");
    assert_eq!(response.status(), 200);
    let encoding = header(response.headers(), "content-encoding").map(str::to_string);
    assert_eq!(
        decode(encoding.as_deref(), &body_of(response).await),
        page().as_bytes()
    );

    // HTTP/1.1: the 103 head, then the final one.
    let mut stream = fd.raw_h1().await;
    stream
        .write_all(b"GET /dashboard HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&received).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 103"), "{text}");
    assert!(text.contains("link: </assets/application-0123456789.css>; rel=preload; as=style\r\n"));
    assert!(
        !text.contains("x-trace") && !text.contains("keep-alive"),
        "{text}"
    );
    release.notify_one();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the final answer");
    let text = String::from_utf8_lossy(&received);
    assert!(text.contains("HTTP/1.1 200 OK"), "{text}");
}
