//! Cache families: the asset cache, on-the-fly compression and the edge cache.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::Metrics;

/// The families, registered once.
pub(super) struct CachesFamilies {
    asset_requests: IntCounterVec,
    asset_bytes: IntGauge,
    asset_evictions: IntCounter,
    asset_compressions: IntCounterVec,
    asset_bytes_saved: IntCounterVec,
    asset_warmed: IntCounterVec,
    compressed_responses: IntCounterVec,
    compression_bytes_in: IntCounterVec,
    compression_bytes_out: IntCounterVec,
    edge_cache_requests: IntCounterVec,
    edge_cache_stores: IntCounterVec,
    edge_cache_uncacheable: IntCounterVec,
    edge_cache_refreshes: IntCounterVec,
    edge_cache_bytes: IntGauge,
    edge_cache_evictions: IntCounter,
    edge_cache_bytes_saved: IntCounterVec,
}

impl CachesFamilies {
    pub(super) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let asset_requests = IntCounterVec::new(
            Opts::new(
                "asset_requests_total",
                "Asset requests by route and result (hit, miss, bypass).",
            ),
            &["route", "result"],
        )?;
        let asset_bytes = IntGauge::new(
            "asset_cache_bytes",
            "Bytes held by the asset cache, all encodings.",
        )?;
        let asset_evictions = IntCounter::new(
            "asset_evictions_total",
            "Assets evicted to stay within capacity.",
        )?;
        let asset_compressions = IntCounterVec::new(
            Opts::new(
                "asset_compressions_total",
                "Asset variants compressed and kept, by encoding.",
            ),
            &["encoding"],
        )?;
        let asset_bytes_saved = IntCounterVec::new(
            Opts::new(
                "asset_compression_saved_bytes_total",
                "Bytes a compressed variant saves over identity, per asset compressed, by encoding.",
            ),
            &["encoding"],
        )?;
        let asset_warmed = IntCounterVec::new(
            Opts::new(
                "asset_warmed_total",
                "Assets warmed before traffic asked, by route and result (filled, cached, bypass).",
            ),
            &["route", "result"],
        )?;
        let compressed_responses = IntCounterVec::new(
            Opts::new(
                "compressed_responses_total",
                "Dynamic responses compressed on the fly, by route and encoding.",
            ),
            &["route", "encoding"],
        )?;
        let compression_bytes_in = IntCounterVec::new(
            Opts::new(
                "compression_in_bytes_total",
                "Bytes of dynamic responses before compression, by route and encoding.",
            ),
            &["route", "encoding"],
        )?;
        let compression_bytes_out = IntCounterVec::new(
            Opts::new(
                "compression_out_bytes_total",
                "Bytes of dynamic responses after compression, by route and encoding.",
            ),
            &["route", "encoding"],
        )?;
        let edge_cache_requests = IntCounterVec::new(
            Opts::new(
                "edge_cache_requests_total",
                "Requests on edge-cache routes, by route and result (hit, stale, miss, bypass).",
            ),
            &["route", "result"],
        )?;
        let edge_cache_stores = IntCounterVec::new(
            Opts::new(
                "edge_cache_stores_total",
                "Responses stored in the edge cache (fills and refreshes), by route.",
            ),
            &["route"],
        )?;
        let edge_cache_uncacheable = IntCounterVec::new(
            Opts::new(
                "edge_cache_uncacheable_total",
                "App responses on edge-cache routes not stored, by route and reason.",
            ),
            &["route", "reason"],
        )?;
        let edge_cache_refreshes = IntCounterVec::new(
            Opts::new(
                "edge_cache_refreshes_total",
                "Refreshes of stale entries, by route and result (stored, uncacheable, error).",
            ),
            &["route", "result"],
        )?;
        let edge_cache_bytes = IntGauge::new(
            "edge_cache_bytes",
            "Bytes held by the edge cache, all encodings.",
        )?;
        let edge_cache_evictions = IntCounter::new(
            "edge_cache_evictions_total",
            "Edge-cache entries evicted to stay within capacity.",
        )?;
        let edge_cache_bytes_saved = IntCounterVec::new(
            Opts::new(
                "edge_cache_compression_saved_bytes_total",
                "Bytes a compressed variant saves over identity, per entry stored, by encoding.",
            ),
            &["encoding"],
        )?;
        registry.register(Box::new(asset_requests.clone()))?;
        registry.register(Box::new(asset_bytes.clone()))?;
        registry.register(Box::new(asset_evictions.clone()))?;
        registry.register(Box::new(asset_compressions.clone()))?;
        registry.register(Box::new(asset_bytes_saved.clone()))?;
        registry.register(Box::new(asset_warmed.clone()))?;
        registry.register(Box::new(compressed_responses.clone()))?;
        registry.register(Box::new(compression_bytes_in.clone()))?;
        registry.register(Box::new(compression_bytes_out.clone()))?;
        registry.register(Box::new(edge_cache_requests.clone()))?;
        registry.register(Box::new(edge_cache_stores.clone()))?;
        registry.register(Box::new(edge_cache_uncacheable.clone()))?;
        registry.register(Box::new(edge_cache_refreshes.clone()))?;
        registry.register(Box::new(edge_cache_bytes.clone()))?;
        registry.register(Box::new(edge_cache_evictions.clone()))?;
        registry.register(Box::new(edge_cache_bytes_saved.clone()))?;
        Ok(CachesFamilies {
            asset_requests,
            asset_bytes,
            asset_evictions,
            asset_compressions,
            asset_bytes_saved,
            asset_warmed,
            compressed_responses,
            compression_bytes_in,
            compression_bytes_out,
            edge_cache_requests,
            edge_cache_stores,
            edge_cache_uncacheable,
            edge_cache_refreshes,
            edge_cache_bytes,
            edge_cache_evictions,
            edge_cache_bytes_saved,
        })
    }
}

