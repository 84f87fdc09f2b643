//! Logging: diagnostics to stderr, and the access log (one line per request) through a
//! non-blocking writer so that a slow disk or pipe never stalls a request.
//!
//! The access log is the `tracing` target [`TARGET`]; its events are formatted on the request
//! thread (a few hundred nanoseconds) and written by a dedicated thread. When that writer falls
//! behind, lines are dropped and counted by `tracing-appender`, never waited for.

use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::prelude::*;

/// The `tracing` target of access log events.
pub const TARGET: &str = "frontdoor::access";

/// Where the access log goes (`[server] access-log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No access log.
    Off,
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Appended to a file.
    File(std::path::PathBuf),
}

/// How access log lines look (`[server] access-log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `key=value` pairs.
    Text,
    /// One JSON object per line.
    Json,
}

/// Keeps the access log writer thread alive; drop it last (it flushes on drop).
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Installs the global subscriber. Diagnostics follow `RUST_LOG` (default `info`).
pub fn init(target: &Target, format: Format) -> std::io::Result<LogGuard> {
    // Every filter here reports its most verbose level, so that callsites above it (h2's and
    // Pingora's trace spans) are disabled once, statically: a filter without that hint made
    // the registry track every span, ~9% of CPU under h2 load.
    let off = format!("{TARGET}=off")
        .parse()
        .map_err(std::io::Error::other)?;
    let env_filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(off);
    // Pingora logs through the `log` crate; capping `log`'s level makes its disabled debug and
    // trace calls free instead of a trip through the tracing bridge (~2% of CPU under load).
    let log_level = match env_filter.max_level_hint() {
        Some(level) if level == tracing::level_filters::LevelFilter::OFF => log::LevelFilter::Off,
        Some(level) if level == tracing::level_filters::LevelFilter::ERROR => {
            log::LevelFilter::Error
        }
        Some(level) if level == tracing::level_filters::LevelFilter::WARN => log::LevelFilter::Warn,
        Some(level) if level == tracing::level_filters::LevelFilter::INFO => log::LevelFilter::Info,
        Some(level) if level == tracing::level_filters::LevelFilter::DEBUG => {
            log::LevelFilter::Debug
        }
        _ => log::LevelFilter::Trace,
    };
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(env_filter);
    let writer: Option<(NonBlocking, WorkerGuard)> = match target {
        Target::Off => None,
        Target::Stdout => Some(tracing_appender::non_blocking(std::io::stdout())),
        Target::Stderr => Some(tracing_appender::non_blocking(std::io::stderr())),
        Target::File(path) => {
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
            let only_access = Targets::new().with_target(TARGET, tracing::Level::INFO);
            let layer = match format {
                Format::Text => tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_target(false)
                    .with_level(false)
                    .with_ansi(false)
                    .with_filter(only_access)
                    .boxed(),
                Format::Json => tracing_subscriber::fmt::layer()
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
    let subscriber = tracing_subscriber::registry()
        .with(diagnostics)
        .with(access);
    // A second init (tests in one process) keeps the first subscriber and its level.
    if tracing::subscriber::set_global_default(subscriber).is_ok()
        && crate::pingora_log::PingoraLog::install().is_ok()
    {
        log::set_max_level(log_level);
    }
    Ok(LogGuard { _writer: guard })
}
