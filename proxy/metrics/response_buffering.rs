//! Response buffering families: what is held of the app's answers for slower clients.

use prometheus::{IntCounter, IntGaugeVec, Opts, Registry};

use super::Metrics;

/// The families, registered once.
pub(super) struct ResponseBufferingFamilies {
    bytes: IntGaugeVec,
    spilled: IntCounter,
    full: IntCounter,
}

impl ResponseBufferingFamilies {
    pub(super) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let bytes = IntGaugeVec::new(
            Opts::new(
                "response_buffer_bytes",
                "Bytes of the app's answers read but not yet taken by the client, by store \
                 (memory, bounded by [proxy] response-buffer-memory; file, temporary files).",
            ),
            &["store"],
        )?;
        let spilled = IntCounter::new(
            "response_buffer_spilled_total",
            "Answers that outgrew their memory and continued in a temporary file.",
        )?;
        let full = IntCounter::new(
            "response_buffer_full_total",
            "Times an answer filled its buffer (response-buffer-file) and the app's answer was \
             then read at the client's pace.",
        )?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(spilled.clone()))?;
        registry.register(Box::new(full.clone()))?;
        // Both stores show from the start, at zero.
        bytes.with_label_values(&["memory"]);
        bytes.with_label_values(&["file"]);
        Ok(ResponseBufferingFamilies {
            bytes,
            spilled,
            full,
        })
    }
}

impl Metrics {
    /// `delta` bytes more (or fewer) held in `store` (`memory` or `file`).
    pub fn response_buffer_bytes(&self, store: &'static str, delta: i64) {
        self.response_buffering
            .bytes
            .with_label_values(&[store])
            .add(delta);
    }

    /// An answer continued in a temporary file.
    pub fn response_buffer_spilled(&self) {
        self.response_buffering.spilled.inc();
    }

    /// An answer filled its buffer: the app is now read at the client's pace.
    pub fn response_buffer_full(&self) {
        self.response_buffering.full.inc();
    }
}
