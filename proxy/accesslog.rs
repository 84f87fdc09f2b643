//! Logging: diagnostics to stderr, and the access log (one line per request) through a
//! non-blocking writer so that a slow disk or pipe never stalls a request.
//!
//! The access log is the `tracing` target [`TARGET`]; its events are formatted on the request
//! thread (a few hundred nanoseconds) and written by a dedicated thread. When that writer falls
//! behind, lines are dropped and counted by `tracing-appender`, never waited for.

use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::prelude::*;

use crate::config::{AccessLogFormat, AccessLogTarget};

/// The `tracing` target of access log events.
pub const TARGET: &str = "frontdoor::access";

/// Keeps the access log writer thread alive; drop it last (it flushes on drop).
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Installs the global subscriber. Diagnostics follow `RUST_LOG` (default `info`).
pub fn init(target: &AccessLogTarget, format: AccessLogFormat) -> std::io::Result<LogGuard> {
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_filter(filter_fn(|meta| meta.target() != TARGET));
    let writer: Option<(NonBlocking, WorkerGuard)> = match target {
        AccessLogTarget::Off => None,
        AccessLogTarget::Stdout => Some(tracing_appender::non_blocking(std::io::stdout())),
        AccessLogTarget::Stderr => Some(tracing_appender::non_blocking(std::io::stderr())),
        AccessLogTarget::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            Some(tracing_appender::non_blocking(file))
        }
    };
    let (access, guard) = match writer {
        None => (None, None),
        Some((writer, guard)) => {
            let only_access = filter_fn(|meta| meta.target() == TARGET);
            let layer = match format {
                AccessLogFormat::Text => tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_target(false)
                    .with_level(false)
                    .with_ansi(false)
                    .with_filter(only_access)
                    .boxed(),
                AccessLogFormat::Json => tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_target(false)
                    .with_level(false)
                    .with_writer(writer)
                    .with_filter(only_access)
                    .boxed(),
            };
            (Some(layer), Some(guard))
        }
    };
    // A second init (tests in one process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(diagnostics)
        .with(access)
        .try_init();
    Ok(LogGuard { _writer: guard })
}
