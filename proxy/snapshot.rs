//! What the request path reads, built whole from a [`Config`] and swapped whole on reload.
//!
//! A request does one `load()` of the current snapshot in `request_filter` and keeps what it
//! took from it (its route and pool, both `Arc`s) for its whole life, so a reload never
//! changes the rules under a request in flight.

use arc_swap::ArcSwap;
use ipnet::IpNet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::admission::{Controllers, SlotBackend};
use crate::assets::AssetCache;
use crate::config::Config;
use crate::edge_cache::EdgeCache;
use crate::metrics::Metrics;
use crate::operate::Operations;
use crate::routing::RouteTable;
use crate::tls::CertStore;
use crate::upstream::{Backends, Pool};

/// One generation of routing rules and pools.
#[derive(Debug)]
pub struct Snapshot {
    /// The config it was built from.
    pub config: Config,
    /// Compiled routes.
    pub routes: RouteTable,
    /// Pools by name; every route's pool is here (validation guarantees it).
    pub pools: HashMap<String, Arc<Pool>>,
}

impl Snapshot {
    /// Builds the request-path view of `config`; pools with slots get their controller from
    /// `controllers`, and every backend its health from `backends` (the same ones across
    /// reloads: controllers retuned, backend states kept by pool and address).
    pub fn new(config: Config, controllers: &Controllers, backends: &Backends) -> Self {
        backends.retain(&config.pools);
        let routes = config.route_table();
        let pools = config
            .pools
            .iter()
            .map(|(name, settings)| {
                let admission = settings.admission.as_ref().map(|a| {
                    let slotted = settings
                        .backends
                        .iter()
                        .map(|b| SlotBackend {
                            addr: b.addr,
                            weight: b.weight,
                            drain: b.drain,
                            state: backends.state(name, b.addr),
                        })
                        .collect();
                    controllers.for_pool(name, a, slotted)
                });
                (
                    name.clone(),
                    Arc::new(Pool::build(name, settings.clone(), admission, backends)),
                )
            })
            .collect();
        Snapshot {
            config,
            routes,
            pools,
        }
    }

    /// Trusted proxy ranges.
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.config.trusted_proxies
    }
}

impl crate::jobs::rules::Rules for Snapshot {
    fn offloads(&self) -> Vec<crate::jobs::rules::Offload<'_>> {
        self.routes
            .routes()
            .iter()
            .filter_map(|r| {
                Some(crate::jobs::rules::Offload {
                    route: &r.name,
                    pool: &r.pool,
                    template: &r.template,
                    offload: r.offload.as_ref()?,
                })
            })
            .collect()
    }

    fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        self.pools.get(name).cloned()
    }

    fn schedules(&self) -> &[crate::jobs::schedule::Schedule] {
        &self.config.jobs.schedules
    }
}

/// A graceful stop waits for requests and replays in flight, and for upgraded (WebSocket)
/// connections, which live on through the grace period and close at its end.
impl crate::shutdown::Busy for Shared {
    fn busy(&self) -> bool {
        crate::shutdown::Busy::busy(self.metrics.as_ref()) || self.upgraded.open_total() > 0
    }
}

/// State shared by every service: the current snapshot, the certificates, the metrics.
pub struct Shared {
    /// The current snapshot.
    pub snapshot: ArcSwap<Snapshot>,
    /// The current certificates (read by the TLS resolver at each handshake).
    pub certs: Arc<ArcSwap<CertStore>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Fingerprinted assets in memory; sized at start and kept across reloads.
    pub assets: Arc<AssetCache>,
    /// The app's cacheable responses in memory; sized at start and kept across reloads (a
    /// route's `version` keys its entries).
    pub edge_cache: Arc<EdgeCache>,
    /// Admission controllers by pool; kept across reloads.
    pub controllers: Arc<Controllers>,
    /// The memory buffered answers share; kept across reloads (its limits follow them).
    pub response_buffers: Arc<crate::buffering::response::Buffers>,
    /// Backend health by pool and address; kept across reloads.
    pub backends: Arc<Backends>,
    /// Assets each route's HTML references (learned hints); kept across reloads.
    pub learned: crate::hints::Learned,
    /// The job system, when some route offloads or a schedule exists (set once at start).
    pub jobs: Option<Arc<crate::jobs::Jobs>>,
    /// Upgraded (WebSocket) connections by pool; kept across reloads.
    pub upgraded: Arc<crate::upgraded::Upgraded>,
    /// Memory held by request bodies being buffered; kept across reloads.
    pub request_buffers: Arc<crate::buffering::request::RequestBuffers>,
    /// The operator's actions in force (deploys, pauses, maintenance).
    pub operations: Arc<Operations>,
    /// The config as last loaded from the file, before the operator's actions apply; held
    /// while a snapshot is built, so that installs never cross.
    configured: Mutex<Config>,
    /// ACME's HTTP-01 answers, when `[tls.acme]` is set (set once at start).
    pub acme_challenges: Option<Arc<crate::acme::challenge::Challenges>>,
}

