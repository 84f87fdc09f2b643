//! The harness: certificates, free ports, the simulator in-process, frontdoor as a child
//! process, and clients that trust the test CA.

#![allow(dead_code)]

pub mod h1wire;
pub mod h2wire;
mod origin;
mod pebble;
mod raw_origin;
mod recorder;
mod redis_server;
pub mod stream_origin;
pub use origin::{OriginReply, ScriptedOrigin};
pub use pebble::Pebble;
pub use raw_origin::RawOrigin;
pub use recorder::RecordingOrigin;
pub use redis_server::Redis;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use frontdoor::simulator::{Simulator, SimulatorOptions};

/// The binary under test: this build's, or `FRONTDOOR_BIN` (the soak script points it at the
/// release build).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("FRONTDOOR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_frontdoor").into())
    })
}

/// A loopback port nobody listens on right now (Pingora listeners don't report their port,
/// so the test reserves one and lets it go before frontdoor binds it). Ports come from below
/// the kernel's ephemeral range (32768+), so no client socket of a concurrent test can take
/// one as its source port in between, and each is handed out once per test run.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Option<std::collections::HashSet<u16>>> =
        std::sync::Mutex::new(None);
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let given = given.get_or_insert_with(Default::default);
    loop {
        let port = rand::random::<u16>() % 12_000 + 20_000;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
}

/// A test certificate authority and leaf certificates signed by it.
pub struct TestCa {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "frontdoor test CA");
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let ca = params.self_signed(&ca_key).expect("ca cert");
        TestCa { ca, ca_key }
    }

    /// PEM of the CA, for clients.
    pub fn pem(&self) -> String {
        self.ca.pem()
    }

    /// Writes `NAME.pem` and `NAME.key` into `dir` for a certificate of `params`; returns
    /// its DER.
    pub fn issue_with(&self, dir: &Path, file: &str, params: rcgen::CertificateParams) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("sign");
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).expect("write cert");
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).expect("write key");
        cert.der().to_vec()
    }

    /// Writes `NAME.pem` and `NAME.key` into `dir` for `names`; returns both paths.
    pub fn issue(&self, dir: &Path, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("sign");
        let (cert_path, key_path) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }
}

