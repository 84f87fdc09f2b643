//! Validation of whole files: defaults, errors with their place, each section.

use super::*;
use crate::upstream::{Balance, HashKey};

fn with_cert(dir: &Path) {
    crate::tls::ensure_dev_certificate(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
}

const GOOD: &str = r#"
[listen]
https = "127.0.0.1:8443"
http = "127.0.0.1:8080"

[[tls.certificates]]
cert = "cert.pem"
key = "key.pem"

[pools.app]
backends = ["127.0.0.1:3000"]
connect-timeout = "250ms"

[[routes]]
name = "all"
path = "/{rest*}"
pool = "app"
"#;

#[test]
fn a_good_file_validates_with_defaults() {
    let dir = tempfile::tempdir().unwrap();
    with_cert(dir.path());
    let config = Config::parse(&dir.path().join("f.toml"), GOOD).unwrap();
    assert_eq!(config.server.threads.get(), 2);
    assert_eq!(config.listen.admin, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(config.listen.redirect_https_port, 8443);
    assert_eq!(
        config.pools["app"].connect_timeout,
        Duration::from_millis(250)
    );
    assert_eq!(config.routes.len(), 1);
}

#[test]
fn every_semantic_error_is_reported_with_line_col_and_key() {
    let dir = tempfile::tempdir().unwrap();
    with_cert(dir.path());
    let bad = GOOD
        .replace("\"250ms\"", "\"250\"")
        .replace("pool = \"app\"", "pool = \"nope\"")
        .replace("/{rest*}", "/{rest*");
    let errors = Config::parse(&dir.path().join("f.toml"), &bad)
        .unwrap_err()
        .0;
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 3, "{text:?}");
    assert!(
        text[0].contains(":12:19: pools.app.connect-timeout: `250` needs a unit"),
        "{text:?}"
    );
    assert!(text[1].contains(":16:8: routes[0].path:"), "{text:?}");
    assert!(
        text[2].contains(":17:8: routes[0].pool: no pool named `nope`"),
        "{text:?}"
    );
}

#[test]
fn limits_have_defaults_per_route_overrides_and_refuse_zero() {
    let dir = tempfile::tempdir().unwrap();
    with_cert(dir.path());
    let config = Config::parse(&dir.path().join("f.toml"), GOOD).unwrap();
    assert_eq!(config.limits, crate::hostile::Limits::default());
    assert_eq!(config.routes[0].max_body, None);

    let tuned = GOOD.replace(
        "[pools.app]",
        "[proxy]\nmax-header-bytes = \"16KiB\"\nheader-timeout = \"5s\"\nencoded-slashes = \"pass\"\n\n[pools.app]",
    ) + "max-body = \"1GiB\"\n";
    let config = Config::parse(&dir.path().join("f.toml"), &tuned).unwrap();
    assert_eq!(config.limits.max_header_bytes, 16 * 1024);
    assert_eq!(config.limits.header_timeout, Duration::from_secs(5));
    assert_eq!(
        config.limits.encoded_slashes,
        crate::hostile::path::EncodedSlashes::Pass
    );
    assert_eq!(config.routes[0].max_body, Some(1 << 30));

    let bad = GOOD.replace(
        "[pools.app]",
        "[proxy]\nmax-headers = 0\nmax-uri-bytes = \"0B\"\nbody-timeout = \"0s\"\nencoded-slashes = \"sometimes\"\n\n[pools.app]",
    ) + "max-body = \"big\"\n";
    let errors = Config::parse(&dir.path().join("f.toml"), &bad)
        .unwrap_err()
        .0;
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "proxy.max-headers",
            "proxy.max-uri-bytes",
            "proxy.body-timeout",
            "proxy.encoded-slashes",
            "routes[0].max-body"
        ]
    );
}

