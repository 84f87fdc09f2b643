//! Operator actions through the admin listener and the CLI: deploy (checked, switched,
//! drained, remembered), pause and resume, maintenance.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{
    config_text, run_cli, Frontdoor, OriginReply, Ports, ScriptedOrigin, Sim, TestCa,
};

/// A pool `app` on `backend` with quick health checks, admission, a catch-all route, and the
/// state file at `state`.
fn config(ports: Ports, backend: std::net::SocketAddr, state: &std::path::Path) -> String {
    config_text(
        ports,
        &format!(
            r#"
[admin]
state-file = "{state}"

[error-pages]
maintenance = "maintenance.html"

[pools.app]
backends = ["{backend}"]
[pools.app.health]
path = "/healthz"
interval = "200ms"
rise = 2
[pools.app.admission]
slots = 8
queue-timeout = "5s"

[[routes]]
name = "all"
path = "/{{rest*}}"
pool = "app"
"#,
            state = state.display()
        ),
    )
}

async fn start(ports: Ports, config: &str) -> Frontdoor {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    ca.issue(dir.path(), "localhost", &["localhost", "127.0.0.1"]);
    std::fs::write(
        dir.path().join("maintenance.html"),
        "<h1>back at noon</h1>\n",
    )
    .expect("page");
    Frontdoor::start_in(dir, ca, ports, config).await
}

/// `frontdoor ARGS --admin <fd's admin>` run to completion off the runtime.
async fn cli(fd: &Frontdoor, args: &[&str]) -> (i32, String, String) {
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.extend([
        "--admin".to_string(),
        format!("127.0.0.1:{}", fd.ports.admin),
    ]);
    let cwd = fd.dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&args, &cwd)
    })
    .await
    .expect("cli")
}

/// An app taking 30 ms per request that answers `name`; `stop()` cuts every connection.
async fn app(name: &str) -> ScriptedOrigin {
    ScriptedOrigin::start(OriginReply {
        delay: Duration::from_millis(30),
        ..OriginReply::ok(name, &[])
    })
    .await
}

