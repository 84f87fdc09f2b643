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
