//! Warming: the asset cache is filled and compressed before traffic asks, so the first
//! visitor after a start or a deploy gets Brotli, as nginx serving precompressed files would.
//!
//! What to warm comes from the app's asset manifest (Propshaft's `.manifest.json`, Sprockets'
//! `.sprockets-manifest-*.json`) when the route names one or its directory source holds one,
//! else from the fingerprinted files of a directory source. Newest first: the compression pool
//! takes work in the order it is asked for, and the newest files are the current release's.
//! The plan is made again at start, on every reload, and when the manifest (or the folder it
//! lives in) changes, which is what a deploy does.

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::task::JoinSet;

use super::{is_fingerprinted, AssetCache, AssetRoute, AssetSource, CacheStatus};
use crate::metrics::Metrics;
use crate::upstream::Pool;

/// How often manifests and folders are looked at for a change (a few `stat`s).
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Fills in flight at once: gentle on the app, which serves upstream-sourced assets.
const CONCURRENT_FILLS: usize = 2;

/// Files a directory walk looks at, at most (a `public/` with more is warmed in part).
const MAX_WALKED: usize = 20_000;

/// How deep a directory walk goes.
const MAX_DEPTH: usize = 12;

/// A route whose assets may be warmed, as the current snapshot has it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The route's name (the cache key and the metrics label).
    pub route_name: Arc<str>,
    /// Its asset settings.
    pub route: AssetRoute,
    /// The literal start of its path template (`/assets/` of `/assets/{file*}`): manifest
    /// entries are below it.
    pub prefix: String,
    /// The `Host` of fills from the app: the route's host when it names exactly one.
    pub host: Option<String>,
    /// The route's pool.
    pub pool: Arc<Pool>,
}

/// The current snapshot (compared by pointer: a reload installs another one) and its targets.
pub type CurrentTargets =
    Box<dyn Fn() -> (Arc<dyn std::any::Any + Send + Sync>, Vec<Target>) + Send + Sync>;

/// Where a route's list of assets comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Listing {
    /// A Propshaft or Sprockets manifest file.
    Manifest(PathBuf),
    /// Every fingerprinted file below a directory source's root.
    Walk(PathBuf),
}

/// The listing of `target`, if it has one: the manifest it names (a file, or a folder holding
/// one), else a manifest in its directory source's prefix folder, else the directory itself.
fn listing(target: &Target) -> Option<Listing> {
    let in_folder = |dir: &Path| find_manifest(dir).map(Listing::Manifest);
    match (&target.route.manifest, &target.route.source) {
        (Some(named), _) if named.is_dir() => in_folder(named),
        (Some(named), _) => Some(Listing::Manifest(named.clone())),
        (None, AssetSource::Directory(root)) => {
            in_folder(&root.join(target.prefix.trim_matches('/')))
                .or_else(|| Some(Listing::Walk(root.clone())))
        }
        (None, AssetSource::Upstream) => None,
    }
}

/// `.manifest.json` (Propshaft) or the newest `.sprockets-manifest-*.json` in `dir`.
fn find_manifest(dir: &Path) -> Option<PathBuf> {
    let propshaft = dir.join(".manifest.json");
    if propshaft.is_file() {
        return Some(propshaft);
    }
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(".sprockets-manifest-") && name.ends_with(".json")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, path)| path)
}

/// What changes when a deploy writes assets: the manifest's and its folder's modification
/// times (a folder's changes when a file is added or renamed into it).
fn stamp(listing: &Listing) -> Vec<Option<SystemTime>> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match listing {
        Listing::Manifest(file) => vec![modified(file), file.parent().and_then(modified)],
        Listing::Walk(root) => vec![modified(root)],
    }
}

/// The digested paths a manifest lists (relative to its folder), each with the manifest's own
/// modification time for it when it has one (Sprockets').
///
/// Propshaft: `{"application.js": "application-1a2b3c4d.js"}` (before 1.0) or
/// `{"application.js": {"digested_path": "application-1a2b3c4d.js", ...}}`.
/// Sprockets: `{"files": {"application-1a2b….js": {"mtime": "2024-05-01T10:00:00+00:00", ...}},
/// "assets": {...}}`.
pub fn manifest_entries(text: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let object = json
        .as_object()
        .ok_or_else(|| "not a JSON object".to_string())?;
    if let Some(files) = object.get("files").and_then(|f| f.as_object()) {
        return Ok(files
            .iter()
            .map(|(path, info)| {
                let mtime = info["mtime"].as_str().map(str::to_string);
                (path.clone(), mtime)
            })
            .collect());
    }
    Ok(object
        .values()
        .filter_map(|entry| {
            entry
                .as_str()
                .or_else(|| entry["digested_path"].as_str())
                .map(|p| (p.to_string(), None))
        })
        .collect())
}

