//! HTTP/1.1 on the wire, for what client libraries hide: several requests written at once
//! (pipelining), how each answer is framed (length, chunked, or the end of the connection),
//! and a reader the test paces.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How an answer's body was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body ends when the connection does.
    Close,
    /// No body by definition (HEAD, 1xx, 204, 304).
    Empty,
}

/// One answer as it came over the wire.
#[derive(Debug, Clone)]
pub struct H1Response {
    pub status: u16,
    /// Fields in order, names lowercase.
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
    /// The body without its framing.
    pub body: Vec<u8>,
}

impl H1Response {
    /// The first value of field `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP/1.1 connection read answer by answer; bytes read past one answer stay for the next.
pub struct H1Conn<S> {
    stream: S,
    buf: Vec<u8>,
}

/// Each read of an answer gives up after this long.
const READ_LIMIT: Duration = Duration::from_secs(20);

impl<S: AsyncRead + AsyncWrite + Unpin> H1Conn<S> {
    pub fn new(stream: S) -> Self {
        H1Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes` as they are (one request, or several back to back).
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write request");
        self.stream.flush().await.expect("flush request");
    }

    /// Reads more bytes into the buffer; `false` at the end of the connection.
    async fn fill(&mut self) -> bool {
        let mut chunk = vec![0u8; 64 * 1024];
        match tokio::time::timeout(READ_LIMIT, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("no answer within {READ_LIMIT:?}"),
        }
    }

    /// The next head (status and fields), `None` if the connection ended first.
    pub async fn read_head(&mut self) -> Option<(u16, Vec<(String, String)>)> {
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Some((status, headers))
    }

    /// Exactly `n` bytes.
    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "connection ended inside a body");
        }
        self.buf.drain(..n).collect()
    }

    /// One line without its CRLF.
    async fn line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return line;
            }
            assert!(self.fill().await, "connection ended inside a chunk line");
        }
    }

    /// The next final answer (1xx heads skipped); `head_request` for an answer to HEAD.
    pub async fn read_response(&mut self, head_request: bool) -> Option<H1Response> {
        let (status, headers) = loop {
            let (status, headers) = self.read_head().await?;
            if !(100..200).contains(&status) || status == 101 {
                break (status, headers);
            }
        };
        let field = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let chunked = field("transfer-encoding").is_some_and(|te| te.contains("chunked"));
        let length = field("content-length").and_then(|l| l.parse::<usize>().ok());
        let framing = if head_request || status == 204 || status == 304 || status == 101 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked
        } else if let Some(length) = length {
            Framing::Length(length)
        } else {
            Framing::Close
        };
        let body = match framing {
            Framing::Empty => Vec::new(),
            Framing::Length(n) => self.take(n).await,
            Framing::Chunked => {
                let mut body = Vec::new();
                loop {
                    let size_line = self.line().await;
                    let size =
                        usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                            .unwrap_or_else(|_| panic!("bad chunk size {size_line:?}"));
                    if size == 0 {
                        // Trailers, then the blank line.
                        while !self.line().await.is_empty() {}
                        break body;
                    }
                    body.extend(self.take(size).await);
                    assert!(self.line().await.is_empty(), "chunk not followed by CRLF");
                }
            }
            Framing::Close => {
                while self.fill().await {}
                std::mem::take(&mut self.buf)
            }
        };
        Some(H1Response {
            status,
            headers,
            framing,
            body,
        })
    }

    /// Reads at most `max` raw bytes (framing included) of whatever comes next; 0 at the end.
    pub async fn read_raw(&mut self, max: usize) -> usize {
        if self.buf.is_empty() && !self.fill().await {
            return 0;
        }
        let n = max.min(self.buf.len());
        self.buf.drain(..n);
        n
    }

    /// Whether the peer closes the connection within `limit` (any bytes before that are
    /// dropped).
    pub async fn closes_within(&mut self, limit: Duration) -> bool {
        let mut chunk = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}
