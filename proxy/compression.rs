//! On-the-fly compression of dynamic text from the upstream (HTML, JSON, JS, CSS, SVG, XML,
//! plain text), negotiated like assets (q-values, then the server's preference,
//! [`Encoding::DYNAMIC`]: zstd, then br, then gzip) but at streaming settings: zstd level 3,
//! Brotli quality 4 and gzip level 5, each with a window of at most 256 KiB. zstd comes first
//! because it saves a KB of a page or a JSON document for a fifth to a tenth of Brotli 4's CPU
//! (`cargo bench --bench compression`, BENCHMARKS.md); Chrome and Firefox accept it.
//!
//! Not compressed: statuses without a body or partial content, bodies the upstream already
//! encoded, `Cache-Control: no-transform`, bodies known to be under the minimum size, other
//! content types. A compressed response loses `Content-Length` (it is streamed), gains
//! `Vary: Accept-Encoding`, and a strong ETag becomes weak (the bytes differ; the resource
//! does not), as nginx does. A HEAD gets the same fields as the GET would (RFC 9110 §9.3.2),
//! and a `304` those of the compressed `200` it confirms (§15.4.5): `Vary` and the weak ETag.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use std::io::Write;

use crate::encoding::{compressible, negotiate, Encoding, MIN_SIZE};
use crate::headers::HeaderEdit;

/// Streaming Brotli quality: close to gzip 6 in CPU, ~15% smaller.
const BROTLI_QUALITY: u32 = 4;
/// Brotli window (log2) for streams: 256 KiB keeps per-response memory small.
const BROTLI_WINDOW: u32 = 18;
/// gzip level for streams.
const GZIP_LEVEL: u32 = 5;
/// zstd level for streams.
const ZSTD_LEVEL: i32 = 3;
/// zstd window (log2) for streams, as Brotli's: browsers accept up to 8 MiB (RFC 9659), and a
/// small window keeps per-response memory small.
const ZSTD_WINDOW: u32 = 18;

/// The encoding to compress `response` with, if it should be compressed at all.
pub fn choose(accept_encoding: Option<&str>, response: &ResponseHeader) -> Option<Encoding> {
    if accept_encoding.is_none_or(|a| a.trim().is_empty()) {
        // Only identity is known to be understood: nothing below can change that.
        return None;
    }
    let status = response.status.as_u16();
    if !(200..300).contains(&status) || status == 204 || status == 206 {
        return None;
    }
    let headers = &response.headers;
    let text = |name: http::header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if headers.contains_key(http::header::CONTENT_ENCODING) {
        return None;
    }
    if !text(http::header::CONTENT_TYPE).is_some_and(compressible) {
        return None;
    }
    if crate::edge_cache::directives::no_transform(headers) {
        return None;
    }
    if text(http::header::CONTENT_LENGTH)
        .and_then(|l| l.trim().parse::<u64>().ok())
        .is_some_and(|l| l < MIN_SIZE)
    {
        return None;
    }
    match negotiate(accept_encoding, &Encoding::DYNAMIC)? {
        Encoding::Identity => None,
        chosen => Some(chosen),
    }
}

/// Gives a `304` the fields of the compressed `200` it stands for, when that 200 would have
/// been compressed for this client: `Vary: Accept-Encoding`, and the weak ETag the client
/// holds (it sent `If-None-Match: W/"x"` and the app confirmed `"x"`).
pub fn rewrite_not_modified(
    accept_encoding: Option<&str>,
    if_none_match: Option<&str>,
    response: &mut ResponseHeader,
) {
    let headers = &response.headers;
    let text = |name: http::header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if response.status != http::StatusCode::NOT_MODIFIED
        || headers.contains_key(http::header::CONTENT_ENCODING)
        || crate::edge_cache::directives::no_transform(headers)
        || text(http::header::CONTENT_TYPE).is_some_and(|t| !compressible(t))
        || matches!(
            negotiate(accept_encoding, &Encoding::DYNAMIC),
            None | Some(Encoding::Identity)
        )
    {
        return;
    }
    let weak_held = text(http::header::ETAG)
        .filter(|tag| !tag.starts_with("W/"))
        .map(|tag| format!("W/{}", tag.trim()))
        .is_some_and(|weak| {
            if_none_match.is_some_and(|inm| inm.split(',').any(|t| t.trim() == weak))
        });
    add_vary_accept_encoding(response);
    if weak_held {
        crate::headers::weaken_etag(response);
    }
}

