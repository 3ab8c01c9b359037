//! Logging: `tracing` events as text lines on standard error, through a
//! writer that can never stop or slow the server.
//!
//! Standard error is whatever the operator attached: a terminal, a file, a
//! pipe into `head` that closed after a few lines, a journal that stopped
//! reading. Events are therefore formatted on the calling task and handed to
//! one writer thread over a bounded queue ([`QUEUE_LINES`] lines): when the
//! queue is full the line is dropped and counted ([`dropped_lines`]), never
//! waited for; a failed write (a closed pipe) is ignored. Nothing in this
//! path panics: the formatter's own "unable to write" report, which would
//! `eprintln!` into the same closed pipe and panic, is turned off.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;
use crate::error::{Error, Result};

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Lines waiting for the writer thread before new ones are dropped: a few
/// seconds of a busy server's log (at most a few MB), enough to ride out a
/// slow terminal without holding memory for a reader that never comes back.
pub const QUEUE_LINES: usize = 8192;

/// The counter of the installed writer (one per process, as the subscriber).
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Parses a `log.level` value: a bare level, or a filter in `RUST_LOG`
/// syntax. A lone word that is not a level is refused (it would otherwise
/// silently mean "everything from a module of that name").
pub fn parse_filter(level: &str) -> Result<EnvFilter, String> {
    let level = level.trim();
    if !level.contains(['=', ',']) && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
        return Err(format!(
            "{level:?} is not a level: expected one of {}, or a filter such as \"info,tidewater_core=debug\"",
            LEVELS.join(", ")
        ));
    }
    EnvFilter::builder()
        .parse(level)
        .map_err(|e| format!("invalid filter {level:?}: {e}"))
}

/// Keeps the writer thread running; dropping it writes out the queued lines
/// (waiting at most about a second for a stuck standard error).
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _worker: WorkerGuard,
}

/// Installs the global subscriber: `RUST_LOG` when set, else `log.level`.
/// Colours only when standard error is a terminal.
pub fn init(config: &LogConfig) -> Result<LogGuard> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.trim().is_empty() => EnvFilter::builder()
            .parse(&filter)
            .map_err(|e| Error::Logging(format!("RUST_LOG={filter:?}: {e}")))?,
        _ => parse_filter(&config.level).map_err(|message| Error::Setting {
            key: "log.level".into(),
            message,
            origin: None,
        })?,
    };
    let ansi = std::io::stderr().is_terminal();
    let (writer, worker) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("tidewater-log")
        .finish(std::io::stderr());
    let _ = DROPPED.set(writer.error_counter());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .log_internal_errors(false)
        .try_init()
        .map_err(|e| Error::Logging(e.to_string()))?;
    Ok(LogGuard { _worker: worker })
}

/// Log lines dropped so far because standard error did not keep up (0
/// before [`init`]).
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
}

/// Prints one line on standard error directly (before logging is set up, or
/// for the final error): ignores a closed or failing standard error, where
/// `eprintln!` would panic.
pub fn print_error(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// An error and its causes on one line, `outer: cause: root`, leaving out a
/// cause whose text the line already holds (errors that repeat their
/// source's message, as `rtmp: cannot listen on …: Address already in use`
/// over its `Address already in use`, would otherwise print it twice).
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("rtmp: cannot listen on 127.0.0.1:1935: {0}")]
    struct Bind(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("starting the workers")]
    struct Start(#[source] Bind);

    #[test]
    fn a_cause_already_in_the_line_is_printed_once() {
        let os = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let text = one_line(&Start(Bind(os)));
        assert_eq!(
            text,
            format!(
                "starting the workers: rtmp: cannot listen on 127.0.0.1:1935: {}",
                std::io::Error::from(std::io::ErrorKind::AddrInUse)
            )
        );
    }
}
