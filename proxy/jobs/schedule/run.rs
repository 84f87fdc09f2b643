//! The scheduler loop: fires each schedule's due keys as jobs of its offload route, with the
//! memory of each key's last fire that carries a change of `every` across a reload.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{millis, Plan, Schedule};
use crate::jobs::rules::{CurrentRules, Rules};
use crate::jobs::store::{now_ms, Enqueued, NewJob};
use crate::jobs::Jobs;
use crate::template::path_segments;

/// Each key's last fire, remembered across ticks and reloads: what keeps a reload that changes
/// `every` from firing a key twice in an interval or making it skip one.
///
/// A new `every` moves each key's instants (its offset scales with the interval), so on the
/// instants alone a key that fired just before the reload could fire again just after it;
/// and waiting a whole new interval after each key's last fire would make a key whose
/// interval grew skip one (1 h → 2 h, a key 12 min into the hour, now 24 min into every
/// two: last fired at 11:12, it would pass over 12:24 and wait for 14:24). The rule: a key takes an instant of its current plan only if at least
/// the shorter of the two intervals (the one it last fired under, the current one) has passed
/// since its last fire. With `every` unchanged that always holds (the instants are exactly
/// `every` apart), so only a change feels it, and there each key takes the earliest instant
/// of its new plan that is not too soon:
/// - no key fires more often than the old or the new plan asks;
/// - no key passes over an instant it may take: from its first new fire on it fires once per
///   new interval, and that first fire comes less than its old interval plus one new one after
///   its last (what any switch between fixed instants can cost, when the old plan's next fire
///   was due just after the reload and the new plan's had just passed);
/// - every fire is an instant of the new plan, so the change spreads fires as evenly as the
///   plan does: no burst at the reload.
///
/// An instant whose lock another node holds counts as fired here too, so nodes that reload
/// together decide alike. The memory is the process's: a restart starts from the plan alone.
#[derive(Debug, Default)]
pub struct Fired {
    /// Schedule name → key → (instant, interval of the plan it fired under), both in ms.
    last: HashMap<String, HashMap<String, (u64, u64)>>,
}

impl Fired {
    /// The fires of `plan` (schedule `name`) in `(after, until]` that the rule lets through,
    /// in time order, each remembered as its key's last fire.
    pub fn due<'p>(
        &mut self,
        name: &str,
        plan: &'p Plan,
        after: u64,
        until: u64,
    ) -> Vec<(u64, &'p str)> {
        let mut fires = plan.due(after, until);
        if fires.is_empty() {
            return fires;
        }
        let every = plan.every_ms();
        let last = self.last.entry(name.to_string()).or_default();
        fires.retain(|(at, key)| {
            let allowed = last.get(*key).is_none_or(|(then, then_every)| {
                at.checked_sub(*then)
                    .is_some_and(|gap| gap >= every.min(*then_every))
            });
            if allowed {
                last.insert((*key).to_string(), (*at, every));
            }
            allowed
        });
        fires
    }

    /// Forgets what can hold no key back any more: fires older than their own interval (any
    /// later instant passes the rule) and schedules no longer in `schedules`.
    pub fn forget(&mut self, now: u64, schedules: &[Schedule]) {
        self.last
            .retain(|name, _| schedules.iter().any(|s| s.name == *name));
        for keys in self.last.values_mut() {
            keys.retain(|_, (then, every)| now.saturating_sub(*then) < *every);
        }
    }
}

