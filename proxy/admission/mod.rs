//! Admission control: frontdoor owns the queue in front of the app.
//!
//! Each backend of a pool with `[pools.NAME.admission]` has `slots` (its worker count): at
//! most that many requests are in flight to it. The rest wait in the pool's queue, bounded in
//! length and in time, where frontdoor measures their wait exactly (arrival at frontdoor to
//! dispatch). A request takes a slot on the least-busy backend (which keeps every backend
//! within its slots, since the pool's total is).
//!
//! Overload is decided on that wait by CoDel's rule ([`codel`]): when the minimum wait stays
//! above `target` for an `interval`, a standing queue exists. Then the queue is kept short —
//! one waiter per slot, about one service time of waiting — and new `normal` and `sheddable`
//! requests that do not fit are refused at once (503 in well under a millisecond); waiters
//! older than [`EXPIRE_TARGETS`] targets are expired, and the queue is served LIFO so that
//! those admitted meet their deadline. Before that, while the waits stay above target and the
//! queue is longer than the slots (a standing queue not yet confirmed for an interval), it is
//! served LIFO too (adaptive LIFO), so that the interval CoDel needs to tell a burst from
//! overload does not make every answer in it late. `critical` requests always queue and may
//! use `reserved-slots` no other priority can take. Overload ends after an interval without a
//! refusal; the queue is FIFO again.
//!
//! The controllers live across reloads (keyed by pool name): a reload retunes them and never
//! forgets a request in flight.

pub mod capacity;
pub mod codel;
mod pause;
pub mod server_timing;
mod shed;
pub mod status;

pub use capacity::CapacityView;
pub use shed::retry_after_secs;

use crate::backend_addr::BackendAddr;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use crate::metrics::Metrics;
use capacity::Window;
use codel::Codel;

/// Waiters older than this many targets are expired during overload.
pub const EXPIRE_TARGETS: u32 = 2;

/// `[pools.NAME.admission]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// Requests in flight per backend (the app's worker count).
    pub slots: usize,
    /// Slots per pool only `critical` routes may take.
    pub reserved_slots: usize,
    /// Requests waiting at most, over all priorities.
    pub queue_length: usize,
    /// Longest wait in the queue (then 503).
    pub queue_timeout: Duration,
    /// CoDel target: the wait a healthy queue drains within.
    pub target: Duration,
    /// CoDel interval: how long the minimum wait must stay above target to be overload.
    pub interval: Duration,
    /// `Retry-After` of a 503 (jittered between 1× and 2×).
    pub retry_after: Duration,
}

/// How a route's requests are treated under load (`priority` of a route).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Never shed before the others; may use the reserved slots.
    Critical = 0,
    /// The default.
    Normal = 1,
    /// First to go: bots, prefetches.
    Sheddable = 2,
    /// Replays of offloaded jobs: below everything.
    Replay = 3,
}

impl Priority {
    /// The metrics label and config word.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::Normal => "normal",
            Priority::Sheddable => "sheddable",
            Priority::Replay => "replay",
        }
    }

    /// Parses the config word.
    pub fn parse(word: &str) -> Result<Self, String> {
        match word {
            "critical" => Ok(Priority::Critical),
            "normal" => Ok(Priority::Normal),
            "sheddable" => Ok(Priority::Sheddable),
            other => Err(format!(
                "`{other}` is not a priority: use \"critical\", \"normal\" or \"sheddable\""
            )),
        }
    }
}

/// Why a request was refused. Expected outcomes, not faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Shed {
    /// A standing queue exists and the request is not critical.
    #[error("overload")]
    Overload,
    /// The queue is at `queue-length`.
    #[error("queue-full")]
    QueueFull,
    /// It waited `queue-timeout`, or was expired during overload.
    #[error("queue-timeout")]
    Timeout,
}

struct Waiter {
    id: u64,
    arrival: Instant,
    priority: Priority,
    /// The backend round robin or hashing chose, taken when it has a free slot.
    prefer: Option<BackendAddr>,
    send: oneshot::Sender<Permit>,
}

