//! One streaming pass over an HTML response body (lol_html, never a regex): it notes the
//! fingerprinted scripts and stylesheets the page references (for learned hints) and, when
//! the route opts in, adds `defer` to render-blocking `<script src>` in `<head>`.
//!
//! Learning only reads: the body goes out as the upstream sent it, and parsing stops after
//! [`LEARN_LIMIT`] bytes. Deferral rewrites: the output is lol_html's, so the response loses
//! `Content-Length` (see [`super::Plan`]).

use bytes::Bytes;
use lol_html::html_content::Element;
use lol_html::send::{Element as SendElement, HtmlRewriter, Settings};
use lol_html::{element, MemorySettings, OutputSink};
use std::sync::{Arc, Mutex, PoisonError};

use super::learned::asset_link;
use super::link::{Destination, Link};
use super::DeferScripts;

/// Bytes of a page read for learning alone: layouts reference their assets near the top.
pub const LEARN_LIMIT: usize = 512 * 1024;
/// Memory lol_html may buffer (one tag, a `<script>` being rewritten); past it the rest of
/// the body passes through unchanged.
const PARSER_MEMORY: usize = 1024 * 1024;

/// What a pass found, shared with its handlers (which must be `Send + 'static`).
#[derive(Debug, Default)]
struct Found {
    assets: Vec<Link>,
    deferred: usize,
}

/// Where lol_html's output goes: a buffer when rewriting, nowhere when only learning.
struct Sink(Option<Arc<Mutex<Vec<u8>>>>);

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        if let Some(out) = &self.0 {
            out.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(chunk);
        }
    }
}

/// The end of a pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Fingerprinted assets referenced, in document order, without repeats; `None` when the
    /// pass could not read the page to its end or to [`LEARN_LIMIT`].
    pub assets: Option<Vec<Link>>,
    /// Scripts that got `defer`.
    pub deferred: usize,
}

/// A streaming pass over one HTML body.
pub struct HtmlPass {
    /// In a `Mutex` only to make the pass `Sync` (the request ctx is borrowed across awaits);
    /// it is reached through `get_mut`, never locked.
    rewriter: Option<Mutex<HtmlRewriter<'static, Sink>>>,
    found: Arc<Mutex<Found>>,
    /// The rewritten bytes, when deferring.
    output: Option<Arc<Mutex<Vec<u8>>>>,
    learn: bool,
    read: usize,
    failed: bool,
}

fn is_classic_script(el: &Element<'_, '_, lol_html::send::SendHandlerTypes>) -> bool {
    el.get_attribute("type").is_none_or(|t| {
        let t = t.trim().to_ascii_lowercase();
        t.is_empty() || t == "text/javascript" || t == "application/javascript"
    })
}

impl HtmlPass {
    /// A pass that learns assets (when `learn`) and defers scripts (when `defer` is given).
    pub fn new(learn: bool, defer: Option<DeferScripts>) -> Self {
        let found = Arc::new(Mutex::new(Found::default()));
        let output = defer.is_some().then(|| Arc::new(Mutex::new(Vec::new())));
        let mut settings = Settings::new_send()
            .with_strict(false)
            .with_memory_settings(
                MemorySettings::new()
                    .with_max_allowed_memory_usage(PARSER_MEMORY)
                    .with_graceful_bail_out_on_memory_limit_exceeded(true),
            );
        if learn {
            let scripts = found.clone();
            let styles = found.clone();
            settings = settings
                .append_element_content_handler(element!(
                    "script[src]",
                    move |el: &mut SendElement| {
                        if is_classic_script(el) {
                            if let Some(link) = el
                                .get_attribute("src")
                                .and_then(|src| asset_link(src.trim(), Destination::Script))
                            {
                                note(&scripts, link);
                            }
                        }
                        Ok(())
                    }
                ))
                .append_element_content_handler(element!(
                    "link[rel~=stylesheet][href]",
                    move |el: &mut SendElement| {
                        if let Some(link) = el
                            .get_attribute("href")
                            .and_then(|href| asset_link(href.trim(), Destination::Style))
                        {
                            note(&styles, link);
                        }
                        Ok(())
                    }
                ));
        }
        if let Some(defer) = defer {
            let counter = found.clone();
            settings = settings.append_element_content_handler(element!(
                "head script[src]",
                move |el: &mut SendElement| {
                    let blocking = is_classic_script(el)
                        && !el.has_attribute("defer")
                        && !el.has_attribute("async");
                    let src = el.get_attribute("src").unwrap_or_default();
                    if blocking && defer.applies_to(src.trim()) {
                        el.set_attribute("defer", "")?;
                        counter
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .deferred += 1;
                    }
                    Ok(())
                }
            ));
        }
        let rewriter = HtmlRewriter::new(settings, Sink(output.clone()));
        HtmlPass {
            rewriter: Some(Mutex::new(rewriter)),
            found,
            output,
            learn,
            read: 0,
            failed: false,
        }
    }

    /// Whether the pass rewrites the body (deferral) rather than only reading it.
    pub fn rewrites(&self) -> bool {
        self.output.is_some()
    }

