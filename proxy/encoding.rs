//! Content codings: which frontdoor serves, negotiation with q-values (RFC 9110 §12.5.3), and
//! which media types are worth one. Shared by the asset cache, the edge cache and the
//! on-the-fly compressor, so it depends on none of them.
//!
//! Pingora's compression module takes the client's first listed encoding; browsers list gzip
//! before br, so it would pick gzip. Here the highest q-value wins and ties (every browser
//! sends no q-values) go to the server's preference, the order of the codings offered: for
//! stored variants (assets, edge cache) br, then gzip, then identity; for text compressed on
//! the fly ([`Encoding::DYNAMIC`]) zstd is offered too.

/// A content coding frontdoor can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Encoding {
    /// `br`
    Brotli,
    /// `gzip`
    Gzip,
    /// `zstd` (RFC 8878; offered for text compressed on the fly, not for stored variants).
    Zstd,
    /// No content coding.
    Identity,
}

impl Encoding {
    /// The codings of stored variants (assets, edge cache), most preferred first: Brotli at
    /// quality 11 is the smallest, and it is made once.
    pub const PREFERENCE: [Encoding; 3] = [Encoding::Brotli, Encoding::Gzip, Encoding::Identity];

    /// The codings of text compressed on the fly, most preferred first, by CPU per KB saved on
    /// the simulator's pages and JSON (`cargo bench --bench compression`, BENCHMARKS.md): zstd
    /// 3 costs 5-10x less per KB saved than Brotli 4 for 5% more bytes; Brotli stays for
    /// clients without zstd (Safari), gzip for the rest.
    pub const DYNAMIC: [Encoding; 4] = [
        Encoding::Zstd,
        Encoding::Brotli,
        Encoding::Gzip,
        Encoding::Identity,
    ];

    /// The `Content-Encoding` token (`identity` is never sent as a header).
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
            Encoding::Zstd => "zstd",
            Encoding::Identity => "identity",
        }
    }
}

/// Bodies known to be smaller are sent as they are: a coding would not pay for its frame
/// (the on-the-fly compressor and the edge cache's stored variants both use it).
pub const MIN_SIZE: u64 = 1024;

/// Content types worth compressing (compared without parameters).
pub fn compressible(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media.starts_with("text/") && media != "text/event-stream"
        || matches!(
            media.as_str(),
            "application/json"
                | "application/javascript"
                | "application/x-javascript"
                | "application/xml"
                | "application/rss+xml"
                | "application/atom+xml"
                | "application/manifest+json"
                | "image/svg+xml"
        )
        || media.ends_with("+json")
}

/// The q-value (in thousandths) the client gives each coding, and what `*` gives the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Accepted {
    brotli: Option<u16>,
    gzip: Option<u16>,
    zstd: Option<u16>,
    identity: Option<u16>,
    wildcard: Option<u16>,
}

