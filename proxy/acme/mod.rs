//! Certificates that issue themselves: ACME (Let's Encrypt, RFC 8555) with `[tls.acme]`.
//!
//! At start the stored certificate (the node's folder) serves at once; a missing one, or
//! one within `renew-before` of its expiry, is ordered in the background and swapped in
//! through the HTTPS listener's certificate resolver, without a restart. Validations are
//! answered by TLS-ALPN-01 on the HTTPS listener ([`challenge`], no port 80 needed) or
//! HTTP-01 on the plain-HTTP listener. With `[jobs] store = "redis"` one node orders (a Redis
//! lock), publishes its validations' answers for the others (the CA may reach any node), and
//! stores the certificate where every node reads it ([`storage`]), so N nodes cost the CA one
//! order. A CA that cannot be reached is an error in the log, retried with backoff; whatever
//! certificate serves keeps serving.

pub mod challenge;
mod order;
pub mod storage;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::metrics::Metrics;
use challenge::Challenges;
use storage::{Disk, Pem, Shared};

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Which validation the CA is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// TLS-ALPN-01 on the HTTPS listener (RFC 8737).
    TlsAlpn01,
    /// HTTP-01 on the plain-HTTP listener.
    Http01,
}

/// `[tls.acme]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The names on the certificate (its first names the files).
    pub domains: Vec<String>,
    /// Account contacts, `mailto:` URLs.
    pub contact: Vec<String>,
    /// The CA's directory URL.
    pub directory: String,
    /// PEM of the root that signs the directory's HTTPS certificate (a private CA); `None`:
    /// the system's roots.
    pub directory_ca: Option<PathBuf>,
    /// The node's folder of certificates and account.
    pub storage: PathBuf,
    /// The validation asked for.
    pub challenge: ChallengeKind,
    /// How long before expiry a certificate is renewed.
    pub renew_before: Duration,
}

/// The Redis the nodes share (the jobs store's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStore {
    /// `redis://…`.
    pub url: String,
    /// Key prefix.
    pub prefix: String,
}

/// What went wrong with a certificate.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA's directory did not answer.
    #[error("cannot reach the ACME directory {url}: {reason}")]
    Directory {
        /// The directory URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The CA refused or failed the order.
    #[error("the order failed: {0}")]
    Order(String),
    /// The ACME client could not be set up.
    #[error("ACME client: {0}")]
    Client(String),
    /// A key or certificate could not be made.
    #[error("cannot make a key or certificate: {0}")]
    Key(String),
    /// The certificate folder.
    #[error("{path}: {source}")]
    Storage {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The shared store.
    #[error("redis: {0}")]
    Redis(redis::RedisError),
    /// A stored or issued certificate that cannot serve.
    #[error("unusable certificate: {0}")]
    Unusable(String),
}

/// A certificate that serves.
#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
    not_after: SystemTime,
}

/// The ACME manager of one node: serves its certificate and answers validations to the TLS
/// resolver and the plain-HTTP listener, and orders and renews in the background.
pub struct Acme {
    settings: AcmeSettings,
    disk: Disk,
    shared: Option<Shared>,
    current: ArcSwapOption<Current>,
    challenges: Arc<Challenges>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme")
            .field("domains", &self.settings.domains)
            .finish_non_exhaustive()
    }
}