    /// Feeds one chunk; returns what to send downstream in its place.
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        self.read += chunk.len();
        let Some(rewriter) = self.rewriter.as_mut() else {
            return chunk;
        };
        let rewriter = rewriter.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = rewriter.write(&chunk) {
            tracing::warn!("html pass stopped: {e}");
            self.failed = true;
            self.rewriter = None;
            // What lol_html had buffered is lost; the rest passes through as it came.
            return [self.take_output(), chunk].concat().into();
        }
        if self.output.is_none() {
            if self.read >= LEARN_LIMIT {
                // Enough for learning; the end of the page is not needed.
                self.rewriter = None;
            }
            return chunk;
        }
        self.take_output()
    }

    /// Ends the body: the last bytes to send and what the pass found.
    pub fn finish(mut self) -> (Bytes, Summary) {
        if let Some(rewriter) = self.rewriter.take() {
            let rewriter = rewriter
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = rewriter.end() {
                tracing::warn!("html pass stopped at the end: {e}");
                self.failed = true;
            }
        }
        let rest = self.take_output();
        let found = std::mem::take(&mut *self.found.lock().unwrap_or_else(PoisonError::into_inner));
        let summary = Summary {
            assets: (self.learn && !self.failed).then_some(found.assets),
            deferred: found.deferred,
        };
        (rest, summary)
    }

    fn take_output(&self) -> Bytes {
        self.output.as_ref().map_or_else(Bytes::new, |out| {
            std::mem::take(&mut *out.lock().unwrap_or_else(PoisonError::into_inner)).into()
        })
    }
}

fn note(found: &Mutex<Found>, link: Link) {
    let mut found = found.lock().unwrap_or_else(PoisonError::into_inner);
    if !found.assets.contains(&link) && found.assets.len() < super::learned::MAX_PER_ROUTE {
        found.assets.push(link);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hints::link::Rel;

    const PAGE: &str = r#"<!DOCTYPE html><html><head>
<link rel="stylesheet" href="/assets/app-0123456789abcdef.css">
<link rel="icon" href="/favicon-0123456789abcdef.ico">
<script src="/assets/jquery-1111111111111111.js"></script>
<script src="/assets/app-2222222222222222.js" async></script>
<script type="module" src="/assets/mod-3333333333333333.js"></script>
<script src="/assets/plain.js"></script>
<script>var inline = "<script src=/x-4444444444444444.js>";</script>
</head><body><script src="/assets/late-5555555555555555.js"></script></body></html>"#;

    fn run(pass: &mut HtmlPass, page: &str, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in page.as_bytes().chunks(chunk) {
            out.extend_from_slice(&pass.push(Bytes::copy_from_slice(piece)));
        }
        out
    }

    #[test]
    fn learning_finds_classic_fingerprinted_assets_and_leaves_the_body_alone() {
        let mut pass = HtmlPass::new(true, None);
        let out = run(&mut pass, PAGE, 7);
        let (rest, summary) = pass.finish();
        assert!(rest.is_empty());
        assert_eq!(out, PAGE.as_bytes());
        let urls: Vec<(String, Destination)> = summary
            .assets
            .unwrap()
            .into_iter()
            .map(|l| {
                assert_eq!(l.rel, Rel::Preload);
                (l.url, l.destination)
            })
            .collect();
        assert_eq!(
            urls,
            vec![
                (
                    "/assets/app-0123456789abcdef.css".into(),
                    Destination::Style
                ),
                (
                    "/assets/jquery-1111111111111111.js".into(),
                    Destination::Script
                ),
                (
                    "/assets/app-2222222222222222.js".into(),
                    Destination::Script
                ),
                (
                    "/assets/late-5555555555555555.js".into(),
                    Destination::Script
                ),
            ]
        );
    }

    #[test]
    fn deferral_touches_only_blocking_external_head_scripts_allowed() {
        let defer = DeferScripts::new(vec![], vec!["/assets/plain*".to_string()]);
        let mut pass = HtmlPass::new(false, Some(defer));
        let mut out = run(&mut pass, PAGE, 5);
        let (rest, summary) = pass.finish();
        out.extend_from_slice(&rest);
        let html = String::from_utf8(out).unwrap();
        assert_eq!(summary.deferred, 1);
        assert!(
            html.contains(r#"<script src="/assets/jquery-1111111111111111.js" defer=""></script>"#),
            "{html}"
        );
        assert!(html.contains(r#"<script src="/assets/app-2222222222222222.js" async></script>"#));
        assert!(html
            .contains(r#"<script type="module" src="/assets/mod-3333333333333333.js"></script>"#));
        assert!(html.contains(r#"<script src="/assets/plain.js"></script>"#));
        assert!(html
            .contains(r#"<script>var inline = "<script src=/x-4444444444444444.js>";</script>"#));
        assert!(html.contains(r#"<body><script src="/assets/late-5555555555555555.js"></script>"#));
        assert_eq!(html.replace(" defer=\"\"", ""), PAGE);
    }

    #[test]
    fn learning_stops_reading_after_the_limit() {
        let mut pass = HtmlPass::new(true, None);
        let filler = format!("<html><head>{}</head>", " ".repeat(LEARN_LIMIT));
        pass.push(Bytes::from(filler));
        pass.push(Bytes::from_static(
            b"<script src=\"/assets/x-0123456789abcdef.js\"></script>",
        ));
        let (_, summary) = pass.finish();
        assert_eq!(summary.assets, Some(vec![]));
    }
}
