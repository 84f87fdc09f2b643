//! Dynamic text from the app is compressed on the fly, by negotiation.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_html_are_compressed_per_accept_encoding_over_h1_and_h2() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &one_pool(&[sim.addr]))).await;
    let h2 = fd.client();
    let h1 = fd.client_builder().http1_only().build().expect("client");
    for path in ["/courses/mit/physics/users.json", "/courses/mit/physics"] {
        let direct = reqwest::get(format!("http://{}{path}", sim.addr))
            .await
            .expect("direct");
        let original = direct.bytes().await.expect("body").to_vec();
        assert!(original.len() > 1024, "{path} is worth compressing");
        for client in [&h2, &h1] {
            for (accept, expected) in [
                // Chrome and Firefox: zstd, the cheapest per KB saved.
                (Some("gzip, deflate, br, zstd"), Some("zstd")),
                // Safari: Brotli.
                (Some("gzip, deflate, br"), Some("br")),
                (Some("zstd;q=0.5, br;q=0.9"), Some("br")),
                (Some("gzip"), Some("gzip")),
                (Some("br;q=0, gzip;q=0"), None),
                (None, None),
            ] {
                let mut request = client.get(fd.url(path));
                if let Some(accept) = accept {
                    request = request.header("accept-encoding", accept);
                }
                let response = request.send().await.expect("request");
                assert_eq!(response.status(), 200);
                let headers = response.headers().clone();
                let encoding = headers
                    .get("content-encoding")
                    .and_then(|v| v.to_str().ok());
                assert_eq!(encoding, expected, "{path} with {accept:?}");
                let body = response.bytes().await.expect("body");
                assert_eq!(decode(encoding, &body), original, "{path} with {accept:?}");
                if expected.is_some() {
                    assert_eq!(headers["vary"], "Accept-Encoding");
                    assert!(body.len() < original.len());
                } else {
                    assert_eq!(
                        headers["content-length"],
                        original.len().to_string().as_str()
                    );
                }
            }
        }
    }
    // Two paths, each fetched twice with br by both clients, once with zstd.
    let br = "encoding=\"br\",route=\"all\"";
    assert_eq!(
        fd.metric(&format!("frontdoor_compressed_responses_total{{{br}}}"))
            .await,
        8.0
    );
    let zstd = "frontdoor_compressed_responses_total{encoding=\"zstd\",route=\"all\"}";
    assert_eq!(fd.metric(zstd).await, 4.0);
    let bytes_in = fd
        .metric(&format!("frontdoor_compression_in_bytes_total{{{br}}}"))
        .await;
    let bytes_out = fd
        .metric(&format!("frontdoor_compression_out_bytes_total{{{br}}}"))
        .await;
    assert!(
        bytes_out > 0.0 && bytes_out * 2.0 < bytes_in,
        "{bytes_out} of {bytes_in}"
    );
    // HEAD carries the fields GET would (RFC 9110 §9.3.2): the encoding, Vary, no identity
    // Content-Length.
    let head = h1
        .head(fd.url("/courses/mit/physics/users.json"))
        .header("accept-encoding", "br")
        .send()
        .await;
    let head = head.expect("HEAD");
    assert_eq!(head.headers()["content-encoding"], "br");
    assert_eq!(head.headers()["vary"], "Accept-Encoding");
    assert!(head.headers().get("content-length").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_binary_responses_are_sent_as_they_are() {
    let sim = Sim::quick().await;
    let ports = Ports::new();
    let fd = Frontdoor::start(ports, &config_text(ports, &one_pool(&[sim.addr]))).await;
    // `/healthz` is 3 bytes of text: under the minimum size.
    let response = fd
        .client()
        .get(fd.url("/healthz"))
        .header("accept-encoding", "br")
        .send()
        .await
        .expect("request");
    assert!(response.headers().get("content-encoding").is_none());
    assert_eq!(response.text().await.expect("body"), "ok\n");
}
