//! The first visitor gets Brotli: assets warmed from the manifest before traffic asks, `.br`
//! files a build left used as they are, and a fast Brotli while Brotli 11 is not ready.

use crate::common::*;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const CHROME: &str = "gzip, deflate, br, zstd";

fn asset_route(backend: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
[pools.app]
backends = ["{backend}"]

[[routes]]
name = "assets"
path = "/assets/{{file*}}"
pool = "app"
[routes.assets]
{extra}

[[routes]]
name = "app"
path = "/{{rest*}}"
pool = "app"
"#
    )
}

/// A script of `lines` lines that Brotli 11 takes a while on (distinct identifiers).
fn bundle(lines: usize) -> String {
    (0..lines)
        .map(|i| {
            format!(
                "export function handler_{i}(event) {{ return event.detail * {i} + {}; }}\n",
                i * 7919 % 10007
            )
        })
        .collect()
}

fn set_age(file: &Path, age: Duration) {
    std::fs::File::options()
        .write(true)
        .open(file)
        .expect("open")
        .set_modified(SystemTime::now() - age)
        .expect("set mtime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_visitor_of_a_cold_asset_gets_brotli_then_brotli_11_replaces_it() {
    let sim = Sim::quick().await;
    let public = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(public.path().join("assets")).expect("mkdir");
    let js = bundle(12_000);
    assert!(js.len() > 500_000);
    let path = "/assets/bundle-0123456789abcdef.js";
    std::fs::write(public.path().join(&path[1..]), &js).expect("write");
    let extra = format!("source = \"{}\"\nwarm = false", public.path().display());
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &asset_route(sim.addr, &extra))).await;
    let client = fd.client();

    let (status, headers, body) =
        fetch(&client, &fd.url(path), &[("accept-encoding", CHROME)]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-cache"), Some("MISS"));
    assert_eq!(
        header(&headers, "content-encoding"),
        Some("br"),
        "never identity"
    );
    assert_eq!(decode(Some("br"), &body), js.as_bytes());
    let fast_tag = header(&headers, "etag").expect("etag").to_string();
    assert!(fast_tag.ends_with("-br-fast\""), "{fast_tag}");
    let fast_len = body.len();
    assert!(fast_len * 4 < js.len(), "{fast_len} of {}", js.len());

    // Brotli 11 follows off the request path (seconds on a loaded 2-core machine).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, headers, body) =
            fetch(&client, &fd.url(path), &[("accept-encoding", CHROME)]).await;
        assert_eq!(header(&headers, "content-encoding"), Some("br"));
        let tag = header(&headers, "etag").expect("etag");
        if tag.ends_with("-br\"") {
            assert!(body.len() < fast_len, "{} vs {fast_len}", body.len());
            assert_eq!(decode(Some("br"), &body), js.as_bytes());
            break;
        }
        assert!(Instant::now() < deadline, "Brotli 11 never came");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        fd.metric("frontdoor_asset_compressions_total{encoding=\"br-fast\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_in_the_manifest_are_warmed_at_start_newest_first_and_again_after_a_deploy() {
    let origin = ScriptedOrigin::start(OriginReply::ok(
        &bundle(200),
        &[("content-type", "application/javascript")],
    ))
    .await;
    let public = tempfile::tempdir().expect("tempdir");
    let assets = public.path().join("assets");
    std::fs::create_dir_all(&assets).expect("mkdir");
    let names = [
        "old-0123456789.js",
        "mid-1123456789.js",
        "new-2123456789.js",
    ];
    for (i, name) in names.iter().enumerate() {
        let file = assets.join(name);
        std::fs::write(&file, "on disk").expect("write");
        set_age(&file, Duration::from_secs(3600 * (3 - i as u64)));
    }
    std::fs::write(
        assets.join(".manifest.json"),
        r#"{"old.js": {"digested_path": "old-0123456789.js"},
            "mid.js": {"digested_path": "mid-1123456789.js"},
            "new.js": {"digested_path": "new-2123456789.js"},
            "plain.js": {"digested_path": "plain.js"}}"#,
    )
    .expect("manifest");
    // The app serves the assets; the manifest says which (Propshaft's, under public/assets).
    let extra = format!("manifest = \"{}\"", assets.display());
    let ports = Ports::new();
    let fd = Frontdoor::start(
        ports,
        &config_text(ports, &asset_route(origin.addr, &extra)),
    )
    .await;
    let filled = "frontdoor_asset_warmed_total{result=\"filled\",route=\"assets\"}";
    assert_eq!(fd.wait_metric(filled, 3.0).await, 3.0, "{}", fd.stderr());
    let order: Vec<String> = origin.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(order.len(), 3, "{order:?}");
    assert_eq!(
        order[2], "/assets/old-0123456789.js",
        "oldest last: {order:?}"
    );

    // The first visitor: from memory, no request to the app.
    let client = fd.client();
    let (status, headers, _) = fetch(
        &client,
        &fd.url("/assets/new-2123456789.js"),
        &[("accept-encoding", CHROME)],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-cache"), Some("HIT"));
    assert_eq!(header(&headers, "content-encoding"), Some("br"));
    assert_eq!(origin.hits(), 3);

    // A deploy writes a new asset and a new manifest: warmed without a reload.
    std::fs::write(assets.join("next-3123456789.js"), "on disk").expect("write");
    std::fs::write(
        assets.join(".manifest.json"),
        r#"{"new.js": {"digested_path": "new-2123456789.js"},
            "next.js": {"digested_path": "next-3123456789.js"}}"#,
    )
    .expect("manifest");
    assert_eq!(fd.wait_metric(filled, 4.0).await, 4.0, "{}", fd.stderr());
    assert_eq!(
        origin.requests().last().map(|r| r.path.clone()).as_deref(),
        Some("/assets/next-3123456789.js")
    );
    assert!(
        fd.metric("frontdoor_asset_warmed_total{result=\"cached\",route=\"assets\"}")
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_source_is_warmed_and_its_br_files_served_as_they_are() {
    let sim = Sim::quick().await;
    let public = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(public.path().join("assets")).expect("mkdir");
    let js = bundle(400);
    let path = "/assets/app-0123456789abcdef.js";
    let file = public.path().join(&path[1..]);
    std::fs::write(&file, &js).expect("write");
    // What a build step left beside it: Brotli at quality 1, so never what frontdoor makes.
    let mut prebuilt = Vec::new();
    {
        use std::io::Write;
        let mut writer = brotli::CompressorWriter::new(&mut prebuilt, 4096, 1, 22);
        writer.write_all(js.as_bytes()).expect("compress");
    }
    std::fs::write(format!("{}.br", file.display()), &prebuilt).expect("write br");
    let extra = format!("source = \"{}\"", public.path().display());
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &asset_route(sim.addr, &extra))).await;
    let filled = "frontdoor_asset_warmed_total{result=\"filled\",route=\"assets\"}";
    assert_eq!(fd.wait_metric(filled, 1.0).await, 1.0, "{}", fd.stderr());

    let (status, headers, body) =
        fetch(&fd.client(), &fd.url(path), &[("accept-encoding", CHROME)]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-cache"), Some("HIT"));
    assert_eq!(header(&headers, "content-encoding"), Some("br"));
    assert_eq!(body, prebuilt, "the .br file's bytes, not a recompression");
    assert_eq!(
        fd.metric("frontdoor_asset_compressions_total{encoding=\"br\"}")
            .await,
        0.0,
        "nothing compressed to Brotli"
    );
}