/// Requests for `path` that reached `origin`.
fn hits(origin: &ScriptedOrigin, path: &str) -> usize {
    origin.requests().iter().filter(|r| r.path == path).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_under_load_loses_no_request_and_is_remembered() {
    let (old, new) = (app("old").await, app("new").await);
    let state_dir = tempfile::tempdir().expect("tempdir");
    let state = state_dir.path().join("state.json");
    let ports = Ports::new();
    let fd = start(ports, &config(ports, old.addr, &state)).await;

    // Eight clients in a loop (bounded in count and time) while the deploy runs.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, stop) = (fd.client(), fd.url("/page"), stop.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed)
                    && answers.len() < 2000
                    && Instant::now() < deadline
                {
                    let response = client.get(&url).send().await.expect("a request was lost");
                    let status = response.status().as_u16();
                    answers.push((status, response.text().await.expect("a body was cut")));
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let target = new.addr.to_string();
    let (code, stdout, stderr) = cli(&fd, &["deploy", "app", "--target", &target]).await;
    assert_eq!(code, 0, "{stdout}{stderr}\n{}", fd.stderr());
    assert!(
        stdout.contains(&format!("pool app: {target} serve(s) (was {})", old.addr)),
        "{stdout}"
    );
    // The operator stops the old app as soon as the deploy returns: it has drained, so this
    // cuts nothing.
    old.stop();
    let old_hits_at_deploy = hits(&old, "/page");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.expect("client"));
    }
    assert!(all.len() > 50, "load ran: {}", all.len());
    let failed: Vec<_> = all.iter().filter(|(s, _)| *s != 200).collect();
    assert!(failed.is_empty(), "every request answered 200: {failed:?}");
    assert!(
        old_hits_at_deploy > 0 && hits(&new, "/page") > 0,
        "both served"
    );
    assert!(all.iter().any(|(_, b)| b == "old") && all.last().is_some_and(|(_, b)| b == "new"));
    assert_eq!(
        fd.metric("frontdoor_operator_actions_total{action=\"deploy\",pool=\"app\",result=\"ok\"}")
            .await,
        1.0
    );

    // A restarted frontdoor serves the deployed target (the config still names the old one).
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state file")).expect("json");
    assert_eq!(saved["deployed"]["app"]["targets"][0], target.as_str());
    drop(fd);
    let ports = Ports::new();
    let fd = start(ports, &config(ports, old.addr, &state)).await;
    for _ in 0..3 {
        let r = fd.client().get(fd.url("/page")).send().await.expect("get");
        assert_eq!(
            r.text().await.expect("body"),
            "new",
            "the deploy survived the restart"
        );
    }
    let operations: serde_json::Value = reqwest::get(fd.admin_url("/operations"))
        .await
        .expect("operations")
        .json()
        .await
        .expect("json");
    assert_eq!(operations["deployed"]["app"]["targets"][0], target.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_fails_its_checks_changes_nothing() {
    let old = Sim::quick().await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let state = state_dir.path().join("state.json");
    let ports = Ports::new();
    let fd = start(ports, &config(ports, old.addr, &state)).await;
    let closed = format!("127.0.0.1:{}", crate::common::free_port());
    let (code, _, stderr) = cli(
        &fd,
        &["deploy", "app", "--target", &closed, "--timeout", "1s"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("target {closed} did not pass `GET /healthz`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pool `app` still serves {}", old.addr)),
        "{stderr}"
    );
    let r = fd.client().get(fd.url("/echo")).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert!(!state.exists(), "nothing was written");
    let (code, _, stderr) = cli(&fd, &["deploy", "nope", "--target", &closed]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("no pool named `nope` (404)"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_requests_in_the_queue_until_resume() {
    let app = Sim::quick().await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let ports = Ports::new();
    let fd = start(
        ports,
        &config(ports, app.addr, &state_dir.path().join("s.json")),
    )
    .await;
    let (code, stdout, stderr) = cli(&fd, &["pause", "app"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"paused\":true"), "{stdout}");
    let held = {
        let request = fd.client().get(fd.url("/echo"));
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!held.is_finished(), "held while paused");
    assert_eq!(app.hits("/echo").await, 0, "nothing reached the app");
    let (code, _, stderr) = cli(&fd, &["resume", "app"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(held.await.expect("join").expect("answered"), 200);
    assert_eq!(app.hits("/echo").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_answers_the_operators_page_until_it_is_off() {
    let app = Sim::quick().await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let ports = Ports::new();
    let fd = start(
        ports,
        &config(ports, app.addr, &state_dir.path().join("s.json")),
    )
    .await;
    let (code, _, stderr) = cli(&fd, &["maintenance", "on"]).await;
    assert_eq!(code, 0, "{stderr}");
    let browser = fd
        .client()
        .get(fd.url("/courses/mit/physics"))
        .header("accept", "text/html,*/*;q=0.8")
        .send()
        .await
        .expect("get");
    assert_eq!(browser.status(), 503);
    assert!(browser.headers().contains_key("retry-after"));
    assert_eq!(
        browser.text().await.expect("body"),
        "<h1>back at noon</h1>\n"
    );
    let api = fd.client().get(fd.url("/echo")).send().await.expect("get");
    assert_eq!(api.status(), 503);
    assert!(api
        .text()
        .await
        .expect("body")
        .contains("down for maintenance"));
    let health = fd
        .client()
        .get(fd.url("/healthz"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        health.status(),
        200,
        "frontdoor's own health answer goes on"
    );
    assert_eq!(app.hits("/echo").await, 0);

    let (code, _, _) = cli(&fd, &["maintenance", "off"]).await;
    assert_eq!(code, 0);
    let r = fd.client().get(fd.url("/echo")).send().await.expect("get");
    assert_eq!(r.status(), 200);

    // Per pool; an unknown pool is an error; GET on an action is not an action.
    let (code, _, stderr) = cli(&fd, &["maintenance", "on", "nope"]).await;
    assert_eq!(
        (code, stderr.contains("no pool named `nope`")),
        (1, true),
        "{stderr}"
    );
    let get = reqwest::get(fd.admin_url("/pools/app/pause"))
        .await
        .expect("get");
    assert_eq!(get.status(), 405);
}
