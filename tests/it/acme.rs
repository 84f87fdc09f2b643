//! `[tls.acme]` against a real ACME server (Debian's `pebble`): issue, serve, renew, restart
//! without re-ordering, two nodes sharing one certificate, a CA that cannot be reached.

use crate::common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A frontdoor config whose only certificate source is `[tls.acme]` (plus `extra`).
fn acme_config(ports: Ports, sim: SocketAddr, acme: &str, extra: &str) -> String {
    let base = config_text(ports, &one_pool(&[sim]));
    let without_files = base.replace(
        "[[tls.certificates]]\ncert = \"localhost.pem\"\nkey = \"localhost.key\"\n",
        "",
    );
    assert_ne!(base, without_files, "the harness config changed");
    format!("{without_files}\n[tls.acme]\ndomains = [\"localhost\"]\ncontact = [\"ops@example.com\"]\n{acme}\n{extra}")
}

fn pebble_acme(pebble: &Pebble, storage: &Path) -> String {
    format!(
        "directory = \"{}\"\ndirectory-ca = \"{}\"\nstorage = \"{}\"",
        pebble.directory(),
        pebble.api_ca_path().display(),
        storage.display()
    )
}

/// Accepts any server certificate: these tests look at which one is served.
#[derive(Debug)]
struct AnyCertificate;

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The leaf certificate (DER) served for `localhost` on `port`, if a handshake succeeds.
async fn served_leaf(port: u16) -> Option<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .ok()?;
    let leaf = tls.get_ref().1.peer_certificates()?.first()?.to_vec();
    Some(leaf)
}

