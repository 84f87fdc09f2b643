//! Validation of `[sendfile]`: every root and mapped directory must exist now (it is resolved,
//! symlinks followed, so the prefix check at request time compares canonical paths).

use toml::Spanned;

use super::{file, Validator};
use crate::sendfile::{Mapping, Settings};

impl Validator<'_> {
    pub(super) fn sendfile(
        &mut self,
        s: &Option<Spanned<file::SendfileSection>>,
    ) -> Option<Settings> {
        let section = s.as_ref()?;
        let errors_before = self.errors.len();
        let mut roots = Vec::new();
        for (i, root) in section.get_ref().roots.iter().enumerate() {
            if let Some(dir) = self.directory(root, &format!("sendfile.roots[{i}]")) {
                roots.push(dir);
            }
        }
        let mut mappings: Vec<Mapping> = Vec::new();
        for (i, entry) in section.get_ref().accel_mappings.iter().enumerate() {
            let key = format!("sendfile.accel-mappings[{i}]");
            let dir = self.directory(&entry.path, &format!("{key}.path"));
            let taken: Vec<String> = mappings.iter().map(|m| m.uri.clone()).collect();
            let uri = self.check(&entry.uri, &format!("{key}.uri"), |uri| {
                if !uri.starts_with('/') || !uri.ends_with('/') || uri.len() < 2 {
                    Err(format!(
                        "`{uri}` must start and end with `/` (`/_storage/`)"
                    ))
                } else if uri.contains(['?', '#', '%', ' ', '=', ',']) || uri.contains("/../") {
                    Err(format!("`{uri}` must be a plain path prefix"))
                } else if taken.contains(uri) {
                    Err(format!("`{uri}` is mapped twice"))
                } else {
                    Ok(uri.clone())
                }
            });
            if let (Some(dir), Some(uri)) = (dir, uri) {
                mappings.push(Mapping { uri, dir });
            }
        }
        if roots.is_empty() && mappings.is_empty() && self.errors.len() == errors_before {
            self.error(
                s.as_ref()?.span(),
                "sendfile",
                "needs `roots` or `accel-mappings`",
            );
        }
        Some(Settings { roots, mappings })
    }

    /// The existing directory `value` names (relative to the config file), canonical.
    fn directory(&mut self, value: &Spanned<String>, key: &str) -> Option<std::path::PathBuf> {
        let outside = self.outside;
        let path = self.relative(value.get_ref());
        self.check(value, key, |_| outside.directory(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::path::Path;

    fn config(dir: &Path, sendfile: &str) -> String {
        super::super::file_with_section(dir, "sendfile", sendfile)
    }

    #[test]
    fn roots_and_mappings_are_canonical_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("storage")).unwrap();
        std::fs::create_dir(dir.path().join("private")).unwrap();
        let text = config(
            dir.path(),
            "roots = [\"storage\"]\naccel-mappings = [{ path = \"private\", uri = \"/_private/\" }]\n",
        );
        let s = Config::parse(&dir.path().join("f.toml"), &text)
            .unwrap()
            .sendfile
            .unwrap();
        let base = dir.path().canonicalize().unwrap();
        assert_eq!(s.roots, vec![base.join("storage")]);
        assert_eq!(s.mappings[0].dir, base.join("private"));
        assert_eq!(s.mappings[0].uri, "/_private/");
        assert!(
            Config::parse(&dir.path().join("f.toml"), &config(dir.path(), ""))
                .unwrap_err()
                .to_string()
                .contains("sendfile: needs `roots` or `accel-mappings`")
        );
    }

    #[test]
    fn a_missing_directory_or_a_bad_prefix_is_an_error_at_its_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("private")).unwrap();
        let text = config(
            dir.path(),
            "roots = [\"nope\"]\naccel-mappings = [{ path = \"private\", uri = \"_private\" }]\n",
        );
        let errors = Config::parse(&dir.path().join("f.toml"), &text)
            .unwrap_err()
            .0;
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].contains("f.toml:17:10: sendfile.roots[0]: "),
            "{text:?}"
        );
        assert!(
            text[1].contains(":18:45: sendfile.accel-mappings[0].uri: `_private` must start"),
            "{text:?}"
        );
    }
}