/// Adds `Accept-Encoding` to `Vary` unless it is there (or `*`).
fn add_vary_accept_encoding(response: &mut ResponseHeader) {
    let vary = response
        .headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    if vary.trim().is_empty() {
        response.set("vary", "Accept-Encoding");
    } else if !vary.to_ascii_lowercase().contains("accept-encoding") && vary.trim() != "*" {
        response.set("vary", &format!("{vary}, Accept-Encoding"));
    }
}

/// Rewrites the response head for a body compressed with `encoding`.
pub fn rewrite_head(response: &mut ResponseHeader, encoding: Encoding) {
    response.unset(http::header::CONTENT_LENGTH.as_str());
    response.set("content-encoding", encoding.token());
    add_vary_accept_encoding(response);
    crate::headers::weaken_etag(response);
}

/// A streaming compressor for one response body, counting what goes in and out.
pub struct Compressor {
    stream: Stream,
    encoding: Encoding,
    bytes_in: u64,
    bytes_out: u64,
}

enum Stream {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(Box<zstd::stream::write::Encoder<'static, Vec<u8>>>),
}

/// What one compressed body came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The encoding used.
    pub encoding: Encoding,
    /// Bytes received from the upstream.
    pub bytes_in: u64,
    /// Bytes sent to the client.
    pub bytes_out: u64,
}