/// The URL paths to warm for `listing`, newest first. Blocking (reads and `stat`s files).
fn plan(listing: &Listing, prefix: &str, max_size: u64) -> Result<Vec<String>, String> {
    let prefix = if prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    // (URL path, modified on disk, the manifest's own time), sorted newest first.
    let mut found: Vec<(String, Option<SystemTime>, Option<String>)> = match listing {
        Listing::Manifest(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let folder = file.parent().unwrap_or(Path::new("."));
            manifest_entries(&text)
                .map_err(|e| format!("{}: {e}", file.display()))?
                .into_iter()
                .filter(|(path, _)| !path.split('/').any(|s| s == ".." || s.is_empty()))
                .map(|(path, mtime)| {
                    let on_disk = std::fs::metadata(folder.join(&path))
                        .and_then(|m| m.modified())
                        .ok();
                    (format!("{prefix}{path}"), on_disk, mtime)
                })
                .collect()
        }
        Listing::Walk(root) => walk(root, max_size)
            .into_iter()
            .filter(|(path, _)| path.starts_with(&prefix))
            .map(|(path, modified)| (path, Some(modified), None))
            .collect(),
    };
    found.retain(|(path, _, _)| is_fingerprinted(path));
    found.sort_by(|a, b| (&b.1, &b.2).cmp(&(&a.1, &a.2)));
    Ok(found.into_iter().map(|(path, _, _)| path).collect())
}

/// Files below `root` (no dot-files or dot-folders, no `.br`/`.gz` siblings, none over
/// `max_size`), as URL paths with their modification times.
fn walk(root: &Path, max_size: u64) -> Vec<(String, SystemTime)> {
    let mut out = Vec::new();
    let mut folders = vec![(root.to_path_buf(), String::new(), 0)];
    let mut seen = 0;
    while let Some((dir, url, depth)) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            seen += 1;
            if seen > MAX_WALKED {
                return out;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let (Ok(kind), Ok(metadata)) = (entry.file_type(), entry.metadata()) else {
                continue;
            };
            let path = format!("{url}/{name}");
            if kind.is_dir() && depth < MAX_DEPTH {
                folders.push((entry.path(), path, depth + 1));
            } else if kind.is_file()
                && !name.ends_with(".br")
                && !name.ends_with(".gz")
                && metadata.len() <= max_size
            {
                if let Ok(modified) = metadata.modified() {
                    out.push((path, modified));
                }
            }
        }
    }
    out
}

/// The background service that warms every target's assets.
pub struct Warmer {
    targets: CurrentTargets,
    assets: Arc<AssetCache>,
    metrics: Arc<Metrics>,
}

impl Warmer {
    /// Warms what `targets` lists (asked again at each poll) into `assets`.
    pub fn new(targets: CurrentTargets, assets: Arc<AssetCache>, metrics: Arc<Metrics>) -> Self {
        Warmer {
            targets,
            assets,
            metrics,
        }
    }

