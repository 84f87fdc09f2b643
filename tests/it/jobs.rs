//! Offload routes: 202 at once, durable jobs replayed to the app, on both stores.
//!
//! Behaviour tests run against the embedded store and against a real `redis-server` that
//! the test starts on a free loopback port (installed by `.ci/setup`).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use frontdoor::simulator::SimulatorOptions;
use serde_json::Value;

use crate::common::*;

/// Which store a test runs against.
enum Store {
    Embedded(tempfile::TempDir),
    Redis(Redis),
}

impl Store {
    async fn embedded() -> Store {
        Store::Embedded(tempfile::tempdir().expect("tempdir"))
    }

    async fn redis() -> Store {
        Store::Redis(Redis::start().await)
    }

    /// The `[jobs]` section (plus `extra` lines in it).
    fn section(&self, extra: &str) -> String {
        let store = match self {
            Store::Embedded(dir) => format!(
                "store = \"embedded\"\npath = \"{}\"",
                dir.path().join("jobs.redb").display()
            ),
            Store::Redis(r) => format!(
                "store = \"redis\"\nredis-url = \"redis://127.0.0.1:{}/\"\nvisibility-timeout = \"1s\"",
                r.port
            ),
        };
        format!("\n[jobs]\n{store}\npoll-interval = \"50ms\"\n{extra}\n")
    }
}

/// Pool `app` (the simulator) and `dead` (nobody listens); offload routes `update` (dedup by
/// course), `echo` (body and header checks), `dead` (retries); a catch-all.
fn config(sim: &Sim, store: &Store, jobs_extra: &str, update_extra: &str) -> String {
    let update_extra = if update_extra.is_empty() {
        "concurrency = 4"
    } else {
        update_extra
    };
    format!(
        r#"
[pools.app]
backends = ["{sim}"]
connect-timeout = "500ms"

[pools.dead]
backends = ["127.0.0.1:{dead}"]
connect-timeout = "200ms"
{jobs}
[[routes]]
name = "update"
path = "/courses/{{id*}}/manual_update"
pool = "app"
[routes.offload]
key = "{{id}}"
{update_extra}

[[routes]]
name = "echo"
path = "/echo/jobs/{{rest*}}"
pool = "app"
[routes.offload]
max-body = "1KiB"

[[routes]]
name = "dead"
path = "/dead/{{rest*}}"
pool = "dead"
[routes.offload]
max-attempts = 3
backoff = "20ms"
max-backoff = "50ms"

[[routes]]
name = "all"
path = "/{{rest*}}"
pool = "app"
"#,
        sim = sim.addr,
        dead = free_port(),
        jobs = store.section(jobs_extra),
    )
}

async fn sim(manual_update_ms: u64) -> Sim {
    Sim::start(SimulatorOptions {
        workers: NonZeroUsize::new(16).expect("nonzero"),
        service_time: Duration::from_millis(1),
        manual_update_time: Duration::from_millis(manual_update_ms),
    })
    .await
}

async fn start(ports: Ports, text: &str) -> Frontdoor {
    Frontdoor::start(ports, &config_text(ports, text)).await
}

/// Sends `method path` (with `body`) and expects 202; returns the status URL.
async fn enqueue(fd: &Frontdoor, method: &str, path: &str, body: &str) -> String {
    let response = fd
        .client()
        .request(method.parse().expect("method"), fd.url(path))
        .body(body.to_string())
        .send()
        .await
        .expect("enqueue");
    assert_eq!(response.status(), 202, "{method} {path}");
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert!(response.headers().contains_key("retry-after"));
    location
}

async fn status(fd: &Frontdoor, location: &str) -> Value {
    let response = fd
        .client()
        .get(fd.url(location))
        .send()
        .await
        .expect("status");
    assert_eq!(response.status(), 200, "{location}");
    response.json().await.expect("status json")
}

