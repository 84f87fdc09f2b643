//! Debian's `pebble` (Let's Encrypt's test CA, installed by `.ci/setup`) on loopback, with a
//! config and an HTTPS certificate of its own made here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, TestCa};

/// A running Pebble; killed on drop.
pub struct Pebble {
    child: Child,
    dir: tempfile::TempDir,
    /// The ACME API port.
    pub port: u16,
    /// The management API port (`/roots/0`).
    pub management: u16,
    ca: TestCa,
}

impl Pebble {
    /// A Pebble that validates HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port` of the
    /// domain's address (`localhost`: 127.0.0.1).
    pub async fn start(http_port: u16, tls_port: u16) -> Pebble {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new();
        let (cert, key) = ca.issue(dir.path(), "pebble", &["localhost", "127.0.0.1"]);
        let (port, management) = (free_port(), free_port());
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": cert,
                "privateKey": key,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("pebble config");
        std::fs::write(dir.path().join("api-ca.pem"), ca.pem()).expect("api ca");
        let log = std::fs::File::create(dir.path().join("pebble.log")).expect("log");
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("pebble (bash .ci/setup installs it)");
        let pebble = Pebble {
            child,
            dir,
            port,
            management,
            ca,
        };
        for _ in 0..400 {
            let up = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
                && tokio::net::TcpStream::connect(("127.0.0.1", management))
                    .await
                    .is_ok();
            if up {
                return pebble;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("pebble did not start:\n{}", pebble.log());
    }

    /// The directory URL.
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The PEM file of the root that signs the API's HTTPS certificate (`directory-ca`).
    pub fn api_ca_path(&self) -> PathBuf {
        self.dir.path().join("api-ca.pem")
    }

    /// The root Pebble signs certificates with (new at every start).
    pub async fn root_pem(&self) -> String {
        let client = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca.pem().as_bytes()).expect("ca"),
            )
            .tls_built_in_root_certs(false)
            .build()
            .expect("client");
        client
            .get(format!("https://127.0.0.1:{}/roots/0", self.management))
            .send()
            .await
            .expect("roots")
            .text()
            .await
            .expect("root pem")
    }

    /// What Pebble logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// Stops the CA.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The folder Pebble runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- pebble log ---\n{}", self.log());
        }
    }
}
