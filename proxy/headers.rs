//! The headers a front door owns: `X-Request-Start`, `X-Forwarded-*`, `X-Request-Id`, and
//! hop-by-hop fields (RFC 9110 §7.6.1).
//!
//! Values a client could forge (queue start, client address, scheme, request id) are replaced
//! unless the peer is a configured trusted proxy, in which case they are kept (and the peer
//! appended to `X-Forwarded-For`).

use http::header::{HeaderMap, HeaderValue, CONNECTION};
use ipnet::IpNet;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// `X-Request-Start`
pub const X_REQUEST_START: &str = "x-request-start";
/// `X-Request-Id`
pub const X_REQUEST_ID: &str = "x-request-id";
/// `X-Forwarded-For`
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// `X-Forwarded-Proto`
pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
/// `X-Forwarded-Host`
pub const X_FORWARDED_HOST: &str = "x-forwarded-host";
/// The prefix of the fields frontdoor itself sends to the app (`x-frontdoor-job`,
/// `x-frontdoor-schedule`).
pub const INTERNAL_PREFIX: &str = "x-frontdoor-";
/// `X-Frontdoor-Job: <job id>` on every replay: the app's proof that a request is frontdoor's
/// replay of an offloaded job, since no downstream peer can send an `X-Frontdoor-*` field.
/// (`Idempotency-Key` carries the same id, but clients may send their own on other routes.)
pub const X_FRONTDOOR_JOB: &str = "x-frontdoor-job";

/// `t=<unix seconds>.<milliseconds>`, exactly three decimals: the one form New Relic,
/// Judoscale, Scout and rack-timeout (`^(t=)?\d+\.\d{3}$`) all parse.
pub fn request_start_value(arrival: SystemTime) -> String {
    let since_epoch = arrival.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!(
        "t={}.{:03}",
        since_epoch.as_secs(),
        since_epoch.subsec_millis()
    )
}

/// Whether `peer` is one of the trusted proxies.
pub fn is_trusted(peer: Option<IpAddr>, trusted: &[IpNet]) -> bool {
    peer.is_some_and(|ip| trusted.iter().any(|net| net.contains(&canonical(ip))))
}

/// IPv4-mapped IPv6 peers (`::ffff:10.0.0.1`) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A new request id: 128 random bits as 32 lowercase hex digits.
pub fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A client-supplied request id is kept only if it is short printable ASCII.
pub fn acceptable_request_id(value: &str) -> bool {
    (1..=200).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic())
}

/// Makes a strong `ETag` weak (`"x"` → `W/"x"`): for a body rewritten on the way (compressed,
/// or HTML changed), where byte-for-byte equality no longer holds (RFC 9110 §8.8.1).
pub fn weaken_etag(response: &mut pingora::http::ResponseHeader) {
    let strong = response
        .headers
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|tag| !tag.starts_with("W/"))
        .map(|tag| format!("W/{tag}"));
    if let Some(weak) = strong {
        response.set("etag", &weak);
    }
}

/// Frames a response body whose length frontdoor changed on the way (compression, script
/// deferral) and so whose `Content-Length` is gone: an HTTP/1.1 client gets it chunked and
/// keeps its connection (without this Pingora ends the body by closing, under a
/// `Connection: keep-alive` head); HTTP/2 drops the field and frames by DATA. An HTTP/1.0
/// client cannot read chunks: its body ends with the connection, and `true` says the
/// connection must close. Heads without a body, or already framed, are left alone.
pub fn frame_rewritten_body(
    response: &mut pingora::http::ResponseHeader,
    request: &pingora::http::RequestHeader,
) -> bool {
    let status = response.status.as_u16();
    let bodiless = request.method == http::Method::HEAD
        || (100..200).contains(&status)
        || status == 204
        || status == 304;
    let framed = response.headers.contains_key(http::header::CONTENT_LENGTH)
        || response
            .headers
            .contains_key(http::header::TRANSFER_ENCODING);
    if bodiless || framed {
        return false;
    }
    if request.version == http::Version::HTTP_10 || request.version == http::Version::HTTP_09 {
        return true;
    }
    response.set("transfer-encoding", "chunked");
    false
}