#[test]
fn h2_limits_default_like_nginx_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    with_cert(dir.path());
    let path = dir.path().join("f.toml");
    let config = Config::parse(&path, GOOD).unwrap();
    assert_eq!(
        config.h2,
        H2Settings {
            max_concurrent_streams: 128,
            max_header_list_size: 64 * 1024,
        }
    );
    let set = |streams: &str, size: &str| {
        let proxy = format!(
            "[proxy]\nh2-max-concurrent-streams = {streams}\nh2-max-header-list-size = \"{size}\"\n"
        );
        Config::parse(&path, &format!("{proxy}{GOOD}"))
    };
    assert_eq!(set("10", "1MiB").unwrap().h2.max_header_list_size, 1 << 20);
    let errors = set("0", "64MiB").unwrap_err().0;
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{text:?}");
    assert!(
        text[0].contains(":2:29: proxy.h2-max-concurrent-streams: must be from 1 to 10000"),
        "{text:?}"
    );
    assert!(
        text[1].contains(":3:27: proxy.h2-max-header-list-size: must be from 1KiB to 16MiB"),
        "{text:?}"
    );
}

#[test]
fn unknown_keys_and_syntax_errors_name_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    let errors = Config::parse(&path, "[listen]\nhttps = \"127.0.0.1:1\"\nhtps = 1\n")
        .unwrap_err()
        .0;
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].line, errors[0].key.as_str()), (3, "listen.htps"));
    assert!(
        errors[0].message.contains("unknown field"),
        "{}",
        errors[0].message
    );

    let errors = Config::parse(&path, "[listen\n").unwrap_err().0;
    assert_eq!(errors[0].line, 1);
}

#[test]
fn a_bad_certificate_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "garbage").unwrap();
    std::fs::write(dir.path().join("key.pem"), "garbage").unwrap();
    let errors = Config::parse(&dir.path().join("f.toml"), GOOD)
        .unwrap_err()
        .0;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].key, "tls.certificates[0].cert");
    assert!(
        errors[0].message.contains("no PEM certificate"),
        "{}",
        errors[0].message
    );
}

#[test]
fn hint_templates_naming_unknown_params_are_errors_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    with_cert(dir.path());
    let text = GOOD.replace("/{rest*}", "/courses/{school}/{title}")
        + "[routes.hints]\npreload = [{ href = \"/c/{school}/{course}.json\" }, { href = \"/x\" }]\n";
    let errors = Config::parse(&dir.path().join("f.toml"), &text)
        .unwrap_err()
        .0;
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{text:?}");
    assert!(
        text[0].contains(
            ":19:21: routes[0].hints.preload[0].href: `/c/{school}/{course}.json` names `{course}`"
        ),
        "{text:?}"
    );
    assert!(
        text[1].contains("routes[0].hints.preload[1].href: cannot tell what `/x` is"),
        "{text:?}"
    );
}

#[test]
fn hints_validate_into_the_route() {
    let dir = tempfile::tempdir().unwrap();
    with_cert(dir.path());
    let text = GOOD.replace("/{rest*}", "/courses/{school}/{title}")
        + "[routes.hints]\nearly-hints = true\nprefetch = [{ href = \"/c/{title}\", as = \"fetch\" }]\n[routes.hints.defer-scripts]\ndeny = [\"/assets/jquery-*\"]\n";
    let config = Config::parse(&dir.path().join("f.toml"), &text).unwrap();
    let hints = &config.routes[0].hints;
    assert!(hints.early_hints && hints.learn);
    assert_eq!(hints.links.len(), 1);
    let defer = hints.defer_scripts.as_ref().unwrap();
    assert!(!defer.applies_to("/assets/jquery-1.js"));
    assert!(defer.applies_to("/assets/app-1.js"));
}

#[test]
fn backends_take_strings_or_tables_with_weight_and_drain() {
    let dir = tempfile::tempdir().unwrap();
    with_cert(dir.path());
    let text = GOOD.replace(
        r#"backends = ["127.0.0.1:3000"]"#,
        r#"backends = ["127.0.0.1:3000", { address = "127.0.0.1:3001", weight = 3 }, { address = "127.0.0.1:3002", drain = true }]
balance = "hash"
hash-key = "header:X-User""#,
    ) + "[pools.app.health]\ninterval = \"500ms\"\n";
    let config = Config::parse(&dir.path().join("f.toml"), &text).unwrap();
    let app = &config.pools["app"];
    let weights: Vec<(u32, bool)> = app.backends.iter().map(|b| (b.weight, b.drain)).collect();
    assert_eq!(weights, [(1, false), (3, false), (1, true)]);
    assert!(matches!(app.balance, Balance::Hash(HashKey::Header(_))));
    let health = app.health.as_ref().unwrap();
    assert_eq!(
        (health.path.as_str(), health.rise, health.fall),
        ("/healthz", 2, 3)
    );
    assert_eq!(health.interval, Duration::from_millis(500));
    assert_eq!(app.ejection.after, 3);
}

