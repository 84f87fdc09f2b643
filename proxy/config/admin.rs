//! Validation of `[admin]`: the token (inline or from a file) and the state file's place.

use toml::Spanned;

use super::{file, Validator};
use crate::operate::{AdminSettings, Token};

/// The default state file, relative to the config file (beside the default job store).
const DEFAULT_STATE_FILE: &str = "data/state.json";

/// Tokens shorter than this are refused: the token stands between the network and a deploy.
const MIN_TOKEN_LEN: usize = 16;

impl Validator<'_> {
    pub(super) fn admin(&mut self, a: &file::AdminSection) -> AdminSettings {
        let token = match (&a.token, &a.token_file) {
            (Some(_), Some(file)) => {
                self.error(
                    file.span(),
                    "admin.token-file",
                    "give `token` or `token-file`, not both",
                );
                None
            }
            (Some(token), None) => self.token(token, "admin.token", token.get_ref().clone()),
            (None, Some(file)) => {
                let outside = self.outside;
                let path = self.relative(file.get_ref());
                let text = self.check(file, "admin.token-file", |name| {
                    let bytes = outside
                        .read(&path)
                        .map_err(|e| format!("cannot read `{name}`: {e}"))?;
                    String::from_utf8(bytes)
                        .map(|t| t.trim().to_string())
                        .map_err(|_| format!("`{name}` is not UTF-8"))
                });
                text.and_then(|t| self.token(file, "admin.token-file", t))
            }
            (None, None) => None,
        };
        let state_file = a
            .state_file
            .as_ref()
            .map_or(DEFAULT_STATE_FILE, |s| s.get_ref().as_str());
        AdminSettings {
            token,
            state_file: self.relative(state_file),
        }
    }

    fn token(&mut self, at: &Spanned<String>, key: &str, token: String) -> Option<Token> {
        self.check(at, key, |_| {
            if token.len() < MIN_TOKEN_LEN {
                Err(format!(
                    "the token needs at least {MIN_TOKEN_LEN} characters"
                ))
            } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
                Err("the token may hold visible ASCII characters only".to_string())
            } else {
                Ok(Token::new(token.clone()))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::path::Path;

    fn config(dir: &Path, admin: &str) -> String {
        super::super::file_with_section(dir, "admin", admin)
    }

    #[test]
    fn the_token_comes_inline_or_from_a_file_and_the_state_file_has_a_default() {
        let dir = tempfile::tempdir().unwrap();
        let parse =
            |admin: &str| Config::parse(&dir.path().join("f.toml"), &config(dir.path(), admin));
        let none = parse("").unwrap().admin;
        assert_eq!(none.token, None);
        assert_eq!(none.state_file, dir.path().join("data/state.json"));
        let inline = parse("token = \"0123456789abcdef\"\nstate-file = \"/var/lib/fd.json\"\n");
        let inline = inline.unwrap().admin;
        assert!(inline.token.unwrap().matches("0123456789abcdef"));
        assert_eq!(inline.state_file, Path::new("/var/lib/fd.json"));
        std::fs::write(dir.path().join("token"), "fedcba9876543210fedc\n").unwrap();
        let file = parse("token-file = \"token\"\n").unwrap().admin;
        assert!(file.token.unwrap().matches("fedcba9876543210fedc"));
    }

    #[test]
    fn a_short_or_doubled_or_missing_token_is_an_error_at_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |admin: &str| {
            Config::parse(&dir.path().join("f.toml"), &config(dir.path(), admin))
                .unwrap_err()
                .to_string()
        };
        let short = parse("token = \"short\"\n");
        assert!(
            short.contains("f.toml:17:9: admin.token: the token needs at least 16"),
            "{short}"
        );
        let spaced = parse("token = \"0123456789 abcdef\"\n");
        assert!(spaced.contains("visible ASCII"), "{spaced}");
        let both = parse("token = \"0123456789abcdef\"\ntoken-file = \"t\"\n");
        assert!(
            both.contains(":18:14: admin.token-file: give `token` or `token-file`"),
            "{both}"
        );
        let missing = parse("token-file = \"nope\"\n");
        assert!(
            missing.contains("admin.token-file: cannot read `nope`"),
            "{missing}"
        );
    }
}
