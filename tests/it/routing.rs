//! Routes send requests to their pools, most specific first.

use crate::common::*;

fn two_pools(a: std::net::SocketAddr, b: std::net::SocketAddr) -> String {
    let pools = pools_a_b(a, b);
    format!(
        r#"{pools}
[[routes]]
name = "course"
path = "/echo/courses/{{school}}/{{title}}"
pool = "a"

[[routes]]
name = "manual-update"
path = "/echo/courses/{{id*}}/manual_update"
pool = "b"

[[routes]]
name = "posts"
methods = ["POST"]
path = "/echo/{{rest*}}"
pool = "b"

[[routes]]
name = "echo"
path = "/echo/{{rest*}}"
pool = "a"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_send_requests_to_their_pools_by_specificity() {
    let (a, b) = (Sim::quick().await, Sim::quick().await);
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &two_pools(a.addr, b.addr))).await;
    let client = fd.client();
    let node = |path: &'static str, post: bool| {
        let request = if post {
            client.post(fd.url(path))
        } else {
            client.get(fd.url(path))
        };
        async move {
            Echo::from(request.send().await.expect("request"))
                .await
                .node()
        }
    };
    let (a, b) = (a.addr.to_string(), b.addr.to_string());
    assert_eq!(node("/echo/courses/mit/physics", false).await, a);
    // More literal segments win: the manual_update route, although the course route matches too.
    assert_eq!(node("/echo/courses/mit/manual_update", false).await, b);
    assert_eq!(
        node("/echo/courses/mit/physics/2024/manual_update", false).await,
        b
    );
    // A route limited to POST beats the same template for any method, for POST only.
    assert_eq!(node("/echo/anything/else", true).await, b);
    assert_eq!(node("/echo/anything/else", false).await, a);
    // Route names label the metrics.
    let metrics = fd.metrics().await;
    assert!(
        metrics.contains("frontdoor_requests_total{class=\"2xx\",route=\"manual-update\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_no_route_matches_gets_404_from_frontdoor() {
    let (a, b) = (Sim::quick().await, Sim::quick().await);
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &two_pools(a.addr, b.addr))).await;
    let response = fd
        .client()
        .get(fd.url("/not/routed"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(
        fd.metric("frontdoor_requests_total{class=\"4xx\",route=\"none\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_one_access_log_line() {
    let (a, b) = (Sim::quick().await, Sim::quick().await);
    let ports = Ports::new();
    let config = config_text(ports, &two_pools(a.addr, b.addr)).replace(
        "access-log = \"access.log\"",
        "access-log = \"access.log\"\naccess-log-format = \"json\"",
    );
    let fd = Frontdoor::start(ports, &config).await;
    let client = fd.client();
    let mut ids = Vec::new();
    for path in ["/echo/courses/mit/physics", "/not/routed"] {
        let response = client.get(fd.url(path)).send().await.expect("request");
        ids.push(
            response.headers()["x-request-id"]
                .to_str()
                .expect("ascii")
                .to_string(),
        );
    }
    // The writer thread is asynchronous: give it a moment.
    let mut lines = Vec::new();
    for _ in 0..100 {
        let text = std::fs::read_to_string(fd.dir.path().join("access.log")).unwrap_or_default();
        lines = text.lines().map(str::to_string).collect();
        if lines.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(lines.len(), 2, "{lines:?}");
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(parsed[0]["route"], "course");
    assert_eq!(parsed[0]["status"], 200);
    assert_eq!(parsed[0]["request_id"], ids[0].as_str());
    assert_eq!(parsed[0]["proto"], "h2");
    assert_eq!(parsed[1]["route"], "none");
    assert_eq!(parsed[1]["status"], 404);
}
