//! Assembles the Pingora server from a validated [`Config`]: the HTTPS proxy service, the
//! plain-HTTP redirect service, the admin service and the reload watcher.

use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::path::Path;
use std::sync::Arc;

use crate::admin::AdminApp;
use crate::config::Config;
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

/// Builds every service; `run` then serves until SIGTERM (graceful) or SIGINT (fast).
pub fn build(config: Config, config_path: &Path) -> Result<Server, StartError> {
    let metrics = Arc::new(Metrics::new()?);
    let listen = config.listen.clone();
    let conf = server_conf(&config);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let uses_jobs =
        config.routes.iter().any(|r| r.offload.is_some()) || !config.jobs.schedules.is_empty();
    let jobs_settings = config.jobs.clone();
    let shared = Shared::new(config, metrics.clone());
    // Replays wait while admission control reports their pool overloaded.
    let jobs = if uses_jobs {
        let brake = shared.controllers.clone();
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
    // Slow request heads are cut below Pingora's session (it has no whole-head timeout).
    let mut proxy = Service::new(
        "frontdoor https".to_string(),
        crate::hostile::slow::Guard::new(app, shared.clone()),
    );
    let tls = crate::tls::listener_settings(shared.certs.clone(), metrics)?;
    proxy.add_tls_with_settings(&listen.https.to_string(), None, tls);
    server.add_service(proxy);

    if let Some(http) = listen.http {
        let redirect_app = HttpServer::new_app(RedirectApp::new(listen.redirect_https_port));
        let mut redirect = Service::new(
            "frontdoor http redirect".to_string(),
            crate::hostile::slow::Guard::new(redirect_app, shared.clone()),
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
            crate::jobs::worker::JobWorkers::new(shared.clone(), jobs),
        ));
    }
    server.add_service(background_service(
        "frontdoor health checks",
        crate::upstream::HealthChecks::new(shared.clone()),
    ));
    server.add_service(background_service(
        "frontdoor config reload",
        Reloader::new(config_path.to_path_buf(), shared),
    ));
    server.bootstrap();
    Ok(server)
}
