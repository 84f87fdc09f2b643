//! The stored forms of one asset: identity always, gzip and Brotli when they are smaller, each
//! with its own strong ETag. Compression runs once per stored body, off the request path (see
//! [`super`]): at full effort (Brotli 11) for fingerprinted assets, which live for a year, and
//! at streaming effort for edge-cached responses, which live for seconds or minutes.

use bytes::Bytes;
use std::io::Write;

use crate::encoding::Encoding;

/// One stored form of an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// How `body` is encoded.
    pub encoding: Encoding,
    /// The bytes sent.
    pub body: Bytes,
    /// Strong ETag, quoted: differs per encoding, since the bytes differ.
    pub etag: String,
}

/// How hard to compress a stored body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effort {
    /// Brotli 11 with a 4 MiB window, gzip 9: an asset is compressed once and served for a year.
    Max,
    /// Brotli 5 with a 1 MiB window, gzip 6: a cached response lives for seconds or minutes,
    /// so its compression must cost about what streaming it would.
    Fast,
}

impl Effort {
    /// (Brotli quality, Brotli window log2, gzip level).
    fn settings(self) -> (u32, u32, u32) {
        match self {
            Effort::Max => (11, 22, 9),
            Effort::Fast => (5, 20, 6),
        }
    }
}

/// The smallest Brotli window (log2, 10–24) that covers `len` bytes (a window of `2^n` reaches
/// back `2^n - 16` bytes).
fn window_for(len: usize) -> u32 {
    let bits = usize::BITS - (len + 15).leading_zeros();
    bits.clamp(10, 24)
}

/// 64-bit FNV-1a: deterministic on every node and every version, so two frontdoor nodes give
/// the same ETag for the same bytes.
pub fn content_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Variant {
    /// The identity form of `body`.
    pub fn identity(body: Bytes) -> Self {
        let etag = format!("\"{:016x}\"", content_hash(&body));
        Variant {
            encoding: Encoding::Identity,
            body,
            etag,
        }
    }

    /// `identity` compressed with `encoding` at `effort`, if that is smaller.
    pub fn compressed(
        identity: &Variant,
        encoding: Encoding,
        effort: Effort,
    ) -> std::io::Result<Option<Variant>> {
        let (brotli_quality, brotli_window, gzip_level) = effort.settings();
        let body = match encoding {
            Encoding::Identity | Encoding::Zstd => return Ok(None),
            Encoding::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(gzip_level));
                encoder.write_all(&identity.body)?;
                encoder.finish()?
            }
            Encoding::Brotli => {
                let mut out = Vec::new();
                {
                    // A window past the input's size buys nothing and costs the encoder memory.
                    let window = window_for(identity.body.len()).min(brotli_window);
                    let mut writer =
                        brotli::CompressorWriter::new(&mut out, 64 * 1024, brotli_quality, window);
                    writer.write_all(&identity.body)?;
                    writer.flush()?;
                }
                out
            }
        };
        if body.len() >= identity.body.len() {
            return Ok(None);
        }
        // Encoders grow their output by doubling; a stored variant keeps only its bytes.
        let mut body = body;
        body.shrink_to_fit();
        let tag = identity.etag.trim_matches('"');
        Ok(Some(Variant {
            encoding,
            body: Bytes::from(body),
            etag: format!("\"{tag}-{}\"", encoding.token()),
        }))
    }
}

/// Whether the last path segment carries a content fingerprint, as Rails (Sprockets,
/// Propshaft, Webpacker/Shakapacker) and webpack write them: a run of 8 or more hex digits
/// between `-` or `.` separators, after the name and before the extension
/// (`application-3f9a1c2b.js`, `main.3f9a1c2b.chunk.js`).
pub fn is_fingerprinted(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    let tokens: Vec<&str> = file.split(['-', '.']).collect();
    tokens.len() >= 3
        && tokens[1..tokens.len() - 1]
            .iter()
            .any(|t| t.len() >= 8 && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Bytes {
        Bytes::from(
            (0..2_000)
                .map(|i| format!("function f{i}() {{ return {i}; }}\n"))
                .collect::<String>(),
        )
    }

    #[test]
    fn compressed_variants_round_trip_and_are_smaller() {
        let identity = Variant::identity(sample());
        let br = Variant::compressed(&identity, Encoding::Brotli, Effort::Max)
            .unwrap()
            .unwrap();
        let gz = Variant::compressed(&identity, Encoding::Gzip, Effort::Max)
            .unwrap()
            .unwrap();
        assert!(br.body.len() < gz.body.len() && gz.body.len() < identity.body.len());

        let mut decoded = Vec::new();
        brotli::Decompressor::new(&br.body[..], 4096)
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, identity.body);
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&gz.body[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, identity.body);

        let tags = [&identity.etag, &br.etag, &gz.etag];
        assert!(tags.iter().all(|t| t.starts_with('"') && t.ends_with('"')));
        assert!(br.etag.ends_with("-br\"") && gz.etag.ends_with("-gzip\""));
    }

    #[test]
    fn the_brotli_window_covers_the_input_and_no_more() {
        assert_eq!(window_for(0), 10);
        assert_eq!(window_for(1008), 10);
        assert_eq!(window_for(1009), 11);
        assert_eq!(window_for(500_000), 19);
        assert_eq!(window_for(1 << 30), 24);
    }

    #[test]
    fn incompressible_bodies_keep_only_identity() {
        let noise: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
        let identity = Variant::identity(Bytes::from(noise));
        assert_eq!(
            Variant::compressed(&identity, Encoding::Gzip, Effort::Max).unwrap(),
            None
        );
    }

    #[test]
    fn fingerprints_are_recognised_in_rails_and_webpack_names() {
        assert!(is_fingerprinted("/assets/application-3f9a1c2b4d5e6f70.js"));
        assert!(is_fingerprinted("/packs/js/main.3f9a1c2b.chunk.js"));
        assert!(is_fingerprinted(
            "/assets/application-4b1f6e4ad94cfa1ae4d4a3bc0fd1d2b2bd4c5d7b9d1c1e0f1a2b3c4d5e6f7a8b.css"
        ));
        assert!(!is_fingerprinted("/assets/application.js"));
        assert!(!is_fingerprinted("/assets/logo-header.png"));
        assert!(
            !is_fingerprinted("/assets/3f9a1c2b4d5e6f70.js"),
            "a bare hash is a name, not a fingerprint"
        );
        assert!(
            !is_fingerprinted("/assets/app-3f9a1c2.js"),
            "7 digits are too few"
        );
    }
}
