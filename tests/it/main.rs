//! Black-box tests: the real `frontdoor` binary on ephemeral loopback ports, real TLS, real
//! HTTP/2 clients, the simulator as the app. One test binary, so Pingora links once.

mod common;

mod acme;
mod admission;
mod assets;
mod balancing;
mod check;
mod compression;
mod early_hints;
mod edge_cache;
mod h2abuse;
mod headers;
mod health;
mod hints;
mod hostile;
mod http_serve;
mod jobs;
mod multinode;
mod reload;
mod routing;
mod schedule;
mod soak;
mod tls;
mod unix_backends;
mod warm;
