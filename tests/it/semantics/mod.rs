//! HTTP semantics on every path that stores or transforms (issue 15): a table of rows, one per
//! kind of fault, each run over HTTP/1.1 and HTTP/2 through the paths it concerns (plain proxy,
//! on-the-fly compressor, asset cache, edge cache miss/hit/stale). A scripted app answers each
//! row under its own path prefix. A future fault becomes a row.

mod app;
mod rows;

use crate::common::*;
use app::App;
use std::future::Future;
use std::pin::Pin;

/// What a row gets: frontdoor, the app, a client of one protocol, the protocol's name (part
/// of every path, so the two runs do not share entries).
pub struct Ctx<'a> {
    pub fd: &'a Frontdoor,
    pub app: &'a App,
    pub client: reqwest::Client,
    pub proto: &'static str,
}

/// A response with its body decoded.
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn field(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

impl Ctx<'_> {
    /// `method` `path` with `fields`; the body decoded from its `Content-Encoding`.
    pub async fn ask(&self, method: &str, path: &str, fields: &[(&str, &str)]) -> Resp {
        let method = http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, self.fd.url(path));
        for (name, value) in fields {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let raw = response.bytes().await.expect("body").to_vec();
        let body = if raw.is_empty() {
            raw
        } else {
            decode(header(&headers, "content-encoding"), &raw)
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        self.ask("GET", path, fields).await
    }

    /// A path under `prefix` of this protocol's run.
    pub fn path(&self, prefix: &str, rest: &str) -> String {
        format!("{prefix}-{}{rest}", self.proto)
    }
}

type RowFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One kind of fault: the issue's number, what must hold, and the run.
pub struct Row {
    pub fault: u8,
    pub name: &'static str,
    pub run: for<'a> fn(&'a Ctx<'a>) -> RowFuture<'a>,
}

fn config(ports: Ports, app: std::net::SocketAddr) -> String {
    config_text(
        ports,
        &format!(
            r#"
[proxy]
encoded-slashes = "pass"

[pools.app]
backends = ["{app}"]
read-timeout = "5s"

[[routes]]
name = "assets"
path = "/assets/{{file*}}"
pool = "app"
[routes.assets]
source = "upstream"

[[routes]]
name = "cache"
path = "/cache/{{rest*}}"
pool = "app"
[routes.cache]
allow-authorization = true

[[routes]]
name = "plain"
path = "/{{rest*}}"
pool = "app"
"#
        ),
    )
}

/// Every row, over HTTP/1.1 then HTTP/2, against one frontdoor; the failures are listed
/// together at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_holds_on_every_path_over_h1_and_h2() {
    let app = App::start().await;
    rows::script(&app);
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config(ports, app.addr)).await;
    let mut failed = Vec::new();
    for row in rows::ROWS {
        for (proto, client) in [
            ("h1", fd.client_builder().http1_only().build().expect("h1")),
            ("h2", fd.client()),
        ] {
            let ctx = Ctx {
                fd: &fd,
                app: &app,
                client,
                proto,
            };
            // A row that panics is recorded, and the others still run.
            let outcome = futures_catch((row.run)(&ctx)).await;
            if let Err(why) = outcome {
                failed.push(format!(
                    "fault {} ({}) over {proto}: {why}",
                    row.fault, row.name
                ));
            }
        }
    }
    assert!(failed.is_empty(), "rows failing:\n{}", failed.join("\n"));
}

/// Runs `future`, turning a panic into an error message.
async fn futures_catch(future: RowFuture<'_>) -> Result<(), String> {
    use std::panic::AssertUnwindSafe;
    struct CatchUnwind<'a>(AssertUnwindSafe<RowFuture<'a>>);
    impl Future for CatchUnwind<'_> {
        type Output = Result<(), String>;
        fn poll(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Self::Output> {
            let inner = &mut self.0;
            match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
                Ok(std::task::Poll::Ready(())) => std::task::Poll::Ready(Ok(())),
                Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
                Err(panic) => std::task::Poll::Ready(Err(panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default())),
            }
        }
    }
    CatchUnwind(AssertUnwindSafe(future)).await
}
