//! X-Sendfile and X-Accel-Redirect: the app names a file, frontdoor serves it.
//!
//! Rails' `send_file` (Rack::Sendfile) answers with an empty body and `X-Sendfile: <absolute
//! path>`, or `X-Accel-Redirect: <uri>` that the proxy maps back to a directory (the mapping
//! the proxy announces in `X-Accel-Mapping`, `/var/www/storage/=/_storage/`). frontdoor then
//! gives the app's slot back at once and streams the file itself, with the app's
//! `Content-Type`, `Content-Disposition` and other fields, `Range` and conditional requests; the
//! header naming the file never reaches the client.
//!
//! Only files below the configured roots are served: the path is refused if it has a `..`
//! segment, and is resolved (symlinks followed) before the prefix check, so a link pointing out
//! of a root is refused too.
//!
//! ```text
//! upstream_request_filter   drop a client's X-Sendfile-Type / X-Accel-Mapping; announce ours
//! upstream_response_filter  X-Sendfile / X-Accel-Redirect present → remember it, free the slot,
//!                           end the proxying (an error Pingora hands to fail_to_proxy)
//! fail_to_proxy             serve(): resolve, open, 200/206/304/416 and the file, streamed
//! ```

mod serve;

pub use serve::serve;

use pingora::http::{RequestHeader, ResponseHeader};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The header Rack::Sendfile's `x-sendfile` variation answers with.
pub const X_SENDFILE: &str = "x-sendfile";
/// The header of the `x-accel-redirect` variation (nginx's).
pub const X_ACCEL_REDIRECT: &str = "x-accel-redirect";
/// Tells Rack::Sendfile which of the two the proxy understands.
pub const X_SENDFILE_TYPE: &str = "x-sendfile-type";
/// Tells Rack::Sendfile how to turn a file path into an `X-Accel-Redirect` URI.
pub const X_ACCEL_MAPPING: &str = "x-accel-mapping";

/// A URI prefix of `X-Accel-Redirect` and the directory it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Starts and ends with `/`: `/_storage/`.
    pub uri: String,
    /// Canonical (resolved at load).
    pub dir: PathBuf,
}

/// `[sendfile]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Canonical directories whose files `X-Sendfile` may name.
    pub roots: Vec<PathBuf>,
    /// `X-Accel-Redirect` prefixes (their directories are roots for it).
    pub mappings: Vec<Mapping>,
}

impl Settings {
    /// The `X-Sendfile-Type` announced to the app: `X-Accel-Redirect` when mappings are
    /// configured (Rack then maps paths itself), else `X-Sendfile`.
    pub fn announced_type(&self) -> &'static str {
        if self.mappings.is_empty() {
            "X-Sendfile"
        } else {
            "X-Accel-Redirect"
        }
    }

    /// The `X-Accel-Mapping` announced to the app (`dir/=uri, …`), if any.
    pub fn accel_mapping(&self) -> Option<String> {
        (!self.mappings.is_empty()).then(|| {
            self.mappings
                .iter()
                .map(|m| format!("{}/={}", m.dir.display(), m.uri))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}

/// Prepares the request to the app: a client's own `X-Sendfile-Type` and `X-Accel-Mapping`
/// are always removed (with them an old Rack::Sendfile could be made to answer with a path of
/// the client's choosing); where sendfile is configured, ours are sent.
pub fn announce(upstream: &mut RequestHeader, settings: Option<&Settings>) {
    upstream.remove_header(X_SENDFILE_TYPE);
    upstream.remove_header(X_ACCEL_MAPPING);
    if let Some(settings) = settings {
        let _ = upstream.insert_header(X_SENDFILE_TYPE, settings.announced_type());
        if let Some(mapping) = settings.accel_mapping() {
            let _ = upstream.insert_header(X_ACCEL_MAPPING, mapping);
        }
    }
}

/// What the app asked frontdoor to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// `X-Sendfile`: an absolute path.
    File(PathBuf),
    /// `X-Accel-Redirect`: a URI path (percent-encoded).
    Accel(String),
}

/// The app's answer with the file to send instead of its (empty) body.
#[derive(Debug)]
pub struct Pending {
    /// The app's response head, without the sendfile fields.
    pub head: ResponseHeader,
    /// The file it names.
    pub requested: Requested,
}

/// Takes `X-Sendfile` / `X-Accel-Redirect` out of the app's answer (both are removed whatever
/// happens next, so neither reaches the client); `Some` when one named a file.
pub fn take(response: &mut ResponseHeader) -> Option<Requested> {
    let file = response
        .headers
        .get(X_SENDFILE)
        .map(|v| PathBuf::from(OsStr::from_bytes(v.as_bytes())));
    let accel = response
        .headers
        .get(X_ACCEL_REDIRECT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    response.remove_header(X_SENDFILE);
    response.remove_header(X_ACCEL_REDIRECT);
    match (file, accel) {
        (Some(path), _) => Some(Requested::File(path)),
        (None, Some(uri)) => Some(Requested::Accel(uri)),
        (None, None) => None,
    }
}

/// Why a requested file is not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not absolute, has `..`, or no mapping covers the URI.
    #[error("`{0}` is not a path frontdoor serves (absolute, no `..`, under a root or mapping)")]
    NotAllowed(String),
    /// Resolved (symlinks followed) outside every root.
    #[error("`{0}` resolves outside the sendfile roots")]
    Outside(String),
    /// Missing, or not a regular file.
    #[error("`{0}`: no such file")]
    Missing(String),
}

impl Refusal {
    /// The status answered: `404` for a missing file (as nginx), `403` for the rest.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Missing(_) => 404,
            Refusal::NotAllowed(_) | Refusal::Outside(_) => 403,
        }
    }

    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Missing(_) => "missing",
            Refusal::NotAllowed(_) | Refusal::Outside(_) => "refused",
        }
    }
}