/// What admission asks of a backend's health (upstream's `BackendState` answers it).
pub trait Health: std::fmt::Debug + Send + Sync {
    /// Whether the backend may get traffic now: checks pass (or none run), not ejected.
    fn is_up(&self) -> bool;
}

/// The index with the fewest in flight relative to its weight among `candidates` (index,
/// in flight, weight), for slots here and for least-busy pools without admission; ties go to the first, so callers rotate the start to spread them.
pub fn least_busy(candidates: impl Iterator<Item = (usize, usize, u32)>) -> Option<usize> {
    candidates
        .fold(None, |best: Option<(usize, usize, u32)>, c| match best {
            // a/wa < b/wb  ⇔  a·wb < b·wa
            Some(b) if (c.1 as u128) * (b.2 as u128) >= (b.1 as u128) * (c.2 as u128) => Some(b),
            _ => Some(c),
        })
        .map(|(i, _, _)| i)
}

/// A backend as admission sees it: `slots × weight` slots, none while down or draining.
#[derive(Debug, Clone)]
pub struct SlotBackend {
    /// Its address: slots are counted by address, so a reload that reorders or removes
    /// backends never mixes up counts.
    pub addr: BackendAddr,
    /// Its weight (slots × weight).
    pub weight: u32,
    /// Draining: keeps its requests in flight, takes no new ones.
    pub drain: bool,
    /// Its health.
    pub state: Arc<dyn Health>,
}

impl SlotBackend {
    fn eligible(&self) -> bool {
        !self.drain && self.state.is_up()
    }
}

struct State {
    settings: AdmissionSettings,
    backends: Vec<SlotBackend>,
    /// In flight by backend address; a removed backend's entry stays until its last
    /// request ends.
    in_flight: HashMap<BackendAddr, usize>,
    queues: [VecDeque<Waiter>; 4],
    codel: Codel,
    window: Window,
    next_waiter: u64,
    /// Held by the operator (`frontdoor pause`): no slot is given, requests wait in the
    /// queue (bounded by `queue-length` and `queue-timeout`) and none is shed as overload.
    paused: bool,
}

impl State {
    fn total_in_flight(&self) -> usize {
        self.in_flight.values().sum()
    }

    fn capacity(&self, backend: &SlotBackend) -> usize {
        self.settings.slots * backend.weight as usize
    }

    fn busy(&self, addr: BackendAddr) -> usize {
        self.in_flight.get(&addr).copied().unwrap_or(0)
    }

    /// Slots of the backends not draining (up or not: the pool's nominal size).
    fn total_slots(&self) -> usize {
        self.backends
            .iter()
            .filter(|b| !b.drain)
            .map(|b| self.capacity(b))
            .sum()
    }

    /// Free slots on backends that may take a request now.
    fn free_slots(&self) -> usize {
        self.backends
            .iter()
            .filter(|b| b.eligible())
            .map(|b| self.capacity(b).saturating_sub(self.busy(b.addr)))
            .sum()
    }

