//! `frontdoor check`, like `nginx -t`.

use crate::common::*;
use std::path::Path;

#[test]
fn check_prints_the_compiled_route_table_in_match_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    TestCa::new().issue(dir.path(), "localhost", &["localhost"]);
    let rest = r#"
[pools.app]
backends = ["127.0.0.1:3000"]

[[routes]]
name = "catch-all"
path = "/{rest*}"
pool = "app"

[[routes]]
name = "course"
path = "/courses/{school}/{title}"
pool = "app"
"#;
    std::fs::write(dir.path().join("f.toml"), config_text(Ports::new(), rest)).expect("write");
    let (code, stdout, stderr) = run_cli(&["check", "f.toml"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    let course = stdout.find("course").expect("course listed");
    let catch_all = stdout.find("catch-all").expect("catch-all listed");
    assert!(course < catch_all, "most specific first:\n{stdout}");
    assert!(
        stdout.contains("f.toml: ok (2 routes, 1 pools, 1 certificates)"),
        "{stdout}"
    );
}

#[test]
fn check_reports_every_error_as_file_line_col_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    TestCa::new().issue(dir.path(), "localhost", &["localhost"]);
    let rest = r#"
[pools.app]
backends = ["127.0.0.1:3000"]
read-timeout = "30"

[[routes]]
name = "course"
path = "/courses/{school"
pool = "app"

[[routes]]
name = "course"
path = "/"
pool = "missing"
"#;
    std::fs::write(dir.path().join("bad.toml"), config_text(Ports::new(), rest)).expect("write");
    let (code, _, stderr) = run_cli(&["check", "bad.toml"], dir.path());
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        vec![
            "bad.toml:19:16: pools.app.read-timeout: `30` needs a unit: ms, s, m or h",
            "bad.toml:23:8: routes[0].path: `{school`: a parameter must be a whole segment, like `{name}` or `{name*}`",
            "bad.toml:27:8: routes[1].name: route name `course` is used twice",
            "bad.toml:29:8: routes[1].pool: no pool named `missing` (pools: app)",
            "bad.toml: 4 error(s)",
        ]
    );
}

#[test]
fn check_names_the_place_of_a_syntax_error_or_unknown_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("typo.toml"),
        "[listen]\nhttps = \"127.0.0.1:1\"\nadmn = \"127.0.0.1:2\"\n",
    )
    .expect("write");
    let (code, _, stderr) = run_cli(&["check", "typo.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("typo.toml:3:1: listen.admn: unknown field `admn`"),
        "{stderr}"
    );
}

/// Every file in `config/` is a valid config (with the dev certificates it names).
#[test]
fn every_example_config_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("config")).expect("mkdir");
    frontdoor::tls::ensure_dev_certificate(
        &dir.path().join("certs/dev/cert.pem"),
        &dir.path().join("certs/dev/key.pem"),
    )
    .expect("dev cert");
    // The app's public/ pages the configs name in [error-pages], its storage/ ([sendfile]).
    std::fs::create_dir_all(dir.path().join("public")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("storage")).expect("mkdir");
    for page in ["500.html", "503.html", "maintenance.html"] {
        std::fs::write(dir.path().join("public").join(page), "<h1>page</h1>\n").expect("page");
    }
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("config")).expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .to_string();
            std::fs::copy(&path, dir.path().join("config").join(&name)).expect("copy");
            let (code, stdout, stderr) = run_cli(&["check", &format!("config/{name}")], dir.path());
            assert_eq!(code, 0, "{name}:\n{stderr}");
            assert!(stdout.contains(": ok ("), "{name}: {stdout}");
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "config/ holds the demo and the dashboard configs"
    );
}