/// The simulator running on this test's runtime.
pub struct Sim {
    pub addr: SocketAddr,
    /// The simulator's fingerprinted asset paths.
    pub assets: frontdoor::simulator::AssetPaths,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Sim {
    pub async fn start(options: SimulatorOptions) -> Sim {
        Sim::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), options).await
    }

    /// A simulator on `addr` (a port reserved earlier, to restart a stopped one there).
    pub async fn start_on(addr: SocketAddr, options: SimulatorOptions) -> Sim {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind simulator");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let simulator = Arc::new(Simulator::new(options));
        let assets = simulator.asset_paths();
        tokio::spawn(async move {
            let _ = simulator
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Sim {
            addr,
            assets,
            stop: Some(stop),
        }
    }

    pub async fn quick() -> Sim {
        Sim::start(Sim::quick_options()).await
    }

    /// The options of [`Sim::quick`].
    pub fn quick_options() -> SimulatorOptions {
        SimulatorOptions {
            workers: std::num::NonZeroUsize::new(16).expect("nonzero"),
            service_time: Duration::from_millis(1),
            manual_update_time: Duration::from_millis(50),
        }
    }
}

impl Sim {
    /// How many requests for `path` reached the simulator.
    pub async fn hits(&self, path: &str) -> u64 {
        let stats: serde_json::Value = reqwest::get(format!("http://{}/_sim/stats", self.addr))
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json");
        stats["by_path"][path].as_u64().unwrap_or(0)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Listener ports for one frontdoor.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub https: u16,
    pub http: u16,
    pub admin: u16,
}

impl Ports {
    pub fn new() -> Self {
        Ports {
            https: free_port(),
            http: free_port(),
            admin: free_port(),
        }
    }
}

/// A config with the test listeners and one certificate; `rest` adds pools, routes, etc.
pub fn config_text(ports: Ports, rest: &str) -> String {
    format!(
        r#"
[server]
threads = 1
grace-period = "0s"
graceful-shutdown-timeout = "1s"
access-log = "access.log"

[listen]
https = "127.0.0.1:{https}"
http = "127.0.0.1:{http}"
admin = "127.0.0.1:{admin}"

[[tls.certificates]]
cert = "localhost.pem"
key = "localhost.key"
{rest}
"#,
        https = ports.https,
        http = ports.http,
        admin = ports.admin,
    )
}

/// Pools `a` and `b` of one backend each (routes are the caller's).
pub fn pools_a_b(a: SocketAddr, b: SocketAddr) -> String {
    format!("\n[pools.a]\nbackends = [\"{a}\"]\n\n[pools.b]\nbackends = [\"{b}\"]\n")
}

/// One pool `app` with `backends`, and a catch-all route to it.
pub fn one_pool(backends: &[SocketAddr]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        r#"
[pools.app]
backends = [{}]
connect-timeout = "500ms"
read-timeout = "2s"

[[routes]]
name = "all"
path = "/{{rest*}}"
pool = "app"
"#,
        list.join(", ")
    )
}

/// A WebSocket connection through frontdoor.
pub type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A running frontdoor child process with its own folder (config, certs, logs).
pub struct Frontdoor {
    child: Child,
    pub dir: tempfile::TempDir,
    pub ports: Ports,
    pub ca: TestCa,
}

impl Frontdoor {
    /// Writes `config` (from [`config_text`]) and starts `frontdoor run`; waits until the
    /// admin and HTTPS listeners accept.
    pub async fn start(ports: Ports, config: &str) -> Frontdoor {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new();
        ca.issue(dir.path(), "localhost", &["localhost", "127.0.0.1"]);
        Frontdoor::start_in(dir, ca, ports, config).await
    }

    /// Like [`Frontdoor::start`] with a prepared folder (extra certificates).
    pub async fn start_in(
        dir: tempfile::TempDir,
        ca: TestCa,
        ports: Ports,
        config: &str,
    ) -> Frontdoor {
        Frontdoor::start_with_env(dir, ca, ports, config, &[]).await
    }

    /// Like [`Frontdoor::start_in`] with extra environment variables (`RUST_LOG`).
    pub async fn start_with_env(
        dir: tempfile::TempDir,
        ca: TestCa,
        ports: Ports,
        config: &str,
        env: &[(&str, &str)],
    ) -> Frontdoor {
        let config_path = dir.path().join("frontdoor.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("stderr.log")).expect("log file");
        let child = Command::new(bin())
            .arg("run")
            .arg(&config_path)
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn frontdoor");
        let fd = Frontdoor {
            child,
            dir,
            ports,
            ca,
        };
        fd.wait_ready().await;
        fd
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let admin = tokio::net::TcpStream::connect(("127.0.0.1", self.ports.admin))
                .await
                .is_ok();
            let https = tokio::net::TcpStream::connect(("127.0.0.1", self.ports.https))
                .await
                .is_ok();
            if admin && https {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "frontdoor did not start:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id of the running frontdoor.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("frontdoor.toml")
    }

    /// Replaces the config the way an editor does (write aside, rename over).
    pub fn rewrite_config(&self, config: &str) {
        let aside = self.dir.path().join("frontdoor.toml.new");
        std::fs::write(&aside, config).expect("write config");
        std::fs::rename(&aside, self.config_path()).expect("rename config");
    }

    pub fn sighup(&self) {
        self.signal("HUP");
    }

    /// Sends signal `name` (`HUP`, `TERM`, ...) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit; its exit code, if it did.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status.code().unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Resident memory of the process, in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Open file descriptors of the process (entries of /proc/PID/fd).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("proc fd")
            .count()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// A client trusting the test CA that reaches `localhost` at our HTTPS port.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().expect("client")
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        https_client_builder(&self.ca, self.ports.https)
    }

    /// A raw HTTP/1.1 connection over TLS to the HTTPS listener, for bytes no client library
    /// would send.
    pub async fn raw_h1(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut self.ca.pem().as_bytes()) {
            roots.add(cert.expect("ca")).expect("add ca");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.ports.https))
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .expect("handshake")
    }

    /// A WebSocket client (tungstenite) over TLS (HTTP/1.1 by ALPN, as browsers open
    /// `wss://`) to `path`; the server's answer when it refused to switch protocols.
    pub async fn websocket(
        &self,
        path: &str,
    ) -> Result<WebSocket, http::Response<Option<Vec<u8>>>> {
        let url = format!("wss://localhost:{}{}", self.ports.https, path);
        match tokio_tungstenite::client_async(url, self.raw_h1().await).await {
            Ok((socket, _)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(*response),
            Err(e) => panic!("websocket handshake: {e}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.ports.https, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.ports.admin, path)
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// The value of one metric sample line, e.g. `frontdoor_config_reloads_total{result="ok"}`.
    pub async fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

impl Frontdoor {
    /// Waits (up to 10 s) until the metric `sample` reaches `at_least`; returns its value.
    pub async fn wait_metric(&self, sample: &str, at_least: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.metric(sample).await;
            if value >= at_least || Instant::now() > deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Frontdoor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- frontdoor stderr ---\n{}", self.stderr());
        }
    }
}

/// A client trusting `ca` only, that reaches `localhost` at 127.0.0.1:`https`, follows no
/// redirects and gives up after 10 s.
pub fn https_client_builder(ca: &TestCa, https: u16) -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("ca pem");
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], https)))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
}

/// Runs `frontdoor` with `args` to completion: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run frontdoor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The JSON the simulator's `/echo` returns.
pub struct Echo(pub serde_json::Value);

impl Echo {
    pub async fn from(response: reqwest::Response) -> Echo {
        assert_eq!(response.status(), 200, "echo status");
        Echo(response.json().await.expect("echo json"))
    }

    /// Every value of header `name` (lowercase) the app received.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .map(|hs| {
                hs.iter()
                    .filter(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                    .filter_map(|h| h[1].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.headers(name);
        assert!(
            values.len() <= 1,
            "{name} sent {} times: {values:?}",
            values.len()
        );
        values.into_iter().next()
    }

    pub fn node(&self) -> String {
        self.0["node"].as_str().unwrap_or_default().to_string()
    }
}

/// A body decoded from its `Content-Encoding` (`None`: as sent).
pub fn decode(encoding: Option<&str>, body: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match encoding {
        Some("br") => brotli::Decompressor::new(body, 4096)
            .read_to_end(&mut out)
            .expect("brotli"),
        Some("gzip") => flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .expect("gzip"),
        Some("zstd") => zstd::stream::read::Decoder::new(body)
            .expect("zstd")
            .read_to_end(&mut out)
            .expect("zstd"),
        None => return body.to_vec(),
        Some(other) => panic!("unexpected encoding {other}"),
    };
    out
}

/// GET `url` with `headers`: status, response headers, body.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, Vec<u8>) {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.bytes().await.expect("body").to_vec(),
    )
}

/// A response field as text.
pub fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
