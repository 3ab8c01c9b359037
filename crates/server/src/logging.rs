//! Logging: `tracing` events as text lines on standard error.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;
use crate::error::{Error, Result};

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

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

/// Installs the global subscriber: `RUST_LOG` when set, else `log.level`.
/// Colours only when standard error is a terminal.
pub fn init(config: &LogConfig) -> Result<()> {
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| Error::Logging(e.to_string()))
}