impl Shared {
    /// State for a first `config`.
    pub fn new(config: Config, metrics: Arc<Metrics>) -> Self {
        let certs = Arc::new(ArcSwap::from_pointee(CertStore::new(
            config.certificates.clone(),
        )));
        let assets = Arc::new(AssetCache::new(&config.assets, metrics.clone()));
        let edge_cache = Arc::new(EdgeCache::new(&config.edge_cache, metrics.clone()));
        let controllers = Arc::new(Controllers::new(metrics.clone()));
        let backends = Arc::new(Backends::new(metrics.clone()));
        let upgraded = Arc::new(crate::upgraded::Upgraded::new(metrics.clone()));
        let request_buffers = Arc::new(crate::buffering::request::RequestBuffers::new(
            metrics.clone(),
        ));
        let response_buffers = Arc::new(crate::buffering::response::Buffers::new(
            config.response_buffering,
            metrics.clone(),
        ));
        let operations = Arc::new(Operations::load(&config.admin.state_file));
        let configured = Mutex::new(config.clone());
        let mut config = config;
        operations.apply(&mut config.pools);
        let shared = Shared {
            response_buffers,
            snapshot: ArcSwap::from_pointee(Snapshot::new(config, &controllers, &backends)),
            controllers,
            backends,
            certs,
            metrics,
            assets,
            edge_cache,
            learned: crate::hints::Learned::default(),
            jobs: None,
            upgraded,
            request_buffers,
            operations,
            configured,
            acme_challenges: None,
        };
        shared.apply_pauses();
        shared
    }

    /// With ACME's HTTP-01 answers (the server's ACME manager, at start).
    pub fn with_acme_challenges(
        mut self,
        challenges: Option<Arc<crate::acme::challenge::Challenges>>,
    ) -> Self {
        self.acme_challenges = challenges;
        self
    }

    /// With the job system `jobs` (opened by the server at start).
    pub fn with_jobs(mut self, jobs: Option<Arc<crate::jobs::Jobs>>) -> Self {
        self.jobs = jobs;
        self
    }

    /// Swaps in `config` (loaded from the file) with the operator's actions applied.
    pub fn install(&self, config: Config) {
        // A reload may point a route at a new release: parse its next page.
        self.learned.resample();
        let mut configured = self
            .configured
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *configured = config.clone();
        self.build(config);
    }

    /// Builds the snapshot again from the last config loaded, after an operator's action.
    pub fn reinstall(&self) {
        let configured = self
            .configured
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.build(configured.clone());
    }

    /// Certificates first, so a route never refers to a missing cert; then the snapshot,
    /// deploys applied to its pools; then the pauses to their queues.
    fn build(&self, mut config: Config) {
        self.operations.apply(&mut config.pools);
        self.certs
            .store(Arc::new(CertStore::new(config.certificates.clone())));
        self.response_buffers.retune(config.response_buffering);
        self.snapshot.store(Arc::new(Snapshot::new(
            config,
            &self.controllers,
            &self.backends,
        )));
        self.apply_pauses();
    }

    /// The backends the config file lists for `pool` (before any deploy).
    pub fn configured_backends(&self, pool: &str) -> Option<Vec<crate::upstream::Backend>> {
        let configured = self
            .configured
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        configured.pools.get(pool).map(|p| p.backends.clone())
    }

    /// Pauses the queues of the pools the operator paused, resumes the others.
    pub fn apply_pauses(&self) {
        for (name, pool) in &self.snapshot.load().pools {
            if let Some(admission) = pool.admission() {
                if self.operations.paused(name) {
                    admission.pause();
                } else {
                    admission.resume();
                }
            }
        }
    }
}
