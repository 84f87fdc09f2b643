//! The file types of what an operator does day to day: `[error-pages]`, `[sendfile]`, `[admin]`.

use serde::Deserialize;
use toml::Spanned;

/// `[error-pages]`: HTML files (relative to the config file) by status.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorPagesSection {
    /// frontdoor's own `500`.
    #[serde(rename = "500")]
    pub internal: Option<Spanned<String>>,
    /// `502`: the app could not be reached.
    #[serde(rename = "502")]
    pub bad_gateway: Option<Spanned<String>>,
    /// `503`: no backend up, shed, job store down (and maintenance without its own page).
    #[serde(rename = "503")]
    pub unavailable: Option<Spanned<String>>,
    /// `504`: the app did not answer in time.
    #[serde(rename = "504")]
    pub gateway_timeout: Option<Spanned<String>>,
    /// The page of maintenance mode.
    pub maintenance: Option<Spanned<String>>,
}

/// `[sendfile]`: what the app may ask frontdoor to send (X-Sendfile, X-Accel-Redirect).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SendfileSection {
    /// Directories (relative to the config file) whose files `X-Sendfile` may name.
    #[serde(default)]
    pub roots: Vec<Spanned<String>>,
    /// `X-Accel-Redirect` URI prefixes and the directories they stand for.
    #[serde(default)]
    pub accel_mappings: Vec<AccelMappingEntry>,
}

/// One `accel-mappings` entry: `{ path = "../storage", uri = "/_storage/" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccelMappingEntry {
    /// The directory.
    pub path: Spanned<String>,
    /// The URI prefix the app writes into `X-Accel-Redirect`.
    pub uri: Spanned<String>,
}

/// `[admin]`: who may act through the admin listener, and where actions are remembered.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdminSection {
    /// The bearer token that lets a peer other than loopback act (deploy, pause, maintenance).
    pub token: Option<Spanned<String>>,
    /// The same, read from a file (relative to the config file).
    pub token_file: Option<Spanned<String>>,
    /// Where deploys, pauses and maintenance are remembered across restarts.
    pub state_file: Option<Spanned<String>>,
}
