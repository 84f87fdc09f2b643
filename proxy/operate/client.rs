//! The client side of the actions: `frontdoor deploy|pause|resume|maintenance` send one
//! `POST` to the admin listener (HTTP/1.0, like `frontdoor status`) and print its answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Why an action could not be asked for.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection, or it failed.
    #[error("the admin listener at {addr}: {error}")]
    Io {
        /// The admin listener.
        addr: SocketAddr,
        /// What failed.
        error: std::io::Error,
    },
    /// Not an HTTP answer.
    #[error("a malformed answer from the admin listener")]
    Malformed,
}

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body (JSON).
    pub body: String,
}

/// Sends `POST path_and_query` to `admin` with the bearer `token` if any, waiting at most
/// `wait` for the answer (a deploy answers when it is done).
pub fn post(
    admin: SocketAddr,
    path_and_query: &str,
    token: Option<&str>,
    wait: Duration,
) -> Result<Answer, ClientError> {
    let io = |error| ClientError::Io { addr: admin, error };
    let mut stream = TcpStream::connect_timeout(&admin, Duration::from_secs(2)).map_err(io)?;
    stream.set_read_timeout(Some(wait)).map_err(io)?;
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "POST {path_and_query} HTTP/1.0\r\nHost: {admin}\r\n{authorization}Content-Length: 0\r\n\r\n"
    )
    .map_err(io)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(io)?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or(ClientError::Malformed)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(ClientError::Malformed)?;
    Ok(Answer {
        status,
        body: body.to_string(),
    })
}

/// `s` percent-encoded for a query value.
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
