//! Validation of `[proxy] response-buffer-memory` and `response-buffer-file`.

use super::{file, units, Validator};
use crate::buffering::response::Settings;

impl Validator<'_> {
    /// Both are plain sizes; 0 is allowed (no memory: straight to the file; no file: the app
    /// is read at the client's pace past the memory).
    pub(super) fn response_buffering(&mut self, p: &file::ProxySection) -> Option<Settings> {
        let memory = self.check(
            &p.response_buffer_memory,
            "proxy.response-buffer-memory",
            |s| units::parse_size(s),
        );
        let file = self.check(&p.response_buffer_file, "proxy.response-buffer-file", |s| {
            units::parse_size(s)
        });
        Some(Settings {
            memory: memory?,
            file: file?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn parse(dir: &Path, proxy: &str, route: &str) -> Result<Config, Vec<String>> {
        crate::tls::ensure_dev_certificate(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
        let text = format!(
            "[listen]\nhttps = \"127.0.0.1:8443\"\n\n[[tls.certificates]]\ncert = \"cert.pem\"\n\
             key = \"key.pem\"\n\n[proxy]\n{proxy}\n\n[pools.app]\nbackends = [\"127.0.0.1:3000\"]\n\n\
             [[routes]]\nname = \"all\"\npath = \"/{{rest*}}\"\npool = \"app\"\n{route}\n"
        );
        Config::parse(&dir.join("f.toml"), &text)
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn response_buffering_is_on_by_default_and_sized() {
        let dir = tempfile::tempdir().unwrap();
        let config = parse(dir.path(), "", "").unwrap();
        assert_eq!(config.response_buffering.memory, 64 << 20);
        assert_eq!(config.response_buffering.file, 1 << 30);
        assert!(config.routes[0].response_buffering);

        let config = parse(
            dir.path(),
            "response-buffer-memory = \"8MiB\"\nresponse-buffer-file = \"0B\"",
            "response-buffering = false",
        )
        .unwrap();
        assert_eq!(config.response_buffering.memory, 8 << 20);
        assert_eq!(config.response_buffering.file, 0);
        assert!(!config.routes[0].response_buffering);
    }

    #[test]
    fn bad_buffer_sizes_are_reported_with_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let errors = parse(
            dir.path(),
            "response-buffer-memory = \"lots\"\nresponse-buffer-file = \"-1MiB\"",
            "",
        )
        .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains(":9:26: proxy.response-buffer-memory:"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains(":10:24: proxy.response-buffer-file:"),
            "{errors:?}"
        );
        let errors = parse(dir.path(), "", "response-buffering = \"no\"").unwrap_err();
        assert!(errors[0].contains("response-buffering"), "{errors:?}");
    }
}
