//! `[tls]`: certificate files and ACME.

use serde::Deserialize;
use toml::Spanned;

use super::unspanned;

/// `[tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsSection {
    /// `[[tls.certificates]]`
    #[serde(default)]
    pub certificates: Vec<CertificateSection>,
    /// `[tls.acme]`: certificates ordered from an ACME CA.
    pub acme: Option<AcmeSection>,
}

/// `[tls.acme]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AcmeSection {
    /// The names on the certificate.
    pub domains: Spanned<Vec<Spanned<String>>>,
    /// An e-mail address for the CA's expiry notices (or `mailto:` URLs).
    #[serde(default)]
    pub contact: Vec<Spanned<String>>,
    /// The CA's directory URL.
    #[serde(default = "default_acme_directory")]
    pub directory: Spanned<String>,
    /// PEM root of the directory's HTTPS certificate, for a private CA.
    pub directory_ca: Option<Spanned<String>>,
    /// The folder of certificates and account, relative to the config file.
    #[serde(default = "default_acme_storage")]
    pub storage: Spanned<String>,
    /// `"tls-alpn-01"` or `"http-01"`.
    #[serde(default = "default_acme_challenge")]
    pub challenge: Spanned<String>,
    /// How long before expiry a certificate is renewed.
    #[serde(default = "default_acme_renew_before")]
    pub renew_before: Spanned<String>,
}

fn default_acme_directory() -> Spanned<String> {
    unspanned(crate::acme::LETS_ENCRYPT.to_string())
}
fn default_acme_storage() -> Spanned<String> {
    unspanned("data/acme".to_string())
}
fn default_acme_challenge() -> Spanned<String> {
    unspanned("tls-alpn-01".to_string())
}
fn default_acme_renew_before() -> Spanned<String> {
    unspanned("720h".to_string())
}

/// `[[tls.certificates]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CertificateSection {
    /// PEM certificate chain, leaf first; relative to the config file.
    pub cert: Spanned<String>,
    /// PEM private key; relative to the config file.
    pub key: Spanned<String>,
    /// SNI names this certificate answers (`example.com`, `*.example.com`); a certificate
    /// without names is the default.
    #[serde(default)]
    pub server_names: Vec<Spanned<String>>,
}