/// Whether `path` is absolute and has no `.`/`..` segment.
fn plain_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// The file `requested` names and the roots it must stay under, before resolution.
fn candidate(
    requested: &Requested,
    settings: &Settings,
) -> Result<(PathBuf, Vec<PathBuf>), Refusal> {
    match requested {
        Requested::File(path) => {
            if !plain_absolute(path) {
                return Err(Refusal::NotAllowed(path.display().to_string()));
            }
            let roots = settings
                .roots
                .iter()
                .chain(settings.mappings.iter().map(|m| &m.dir))
                .cloned()
                .collect();
            Ok((path.clone(), roots))
        }
        Requested::Accel(uri) => {
            let path = uri.split(['?', '#']).next().unwrap_or_default();
            let decoded = percent_encoding::percent_decode_str(path).collect::<Vec<u8>>();
            let decoded = PathBuf::from(OsStr::from_bytes(&decoded));
            let refused = || Refusal::NotAllowed(uri.clone());
            if !plain_absolute(&decoded) {
                return Err(refused());
            }
            let decoded = decoded.to_string_lossy().into_owned();
            let mapping = settings
                .mappings
                .iter()
                .filter(|m| decoded.starts_with(&m.uri))
                .max_by_key(|m| m.uri.len())
                .ok_or_else(refused)?;
            let rest = &decoded[mapping.uri.len()..];
            Ok((mapping.dir.join(rest), vec![mapping.dir.clone()]))
        }
    }
}

/// Resolves `requested` to a canonical regular file under its roots.
pub async fn resolve(requested: &Requested, settings: &Settings) -> Result<PathBuf, Refusal> {
    let (path, roots) = candidate(requested, settings)?;
    let shown = path.display().to_string();
    let resolved = tokio::fs::canonicalize(&path)
        .await
        .map_err(|_| Refusal::Missing(shown.clone()))?;
    if !roots.iter().any(|root| resolved.starts_with(root)) {
        return Err(Refusal::Outside(shown));
    }
    match tokio::fs::metadata(&resolved).await {
        Ok(meta) if meta.is_file() => Ok(resolved),
        _ => Err(Refusal::Missing(shown)),
    }
}

/// The type of [`diverted`]'s error.
const DIVERTED: pingora::ErrorType = pingora::ErrorType::Custom("sendfile");

/// Whether `error` is [`diverted`]'s (the proxying ended on purpose: not an error to log).
pub fn is_diverted(error: &pingora::Error) -> bool {
    *error.etype() == DIVERTED
}

