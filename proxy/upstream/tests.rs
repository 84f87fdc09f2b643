//! Selection, retries and the peer each attempt gets.

use super::*;

fn settings(backends: &[(&str, u32, bool)], balance: Balance, retries: usize) -> PoolSettings {
    PoolSettings {
        backends: backends
            .iter()
            .filter_map(|(a, weight, drain)| {
                Some(Backend {
                    addr: BackendAddr::Tcp(a.parse().ok()?),
                    weight: *weight,
                    drain: *drain,
                })
            })
            .collect(),
        backends_file: None,
        balance,
        ejection: Ejection {
            after: 3,
            duration: Duration::from_secs(10),
        },
        health: None,
        connect_timeout: Duration::from_millis(100),
        read_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        non_idempotent_max_idle: Duration::from_secs(1),
        upgraded: UpgradedSettings {
            max: 10,
            idle_timeout: Duration::from_secs(5),
        },
        connect_retries: retries,
        admission: None,
    }
}

fn pool(backends: &[&str], retries: usize) -> Pool {
    let list: Vec<(&str, u32, bool)> = backends.iter().map(|b| (*b, 1, false)).collect();
    Pool::new("app", settings(&list, Balance::RoundRobin, retries), None)
}

fn port(peer: &HttpPeer) -> u16 {
    peer._address.as_inet().map_or(0, |a| a.port())
}

#[test]
fn round_robin_then_next_backend_on_retry() {
    let p = pool(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], 1);
    let mut a = Attempts::default();
    assert_eq!(port(&p.peer(&mut a)), 1);
    assert!(p.may_retry_connect(&a));
    assert_eq!(port(&p.peer(&mut a)), 2);
    assert!(!p.may_retry_connect(&a));
    let mut b = Attempts::default();
    assert_eq!(port(&p.peer(&mut b)), 3);
}

#[test]
fn a_request_lost_on_a_reused_connection_goes_again_once_to_its_backend_anew() {
    let p = pool(&["127.0.0.1:1", "127.0.0.1:2"], 1);
    let mut a = Attempts::default();
    let first = p.peer(&mut a);
    assert_eq!(first.group_key, 0, "the ordinary keep-alive pool");
    let lost = reuse::Failure {
        reused: true,
        before_response: true,
        idempotent: true,
        body_replayable: true,
    };
    assert!(a.resend(&lost));
    let again = p.peer(&mut a);
    assert_eq!(port(&again), port(&first));
    assert_ne!(again.group_key, 0, "a new connection");
    assert!(!a.resend(&lost), "at most once");
    // A failed connect of the new connection still moves to the other backend.
    assert!(p.connect_failed(&a));
    assert_ne!(port(&p.peer(&mut a)), port(&first));
}

#[test]
fn weighted_round_robin_skips_draining_and_down_backends() {
    let list = [
        ("127.0.0.1:1", 2, false),
        ("127.0.0.1:2", 1, false),
        ("127.0.0.1:3", 5, true),
    ];
    let p = Pool::new("app", settings(&list, Balance::RoundRobin, 1), None);
    let ports: Vec<u16> = (0..6)
        .map(|_| port(&p.peer(&mut Attempts::default())))
        .collect();
    assert_eq!(ports, [1, 2, 1, 1, 2, 1]);
    // Backend 1 ejected: everything goes to 2.
    let ejection = p.settings.ejection;
    for _ in 0..3 {
        p.states[0].connect_failed(ejection);
    }
    assert!((0..4).all(|_| port(&p.peer(&mut Attempts::default())) == 2));
    p.states[1].connect_failed(ejection);
    p.states[1].connect_failed(ejection);
    assert!(p.any_up());
    p.states[1].connect_failed(ejection);
    assert!(!p.any_up(), "the draining backend does not count");
}

#[test]
fn least_busy_follows_requests_in_flight_relative_to_weight() {
    let list = [("127.0.0.1:1", 1, false), ("127.0.0.1:2", 2, false)];
    let p = Pool::new("app", settings(&list, Balance::LeastBusy, 1), None);
    let mut held = Vec::new();
    let mut on = [0, 0];
    for _ in 0..6 {
        let mut a = Attempts::default();
        on[usize::from(port(&p.peer(&mut a))) - 1] += 1;
        held.push(a);
    }
    assert_eq!(on, [2, 4]);
    drop(held);
    assert!(p.states.iter().all(|s| s.in_flight() == 0));
}

#[test]
fn hashing_keeps_a_key_on_one_backend_and_a_retry_moves_it() {
    let list = [
        ("127.0.0.1:1", 1, false),
        ("127.0.0.1:2", 1, false),
        ("127.0.0.1:3", 1, false),
    ];
    let p = Pool::new(
        "app",
        settings(&list, Balance::Hash(HashKey::Path), 2),
        None,
    );
    let head = |path: &str| RequestHeader::build("GET", path.as_bytes(), None).unwrap();
    let mut seen = std::collections::HashSet::new();
    for k in 0..30 {
        let path = format!("/courses/{k}");
        let first = port(&p.peer(&mut p.attempts_for(&head(&path), None)));
        for _ in 0..3 {
            assert_eq!(
                port(&p.peer(&mut p.attempts_for(&head(&path), None))),
                first
            );
        }
        seen.insert(first);
    }
    assert_eq!(seen.len(), 3);
    let mut a = p.attempts_for(&head("/x"), None);
    let first = port(&p.peer(&mut a));
    assert!(p.connect_failed(&a));
    assert_ne!(port(&p.peer(&mut a)), first);
}
