//! Where a backend listens: a TCP address or a unix socket (`unix:/run/app/puma.sock`). A leaf
//! shared by upstream (pools, health) and admission (slots are counted by address).
//!
//! A backend's address is its identity everywhere (slots, health, metrics labels, the hash
//! ring), and those copy it freely, so the type is `Copy`: a socket path is interned once
//! per distinct path for the life of the process (a config names a handful; a reload that
//! names the same path reuses it).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// The prefix that marks a unix socket backend, as nginx (`unix:/path`) and Puma
/// (`unix:///path`) write it.
pub const UNIX_PREFIX: &str = "unix:";

/// The longest socket path the kernel accepts (`sun_path` is 108 bytes with its NUL).
pub const MAX_UNIX_PATH: usize = 107;

/// A backend's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendAddr {
    /// `host:port`, resolved.
    Tcp(SocketAddr),
    /// A unix domain socket, by its path.
    Unix(&'static Path),
}

impl BackendAddr {
    /// A unix socket backend at `path` (interned).
    pub fn unix(path: &Path) -> Self {
        BackendAddr::Unix(intern(path))
    }

    /// The TCP address, if it is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            BackendAddr::Tcp(addr) => Some(*addr),
            BackendAddr::Unix(_) => None,
        }
    }

    /// The `Host` a request frontdoor makes on its own (a health check) sends by default: the
    /// address for TCP, `localhost` for a socket (which has no host name).
    pub fn default_host(&self) -> String {
        match self {
            BackendAddr::Tcp(addr) => addr.to_string(),
            BackendAddr::Unix(_) => "localhost".to_string(),
        }
    }

    /// `unix:/path` (or `unix:///path`) → the socket path, relative paths joined to `base`;
    /// `None` when `text` names no socket.
    pub fn parse_unix(text: &str, base: &Path) -> Option<Result<BackendAddr, String>> {
        let rest = text.strip_prefix(UNIX_PREFIX)?;
        // `unix:///run/x.sock` is a URL with an empty authority; `unix:/run/x.sock` nginx's form.
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Some(Err(format!("`{text}` names no socket path")));
        }
        let path = base.join(path);
        let length = path.as_os_str().len();
        if length > MAX_UNIX_PATH {
            return Some(Err(format!(
                "`{}` is {length} bytes: a unix socket path has at most {MAX_UNIX_PATH}",
                path.display()
            )));
        }
        Some(Ok(BackendAddr::unix(&path)))
    }
}

impl From<SocketAddr> for BackendAddr {
    fn from(addr: SocketAddr) -> Self {
        BackendAddr::Tcp(addr)
    }
}

impl std::fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendAddr::Tcp(addr) => addr.fmt(f),
            BackendAddr::Unix(path) => write!(f, "{UNIX_PREFIX}{}", path.display()),
        }
    }
}

/// The one `'static` copy of `path`: allocated the first time a path is seen, never freed.
fn intern(path: &Path) -> &'static Path {
    static PATHS: Mutex<Option<HashSet<&'static Path>>> = Mutex::new(None);
    let mut paths = PATHS.lock().unwrap_or_else(PoisonError::into_inner);
    let paths = paths.get_or_insert_with(HashSet::new);
    if let Some(known) = paths.get(path) {
        return known;
    }
    let leaked: &'static Path = Box::leak(PathBuf::from(path).into_boxed_path());
    paths.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_forms_parse_and_print_as_nginx_writes_them() {
        let base = Path::new("/etc/frontdoor");
        let nginx = BackendAddr::parse_unix("unix:/run/app/puma.sock", base).unwrap();
        let puma = BackendAddr::parse_unix("unix:///run/app/puma.sock", base).unwrap();
        assert_eq!(nginx, puma);
        assert_eq!(nginx.unwrap().to_string(), "unix:/run/app/puma.sock");
        let relative = BackendAddr::parse_unix("unix:tmp/puma.sock", base).unwrap();
        assert_eq!(
            relative.unwrap().to_string(),
            "unix:/etc/frontdoor/tmp/puma.sock"
        );
        assert!(BackendAddr::parse_unix("127.0.0.1:3000", base).is_none());
        assert!(BackendAddr::parse_unix("unix:", base).unwrap().is_err());
        let long = format!("unix:/{}", "x".repeat(120));
        assert!(BackendAddr::parse_unix(&long, base).unwrap().is_err());
    }

    #[test]
    fn one_path_is_interned_once() {
        let a = BackendAddr::unix(Path::new("/run/a.sock"));
        let b = BackendAddr::unix(Path::new("/run/a.sock"));
        match (a, b) {
            (BackendAddr::Unix(x), BackendAddr::Unix(y)) => assert!(std::ptr::eq(x, y)),
            _ => unreachable!(),
        }
    }
}
