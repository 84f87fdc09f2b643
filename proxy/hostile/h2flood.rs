//! HTTP/2 control-frame floods from a client that reads its answers.
//!
//! The h2 crate answers every PING and SETTINGS frame and has no rate limit on them; Pingora
//! exposes none. A client that sends them as fast as it can and reads the answers is served
//! like ordinary work and keeps a worker thread ~90% busy (BENCHMARKS.md, "HTTP/2 abuse"). A
//! client that does not read is already stalled by the h2 crate's own buffering.
//!
//! [`FrameBudget`] follows the frame headers of the decrypted byte stream (the connection
//! preface, then 9-byte headers and skipped payloads) and spends one token per frame that asks
//! frontdoor for work but carries no request: PING and SETTINGS without ACK, and PRIORITY.
//! Tokens refill at [`REFILL_PER_SEC`] up to [`BURST`]; a connection that runs out is closed.
//! Browsers send a SETTINGS frame when they connect and a PING now and then, orders of
//! magnitude below the budget. nginx's "http2 flood detected" and Envoy's control-frame
//! limits play the same role.

use std::time::Instant;

/// Control frames a connection may send at once.
pub const BURST: f64 = 1_000.0;
/// Control frames a connection may send per second, sustained.
pub const REFILL_PER_SEC: f64 = 100.0;

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, before the first frame.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const PRIORITY: u8 = 0x2;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;

/// The frame parser and token bucket of one HTTP/2 connection.
#[derive(Debug)]
pub struct FrameBudget {
    preface_left: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    payload_left: usize,
    tokens: f64,
    refilled: Instant,
}

impl Default for FrameBudget {
    fn default() -> Self {
        FrameBudget::new(Instant::now())
    }
}

impl FrameBudget {
    /// A connection accepted at `now`, with a full bucket.
    pub fn new(now: Instant) -> Self {
        FrameBudget {
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            payload_left: 0,
            tokens: BURST,
            refilled: now,
        }
    }

    /// Follows `bytes` read from the client at `now`; `false` once the budget is spent.
    pub fn feed(&mut self, mut bytes: &[u8], now: Instant) -> bool {
        let mut costly = 0u32;
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
            } else {
                let n = (FRAME_HEADER_LEN - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == FRAME_HEADER_LEN {
                    self.header_len = 0;
                    let [l0, l1, l2, kind, flags, ..] = self.header;
                    self.payload_left =
                        usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                    let asks_for_work = match kind {
                        PING | SETTINGS => flags & ACK == 0,
                        PRIORITY => true,
                        _ => false,
                    };
                    costly += u32::from(asks_for_work);
                }
            }
        }
        if costly == 0 {
            return self.tokens >= 0.0;
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * REFILL_PER_SEC).min(BURST) - f64::from(costly);
        self.tokens >= 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            0,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_ping_flood_spends_the_budget_and_acks_and_requests_do_not() {
        let t0 = Instant::now();
        let mut budget = FrameBudget::new(t0);
        assert!(budget.feed(PREFACE, t0));
        let headers = frame(0x1, 0x4, &[0x82; 40]);
        let ack = frame(PING, ACK, &[0; 8]);
        for _ in 0..5_000 {
            assert!(budget.feed(&headers, t0));
            assert!(budget.feed(&ack, t0));
        }
        let ping = frame(PING, 0, &[7; 8]);
        for _ in 0..BURST as usize {
            assert!(budget.feed(&ping, t0));
        }
        assert!(!budget.feed(&ping, t0));
    }

    #[test]
    fn frames_split_anywhere_are_counted_once_and_payloads_are_skipped() {
        let t0 = Instant::now();
        let mut budget = FrameBudget::new(t0);
        let mut stream = PREFACE.to_vec();
        // A DATA payload full of bytes that look like PING headers must not count.
        let lookalike: Vec<u8> = frame(PING, 0, &[0; 8]).repeat(200);
        stream.extend(frame(0x0, 0, &lookalike));
        for _ in 0..600 {
            stream.extend(frame(SETTINGS, 0, &[0, 3, 0, 0, 0, 100]));
        }
        for chunk in stream.chunks(7) {
            assert!(budget.feed(chunk, t0));
        }
        assert!((budget.tokens - (BURST - 600.0)).abs() < 1e-9);
    }

    #[test]
    fn the_bucket_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut budget = FrameBudget::new(t0);
        assert!(budget.feed(PREFACE, t0));
        let ping = frame(PING, 0, &[1; 8]);
        let burst: Vec<u8> = ping.repeat(BURST as usize);
        assert!(budget.feed(&burst, t0));
        // A second later, 100 more are allowed, not 101.
        let later = t0 + Duration::from_secs(1);
        assert!(budget.feed(&ping.repeat(REFILL_PER_SEC as usize), later));
        assert!(!budget.feed(&ping, later));
        // Steady pinging within the rate never trips.
        let mut budget = FrameBudget::new(t0);
        for second in 0..600u64 {
            let now = t0 + Duration::from_secs(second);
            assert!(budget.feed(&ping.repeat(50), now), "second {second}");
        }
    }
}
