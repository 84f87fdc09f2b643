//! Validation of `[cache]`: the sizes of the asset and edge caches.

use super::{file, units, Validator};

impl Validator<'_> {
    pub(super) fn cache(
        &mut self,
        c: &file::CacheSection,
    ) -> Option<(crate::assets::Settings, crate::edge_cache::Settings)> {
        let assets_capacity = self.check(&c.assets_capacity, "cache.assets-capacity", |s| {
            units::parse_size(s)
        });
        let compression_threads =
            self.positive(&c.compression_threads, "cache.compression-threads");
        let responses_capacity =
            self.check(&c.responses_capacity, "cache.responses-capacity", |s| {
                units::parse_size(s)
            });
        let compression_threads = compression_threads?;
        Some((
            crate::assets::Settings {
                capacity: assets_capacity?,
                compression_threads,
            },
            crate::edge_cache::Settings {
                capacity: responses_capacity?,
                compression_threads,
            },
        ))
    }
}