    fn queued(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// How long the oldest waiter has waited.
    fn oldest_wait(&self, now: Instant) -> Duration {
        self.queues
            .iter()
            .filter_map(|q| q.front())
            .map(|w| now.saturating_duration_since(w.arrival))
            .max()
            .unwrap_or_default()
    }

    /// CoDel's sample: the wait of a request just dispatched, or longer if someone still
    /// waits longer (a critical request passing a standing queue does not mean it drained).
    fn observe(&mut self, wait: Duration, now: Instant) {
        let sample = wait.max(self.oldest_wait(now));
        self.codel.observe(sample, now);
    }

    /// Whether the queue is served newest first (LIFO): during overload, and while a queue
    /// longer than one waiter per slot forms with every wait above target (adaptive LIFO).
    /// Until CoDel has seen a whole interval of it, such a queue may still be a burst; served
    /// oldest first, every answer in it would be late by the queue's age (up to the interval),
    /// while newest first those served keep meeting the target and the old waiters are either
    /// expired when overload is declared or served once the burst drains. A queue no longer
    /// than the slots clears within one service time, so it stays in arrival order.
    fn lifo(&mut self, now: Instant) -> bool {
        let overloaded = self.codel.overloaded_at(now);
        overloaded || (self.codel.above_target() && self.queued() > self.total_slots())
    }

    /// During overload, drops non-critical waiters older than [`EXPIRE_TARGETS`] targets
    /// (their senders dropped: they answer 503 at once).
    fn expire(&mut self, now: Instant) {
        if self.paused || !self.codel.overloaded() {
            return;
        }
        let limit = self.codel.target() * EXPIRE_TARGETS;
        for queue in &mut self.queues[Priority::Normal as usize..] {
            while queue
                .front()
                .is_some_and(|w| now.saturating_duration_since(w.arrival) > limit)
            {
                queue.pop_front();
            }
        }
    }

    /// Whether `priority` may take a free slot now.
    fn has_slot_for(&self, priority: Priority) -> bool {
        if self.paused {
            return false;
        }
        let reserved = if priority == Priority::Critical {
            0
        } else {
            self.settings.reserved_slots
        };
        self.free_slots() > reserved
    }

    /// Takes a slot: on `prefer` if it may take one, else on the least-busy backend
    /// relative to its slots; `None` when no backend has a free slot.
    fn take_slot(&mut self, prefer: Option<BackendAddr>) -> Option<BackendAddr> {
        let free = |b: &SlotBackend| b.eligible() && self.busy(b.addr) < self.capacity(b);
        let preferred = prefer.filter(|p| self.backends.iter().any(|b| b.addr == *p && free(b)));
        let chosen = preferred.or_else(|| {
            let candidates = self
                .backends
                .iter()
                .enumerate()
                .filter(|(_, b)| free(b))
                .map(|(i, b)| (i, self.busy(b.addr), b.weight));
            least_busy(candidates).map(|i| self.backends[i].addr)
        })?;
        *self.in_flight.entry(chosen).or_insert(0) += 1;
        Some(chosen)
    }

    /// Frees a slot of `addr`; forgets a removed backend once it has none in flight.
    fn free_slot(&mut self, addr: BackendAddr) {
        if let Some(n) = self.in_flight.get_mut(&addr) {
            *n = n.saturating_sub(1);
            if *n == 0 && !self.backends.iter().any(|b| b.addr == addr) {
                self.in_flight.remove(&addr);
            }
        }
    }
}

/// The admission controller of one pool.
pub struct Admission {
    pool: String,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

/// A slot held by a request; dropping it frees the slot for the next waiter.
pub struct Permit {
    admission: Arc<Admission>,
    backend: BackendAddr,
    dispatched: Instant,
    armed: bool,
}

impl Permit {
    /// The backend this slot is on.
    pub fn backend(&self) -> BackendAddr {
        self.backend
    }

