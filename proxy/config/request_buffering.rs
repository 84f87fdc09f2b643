//! Validation of the request buffering settings of `[proxy]`.

use super::{file, units, Validator};
use crate::buffering::request::Settings;

impl Validator<'_> {
    /// `request-buffer-size`, `request-buffer-memory` (0 is allowed: every body then goes
    /// to disk, as nginx's `client_body_in_file_only`) and `request-buffer-dir`, which must
    /// exist.
    pub(super) fn request_buffering(&mut self, p: &file::ProxySection) -> Option<Settings> {
        let memory_per_body =
            self.check(&p.request_buffer_size, "proxy.request-buffer-size", |s| {
                units::parse_size(s)
            });
        let memory_total = self.check(
            &p.request_buffer_memory,
            "proxy.request-buffer-memory",
            |s| units::parse_size(s),
        );
        let dir = match &p.request_buffer_dir {
            None => Some(Settings::default().dir),
            Some(dir) => {
                let path = self.relative(dir.get_ref());
                let outside = self.outside;
                self.check(dir, "proxy.request-buffer-dir", |_| {
                    outside
                        .directory(&path)
                        .map_err(|_| format!("{} is not an existing directory", path.display()))
                })
            }
        };
        Some(Settings {
            memory_per_body: memory_per_body?,
            memory_total: memory_total?,
            dir: dir?,
        })
    }
}
