//! Learned asset hints: the fingerprinted scripts and stylesheets each route's HTML last
//! referenced, kept per route so later responses can preload them.
//!
//! Bounded: at most [`MAX_ROUTES`] routes and [`MAX_PER_ROUTE`] assets each. A page that
//! references other assets than the ones remembered (a deploy changed the fingerprints)
//! replaces the route's list, so hints follow the live page. Kept across config reloads
//! (keyed by route name).
//!
//! Sampled, not parsed from every page: the list changes only when a deploy changes the
//! fingerprints, and parsing halves a page's throughput. A route's page is parsed when the
//! route has not been sampled yet (at start, and after a reload, which is how a deploy that
//! moves the pool reaches frontdoor), when its validator (`ETag`, else `Last-Modified`)
//! differs from the last parsed page's (at most once per [`MIN_GAP`]), and otherwise once per
//! [`RESAMPLE`]. So a deploy's new fingerprints are picked up within [`RESAMPLE`] at most.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use http::HeaderValue;

use super::link::{merge, Destination, Link, Rel};

/// Routes remembered; route names come from the config, so this is only a backstop.
pub const MAX_ROUTES: usize = 1024;
/// Assets remembered per route: preloading more than a handful competes with the page.
pub const MAX_PER_ROUTE: usize = 16;

/// A route's page is parsed again at least this often.
pub const RESAMPLE: Duration = Duration::from_secs(5);
/// A page whose validator changed is parsed at most this often (Rails' ETag is a digest of
/// the body, which per-request tokens change on every page).
pub const MIN_GAP: Duration = Duration::from_secs(1);

/// What the routes' pages reference, by route name.
#[derive(Debug, Default)]
pub struct Learned {
    by_route: RwLock<HashMap<Arc<str>, Entry>>,
    /// The last page parsed per route: when, and its validator.
    sampled: Mutex<HashMap<Arc<str>, Sample>>,
}

/// A route's learned assets, and their `Link` value written once when they were learned (a
/// page of a route without rules and without the app's own `Link` gets it as is: no
/// formatting per response).
#[derive(Debug)]
struct Entry {
    links: Arc<[Link]>,
    header: Option<HeaderValue>,
}

#[derive(Debug)]
struct Sample {
    at: Instant,
    validator: Option<String>,
}

/// What [`Learned::observe`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// The route's list is what the page referenced already.
    Unchanged,
    /// The list was new or replaced (first page, or a deploy).
    Updated,
    /// The route is new and the store is full.
    Full,
}

impl Learned {
    /// The hints learned for `route` (empty if none).
    pub fn get(&self, route: &str) -> Arc<[Link]> {
        self.by_route
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
            .map(|e| e.links.clone())
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }

    /// The `Link` value of the assets learned for `route` alone (`link::merge` of them), if
    /// any were learned.
    pub fn header(&self, route: &str) -> Option<HeaderValue> {
        self.by_route
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
            .and_then(|e| e.header.clone())
    }

    /// Whether the page of `route` answered now with `validator` should be parsed (see the
    /// module doc); a `true` claims the sample, so concurrent pages do not all parse.
    pub fn should_sample(&self, route: &str, validator: Option<&str>, now: Instant) -> bool {
        let mut sampled = self.sampled.lock().unwrap_or_else(PoisonError::into_inner);
        let due = match sampled.get(route) {
            None => true,
            Some(last) => {
                let since = now.saturating_duration_since(last.at);
                since >= RESAMPLE
                    || (since >= MIN_GAP
                        && validator.is_some()
                        && validator != last.validator.as_deref())
            }
        };
        if due && (sampled.contains_key(route) || sampled.len() < MAX_ROUTES) {
            sampled.insert(
                Arc::from(route),
                Sample {
                    at: now,
                    validator: validator.map(str::to_string),
                },
            );
        }
        due
    }

