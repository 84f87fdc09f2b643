//! Black-box tests: the real `frontdoor` binary on ephemeral loopback ports, real TLS, real
//! HTTP/2 clients, the simulator as the app. One test binary, so Pingora links once.

mod common;

mod admission;
mod assets;
mod balancing;
mod buffering;
mod check;
mod compression;
mod edge_cache;
mod h2abuse;
mod headers;
mod health;
mod hints;
mod hostile;
mod jobs;
mod keepalive;
mod multinode;
mod reload;
mod retries;
mod routing;
mod schedule;
mod semantics;
mod soak;
mod tls;
mod upgraded;
