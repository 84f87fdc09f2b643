//! frontdoor: the front door of a Rails/Passenger application, built on Pingora.
//!
//! One binary terminates TLS and HTTP/2 for browsers, stamps `X-Request-Start` so the app
//! can see its queue time, routes by rules an operator keeps in TOML, and proxies to a pool
//! of Passenger backends over a keep-alive HTTP/1.1 pool.
//!
//! # Modules
//! - [`config`]: TOML file types → validated domain [`config::Config`]; errors carry file:line:col.
//! - [`template`]: path templates (`/courses/{school}/{title}`, `{rest*}`) and the params they capture.
//! - [`routing`]: routes (host, methods, template, each feature's settings) compiled into a [`routing::RouteTable`].
//! - [`assets`]: fingerprinted assets from memory: single-flight fill, pre-compression, negotiation, ETag/304, Range; warmed from the app's manifest.
//! - [`edge_cache`]: the app's cacheable responses from memory (fresh, stale-while-revalidate, stale-if-error).
//! - [`encoding`]: content codings (br, gzip, identity), negotiation by q-value and server preference, compressible types.
//! - [`compression`]: on-the-fly Brotli/gzip of dynamic text responses.
//! - [`admission`]: slots per backend, the proxy-held queue, CoDel shedding, priorities, the capacity view.
//! - [`hints`]: `Link` preload/prefetch hints (route rules and learned assets), 103 Early Hints, script deferral.
//! - [`tls`]: certificate loading and validation, the SNI resolver, dev-certificate generation.
//! - [`acme`]: certificates ordered and renewed from an ACME CA (TLS-ALPN-01, HTTP-01), shared through Redis.
//! - [`upgraded`]: WebSocket connections after the `101`: no slot held, counted and capped per pool, their own idle timeout.
//! - [`backend_addr`]: where a backend listens (TCP or a unix socket), shared by upstream and admission.
//! - [`upstream`]: pools of backends (TCP or unix sockets); selection (least busy, weighted round robin, hash), health checks, ejection.
//! - [`jobs`]: offload routes answered 202 and replayed later as durable jobs (embedded or Redis store), schedules.
//! - [`buffering`]: request bodies received in full before they take a slot (memory, then a temporary file), `100 Continue`; the app's answers read as fast as the app writes them, held for slower clients.
//! - [`hostile`]: hostile input refused before routing: ambiguous framing, head/URI/body limits, path normalisation, slow heads.
//! - [`error_pages`]: frontdoor's own 5xx answers through one function: the operator's HTML pages for browsers, JSON for the rest.
//! - [`sendfile`]: X-Sendfile / X-Accel-Redirect: the app names a file under a configured root, frontdoor streams it.
//! - [`headers`]: `X-Request-Start`, `X-Forwarded-*`, `X-Request-Id`, hop-by-hop handling.
//! - [`snapshot`]: everything the request path reads, built from a `Config` and swapped whole on reload.
//! - [`reload`]: the background service that reloads the config on SIGHUP or file change.
//! - [`metrics`]: every Prometheus family, registered once.
//! - [`accesslog`]: one line per request through a non-blocking writer.
//! - [`pingora_log`]: Pingora's `log` lines into `tracing`; client hang-ups in handshakes at `DEBUG`.
//! - [`operate`]: operator actions through the admin listener: deploy (health-checked switch, drain), pause, maintenance; a state file.
//! - [`admin`]: the admin listener (`/healthz`, `/readyz`, `/metrics`, `/status`, `/jobs`).
//! - [`redirect`]: the plain-HTTP listener that redirects to HTTPS (and answers ACME's HTTP-01).
//! - [`simulator`]: a Dashboard-like app used by the demo, the tests and the benchmarks.
//! - [`service`]: the `ProxyHttp` implementation, phase by phase.
//! - [`shutdown`]: a graceful stop that exits as soon as nothing is in flight.
//! - [`server`]: assembles the Pingora server (listeners, services) from a `Config`.
//! - `fuzzing` (hidden): the bodies of the `cargo fuzz` targets in `tests/fuzz/`, shared with a unit test.
//!
//! # A request, end to end
//! ```text
//! client ──TLS (rustls, ALPN h2/http1.1)──▶ HTTPS listener
//!   (HTTP/1.x)               the head must be complete within header-timeout (hostile::slow)
//!   early_request_filter     stamp arrival time; body-timeout for each body read
//!   request_filter           refuse hostile heads (framing, limits, paths); normalise the path;
//!                            health path; route match (one snapshot load); request id;
//!                            pool in maintenance → the maintenance page (operate);
//!                            offload → durable job, 202 | asset or edge-cache hit from memory |
//!                            503 at once if every backend is down or draining;
//!                            103 Early Hints (HTTP/2 and HTTP/1.1) or, for a WebSocket upgrade, a
//!                            place under max-upgraded (else 503); the whole body received (100
//!                            Continue, 408, 413) unless the route streams it; then admission: a
//!                            slot, the queue, or 503
//!   upstream_peer            the backend the slot is on, else the pool's choice among backends up
//!   upstream_request_filter  X-Request-Start, X-Forwarded-*, X-Request-Id; strip hop-by-hop;
//!                            a buffered body's Content-Length
//!   upstream_response_tasks  (patched hook) the app's answer read ahead of the client
//!                            (buffering::response): the slot is free once its last byte is in
//!   upstream_response_filter time the backend; the app's Server-Timing queue entry to metrics;
//!                            X-Sendfile / X-Accel-Redirect → free the slot, end the proxying
//!   fail_to_proxy            send that file (sendfile); else 502/504 through error_pages
//!   response_filter          X-Request-Id back to the client; a 101 frees the slot (upgraded);
//!                            Link hints on HTML; start an edge-cache fill; choose compression;
//!                            a rewritten body is chunked
//!   response_body_filter     read HTML for learned hints (rewrite it for script deferral); copy
//!                            into the edge cache; compress dynamic text; free the slot at the end
//!                            (unbuffered answers)
//!   logging                  metrics, access log
//! ```

#![forbid(unsafe_code)]

pub mod accesslog;
pub mod acme;
pub mod admin;
pub mod admission;
pub mod assets;
pub mod backend_addr;
pub mod buffering;
pub mod compression;
pub mod config;
pub mod edge_cache;
pub mod encoding;
pub mod error_pages;
#[doc(hidden)]
pub mod fuzzing;
pub mod headers;
pub mod hints;
pub mod hostile;
pub mod jobs;
pub mod metrics;
pub mod operate;
pub mod pingora_log;
pub mod redirect;
pub mod reload;
pub mod routing;
pub mod sendfile;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod simulator;
pub mod snapshot;
pub mod template;
pub mod tls;
pub mod upgraded;
pub mod upstream;