    /// Fills every path of `paths` not in memory yet, `CONCURRENT_FILLS` at a time, in order.
    async fn warm(&self, target: &Target, paths: Vec<String>) {
        let mut fills = JoinSet::new();
        let route = target.route_name.clone();
        for path in paths {
            if self.assets.contains(&route, &path) {
                self.metrics.asset_warmed(&route, "cached");
                continue;
            }
            while fills.len() >= CONCURRENT_FILLS {
                if let Some(Ok(result)) = fills.join_next().await {
                    self.metrics.asset_warmed(&route, result);
                }
            }
            let (assets, target) = (self.assets.clone(), target.clone());
            fills.spawn(async move {
                let filled = assets
                    .get(
                        &target.route_name,
                        &target.route,
                        &path,
                        target.host.as_deref(),
                        &target.pool,
                    )
                    .await;
                match filled {
                    Ok((_, CacheStatus::Hit)) => "cached",
                    Ok(_) => "filled",
                    Err(bypass) => {
                        tracing::debug!("warming {path}: {bypass}");
                        "bypass"
                    }
                }
            });
        }
        while let Some(done) = fills.join_next().await {
            if let Ok(result) = done {
                self.metrics.asset_warmed(&route, result);
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Warmer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // (route, listing) → the stamp it was last warmed at.
        let mut warmed: Vec<(Arc<str>, Listing, Vec<Option<SystemTime>>)> = Vec::new();
        let mut generation: Option<Arc<dyn std::any::Any + Send + Sync>> = None;
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let (now, targets) = (self.targets)();
            if !generation.as_ref().is_some_and(|g| Arc::ptr_eq(g, &now)) {
                // A reload may name other manifests, or the same ones for other routes.
                generation = Some(now);
                warmed.clear();
            }
            let mut seen = HashSet::new();
            for target in targets {
                let work = {
                    let target = target.clone();
                    tokio::task::spawn_blocking(move || {
                        let listing = listing(&target)?;
                        let stamp = stamp(&listing);
                        Some((listing, stamp))
                    })
                };
                let Ok(Some((listing, stamp))) = work.await else {
                    continue;
                };
                seen.insert(target.route_name.clone());
                let done = warmed
                    .iter()
                    .any(|(r, l, s)| *r == target.route_name && *l == listing && *s == stamp);
                if done {
                    continue;
                }
                warmed.retain(|(r, _, _)| *r != target.route_name);
                warmed.push((target.route_name.clone(), listing.clone(), stamp));
                let (prefix, max) = (target.prefix.clone(), target.route.max_object_size);
                let planned = tokio::task::spawn_blocking({
                    let listing = listing.clone();
                    move || plan(&listing, &prefix, max)
                })
                .await;
                match planned {
                    Ok(Ok(paths)) => {
                        tracing::info!(
                            "warming {} assets of route {} ({listing:?})",
                            paths.len(),
                            target.route_name
                        );
                        tokio::select! {
                            _ = shutdown.changed() => return,
                            () = self.warm(&target, paths) => {}
                        }
                    }
                    Ok(Err(why)) => tracing::warn!(
                        "cannot warm the assets of route {}: {why}",
                        target.route_name
                    ),
                    Err(_) => {}
                }
            }
            warmed.retain(|(r, _, _)| seen.contains(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propshaft_and_sprockets_manifests_list_their_digested_paths() {
        let propshaft_1 = r#"{"application.js": {"digested_path": "application-1a2b3c4d.js",
            "integrity": "sha384-x"}, "logo.svg": {"digested_path": "logo-5e6f7a8b.svg"}}"#;
        let mut paths: Vec<String> = manifest_entries(propshaft_1)
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        paths.sort();
        assert_eq!(paths, ["application-1a2b3c4d.js", "logo-5e6f7a8b.svg"]);
        let propshaft_0 = r#"{"application.js": "application-1a2b3c4d.js"}"#;
        assert_eq!(
            manifest_entries(propshaft_0).unwrap(),
            [("application-1a2b3c4d.js".to_string(), None)]
        );
        let sprockets = r#"{"files": {"application-0123456789abcdef.js": {"logical_path":
            "application.js", "mtime": "2024-05-01T10:00:00+00:00", "size": 3}},
            "assets": {"application.js": "application-0123456789abcdef.js"}}"#;
        assert_eq!(
            manifest_entries(sprockets).unwrap(),
            [(
                "application-0123456789abcdef.js".to_string(),
                Some("2024-05-01T10:00:00+00:00".to_string())
            )]
        );
        assert!(manifest_entries("[1, 2]").is_err());
        assert!(manifest_entries("{").is_err());
    }

    #[test]
    fn a_plan_is_newest_first_fingerprinted_only_and_stays_below_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let assets = dir.path().join("assets");
        std::fs::create_dir_all(assets.join("controllers")).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        for (name, age) in [
            ("old-0123456789.js", Some(old)),
            ("controllers/new-9876543210.js", None),
            ("plain.js", None),
        ] {
            let file = assets.join(name);
            std::fs::write(&file, "x").unwrap();
            if let Some(at) = age {
                std::fs::File::options()
                    .write(true)
                    .open(&file)
                    .unwrap()
                    .set_modified(at)
                    .unwrap();
            }
        }
        std::fs::write(assets.join("old-0123456789.js.br"), "x").unwrap();
        let manifest = assets.join(".manifest.json");
        std::fs::write(
            &manifest,
            r#"{"a.js": "old-0123456789.js", "b.js": "controllers/new-9876543210.js",
                "c.js": "plain.js", "d.js": "../../etc/passwd-0123456789.js"}"#,
        )
        .unwrap();
        let from_manifest = plan(&Listing::Manifest(manifest), "/assets/", 1 << 20).unwrap();
        assert_eq!(
            from_manifest,
            [
                "/assets/controllers/new-9876543210.js",
                "/assets/old-0123456789.js"
            ]
        );
        let walked = plan(&Listing::Walk(dir.path().to_path_buf()), "/assets", 1 << 20).unwrap();
        assert_eq!(
            walked, from_manifest,
            "the same files by walking, no siblings"
        );
        assert_eq!(find_manifest(&assets), Some(assets.join(".manifest.json")));
    }
}
