//! CPU per KB saved for on-the-fly compression of dynamic text (issue 16): Brotli at the
//! streaming quality frontdoor used (4) and below, zstd at low levels, gzip 5, on the
//! simulator's pages and JSON documents (fetched from an in-process simulator, so they are the
//! bytes frontdoor would compress). Each document is compressed the way the proxy does it: a
//! fresh streaming encoder per response, fed in 16 KiB chunks, finished at the end.
//!
//! `cargo bench --profile profiling --bench compression` (or without `--profile`: the bench
//! profile, fat LTO). Prints one row per codec: bytes in and out over the set, the median time
//! to compress the set, and CPU microseconds per KB saved; figures in BENCHMARKS.md.

use frontdoor::simulator::{Simulator, SimulatorOptions};
use std::io::Write;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The chunk size the proxy's body filter sees at most from Pingora.
const CHUNK: usize = 16 * 1024;
/// Repetitions of the whole set per sample, and samples per codec (median taken).
const REPS: usize = 40;
const SAMPLES: usize = 9;

#[derive(Clone, Copy, Debug)]
enum Codec {
    Brotli(u32),
    Zstd(i32),
    Gzip(u32),
}

impl Codec {
    fn name(self) -> String {
        match self {
            Codec::Brotli(q) => format!("br q{q} (window 2^18)"),
            Codec::Zstd(l) => format!("zstd {l} (window 2^18)"),
            Codec::Gzip(l) => format!("gzip {l}"),
        }
    }

    /// Compresses `doc` as one streamed response body.
    fn compress(self, doc: &[u8]) -> usize {
        let mut out = 0;
        match self {
            Codec::Brotli(q) => {
                let mut w = brotli::CompressorWriter::new(Vec::new(), CHUNK, q, 18);
                for chunk in doc.chunks(CHUNK) {
                    w.write_all(chunk).expect("br");
                    out += std::mem::take(w.get_mut()).len();
                }
                out + w.into_inner().len()
            }
            Codec::Zstd(level) => {
                let mut e = zstd::stream::write::Encoder::new(Vec::new(), level).expect("zstd");
                e.window_log(18).expect("window");
                e.set_pledged_src_size(Some(doc.len() as u64))
                    .expect("size");
                e.include_contentsize(true).expect("content size");
                for chunk in doc.chunks(CHUNK) {
                    e.write_all(chunk).expect("zstd");
                    out += std::mem::take(e.get_mut()).len();
                }
                out + e.finish().expect("zstd").len()
            }
            Codec::Gzip(level) => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
                for chunk in doc.chunks(CHUNK) {
                    e.write_all(chunk).expect("gzip");
                    out += std::mem::take(e.get_mut()).len();
                }
                out + e.finish().expect("gzip").len()
            }
        }
    }
}

async fn fetch(addr: std::net::SocketAddr, paths: &[String]) -> Vec<(String, Vec<u8>)> {
    let client = reqwest::Client::new();
    let mut docs = Vec::new();
    for path in paths {
        let body = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .expect("simulator answers")
            .bytes()
            .await
            .expect("body");
        docs.push((path.clone(), body.to_vec()));
    }
    docs
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let docs = runtime.block_on(async {
        let options = SimulatorOptions {
            workers: NonZeroUsize::new(8).expect("8"),
            service_time: Duration::ZERO,
            ..SimulatorOptions::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sim = Arc::new(Simulator::new(options));
        tokio::spawn(sim.serve(listener, std::future::pending()));
        let mut paths = vec!["/".to_string(), "/training".to_string()];
        for course in ["mit/physics", "stanford/chemistry", "berkeley/history"] {
            paths.push(format!("/courses/{course}"));
            for doc in ["course", "users", "timeline", "campaigns"] {
                paths.push(format!("/courses/{course}/{doc}.json"));
            }
        }
        fetch(addr, &paths).await
    });
    let bytes_in: usize = docs.iter().map(|(_, d)| d.len()).sum();
    let (html, json): (Vec<_>, Vec<_>) = docs.iter().partition(|(p, _)| !p.ends_with(".json"));
    println!(
        "{} documents, {} bytes: {} HTML pages ({} bytes), {} JSON ({} bytes)",
        docs.len(),
        bytes_in,
        html.len(),
        html.iter().map(|(_, d)| d.len()).sum::<usize>(),
        json.len(),
        json.iter().map(|(_, d)| d.len()).sum::<usize>(),
    );
    let codecs = [
        Codec::Brotli(4),
        Codec::Brotli(3),
        Codec::Brotli(2),
        Codec::Brotli(1),
        Codec::Zstd(1),
        Codec::Zstd(2),
        Codec::Zstd(3),
        Codec::Zstd(5),
        Codec::Gzip(5),
    ];
    println!(
        "{:<24} {:>10} {:>10} {:>8} {:>12} {:>14} {:>16}",
        "codec", "html out", "json out", "ratio", "us per set", "us per KB in", "us per KB saved"
    );
    for codec in codecs {
        let out_of = |set: &[&(String, Vec<u8>)]| -> usize {
            set.iter().map(|(_, d)| codec.compress(d)).sum()
        };
        let (html_out, json_out) = (out_of(&html), out_of(&json));
        let bytes_out = html_out + json_out;
        let mut samples: Vec<f64> = (0..SAMPLES)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..REPS {
                    for (_, doc) in &docs {
                        std::hint::black_box(codec.compress(std::hint::black_box(doc)));
                    }
                }
                start.elapsed().as_secs_f64() * 1e6 / REPS as f64
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        let per_set = samples[SAMPLES / 2];
        let saved_kb = (bytes_in - bytes_out) as f64 / 1024.0;
        println!(
            "{:<24} {:>10} {:>10} {:>8.3} {:>12.1} {:>14.2} {:>16.2}",
            codec.name(),
            html_out,
            json_out,
            bytes_out as f64 / bytes_in as f64,
            per_set,
            per_set / (bytes_in as f64 / 1024.0),
            per_set / saved_kb,
        );
    }
}