/// Parses `0`, `0.5`, `1.000` into thousandths; `None` for anything malformed.
fn parse_q(text: &str) -> Option<u16> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value: u16 = format!("{frac:0<3}").parse().ok()?;
    match whole {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

fn parse(header: &str) -> Accepted {
    let mut accepted = Accepted {
        brotli: None,
        gzip: None,
        zstd: None,
        identity: None,
        wildcard: None,
    };
    for entry in header.split(',') {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = Some(1000);
        for param in parts {
            if let Some((name, value)) = param.split_once('=') {
                if name.trim().eq_ignore_ascii_case("q") {
                    q = parse_q(value);
                }
            }
        }
        // A malformed q-value makes the entry meaningless; it is ignored, not trusted.
        let Some(q) = q else { continue };
        let slot = match coding.as_str() {
            "br" => &mut accepted.brotli,
            "gzip" | "x-gzip" => &mut accepted.gzip,
            "zstd" => &mut accepted.zstd,
            "identity" => &mut accepted.identity,
            "*" => &mut accepted.wildcard,
            _ => continue,
        };
        // The same coding listed twice: the most favourable wins.
        *slot = Some(slot.map_or(q, |old| old.max(q)));
    }
    accepted
}

/// The coding to send, among `available` (most preferred first: ties go to the earlier), for
/// an `Accept-Encoding` header (`None`: absent).
/// `None` when the client accepts none of them (it refused identity with `q=0`); callers
/// answer with identity anyway, as nginx does, rather than 406.
pub fn negotiate(accept_encoding: Option<&str>, available: &[Encoding]) -> Option<Encoding> {
    let Some(header) = accept_encoding.filter(|h| !h.trim().is_empty()) else {
        // No header (or an empty one): only identity is known to be understood.
        return available
            .contains(&Encoding::Identity)
            .then_some(Encoding::Identity);
    };
    let accepted = parse(header);
    let q_of = |encoding: Encoding| -> u16 {
        let listed = match encoding {
            Encoding::Brotli => accepted.brotli,
            Encoding::Gzip => accepted.gzip,
            Encoding::Zstd => accepted.zstd,
            Encoding::Identity => accepted.identity,
        };
        match (listed, encoding) {
            (Some(q), _) => q,
            // Unlisted identity is acceptable (unless `*;q=0`), but ranks below anything the
            // client asked for by name.
            (None, Encoding::Identity) => accepted.wildcard.unwrap_or(1),
            (None, _) => accepted.wildcard.unwrap_or(0),
        }
    };
    available
        .iter()
        .copied()
        .map(|e| (q_of(e), e))
        .filter(|(q, _)| *q > 0)
        // Highest q wins; among equals the earlier, i.e. preferred, coding stays.
        .fold(None, |best: Option<(u16, Encoding)>, (q, e)| match best {
            Some((best_q, _)) if best_q >= q => best,
            _ => Some((q, e)),
        })
        .map(|(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::*;

    const ALL: &[Encoding] = &[Brotli, Gzip, Identity];

    #[test]
    fn browsers_get_brotli_even_when_gzip_is_listed_first() {
        assert_eq!(
            negotiate(Some("gzip, deflate, br, zstd"), ALL),
            Some(Brotli)
        );
        assert_eq!(negotiate(Some("gzip, deflate"), ALL), Some(Gzip));
        assert_eq!(negotiate(Some("br"), &[Gzip, Identity]), Some(Identity));
    }

    #[test]
    fn q_values_rank_and_q_zero_refuses() {
        assert_eq!(negotiate(Some("br;q=0.5, gzip"), ALL), Some(Gzip));
        assert_eq!(negotiate(Some("br;q=0, gzip;q=0.1"), ALL), Some(Gzip));
        assert_eq!(negotiate(Some("br;q=0"), ALL), Some(Identity));
        assert_eq!(
            negotiate(Some("br;q=0.9, gzip;q=0.9, identity;q=0.1"), ALL),
            Some(Brotli)
        );
        assert_eq!(
            negotiate(Some("gzip;q=0, identity;q=0"), &[Gzip, Identity]),
            None
        );
        assert_eq!(negotiate(Some("BR;Q=1.0"), ALL), Some(Brotli));
    }

    #[test]
    fn wildcard_covers_unlisted_codings_and_can_refuse_identity() {
        assert_eq!(negotiate(Some("*"), ALL), Some(Brotli));
        assert_eq!(negotiate(Some("gzip;q=1, *;q=0"), ALL), Some(Gzip));
        assert_eq!(negotiate(Some("*;q=0"), ALL), None);
        assert_eq!(negotiate(Some("*;q=0, identity"), ALL), Some(Identity));
    }

    #[test]
    fn absent_empty_or_malformed_headers_mean_identity() {
        assert_eq!(negotiate(None, ALL), Some(Identity));
        assert_eq!(negotiate(Some(""), ALL), Some(Identity));
        assert_eq!(negotiate(Some("br;q=2, gzip;q=abc"), ALL), Some(Identity));
        assert_eq!(negotiate(None, &[Brotli]), None);
    }

    #[test]
    fn q_values_parse_to_thousandths() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.125"), Some(125));
        assert_eq!(parse_q("1.001"), None);
        assert_eq!(parse_q("0.1234"), None);
    }
}
