//! Routing: which rule a request follows.
//!
//! A [`RouteTable`] is compiled once per config snapshot and sorted most specific first, so a
//! lookup is the first route that matches. The order (the tie rule operators can rely on):
//! 1. a route with an exact `host` beats one with a `*.` wildcard host, which beats one with none;
//! 2. more literal path segments first (`/courses/{id*}/manual_update` beats `/courses/{school}/{title}`);
//! 3. fewer `{glob*}` segments first, then fewer `{param}` segments;
//! 4. a route that lists `methods` beats one that takes any method;
//! 5. what is still tied goes to the route written first in the file.

pub use crate::template::{path_segments, Params, PathTemplate, Segment, TemplateError};

use http::Method;
use std::fmt;
use std::sync::Arc;

/// The `host` of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `example.com` (stored lowercase).
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: any subdomain, not the bare domain.
    Wildcard(String),
}

impl HostPattern {
    /// Parses `example.com` or `*.example.com`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        };
        if let Some(suffix) = lower.strip_prefix("*.") {
            if valid(suffix) {
                return Ok(HostPattern::Wildcard(format!(".{suffix}")));
            }
        } else if valid(&lower) {
            return Ok(HostPattern::Exact(lower));
        }
        Err(format!(
            "`{text}` is not a host name or `*.domain` wildcard"
        ))
    }

    /// Whether `host` (lowercase, without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => name == host,
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }

    fn rank(pattern: Option<&HostPattern>) -> u8 {
        match pattern {
            Some(HostPattern::Exact(_)) => 2,
            Some(HostPattern::Wildcard(_)) => 1,
            None => 0,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// One compiled routing rule.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique name; the `route` label of metrics.
    pub name: Arc<str>,
    /// Host the route is limited to.
    pub host: Option<HostPattern>,
    /// Methods the route is limited to.
    pub methods: Option<Vec<Method>>,
    /// The path template.
    pub template: PathTemplate,
    /// The pool requests go to.
    pub pool: Arc<str>,
    /// Fingerprinted assets of this route are served from memory.
    pub assets: Option<crate::assets::AssetRoute>,
    /// The app's cacheable answers of this route are kept in memory.
    pub cache: Option<crate::edge_cache::CacheRoute>,
    /// Who waits and who is shed under load.
    pub priority: crate::admission::Priority,
    /// Preload/prefetch hints, learned asset hints, Early Hints, script deferral.
    pub hints: crate::hints::RouteHints,
    /// Requests of this route become durable jobs answered with 202.
    pub offload: Option<crate::jobs::OffloadRoute>,
    /// The route's request body limit (`None`: `[proxy] max-body`).
    pub max_body: Option<u64>,
    /// Request bodies are received in full before the request takes a slot (else streamed
    /// to the app as they arrive).
    pub request_buffering: bool,
    /// The app's answers are read ahead of the client (else at the client's pace).
    pub response_buffering: bool,
}

impl Route {
    /// A route of any host and method that only proxies to `pool`: no assets, cache, hints
    /// or offload, normal priority, request bodies buffered. Tests and the fuzzer build on it.
    pub fn plain(name: &str, template: PathTemplate, pool: &str) -> Route {
        Route {
            name: Arc::from(name),
            host: None,
            methods: None,
            template,
            pool: Arc::from(pool),
            assets: None,
            cache: None,
            priority: crate::admission::Priority::Normal,
            hints: Default::default(),
            offload: None,
            max_body: None,
            request_buffering: true,
            response_buffering: true,
        }
    }
}

/// A route that matched, with what its template captured.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// The route.
    pub route: Arc<Route>,
    /// Captured parameters, in template order.
    pub params: Params,
}

/// Routes sorted most specific first.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Sorts `routes` (given in file order) by the rule in the module doc.
    pub fn new(routes: Vec<Route>) -> Self {
        let mut indexed: Vec<(usize, Route)> = routes.into_iter().enumerate().collect();
        indexed.sort_by_key(|(file_order, route)| {
            let (literals, params, globs) = route.template.shape();
            (
                std::cmp::Reverse(HostPattern::rank(route.host.as_ref())),
                std::cmp::Reverse(literals),
                globs,
                params,
                route.methods.is_none(),
                *file_order,
            )
        });
        RouteTable {
            routes: indexed.into_iter().map(|(_, r)| Arc::new(r)).collect(),
        }
    }

    /// Routes in match order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The first route matching `host` (lowercase, no port), `method` and `path` (no query).
    pub fn lookup(&self, host: Option<&str>, method: &Method, path: &str) -> Option<RouteMatch> {
        let segments: Vec<&str> = path_segments(path).collect();
        self.routes.iter().find_map(|route| {
            if let Some(pattern) = &route.host {
                if !host.is_some_and(|h| pattern.matches(h)) {
                    return None;
                }
            }
            if let Some(methods) = &route.methods {
                if !methods.contains(method) {
                    return None;
                }
            }
            let params = route.template.matches(&segments)?;
            Some(RouteMatch {
                route: route.clone(),
                params,
            })
        })
    }
}

