//! `[hls]`: HLS under `/hls/` and LL-HLS under `/llhls/` on the HTTP port.
//!
//! The rules of the values are `tidewater::hls`'s
//! ([`HlsConfig::validate`](tidewater::hls::HlsConfig::validate)); this
//! module parses `always_on`'s stream keys, maps each key to its field and
//! each refusal back to its key.

use std::time::Duration;

use serde::Deserialize;
use tidewater::StreamKey;

use super::{FieldKey, field_error, setting_error};
use crate::error::{Error, Result};

/// `[hls]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsSection {
    /// Whether to serve `/hls/` and `/llhls/` at all (default true).
    pub enabled: bool,
    /// Segment target (default 2000): segments end on the first keyframe after it.
    pub segment_ms: u64,
    /// Complete segments listed in a playlist (default 6).
    pub window: usize,
    /// LL-HLS part target (default 200).
    pub part_ms: u64,
    /// Longest first segment without a keyframe (default 10000).
    pub max_segment_ms: u64,
    /// A stream's packager stops after this long without a request (default 30000).
    pub idle_timeout_ms: u64,
    /// A player that sent no request for this long is dropped from the
    /// sessions (default 30000; at least twice `max_segment_ms`).
    pub player_idle_timeout_ms: u64,
    /// Streams (`"app/stream"`) packaged from their publish on.
    pub always_on: Vec<String>,
    /// Package every stream from its publish on (default false).
    pub always_on_all: bool,
}

impl Default for HlsSection {
    fn default() -> Self {
        let d = tidewater::hls::HlsConfig::default();
        HlsSection {
            enabled: true,
            segment_ms: d.segment_target.as_millis() as u64,
            window: d.window,
            part_ms: d.part_target.as_millis() as u64,
            max_segment_ms: d.max_segment.as_millis() as u64,
            idle_timeout_ms: d.idle_timeout.as_millis() as u64,
            player_idle_timeout_ms: d.player_idle_timeout.as_millis() as u64,
            always_on: Vec::new(),
            always_on_all: d.always_on_all,
        }
    }
}

impl HlsSection {
    /// The HLS routes' configuration (`None` when disabled), checked by
    /// [`HlsConfig::validate`](tidewater::hls::HlsConfig::validate); an
    /// error names the key at fault.
    pub fn hls_config(&self) -> Result<Option<tidewater::hls::HlsConfig>> {
        if !self.enabled {
            return Ok(None);
        }
        let mut always_on = Vec::with_capacity(self.always_on.len());
        for (i, key) in self.always_on.iter().enumerate() {
            let key = StreamKey::parse(key).map_err(|e| {
                setting_error(
                    format!("hls.always_on[{i}]"),
                    format!("invalid stream key: {e}"),
                )
            })?;
            always_on.push(key);
        }
        let config = tidewater::hls::HlsConfig {
            segment_target: Duration::from_millis(self.segment_ms),
            window: self.window,
            part_target: Duration::from_millis(self.part_ms),
            max_segment: Duration::from_millis(self.max_segment_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            player_idle_timeout: Duration::from_millis(self.player_idle_timeout_ms),
            always_on,
            always_on_all: self.always_on_all,
            ..tidewater::hls::HlsConfig::default()
        };
        config.validate().map_err(|e| self.refused(&e))?;
        Ok(Some(config))
    }

    /// Checks the section (nothing when disabled).
    pub(super) fn check(&self) -> Result<()> {
        self.hls_config().map(drop)
    }

    /// The crate's refusal, at the key of this section that sets the field.
    fn refused(&self, e: &tidewater::hls::ConfigError) -> Error {
        let key = match e.field.as_str() {
            "segment_target" => FieldKey::shown("segment_ms", self.segment_ms),
            "window" => FieldKey::shown("window", self.window),
            "part_target" => FieldKey::shown("part_ms", self.part_ms),
            "max_segment" => FieldKey::shown("max_segment_ms", self.max_segment_ms),
            "idle_timeout" => FieldKey::shown("idle_timeout_ms", self.idle_timeout_ms),
            "player_idle_timeout" => {
                FieldKey::shown("player_idle_timeout_ms", self.player_idle_timeout_ms)
            }
            _ => None,
        };
        field_error("hls", key, e)
    }
}
