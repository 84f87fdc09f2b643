//! Assembles the Pingora server from a validated [`Config`]: the proxy service (HTTPS, and
//! plain HTTP with `http-mode = "serve"`), the plain-HTTP redirect service, the admin service
//! and the reload watcher.

use pingora::apps::http_app::HttpServer;
use pingora::protocols::http::v2::server::H2Options;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::path::Path;
use std::sync::Arc;

use crate::admin::AdminApp;
use crate::config::{Config, H2Settings, HttpMode};
use crate::metrics::Metrics;
use crate::redirect::RedirectApp;
use crate::reload::Reloader;
use crate::service::Frontdoor;
use crate::snapshot::Shared;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Metrics registration failed (a programming error).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Pingora refused a listener setting.
    #[error("listener: {0}")]
    Listener(#[from] Box<pingora::Error>),
    /// The job store could not be opened.
    #[error("jobs: {0}")]
    Jobs(#[from] crate::jobs::StoreError),
    /// The ACME manager could not be set up.
    #[error("acme: {0}")]
    Acme(#[from] crate::acme::AcmeError),
}

/// Pingora's process settings from ours. Pingora's own defaults (1 thread, 300 s grace
/// period) suit neither a small box nor a test suite, so every value is set. On SIGTERM
/// Pingora stops accepting at once, lets in-flight requests run for the grace period, then
/// shuts the runtimes down within the shutdown timeout.
fn server_conf(config: &Config) -> ServerConf {
    let s = &config.server;
    ServerConf {
        threads: s.threads.get(),
        grace_period_seconds: Some(s.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(s.graceful_shutdown_timeout.as_secs()),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size.get(),
        ..ServerConf::default()
    }
}

/// Offloaded-job replays are the lowest priority: they wait while their pool is overloaded,
/// paused (both said by its admission controller) or in maintenance.
struct ReplayBrake {
    controllers: Arc<crate::admission::Controllers>,
    operations: Arc<crate::operate::Operations>,
}

impl crate::jobs::Brake for ReplayBrake {
    fn overloaded(&self, pool: &str) -> bool {
        self.controllers.overloaded(pool) || self.operations.in_maintenance(pool)
    }
}

/// The current snapshot's `header-timeout`, for the slow-head guard of each listener.
fn header_timeout(shared: &Arc<Shared>) -> crate::hostile::slow::HeaderTimeout {
    let shared = shared.clone();
    Box::new(move || shared.snapshot.load().config.limits.header_timeout)
}

/// The HTTP/2 server settings of the HTTPS listener. Pingora's defaults (100 streams, 64 KiB
/// of headers) are replaced by the operator's; the h2 crate's defences against stream abuse
/// are set explicitly so that an h2 upgrade cannot loosen them unnoticed:
/// - a stream reset by the client before Pingora accepted it (rapid reset, CVE-2023-44487)
///   still costs the server nothing but memory, so more than 20 of them pending on one
///   connection end it with `GOAWAY(ENHANCE_YOUR_CALM)`;
/// - streams the client makes us reset (over the stream limit, malformed) are budgeted: 200 of
///   them end the connection with `ENHANCE_YOUR_CALM`, where a well-behaved client makes none;
/// - a response waits once 400 KiB of it are buffered for a client that does not read.
///
/// PING and SETTINGS floods need no setting: h2 answers one frame at a time and reads no
/// further while the answer cannot be written, so a client that does not read stalls only
/// its own connection. A header block split into endless CONTINUATION frames (CVE-2024-27316)
/// ends the connection once it exceeds the header list size.
/// The routes whose assets the warmer fills, from the current snapshot.
fn warm_targets(shared: &Arc<Shared>) -> crate::assets::warm::CurrentTargets {
    let shared = shared.clone();
    Box::new(move || {
        let snapshot = shared.snapshot.load_full();
        let targets = snapshot
            .config
            .routes
            .iter()
            .filter_map(|route| {
                let assets = route.assets.clone().filter(|a| a.warm)?;
                let template = route.template.as_str();
                Some(crate::assets::warm::Target {
                    route_name: route.name.clone(),
                    prefix: template[..template.find('{').unwrap_or(template.len())].to_string(),
                    host: match &route.host {
                        Some(crate::routing::HostPattern::Exact(host)) => Some(host.clone()),
                        _ => None,
                    },
                    pool: snapshot.pools.get(route.pool.as_ref())?.clone(),
                    route: assets,
                })
            })
            .collect();
        (snapshot as Arc<dyn std::any::Any + Send + Sync>, targets)
    })
}

fn h2_options(h2: H2Settings) -> H2Options {
    let mut options = H2Options::default();
    options
        .max_concurrent_streams(h2.max_concurrent_streams)
        .max_header_list_size(h2.max_header_list_size)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(Some(200))
        .max_send_buffer_size(400 * 1024);
    options
}

/// The assembled server and the state its services share.
pub struct Built {
    /// Serves until SIGTERM (graceful) or SIGINT (fast).
    pub server: Server,
    /// What the request path, the admin listener and the background services read.
    pub shared: Arc<Shared>,
}

/// Builds every service.
pub fn build(config: Config, config_path: &Path) -> Result<Built, StartError> {
    let metrics = Arc::new(Metrics::new()?);
    let listen = config.listen.clone();
    let h2 = config.h2;
    let conf = server_conf(&config);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let uses_jobs =
        config.routes.iter().any(|r| r.offload.is_some()) || !config.jobs.schedules.is_empty();
    let jobs_settings = config.jobs.clone();
    let acme = match config.acme.clone() {
        Some(settings) => {
            // Several nodes share the jobs' Redis: one orders, every node reads.
            let store = match &jobs_settings.store {
                crate::jobs::StoreSettings::Redis { url, prefix } => {
                    Some(crate::acme::SharedStore {
                        url: url.clone(),
                        prefix: prefix.clone(),
                    })
                }
                crate::jobs::StoreSettings::Embedded { .. } => None,
            };
            Some(Arc::new(crate::acme::Acme::new(
                settings,
                store.as_ref(),
                metrics.clone(),
            )?))
        }
        None => None,
    };
    let challenges = acme.as_ref().map(|a| a.challenges());
    let shared = Shared::new(config, metrics.clone()).with_acme_challenges(challenges.clone());
    // Replays wait while admission control reports their pool overloaded.
    let jobs = if uses_jobs {
        let brake = Arc::new(ReplayBrake {
            controllers: shared.controllers.clone(),
            operations: shared.operations.clone(),
        });
        Some(crate::jobs::Jobs::open_with_brake(
            &jobs_settings,
            metrics.clone(),
            brake,
        )?)
    } else {
        None
    };
    let shared = Arc::new(shared.with_jobs(jobs.clone()));

    let mut app = pingora::proxy::HttpProxy::new(
        Frontdoor::new(shared.clone()),
        server.configuration.clone(),
    );
    app.handle_init_modules();
    app.h2_options = Some(h2_options(h2));
    // Slow request heads are cut below Pingora's session (it has no whole-head timeout).
    let mut proxy = Service::new(
        "frontdoor https".to_string(),
        crate::hostile::slow::Guard::new(app, header_timeout(&shared), shared.metrics.clone()),
    );
    let issued = acme.clone().map(|a| -> Arc<dyn crate::tls::Issued> { a });
    let tls = crate::tls::listener_settings(shared.certs.clone(), issued, metrics)?;
    proxy.add_tls_with_settings(&listen.https.to_string(), None, tls);
    let serve_http = listen.http.filter(|_| listen.http_mode == HttpMode::Serve);
    if let Some(http) = serve_http {
        // Behind a TLS-terminating balancer: the same proxy, HTTP/1.1 in the clear.
        proxy.add_tcp(&http.to_string());
    }
    server.add_service(proxy);

    if let Some(http) = listen.http.filter(|_| serve_http.is_none()) {
        let redirect_app = HttpServer::new_app(
            RedirectApp::new(listen.redirect_https_port).with_acme(challenges.clone()),
        );
        let mut redirect = Service::new(
            "frontdoor http redirect".to_string(),
            crate::hostile::slow::Guard::new(
                redirect_app,
                header_timeout(&shared),
                shared.metrics.clone(),
            ),
        );
        redirect.add_tcp(&http.to_string());
        redirect.threads = Some(1);
        server.add_service(redirect);
    }

    let mut admin = Service::new(
        "frontdoor admin".to_string(),
        HttpServer::new_app(AdminApp::new(shared.clone())),
    );
    admin.add_tcp(&listen.admin.to_string());
    admin.threads = Some(1);
    server.add_service(admin);

    if let Some(jobs) = jobs {
        server.add_service(background_service(
            "frontdoor job workers",
            crate::jobs::worker::JobWorkers::new(
                {
                    let shared = shared.clone();
                    Arc::new(move || -> Arc<dyn crate::jobs::rules::Rules> {
                        shared.snapshot.load_full()
                    })
                },
                jobs,
            ),
        ));
    }
    server.add_service(background_service(
        "frontdoor health checks",
        crate::upstream::HealthChecks::new({
            let shared = shared.clone();
            Box::new(move || shared.snapshot.load().pools.values().cloned().collect())
        }),
    ));
    if let Some(acme) = acme {
        server.add_service(background_service(
            "frontdoor acme",
            crate::acme::Renewer(acme),
        ));
    }
    server.add_service(background_service(
        "frontdoor asset warm-up",
        crate::assets::warm::Warmer::new(
            warm_targets(&shared),
            shared.assets.clone(),
            shared.metrics.clone(),
        ),
    ));
    server.add_service(background_service(
        "frontdoor config reload",
        Reloader::new(config_path.to_path_buf(), shared.clone()),
    ));
    server.bootstrap();
    Ok(Built { server, shared })
}
