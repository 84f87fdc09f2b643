//! Request buffering families: memory and disk held by request bodies received before they
//! go to the app, and bodies buffered by where they were kept.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use super::Metrics;

/// The families, registered once.
pub(super) struct RequestBufferingFamilies {
    memory: IntGauge,
    disk: IntGauge,
    bodies: IntCounterVec,
}

impl RequestBufferingFamilies {
    pub(super) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let memory = IntGauge::new(
            "request_buffer_memory_bytes",
            "Bytes of request bodies held in memory while they are received or wait to go to the app (bounded by request-buffer-memory).",
        )?;
        let disk = IntGauge::new(
            "request_buffer_disk_bytes",
            "Bytes of request bodies held in temporary files.",
        )?;
        let bodies = IntCounterVec::new(
            Opts::new(
                "request_bodies_buffered_total",
                "Request bodies received in full before going to the app, by storage (memory, disk).",
            ),
            &["storage"],
        )?;
        registry.register(Box::new(memory.clone()))?;
        registry.register(Box::new(disk.clone()))?;
        registry.register(Box::new(bodies.clone()))?;
        Ok(RequestBufferingFamilies {
            memory,
            disk,
            bodies,
        })
    }
}

impl Metrics {
    /// Request bodies took (`bytes` > 0) or gave back memory.
    pub fn request_buffer_memory(&self, bytes: i64) {
        self.request_buffering.memory.add(bytes);
    }

    /// Request bodies wrote (`bytes` > 0) or closed temporary files.
    pub fn request_buffer_disk(&self, bytes: i64) {
        self.request_buffering.disk.add(bytes);
    }

    /// A request body was received in full, kept in `storage` (`memory` or `disk`).
    pub fn request_body_buffered(&self, storage: &'static str) {
        self.request_buffering
            .bodies
            .with_label_values(&[storage])
            .inc();
    }
}