#[test]
fn bad_backend_entries_are_errors_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    with_cert(dir.path());
    let text = GOOD.replace(
        r#"backends = ["127.0.0.1:3000"]"#,
        r#"backends = ["127.0.0.1:3000", { address = "127.0.0.1:3000" }, { address = "127.0.0.1:3001", weight = 0 }]
balance = "fastest""#,
    );
    let errors = Config::parse(&dir.path().join("f.toml"), &text)
        .unwrap_err()
        .0;
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 3, "{text:?}");
    assert!(
        text[0].contains("pools.app.backends[1]: 127.0.0.1:3000 is listed twice"),
        "{text:?}"
    );
    assert!(
        text[1].contains("pools.app.backends[2].weight: must be"),
        "{text:?}"
    );
    assert!(text[2].contains("pools.app.balance: `fastest`"), "{text:?}");
}

#[test]
fn a_backends_file_adds_backends_and_its_errors_name_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    with_cert(dir.path());
    let list = "# deploy 42\n127.0.0.1:3001 2\n  127.0.0.1:3002 drain # leaving\n\n";
    std::fs::write(dir.path().join("backends.txt"), list).unwrap();
    let text = GOOD.replace(
        r#"backends = ["127.0.0.1:3000"]"#,
        r#"backends = ["127.0.0.1:3000"]
backends-file = "backends.txt""#,
    );
    let path = dir.path().join("f.toml");
    let config = Config::parse(&path, &text).unwrap();
    let app = &config.pools["app"];
    let got: Vec<(u16, u32, bool)> = app
        .backends
        .iter()
        .map(|b| (b.addr.tcp().map_or(0, |a| a.port()), b.weight, b.drain))
        .collect();
    assert_eq!(got, [(3000, 1, false), (3001, 2, false), (3002, 1, true)]);
    assert_eq!(config.watched_files(), [dir.path().join("backends.txt")]);

    std::fs::write(
        dir.path().join("backends.txt"),
        format!("{list}127.0.0.1:3003 heavy\n127.0.0.1:3000\n"),
    )
    .unwrap();
    let errors = Config::parse(&path, &text).unwrap_err().0;
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{text:?}");
    assert!(
        text[0].contains("backends.txt:5:1: pools.app.backends-file: `heavy`"),
        "{text:?}"
    );
    assert!(
        text[1]
            .contains("backends.txt:6:1: pools.app.backends-file: 127.0.0.1:3000 is listed twice"),
        "{text:?}"
    );
}

#[test]
fn pools_have_keep_alive_and_upgraded_connection_defaults_and_refuse_zero() {
    let dir = tempfile::tempdir().unwrap();
    with_cert(dir.path());
    let path = dir.path().join("f.toml");
    let app = &Config::parse(&path, GOOD).unwrap().pools["app"];
    assert_eq!(app.idle_timeout, Duration::from_secs(4));
    assert_eq!(app.non_idempotent_max_idle, Duration::from_secs(2));
    assert_eq!(app.upgraded.max, 1000);
    assert_eq!(app.upgraded.idle_timeout, Duration::from_secs(300));

    let tuned = GOOD.replace(
        "connect-timeout = \"250ms\"",
        "connect-timeout = \"250ms\"\nidle-timeout = \"15s\"\nnon-idempotent-max-idle = \"0s\"\nmax-upgraded = 50\nupgraded-idle-timeout = \"1h\"",
    );
    let app = &Config::parse(&path, &tuned).unwrap().pools["app"];
    assert_eq!(app.idle_timeout, Duration::from_secs(15));
    assert_eq!(app.non_idempotent_max_idle, Duration::ZERO);
    assert_eq!(app.upgraded.max, 50);
    assert_eq!(app.upgraded.idle_timeout, Duration::from_secs(3600));

    let bad = GOOD.replace(
        "connect-timeout = \"250ms\"",
        "connect-timeout = \"250ms\"\nmax-upgraded = 0\nupgraded-idle-timeout = \"0s\"",
    );
    let errors = Config::parse(&path, &bad).unwrap_err().0;
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{text:?}");
    assert!(
        text[0].contains(":13:16: pools.app.max-upgraded:"),
        "{text:?}"
    );
    assert!(
        text[1].contains(":14:25: pools.app.upgraded-idle-timeout: must be more than 0s"),
        "{text:?}"
    );
}

