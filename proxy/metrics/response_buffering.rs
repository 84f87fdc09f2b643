//! Response buffering families: what is held of the app's answers for slower clients.

use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

use super::Metrics;

/// The families, registered once.
pub(super) struct ResponseBufferingFamilies {
    /// The two children of `response_buffer_bytes`, resolved once (they move per chunk).
    memory: IntGauge,
    file: IntGauge,
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
        Ok(ResponseBufferingFamilies {
            memory: bytes.with_label_values(&["memory"]),
            file: bytes.with_label_values(&["file"]),
            spilled,
            full,
        })
    }
}

impl Metrics {
    /// `delta` bytes more (or fewer) of answers held in memory.
    pub fn response_buffer_memory(&self, delta: i64) {
        self.response_buffering.memory.add(delta);
    }

    /// `delta` bytes more (or fewer) of answers held in temporary files.
    pub fn response_buffer_file(&self, delta: i64) {
        self.response_buffering.file.add(delta);
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
