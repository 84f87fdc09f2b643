//! The answers to the CA's validations while an order is open: HTTP-01 key authorizations
//! on the plain-HTTP listener, TLS-ALPN-01 certificates on the HTTPS listener.

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::AcmeError;

/// Where the CA asks for an HTTP-01 key authorization (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// One validation's answer, as the ordering node publishes it (and other nodes copy it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// HTTP-01: `token` answers `key_authorization`.
    Http {
        /// The token in the URL.
        token: String,
        /// The body to answer.
        key_authorization: String,
    },
    /// TLS-ALPN-01: a certificate for `domain` carrying the SHA-256 of the key
    /// authorization.
    Alpn {
        /// The domain validated.
        domain: String,
        /// SHA-256 of the key authorization.
        digest: Vec<u8>,
    },
}

impl Answer {
    /// The field name and value it is shared under (Redis hash).
    pub fn to_field(&self) -> (String, String) {
        match self {
            Answer::Http {
                token,
                key_authorization,
            } => (format!("http:{token}"), key_authorization.clone()),
            Answer::Alpn { domain, digest } => (format!("alpn:{domain}"), hex::encode(digest)),
        }
    }

    /// The answer a shared field names; `None` for anything else.
    pub fn from_field(field: &str, value: &str) -> Option<Answer> {
        if let Some(token) = field.strip_prefix("http:") {
            return Some(Answer::Http {
                token: token.to_string(),
                key_authorization: value.to_string(),
            });
        }
        let domain = field.strip_prefix("alpn:")?;
        Some(Answer::Alpn {
            domain: domain.to_string(),
            digest: hex::decode(value).ok()?,
        })
    }
}

/// The answers in force, read on every validation request.
#[derive(Debug, Default)]
pub struct Challenges {
    http: RwLock<HashMap<String, String>>,
    alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    /// Puts `answer` in force.
    pub fn add(&self, answer: &Answer) -> Result<(), AcmeError> {
        match answer {
            Answer::Http {
                token,
                key_authorization,
            } => {
                self.http
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(token.clone(), key_authorization.clone());
            }
            Answer::Alpn { domain, digest } => {
                let certificate = alpn_certificate(domain, digest)?;
                self.alpn
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(domain.to_ascii_lowercase(), certificate);
            }
        }
        Ok(())
    }

    /// Takes every answer out of force (the order ended).
    pub fn clear(&self) {
        self.http
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.alpn
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The body for a GET of `path` on the plain-HTTP listener, when it is a token in force.
    pub fn http_answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        self.http
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    /// The TLS-ALPN-01 certificate for `domain`, when one is in force.
    pub fn alpn_certificate(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&domain.to_ascii_lowercase())
            .cloned()
    }
}

/// Answers an HTTP-01 validation with its key authorization.
pub async fn respond(
    session: &mut pingora::proxy::Session,
    key_authorization: String,
) -> pingora::Result<()> {
    let mut head = pingora::http::ResponseHeader::build(200, Some(3))?;
    head.insert_header(http::header::CONTENT_TYPE, "application/octet-stream")?;
    head.insert_header(
        http::header::CONTENT_LENGTH,
        key_authorization.len().to_string(),
    )?;
    head.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    session.write_response_header(Box::new(head), false).await?;
    session
        .write_response_body(Some(bytes::Bytes::from(key_authorization)), true)
        .await
}

/// The self-signed certificate of RFC 8737 §3: `domain` as its only name and the critical
/// `acmeIdentifier` extension holding `digest`.
fn alpn_certificate(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, AcmeError> {
    let failed = |e: rcgen::Error| AcmeError::Key(e.to_string());
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(failed)?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let certificate = params.self_signed(&key).map_err(failed)?;
    let der =
        PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| AcmeError::Key(e.to_string()))?;
    let signing = any_supported_type(&der).map_err(|e| AcmeError::Key(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![certificate.der().clone()],
        signing,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_through_their_shared_form_and_are_served() {
        let challenges = Challenges::default();
        let http = Answer::Http {
            token: "tok".into(),
            key_authorization: "tok.thumb".into(),
        };
        let alpn = Answer::Alpn {
            domain: "Example.com".into(),
            digest: vec![7; 32],
        };
        for answer in [&http, &alpn] {
            let (field, value) = answer.to_field();
            assert_eq!(Answer::from_field(&field, &value).as_ref(), Some(answer));
            challenges.add(answer).unwrap();
        }
        assert_eq!(
            challenges
                .http_answer("/.well-known/acme-challenge/tok")
                .as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(
            challenges.http_answer("/.well-known/acme-challenge/other"),
            None
        );
        assert!(challenges.alpn_certificate("example.com").is_some());
        challenges.clear();
        assert!(challenges.alpn_certificate("example.com").is_none());
        assert_eq!(Answer::from_field("other", "x"), None);
    }
}