/// Polls `location` until its state is not queued or running; every state seen, in order.
async fn until_finished(fd: &Frontdoor, location: &str) -> (Value, Vec<String>) {
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..1200 {
        let s = status(fd, location).await;
        let state = s["state"].as_str().unwrap_or_default().to_string();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state != "queued" && state != "running" {
            return (s, seen);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{location} did not finish: {seen:?}\n{}", fd.stderr());
}

async fn until_state(fd: &Frontdoor, location: &str, wanted: &str) {
    for _ in 0..1200 {
        if status(fd, location).await["state"] == wanted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{location} never {wanted}");
}

/// Generates one test per store from `async fn body(store: Store)`.
macro_rules! both_stores {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name(super::Store::embedded().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$name(super::Store::redis().await).await;
            }
        }
    };
}

both_stores!(accepted_at_once_then_queued_running_done_with_the_apps_answer);
async fn accepted_at_once_then_queued_running_done_with_the_apps_answer(store: Store) {
    let sim = sim(300).await;
    let ports = Ports::new();
    let fd = start(ports, &config(&sim, &store, "", "")).await;
    let response = fd
        .client()
        .post(fd.url("/courses/mit/physics/manual_update"))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"]
        .to_str()
        .expect("loc")
        .to_string();
    let id = location
        .strip_prefix("/_frontdoor/jobs/")
        .expect("status url");
    assert_eq!(id.len(), 32, "128-bit hex id: {id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(response.headers()["retry-after"], "2");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["id"], id);
    assert!(
        body["state"] == "queued" || body["state"] == "running",
        "{body}"
    );

    let (done, seen) = until_finished(&fd, &location).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["attempt"], 1);
    assert_eq!(done["result"]["status"], 200);
    let answer: Value = serde_json::from_str(done["result"]["body"].as_str().expect("body"))
        .expect("the app's JSON");
    assert_eq!(answer["updated"], "mit/physics");
    // Never backwards: queued, then running, then done (polling may miss a short state).
    let order = ["queued", "running", "done"];
    let ranks: Vec<usize> = seen
        .iter()
        .map(|s| order.iter().position(|o| o == s).expect("known state"))
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(sim.hits("/courses/mit/physics/manual_update").await, 1);

    // A browser gets a page that refreshes itself while the job is active.
    let page = fd
        .client()
        .post(fd.url("/courses/mit/chem/manual_update"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("post");
    assert_eq!(page.status(), 202);
    assert!(page.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/html"));
    let html = page.text().await.expect("html");
    assert!(html.contains("http-equiv=\"refresh\""), "{html}");

    // Unknown ids and malformed ids are 404; the status path is never proxied.
    let unknown = fd
        .client()
        .get(fd.url(&format!("/_frontdoor/jobs/{}", "0".repeat(32))))
        .send()
        .await
        .expect("get");
    assert_eq!(unknown.status(), 404);
    let bad = fd
        .client()
        .get(fd.url("/_frontdoor/jobs/../../x"))
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status(), 404);
    assert_eq!(
        fd.metric("frontdoor_jobs_enqueued_total{route=\"update\"}")
            .await,
        2.0
    );
    assert_eq!(
        fd.metric("frontdoor_jobs_succeeded_total{route=\"update\"}")
            .await,
        1.0
    );
}

both_stores!(a_second_request_for_the_same_course_gets_the_queued_job);
async fn a_second_request_for_the_same_course_gets_the_queued_job(store: Store) {
    let sim = sim(500).await;
    let ports = Ports::new();
    let fd = start(ports, &config(&sim, &store, "", "")).await;
    let first = enqueue(&fd, "POST", "/courses/42/manual_update", "").await;
    let again = enqueue(&fd, "GET", "/courses/42/manual_update", "").await;
    let other = enqueue(&fd, "POST", "/courses/43/manual_update", "").await;
    assert_eq!(first, again, "same course while active: same job");
    assert_ne!(first, other);
    assert_eq!(until_finished(&fd, &first).await.0["state"], "done");
    until_finished(&fd, &other).await;
    // Finished: the key is free again.
    let later = enqueue(&fd, "POST", "/courses/42/manual_update", "").await;
    assert_ne!(later, first);
    until_finished(&fd, &later).await;
    assert_eq!(sim.hits("/courses/42/manual_update").await, 2);
    assert_eq!(
        fd.metric("frontdoor_jobs_deduplicated_total{route=\"update\"}")
            .await,
        1.0
    );
    // The admin listing shows nothing active any more.
    let listing: Value = reqwest::get(fd.admin_url("/jobs"))
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(listing, Value::Array(Vec::new()));
}

both_stores!(idempotency_key_same_payload_same_job_other_payload_422);
async fn idempotency_key_same_payload_same_job_other_payload_422(store: Store) {
    let sim = sim(10).await;
    let ports = Ports::new();
    let fd = start(ports, &config(&sim, &store, "", "")).await;
    let send = |body: &'static str, key: Option<&'static str>| {
        let mut request = fd.client().post(fd.url("/echo/jobs/export")).body(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send()
    };
    let a = send("one", Some("k-1")).await.expect("a");
    assert_eq!(a.status(), 202);
    let a_loc = a.headers()["location"].clone();
    let b = send("one", Some("k-1")).await.expect("b");
    assert_eq!(b.status(), 202);
    assert_eq!(
        b.headers()["location"],
        a_loc,
        "same key and payload: same job"
    );
    let c = send("two", Some("k-1")).await.expect("c");
    assert_eq!(c.status(), 422, "same key, different payload");
    let d = send("one", Some("k-2")).await.expect("d");
    assert_ne!(d.headers()["location"], a_loc, "another key: another job");
    let e = send("one", None).await.expect("e");
    assert_ne!(e.headers()["location"], a_loc);
    // Still the same job after it has finished (kept for `keep`).
    let a_loc = a_loc.to_str().expect("loc").to_string();
    until_finished(&fd, &a_loc).await;
    let f = send("one", Some("k-1")).await.expect("f");
    assert_eq!(f.headers()["location"], a_loc.as_str());
}

both_stores!(the_replay_carries_method_query_body_and_selected_headers);
async fn the_replay_carries_method_query_body_and_selected_headers(store: Store) {
    let sim = sim(10).await;
    let ports = Ports::new();
    let fd = start(ports, &config(&sim, &store, "", "")).await;
    let response = fd
        .client()
        .put(fd.url("/echo/jobs/report?format=csv&year=2024"))
        .header("content-type", "text/csv")
        .header("cookie", "session=abc")
        .header("x-not-selected", "dropped")
        .header("x-request-start", "t=1.000")
        .body("a,b\n1,2\n")
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"]
        .to_str()
        .expect("loc")
        .to_string();
    let id = location.rsplit('/').next().expect("id").to_string();
    let (done, _) = until_finished(&fd, &location).await;
    assert_eq!(done["result"]["status"], 200, "{done}");
    let echo =
        Echo(serde_json::from_str(done["result"]["body"].as_str().expect("body")).expect("echo"));
    assert_eq!(echo.0["method"], "PUT");
    assert_eq!(echo.0["path"], "/echo/jobs/report?format=csv&year=2024");
    assert_eq!(echo.0["body_bytes"], 8);
    assert_eq!(echo.header("content-type").as_deref(), Some("text/csv"));
    assert_eq!(echo.header("cookie").as_deref(), Some("session=abc"));
    assert_eq!(echo.header("x-not-selected"), None);
    assert_eq!(echo.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(echo.header("idempotency-key"), Some(id.clone()));
    assert_eq!(echo.header("x-frontdoor-job"), Some(id));
    let start = echo.header("x-request-start").expect("x-request-start");
    assert!(
        start.starts_with("t=") && start != "t=1.000",
        "the replay's own: {start}"
    );

    let big = fd
        .client()
        .post(fd.url("/echo/jobs/big"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .expect("big");
    assert_eq!(big.status(), 413, "over max-body");
}

both_stores!(unreachable_app_is_retried_then_the_job_fails);
async fn unreachable_app_is_retried_then_the_job_fails(store: Store) {
    let sim = sim(10).await;
    let ports = Ports::new();
    let fd = start(ports, &config(&sim, &store, "", "")).await;
    let location = enqueue(&fd, "POST", "/dead/thing", "x").await;
    let (failed, _) = until_finished(&fd, &location).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["attempt"], 3);
    let error = failed["error"].as_str().expect("error");
    assert!(
        error.contains("attempt 3") && error.contains("connect"),
        "{error}"
    );
    assert_eq!(
        fd.metric("frontdoor_jobs_retried_total{route=\"dead\"}")
            .await,
        2.0
    );
    assert_eq!(
        fd.metric("frontdoor_jobs_failed_total{route=\"dead\"}")
            .await,
        1.0
    );
}

both_stores!(a_queued_job_can_be_cancelled_a_running_one_cannot);
async fn a_queued_job_can_be_cancelled_a_running_one_cannot(store: Store) {
    let sim = sim(3000).await;
    let ports = Ports::new();
    let fd = start(ports, &config(&sim, &store, "", "concurrency = 1")).await;
    let running = enqueue(&fd, "POST", "/courses/1/manual_update", "").await;
    until_state(&fd, &running, "running").await;
    let queued = enqueue(&fd, "POST", "/courses/2/manual_update", "").await;
    // The admin listing and the gauges see one running and one queued job.
    let listing: Value = reqwest::get(fd.admin_url("/jobs"))
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    let states: Vec<&str> = listing
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|j| j["state"].as_str())
        .collect();
    assert_eq!(states, ["running", "queued"], "{listing}");
    let mut gauge = 0.0;
    for _ in 0..100 {
        gauge = fd.metric("frontdoor_jobs_queued").await;
        if gauge == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gauge, 1.0, "frontdoor_jobs_queued");
    let client = fd.client();
    let cancel = client.delete(fd.url(&queued)).send().await.expect("delete");
    assert_eq!(cancel.status(), 200);
    assert_eq!(status(&fd, &queued).await["state"], "cancelled");
    let too_late = client
        .delete(fd.url(&running))
        .send()
        .await
        .expect("delete");
    assert_eq!(too_late.status(), 409);
    let unknown = client
        .delete(fd.url(&format!("/_frontdoor/jobs/{}", "f".repeat(32))))
        .send()
        .await
        .expect("delete");
    assert_eq!(unknown.status(), 404);
    until_finished(&fd, &running).await;
    // A job enqueued after the cancelled one runs, so the cancelled one had its chance.
    let after = enqueue(&fd, "POST", "/courses/3/manual_update", "").await;
    until_finished(&fd, &after).await;
    assert_eq!(sim.hits("/courses/2/manual_update").await, 0);
    // Cancelled frees the dedup key.
    let again = enqueue(&fd, "POST", "/courses/2/manual_update", "").await;
    assert_ne!(again, queued);
}

/// Concurrency per route and rate per pool, counted at the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_stay_within_route_concurrency_and_pool_rate() {
    let sim = sim(200).await;
    let store = Store::embedded().await;
    let ports = Ports::new();
    let text = config(&sim, &store, "", "concurrency = 2")
        + r#"
[pools.limited]
backends = ["SIM"]
[[routes]]
name = "limited"
path = "/echo/limited/{rest*}"
pool = "limited"
[routes.offload]
concurrency = 8
"#;
    let text = text.replace("SIM", &sim.addr.to_string()).replace(
        "poll-interval = \"50ms\"",
        "poll-interval = \"50ms\"\nrates = { limited = \"5/s\" }",
    );
    let fd = start(ports, &text).await;
    let mut updates = Vec::new();
    for i in 0..8 {
        updates.push(enqueue(&fd, "POST", &format!("/courses/{i}/manual_update"), "").await);
    }
    let mut limited = Vec::new();
    for i in 0..6 {
        limited.push(enqueue(&fd, "POST", &format!("/echo/limited/{i}"), "").await);
    }
    for location in updates.iter().chain(&limited) {
        assert_eq!(until_finished(&fd, location).await.0["state"], "done");
    }
    let stats: Value = reqwest::get(format!("http://{}/_sim/stats", sim.addr))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    // 8 updates of 200 ms with 16 app workers free: only the route's 2 slots bound them.
    assert_eq!(stats["max_in_flight"], 2, "{stats}");
    // Replays of the limited pool started at least 1/5 s apart (the X-Request-Start each
    // carried, as the app saw it).
    let mut starts: Vec<f64> = Vec::new();
    for location in &limited {
        let done = status(&fd, location).await;
        let echo =
            Echo(serde_json::from_str(done["result"]["body"].as_str().expect("b")).expect("e"));
        let stamp = echo.header("x-request-start").expect("stamp");
        starts.push(stamp.trim_start_matches("t=").parse().expect("seconds"));
    }
    starts.sort_by(f64::total_cmp);
    for pair in starts.windows(2) {
        assert!(pair[1] - pair[0] >= 0.195, "replays too close: {starts:?}");
    }
}

/// kill -9 with 100 jobs queued: after a restart on the same file all 100 are done, and
/// only a job that was running at the kill reached the app twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_job_survives_kill_9() {
    let sim = sim(20).await;
    let store = Store::embedded().await;
    let ports = Ports::new();
    let text = config_text(ports, &config(&sim, &store, "", "concurrency = 1"));
    let fd = Frontdoor::start(ports, &text).await;
    let mut locations = Vec::new();
    for i in 0..100 {
        locations.push(enqueue(&fd, "POST", &format!("/courses/k{i}/manual_update"), "").await);
    }
    fd.signal("KILL");
    drop(fd);
    let fd = Frontdoor::start(ports, &text).await;
    for location in &locations {
        assert_eq!(until_finished(&fd, location).await.0["state"], "done");
    }
    let mut twice = 0;
    for i in 0..100 {
        let hits = sim.hits(&format!("/courses/k{i}/manual_update")).await;
        assert!(hits >= 1, "job {i} never ran");
        if hits > 1 {
            twice += 1;
        }
    }
    assert!(
        twice <= 1,
        "{twice} jobs ran twice; only the one running at the kill may"
    );
}

/// A job running when frontdoor is killed runs again after the restart (at least once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_running_at_kill_9_runs_again_after_restart() {
    let sim = sim(1500).await;
    let store = Store::embedded().await;
    let ports = Ports::new();
    let text = config_text(ports, &config(&sim, &store, "", ""));
    let fd = Frontdoor::start(ports, &text).await;
    let location = enqueue(&fd, "POST", "/courses/interrupted/manual_update", "").await;
    until_state(&fd, &location, "running").await;
    fd.signal("KILL");
    drop(fd);
    let fd = Frontdoor::start(ports, &text).await;
    let (done, _) = until_finished(&fd, &location).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["attempt"], 2);
    assert_eq!(sim.hits("/courses/interrupted/manual_update").await, 2);
}

/// Two nodes share a Redis store; the node running a job is killed; the other finishes it
/// after the visibility timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_killed_nodes_running_job_is_finished_by_the_other() {
    // Long enough that node a is still running it when node b has started (a loaded CI
    // machine takes over a second to start a node).
    let sim = sim(5000).await;
    let store = Store::redis().await;
    let (ports_a, ports_b) = (Ports::new(), Ports::new());
    let a = start(ports_a, &config(&sim, &store, "", "")).await;
    let location = enqueue(&a, "POST", "/courses/shared/manual_update", "").await;
    until_state(&a, &location, "running").await;
    let b = start(ports_b, &config(&sim, &store, "", "")).await;
    a.signal("KILL");
    drop(a);
    let (done, _) = until_finished(&b, &location).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["attempt"], 2, "run again after the visibility timeout");
    assert_eq!(sim.hits("/courses/shared/manual_update").await, 2);
    // Work enqueued on one node is done by whichever: both see every job.
    let mut locations = Vec::new();
    for i in 0..6 {
        locations.push(enqueue(&b, "POST", &format!("/courses/n{i}/manual_update"), "").await);
    }
    for location in &locations {
        assert_eq!(until_finished(&b, location).await.0["state"], "done");
    }
}

