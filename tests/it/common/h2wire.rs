//! HTTP/2 frame by frame (RFC 9113 §4.1: a 9-byte header, then the payload), for what a
//! well-behaved client library will not send: floods, streams over the limit, endless
//! CONTINUATION. Also the TLS connection with a chosen protocol version and ALPN that the
//! abuse and TLS posture tests share. Used by `tests/it` and `benches/h2abuse.rs`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// What a client sends first on an HTTP/2 connection.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types.
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

/// Flags.
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// One frame: type, flags, stream and payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame length");
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK block for `GET https://{authority}{path}`: static-table fields and literals
/// without indexing, so every block stands alone (no dynamic table to keep in step).
pub fn get_request(authority: &str, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87]; // :method GET, :scheme https
    for (name_index, value) in [(4u8, path), (1u8, authority)] {
        // Literal without indexing, indexed name (RFC 7541 §6.2.2), 7-bit length, no Huffman.
        block.push(name_index);
        assert!(value.len() < 127, "short values only");
        block.push(u8::try_from(value.len()).expect("length"));
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// A frame read back.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn reason(&self) -> Option<h2::Reason> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let code = self.payload.get(at..at + 4)?;
        Some(h2::Reason::from(u32::from_be_bytes(code.try_into().ok()?)))
    }
}

/// The next frame, or `None` at a clean end of the connection.
pub async fn read_frame(
    reader: &mut (impl AsyncReadExt + Unpin),
) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 9];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await?;
    Ok(Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    }))
}

/// A rustls client trusting `ca_pem`, speaking only `versions`, offering `alpn`.
pub fn client_config(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("ca cert");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A TLS connection to `addr` as `localhost` with `config`.
pub async fn connect_with(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("server name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// An HTTP/2 connection (TLS 1.2 or 1.3, ALPN `h2`) to `addr`; checks that h2 was chosen.
pub async fn connect_h2(addr: SocketAddr, ca_pem: &str) -> TlsStream<TcpStream> {
    let config = client_config(ca_pem, rustls::ALL_VERSIONS, &[b"h2"]);
    let tls = connect_with(addr, config).await.expect("tls to frontdoor");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "ALPN h2");
    tls
}

/// [`connect_h2`], then the preface, our (empty) SETTINGS, and the ACK of the server's
/// SETTINGS, so that its limits apply from here on. Frames the server sent before its
/// SETTINGS are dropped.
pub async fn handshake_h2(addr: SocketAddr, ca_pem: &str) -> TlsStream<TcpStream> {
    let mut tls = connect_h2(addr, ca_pem).await;
    tls.write_all(PREFACE).await.expect("preface");
    tls.write_all(&frame(SETTINGS, 0, 0, &[]))
        .await
        .expect("settings");
    loop {
        let f = read_frame(&mut tls)
            .await
            .expect("read")
            .expect("server SETTINGS");
        if f.kind == SETTINGS && f.flags & ACK == 0 {
            break;
        }
    }
    tls.write_all(&frame(SETTINGS, ACK, 0, &[]))
        .await
        .expect("settings ack");
    tls.flush().await.expect("flush");
    tls
}
