//! Offsets, spread, fires across windows and reloads, and the printed plan.

use super::*;
use std::collections::HashMap;

const HOUR: u64 = 3_600_000;

fn schedule(every: Duration, slots: u32) -> Schedule {
    Schedule {
        name: "refresh".into(),
        route: "r".into(),
        method: Method::POST,
        path: "/courses/{key}/manual_update".into(),
        every,
        slots: NonZeroU32::new(slots).unwrap(),
        keys: Vec::new(),
        keys_url: None,
    }
}

fn keys(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|k| format!("course-{k}")).collect()
}

fn plan(every: Duration, slots: u32, keys: &[String]) -> Plan {
    Plan::new(&schedule(every, slots), keys.iter().map(String::as_str))
}

fn offsets(plan: &Plan) -> HashMap<&str, u64> {
    plan.keys()
        .iter()
        .map(|(at, k)| (k.as_str(), *at))
        .collect()
}

/// 6,000 keys over 60 equal parts of the interval: every part within 25% of the mean
/// (100). Prints the histogram (`cargo test --lib schedule -- --nocapture`).
#[test]
fn keys_spread_evenly_over_the_interval() {
    let p = plan(Duration::from_secs(3600), 60, &keys(0..6000));
    let histogram = p.histogram(NonZeroU32::new(60).unwrap());
    for (i, n) in histogram.iter().enumerate() {
        println!("part {i:2} {n:4} {}", "#".repeat(*n as usize / 4));
    }
    assert_eq!(histogram.iter().sum::<u32>(), 6000);
    let (min, max) = (histogram.iter().min(), histogram.iter().max());
    assert!(
        min >= Some(&75) && max <= Some(&125),
        "{min:?}..{max:?}: {histogram:?}"
    );
}

/// Keys that differ only in their last characters do not bunch up: over 6,000 parts of
/// 0.6 s, the busiest holds a handful (raw FNV-1a's top bits put ten neighbours in one).
#[test]
fn neighbouring_keys_do_not_fire_together() {
    let p = plan(Duration::from_secs(3600), 60, &keys(0..6000));
    let fine = p.histogram(NonZeroU32::new(6000).unwrap());
    let busiest = fine.iter().max().copied().unwrap_or(0);
    assert!(busiest <= 8, "{busiest} keys within 0.6 s");
}

#[test]
fn a_key_keeps_its_offset_when_slots_or_other_keys_change() {
    let every = Duration::from_secs(3600);
    let base = plan(every, 60, &keys(0..1000));
    let before = offsets(&base);
    for changed in [
        plan(every, 61, &keys(0..1000)),
        plan(every, 30, &keys(0..1000)),
        plan(every, 61, &keys(0..1100)),
        plan(every, 30, &keys(300..900)),
    ] {
        for (key, at) in offsets(&changed) {
            if let Some(old) = before.get(key) {
                assert_eq!(*old, at, "{key} moved");
            }
        }
    }
    // Not a degenerate placement: the keys are all over the interval.
    let spread: std::collections::BTreeSet<u64> = before.values().map(|at| at / 60_000).collect();
    assert_eq!(spread.len(), 60);
}

#[test]
fn doubling_every_doubles_each_offset() {
    let keys = keys(0..1000);
    let hourly = offsets(&plan(Duration::from_secs(3600), 60, &keys))
        .into_iter()
        .map(|(k, at)| (k.to_string(), at))
        .collect::<HashMap<_, _>>();
    let two_hourly = plan(Duration::from_secs(7200), 60, &keys);
    for (at, key) in two_hourly.keys() {
        let once = hourly[key.as_str()];
        // Offsets are rounded down to the millisecond, so doubling may gain that one.
        assert!(
            (2 * once..=2 * once + 1).contains(at),
            "{key}: {once} ms in 1 h, {at} ms in 2 h"
        );
    }
    assert_eq!(
        offset("refresh", "course-7", Duration::from_secs(3600)),
        offset("refresh", "course-7", Duration::from_secs(3600)),
    );
}

/// Every key fires once per interval, exactly `every` apart, whatever the ticks.
#[test]
fn consecutive_fires_of_a_key_are_exactly_every_apart() {
    let p = plan(Duration::from_secs(3600), 10, &keys(0..500));
    let whole = p.due(10 * HOUR, 20 * HOUR);
    // The same window walked in uneven ticks: no instant lost or doubled between ticks.
    let mut ticked = Vec::new();
    let mut at = 10 * HOUR;
    for step in [1, 99, 12_345, HOUR - 7, 3, HOUR / 3].into_iter().cycle() {
        let until = (at + step).min(20 * HOUR);
        ticked.extend(p.due(at, until));
        at = until;
        if at == 20 * HOUR {
            break;
        }
    }
    assert_eq!(whole, ticked);
    let mut by_key: HashMap<&str, Vec<u64>> = HashMap::new();
    for (at, key) in whole {
        by_key.entry(key).or_default().push(at);
    }
    assert_eq!(by_key.len(), 500);
    for (key, fires) in by_key {
        assert_eq!(fires.len(), 10, "{key}: {fires:?}");
        assert!(
            fires.windows(2).all(|w| w[1] - w[0] == HOUR),
            "{key}: {fires:?}"
        );
        assert_eq!(fires[0] % HOUR, p.offset_of(key).unwrap());
    }
}

