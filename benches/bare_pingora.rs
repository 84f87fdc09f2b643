//! The floor under frontdoor's cost per proxied request: a bare Pingora proxy doing the same
//! job with nothing of frontdoor's — TLS (rustls, h2 and HTTP/1.1 by ALPN), one upstream over
//! HTTP/1.1 keep-alive, and the three headers frontdoor, nginx and HAProxy add in
//! `benches/compare.sh` (`X-Request-Start`, `X-Forwarded-For`, `X-Forwarded-Proto`). One
//! thread and frontdoor's default keep-alive pool, as frontdoor runs there. Not a product: a
//! measuring stick for `bash benches/compare.sh --bare` (BENCHMARKS.md, issue 16).
//!
//! `cargo bench --bench bare_pingora -- LISTEN CERT_PEM KEY_PEM UPSTREAM`

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::{HttpPeer, Result};
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::time::SystemTime;

struct Bare {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        request: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        // The same `t=<seconds>.<milliseconds>` frontdoor and the nginx of compare.sh send.
        request.insert_header(
            "x-request-start",
            frontdoor::headers::request_start_value(SystemTime::now()),
        )?;
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            request.insert_header("x-forwarded-for", addr.ip().to_string())?;
        }
        request.insert_header("x-forwarded-proto", "https")?;
        Ok(())
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [listen, cert, key, upstream] = args.as_slice() else {
        eprintln!("usage: bare_pingora LISTEN CERT_PEM KEY_PEM UPSTREAM");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        // frontdoor's default `upstream-keepalive-pool-size`.
        upstream_keepalive_pool_size: 256,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        Bare {
            upstream: upstream.clone(),
        },
    );
    let mut tls = match TlsSettings::intermediate(cert, key) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("bare_pingora: {cert}, {key}: {e}");
            std::process::exit(1);
        }
    };
    tls.enable_h2();
    proxy.add_tls_with_settings(listen, None, tls);
    server.add_service(proxy);
    server.bootstrap();
    server.run_forever();
}
