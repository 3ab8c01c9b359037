//! `[server]`: the process itself (today: how a graceful stop drains).

use std::time::Duration;

use serde::Deserialize;

use super::setting_error;
use crate::error::Result;

/// The default `drain_ms`: long enough for an HLS or DASH player polling
/// every segment target (2 s by default) to fetch the final playlist or MPD
/// and the last segments after it, with a margin.
pub const DEFAULT_DRAIN_MS: u64 = 5_000;

/// The longest `drain_ms` accepted (a stop that waits longer than this is
/// a hang to an operator or a service manager).
pub const MAX_DRAIN_MS: u64 = 300_000;

/// `[server]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// On SIGTERM or SIGINT, once every publish has ended and its outputs
    /// are final, HTTP keeps serving this long (or until no reader is left)
    /// so players fetch the end (default 5000; 0 to 300000).
    pub drain_ms: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            drain_ms: DEFAULT_DRAIN_MS,
        }
    }
}

impl ServerSection {
    /// How long a graceful stop keeps HTTP serving.
    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_ms)
    }

    /// Checks `drain_ms`.
    pub(super) fn check(&self) -> Result<()> {
        if self.drain_ms > MAX_DRAIN_MS {
            return Err(setting_error(
                "server.drain_ms".into(),
                format!(
                    "invalid value {}: must be at most {MAX_DRAIN_MS}",
                    self.drain_ms
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn drain_ms_defaults_to_a_few_seconds_and_is_bounded() {
        let config = Config::from_toml_str("").expect("defaults");
        assert_eq!(config.server.drain_ms, super::DEFAULT_DRAIN_MS);
        let config = Config::from_toml_str("[server]\ndrain_ms = 0").expect("no drain");
        assert!(config.server.drain().is_zero());
        let e = Config::from_toml_str("[server]\ndrain_ms = 300001")
            .expect_err("too long")
            .to_string();
        assert!(
            e.contains("server.drain_ms") && e.contains("at most 300000"),
            "{e}"
        );
        let e = Config::from_toml_str("[server]\ndrian_ms = 1")
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("server.drian_ms"), "{e}");
    }

    #[test]
    fn the_example_file_lists_the_default() {
        let example = Config::from_toml_str(include_str!("../../tidewater.toml")).expect("parses");
        assert_eq!(example.server, super::ServerSection::default());
    }
}
