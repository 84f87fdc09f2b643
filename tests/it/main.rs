//! Black-box tests: the real `frontdoor` binary on ephemeral loopback ports, real TLS, real
//! HTTP/2 clients, the simulator as the app. One test binary, so Pingora links once.

mod common;

mod acme;
mod admission;
mod assets;
mod balancing;
mod buffering;
mod check;
mod compression;
mod early_hints;
mod edge_cache;
mod error_pages;
mod h1_framing;
mod h2abuse;
mod headers;
mod health;
mod hints;
mod hostile;
mod http_serve;
mod jobs;
mod keepalive;
mod multinode;
mod operate;
mod operations;
mod reload;
mod response_buffering;
mod retries;
mod routing;
mod schedule;
mod semantics;
mod sendfile;
mod soak;
mod tls;
mod unix_backends;
mod upgraded;
mod warm;