    /// Forgets when each route was sampled (not what was learned): the next page of every
    /// route is parsed. Called on reload.
    pub fn resample(&self) {
        self.sampled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Records the assets a page of `route` referenced, in document order.
    pub fn observe(&self, route: &Arc<str>, assets: &[Link]) -> Observed {
        let assets = &assets[..assets.len().min(MAX_PER_ROUTE)];
        if self.get(route).as_ref() == assets {
            return Observed::Unchanged;
        }
        let mut map = self
            .by_route
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !map.contains_key(route) && map.len() >= MAX_ROUTES {
            return Observed::Full;
        }
        let header = merge(assets, &[]).and_then(|v| HeaderValue::from_str(&v).ok());
        let links = Arc::from(assets.to_vec());
        map.insert(route.clone(), Entry { links, header });
        Observed::Updated
    }
}

/// The preload hint for an asset a page references (`src` of a classic script, `href` of a
/// stylesheet), if it is a fingerprinted path on this site.
pub fn asset_link(url: &str, destination: Destination) -> Option<Link> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let same_origin = path.starts_with('/') && !path.starts_with("//");
    let safe = url
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b',' | b';' | b'"'));
    (same_origin && safe && crate::assets::is_fingerprinted(path)).then(|| Link {
        url: url.to_string(),
        rel: Rel::Preload,
        destination,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(path: &str) -> Link {
        asset_link(path, Destination::Script).unwrap()
    }

    #[test]
    fn only_fingerprinted_same_origin_paths_are_hinted() {
        assert!(asset_link("/assets/app-0123456789abcdef.js", Destination::Script).is_some());
        assert!(asset_link("/assets/app.js", Destination::Script).is_none());
        assert!(asset_link("//cdn.example/app-0123456789abcdef.js", Destination::Script).is_none());
        assert!(asset_link(
            "https://cdn.example/app-0123456789abcdef.js",
            Destination::Script
        )
        .is_none());
        assert!(asset_link("/assets/a>b-0123456789abcdef.js", Destination::Script).is_none());
    }

    #[test]
    fn pages_are_sampled_first_then_on_a_new_validator_or_every_few_seconds() {
        let learned = Learned::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert!(
            learned.should_sample("home", Some("\"a\""), t0),
            "never sampled"
        );
        assert!(
            !learned.should_sample("home", Some("\"a\""), ms(1)),
            "claimed"
        );
        assert!(
            !learned.should_sample("home", Some("\"b\""), ms(500)),
            "under MIN_GAP"
        );
        assert!(
            !learned.should_sample("home", None, ms(1500)),
            "no validator to compare"
        );
        assert!(
            learned.should_sample("home", Some("\"b\""), ms(1500)),
            "new validator"
        );
        assert!(
            !learned.should_sample("home", Some("\"b\""), ms(6000)),
            "same, recent"
        );
        assert!(
            learned.should_sample("home", Some("\"b\""), ms(6500)),
            "RESAMPLE passed"
        );
        assert!(
            learned.should_sample("other", None, ms(6501)),
            "routes are apart"
        );
        learned.resample();
        assert!(
            learned.should_sample("home", Some("\"b\""), ms(6502)),
            "after a reload"
        );
    }

    #[test]
    fn a_changed_page_replaces_the_list_and_the_store_is_bounded() {
        let learned = Learned::default();
        let route: Arc<str> = Arc::from("course");
        let v1 = vec![script("/assets/app-0123456789abcdef.js")];
        let v2 = vec![script("/assets/app-fedcba9876543210.js")];
        assert_eq!(learned.observe(&route, &v1), Observed::Updated);
        assert_eq!(learned.observe(&route, &v1), Observed::Unchanged);
        assert_eq!(learned.get("course").as_ref(), v1.as_slice());
        assert_eq!(learned.observe(&route, &v2), Observed::Updated);
        assert_eq!(learned.get("course").as_ref(), v2.as_slice());

        let many: Vec<Link> = (0..40)
            .map(|i| script(&format!("/assets/a{i}-0123456789abcdef.js")))
            .collect();
        learned.observe(&route, &many);
        assert_eq!(learned.get("course").len(), MAX_PER_ROUTE);
        for i in 0..MAX_ROUTES {
            learned.observe(&Arc::from(format!("r{i}")), &v1);
        }
        assert_eq!(learned.observe(&Arc::from("one-more"), &v1), Observed::Full);
        assert!(learned.get("one-more").is_empty());
    }
}