/// Header edits through Pingora's request and response heads, which keep a case-preserving
/// name map beside the `HeaderMap`: editing the map directly would desynchronise the two.
pub trait HeaderEdit {
    /// The headers, for reading.
    fn headers(&self) -> &HeaderMap;
    /// Replaces every value of `name`; an unencodable value removes the header instead.
    fn set(&mut self, name: &'static str, value: &str);
    /// Removes every value of `name`.
    fn unset(&mut self, name: &str);
}

macro_rules! impl_header_edit {
    ($head:ty) => {
        impl HeaderEdit for $head {
            fn headers(&self) -> &HeaderMap {
                &self.headers
            }
            fn set(&mut self, name: &'static str, value: &str) {
                match HeaderValue::from_str(value) {
                    Ok(value) => {
                        // Only fails for invalid names; ours are static and valid.
                        let _ = self.insert_header(name, value);
                    }
                    Err(_) => {
                        self.remove_header(name);
                    }
                }
            }
            fn unset(&mut self, name: &str) {
                self.remove_header(name);
            }
        }
    };
}
impl_header_edit!(pingora::http::RequestHeader);
impl_header_edit!(pingora::http::ResponseHeader);

/// What the upstream request should say about where it came from.
pub struct Forwarding<'a> {
    /// The downstream peer.
    pub peer: Option<IpAddr>,
    /// Whether that peer is a trusted proxy.
    pub trusted: bool,
    /// When the request head arrived.
    pub arrival: SystemTime,
    /// `https` or `http`: the scheme of the listener.
    pub scheme: &'static str,
    /// The host the client asked for.
    pub host: Option<&'a str>,
    /// The request id (kept or generated).
    pub request_id: &'a str,
}

impl Forwarding<'_> {
    /// Sets the forwarding headers on an upstream request.
    pub fn apply(&self, head: &mut impl HeaderEdit) {
        let trusted = self.trusted;
        let has = |head: &dyn HeaderEdit, name: &str| head.headers().contains_key(name);
        if !(trusted && has(head, X_REQUEST_START)) {
            head.set(X_REQUEST_START, &request_start_value(self.arrival));
        }
        let peer = self.peer.map(|ip| canonical(ip).to_string());
        let chain = head
            .headers()
            .get(X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok());
        let forwarded_for = match (trusted, chain, &peer) {
            (true, Some(chain), Some(peer)) => Some(format!("{chain}, {peer}")),
            (_, _, Some(peer)) => Some(peer.clone()),
            (_, _, None) => None,
        };
        match forwarded_for {
            Some(value) => head.set(X_FORWARDED_FOR, &value),
            None => head.unset(X_FORWARDED_FOR),
        }
        if !(trusted && has(head, X_FORWARDED_PROTO)) {
            head.set(X_FORWARDED_PROTO, self.scheme);
        }
        if !(trusted && has(head, X_FORWARDED_HOST)) {
            match self.host {
                Some(host) => head.set(X_FORWARDED_HOST, host),
                None => head.unset(X_FORWARDED_HOST),
            }
        }
        if !trusted {
            // RFC 7239 `Forwarded` would carry the same claims; an untrusted one is dropped.
            head.unset("forwarded");
        }
        // `X-Frontdoor-*` fields are frontdoor's own messages to the app (a schedule's name);
        // no downstream peer may send one.
        let internal: Vec<String> = head
            .headers()
            .keys()
            .map(|name| name.as_str())
            .filter(|name| name.starts_with(INTERNAL_PREFIX))
            .map(str::to_string)
            .collect();
        for name in internal {
            head.unset(&name);
        }
        head.set(X_REQUEST_ID, self.request_id);
    }
}

