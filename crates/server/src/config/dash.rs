//! `[dash]`: DASH and low-latency DASH under `/dash/` on the HTTP port.
//!
//! The rules of the values are `tidewater::dash`'s
//! ([`DashConfig::validate`](tidewater::dash::DashConfig::validate)); this
//! module parses `always_on`'s stream keys, maps each key to its field and
//! each refusal back to its key.

use std::time::Duration;

use serde::Deserialize;
use tidewater::StreamKey;

use super::{FieldKey, field_error, setting_error};
use crate::error::{Error, Result};

/// `[dash]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashSection {
    /// Whether to serve `/dash/` at all (default true).
    pub enabled: bool,
    /// Target segment duration (default 2000; segments start at keyframes).
    pub segment_ms: u64,
    /// Complete segments kept per track (default 6).
    pub window: usize,
    /// Low-latency mode: chunked CMAF and a latency target (default true).
    pub low_latency: bool,
    /// The latency target announced in low-latency mode (default 1500).
    pub latency_target_ms: u64,
    /// A stream's packager stops after this long without a request
    /// (default 30000), unless it is always-on.
    pub idle_timeout_ms: u64,
    /// Streams (`"app/stream"`) packaged from their publish on.
    pub always_on: Vec<String>,
    /// Package every stream from its publish on (default true).
    pub always_on_all: bool,
    /// A player (one per read token, or per address when reads are
    /// anonymous) is dropped from the sessions after this long without a
    /// request, and its token with it (default 30000; at least 4000 and at
    /// least `segment_ms`).
    pub player_idle_timeout_ms: u64,
}

impl Default for DashSection {
    fn default() -> Self {
        let d = tidewater::dash::DashConfig::default();
        DashSection {
            enabled: true,
            segment_ms: d.segment_target.as_millis() as u64,
            window: d.window,
            low_latency: d.low_latency,
            latency_target_ms: d.latency_target.as_millis() as u64,
            idle_timeout_ms: d.idle_timeout.as_millis() as u64,
            always_on: Vec::new(),
            always_on_all: d.always_on_all,
            player_idle_timeout_ms: d.player_idle_timeout.as_millis() as u64,
        }
    }
}

impl DashSection {
    /// The DASH routes' configuration (`None` when disabled), checked by
    /// [`DashConfig::validate`](tidewater::dash::DashConfig::validate); an
    /// error names the key at fault.
    pub fn dash_config(&self) -> Result<Option<tidewater::dash::DashConfig>> {
        if !self.enabled {
            return Ok(None);
        }
        let mut always_on = Vec::with_capacity(self.always_on.len());
        for (i, key) in self.always_on.iter().enumerate() {
            let key = StreamKey::parse(key).map_err(|e| {
                setting_error(
                    format!("dash.always_on[{i}]"),
                    format!("invalid stream key: {e}"),
                )
            })?;
            always_on.push(key);
        }
        let config = tidewater::dash::DashConfig {
            segment_target: Duration::from_millis(self.segment_ms),
            window: self.window,
            low_latency: self.low_latency,
            latency_target: Duration::from_millis(self.latency_target_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            player_idle_timeout: Duration::from_millis(self.player_idle_timeout_ms),
            always_on,
            always_on_all: self.always_on_all,
            ..tidewater::dash::DashConfig::default()
        };
        config.validate().map_err(|e| self.refused(&e))?;
        Ok(Some(config))
    }

    /// Checks the section (nothing when disabled).
    pub(super) fn check(&self) -> Result<()> {
        self.dash_config().map(drop)
    }

    /// The crate's refusal, at the key of this section that sets the field.
    fn refused(&self, e: &tidewater::dash::ConfigError) -> Error {
        let key = match e.field.as_str() {
            "segment_target" => FieldKey::shown("segment_ms", self.segment_ms),
            "window" => FieldKey::shown("window", self.window),
            "latency_target" => FieldKey::shown("latency_target_ms", self.latency_target_ms),
            "idle_timeout" => FieldKey::shown("idle_timeout_ms", self.idle_timeout_ms),
            "player_idle_timeout" => {
                FieldKey::shown("player_idle_timeout_ms", self.player_idle_timeout_ms)
            }
            _ => None,
        };
        field_error("dash", key, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn low_latency_and_always_on_by_default_and_keys_parsed() {
        let d = DashSection::default().dash_config().expect("valid");
        let d = d.expect("enabled");
        assert!(d.low_latency && d.always_on_all && d.always_on.is_empty());
        let config = Config::from_toml_str(
            "[dash]\nlow_latency = false\nalways_on_all = false\nalways_on = [\"live/cam1\"]\n",
        )
        .expect("valid");
        let c = config.dash.dash_config().expect("valid").expect("enabled");
        assert!(!c.low_latency && !c.always_on_all);
        let cam1 = StreamKey::parse("live/cam1").expect("key");
        assert!(c.is_always_on(&cam1));
        assert!(!c.is_always_on(&StreamKey::parse("live/cam2").expect("key")));
    }

    #[test]
    fn a_bad_always_on_key_is_reported_at_its_index() {
        let section = DashSection {
            always_on: vec!["live/ok".into(), "nokey".into()],
            ..DashSection::default()
        };
        let text = section.dash_config().expect_err("refused").to_string();
        assert!(text.contains("dash.always_on[1]"), "{text}");
        assert!(text.contains("invalid stream key"), "{text}");
    }
}
