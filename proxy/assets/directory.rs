//! A directory source: files read below a root like nginx's `root`, never outside it, with
//! the `.br`/`.gz` siblings a build step left beside them.

use bytes::Bytes;
use http::HeaderValue;
use std::path::{Path, PathBuf};

use super::Bypass;

/// A file read from a directory source, with the precompressed siblings it has.
#[derive(Debug, Default)]
pub(super) struct FileRead {
    /// The file's bytes.
    pub body: Bytes,
    /// From its extension.
    pub content_type: Option<HeaderValue>,
    /// `NAME.br` beside it, as `rails assets:precompress` (sprockets-exporters) or a build
    /// step leaves it.
    pub brotli: Option<Bytes>,
    /// `NAME.gz` beside it (Sprockets writes one for every text asset).
    pub gzip: Option<Bytes>,
}

/// `root` + the URL path, refusing anything that could name a file outside `root`; with its
/// `.br` and `.gz` siblings, which are trusted as nginx's `gzip_static` trusts them.
pub(super) async fn read_file(root: &Path, path: &str, max: u64) -> Result<FileRead, Bypass> {
    let mut file = root.to_path_buf();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let unsafe_segment = segment == ".."
            || segment == "."
            || segment.contains(['%', '\\', '\0'])
            || segment.starts_with('.');
        if unsafe_segment {
            return Err(Bypass::BadPath);
        }
        file.push(segment);
    }
    // Symlinks inside the root may point out of it: compare canonical paths.
    let canonical = tokio::fs::canonicalize(&file)
        .await
        .map_err(|_| Bypass::NotFound)?;
    if !canonical.starts_with(root) {
        return Err(Bypass::BadPath);
    }
    let metadata = tokio::fs::metadata(&canonical)
        .await
        .map_err(|_| Bypass::NotFound)?;
    if !metadata.is_file() {
        return Err(Bypass::NotFound);
    }
    if metadata.len() > max {
        return Err(Bypass::TooLarge);
    }
    let body = tokio::fs::read(&canonical)
        .await
        .map_err(|e| Bypass::Failed(e.to_string()))?;
    let content_type = content_type_for(&canonical).map(HeaderValue::from_static);
    Ok(FileRead {
        brotli: sibling(root, &canonical, "br", body.len()).await,
        gzip: sibling(root, &canonical, "gz", body.len()).await,
        body: Bytes::from(body),
        content_type,
    })
}

/// `file.EXT` when it is a regular file below `root`, not empty and smaller than the file
/// itself (a larger "compressed" copy is worth nothing).
async fn sibling(root: &Path, file: &Path, ext: &str, len: usize) -> Option<Bytes> {
    let mut name = file.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    let canonical = tokio::fs::canonicalize(PathBuf::from(name)).await.ok()?;
    if !canonical.starts_with(root) {
        return None;
    }
    let metadata = tokio::fs::metadata(&canonical).await.ok()?;
    let fits = metadata.is_file() && metadata.len() > 0 && metadata.len() < len as u64;
    if !fits {
        return None;
    }
    tokio::fs::read(&canonical).await.ok().map(Bytes::from)
}

/// The `Content-Type` of common web asset extensions.
pub(super) fn content_type_for(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "js" | "mjs" => "application/javascript",
        "css" => "text/css",
        "map" | "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "txt" => "text/plain; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "wasm" => "application/wasm",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn directory_reads_cannot_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("public");
        std::fs::create_dir_all(root.join("assets")).unwrap();
        std::fs::write(dir.path().join("secret-0123456789.txt"), "secret").unwrap();
        std::fs::write(root.join("assets/ok-0123456789.js"), "ok").unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("secret-0123456789.txt"),
            root.join("assets/link-0123456789.txt"),
        )
        .unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        let read = |path: &'static str| {
            let root = root.clone();
            async move { read_file(&root, path, 1 << 20).await.map(|read| read.body) }
        };
        assert_eq!(
            read("/assets/ok-0123456789.js").await,
            Ok(Bytes::from_static(b"ok"))
        );
        for attack in [
            "/../secret-0123456789.txt",
            "/assets/../../secret-0123456789.txt",
            "/assets/%2e%2e/%2e%2e/secret-0123456789.txt",
            "/assets/..\\..\\secret-0123456789.txt",
            "/assets/ok-0123456789.js\0.png",
            "/assets/.hidden-0123456789",
            "/assets/link-0123456789.txt",
        ] {
            assert_eq!(read(attack).await, Err(Bypass::BadPath), "{attack:?}");
        }
        assert_eq!(
            read("/assets/missing-0123456789.js").await,
            Err(Bypass::NotFound)
        );
        assert_eq!(
            read("/assets").await,
            Err(Bypass::NotFound),
            "a directory is not a file"
        );
        assert_eq!(
            read_file(&root, "/assets/ok-0123456789.js", 1)
                .await
                .map(|_| ()),
            Err(Bypass::TooLarge)
        );
    }

    #[tokio::test]
    async fn precompressed_siblings_come_along_when_they_are_smaller() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::write(root.join("app-0123456789.js"), "x".repeat(100)).unwrap();
        std::fs::write(root.join("app-0123456789.js.br"), "brotli").unwrap();
        std::fs::write(root.join("app-0123456789.js.gz"), "g".repeat(200)).unwrap();
        let read = read_file(&root, "/app-0123456789.js", 1 << 20)
            .await
            .unwrap();
        assert_eq!(read.brotli, Some(Bytes::from_static(b"brotli")));
        assert_eq!(read.gzip, None, "larger than the file: ignored");
        assert_eq!(
            read.content_type,
            Some(HeaderValue::from_static("application/javascript"))
        );
    }
}