/// A client that trusts only `root` (Pebble's) and reaches `localhost` at 127.0.0.1:`https`.
fn trusting(root: &str, https: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).expect("root"))
        .tls_built_in_root_certs(false)
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], https)))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Waits (up to 60 s) until `port` serves a certificate that chains to Pebble's root; returns
/// its leaf.
async fn wait_for_issued(fd: &Frontdoor, pebble: &Pebble, port: u16) -> Vec<u8> {
    let root = pebble.root_pem().await;
    let client = trusting(&root, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client
            .get(format!("https://localhost:{port}/healthz"))
            .send()
            .await
        {
            assert_eq!(response.status(), 200);
            return served_leaf(port).await.expect("leaf");
        }
        assert!(
            Instant::now() < deadline,
            "no issued certificate served:\n{}\n--- pebble ---\n{}",
            fd.stderr(),
            pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_issued_by_tls_alpn_01_served_and_kept_across_a_restart_without_the_ca() {
    let sim = Sim::quick().await;
    let storage = tempfile::tempdir().expect("tempdir");
    let ports = Ports::new();
    let mut pebble = Pebble::start(ports.http, ports.https).await;
    let config = acme_config(ports, sim.addr, &pebble_acme(&pebble, storage.path()), "");
    let fd = Frontdoor::start(ports, &config).await;
    let issued = wait_for_issued(&fd, &pebble, ports.https).await;
    assert_eq!(
        fd.metric("frontdoor_acme_orders_total{result=\"issued\"}")
            .await,
        1.0
    );
    assert!(
        fd.metric("frontdoor_acme_certificate_expiry_timestamp_seconds")
            .await
            > 0.0
    );
    assert!(storage.path().join("localhost.crt").exists());
    drop(fd);

    // A restart serves the stored certificate at once, with the CA gone.
    pebble.stop();
    let fd = Frontdoor::start(ports, &config).await;
    assert_eq!(served_leaf(ports.https).await.as_ref(), Some(&issued));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fd.metric("frontdoor_acme_orders_total{result=\"issued\"}")
            .await
            + fd.metric("frontdoor_acme_orders_total{result=\"failed\"}")
                .await,
        0.0,
        "nothing ordered:\n{}",
        fd.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_is_answered_on_the_plain_listener() {
    let sim = Sim::quick().await;
    let storage = tempfile::tempdir().expect("tempdir");
    let ports = Ports::new();
    let pebble = Pebble::start(ports.http, ports.https).await;
    let acme = format!(
        "{}\nchallenge = \"http-01\"",
        pebble_acme(&pebble, storage.path())
    );
    let fd = Frontdoor::start(ports, &acme_config(ports, sim.addr, &acme, "")).await;
    wait_for_issued(&fd, &pebble, ports.https).await;
    // Anything else on the plain listener still redirects.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = plain
        .get(format!(
            "http://localhost:{}/.well-known/acme-challenge/unknown",
            ports.http
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 301);
}

/// A certificate for `localhost` signed by `ca`, expiring at the start of the day after
/// tomorrow (UTC); and the seconds from now until then.
fn expiring(ca: &TestCa, dir: &Path) -> (Vec<u8>, u64) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let day_after_tomorrow = (now / 86_400 + 2) * 86_400;
    let days = day_after_tomorrow / 86_400;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params.not_after = rcgen::date_time_ymd(year, month, day);
    let der = ca.issue_with(dir, "planted", params);
    (der, day_after_tomorrow - now)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_near_expiry_serves_until_its_renewal_is_swapped_in() {
    let sim = Sim::quick().await;
    let storage = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (planted, lifetime) = expiring(&ca, storage.path());
    std::fs::rename(
        storage.path().join("planted.pem"),
        storage.path().join("localhost.crt"),
    )
    .expect("plant");
    std::fs::rename(
        storage.path().join("planted.key"),
        storage.path().join("localhost.key"),
    )
    .expect("plant");
    let ports = Ports::new();
    let pebble = Pebble::start(ports.http, ports.https).await;
    // Due a few seconds after start.
    let acme = format!(
        "{}\nrenew-before = \"{}s\"",
        pebble_acme(&pebble, storage.path()),
        lifetime - 4
    );
    let fd = Frontdoor::start(ports, &acme_config(ports, sim.addr, &acme, "")).await;
    assert_eq!(served_leaf(ports.https).await.as_ref(), Some(&planted));
    let renewed = wait_for_issued(&fd, &pebble, ports.https).await;
    assert_ne!(renewed, planted);
    assert_eq!(
        fd.metric("frontdoor_acme_orders_total{result=\"issued\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_certificate_ordered_once_through_redis() {
    let sim = Sim::quick().await;
    let redis = Redis::start().await;
    let (a, b) = (Ports::new(), Ports::new());
    // The CA validates on node a's ports; whichever node orders, a answers.
    let pebble = Pebble::start(a.http, a.https).await;
    let (store_a, store_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let jobs = format!(
        "[jobs]\nstore = \"redis\"\nredis-url = \"redis://127.0.0.1:{}/\"\nredis-prefix = \"acme-test\"",
        redis.port
    );
    let config_a = acme_config(a, sim.addr, &pebble_acme(&pebble, store_a.path()), &jobs);
    let config_b = acme_config(b, sim.addr, &pebble_acme(&pebble, store_b.path()), &jobs);
    // b starts first and most often takes the lock: then a answers b's validations.
    let (fd_b, fd_a) = tokio::join!(
        Frontdoor::start(b, &config_b),
        Frontdoor::start(a, &config_a)
    );
    let leaf_a = wait_for_issued(&fd_a, &pebble, a.https).await;
    let leaf_b = wait_for_issued(&fd_b, &pebble, b.https).await;
    assert_eq!(leaf_a, leaf_b, "one certificate");
    let issued = fd_a
        .metric("frontdoor_acme_orders_total{result=\"issued\"}")
        .await
        + fd_b
            .metric("frontdoor_acme_orders_total{result=\"issued\"}")
            .await;
    assert_eq!(issued, 1.0, "one order for two nodes");
    assert!(store_a.path().join("localhost.crt").exists());
    assert!(store_b.path().join("localhost.crt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_cannot_be_reached_is_a_clear_error_and_the_stored_certificate_keeps_serving() {
    let sim = Sim::quick().await;
    let storage = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (planted, _) = expiring(&ca, storage.path());
    std::fs::rename(
        storage.path().join("planted.pem"),
        storage.path().join("localhost.crt"),
    )
    .expect("plant");
    std::fs::rename(
        storage.path().join("planted.key"),
        storage.path().join("localhost.key"),
    )
    .expect("plant");
    let ports = Ports::new();
    let dead = free_port();
    // Due at once (the whole lifetime is within renew-before), and nobody at the directory.
    let acme = format!(
        "directory = \"https://127.0.0.1:{dead}/dir\"\nstorage = \"{}\"\nrenew-before = \"87600h\"",
        storage.path().display()
    );
    let fd = Frontdoor::start(ports, &acme_config(ports, sim.addr, &acme, "")).await;
    assert_eq!(served_leaf(ports.https).await.as_ref(), Some(&planted));
    assert!(
        fd.wait_metric("frontdoor_acme_orders_total{result=\"failed\"}", 1.0)
            .await
            >= 1.0,
        "{}",
        fd.stderr()
    );
    let log = fd.stderr();
    assert!(
        log.contains(&format!(
            "ACME: no certificate for localhost: cannot reach the ACME directory https://127.0.0.1:{dead}/dir"
        )),
        "{log}"
    );
    assert!(
        log.contains("the current certificate keeps serving"),
        "{log}"
    );
    assert_eq!(
        served_leaf(ports.https).await,
        Some(planted),
        "still serving"
    );
}
