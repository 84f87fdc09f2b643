//! Where certificates and the ACME account live: a folder on every node (so a restart serves
//! at once, with the CA or Redis down), and Redis when several nodes share one certificate.
//!
//! Redis keys, under the jobs prefix: `{prefix}:acme:{name}:cert` and `:key` (PEM),
//! `{prefix}:acme:account:{directory hash}` (the account credentials, JSON),
//! `{prefix}:acme:{name}:lock` (the node ordering now) and `{prefix}:acme:{name}:answers`
//! (the validations' answers while an order is open, a hash).

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::OnceCell;

use super::challenge::Answer;
use super::AcmeError;

/// A certificate chain (leaf first) and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pem {
    /// The chain.
    pub chain: String,
    /// The key.
    pub key: String,
}

/// The file name of a certificate: its first domain, `*` spelled `_wildcard`.
pub fn certificate_name(domains: &[String]) -> String {
    domains
        .first()
        .map_or("certificate", String::as_str)
        .replace('*', "_wildcard")
}

/// A short stable name for an ACME directory URL (an account is per CA).
fn directory_key(directory: &str) -> String {
    format!("{:016x}", crate::assets::content_hash(directory.as_bytes()))
}

/// The folder of one node.
#[derive(Debug, Clone)]
pub struct Disk {
    dir: PathBuf,
    name: String,
}

impl Disk {
    /// Certificate `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        Disk {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    fn chain_path(&self) -> PathBuf {
        self.dir.join(format!("{}.crt", self.name))
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join(format!("{}.key", self.name))
    }

    fn account_path(&self, directory: &str) -> PathBuf {
        self.dir
            .join(format!("account-{}.json", directory_key(directory)))
    }

    /// The stored certificate; `None` when there is none yet.
    pub fn load(&self) -> Result<Option<Pem>, AcmeError> {
        let (Some(chain), Some(key)) = (read(&self.chain_path())?, read(&self.key_path())?) else {
            return Ok(None);
        };
        Ok(Some(Pem { chain, key }))
    }

    /// Stores `pem` (written aside and renamed over: a crash leaves the old pair or the new).
    pub fn save(&self, pem: &Pem) -> Result<(), AcmeError> {
        write(&self.key_path(), &pem.key, true)?;
        write(&self.chain_path(), &pem.chain, false)
    }

    /// The account credentials for `directory`, JSON.
    pub fn load_account(&self, directory: &str) -> Result<Option<String>, AcmeError> {
        read(&self.account_path(directory))
    }

    /// Stores the account credentials for `directory`.
    pub fn save_account(&self, directory: &str, json: &str) -> Result<(), AcmeError> {
        write(&self.account_path(directory), json, true)
    }
}

