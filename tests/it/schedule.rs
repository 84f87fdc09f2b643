//! `frontdoor schedule`: a schedule's plan, key by key, then its spread over the interval.

use crate::common::*;
use frontdoor::jobs::schedule::{offset, rfc3339};
use frontdoor::jobs::store::now_ms;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// A config with an offload route and `schedules` (TOML), with its certificate, in `dir`.
fn write_config(dir: &Path, schedules: &str) {
    TestCa::new().issue(dir, "localhost", &["localhost"]);
    let rest = format!(
        r#"
[pools.app]
backends = ["127.0.0.1:3000"]

[[routes]]
name = "update"
path = "/courses/{{id}}/manual_update"
pool = "app"
[routes.offload]
key = "{{id}}"
{schedules}
"#
    );
    std::fs::write(dir.join("f.toml"), config_text(Ports::new(), &rest)).expect("write");
}

/// The key lines of the output (up to the blank line): `(key, offset, next fire)`.
fn key_lines(stdout: &str) -> Vec<(&str, &str, &str)> {
    stdout
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            assert_eq!(fields.len(), 3, "{l}");
            (fields[0], fields[1], fields[2])
        })
        .collect()
}

/// 6,000 keys every hour: one line per key (its offset, the same as the scheduler's, and
/// its next fire), then 60 parts of the interval, each within 25% of the mean.
#[test]
fn schedule_prints_each_keys_offset_and_next_fire_then_the_histogram() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys: Vec<String> = (0..6000).map(|k| format!("course-{k}")).collect();
    let schedule = format!(
        r#"
[[jobs.schedules]]
name = "refresh"
route = "update"
path = "/courses/{{key}}/manual_update"
every = "1h"
keys = {keys:?}
"#
    );
    write_config(dir.path(), &schedule);
    let before = now_ms();
    let (code, stdout, stderr) = run_cli(&["schedule", "f.toml", "refresh"], dir.path());
    let after = now_ms();
    assert_eq!(code, 0, "{stderr}");
    println!("{}", stdout.split_once("\n\n").map_or("", |(_, h)| h));

    let lines = key_lines(&stdout);
    let printed: HashSet<&str> = lines.iter().map(|(k, _, _)| *k).collect();
    assert_eq!(printed, keys.iter().map(String::as_str).collect());
    let hour = 3_600_000u64;
    let mut previous = 0;
    for (key, seconds, next) in lines {
        let at = offset("refresh", key, Duration::from_secs(3600));
        let ms = u64::try_from(at.as_millis()).expect("ms");
        assert_eq!(seconds, format!("{}.{:03}", ms / 1000, ms % 1000), "{key}");
        assert!(ms >= previous, "not in fire order at {key}");
        previous = ms;
        // The first instant after the moment the command ran.
        let first_after = |now: u64| {
            let start = now - now % hour + ms;
            if start > now {
                start
            } else {
                start + hour
            }
        };
        let candidates = [rfc3339(first_after(before)), rfc3339(first_after(after))];
        assert!(
            candidates.iter().any(|c| c == next),
            "{key}: {next} not in {candidates:?}"
        );
    }

    let parts: Vec<u32> = stdout
        .lines()
        .filter(|l| l.starts_with("part "))
        .map(|l| {
            l.split_whitespace()
                .nth(4)
                .expect("count")
                .parse()
                .expect("number")
        })
        .collect();
    assert_eq!(parts.len(), 60, "{stdout}");
    assert_eq!(parts.iter().sum::<u32>(), 6000);
    assert!(parts.iter().all(|n| (75..=125).contains(n)), "{parts:?}");
}

/// A plain HTTP server answering every request with `body` as JSON, on a thread.
fn json_server(body: &'static str) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// The keys of `keys-url` are fetched as the scheduler fetches them, beside the static ones.
#[test]
fn schedule_fetches_the_keys_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let list = json_server(r#"["u1", 7, {"not": "a key"}]"#);
    let schedule = format!(
        r#"
[[jobs.schedules]]
name = "fetched"
route = "update"
path = "/courses/{{key}}/manual_update"
every = "10m"
keys = ["a"]
keys-url = "http://{list}/courses.json"
"#
    );
    write_config(dir.path(), &schedule);
    let (code, stdout, stderr) = run_cli(&["schedule", "f.toml", "fetched"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    let printed: HashSet<&str> = key_lines(&stdout).iter().map(|(k, _, _)| *k).collect();
    assert_eq!(printed, HashSet::from(["a", "u1", "7"]), "{stdout}");
}

/// An unknown name lists the schedules; a key list that cannot be fetched is an error, not
/// a plan without those keys.
#[test]
fn schedule_names_an_unknown_schedule_or_an_unreachable_keys_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let schedule = format!(
        r#"
[[jobs.schedules]]
name = "fetched"
route = "update"
path = "/courses/{{key}}/manual_update"
every = "10m"
keys = ["a"]
keys-url = "http://{closed}/courses.json"
"#
    );
    write_config(dir.path(), &schedule);
    let (code, stdout, stderr) = run_cli(&["schedule", "f.toml", "nope"], dir.path());
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(
        stderr.contains("f.toml: no schedule named `nope` (schedules: fetched)"),
        "{stderr}"
    );
    let (code, stdout, stderr) = run_cli(&["schedule", "f.toml", "fetched"], dir.path());
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(
        stderr.contains(&format!(
            "schedule `fetched`: keys-url http://{closed}/courses.json:"
        )),
        "{stderr}"
    );
}