#[test]
fn request_buffering_is_on_by_default_bounded_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    with_cert(dir.path());
    let path = dir.path().join("f.toml");
    let config = Config::parse(&path, GOOD).unwrap();
    assert_eq!(
        config.request_buffering,
        crate::buffering::request::Settings::default()
    );
    assert_eq!(config.request_buffering.memory_per_body, 1 << 20);
    assert_eq!(config.request_buffering.memory_total, 64 << 20);
    assert!(config.routes[0].request_buffering);

    std::fs::create_dir(dir.path().join("spill")).unwrap();
    let tuned = GOOD.replace(
        "[pools.app]",
        "[proxy]\nrequest-buffer-size = \"0B\"\nrequest-buffer-memory = \"8MiB\"\nrequest-buffer-dir = \"spill\"\n\n[pools.app]",
    ) + "request-buffering = false\n";
    let config = Config::parse(&path, &tuned).unwrap();
    assert_eq!(config.request_buffering.memory_per_body, 0);
    assert_eq!(config.request_buffering.memory_total, 8 << 20);
    assert_eq!(
        config.request_buffering.dir,
        std::fs::canonicalize(dir.path().join("spill")).unwrap()
    );
    assert!(!config.routes[0].request_buffering);

    let bad = GOOD.replace(
        "[pools.app]",
        "[proxy]\nrequest-buffer-size = \"lots\"\nrequest-buffer-memory = \"-1MiB\"\nrequest-buffer-dir = \"missing\"\n\n[pools.app]",
    );
    let errors = Config::parse(&path, &bad).unwrap_err().0;
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "proxy.request-buffer-size",
            "proxy.request-buffer-memory",
            "proxy.request-buffer-dir"
        ]
    );
    assert!(errors[2].to_string().contains(":13:22:"), "{}", errors[2]);
    assert!(
        errors[2]
            .to_string()
            .contains("is not an existing directory"),
        "{}",
        errors[2]
    );
}

#[test]
fn unix_socket_backends_in_the_list_and_the_file_resolve_against_their_folder() {
    let dir = tempfile::tempdir().unwrap();
    with_cert(dir.path());
    std::fs::create_dir(dir.path().join("deploy")).unwrap();
    let list = "unix:///run/app/puma-blue.sock 2\nunix:puma-green.sock drain\n";
    std::fs::write(dir.path().join("deploy/backends.txt"), list).unwrap();
    let text = GOOD.replace(
        r#"backends = ["127.0.0.1:3000"]"#,
        r#"backends = ["unix:/run/app/puma.sock", "unix:tmp/puma.sock"]
backends-file = "deploy/backends.txt""#,
    );
    let config = Config::parse(&dir.path().join("f.toml"), &text).unwrap();
    let got: Vec<String> = config.pools["app"]
        .backends
        .iter()
        .map(|b| format!("{} {} {}", b.addr, b.weight, b.drain))
        .collect();
    let base = dir.path().display();
    assert_eq!(
        got,
        [
            "unix:/run/app/puma.sock 1 false".to_string(),
            format!("unix:{base}/tmp/puma.sock 1 false"),
            "unix:/run/app/puma-blue.sock 2 false".to_string(),
            format!("unix:{base}/deploy/puma-green.sock 1 true"),
        ]
    );
    let twice = GOOD.replace(
        r#"backends = ["127.0.0.1:3000"]"#,
        r#"backends = ["unix:/run/app/puma.sock", "unix:///run/app/puma.sock"]"#,
    );
    let errors = Config::parse(&dir.path().join("f.toml"), &twice).unwrap_err();
    assert!(
        errors
            .to_string()
            .contains("unix:/run/app/puma.sock is listed twice"),
        "{errors}"
    );
}