/// The error that ends the proxying of an answer that named a file (`fail_to_proxy` then
/// serves it).
pub fn diverted() -> Box<pingora::Error> {
    pingora::Error::explain(DIVERTED, "the app answered with a file to send")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> Settings {
        let dir = dir.canonicalize().unwrap();
        Settings {
            roots: vec![dir.join("files")],
            mappings: vec![Mapping {
                uri: "/_storage/".into(),
                dir: dir.join("storage"),
            }],
        }
    }

    #[test]
    fn the_app_is_told_what_frontdoor_understands_and_clients_cannot_say_it() {
        let mut request = RequestHeader::build("GET", b"/", None).unwrap();
        request
            .insert_header(X_SENDFILE_TYPE, "X-Accel-Redirect")
            .unwrap();
        request.insert_header(X_ACCEL_MAPPING, "/=/x/").unwrap();
        announce(&mut request, None);
        assert!(request.headers.get(X_SENDFILE_TYPE).is_none());
        assert!(request.headers.get(X_ACCEL_MAPPING).is_none());

        let s = Settings {
            roots: vec![PathBuf::from("/srv/files")],
            mappings: vec![],
        };
        announce(&mut request, Some(&s));
        assert_eq!(request.headers[X_SENDFILE_TYPE], "X-Sendfile");
        assert!(request.headers.get(X_ACCEL_MAPPING).is_none());
        let s = Settings {
            roots: vec![],
            mappings: vec![Mapping {
                uri: "/_storage/".into(),
                dir: PathBuf::from("/srv/storage"),
            }],
        };
        announce(&mut request, Some(&s));
        assert_eq!(request.headers[X_SENDFILE_TYPE], "X-Accel-Redirect");
        assert_eq!(request.headers[X_ACCEL_MAPPING], "/srv/storage/=/_storage/");
    }

    #[test]
    fn both_headers_are_taken_out_of_the_answer() {
        let mut response = ResponseHeader::build(200, None).unwrap();
        response
            .insert_header(X_SENDFILE, "/srv/files/a.pdf")
            .unwrap();
        response
            .insert_header(X_ACCEL_REDIRECT, "/_storage/a.pdf")
            .unwrap();
        assert_eq!(
            take(&mut response),
            Some(Requested::File("/srv/files/a.pdf".into()))
        );
        assert!(response.headers.get(X_SENDFILE).is_none());
        assert!(response.headers.get(X_ACCEL_REDIRECT).is_none());
        assert_eq!(take(&mut response), None);
    }

    #[tokio::test]
    async fn only_regular_files_under_a_root_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        for sub in ["files", "storage", "secret"] {
            std::fs::create_dir(base.join(sub)).unwrap();
        }
        std::fs::write(base.join("files/a b.pdf"), "pdf").unwrap();
        std::fs::write(base.join("storage/x.bin"), "bin").unwrap();
        std::fs::write(base.join("secret/key"), "key").unwrap();
        std::os::unix::fs::symlink(base.join("secret/key"), base.join("files/link")).unwrap();
        let s = settings(&base);
        let file = |p: &str| Requested::File(base.join(p));

        assert_eq!(
            resolve(&file("files/a b.pdf"), &s).await,
            Ok(base.join("files/a b.pdf"))
        );
        // Mapped directories are roots for X-Sendfile too.
        assert_eq!(
            resolve(&file("storage/x.bin"), &s).await,
            Ok(base.join("storage/x.bin"))
        );
        let accel = Requested::Accel("/_storage/x.bin".into());
        assert_eq!(resolve(&accel, &s).await, Ok(base.join("storage/x.bin")));
        let encoded = Requested::Accel("/_storage/%78.bin?v=1".into());
        assert_eq!(resolve(&encoded, &s).await, Ok(base.join("storage/x.bin")));

        for refused in [
            file("secret/key"),
            file("files/link"),
            Requested::File(PathBuf::from(format!(
                "{}/files/../secret/key",
                base.display()
            ))),
            Requested::File("files/a b.pdf".into()),
            Requested::Accel("/_storage/../secret/key".into()),
            Requested::Accel("/_storage/%2e%2e/secret/key".into()),
            Requested::Accel("/elsewhere/x.bin".into()),
        ] {
            let status = resolve(&refused, &s).await.unwrap_err().status();
            assert_eq!(status, 403, "{refused:?}");
        }
        assert_eq!(
            resolve(&file("files/none"), &s).await.unwrap_err().status(),
            404
        );
        assert_eq!(resolve(&file("files"), &s).await.unwrap_err().status(), 404);
    }
}