/// Fires due keys of every schedule of the current config until the task is aborted.
pub async fn run(current: CurrentRules, jobs: Arc<Jobs>) {
    let mut last = now_ms();
    // Fetched key lists by schedule name, with the interval they were fetched for (none:
    // fetch again now).
    let mut fetched: HashMap<String, (Option<u64>, Vec<String>)> = HashMap::new();
    // Plans by schedule name, for the rules `planned` (rebuilt on reload or a new list).
    let mut plans: HashMap<String, Plan> = HashMap::new();
    let mut planned: Option<Arc<dyn Rules>> = None;
    let mut fired = Fired::default();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = now_ms();
        if now <= last {
            // The clock went back: the instants up to `last` were seen already.
            continue;
        }
        let rules = current();
        if !planned.as_ref().is_some_and(|p| Arc::ptr_eq(p, &rules)) {
            reloaded(&mut fetched, planned.as_deref(), rules.as_ref());
            plans.clear();
            fired.forget(now, rules.schedules());
            planned = Some(rules.clone());
        }
        for schedule in rules.schedules() {
            if let Some(url) = &schedule.keys_url {
                let cycle = now / millis(schedule.every);
                if fetched
                    .get(&schedule.name)
                    .is_none_or(|(c, _)| *c != Some(cycle))
                {
                    let keys = match url.fetch(&jobs.connector).await {
                        Ok(keys) => keys,
                        Err(e) => {
                            tracing::warn!("jobs: schedule {}: keys-url: {e}", schedule.name);
                            fetched
                                .remove(&schedule.name)
                                .map(|(_, k)| k)
                                .unwrap_or_default()
                        }
                    };
                    fetched.insert(schedule.name.clone(), (Some(cycle), keys));
                    plans.remove(&schedule.name);
                    fired.forget(now, rules.schedules());
                }
            }
            let plan = plans.entry(schedule.name.clone()).or_insert_with(|| {
                let dynamic = fetched.get(&schedule.name).map(|(_, k)| k.as_slice());
                let keys = schedule.keys.iter().chain(dynamic.unwrap_or_default());
                Plan::new(schedule, keys.map(String::as_str))
            });
            // Remembered as fired whatever the lock says: taken here, by another node, or
            // lost to a store error, the instant is gone either way.
            for (at, key) in fired.due(&schedule.name, plan, last, now) {
                // Named by the instant: every node running this plan takes the same lock.
                let lock = format!("schedule\u{0}{}\u{0}{key}\u{0}{at}", schedule.name);
                match jobs.store.try_lock(&lock, schedule.every).await {
                    Ok(true) => fire(rules.as_ref(), &jobs, schedule, key).await,
                    Ok(false) => {}
                    Err(e) => tracing::warn!("jobs: schedule {}: {e}", schedule.name),
                }
            }
        }
        last = now;
    }
}

/// Fetched key `lists` after a reload from `before` to `after`: a list from a URL its
/// schedule no longer names is dropped, and a new URL is fetched at once rather than at the
/// next interval.
fn reloaded(
    lists: &mut HashMap<String, (Option<u64>, Vec<String>)>,
    before: Option<&dyn Rules>,
    after: &dyn Rules,
) {
    let url = |rules: &dyn Rules, name: &str| {
        let schedule = rules.schedules().iter().find(|s| s.name == name);
        schedule.and_then(|s| s.keys_url.clone())
    };
    lists.retain(|name, _| url(after, name).is_some());
    for (name, (cycle, _)) in lists.iter_mut() {
        if before.and_then(|b| url(b, name)) != url(after, name) {
            *cycle = None;
        }
    }
}

/// Enqueues the job of `key`.
async fn fire(rules: &dyn Rules, jobs: &Jobs, schedule: &Schedule, key: &str) {
    let target = schedule.path.replace("{key}", key);
    let offloads = rules.offloads();
    let Some(route) = offloads.iter().find(|o| **o.route == *schedule.route) else {
        return;
    };
    let offload = route.offload;
    let segments: Vec<&str> = path_segments(&target).collect();
    let params = route.template.matches(&segments).unwrap_or_default();
    let job = NewJob {
        route: schedule.route.clone(),
        method: schedule.method.as_str().to_string(),
        target,
        headers: vec![(
            format!("{}schedule", crate::headers::INTERNAL_PREFIX),
            schedule.name.clone(),
        )],
        body: Vec::new(),
        dedup: offload.key.as_ref().map(|k| k.render(&params)),
        idempotency_key: None,
    }
    .queued();
    match jobs
        .store
        .enqueue(job, crate::jobs::http::dedup_ttl(offload))
        .await
    {
        Ok(Enqueued::New(_)) => {
            jobs.metrics.job_enqueued(&schedule.route);
            jobs.wake.notify_one();
        }
        Ok(Enqueued::Deduplicated(_)) => jobs.metrics.job_deduplicated(&schedule.route),
        Ok(_) => {}
        Err(e) => tracing::warn!("jobs: schedule {} key {key}: {e}", schedule.name),
    }
}