fn read(path: &Path) -> Result<Option<String>, AcmeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AcmeError::Storage {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `text` to `path` through a temporary file; `secret` files are readable by the owner
/// only.
fn write(path: &Path, text: &str, secret: bool) -> Result<(), AcmeError> {
    let failed = |source| AcmeError::Storage {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let aside = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    {
        use std::io::Write;
        let mut file = options.open(&aside).map_err(failed)?;
        file.write_all(text.as_bytes()).map_err(failed)?;
        file.sync_all().map_err(failed)?;
    }
    std::fs::rename(&aside, path).map_err(failed)
}

/// How long a node may hold the ordering lock (an order takes seconds; a node that dies
/// holding it frees it after this).
const LOCK_TTL: Duration = Duration::from_secs(300);

/// How long published answers live (longer than any validation).
const ANSWERS_TTL: Duration = Duration::from_secs(600);

/// Deletes the lock only if this node still holds it.
const UNLOCK: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
"#;

/// The store several nodes share.
pub struct Shared {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    keys: String,
    accounts: String,
    node: String,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Certificate `name` on the Redis at `url`, keys under `prefix`; connects on first use.
    pub fn new(url: &str, prefix: &str, name: &str) -> Result<Self, AcmeError> {
        Ok(Shared {
            client: redis::Client::open(url).map_err(AcmeError::Redis)?,
            connection: OnceCell::new(),
            keys: format!("{prefix}:acme:{name}"),
            accounts: format!("{prefix}:acme:account"),
            node: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()),
        })
    }

    async fn con(&self) -> Result<ConnectionManager, AcmeError> {
        let con = self
            .connection
            .get_or_try_init(|| self.client.get_connection_manager())
            .await
            .map_err(AcmeError::Redis)?;
        Ok(con.clone())
    }

    /// The shared certificate, if a node stored one.
    pub async fn load(&self) -> Result<Option<Pem>, AcmeError> {
        let mut con = self.con().await?;
        let (chain, key): (Option<String>, Option<String>) = redis::pipe()
            .get(format!("{}:cert", self.keys))
            .get(format!("{}:key", self.keys))
            .query_async(&mut con)
            .await
            .map_err(AcmeError::Redis)?;
        Ok(chain.zip(key).map(|(chain, key)| Pem { chain, key }))
    }

    /// Shares `pem` with every node.
    pub async fn save(&self, pem: &Pem) -> Result<(), AcmeError> {
        let mut con = self.con().await?;
        redis::pipe()
            .atomic()
            .set(format!("{}:key", self.keys), &pem.key)
            .set(format!("{}:cert", self.keys), &pem.chain)
            .query_async::<()>(&mut con)
            .await
            .map_err(AcmeError::Redis)
    }

    /// The shared account credentials for `directory`.
    pub async fn load_account(&self, directory: &str) -> Result<Option<String>, AcmeError> {
        let mut con = self.con().await?;
        con.get(format!("{}:{}", self.accounts, directory_key(directory)))
            .await
            .map_err(AcmeError::Redis)
    }

    /// Shares the account credentials for `directory`.
    pub async fn save_account(&self, directory: &str, json: &str) -> Result<(), AcmeError> {
        let mut con = self.con().await?;
        con.set(
            format!("{}:{}", self.accounts, directory_key(directory)),
            json,
        )
        .await
        .map_err(AcmeError::Redis)
    }

    /// Takes the ordering lock; `false` while another node holds it.
    pub async fn try_lock(&self) -> Result<bool, AcmeError> {
        let mut con = self.con().await?;
        let taken: Option<String> = redis::cmd("SET")
            .arg(format!("{}:lock", self.keys))
            .arg(&self.node)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_TTL.as_millis() as u64)
            .query_async(&mut con)
            .await
            .map_err(AcmeError::Redis)?;
        Ok(taken.is_some())
    }

    /// Gives the lock back (if this node still holds it) and withdraws the answers.
    pub async fn unlock(&self) -> Result<(), AcmeError> {
        let mut con = self.con().await?;
        let _: i64 = Script::new(UNLOCK)
            .key(format!("{}:lock", self.keys))
            .arg(&self.node)
            .invoke_async(&mut con)
            .await
            .map_err(AcmeError::Redis)?;
        con.del::<_, ()>(format!("{}:answers", self.keys))
            .await
            .map_err(AcmeError::Redis)
    }

    /// Publishes `answer` for the other nodes, which copy it while they wait.
    pub async fn publish(&self, answer: &Answer) -> Result<(), AcmeError> {
        let mut con = self.con().await?;
        let (field, value) = answer.to_field();
        let key = format!("{}:answers", self.keys);
        redis::pipe()
            .hset(&key, field, value)
            .pexpire(&key, ANSWERS_TTL.as_millis() as i64)
            .query_async::<()>(&mut con)
            .await
            .map_err(AcmeError::Redis)
    }

    /// The answers the ordering node published.
    pub async fn answers(&self) -> Result<Vec<Answer>, AcmeError> {
        let mut con = self.con().await?;
        let fields: Vec<(String, String)> = con
            .hgetall(format!("{}:answers", self.keys))
            .await
            .map_err(AcmeError::Redis)?;
        Ok(fields
            .iter()
            .filter_map(|(field, value)| Answer::from_field(field, value))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_pair_comes_back_and_the_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(
            &dir.path().join("acme"),
            &certificate_name(&["*.example.com".into()]),
        );
        assert_eq!(disk.load().unwrap(), None);
        let pem = Pem {
            chain: "chain".into(),
            key: "key".into(),
        };
        disk.save(&pem).unwrap();
        assert_eq!(disk.load().unwrap(), Some(pem));
        let key = dir.path().join("acme/_wildcard.example.com.key");
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        disk.save_account("https://ca/dir", "{}").unwrap();
        assert_eq!(
            disk.load_account("https://ca/dir").unwrap().as_deref(),
            Some("{}")
        );
        assert_eq!(disk.load_account("https://other/dir").unwrap(), None);
    }
}
