//! The file types of what an operator does day to day: `[error-pages]`.

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