    /// Moves the slot to `addr`: a failed connect sent the request to another backend, and
    /// the counts follow the request (the new backend may briefly hold one over its slots).
    pub fn move_to(&mut self, addr: BackendAddr) {
        if addr != self.backend && self.armed {
            self.admission.move_slot(self.backend, addr);
            self.backend = addr;
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.armed {
            self.admission
                .release(self.backend, self.dispatched.elapsed());
        }
    }
}

impl Admission {
    fn new(
        pool: &str,
        settings: AdmissionSettings,
        backends: Vec<SlotBackend>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let codel = Codel::new(settings.target, settings.interval);
        Admission {
            pool: pool.to_string(),
            state: Mutex::new(State {
                settings,
                backends,
                in_flight: HashMap::new(),
                queues: Default::default(),
                codel,
                window: Window::new(Instant::now()),
                next_waiter: 0,
                paused: false,
            }),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every unlock; a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pool's settings now.
    pub fn settings(&self) -> AdmissionSettings {
        self.lock().settings.clone()
    }

    /// A slot for a request of `priority` that arrived at `arrival`: at once if one is free,
    /// else after a wait in the queue, or refused.
    pub async fn admit(
        self: &Arc<Self>,
        priority: Priority,
        arrival: Instant,
    ) -> Result<Permit, Shed> {
        self.admit_preferring(priority, arrival, None).await
    }

    /// Like [`Admission::admit`], placing the slot on `prefer` when it has a free one (the
    /// pool's round robin or hash choice).
    pub async fn admit_preferring(
        self: &Arc<Self>,
        priority: Priority,
        arrival: Instant,
        prefer: Option<BackendAddr>,
    ) -> Result<Permit, Shed> {
        let (receive, timeout, id) = {
            let mut state = self.lock();
            let now = Instant::now();
            state.window.arrived(now);
            let nobody_ahead = state.queues[..=priority as usize]
                .iter()
                .all(VecDeque::is_empty);
            let free = if nobody_ahead && state.has_slot_for(priority) {
                state.take_slot(prefer)
            } else {
                None
            };
            if let Some(backend) = free {
                let wait = now.saturating_duration_since(arrival);
                state.observe(wait, now);
                state.window.queued(wait, now);
                drop(state);
                self.metrics.queue_waited(&self.pool, wait);
                return Ok(self.permit(backend, now));
            }
            // A paused queue is long on purpose: not overload.
            let overloaded = !state.paused && state.codel.overloaded_at(now);
            state.expire(now);
            let short_queue_full = state.queued() >= state.total_slots();
            let refusal = if overloaded && priority != Priority::Critical && short_queue_full {
                state.codel.refused(now);
                Some(Shed::Overload)
            } else if state.queued() >= state.settings.queue_length {
                Some(Shed::QueueFull)
            } else {
                None
            };
            if let Some(shed) = refusal {
                state.window.shed(now);
                drop(state);
                self.metrics
                    .shed(&self.pool, priority.as_str(), &shed.to_string());
                return Err(shed);
            }
            let (send, receive) = oneshot::channel();
            let id = state.next_waiter;
            state.next_waiter += 1;
            state.queues[priority as usize].push_back(Waiter {
                id,
                arrival,
                priority,
                prefer,
                send,
            });
            let timeout = state
                .settings
                .queue_timeout
                .saturating_sub(now.saturating_duration_since(arrival));
            self.metrics.queue_length(&self.pool, state.queued());
            (receive, timeout, id)
        };
        match tokio::time::timeout(timeout, receive).await {
            Ok(Ok(permit)) => return Ok(permit),
            // The controller dropped the waiter: expired during overload.
            Ok(Err(_)) => {}
            // Out of time: leave the queue, so that it counts only live waiters.
            Err(_) => {
                let mut state = self.lock();
                state.queues[priority as usize].retain(|w| w.id != id);
                self.metrics.queue_length(&self.pool, state.queued());
            }
        }
        let outcome = Shed::Timeout;
        self.lock().window.shed(Instant::now());
        self.metrics
            .shed(&self.pool, priority.as_str(), &outcome.to_string());
        Err(outcome)
    }

    fn permit(self: &Arc<Self>, backend: BackendAddr, now: Instant) -> Permit {
        Permit {
            admission: self.clone(),
            backend,
            dispatched: now,
            armed: true,
        }
    }

    /// Frees a slot of `backend` (held for `response`) and hands it to the next waiter.
    fn release(self: &Arc<Self>, backend: BackendAddr, response: Duration) {
        let mut state = self.lock();
        let now = Instant::now();
        state.window.completed(response, now);
        state.free_slot(backend);
        self.dispatch(&mut state, now);
        self.metrics.queue_length(&self.pool, state.queued());
    }

    /// Hands free slots to waiters: highest priority first; FIFO, or LIFO while overloaded or
    /// while a long queue forms above target ([`State::lifo`]); expiring waiters past their
    /// time.
    fn dispatch(self: &Arc<Self>, state: &mut State, now: Instant) {
        'next: while state.queued() > 0 {
            let lifo = state.lifo(now);
            state.expire(now);
            for class in 0..state.queues.len() {
                let Some(front) = state.queues[class].front() else {
                    continue;
                };
                if !state.has_slot_for(front.priority) {
                    // Lower classes cannot have more slots than this one.
                    return;
                }
                let waiter = if lifo {
                    state.queues[class].pop_back()
                } else {
                    state.queues[class].pop_front()
                };
                let Some(waiter) = waiter else { continue };
                let wait = now.saturating_duration_since(waiter.arrival);
                if waiter.send.is_closed() {
                    continue 'next;
                }
                let Some(backend) = state.take_slot(waiter.prefer) else {
                    // Slots counted free but none takeable (a backend went down meanwhile).
                    state.queues[class].push_front(waiter);
                    return;
                };
                state.observe(wait, now);
                state.window.queued(wait, now);
                self.metrics.queue_waited(&self.pool, wait);
                if let Err(mut unsent) = waiter.send.send(self.permit(backend, now)) {
                    // Gone between the check and the send: undo without re-entering.
                    unsent.armed = false;
                    state.free_slot(backend);
                }
                continue 'next;
            }
            return;
        }
    }

    /// Requests in flight and waiting now.
    pub fn load(&self) -> (usize, usize) {
        let state = self.lock();
        (state.total_in_flight(), state.queued())
    }

    /// The capacity view over the sliding window.
    pub fn view(&self) -> CapacityView {
        let state = self.lock();
        state.window.view(state.total_slots(), Instant::now())
    }

    /// Whether a standing queue exists (offloaded-job replays wait while it does).
    pub fn overloaded(&self) -> bool {
        let mut state = self.lock();
        state.paused || state.codel.overloaded_at(Instant::now())
    }

    fn move_slot(self: &Arc<Self>, from: BackendAddr, to: BackendAddr) {
        let mut state = self.lock();
        state.free_slot(from);
        *state.in_flight.entry(to).or_insert(0) += 1;
        self.dispatch(&mut state, Instant::now());
    }

    /// Hands free slots to waiters now: a backend came back up.
    pub fn nudge(self: &Arc<Self>) {
        let mut state = self.lock();
        self.dispatch(&mut state, Instant::now());
        self.metrics.queue_length(&self.pool, state.queued());
    }

    /// Requests in flight on `addr` now.
    pub fn in_flight_on(&self, addr: BackendAddr) -> usize {
        self.lock().busy(addr)
    }

    fn retune(self: &Arc<Self>, settings: AdmissionSettings, backends: Vec<SlotBackend>) {
        let mut state = self.lock();
        state.codel.retune(settings.target, settings.interval);
        state.settings = settings;
        state.backends = backends;
        // Counts stay by address: a removed backend's slots free as its requests end.
        let listed: Vec<BackendAddr> = state.backends.iter().map(|b| b.addr).collect();
        state
            .in_flight
            .retain(|addr, n| *n > 0 || listed.contains(addr));
        // More slots may have come: hand them out.
        self.dispatch(&mut state, Instant::now());
    }
}

/// Every pool's controller, kept across reloads.
pub struct Controllers {
    by_pool: Mutex<HashMap<String, Arc<Admission>>>,
    metrics: Arc<Metrics>,
}

impl Controllers {
    /// None yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Controllers {
            by_pool: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// The controller of `pool` with `settings` (created, or retuned if it exists).
    pub fn for_pool(
        &self,
        pool: &str,
        settings: &AdmissionSettings,
        backends: Vec<SlotBackend>,
    ) -> Arc<Admission> {
        let mut by_pool = self.by_pool.lock().unwrap_or_else(PoisonError::into_inner);
        match by_pool.get(pool) {
            Some(existing) => {
                existing.retune(settings.clone(), backends);
                existing.clone()
            }
            None => {
                let created = Arc::new(Admission::new(
                    pool,
                    settings.clone(),
                    backends,
                    self.metrics.clone(),
                ));
                by_pool.insert(pool.to_string(), created.clone());
                created
            }
        }
    }

