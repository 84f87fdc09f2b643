//! TLS for the HTTPS listener: certificates loaded and checked by us, chosen by SNI.
//!
//! Pingora's `TlsSettings::build()` panics on a bad certificate, so it never sees a file:
//! we parse every PEM ourselves at config time (a bad one is a config error) and give Pingora
//! a [`CertResolver`] that reads the current snapshot, which makes certificates hot-reloadable.

use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::metrics::Metrics;

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{0}: no PEM certificate found")]
    NoCertificate(PathBuf),
    /// The key file holds no PEM private key.
    #[error("{0}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(PathBuf),
    /// A PEM block is malformed.
    #[error("{path}: malformed PEM: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: std::io::Error,
    },
    /// The key is of a type rustls cannot sign with.
    #[error("{path}: unsupported private key: {message}")]
    UnsupportedKey {
        /// The key file.
        path: PathBuf,
        /// rustls's reason.
        message: String,
    },
    /// The key is not the certificate's.
    #[error("the private key does not match the certificate: {0}")]
    KeyMismatch(String),
    /// Writing a generated certificate failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// rcgen failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
}

/// Loads a PEM chain and key, and checks that they belong together.
pub fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    certified_key_from(cert_path, key_path, |path| std::fs::read(path))
}

/// [`load_certified_key`], reading the two files through `read_file` (config validation
/// passes its reader of files).
pub fn certified_key_from(
    cert_path: &Path,
    key_path: &Path,
    read_file: impl Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let read = |path: &Path| {
        read_file(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert_path)?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Pem {
            path: cert_path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.to_path_buf()));
    }
    let key_pem = read(key_path)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsError::Pem {
            path: key_path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey(key_path.to_path_buf()))?;
    let signing_key = any_supported_type(&key).map_err(|e| TlsError::UnsupportedKey {
        path: key_path.to_path_buf(),
        message: e.to_string(),
    })?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified
        .keys_match()
        .map_err(|e| TlsError::KeyMismatch(e.to_string()))?;
    Ok(Arc::new(certified))
}

/// A loaded certificate and the SNI names it answers.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// Lowercase names; `*.example.com` matches one label. Empty: the default certificate.
    pub server_names: Vec<String>,
    /// The chain and signing key.
    pub key: Arc<CertifiedKey>,
}

/// The certificates of one snapshot, chosen by SNI.
#[derive(Debug, Clone, Default)]
pub struct CertStore {
    certificates: Vec<Certificate>,
}

impl CertStore {
    /// Certificates in config order; the first without names (or else the first) is the default.
    pub fn new(certificates: Vec<Certificate>) -> Self {
        CertStore { certificates }
    }

    /// The certificate naming `server_name` (exactly, then by wildcard); no default.
    pub fn select_named(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.named(server_name).map(|c| c.key.clone())
    }

    /// Whether the store holds no certificate.
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }

    fn named(&self, server_name: Option<&str>) -> Option<&Certificate> {
        let name = server_name.map(str::to_ascii_lowercase);
        let named = |exact: bool| {
            let name = name.as_deref()?;
            self.certificates.iter().find(|c| {
                c.server_names
                    .iter()
                    .any(|pattern| match pattern.strip_prefix("*.") {
                        Some(suffix) if !exact => {
                            name.split_once('.').is_some_and(|(_, rest)| rest == suffix)
                        }
                        _ => exact && pattern == name,
                    })
            })
        };
        named(true).or_else(|| named(false))
    }

    /// The certificate for `server_name`: an exact name, then a wildcard, then the default.
    pub fn select(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.named(server_name)
            .or_else(|| self.certificates.iter().find(|c| c.server_names.is_empty()))
            .or_else(|| self.certificates.first())
            .map(|c| c.key.clone())
    }
}

/// The ALPN protocol of ACME's TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Certificates issued at run time (ACME), beside the configured ones.
pub trait Issued: std::fmt::Debug + Send + Sync {
    /// The issued certificate naming `server_name`, if any.
    fn certificate(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>>;
    /// Any issued certificate, for a handshake no configured certificate answers.
    fn fallback(&self) -> Option<Arc<CertifiedKey>>;
    /// The TLS-ALPN-01 challenge certificate for `server_name`, while a validation is due.
    fn challenge(&self, server_name: &str) -> Option<Arc<CertifiedKey>>;
}

/// rustls's view of the current certificates: one atomic load per handshake.
#[derive(Debug)]
pub struct CertResolver {
    store: Arc<ArcSwap<CertStore>>,
    issued: Option<Arc<dyn Issued>>,
}

impl CertResolver {
    /// A resolver reading whatever `store` holds at handshake time.
    pub fn new(store: Arc<ArcSwap<CertStore>>) -> Self {
        CertResolver {
            store,
            issued: None,
        }
    }

