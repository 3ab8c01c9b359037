//! `[log]`: logging.

use serde::Deserialize;

use super::setting_error;
use crate::error::Result;

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or a full
    /// filter in `RUST_LOG` syntax (`info,tidewater_core=debug`). Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

impl LogConfig {
    /// Checks the filter the way [`crate::logging`] will parse it.
    pub(super) fn check(&self) -> Result<()> {
        crate::logging::parse_filter(&self.level)
            .map(drop)
            .map_err(|m| setting_error("log.level".into(), m))
    }
}
