//! X-Sendfile and X-Accel-Redirect: the app names a file, frontdoor sends it (Range,
//! conditionals, the app's fields), frees the slot at once, and never leaves its roots.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{config_text, Frontdoor, OriginReply, Ports, ScriptedOrigin, TestCa};

/// A folder with `files/` (a root), `storage/` (mapped to `/_storage/`) and `secret/` (neither).
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["files", "storage", "secret"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        Tree { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir
            .path()
            .canonicalize()
            .expect("canonical")
            .join(relative)
    }
}

/// `len` bytes that differ from one offset to the next.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

async fn start(tree: &Tree, origin: &ScriptedOrigin, admission: &str) -> Frontdoor {
    let ports = Ports::new();
    let rest = format!(
        r#"
[sendfile]
roots = ["{files}"]
accel-mappings = [{{ path = "{storage}", uri = "/_storage/" }}]

[pools.app]
backends = ["{origin}"]
{admission}

[[routes]]
name = "all"
path = "/{{rest*}}"
pool = "app"
"#,
        files = tree.path("files").display(),
        storage = tree.path("storage").display(),
        origin = origin.addr,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    ca.issue(dir.path(), "localhost", &["localhost", "127.0.0.1"]);
    Frontdoor::start_in(dir, ca, ports, &config_text(ports, &rest)).await
}

fn sendfile_reply(header: &str, value: &Path) -> OriginReply {
    OriginReply::ok(
        "",
        &[
            (header, &value.display().to_string()),
            ("content-type", "application/pdf"),
            ("content-disposition", "attachment; filename=\"report.pdf\""),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_sendfile_is_served_by_frontdoor_with_the_apps_fields_ranges_and_conditionals() {
    let tree = Tree::new();
    let body = content(300_000);
    std::fs::write(tree.path("files/report.pdf"), &body).expect("write");
    let origin =
        ScriptedOrigin::start(sendfile_reply("x-sendfile", &tree.path("files/report.pdf"))).await;
    let fd = start(&tree, &origin, "").await;

    for client in [
        fd.client(),
        fd.client_builder().http1_only().build().expect("h1"),
    ] {
        let response = client
            .get(fd.url("/reports/1"))
            .header("x-accel-mapping", "/=/everything/")
            .header("x-sendfile-type", "X-Accel-Redirect")
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "application/pdf");
        assert_eq!(
            headers["content-disposition"],
            "attachment; filename=\"report.pdf\""
        );
        assert_eq!(headers["accept-ranges"], "bytes");
        assert_eq!(headers["content-length"], "300000");
        assert!(
            headers.get("x-sendfile").is_none(),
            "the path never reaches the client"
        );
        let etag = headers["etag"].to_str().expect("etag").to_string();
        assert_eq!(response.bytes().await.expect("body").as_ref(), &body[..]);

        // The app was told what frontdoor understands; the client's own claims were dropped.
        let seen = origin.last_request();
        assert_eq!(seen["x-sendfile-type"], "X-Accel-Redirect");
        let mapping = format!("{}/=/_storage/", tree.path("storage").display());
        assert_eq!(seen["x-accel-mapping"], mapping.as_str());

        let partial = client
            .get(fd.url("/reports/1"))
            .header("range", "bytes=1000-1999")
            .send()
            .await
            .expect("range");
        assert_eq!(partial.status(), 206);
        assert_eq!(partial.headers()["content-range"], "bytes 1000-1999/300000");
        assert_eq!(
            partial.bytes().await.expect("body").as_ref(),
            &body[1000..2000]
        );

        let cached = client
            .get(fd.url("/reports/1"))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("conditional");
        assert_eq!(cached.status(), 304);
        assert!(cached.bytes().await.expect("body").is_empty());
    }
    assert!(
        fd.metric("frontdoor_sendfile_total{result=\"served\"}")
            .await
            >= 6.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_accel_redirect_is_mapped_to_its_directory() {
    let tree = Tree::new();
    std::fs::write(tree.path("storage/a b.txt"), "stored file\n").expect("write");
    let origin = ScriptedOrigin::start(OriginReply::ok(
        "",
        &[
            ("x-accel-redirect", "/_storage/a%20b.txt"),
            ("content-type", "text/plain"),
        ],
    ))
    .await;
    let fd = start(&tree, &origin, "").await;
    let response = fd
        .client()
        .get(fd.url("/download"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-accel-redirect").is_none());
    assert_eq!(response.text().await.expect("body"), "stored file\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_outside_the_roots_are_refused_and_missing_ones_are_404() {
    let tree = Tree::new();
    std::fs::write(tree.path("secret/key"), "secret").expect("write");
    std::os::unix::fs::symlink(tree.path("secret/key"), tree.path("files/link")).expect("link");
    let origin = ScriptedOrigin::start(OriginReply::ok("", &[])).await;
    let fd = start(&tree, &origin, "").await;
    let dotdot = format!("{}/../secret/key", tree.path("files").display());
    for (header, value, status) in [
        (
            "x-sendfile",
            tree.path("secret/key").display().to_string(),
            403,
        ),
        (
            "x-sendfile",
            tree.path("files/link").display().to_string(),
            403,
        ),
        ("x-sendfile", dotdot, 403),
        (
            "x-accel-redirect",
            "/_storage/../secret/key".to_string(),
            403,
        ),
        ("x-accel-redirect", "/elsewhere/key".to_string(), 403),
        (
            "x-sendfile",
            tree.path("files/none.pdf").display().to_string(),
            404,
        ),
    ] {
        origin.set(OriginReply::ok("", &[(header, &value)]));
        let response = fd.client().get(fd.url("/x")).send().await.expect("get");
        assert_eq!(response.status(), status, "{header}: {value}");
        assert!(response.headers().get(header).is_none());
        let text = response.text().await.expect("body");
        assert!(!text.contains("secret"), "{text}");
    }
    assert_eq!(
        fd.metric("frontdoor_sendfile_total{result=\"refused\"}")
            .await,
        5.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_is_free_while_a_slow_client_downloads() {
    let tree = Tree::new();
    // Larger than every socket and HTTP/2 window between frontdoor and a client not reading.
    std::fs::write(tree.path("files/big.bin"), content(48 << 20)).expect("write");
    let origin =
        ScriptedOrigin::start(sendfile_reply("x-sendfile", &tree.path("files/big.bin"))).await;
    let admission = "[pools.app.admission]\nslots = 1\nqueue-timeout = \"1s\"";
    let fd = start(&tree, &origin, admission).await;
    // A client that reads the head and then nothing: the download stalls with most of the
    // file unsent.
    let stalled = fd.client().get(fd.url("/big")).send().await.expect("get");
    assert_eq!(stalled.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The app's only slot is free again: the next request is not queued into a 503.
    let next = fd
        .client_builder()
        .http1_only()
        .build()
        .expect("client")
        .get(fd.url("/big"))
        .header("range", "bytes=0-9")
        .send()
        .await
        .expect("get");
    assert_eq!(next.status(), 206);
    assert_eq!(next.bytes().await.expect("body").as_ref(), &content(10)[..]);
    assert_eq!(origin.hits(), 2);
    drop(stalled);
}
