//! Pingora's own log lines (it logs through the `log` crate) into `tracing`, with client
//! hang-ups taken down from `ERROR` to `DEBUG`.
//!
//! A browser opens a spare connection it may never use and closes it, often with a reset:
//! Pingora logs `ERROR H2 handshake error … Connection reset by peer` about once per visit,
//! and a TCP check or port scan that closes before TLS ends logs `Downstream handshake error`.
//! Those are the client's doing, not the server's, and nginx logs them at `info`, below its
//! default `error` level. frontdoor's default level is `info`, so they go to `DEBUG` under the
//! target [`TARGET`] (`RUST_LOG=info,frontdoor::client_reset=debug` shows them). A handshake
//! the client refused for a reason (a TLS alert: an unknown CA, a bad certificate) and every
//! other error keep their level: those can be the operator's to fix.

use log::{Level, Log, Metadata, Record};

/// The `tracing` target client hang-ups are logged under, at `DEBUG`.
pub const TARGET: &str = "frontdoor::client_reset";

/// Messages of Pingora's that report a connection that ended during its handshake.
const HANDSHAKE_MESSAGES: [&str; 2] = ["H2 handshake error", "Downstream handshake error"];

/// How a connection the client closed or reset reads in those messages (std's `io::Error`
/// texts, h2's and tokio-rustls's end-of-stream texts).
const HANG_UPS: [&str; 6] = [
    "Connection reset by peer",
    "Broken pipe",
    "connection closed before reading preface",
    "tls handshake eof",
    "unexpected end of file",
    "Connection aborted",
];

/// Whether a record of `level` from `target` saying `message` reports a client hang-up.
pub fn is_client_hang_up(level: Level, target: &str, message: &str) -> bool {
    level <= Level::Warn
        && target.starts_with("pingora")
        && HANDSHAKE_MESSAGES.iter().any(|m| message.starts_with(m))
        && HANG_UPS.iter().any(|h| message.contains(h))
}

/// The `log` logger: forwards to `tracing` (as `tracing-log`'s `LogTracer` does), client
/// hang-ups at `DEBUG` under [`TARGET`].
pub struct PingoraLog {
    inner: tracing_log::LogTracer,
}

impl PingoraLog {
    /// Installs it as the `log` crate's logger; `Err` if one is installed already.
    pub fn install() -> Result<(), log::SetLoggerError> {
        log::set_boxed_logger(Box::new(PingoraLog {
            inner: tracing_log::LogTracer::new(),
        }))
    }
}

impl Log for PingoraLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // A hang-up is reported at ERROR; whether it shows is decided once it is recognised.
        metadata.level() <= Level::Warn || self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if record.level() <= Level::Warn {
            let message = record.args().to_string();
            if is_client_hang_up(record.level(), record.target(), &message) {
                self.inner.log(
                    &Record::builder()
                        .args(format_args!("{message}"))
                        .level(Level::Debug)
                        .target(TARGET)
                        .module_path(record.module_path())
                        .file(record.file())
                        .line(record.line())
                        .build(),
                );
                return;
            }
        }
        self.inner.log(record);
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPS: &str = "pingora_core::apps";
    const LISTENING: &str = "pingora_core::services::listening";

    #[test]
    fn resets_and_early_closes_in_handshakes_are_hang_ups() {
        for (target, message) in [
            (APPS, "H2 handshake error  HandshakeError context: while h2 handshaking with client cause: Connection reset by peer (os error 104)"),
            (APPS, "H2 handshake error  HandshakeError context: while h2 handshaking with client cause: connection closed before reading preface"),
            (LISTENING, "Downstream handshake error from 127.0.0.1:5555:  TLSHandshakeFailure context: TLS accept() failed: tls handshake eof"),
            (LISTENING, "Downstream handshake error:  TLSHandshakeFailure context: TLS accept() failed: Broken pipe (os error 32)"),
        ] {
            assert!(is_client_hang_up(Level::Error, target, message), "{message}");
        }
    }

    #[test]
    fn other_errors_keep_their_level() {
        for (target, message) in [
            // The client refused our certificate: maybe the operator's to fix.
            (LISTENING, "Downstream handshake error from 127.0.0.1:5555:  TLSHandshakeFailure context: TLS accept() failed: received fatal alert: UnknownCA"),
            // A reset elsewhere than in a handshake.
            (APPS, "Fail to proxy: Connection reset by peer (os error 104)"),
            // Not Pingora's.
            ("frontdoor::jobs", "H2 handshake error: Connection reset by peer"),
        ] {
            assert!(!is_client_hang_up(Level::Error, target, message), "{message}");
        }
        let reset = "H2 handshake error cause: Connection reset by peer";
        assert!(
            !is_client_hang_up(Level::Info, APPS, reset),
            "already quiet"
        );
    }
}