impl fmt::Display for RouteTable {
    /// The table `frontdoor check` prints: one line per route, in match order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<4} {:<20} {:<20} {:<12} {:<40} POOL",
            "#", "ROUTE", "HOST", "METHODS", "PATH"
        )?;
        for (i, route) in self.routes.iter().enumerate() {
            let host = route
                .host
                .as_ref()
                .map_or("*".to_string(), |h| h.to_string());
            let methods = route.methods.as_ref().map_or("*".to_string(), |ms| {
                ms.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
            });
            writeln!(
                f,
                "{:<4} {:<20} {:<20} {:<12} {:<40} {}",
                i + 1,
                route.name,
                host,
                methods,
                route.template,
                route.pool
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: Option<&str>, methods: Option<&[Method]>, path: &str) -> Route {
        let template = PathTemplate::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Route {
            host: host.and_then(|h| HostPattern::parse(h).ok()),
            methods: methods.map(|m| m.to_vec()),
            ..Route::plain(name, template, "app")
        }
    }

    fn winner(
        table: &RouteTable,
        host: Option<&str>,
        method: Method,
        path: &str,
    ) -> Option<String> {
        table
            .lookup(host, &method, path)
            .map(|m| m.route.name.to_string())
    }

    #[test]
    fn more_literal_segments_win_over_params() {
        let table = RouteTable::new(vec![
            route("course", None, None, "/courses/{school}/{title}"),
            route("update", None, None, "/courses/{id*}/manual_update"),
            route("fallback", None, None, "/{rest*}"),
        ]);
        assert_eq!(
            winner(&table, None, Method::GET, "/courses/mit/manual_update").as_deref(),
            Some("update")
        );
        assert_eq!(
            winner(&table, None, Method::GET, "/courses/mit/physics").as_deref(),
            Some("course")
        );
        assert_eq!(
            winner(&table, None, Method::GET, "/other").as_deref(),
            Some("fallback")
        );
    }

    #[test]
    fn params_beat_globs_and_root_beats_catch_all() {
        let table = RouteTable::new(vec![
            route("glob", None, None, "/{rest*}"),
            route("one", None, None, "/{page}"),
            route("root", None, None, "/"),
        ]);
        assert_eq!(
            winner(&table, None, Method::GET, "/x").as_deref(),
            Some("one")
        );
        assert_eq!(
            winner(&table, None, Method::GET, "/x/y").as_deref(),
            Some("glob")
        );
        assert_eq!(
            winner(&table, None, Method::GET, "/").as_deref(),
            Some("root")
        );
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any() {
        let table = RouteTable::new(vec![
            route("any", None, None, "/"),
            route("wild", Some("*.example.com"), None, "/"),
            route("exact", Some("admin.example.com"), None, "/"),
        ]);
        assert_eq!(
            winner(&table, Some("admin.example.com"), Method::GET, "/").as_deref(),
            Some("exact")
        );
        assert_eq!(
            winner(&table, Some("www.example.com"), Method::GET, "/").as_deref(),
            Some("wild")
        );
        assert_eq!(
            winner(&table, Some("example.com"), Method::GET, "/").as_deref(),
            Some("any")
        );
        assert_eq!(
            winner(&table, None, Method::GET, "/").as_deref(),
            Some("any")
        );
    }

    #[test]
    fn methods_restrict_and_break_ties_then_file_order() {
        let table = RouteTable::new(vec![
            route("first", None, None, "/a/{x}"),
            route("second", None, None, "/{y}/b"),
            route("posts", None, Some(&[Method::POST]), "/a/{x}"),
        ]);
        assert_eq!(
            winner(&table, None, Method::POST, "/a/z").as_deref(),
            Some("posts")
        );
        assert_eq!(
            winner(&table, None, Method::GET, "/a/z").as_deref(),
            Some("first")
        );
        assert_eq!(
            winner(&table, None, Method::GET, "/a/b").as_deref(),
            Some("first")
        );
        assert_eq!(
            winner(&table, None, Method::GET, "/c/b").as_deref(),
            Some("second")
        );
    }

    #[test]
    fn no_route_is_none() {
        let table = RouteTable::new(vec![route("a", None, None, "/a")]);
        assert_eq!(winner(&table, None, Method::GET, "/b"), None);
    }
}
