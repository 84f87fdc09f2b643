//! Validation of `[[routes]]` and what each route may carry: assets, cache, hints, offload.

use http::Method;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use toml::Spanned;

use super::{file, units, Validator};
use crate::admission::Priority;
use crate::assets::{AssetRoute, AssetSource};
use crate::edge_cache::CacheRoute;
use crate::hints::{DeferScripts, Destination, LinkTemplate, Rel, RouteHints};
use crate::routing::{HostPattern, PathTemplate, Route};

impl Validator<'_> {
    pub(super) fn routes(
        &mut self,
        routes: &[file::RouteSection],
        pools: &BTreeMap<String, file::PoolSection>,
    ) -> Vec<Route> {
        if routes.is_empty() {
            self.error(0..0, "routes", "no [[routes]]: every request would get 404");
        }
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            let name = r.name.get_ref();
            let name_ok = self.check(&r.name, &format!("{key}.name"), |n| {
                let valid = !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !valid {
                    Err(format!(
                        "`{n}`: route names are letters, digits, `_` and `-` (they label metrics)"
                    ))
                } else if !names.insert(n.clone()) {
                    Err(format!("route name `{n}` is used twice"))
                } else {
                    Ok(())
                }
            });
            let host = r
                .host
                .as_ref()
                .map(|h| self.check(h, &format!("{key}.host"), |h| HostPattern::parse(h)));
            let methods = r.methods.as_ref().map(|ms| {
                ms.iter()
                    .filter_map(|m| {
                        self.check(m, &format!("{key}.methods"), |m| {
                            let upper = m.to_ascii_uppercase();
                            let known = [
                                "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
                                "TRACE", "CONNECT",
                            ];
                            if known.contains(&upper.as_str()) {
                                Method::from_bytes(upper.as_bytes()).map_err(|e| e.to_string())
                            } else {
                                Err(format!("`{m}` is not an HTTP method"))
                            }
                        })
                    })
                    .collect::<Vec<_>>()
            });
            let template = self.check(&r.path, &format!("{key}.path"), |p| {
                PathTemplate::parse(p).map_err(|e| e.to_string())
            });
            let pool_ok = self.check(&r.pool, &format!("{key}.pool"), |p| {
                if pools.contains_key(p) {
                    Ok(())
                } else {
                    let known: Vec<&str> = pools.keys().map(String::as_str).collect();
                    Err(format!("no pool named `{p}` (pools: {})", known.join(", ")))
                }
            });
            let host = match host {
                Some(Some(h)) => Some(h),
                Some(None) => continue,
                None => None,
            };
            let assets = match &r.assets {
                Some(a) => match self.assets(a, &format!("{key}.assets")) {
                    Some(assets) => Some(assets),
                    None => continue,
                },
                None => None,
            };
            let priority = match &r.priority {
                Some(p) => {
                    match self.check(p, &format!("{key}.priority"), |w| Priority::parse(w)) {
                        Some(p) => p,
                        None => continue,
                    }
                }
                None => Priority::Normal,
            };
            let cache = match &r.cache {
                Some(c) => match self.route_cache(c, &format!("{key}.cache")) {
                    Some(cache) => Some(cache),
                    None => continue,
                },
                None => None,
            };
            let hints = match (&r.hints, &template) {
                (Some(h), Some(template)) => {
                    match self.hints(h, template, &format!("{key}.hints")) {
                        Some(hints) => hints,
                        None => continue,
                    }
                }
                _ => RouteHints::default(),
            };
            let offload = match (&r.offload, &template) {
                (Some(o), Some(t)) => match self.offload(o, t, &format!("{key}.offload")) {
                    Some(offload) => Some(offload),
                    None => continue,
                },
                _ => None,
            };
            let max_body = r
                .max_body
                .as_ref()
                .map(|m| self.check(m, &format!("{key}.max-body"), |s| units::parse_size(s)));
            let max_body = match max_body {
                Some(None) => continue,
                Some(Some(max)) => Some(max),
                None => None,
            };
            if let (Some(()), Some(template), Some(())) = (name_ok, template, pool_ok) {
                out.push(Route {
                    name: Arc::from(name.as_str()),
                    host,
                    methods,
                    template,
                    pool: Arc::from(r.pool.get_ref().as_str()),
                    assets,
                    cache,
                    priority,
                    hints,
                    offload,
                    max_body,
                    request_buffering: r.request_buffering,
                    response_buffering: r.response_buffering,
                });
            }
        }
        out
    }

    /// `[routes.hints]` of a route whose path compiled to `template`.
    pub(super) fn hints(
        &mut self,
        h: &file::HintsSection,
        template: &PathTemplate,
        key: &str,
    ) -> Option<RouteHints> {
        let mut links = Vec::new();
        let mut ok = true;
        for (rel, list, name) in [
            (Rel::Preload, &h.preload, "preload"),
            (Rel::Prefetch, &h.prefetch, "prefetch"),
        ] {
            for (i, entry) in list.iter().enumerate() {
                let entry_key = format!("{key}.{name}[{i}]");
                let destination = match &entry.destination {
                    Some(d) => self.check(d, &format!("{entry_key}.as"), |d| Destination::parse(d)),
                    None => self.check(&entry.href, &format!("{entry_key}.href"), |href| {
                        Destination::from_extension(href).ok_or_else(|| {
                            format!("cannot tell what `{href}` is from its extension: add `as = \"fetch\"` (or script, style, font, image)")
                        })
                    }),
                };
                let parsed = destination.and_then(|destination| {
                    self.check(&entry.href, &format!("{entry_key}.href"), |href| {
                        LinkTemplate::parse(href, rel, destination, template)
                    })
                });
                match parsed {
                    Some(link) => links.push(link),
                    None => ok = false,
                }
            }
        }
        let defer_scripts = h.defer_scripts.as_ref().map(|d| {
            let mut patterns = |list: &[Spanned<String>], name: &str| -> Vec<String> {
                list.iter()
                    .filter_map(|p| {
                        self.check(p, &format!("{key}.defer-scripts.{name}"), |p| {
                            if p.trim().is_empty() {
                                Err(
                                    "an empty pattern matches nothing: use \"*\" for every script"
                                        .to_string(),
                                )
                            } else {
                                Ok(p.clone())
                            }
                        })
                    })
                    .collect()
            };
            let allow = patterns(&d.allow, "allow");
            let deny = patterns(&d.deny, "deny");
            DeferScripts::new(allow, deny)
        });
        ok.then_some(RouteHints {
            links,
            learn: h.learn,
            early_hints: h.early_hints,
            defer_scripts,
        })
    }

    pub(super) fn assets(&mut self, a: &file::AssetsSection, key: &str) -> Option<AssetRoute> {
        let source = match a.source.get_ref().as_str() {
            "upstream" => Some(AssetSource::Upstream),
            dir => {
                let (base, outside) = (self.base, self.outside);
                self.check(&a.source, &format!("{key}.source"), |_| {
                    outside
                        .directory(&base.join(dir))
                        .map(AssetSource::Directory)
                        .map_err(|e| format!("{e} (use \"upstream\" or an existing directory)"))
                })
            }
        };
        let max_object_size =
            self.check(&a.max_object_size, &format!("{key}.max-object-size"), |s| {
                units::parse_size(s)
            });
        let manifest = match &a.manifest {
            Some(m) => Some(self.check(m, &format!("{key}.manifest"), |path| {
                if path.is_empty() {
                    Err("names no file: give the manifest or its folder".to_string())
                } else {
                    Ok(self.base.join(path))
                }
            })?),
            None => None,
        };
        Some(AssetRoute {
            source: source?,
            max_object_size: max_object_size?,
            x_cache_header: a.x_cache_header,
            manifest,
            warm: a.warm,
        })
    }

    pub(super) fn route_cache(
        &mut self,
        c: &file::RouteCacheSection,
        key: &str,
    ) -> Option<CacheRoute> {
        let version = self.check(&c.version, &format!("{key}.version"), |v| {
            u64::try_from(*v).map_err(|_| format!("must be 0 or more, not {v}"))
        });
        let max_object_size =
            self.check(&c.max_object_size, &format!("{key}.max-object-size"), |s| {
                units::parse_size(s)
            });
        let stale_while_revalidate = self.duration(
            &c.stale_while_revalidate,
            &format!("{key}.stale-while-revalidate"),
        );
        let stale_if_error = self.duration(&c.stale_if_error, &format!("{key}.stale-if-error"));
        Some(CacheRoute {
            version: version?,
            max_object_size: max_object_size?,
            allow_cookies: c.allow_cookies,
            allow_authorization: c.allow_authorization,
            stale_while_revalidate: stale_while_revalidate?,
            stale_if_error: stale_if_error?,
            x_cache_header: c.x_cache_header,
        })
    }
}