impl Metrics {
    /// An asset request of `route` was a `hit`, `miss` or `bypass` (proxied).
    pub fn asset_request(&self, route: &str, result: &'static str) {
        self.caches
            .asset_requests
            .with_label_values(&[route, result])
            .inc();
    }

    /// The asset cache now holds `bytes`.
    pub fn asset_bytes(&self, bytes: u64) {
        self.caches
            .asset_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// An asset was evicted for capacity.
    pub fn asset_evicted(&self) {
        self.caches.asset_evictions.inc();
    }

    /// A variant in `encoding` was kept, `saved` bytes smaller than identity.
    pub fn asset_compressed(&self, encoding: &str, saved: usize) {
        self.caches
            .asset_compressions
            .with_label_values(&[encoding])
            .inc();
        self.caches
            .asset_bytes_saved
            .with_label_values(&[encoding])
            .inc_by(saved as u64);
    }

    /// An asset of `route` was warmed: `filled`, already `cached`, or `bypass` (not held).
    pub fn asset_warmed(&self, route: &str, result: &'static str) {
        self.caches
            .asset_warmed
            .with_label_values(&[route, result])
            .inc();
    }

    /// A dynamic response of `route` was compressed with `encoding` (its token) from
    /// `bytes_in` to `bytes_out`.
    pub fn response_compressed(&self, route: &str, encoding: &str, bytes_in: u64, bytes_out: u64) {
        let labels = [route, encoding];
        self.caches
            .compressed_responses
            .with_label_values(&labels)
            .inc();
        self.caches
            .compression_bytes_in
            .with_label_values(&labels)
            .inc_by(bytes_in);
        self.caches
            .compression_bytes_out
            .with_label_values(&labels)
            .inc_by(bytes_out);
    }

    /// A request of edge-cache `route` was a `hit`, `stale`, `miss` or `bypass`.
    pub fn edge_cache_request(&self, route: &str, result: &'static str) {
        self.caches
            .edge_cache_requests
            .with_label_values(&[route, result])
            .inc();
    }

    /// A response of `route` was stored.
    pub fn edge_cache_stored(&self, route: &str) {
        self.caches
            .edge_cache_stores
            .with_label_values(&[route])
            .inc();
    }

    /// A response of `route` was not stored, for `reason` (a fixed word, see
    /// `edge_cache::Uncacheable`).
    pub fn edge_cache_uncacheable(&self, route: &str, reason: &str) {
        self.caches
            .edge_cache_uncacheable
            .with_label_values(&[route, reason])
            .inc();
    }

    /// A refresh of a stale entry of `route` ended with `result`.
    pub fn edge_cache_refreshed(&self, route: &str, result: &'static str) {
        self.caches
            .edge_cache_refreshes
            .with_label_values(&[route, result])
            .inc();
    }

    /// The edge cache now holds `bytes`.
    pub fn edge_cache_bytes(&self, bytes: u64) {
        self.caches
            .edge_cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// An edge-cache entry was evicted for capacity.
    pub fn edge_cache_evicted(&self) {
        self.caches.edge_cache_evictions.inc();
    }

    /// A stored response's `encoding` variant was kept, `saved` bytes smaller than identity.
    pub fn edge_cache_compressed(&self, encoding: &str, saved: usize) {
        self.caches
            .edge_cache_bytes_saved
            .with_label_values(&[encoding])
            .inc_by(saved as u64);
    }
}