    /// With certificates issued at run time: a configured certificate naming the server name
    /// first, then an issued one, then the configured default, then any issued one.
    pub fn with_issued(store: Arc<ArcSwap<CertStore>>, issued: Arc<dyn Issued>) -> Self {
        CertResolver {
            store,
            issued: Some(issued),
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = client_hello.server_name();
        let Some(issued) = &self.issued else {
            return self.store.load().select(name);
        };
        // A validation offers only `acme-tls/1` and must get the challenge certificate.
        let validation = client_hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if validation {
            return issued.challenge(name?);
        }
        let store = self.store.load();
        store
            .select_named(name)
            .or_else(|| issued.certificate(name))
            .or_else(|| store.select(name))
            .or_else(|| issued.fallback())
    }
}

/// Counts completed handshakes by TLS version.
struct HandshakeCounter {
    metrics: Arc<Metrics>,
}

#[async_trait::async_trait]
impl TlsAccept for HandshakeCounter {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        self.metrics
            .tls_handshake(tls.version().unwrap_or("unknown"));
        None
    }
}

/// Listener settings: TLS 1.2 and 1.3 (Pingora's rustls default), ALPN h2 then http/1.1,
/// certificates from `store`; with `issued` (ACME), its certificates too and `acme-tls/1` for
/// TLS-ALPN-01 validations.
pub fn listener_settings(
    store: Arc<ArcSwap<CertStore>>,
    issued: Option<Arc<dyn Issued>>,
    metrics: Arc<Metrics>,
) -> pingora::Result<TlsSettings> {
    let mut settings = TlsSettings::with_callbacks(Box::new(HandshakeCounter { metrics }))?;
    match issued {
        Some(issued) => {
            settings.set_cert_resolver(Arc::new(CertResolver::with_issued(store, issued)));
            let protocols = [&b"h2"[..], b"http/1.1", ACME_TLS_ALPN];
            settings.set_alpn_protocols(protocols.iter().map(|p| p.to_vec()).collect());
        }
        None => {
            settings.set_cert_resolver(Arc::new(CertResolver::new(store)));
            settings.enable_h2();
        }
    }
    Ok(settings)
}

/// Writes a self-signed certificate for `localhost`, `127.0.0.1` and `::1` unless both files
/// exist already. Used by `frontdoor demo` and the tests; never by `run`.
pub fn ensure_dev_certificate(cert_path: &Path, key_path: &Path) -> Result<bool, TlsError> {
    if cert_path.exists() && key_path.exists() {
        return Ok(false);
    }
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    for (path, pem) in [
        (cert_path, generated.cert.pem()),
        (key_path, generated.key_pair.serialize_pem()),
    ] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(path, pem).map_err(|source| TlsError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(names: &[&str]) -> Certificate {
        let generated = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let key = PrivateKeyDer::try_from(generated.key_pair.serialize_der()).unwrap();
        let certified = CertifiedKey::new(
            vec![generated.cert.der().clone()],
            any_supported_type(&key).unwrap(),
        );
        Certificate {
            server_names: names.iter().map(|s| s.to_string()).collect(),
            key: Arc::new(certified),
        }
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let default = cert_for(&[]);
        let exact = cert_for(&["a.example.com"]);
        let wild = cert_for(&["*.example.com"]);
        let store = CertStore::new(vec![wild.clone(), exact.clone(), default.clone()]);
        let pick = |name: Option<&str>| store.select(name).unwrap();
        assert!(Arc::ptr_eq(&pick(Some("A.example.com")), &exact.key));
        assert!(Arc::ptr_eq(&pick(Some("b.example.com")), &wild.key));
        assert!(Arc::ptr_eq(&pick(Some("example.com")), &default.key));
        assert!(Arc::ptr_eq(&pick(None), &default.key));
    }

    #[test]
    fn garbage_pem_and_mismatched_keys_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        assert!(matches!(
            load_certified_key(&cert, &key),
            Err(TlsError::NoCertificate(_))
        ));

        let a = rcgen::generate_simple_self_signed(vec!["a".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".to_string()]).unwrap();
        std::fs::write(&cert, a.cert.pem()).unwrap();
        std::fs::write(&key, b.key_pair.serialize_pem()).unwrap();
        assert!(matches!(
            load_certified_key(&cert, &key),
            Err(TlsError::KeyMismatch(_))
        ));

        std::fs::write(&key, a.key_pair.serialize_pem()).unwrap();
        assert!(load_certified_key(&cert, &key).is_ok());
        assert!(matches!(
            load_certified_key(&dir.path().join("missing"), &key),
            Err(TlsError::Read { .. })
        ));
    }
}