impl Acme {
    /// The manager for `settings`; the stored certificate, if any and usable, serves at once.
    pub fn new(
        settings: AcmeSettings,
        shared: Option<&SharedStore>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, AcmeError> {
        let name = storage::certificate_name(&settings.domains);
        let disk = Disk::new(&settings.storage, &name);
        let shared = shared
            .map(|s| Shared::new(&s.url, &s.prefix, &name))
            .transpose()?;
        let acme = Acme {
            settings,
            disk,
            shared,
            current: ArcSwapOption::empty(),
            challenges: Arc::new(Challenges::default()),
            metrics,
        };
        match acme.disk.load() {
            Ok(Some(pem)) => match parse(&pem) {
                Ok(current) => acme.install(current),
                Err(e) => tracing::warn!("ACME: the stored certificate is not used: {e}"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!("ACME: {e}"),
        }
        Ok(acme)
    }

    /// The validations' answers (for the plain-HTTP listener).
    pub fn challenges(&self) -> Arc<Challenges> {
        self.challenges.clone()
    }

    fn install(&self, current: Current) {
        let expiry = current
            .not_after
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.metrics
            .acme_certificate_expiry(i64::try_from(expiry).unwrap_or(i64::MAX));
        self.current.store(Some(Arc::new(current)));
    }

    /// How long until the certificate is due for renewal; zero when it is due, missing, or
    /// does not name every configured domain.
    fn until_due(&self) -> Duration {
        let Some(current) = self.current.load_full() else {
            return Duration::ZERO;
        };
        if !self.covers(&current.names) {
            return Duration::ZERO;
        }
        let due = current.not_after - self.settings.renew_before;
        due.duration_since(SystemTime::now()).unwrap_or_default()
    }

    /// Whether a certificate naming `names` names every configured domain.
    fn covers(&self, names: &[String]) -> bool {
        self.settings
            .domains
            .iter()
            .all(|d| names.iter().any(|n| n.eq_ignore_ascii_case(d)))
    }

    /// Adopts `pem` from the shared store when it names every domain and expires later than
    /// what serves (or what serves does not name them all).
    fn adopt(&self, pem: Pem) -> Result<bool, AcmeError> {
        let newer = parse(&pem)?;
        let better = self.covers(&newer.names)
            && self
                .current
                .load()
                .as_ref()
                .is_none_or(|c| newer.not_after > c.not_after || !self.covers(&c.names));
        if !better {
            return Ok(false);
        }
        self.disk.save(&pem)?;
        // Answers copied from the ordering node are done with.
        self.challenges.clear();
        self.install(newer);
        tracing::info!(
            "ACME: certificate for {} taken from the shared store",
            self.names()
        );
        Ok(true)
    }

    fn names(&self) -> String {
        self.settings.domains.join(", ")
    }

    /// One round: adopt a shared certificate, order if due, and say when to look again.
    async fn round(&self) -> Result<Duration, AcmeError> {
        if let Some(shared) = &self.shared {
            if let Some(pem) = shared.load().await? {
                let due = self.until_due().is_zero();
                if self.current.load().is_none() || due {
                    self.adopt(pem)?;
                }
            }
        }
        let until_due = self.until_due();
        if !until_due.is_zero() {
            // Another node may renew first; look at the shared store now and then.
            let look = if self.shared.is_some() {
                Duration::from_secs(60)
            } else {
                Duration::from_secs(3600)
            };
            return Ok(until_due.min(look));
        }
        if let Some(shared) = &self.shared {
            if !shared.try_lock().await? {
                // Another node orders: answer its validations here too.
                for answer in shared.answers().await? {
                    self.challenges.add(&answer)?;
                }
                return Ok(Duration::from_secs(1));
            }
        }
        let ordered = self.order().await;
        self.challenges.clear();
        if let Some(shared) = &self.shared {
            if let Err(e) = shared.unlock().await {
                tracing::warn!("ACME: {e}");
            }
        }
        let pem = ordered?;
        let current = parse(&pem)?;
        self.disk.save(&pem)?;
        if let Some(shared) = &self.shared {
            shared.save(&pem).await?;
        }
        tracing::info!("ACME: certificate issued for {}", self.names());
        self.metrics.acme_order("issued");
        self.install(current);
        Ok(Duration::ZERO)
    }

    async fn order(&self) -> Result<Pem, AcmeError> {
        let account = order::account(&self.settings, &self.disk, self.shared.as_ref()).await?;
        order::order(
            &account,
            &self.settings,
            &self.challenges,
            self.shared.as_ref(),
        )
        .await
    }
}

/// The first wait after a failed round; doubled each time, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);

/// The longest wait between failed rounds.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The background service that orders and renews for an [`Acme`] shared with the listeners.
pub struct Renewer(pub Arc<Acme>);

#[async_trait]
impl BackgroundService for Renewer {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.run(shutdown).await;
    }
}

impl Acme {
    /// Rounds until shutdown: after a success when the next one is due, after a failure with
    /// backoff (5 s, doubling, at most an hour).
    async fn run(&self, mut shutdown: ShutdownWatch) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let wait = match self.round().await {
                Ok(wait) => {
                    backoff = FIRST_BACKOFF;
                    wait
                }
                Err(e) => {
                    self.metrics.acme_order("failed");
                    let serving = if self.current.load().is_some() {
                        "the current certificate keeps serving"
                    } else {
                        "no certificate serves yet"
                    };
                    tracing::error!(
                        "ACME: no certificate for {}: {e}; {serving}; retrying in {backoff:?}",
                        self.names()
                    );
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

impl crate::tls::Issued for Acme {
    fn certificate(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let name = server_name?;
        let current = self.current.load();
        let current = current.as_ref()?;
        let named = current.names.iter().any(|n| match n.strip_prefix("*.") {
            Some(suffix) => name
                .split_once('.')
                .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(suffix)),
            None => n.eq_ignore_ascii_case(name),
        });
        named.then(|| current.key.clone())
    }

    fn fallback(&self) -> Option<Arc<CertifiedKey>> {
        self.current.load().as_ref().map(|c| c.key.clone())
    }

    fn challenge(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        self.challenges.alpn_certificate(server_name)
    }
}

/// A stored or issued pair, checked: the key matches, and its names and expiry are read.
fn parse(pem: &Pem) -> Result<Current, AcmeError> {
    let (leaf, key) = certified(pem)?;
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| AcmeError::Unusable(e.to_string()))?;
    let not_after = UNIX_EPOCH
        + Duration::from_secs(
            u64::try_from(certificate.validity().not_after.timestamp()).unwrap_or(0),
        );
    let names = certificate
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Current {
        key,
        names,
        not_after,
    })
}

/// The leaf's DER and the certified key of `pem`, checked like a configured certificate.
fn certified(
    pem: &Pem,
) -> Result<
    (
        rustls::pki_types::CertificateDer<'static>,
        Arc<CertifiedKey>,
    ),
    AcmeError,
> {
    let files = |path: &Path| {
        if path == Path::new("chain") {
            Ok(pem.chain.clone().into_bytes())
        } else {
            Ok(pem.key.clone().into_bytes())
        }
    };
    let key = crate::tls::certified_key_from(Path::new("chain"), Path::new("key"), files)
        .map_err(|e| AcmeError::Unusable(e.to_string()))?;
    let leaf = key
        .cert
        .first()
        .cloned()
        .ok_or_else(|| AcmeError::Unusable("no certificate".into()))?;
    Ok((leaf, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::Issued;

    fn settings(dir: &Path, renew_before: Duration) -> AcmeSettings {
        AcmeSettings {
            domains: vec!["example.com".into()],
            contact: Vec::new(),
            directory: "https://127.0.0.1:1/dir".into(),
            directory_ca: None,
            storage: dir.to_path_buf(),
            challenge: ChallengeKind::TlsAlpn01,
            renew_before,
        }
    }

    fn pem_for(names: &[&str]) -> Pem {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        Pem {
            chain: c.cert.pem(),
            key: c.key_pair.serialize_pem(),
        }
    }

    #[test]
    fn a_stored_certificate_serves_at_once_and_is_due_only_near_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let fresh = Acme::new(
            settings(dir.path(), Duration::from_secs(86400)),
            None,
            metrics.clone(),
        )
        .unwrap();
        assert!(fresh.fallback().is_none());
        assert!(fresh.until_due().is_zero(), "missing: due now");

        let name = storage::certificate_name(&["example.com".into()]);
        Disk::new(dir.path(), &name)
            .save(&pem_for(&["example.com"]))
            .unwrap();
        // rcgen's default validity runs to 4096: far from due.
        let acme = Acme::new(
            settings(dir.path(), Duration::from_secs(86400)),
            None,
            metrics.clone(),
        )
        .unwrap();
        assert!(acme.certificate(Some("EXAMPLE.com")).is_some());
        assert!(acme.certificate(Some("other.com")).is_none());
        assert!(!acme.until_due().is_zero());

        // A certificate lacking a configured domain is due at once.
        Disk::new(dir.path(), &name)
            .save(&pem_for(&["other.com"]))
            .unwrap();
        let acme = Acme::new(
            settings(dir.path(), Duration::from_secs(86400)),
            None,
            metrics,
        )
        .unwrap();
        assert!(acme.until_due().is_zero());
    }
}
