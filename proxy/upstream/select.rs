//! Backend selection: least busy, weighted round robin, and a consistent-hash ring.
//!
//! Each function takes the pool's view of its backends and a predicate saying which may get
//! a request now (up, not draining, not already tried); none of them locks anything.

use http::HeaderName;

/// `balance` of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// Fewest requests in flight relative to weight (slots × weight with admission).
    LeastBusy,
    /// Weighted round robin (smooth: weights 2:1 give a, b, a, a, b, a ...).
    RoundRobin,
    /// Consistent hashing of a request key on a ring with virtual nodes.
    Hash(HashKey),
}

/// What `balance = "hash"` hashes (`hash-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The path, without the query.
    Path,
    /// The path and the query.
    PathAndQuery,
    /// The downstream peer's IP address.
    ClientIp,
    /// A request header's value (absent: empty).
    Header(HeaderName),
}

impl HashKey {
    /// Parses the config word.
    pub fn parse(word: &str) -> Result<Self, String> {
        match word {
            "path" => Ok(HashKey::Path),
            "path-and-query" => Ok(HashKey::PathAndQuery),
            "client-ip" => Ok(HashKey::ClientIp),
            other => match other.strip_prefix("header:") {
                Some(name) => HeaderName::from_bytes(name.trim().as_bytes())
                    .map(HashKey::Header)
                    .map_err(|_| format!("`{name}` is not a header name")),
                None => Err(format!(
                    "`{other}` is not a hash key: use \"path\", \"path-and-query\", \"client-ip\" or \"header:NAME\""
                )),
            },
        }
    }
}

/// FNV-1a over `bytes`, then MurmurHash3's finalizer so that nearby keys spread over the
/// ring. Stable across builds and nodes: several frontdoor nodes send a key to one backend.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The order of weighted round robin: `weights[i]` entries of `i`, interleaved as nginx's
/// smooth weighted round robin does (never `weight` requests in a row to one backend).
pub fn schedule(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(weights) {
            *c += i64::from(*w);
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
        else {
            break;
        };
        current[best] -= total;
        order.push(best);
    }
    order
}

/// Virtual nodes per unit of weight on the ring.
const VNODES: u32 = 160;

/// A consistent-hash ring: each backend owns `VNODES × weight` points; a key goes to the
/// owner of the first point at or after its hash. Removing a backend moves only the keys
/// it owned; the others keep theirs.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    points: Vec<(u64, usize)>,
}

impl Ring {
    /// The ring of `backends` (address and weight), by index.
    pub fn new(backends: &[(super::BackendAddr, u32)]) -> Self {
        let mut points = Vec::new();
        for (i, (addr, weight)) in backends.iter().enumerate() {
            for v in 0..VNODES * weight {
                points.push((hash(format!("{addr}#{v}").as_bytes()), i));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The first backend clockwise from `key` that `ok` accepts.
    pub fn find(&self, key: u64, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let start = self.points.partition_point(|(h, _)| *h < key);
        let n = self.points.len();
        (0..n)
            .map(|k| self.points[(start + k) % n].1)
            .find(|i| ok(*i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<(crate::upstream::BackendAddr, u32)> {
        (1..=n)
            .map(|p| {
                (
                    std::net::SocketAddr::from(([10, 0, 0, 1], 3000 + p)).into(),
                    1,
                )
            })
            .collect()
    }

    #[test]
    fn smooth_weighted_round_robin_interleaves() {
        assert_eq!(schedule(&[2, 1]), vec![0, 1, 0]);
        assert_eq!(schedule(&[1, 1, 1]), vec![0, 1, 2]);
        let order = schedule(&[5, 1, 1]);
        assert_eq!(order.len(), 7);
        assert_eq!(order.iter().filter(|i| **i == 0).count(), 5);
        assert!(order.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn the_ring_spreads_keys_by_weight_and_moves_only_the_removed_share() {
        let backends = addrs(3);
        let ring = Ring::new(&backends);
        let keys: Vec<u64> = (0..3000)
            .map(|k| hash(format!("/k/{k}").as_bytes()))
            .collect();
        let before: Vec<usize> = keys
            .iter()
            .filter_map(|k| ring.find(*k, |_| true))
            .collect();
        for b in 0..3 {
            let share = before.iter().filter(|i| **i == b).count();
            assert!((700..1300).contains(&share), "backend {b}: {share}");
        }
        // Backend 1 gone: its keys move, nobody else's do.
        let after: Vec<usize> = keys
            .iter()
            .filter_map(|k| ring.find(*k, |i| i != 1))
            .collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != 1 {
                assert_eq!(b, a);
            }
        }
        // Weight 2 takes about half of the keys of three.
        let mut weighted = addrs(3);
        weighted[0].1 = 2;
        let ring = Ring::new(&weighted);
        let share = keys
            .iter()
            .filter(|k| ring.find(**k, |_| true) == Some(0))
            .count();
        assert!((1200..1800).contains(&share), "{share}");
    }

    #[test]
    fn hash_keys_parse() {
        assert_eq!(HashKey::parse("path"), Ok(HashKey::Path));
        assert!(matches!(
            HashKey::parse("header:X-User"),
            Ok(HashKey::Header(_))
        ));
        assert!(HashKey::parse("cookie").is_err());
    }
}