    /// Every pool's controller, by name.
    pub fn all(&self) -> Vec<(String, Arc<Admission>)> {
        let by_pool = self.by_pool.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = by_pool
            .iter()
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

impl Controllers {
    /// Whether `pool` is overloaded now (pools without admission never are). Offloaded-job
    /// replays, the lowest priority, wait while it is (the server wires this into the job
    /// workers' brake).
    pub fn overloaded(&self, pool: &str) -> bool {
        let by_pool = self.by_pool.lock().unwrap_or_else(PoisonError::into_inner);
        by_pool.get(pool).is_some_and(|a| a.overloaded())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(slots: usize, reserved: usize) -> AdmissionSettings {
        AdmissionSettings {
            slots,
            reserved_slots: reserved,
            queue_length: 3,
            queue_timeout: Duration::from_secs(5),
            target: Duration::from_millis(20),
            interval: Duration::from_millis(100),
            retry_after: Duration::from_secs(1),
        }
    }

    #[derive(Debug)]
    struct AlwaysUp;

    impl Health for AlwaysUp {
        fn is_up(&self) -> bool {
            true
        }
    }

    #[test]
    fn least_busy_is_relative_to_weight() {
        // 2 in flight at weight 2 is as busy as 1 at weight 1: the first wins the tie.
        assert_eq!(least_busy([(0, 2, 2), (1, 1, 1)].into_iter()), Some(0));
        assert_eq!(least_busy([(0, 3, 2), (1, 1, 1)].into_iter()), Some(1));
        assert_eq!(least_busy([(0, 3, 1), (1, 5, 3)].into_iter()), Some(1));
        assert_eq!(least_busy(std::iter::empty()), None);
    }

    fn slot_backends(n: usize) -> Vec<SlotBackend> {
        (0..n)
            .map(|i| {
                let addr = BackendAddr::from(std::net::SocketAddr::from((
                    [127, 0, 0, 1],
                    3000 + i as u16,
                )));
                SlotBackend {
                    addr,
                    weight: 1,
                    drain: false,
                    state: Arc::new(AlwaysUp),
                }
            })
            .collect()
    }

    fn controller(slots: usize, reserved: usize, backends: usize) -> Arc<Admission> {
        let metrics = Arc::new(Metrics::new().unwrap());
        Arc::new(Admission::new(
            "app",
            settings(slots, reserved),
            slot_backends(backends),
            metrics,
        ))
    }

    #[tokio::test]
    async fn slots_bound_concurrency_and_spread_over_backends() {
        let a = controller(2, 0, 2);
        let now = Instant::now();
        let permits: Vec<Permit> = futures_all(&a, 4, Priority::Normal, now).await;
        let mut on = [0, 0];
        for p in &permits {
            on[usize::from(p.backend().tcp().map_or(0, |a| a.port()) - 3000)] += 1;
        }
        assert_eq!(on, [2, 2]);
        assert_eq!(a.load(), (4, 0));
        // The fifth waits until one is released.
        let waiting = tokio::spawn({
            let a = a.clone();
            async move {
                a.admit(Priority::Normal, Instant::now())
                    .await
                    .map(|p| p.backend())
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a.load(), (4, 1));
        let released = permits[0].backend();
        drop(permits);
        assert_eq!(waiting.await.unwrap(), Ok(released));
        assert_eq!(a.load(), (0, 0));
    }

    async fn futures_all(a: &Arc<Admission>, n: usize, p: Priority, now: Instant) -> Vec<Permit> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(a.admit(p, now).await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_reserved_slots_are_for_critical() {
        let a = controller(2, 1, 1);
        let now = Instant::now();
        let first = a.admit(Priority::Normal, now).await.unwrap();
        // The second slot is reserved: a normal request queues, a critical one gets it.
        let critical = a.admit(Priority::Critical, now).await.unwrap();
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let a = a.clone();
            waiters.push(tokio::spawn(async move {
                a.admit(Priority::Sheddable, Instant::now()).await.is_ok()
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a.load(), (2, 3));
        assert_eq!(
            a.admit(Priority::Normal, Instant::now()).await.err(),
            Some(Shed::QueueFull)
        );
        drop(critical);
        drop(first);
        // One slot (of the two, one reserved) for the queued sheddables at a time.
        for w in waiters {
            // Each finishes once the one before it released its slot.
            assert!(w.await.unwrap());
        }
    }

    #[tokio::test]
    async fn waiting_longer_than_queue_timeout_is_shed() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let mut s = settings(1, 0);
        s.queue_timeout = Duration::from_millis(30);
        let a = Arc::new(Admission::new("app", s, slot_backends(1), metrics));
        let _held = a.admit(Priority::Normal, Instant::now()).await.unwrap();
        assert_eq!(
            a.admit(Priority::Normal, Instant::now()).await.err(),
            Some(Shed::Timeout)
        );
        assert_eq!(a.load(), (1, 0), "the timed-out waiter left no trace");
    }

    #[tokio::test]
    async fn job_replays_brake_while_their_pool_is_overloaded() {
        let controllers = Controllers::new(Arc::new(Metrics::new().unwrap()));
        let a = controllers.for_pool("app", &settings(1, 0), slot_backends(1));
        assert!(!controllers.overloaded("app"));
        let long_ago = Instant::now() - Duration::from_millis(500);
        drop(a.admit(Priority::Normal, long_ago).await.unwrap());
        tokio::time::sleep(Duration::from_millis(110)).await;
        let _held = a.admit(Priority::Normal, long_ago).await.unwrap();
        assert!(controllers.overloaded("app"));
        assert!(
            !controllers.overloaded("other"),
            "pools without admission never brake"
        );
    }

    #[tokio::test]
    async fn overload_expires_waiters_older_than_two_targets() {
        let a = controller(2, 0, 1);
        let long_ago = Instant::now() - Duration::from_millis(500);
        // Both slots held; the first dispatch waited 500 ms: a run above target starts.
        let first = a.admit(Priority::Normal, long_ago).await.unwrap();
        let _second = a.admit(Priority::Normal, long_ago).await.unwrap();
        let waiter = |a: &Arc<Admission>| {
            let a = a.clone();
            tokio::spawn(async move { a.admit(Priority::Normal, Instant::now()).await.err() })
        };
        let (w1, w2) = (waiter(&a), waiter(&a));
        tokio::time::sleep(Duration::from_millis(120)).await;
        // A slot frees after the interval: the dispatch of w1 (120 ms > target) makes it
        // overload, and w2, waiting 120 ms > 2 × 20 ms, is expired.
        drop(first);
        assert_eq!(w1.await.unwrap(), None, "w1 got the slot");
        assert_eq!(w2.await.unwrap(), Some(Shed::Timeout), "w2 expired");
        assert_eq!(a.load().1, 0);
    }

    #[tokio::test]
    async fn a_long_queue_forming_above_target_is_served_newest_first() {
        let a = controller(1, 0, 1);
        let long_ago = Instant::now() - Duration::from_millis(500);
        // The slot taken by a request that waited 500 ms: a run above target starts.
        let held = a.admit(Priority::Normal, long_ago).await.unwrap();
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let a = a.clone();
            waiters.push(tokio::spawn(async move {
                a.admit(Priority::Normal, Instant::now()).await.ok()
            }));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(a.load(), (1, 3));
        // Three waiters for one slot, every wait above target: the newest goes first.
        drop(held);
        let newest = waiters
            .pop()
            .unwrap()
            .await
            .unwrap()
            .expect("the newest got the slot");
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(
            waiters.iter().all(|w| !w.is_finished()),
            "the older ones wait"
        );
        // Its wait and the oldest one's were under target: the run ended, arrival order again.
        drop(newest);
        let oldest = waiters.remove(0).await.unwrap().expect("then the oldest");
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(!waiters[0].is_finished());
        drop(oldest);
        assert!(waiters.remove(0).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_standing_queue_keeps_a_short_queue_sheds_the_rest_but_critical_and_ends() {
        let a = controller(1, 0, 1);
        let long_ago = Instant::now() - Duration::from_millis(500);
        // A slot taken by a request that waited 500 ms: above target, starts a run.
        let held = a.admit(Priority::Normal, long_ago).await.unwrap();
        drop(held);
        tokio::time::sleep(Duration::from_millis(110)).await;
        let held = a.admit(Priority::Normal, long_ago).await.unwrap();
        assert!(a.overloaded());
        // One waiter per slot may queue; the next is refused at once.
        let queued = {
            let a = a.clone();
            tokio::spawn(async move { a.admit(Priority::Normal, Instant::now()).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        for priority in [Priority::Normal, Priority::Sheddable] {
            assert_eq!(
                a.admit(priority, Instant::now()).await.err(),
                Some(Shed::Overload)
            );
        }
        let critical = {
            let a = a.clone();
            tokio::spawn(async move { a.admit(Priority::Critical, Instant::now()).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(held);
        assert!(critical.await.unwrap(), "critical first");
        assert!(queued.await.unwrap(), "then the short queue");
        // An interval without refusals ends it.
        tokio::time::sleep(Duration::from_millis(110)).await;
        assert!(!a.overloaded());
    }

    #[tokio::test]
    async fn slots_follow_weights_and_skip_draining_backends() {
        let mut backends = slot_backends(3);
        backends[0].weight = 2;
        backends[2].drain = true;
        let a = Arc::new(Admission::new(
            "app",
            settings(1, 0),
            backends.clone(),
            Arc::new(Metrics::new().unwrap()),
        ));
        let permits = futures_all(&a, 3, Priority::Normal, Instant::now()).await;
        let mut on = [0, 0, 0];
        for p in &permits {
            on[usize::from(p.backend().tcp().map_or(0, |a| a.port()) - 3000)] += 1;
        }
        assert_eq!(on, [2, 1, 0]);
        assert_eq!(a.view().slots, 3);
    }

    #[tokio::test]
    async fn a_reload_removing_a_backend_keeps_its_count_until_its_requests_end() {
        let a = controller(1, 0, 2);
        let permits = futures_all(&a, 2, Priority::Normal, Instant::now()).await;
        let removed = permits[1].backend();
        let kept: Vec<SlotBackend> = slot_backends(2)
            .into_iter()
            .filter(|b| b.addr != removed)
            .collect();
        a.retune(settings(1, 0), kept);
        assert_eq!(a.in_flight_on(removed), 1, "still counted while in flight");
        assert_eq!(a.load(), (2, 0));
        drop(permits);
        assert_eq!(a.load(), (0, 0));
        assert_eq!(a.in_flight_on(removed), 0);
        // New slots only go to the backend still listed.
        let p = a.admit(Priority::Normal, Instant::now()).await.unwrap();
        assert_ne!(p.backend(), removed);
    }

    #[tokio::test]
    async fn a_moved_slot_is_counted_on_its_new_backend() {
        let a = controller(1, 0, 2);
        let mut p = a.admit(Priority::Normal, Instant::now()).await.unwrap();
        let (from, to) = (
            p.backend(),
            BackendAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 3009))),
        );
        p.move_to(to);
        assert_eq!((a.in_flight_on(from), a.in_flight_on(to)), (0, 1));
        drop(p);
        assert_eq!(a.load(), (0, 0));
    }

    #[tokio::test]
    async fn a_preferred_backend_gets_the_slot_while_it_has_one() {
        let a = controller(1, 0, 2);
        let second = BackendAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 3001)));
        let p1 = a
            .admit_preferring(Priority::Normal, Instant::now(), Some(second))
            .await
            .unwrap();
        assert_eq!(p1.backend(), second);
        let p2 = a
            .admit_preferring(Priority::Normal, Instant::now(), Some(second))
            .await
            .unwrap();
        assert_ne!(p2.backend(), second, "full: the other backend");
    }
}
