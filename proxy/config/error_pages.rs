//! Validation of `[error-pages]`: each file is read now (and on every reload), so a missing
//! or oversized page is a config error at its line, not a blank answer later.

use bytes::Bytes;
use toml::Spanned;

use super::{file, Validator};
use crate::error_pages::{ErrorPages, Page, MAX_PAGE_BYTES};

impl Validator<'_> {
    pub(super) fn error_pages(&mut self, e: &file::ErrorPagesSection) -> ErrorPages {
        let mut pages = ErrorPages::default();
        for (status, value) in [
            (500, &e.internal),
            (502, &e.bad_gateway),
            (503, &e.unavailable),
            (504, &e.gateway_timeout),
        ] {
            if let Some(page) = value
                .as_ref()
                .and_then(|v| self.page(v, &format!("error-pages.{status}")))
            {
                pages.pages.insert(status, page);
            }
        }
        pages.maintenance = e
            .maintenance
            .as_ref()
            .and_then(|v| self.page(v, "error-pages.maintenance"));
        pages
    }

    /// Reads the HTML page at `value` (relative to the config file).
    fn page(&mut self, value: &Spanned<String>, key: &str) -> Option<Page> {
        let outside = self.outside;
        let path = self.relative(value.get_ref());
        self.check(value, key, |name| {
            let html = outside
                .read(&path)
                .map_err(|e| format!("cannot read `{name}`: {e}"))?;
            if html.is_empty() {
                return Err(format!("`{name}` is empty"));
            }
            if html.len() > MAX_PAGE_BYTES {
                return Err(format!(
                    "`{name}` is {} bytes; a page may have at most {MAX_PAGE_BYTES}",
                    html.len()
                ));
            }
            Ok(Page {
                path: path.clone(),
                html: Bytes::from(html),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::path::Path;

    fn config(dir: &Path, pages: &str) -> String {
        super::super::file_with_section(dir, "error-pages", pages)
    }

    #[test]
    fn pages_are_read_at_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("public")).unwrap();
        std::fs::write(dir.path().join("public/503.html"), "<h1>back soon</h1>").unwrap();
        std::fs::write(dir.path().join("public/502.html"), "<h1>oops</h1>").unwrap();
        let text = config(
            dir.path(),
            "502 = \"public/502.html\"\n503 = \"public/503.html\"\nmaintenance = \"public/503.html\"\n",
        );
        let config = Config::parse(&dir.path().join("f.toml"), &text).unwrap();
        let pages = &config.error_pages;
        assert_eq!(&pages.pages[&503].html[..], b"<h1>back soon</h1>");
        assert_eq!(&pages.pages[&502].html[..], b"<h1>oops</h1>");
        assert!(!pages.pages.contains_key(&504));
        assert!(pages.maintenance.is_some());
        assert_eq!(config.watched_files().len(), 3);
    }

    #[test]
    fn a_missing_empty_or_unknown_page_is_an_error_at_its_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty.html"), "").unwrap();
        let text = config(
            dir.path(),
            "502 = \"public/502.html\"\n504 = \"empty.html\"\n",
        );
        let errors = Config::parse(&dir.path().join("f.toml"), &text)
            .unwrap_err()
            .0;
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].contains("f.toml:17:7: error-pages.502: cannot read `public/502.html`"),
            "{text:?}"
        );
        assert!(
            text[1].contains(":18:7: error-pages.504: `empty.html` is empty"),
            "{text:?}"
        );
        let unknown = config(dir.path(), "404 = \"empty.html\"\n");
        let errors = Config::parse(&dir.path().join("f.toml"), &unknown).unwrap_err();
        assert!(
            errors.to_string().contains("unknown field `404`"),
            "{errors}"
        );
    }
}
