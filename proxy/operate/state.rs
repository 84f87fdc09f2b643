//! The state file: the operator's actions in force, as JSON, written whole (aside, then
//! renamed over) after every action, read once at start.
//!
//! ```json
//! {"deployed":{"app":{"targets":["127.0.0.1:3001"],"replaced":["127.0.0.1:3000"]}},
//!  "paused":[],"maintenance":["*"]}
//! ```

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

/// The actions in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Deployed pools: what serves instead of the config's backends.
    #[serde(default)]
    pub deployed: BTreeMap<String, Deployed>,
    /// Paused pools.
    #[serde(default)]
    pub paused: BTreeSet<String>,
    /// Pools in maintenance (`*`: every pool).
    #[serde(default)]
    pub maintenance: BTreeSet<String>,
}

/// One pool's deploy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployed {
    /// The targets serving the pool.
    pub targets: Vec<SocketAddr>,
    /// The config's backends of the pool when it was deployed; when the config lists others,
    /// the operator changed it since and the config wins.
    pub replaced: Vec<SocketAddr>,
    /// Backends still draining (in memory only: after a restart nothing is in flight).
    #[serde(skip)]
    pub draining: Vec<SocketAddr>,
}

impl State {
    /// The state in `path`; empty if there is no such file.
    pub fn read(path: &Path) -> std::io::Result<State> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the state to `path` (its folder made if missing): to a file beside it, synced,
    /// then renamed over it, so a crash leaves the old state or the new, never half of one.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut aside = path.as_os_str().to_owned();
        aside.push(".new");
        let aside = std::path::PathBuf::from(aside);
        let mut file = std::fs::File::create(&aside)?;
        let mut json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        json.push(b'\n');
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&aside, path)
    }
}
