//! What validation reads besides the config text: the files it names (certificates, asset
//! directories, `backends-file`s) and host names to resolve. One seam, so that `run`,
//! `check` and reload read the machine ([`System`]) while the fuzzer validates configs
//! against an in-memory world that never touches the disk or DNS.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// The world a config is validated against.
pub trait Outside {
    /// The bytes of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// `path` resolved to a canonical directory; an error if it is missing or no directory
    /// (the message then says which).
    fn directory(&self, path: &Path) -> Result<PathBuf, String>;
    /// The addresses of `host:port`, where `host` is a name, not an IP literal.
    fn resolve(&self, host_port: &str) -> io::Result<Vec<SocketAddr>>;
}

/// The machine: the file system and the system resolver.
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Outside for System {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn directory(&self, path: &Path) -> Result<PathBuf, String> {
        match std::fs::canonicalize(path) {
            Ok(root) if root.is_dir() => Ok(root),
            Ok(_) => Err(format!("{} is not a directory", path.display())),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    fn resolve(&self, host_port: &str) -> io::Result<Vec<SocketAddr>> {
        Ok(host_port.to_socket_addrs()?.collect())
    }
}