/// Runs the scheduler's decisions over `(from, to]` in uneven ticks, plan `a` up to
/// `reload` and plan `b` after it; each key's fires. It forgets after every tick (the
/// loop does on reloads and new key lists), so what it forgets must never matter.
fn across_reload(a: &Plan, b: &Plan, from: u64, reload: u64, to: u64) -> HashMap<String, Vec<u64>> {
    let mut fired = Fired::default();
    let named = schedule(Duration::from_secs(1), 1);
    let mut fires: HashMap<String, Vec<u64>> = HashMap::new();
    let mut at = from;
    for step in [1, 99, 12_345, HOUR - 7, 3, HOUR / 3, 777_777]
        .into_iter()
        .cycle()
    {
        let (plan, end) = if at < reload { (a, reload) } else { (b, to) };
        let until = (at + step).min(end);
        for (t, key) in fired.due("refresh", plan, at, until) {
            fires.entry(key.to_string()).or_default().push(t);
        }
        fired.forget(until, std::slice::from_ref(&named));
        at = until;
        if at == to {
            return fires;
        }
    }
    unreachable!()
}

/// A reload that changes `every` (and `slots`, and the keys) fires no key twice in an
/// interval and makes none skip one: every gap is at least the shorter interval, each key
/// takes the first instant of its new plan that is not too soon, and from there it fires
/// exactly once per new interval. Every fire is an instant of the plan in force.
#[test]
fn a_reload_neither_fires_a_key_twice_in_an_interval_nor_skips_one() {
    let minutes = |m: u64| Duration::from_secs(60 * m);
    let old_keys = keys(0..2000);
    let new_keys = keys(100..2100);
    for (old_every, new_every, slots) in [
        (minutes(60), minutes(120), (60, 60)),
        (minutes(120), minutes(60), (60, 61)),
        (minutes(60), minutes(90), (60, 30)),
        (minutes(90), minutes(60), (60, 60)),
        (minutes(60), minutes(25), (60, 60)),
        (minutes(60), minutes(60), (60, 30)),
    ] {
        let a = plan(old_every, slots.0, &old_keys);
        let b = plan(new_every, slots.1, &new_keys);
        let (ea, eb) = (a.every_ms(), b.every_ms());
        let shorter = ea.min(eb);
        let case = format!("{ea} ms -> {eb} ms");
        for reload in [10 * HOUR + 1_234_567, 13 * HOUR, 17 * HOUR + 2_999_999] {
            let to = reload + 6 * ea.max(eb);
            let fires = across_reload(&a, &b, 5 * HOUR, reload, to);
            let mut held_back = 0;
            for key in old_keys.iter().chain(&new_keys) {
                let at = fires.get(key).map(Vec::as_slice).unwrap_or_default();
                let (before, after): (Vec<u64>, Vec<u64>) = at.iter().partition(|t| **t <= reload);
                let (oa, ob) = (a.offset_of(key), b.offset_of(key));
                assert!(
                    before.iter().all(|t| oa == Some(t % ea)),
                    "{case}: {key} fired off plan a: {at:?}"
                );
                assert!(
                    after.iter().all(|t| ob == Some(t % eb)),
                    "{case}: {key} fired off plan b: {at:?}"
                );
                assert!(
                    at.windows(2).all(|w| w[1] - w[0] >= shorter),
                    "{case}: {key} fired twice in an interval: {at:?}"
                );
                let Some(ob) = ob else {
                    continue; // removed by the reload: no fire after it (checked above)
                };
                // The first instant of plan b after the reload that is not too soon.
                let mut expected = b.next_fire(ob, reload);
                if let Some(last) = before.last() {
                    held_back += usize::from(expected - last < shorter);
                    while expected - last < shorter {
                        expected += eb;
                    }
                    assert!(expected - last < ea + eb, "{case}: {key}");
                }
                assert_eq!(after.first(), Some(&expected), "{case}: {key}: {at:?}");
                assert!(
                    after.windows(2).all(|w| w[1] - w[0] == eb),
                    "{case}: {key} skipped an interval: {after:?}"
                );
                assert_eq!(
                    after.len() as u64,
                    (to - expected) / eb + 1,
                    "{case}: {key}: {after:?}"
                );
            }
            // The cases exercise the rule: with a new `every`, some keys' first new
            // instant came too soon after their last fire; with the same, none.
            if ea == eb {
                assert_eq!(held_back, 0, "{case}");
            } else {
                assert!(held_back > 0, "{case}: nothing was held back");
            }
        }
    }
}

#[test]
fn the_next_fire_is_the_first_instant_after_now() {
    let p = plan(Duration::from_secs(3600), 60, &keys(0..1));
    assert_eq!(p.next_fire(600_000, 10 * HOUR), 10 * HOUR + 600_000);
    assert_eq!(
        p.next_fire(600_000, 10 * HOUR + 600_000),
        11 * HOUR + 600_000
    );
    assert_eq!(p.next_fire(0, 10 * HOUR), 11 * HOUR);
}

#[test]
fn times_print_as_rfc3339_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(rfc3339(1_732_270_000_123), "2024-11-22T10:06:40.123Z");
    assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
}

#[test]
fn keys_urls_are_plain_http() {
    let resolve = |s: &str| s.parse::<SocketAddr>().map_err(|e| e.to_string());
    let url = KeysUrl::parse("http://127.0.0.1:3000/courses.json?all=1", resolve).unwrap();
    assert_eq!(url.addr, "127.0.0.1:3000".parse().unwrap());
    assert_eq!(
        (url.host.as_str(), url.path.as_str()),
        ("127.0.0.1:3000", "/courses.json?all=1")
    );
    assert!(KeysUrl::parse("https://127.0.0.1/x", resolve).is_err());
}