/// A plain HTTP server answering every request with `body` as JSON (a key list source).
async fn json_server(body: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    addr
}

/// Schedules refresh each of their keys (a static list; a list fetched from a URL); each
/// key fires through the offload route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_refreshes_every_key() {
    let sim = sim(10).await;
    let store = Store::embedded().await;
    let ports = Ports::new();
    let list = json_server(r#"["u1", "u2", 7]"#).await;
    let schedule = format!(
        r#"
[[jobs.schedules]]
name = "refresh"
route = "update"
path = "/courses/{{key}}/manual_update"
every = "2s"
slots = 4
keys = ["a", "b", "c", "d", "e", "f"]

[[jobs.schedules]]
name = "fetched"
route = "update"
path = "/courses/{{key}}/manual_update"
every = "2s"
slots = 4
keys-url = "http://{list}/courses.json"
"#
    );
    let fd = start(ports, &config(&sim, &store, &schedule, "")).await;
    let mut hits = HashMap::new();
    for _ in 0..400 {
        for key in ["a", "b", "c", "d", "e", "f", "u1", "u2", "7"] {
            hits.insert(
                key,
                sim.hits(&format!("/courses/{key}/manual_update")).await,
            );
        }
        if hits.values().all(|n| *n >= 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(hits.values().all(|n| *n >= 1), "{hits:?}\n{}", fd.stderr());
}

/// Only one node takes a schedule slot: the Redis lock, from two store clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_schedule_lock_is_taken_by_one_node_until_it_expires() {
    use frontdoor::jobs::redis::RedisStore;
    use frontdoor::jobs::JobStore;
    let redis = Redis::start().await;
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let a = RedisStore::new(&url, "t", Duration::from_secs(1)).expect("a");
    let b = RedisStore::new(&url, "t", Duration::from_secs(1)).expect("b");
    let ttl = Duration::from_millis(300);
    assert!(a.try_lock("refresh/k/1", ttl).await.expect("lock"));
    assert!(!b.try_lock("refresh/k/1", ttl).await.expect("lock"));
    assert!(b.try_lock("refresh/k/2", ttl).await.expect("lock"));
    // Expired: the next holder may take it (a node that died while holding it).
    let mut taken = false;
    for _ in 0..100 {
        taken = b.try_lock("refresh/k/1", ttl).await.expect("lock");
        if taken {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(taken);
}

/// An app that answers `503` to its first `failures` requests, then `200 done`.
async fn flaky_app(failures: usize) -> std::net::SocketAddr {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 8192];
                let _ = stream.read(&mut head).await;
                let (status, body) = if seen.fetch_add(1, Ordering::SeqCst) < failures {
                    ("503 Service Unavailable", "busy")
                } else {
                    ("200 OK", "done")
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// A 503 from the app is retried (full-jitter backoff) and the next answer is the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_and_the_next_answer_is_kept() {
    let sim = sim(10).await;
    let flaky = flaky_app(2).await;
    let store = Store::embedded().await;
    let ports = Ports::new();
    let text = config(&sim, &store, "", "")
        + &format!(
            r#"
[pools.flaky]
backends = ["{flaky}"]
[[routes]]
name = "flaky"
path = "/flaky/{{rest*}}"
pool = "flaky"
[routes.offload]
max-attempts = 3
backoff = "20ms"
max-backoff = "50ms"
"#
        );
    let fd = start(ports, &text).await;
    let location = enqueue(&fd, "POST", "/flaky/report", "").await;
    let (done, _) = until_finished(&fd, &location).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["attempt"], 3);
    assert_eq!(done["result"]["status"], 200);
    assert_eq!(done["result"]["body"], "done");
    assert_eq!(
        fd.metric("frontdoor_jobs_retried_total{route=\"flaky\"}")
            .await,
        2.0
    );
}