/// Removes hop-by-hop fields from an upstream response (RFC 9110 §7.6.1): those named in
/// `Connection`, and `Connection`, `Keep-Alive`, `Proxy-Connection` themselves; the downstream
/// connection has its own. `Transfer-Encoding` stays: Pingora reframes the body from it.
/// (The upstream *request* side is already stripped by Pingora's default peer policy, which
/// keeps a well-formed WebSocket upgrade.) Not for `101 Switching Protocols`.
pub fn strip_hop_by_hop(head: &mut impl HeaderEdit) {
    let listed: Vec<String> = head
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty() && name != "transfer-encoding")
        .collect();
    for name in
        listed
            .iter()
            .map(String::as_str)
            .chain(["keep-alive", "proxy-connection", "connection"])
    {
        head.unset(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::http::{RequestHeader, ResponseHeader};
    use std::time::Duration;

    fn rack_timeout_accepts(value: &str) -> bool {
        // rack-timeout's pattern, ^(t=)?\d+\.\d{3}$, spelled out without a regex dependency.
        let v = value.strip_prefix("t=").unwrap_or(value);
        let Some((secs, millis)) = v.split_once('.') else {
            return false;
        };
        !secs.is_empty()
            && secs.bytes().all(|b| b.is_ascii_digit())
            && millis.len() == 3
            && millis.bytes().all(|b| b.is_ascii_digit())
    }

    #[test]
    fn request_start_has_exactly_three_decimals() {
        let at = UNIX_EPOCH + Duration::from_millis(1_732_270_000_007);
        assert_eq!(request_start_value(at), "t=1732270000.007");
        assert!(rack_timeout_accepts(
            &request_start_value(SystemTime::now())
        ));
        assert!(rack_timeout_accepts(&request_start_value(
            UNIX_EPOCH + Duration::from_micros(1_999_999)
        )));
    }

    fn forwarding(trusted: bool) -> Forwarding<'static> {
        Forwarding {
            peer: Some("::ffff:10.1.2.3".parse().unwrap()),
            trusted,
            arrival: UNIX_EPOCH + Duration::from_secs(5),
            scheme: "https",
            host: Some("example.com"),
            request_id: "abc",
        }
    }

    fn spoofed() -> RequestHeader {
        let mut h = RequestHeader::build("GET", b"/", None).unwrap();
        h.insert_header(X_REQUEST_START, "t=1").unwrap();
        h.insert_header(X_FORWARDED_FOR, "6.6.6.6").unwrap();
        h.insert_header(X_FORWARDED_PROTO, "http").unwrap();
        h.insert_header("forwarded", "for=6.6.6.6").unwrap();
        h.insert_header("idempotency-key", "a-clients-own-key")
            .unwrap();
        h.insert_header("X-Frontdoor-Schedule", "nightly").unwrap();
        h
    }

    #[test]
    fn untrusted_peers_cannot_set_forwarding_headers() {
        let mut h = spoofed();
        forwarding(false).apply(&mut h);
        assert_eq!(h.headers[X_REQUEST_START], "t=5.000");
        assert_eq!(h.headers[X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(h.headers[X_FORWARDED_PROTO], "https");
        assert_eq!(h.headers[X_FORWARDED_HOST], "example.com");
        assert!(!h.headers.contains_key("forwarded"));
        // A client's own idempotency key is its business with the app, as with nginx.
        assert_eq!(h.headers["idempotency-key"], "a-clients-own-key");
        assert!(!h.headers.contains_key("x-frontdoor-schedule"));
    }

    #[test]
    fn trusted_peers_keep_theirs_and_are_appended() {
        let mut h = spoofed();
        forwarding(true).apply(&mut h);
        assert_eq!(h.headers[X_REQUEST_START], "t=1");
        assert_eq!(h.headers[X_FORWARDED_FOR], "6.6.6.6, 10.1.2.3");
        assert_eq!(h.headers[X_FORWARDED_PROTO], "http");
        assert_eq!(h.headers["idempotency-key"], "a-clients-own-key");
        assert!(!h.headers.contains_key("x-frontdoor-schedule"));
        assert!(is_trusted(
            Some("::ffff:10.1.2.3".parse().unwrap()),
            &["10.0.0.0/8".parse().unwrap()]
        ));
    }

    #[test]
    fn hop_by_hop_fields_are_removed_from_responses() {
        let mut h = ResponseHeader::build(200, None).unwrap();
        h.insert_header("Connection", "close, x-secret").unwrap();
        h.insert_header("x-secret", "1").unwrap();
        h.insert_header("keep-alive", "timeout=5").unwrap();
        h.insert_header("x-kept", "1").unwrap();
        h.insert_header("transfer-encoding", "chunked").unwrap();
        strip_hop_by_hop(&mut h);
        let mut wire = Vec::new();
        h.header_to_h1_wire(&mut wire);
        assert_eq!(
            String::from_utf8(wire).unwrap(),
            "x-kept: 1\r\ntransfer-encoding: chunked\r\n"
        );
    }
}
