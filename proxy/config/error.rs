//! Config errors that point at the place to fix: `file:line:col: key.path: message`.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a config file, located by line and column (both 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem has no place in the file (it could not be read).
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
    /// The key path, e.g. `routes[2].pool`; empty when unknown.
    pub key: String,
    /// What is wrong, and where useful what would be right.
    pub message: String,
}

impl ConfigError {
    /// An error at byte `offset` of `source`.
    pub fn at(
        file: &Path,
        source: &str,
        offset: usize,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let (line, col) = line_col(source, offset);
        ConfigError {
            file: file.to_path_buf(),
            line,
            col,
            key: key.into(),
            message: message.into(),
        }
    }

    /// An error about the file as a whole (unreadable, empty).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: 0,
            col: 0,
            key: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one config file; validation does not stop at the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// 1-based line and character column of byte `offset` in `source`.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// The key path at byte `offset`, reconstructed from the table headers above it and the key
/// on its line: `routes[1].pool`, `pools.app.connect-timeout`. Used for errors from the TOML
/// parser itself, which reports a place but not a path.
pub fn key_path_at(source: &str, offset: usize) -> String {
    let offset = offset.min(source.len());
    let mut table = String::new();
    let mut array_counts: std::collections::HashMap<String, usize> =
        std::collections::HashMap::new();
    let mut line_start = 0;
    for line in source.split_inclusive('\n') {
        let line_end = line_start + line.len();
        let trimmed = line.trim();
        if let Some(name) = trimmed
            .strip_prefix("[[")
            .and_then(|t| t.split("]]").next())
        {
            let name = name.trim().to_string();
            let index = array_counts.entry(name.clone()).or_insert(0);
            table = format!("{name}[{index}]");
            *index += 1;
        } else if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.split(']').next()) {
            table = name.trim().to_string();
        }
        if offset < line_end || line_end == source.len() {
            let key = trimmed
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"').to_string())
                .filter(|k| !k.starts_with('['))
                .unwrap_or_default();
            return match (table.is_empty(), key.is_empty()) {
                (true, _) => key,
                (false, true) => table,
                (false, false) => format!("{table}.{key}"),
            };
        }
        line_start = line_end;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 11), (2, 6));
    }

    #[test]
    fn key_path_follows_tables_and_array_tables() {
        let src = "[listen]\nhttps = 1\n[[routes]]\nname = 'a'\n[[routes]]\npool = 3\n[pools.app]\nbackends = []\n";
        assert_eq!(
            key_path_at(src, src.find("https").unwrap_or(0)),
            "listen.https"
        );
        assert_eq!(
            key_path_at(src, src.find("pool =").unwrap_or(0)),
            "routes[1].pool"
        );
        assert_eq!(
            key_path_at(src, src.find("backends").unwrap_or(0)),
            "pools.app.backends"
        );
    }

    #[test]
    fn display_is_file_line_col_key_message() {
        let e = ConfigError::at(Path::new("f.toml"), "x\ny = 1", 2, "y", "bad");
        assert_eq!(e.to_string(), "f.toml:2:1: y: bad");
    }
}