impl Compressor {
    /// A compressor for `encoding` (identity has none; zstd none if libzstd refuses its
    /// parameters, which it does not for these).
    pub fn new(encoding: Encoding) -> Option<Self> {
        let stream = match encoding {
            Encoding::Gzip => Stream::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Encoding::Brotli => Stream::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 * 1024,
                BROTLI_QUALITY,
                BROTLI_WINDOW,
            ))),
            Encoding::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL).ok()?;
                encoder.window_log(ZSTD_WINDOW).ok()?;
                Stream::Zstd(Box::new(encoder))
            }
            Encoding::Identity => return None,
        };
        Some(Compressor {
            stream,
            encoding,
            bytes_in: 0,
            bytes_out: 0,
        })
    }

    /// Feeds `chunk`; returns what the compressor has output so far (often nothing: it
    /// buffers until a block is worth emitting, and [`Compressor::finish`] flushes the rest).
    pub fn push(&mut self, chunk: &[u8]) -> std::io::Result<Bytes> {
        self.bytes_in += chunk.len() as u64;
        let out = match &mut self.stream {
            Stream::Gzip(encoder) => {
                encoder.write_all(chunk)?;
                std::mem::take(encoder.get_mut())
            }
            Stream::Brotli(writer) => {
                writer.write_all(chunk)?;
                std::mem::take(writer.get_mut())
            }
            Stream::Zstd(encoder) => {
                encoder.write_all(chunk)?;
                std::mem::take(encoder.get_mut())
            }
        };
        self.bytes_out += out.len() as u64;
        Ok(Bytes::from(out))
    }

    /// Ends the stream; returns the remaining output and the totals.
    pub fn finish(self) -> std::io::Result<(Bytes, Outcome)> {
        let rest = match self.stream {
            Stream::Gzip(encoder) => encoder.finish()?,
            Stream::Brotli(writer) => writer.into_inner(),
            Stream::Zstd(encoder) => encoder.finish()?,
        };
        let outcome = Outcome {
            encoding: self.encoding,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out + rest.len() as u64,
        };
        Ok((Bytes::from(rest), outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn response(content_type: &str, extra: &[(&'static str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("content-type", content_type).unwrap();
        for (name, value) in extra {
            r.insert_header(*name, *value).unwrap();
        }
        r
    }

    #[test]
    fn text_types_are_compressed_with_the_negotiated_encoding() {
        let chrome = Some("gzip, deflate, br, zstd");
        let html = response("text/html; charset=utf-8", &[]);
        assert_eq!(choose(chrome, &html), Some(Encoding::Zstd));
        // Safari: no zstd.
        assert_eq!(
            choose(Some("gzip, deflate, br"), &html),
            Some(Encoding::Brotli)
        );
        // q-values first, then the server's preference among equals.
        assert_eq!(
            choose(Some("zstd;q=0.5, br"), &html),
            Some(Encoding::Brotli)
        );
        assert_eq!(
            choose(Some("br;q=0.8, zstd;q=0.8"), &html),
            Some(Encoding::Zstd)
        );
        assert_eq!(choose(Some("zstd;q=0, gzip"), &html), Some(Encoding::Gzip));
        assert_eq!(choose(Some("*"), &html), Some(Encoding::Zstd));
        assert_eq!(
            choose(Some("gzip"), &response("application/json", &[])),
            Some(Encoding::Gzip)
        );
        assert_eq!(
            choose(Some("gzip"), &response("application/vnd.api+json", &[])),
            Some(Encoding::Gzip)
        );
        assert_eq!(choose(None, &response("text/html", &[])), None);
        assert_eq!(choose(chrome, &response("image/png", &[])), None);
        assert_eq!(choose(chrome, &response("text/event-stream", &[])), None);
    }

    #[test]
    fn what_must_not_be_transformed_is_left_alone() {
        let chrome = Some("br");
        assert_eq!(
            choose(
                chrome,
                &response("text/html", &[("cache-control", "public, no-transform")])
            ),
            None
        );
        assert_eq!(
            choose(
                chrome,
                &response("text/html", &[("content-encoding", "gzip")])
            ),
            None
        );
        assert_eq!(
            choose(chrome, &response("text/html", &[("content-length", "100")])),
            None
        );
        assert_eq!(
            choose(
                chrome,
                &response("text/html", &[("content-length", "5000")])
            ),
            Some(Encoding::Brotli)
        );
        let mut partial = response("text/html", &[]);
        partial.set_status(206).unwrap();
        assert_eq!(choose(chrome, &partial), None);
    }

    #[test]
    fn head_is_rewritten_for_a_compressed_stream() {
        let mut r = response(
            "text/html",
            &[
                ("content-length", "5000"),
                ("vary", "Cookie"),
                ("etag", "\"v1\""),
            ],
        );
        rewrite_head(&mut r, Encoding::Brotli);
        assert!(!r.headers.contains_key("content-length"));
        assert_eq!(r.headers["content-encoding"], "br");
        assert_eq!(r.headers["vary"], "Cookie, Accept-Encoding");
        assert_eq!(r.headers["etag"], "W/\"v1\"");
    }

    #[test]
    fn streamed_chunks_round_trip() {
        let text: Vec<u8> = (0..3000)
            .flat_map(|i| format!("<li>course {i}</li>\n").into_bytes())
            .collect();
        for encoding in [Encoding::Brotli, Encoding::Gzip, Encoding::Zstd] {
            let mut compressor = Compressor::new(encoding).unwrap();
            let mut out = Vec::new();
            for chunk in text.chunks(4096) {
                out.extend_from_slice(&compressor.push(chunk).unwrap());
            }
            let (rest, outcome) = compressor.finish().unwrap();
            out.extend_from_slice(&rest);
            assert_eq!(outcome.bytes_in, text.len() as u64);
            assert_eq!(outcome.bytes_out, out.len() as u64);
            assert!(
                out.len() * 4 < text.len(),
                "{encoding:?}: {} of {}",
                out.len(),
                text.len()
            );
            let mut decoded = Vec::new();
            match encoding {
                Encoding::Brotli => brotli::Decompressor::new(&out[..], 4096)
                    .read_to_end(&mut decoded)
                    .unwrap(),
                Encoding::Zstd => zstd::stream::read::Decoder::new(&out[..])
                    .unwrap()
                    .read_to_end(&mut decoded)
                    .unwrap(),
                _ => flate2::read::GzDecoder::new(&out[..])
                    .read_to_end(&mut decoded)
                    .unwrap(),
            };
            assert_eq!(decoded, text);
        }
    }
}
