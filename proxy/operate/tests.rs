//! The state of actions: applying deploys to a config, the file, the token.

use super::*;
use crate::upstream::{Balance, Ejection};
use std::time::Duration;

fn pool(addrs: &[&str]) -> PoolSettings {
    PoolSettings {
        backends: addrs
            .iter()
            .map(|a| Backend {
                addr: crate::upstream::BackendAddr::Tcp(a.parse().unwrap()),
                weight: 2,
                drain: false,
            })
            .collect(),
        backends_file: None,
        balance: Balance::LeastBusy,
        ejection: Ejection {
            after: 3,
            duration: Duration::from_secs(10),
        },
        health: None,
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        non_idempotent_max_idle: Duration::from_secs(1),
        upgraded: crate::upgraded::UpgradedSettings {
            max: 10,
            idle_timeout: Duration::from_secs(5),
        },
        connect_retries: 1,
        admission: None,
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn a_deploy_replaces_the_backends_until_the_config_changes_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/state.json");
    let ops = Operations::load(&path);
    ops.update(|s| {
        s.deployed.insert(
            "app".into(),
            Deployed {
                targets: vec![addr("127.0.0.1:4000")],
                replaced: vec![addr("127.0.0.1:3000")],
                draining: vec![addr("127.0.0.1:3000")],
            },
        );
    })
    .unwrap();
    let mut pools = BTreeMap::from([("app".to_string(), pool(&["127.0.0.1:3000"]))]);
    ops.apply(&mut pools);
    let backends = &pools["app"].backends;
    assert_eq!(
        addresses(backends),
        vec![addr("127.0.0.1:4000"), addr("127.0.0.1:3000")]
    );
    assert!(!backends[0].drain && backends[1].drain);
    assert_eq!(backends[1].weight, 2, "a draining backend keeps its weight");

    // Written without the in-memory drain; read back by a restarted frontdoor.
    let again = Operations::load(&path);
    let deployed = &again.state().deployed["app"];
    assert_eq!(deployed.targets, vec![addr("127.0.0.1:4000")]);
    assert!(deployed.draining.is_empty());
    let mut pools = BTreeMap::from([("app".to_string(), pool(&["127.0.0.1:3000"]))]);
    again.apply(&mut pools);
    assert_eq!(
        addresses(&pools["app"].backends),
        vec![addr("127.0.0.1:4000")]
    );

    // The operator lists other backends in the config: the config wins, for good.
    let mut pools = BTreeMap::from([("app".to_string(), pool(&["127.0.0.1:5000"]))]);
    again.apply(&mut pools);
    assert_eq!(
        addresses(&pools["app"].backends),
        vec![addr("127.0.0.1:5000")]
    );
    assert!(again.state().deployed.is_empty());
    assert!(Operations::load(&path).state().deployed.is_empty());
}

#[test]
fn maintenance_and_pause_are_per_pool_or_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let ops = Operations::load(&dir.path().join("state.json"));
    assert!(!ops.in_maintenance("app"));
    ops.update(|s| {
        s.maintenance.insert("app".into());
        s.paused.insert("jobs".into());
    })
    .unwrap();
    assert!(ops.in_maintenance("app") && !ops.in_maintenance("api"));
    assert!(ops.paused("jobs") && !ops.paused("app"));
    ops.update(|s| {
        s.maintenance.insert(EVERY_POOL.into());
    })
    .unwrap();
    assert!(ops.in_maintenance("api"));
}

#[test]
fn an_unreadable_state_file_is_set_aside_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, "{not json").unwrap();
    assert_eq!(*Operations::load(&path).state(), State::default());
}

#[test]
fn the_token_matches_itself_only() {
    let token = Token::new("0123456789abcdef".into());
    assert!(token.matches("0123456789abcdef"));
    for other in [
        "0123456789abcdeF",
        "0123456789abcde",
        "0123456789abcdefg",
        "",
    ] {
        assert!(!token.matches(other), "{other}");
    }
    assert_eq!(format!("{token:?}"), "Token(…)", "never logged");
}
