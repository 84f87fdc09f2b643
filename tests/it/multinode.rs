//! The docker/ multi-node layout, checked without a Docker engine: the frontdoor config passes
//! `frontdoor check`, and compose.yml, prometheus.yml, the config and the Grafana dashboard
//! agree (services, ports, metric names).

use crate::common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docker")
}

fn read(file: &str) -> String {
    std::fs::read_to_string(docker_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn yaml(file: &str) -> serde_yaml::Value {
    let mut value: serde_yaml::Value =
        serde_yaml::from_str(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    value.apply_merge().expect("merge keys");
    value
}

/// compose.yml with its `<<:` merge keys applied.
fn compose() -> serde_yaml::Value {
    yaml("compose.yml")
}

fn frontdoor_config() -> toml::Value {
    toml::from_str(&read("frontdoor.toml")).expect("frontdoor.toml parses")
}

/// A service's `command` as a list of words.
fn command(service: &serde_yaml::Value) -> Vec<String> {
    service["command"]
        .as_sequence()
        .map(|words| {
            words
                .iter()
                .filter_map(|w| w.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn services(compose: &serde_yaml::Value) -> Vec<(String, serde_yaml::Value)> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(name, service)| (name.as_str().expect("name").to_string(), service.clone()))
        .collect()
}

/// The services running `frontdoor run CONFIG`, each with CONFIG.
fn frontdoor_nodes(compose: &serde_yaml::Value) -> Vec<(String, String)> {
    services(compose)
        .into_iter()
        .filter_map(|(name, service)| {
            let words = command(&service);
            (words.first().map(String::as_str) == Some("run")).then(|| (name, words[1].clone()))
        })
        .collect()
}

/// The services running `frontdoor simulate`, each with its listen port.
fn app_nodes(compose: &serde_yaml::Value) -> Vec<(String, u16)> {
    services(compose)
        .into_iter()
        .filter_map(|(name, service)| {
            let words = command(&service);
            if words.first().map(String::as_str) != Some("simulate") {
                return None;
            }
            let at = words.iter().position(|w| w == "--listen")?;
            let port = words[at + 1].rsplit(':').next()?.parse().ok()?;
            Some((name, port))
        })
        .collect()
}

/// The `host:port` backends of every pool of the config.
fn backends(config: &toml::Value) -> Vec<String> {
    config["pools"]
        .as_table()
        .expect("pools")
        .values()
        .flat_map(|pool| pool["backends"].as_array().cloned().unwrap_or_default())
        .map(|b| b.as_str().expect("backend as host:port").to_string())
        .collect()
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("`{address}` has no port"))
}

/// `frontdoor check` passes on docker/frontdoor.toml. Two things come from the container and
/// are stood in for: the certificate (`frontdoor dev-cert` writes it where compose's `certs`
/// service does, relative to the config), and compose's DNS — `check` resolves backend names,
/// so each compose service name is given a loopback address of its own, the only edit.
#[test]
fn docker_frontdoor_config_passes_check() {
    let compose = compose();
    let config = frontdoor_config();
    let dir = tempfile::tempdir().expect("tempdir");

    // The certs service writes the files the config names (relative to /etc/frontdoor).
    let certs = command(&compose["services"]["certs"]);
    let tls = config["tls"]["certificates"][0].clone();
    for (key, written) in [("cert", &certs[1]), ("key", &certs[2])] {
        let named = tls[key].as_str().expect("path");
        assert_eq!(
            written,
            &format!("/etc/frontdoor/{named}"),
            "compose's certs service writes the {key} the config names"
        );
    }
    frontdoor::tls::ensure_dev_certificate(
        &dir.path().join(tls["cert"].as_str().expect("cert")),
        &dir.path().join(tls["key"].as_str().expect("key")),
    )
    .expect("dev cert");

    let mut text = read("frontdoor.toml");
    for (i, (name, port)) in app_nodes(&compose).iter().enumerate() {
        text = text.replace(
            &format!("\"{name}:{port}\""),
            &format!("\"127.0.0.{}:{port}\"", i + 2),
        );
    }
    std::fs::write(dir.path().join("frontdoor.toml"), text).expect("write");
    let (code, stdout, stderr) = run_cli(&["check", "frontdoor.toml"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("frontdoor.toml: ok ("), "{stdout}");
}

/// Every frontdoor node mounts the config and is scraped at its admin port; every backend
/// is a simulator service at the simulator's port (and every simulator is a backend); the
/// Redis of the job store is the compose Redis.
#[test]
fn compose_prometheus_and_config_agree_on_services_and_ports() {
    let compose = compose();
    let config = frontdoor_config();

    let nodes = frontdoor_nodes(&compose);
    assert_eq!(nodes.len(), 2, "two frontdoor nodes: {nodes:?}");
    for (name, path) in &nodes {
        let mounts: Vec<&str> = compose["services"][name.as_str()]["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(
            mounts.contains(&format!("./frontdoor.toml:{path}:ro").as_str()),
            "{name} runs {path}, mounted from docker/frontdoor.toml: {mounts:?}"
        );
    }
    let admin_port = port_of(config["listen"]["admin"].as_str().expect("admin"));
    assert!(
        config["listen"]["admin"]
            .as_str()
            .is_some_and(|a| a.starts_with("0.0.0.0:")),
        "the admin listener is reachable from the Prometheus container"
    );

    let prometheus = yaml("prometheus.yml");
    let scraped: BTreeSet<String> = prometheus["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| {
            job["static_configs"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|s| s["targets"].as_sequence().cloned().unwrap_or_default())
        .map(|t| t.as_str().expect("target").to_string())
        .collect();
    let expected: BTreeSet<String> = nodes
        .iter()
        .map(|(name, _)| format!("{name}:{admin_port}"))
        .collect();
    assert_eq!(
        scraped, expected,
        "Prometheus scrapes each frontdoor's admin port"
    );
    let prometheus_mounts = &compose["services"]["prometheus"]["volumes"];
    assert!(
        prometheus_mounts
            .as_sequence()
            .expect("volumes")
            .iter()
            .any(|v| v.as_str() == Some("./prometheus.yml:/etc/prometheus/prometheus.yml:ro")),
        "{prometheus_mounts:?}"
    );

    let apps = app_nodes(&compose);
    assert_eq!(apps.len(), 3, "three simulator nodes: {apps:?}");
    let listed: BTreeSet<String> = backends(&config).into_iter().collect();
    let simulators: BTreeSet<String> = apps
        .iter()
        .map(|(name, port)| format!("{name}:{port}"))
        .collect();
    assert_eq!(listed, simulators, "the pool lists exactly the simulators");

    let redis_url = config["jobs"]["redis-url"].as_str().expect("redis-url");
    assert_eq!(config["jobs"]["store"].as_str(), Some("redis"));
    let redis_host = redis_url
        .trim_start_matches("redis://")
        .split([':', '/'])
        .next()
        .expect("host");
    assert!(
        compose["services"][redis_host]["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("redis")),
        "{redis_url} names the compose Redis"
    );
}

/// Grafana's provisioned datasource is the one the dashboard's panels use, and points at the
/// compose Prometheus.
#[test]
fn grafana_dashboard_uses_the_provisioned_prometheus() {
    let datasources = yaml("grafana/provisioning/datasources/prometheus.yml");
    let source = &datasources["datasources"][0];
    assert_eq!(source["url"].as_str(), Some("http://prometheus:9090"));
    let uid = source["uid"].as_str().expect("uid");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana/dashboards/frontdoor.json")).expect("json");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    for panel in panels {
        assert_eq!(panel["datasource"]["uid"].as_str(), Some(uid), "{panel}");
    }
    let provider = yaml("grafana/provisioning/dashboards/frontdoor.yml");
    assert_eq!(
        provider["providers"][0]["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards")
    );
}

/// Every `expr` string of the dashboard, at any depth.
fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The `frontdoor_*` names a PromQL expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    expr.match_indices("frontdoor_")
        .map(|(at, _)| {
            expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// Sample names in a `/metrics` text (`name{labels} value` or `name value`).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Every metric the dashboard queries is on a real frontdoor's `/metrics` once it has served,
/// shed and run a job (labelled families appear only after their first sample).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_only_metrics_a_real_frontdoor_exports() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana/dashboards/frontdoor.json")).expect("json");
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    let wanted: BTreeSet<String> = all.iter().flat_map(|e| metric_names(e)).collect();
    assert!(wanted.len() >= 6, "{wanted:?}");

    // One slow worker behind one slot and a one-request queue: a burst is shed.
    let sim = Sim::start(frontdoor::simulator::SimulatorOptions {
        workers: std::num::NonZeroUsize::MIN,
        service_time: Duration::from_millis(200),
        manual_update_time: Duration::from_millis(10),
    })
    .await;
    let ports = Ports::new();
    let rest = format!(
        r#"
[jobs]
store = "embedded"
path = "jobs.redb"
poll-interval = "50ms"

[pools.app]
backends = ["{backend}"]
[pools.app.health]
interval = "200ms"
[pools.app.admission]
slots = 1
queue-length = 1

[[routes]]
name = "manual-update"
path = "/courses/{{id*}}/manual_update"
pool = "app"
[routes.offload]
key = "{{id}}"

[[routes]]
name = "app"
path = "/{{rest*}}"
pool = "app"
"#,
        backend = sim.addr
    );
    let fd = Frontdoor::start(ports, &config_text(ports, &rest)).await;
    let client = fd.client();
    let offload = client
        .post(fd.url("/courses/mit/physics/manual_update"))
        .send()
        .await
        .expect("offload");
    assert_eq!(offload.status(), 202);

    let deadline = Instant::now() + Duration::from_secs(20);
    let missing = loop {
        let burst: Vec<_> = (0..6)
            .map(|_| {
                let (client, url) = (client.clone(), fd.url("/courses/mit/physics"));
                tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
            })
            .collect();
        for request in burst {
            let _ = request.await;
        }
        let exported = sample_names(&fd.metrics().await);
        let missing: Vec<&String> = wanted.iter().filter(|n| !exported.contains(*n)).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
    };
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics frontdoor does not export: {missing:?}\n{}",
        fd.metrics().await
    );
}

/// `docker/loopback.sh` running the layout on free loopback ports, in a state folder of the
/// test's (where the test's certificate waits, so the script's `dev-cert` keeps it and the
/// clients verify TLS). Stopped with SIGTERM on drop, which stops every process it started.
struct Loopback {
    script: std::process::Child,
    state: tempfile::TempDir,
    ca: TestCa,
    /// `layout.env`: APP_1.., REDIS, FRONTDOOR_A_HTTPS, ... → host:port.
    layout: std::collections::HashMap<String, String>,
}

impl Loopback {
    /// Starts the script with `env` on top of free ports and this build's binary; waits for
    /// its `ready` file.
    async fn start(env: &[(&str, &str)]) -> Loopback {
        let state = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new();
        std::fs::create_dir_all(state.path().join("tls")).expect("tls dir");
        let (cert, key) = ca.issue(&state.path().join("tls"), "localhost", &["localhost"]);
        std::fs::rename(cert, state.path().join("tls/cert.pem")).expect("cert");
        std::fs::rename(key, state.path().join("tls/key.pem")).expect("key");
        let ports = |n: usize| {
            (0..n)
                .map(|_| free_port().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let script = std::process::Command::new("bash")
            .arg(docker_dir().join("loopback.sh"))
            .env("FRONTDOOR_BIN", bin())
            .env("LOOPBACK_STATE", state.path())
            .env("LOOPBACK_APP_PORTS", ports(3))
            .env("LOOPBACK_HTTPS_PORTS", ports(2))
            .env("LOOPBACK_HTTP_PORTS", ports(2))
            .env("LOOPBACK_ADMIN_PORTS", ports(2))
            .env("LOOPBACK_REDIS_PORT", ports(1))
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(state.path().join("script.log")).expect("log"))
            .spawn()
            .expect("bash docker/loopback.sh");
        let mut layout = Loopback {
            script,
            state,
            ca,
            layout: Default::default(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !layout.state.path().join("ready").exists() {
            let exited = layout.script.try_wait().expect("try_wait");
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "loopback.sh did not get ready ({exited:?}):\n{}",
                layout.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        layout.layout = std::fs::read_to_string(layout.state.path().join("layout.env"))
            .expect("layout.env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        layout
    }

    fn addr(&self, name: &str) -> std::net::SocketAddr {
        self.layout[name].parse().expect("host:port")
    }

    /// A client for frontdoor node `node` ("A" or "B").
    fn client(&self, node: &str) -> (reqwest::Client, String) {
        let https = self.addr(&format!("FRONTDOOR_{node}_HTTPS")).port();
        let client = https_client_builder(&self.ca, https)
            .build()
            .expect("client");
        (client, format!("https://localhost:{https}"))
    }

    /// `kill -9` the process `name` (`frontdoor-a`, `app-2`, ...) of the layout.
    fn kill(&self, name: &str) {
        let pid =
            std::fs::read_to_string(self.state.path().join("pids").join(name)).expect("pid file");
        let status = std::process::Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -9 {name}");
    }

    /// How many requests for `path` reached the app nodes, all three together.
    async fn app_hits(&self, path: &str) -> u64 {
        let mut total = 0;
        for app in ["APP_1", "APP_2", "APP_3"] {
            let stats: serde_json::Value =
                reqwest::get(format!("http://{}/_sim/stats", self.addr(app)))
                    .await
                    .expect("stats")
                    .json()
                    .await
                    .expect("stats json");
            total += stats["by_path"][path].as_u64().unwrap_or(0);
        }
        total
    }

    /// The script's output and every process's log.
    fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.state.path()).into_iter().flatten() {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                out += &format!("--- {}\n", path.display());
                out += &tail.into_iter().rev().collect::<Vec<_>>().join("\n");
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.script.id().to_string()])
            .status();
        let _ = self.script.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// The layout of compose.yml on loopback (docker/loopback.sh): manual updates are offloaded
/// through both frontdoor nodes, one node is killed (-9) while it runs jobs, and every job
/// either node answered 202 for is done — the ones the dead node held are run again by the
/// survivor after the visibility timeout — and reached an app node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_layout_finishes_every_job_when_a_frontdoor_node_is_killed() {
    // 500 ms replays, two at a time per node (frontdoor.toml's concurrency), so a node
    // always holds running jobs while the queue lasts.
    let layout = Loopback::start(&[
        ("LOOPBACK_MANUAL_UPDATE_MS", "500"),
        ("LOOPBACK_VISIBILITY_TIMEOUT", "1s"),
    ])
    .await;
    let nodes = [layout.client("A"), layout.client("B")];
    let mut jobs = Vec::new();
    for i in 0..48 {
        let (client, base) = &nodes[i % 2];
        let path = format!("/courses/job-{i}/manual_update");
        let response = client
            .post(format!("{base}{path}"))
            .send()
            .await
            .expect("offload");
        assert_eq!(response.status(), 202, "{path}");
        let location = response.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        jobs.push((path, location));
    }

    // Node A has finished a few and holds two running ones when it dies.
    let admin_a = layout.addr("FRONTDOOR_A_ADMIN");
    let succeeded = r#"frontdoor_jobs_succeeded_total{route="manual-update"}"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = reqwest::get(format!("http://{admin_a}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let done: f64 = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(succeeded)
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0);
        if done >= 2.0 {
            break;
        }
        assert!(Instant::now() < deadline, "node A ran no job:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    layout.kill("frontdoor-a");

    let (client, base) = &nodes[1];
    let mut pending: Vec<usize> = (0..jobs.len()).collect();
    let mut finished = vec![serde_json::Value::Null; jobs.len()];
    let deadline = Instant::now() + Duration::from_secs(40);
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "not finished via node B: {:?}",
            pending.iter().map(|&i| &jobs[i].0).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut still = Vec::new();
        for i in pending {
            let status: serde_json::Value = client
                .get(format!("{base}{}", jobs[i].1))
                .send()
                .await
                .expect("status via node B")
                .json()
                .await
                .expect("status json");
            match status["state"].as_str() {
                Some("queued" | "running") => still.push(i),
                _ => finished[i] = status,
            }
        }
        pending = still;
    }

    let mut rerun = 0;
    for ((path, _), status) in jobs.iter().zip(&finished) {
        assert_eq!(status["state"], "done", "{path}: {status}");
        let attempts = status["attempt"].as_u64().expect("attempt");
        let hits = layout.app_hits(path).await;
        assert!(
            (1..=attempts).contains(&hits),
            "{path}: the app saw it {hits} times in {attempts} attempts"
        );
        rerun += usize::from(attempts > 1);
    }
    assert!(
        rerun >= 1,
        "no job was run again: node A died holding none, so nothing was tested"
    );
}

/// Two frontdoor nodes share a Redis store and a schedule: each key reaches the app once per
/// period, not once per node. Both nodes compute the same fire instants, so without the
/// store's lock every key would arrive twice within milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_each_key_once_per_period_across_two_nodes() {
    let origin = ScriptedOrigin::start(OriginReply::ok("refreshed", &[])).await;
    let redis = Redis::start().await;
    let keys: Vec<String> = (0..8).map(|k| format!("k{k}")).collect();
    let every = Duration::from_secs(1);
    // No dedup key on the route: only the schedule lock can keep a key from firing twice.
    let rest = format!(
        r#"
[jobs]
store = "redis"
redis-url = "redis://127.0.0.1:{redis}/"
visibility-timeout = "1s"
poll-interval = "50ms"

[[jobs.schedules]]
name = "refresh"
route = "refresh"
path = "/refresh/{{key}}"
every = "1s"
slots = 4
keys = {keys:?}

[pools.app]
backends = ["{origin}"]

[[routes]]
name = "refresh"
path = "/refresh/{{id}}"
pool = "app"
[routes.offload]
concurrency = 8
"#,
        redis = redis.port,
        origin = origin.addr,
    );
    let (ports_a, ports_b) = (Ports::new(), Ports::new());
    let _a = Frontdoor::start(ports_a, &config_text(ports_a, &rest)).await;
    let _b = Frontdoor::start(ports_b, &config_text(ports_b, &rest)).await;
    let both_up = Instant::now();
    tokio::time::sleep(5 * every).await;
    let end = Instant::now();

    let seen = origin.requests();
    for key in &keys {
        let path = format!("/refresh/{key}");
        let at: Vec<Instant> = seen
            .iter()
            .filter(|r| r.path == path && r.at >= both_up && r.at <= end)
            .map(|r| r.at)
            .collect();
        // A key fires at the same point of every period, so consecutive fires are one period
        // apart (plus the replay's own jitter); twice in one period would be ~0.
        let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.iter().all(|gap| *gap > every / 2),
            "{key} fired twice in a period: gaps {gaps:?}"
        );
        // Five periods observed: four to six fires, by where the key's slot falls.
        assert!(
            (4..=6).contains(&at.len()),
            "{key}: {} fires in 5 periods",
            at.len()
        );
    }
}
