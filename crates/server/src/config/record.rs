//! `[record]`: recording streams to fMP4 files and playing them back under
//! `/playback/` on the HTTP port.
//!
//! ```toml
//! [record]
//! paths = ["live/*"]          # globs over app/stream; nothing is recorded without one
//! dir = "recordings"          # {dir}/{app}/{stream}/{start}.mp4
//! segment_s = 60              # a new file at the first keyframe after this
//! part_ms = 1000              # a fragment written and flushed at least this often
//! retention = "7d"            # delete segments older than this ("" keeps them)
//! max_bytes = 0               # per-stream size cap (0: none)
//! sweep_s = 60                # how often retention runs
//! format = "fmp4"
//!
//! [record.overrides."live/cam1"]   # recorded too; its own retention
//! retention = "30d"
//! max_bytes = 10000000000
//! ```
//!
//! The rules of the values are `tidewater::record`'s
//! ([`RecordConfig::validate`](tidewater::record::RecordConfig::validate)).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tidewater::record::{PathRule, RecordConfig, parse_duration};

use super::{FieldKey, field_error, setting_error};
use crate::error::Result;

/// `[record]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordSection {
    /// Streams recorded (globs over `app/stream`, `*` and `?`); none by default.
    pub paths: Vec<String>,
    /// Where (default `recordings`, relative to the working directory).
    pub dir: PathBuf,
    /// Segment length in seconds (default 60).
    pub segment_s: u64,
    /// Part (fragment) length in milliseconds (default 1000).
    pub part_ms: u64,
    /// Retention (`"7d"`, `"36h"`; empty: keep everything).
    pub retention: String,
    /// Per-stream size cap in bytes (0: none).
    pub max_bytes: u64,
    /// How often retention is enforced, in seconds (default 60).
    pub sweep_s: u64,
    /// The file format: `fmp4` (the only one so far).
    pub format: String,
    /// Per-glob settings; each glob is recorded, and its settings win over
    /// the section's.
    pub overrides: BTreeMap<String, RecordOverride>,
}

/// `[record.overrides."GLOB"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordOverride {
    /// Retention of the matching streams.
    pub retention: Option<String>,
    /// Size cap of each matching stream.
    pub max_bytes: Option<u64>,
}

impl Default for RecordSection {
    fn default() -> Self {
        let d = RecordConfig::default();
        RecordSection {
            paths: Vec::new(),
            dir: d.dir,
            segment_s: d.segment.as_secs(),
            part_ms: d.part.as_millis() as u64,
            retention: String::new(),
            max_bytes: 0,
            sweep_s: d.sweep_interval.as_secs(),
            format: "fmp4".into(),
            overrides: BTreeMap::new(),
        }
    }
}

fn retention(key: &str, text: &str) -> Result<Option<Duration>> {
    if text.is_empty() {
        return Ok(None);
    }
    parse_duration(text).map(Some).ok_or_else(|| {
        setting_error(
            key.to_string(),
            format!("invalid value {text:?}: a duration like \"7d\", \"36h\" or \"90m\""),
        )
    })
}

impl RecordSection {
    /// The recorder's settings (`None` when nothing is recorded), checked
    /// by [`RecordConfig::validate`]; an error names the key at fault.
    pub fn record_config(&self) -> Result<Option<RecordConfig>> {
        if self.paths.is_empty() && self.overrides.is_empty() {
            return Ok(None);
        }
        if self.format != "fmp4" {
            return Err(setting_error(
                "record.format".into(),
                format!(
                    "invalid value {:?}: only \"fmp4\" is supported",
                    self.format
                ),
            ));
        }
        let mut paths = Vec::new();
        for (glob, o) in &self.overrides {
            paths.push(PathRule {
                pattern: glob.clone(),
                retention: match &o.retention {
                    Some(r) => retention(&format!("record.overrides.\"{glob}\".retention"), r)?,
                    None => None,
                },
                max_bytes: o.max_bytes.filter(|b| *b > 0),
            });
        }
        paths.extend(self.paths.iter().map(PathRule::new));
        let config = RecordConfig {
            dir: self.dir.clone(),
            paths,
            segment: Duration::from_secs(self.segment_s),
            part: Duration::from_millis(self.part_ms),
            retention: retention("record.retention", &self.retention)?,
            max_bytes: (self.max_bytes > 0).then_some(self.max_bytes),
            sweep_interval: Duration::from_secs(self.sweep_s),
            ..RecordConfig::default()
        };
        config.validate().map_err(|e| {
            let key = match e.field.as_str() {
                "segment" => FieldKey::shown("segment_s", self.segment_s),
                "part" => FieldKey::shown("part_ms", self.part_ms),
                "sweep_interval" => FieldKey::shown("sweep_s", self.sweep_s),
                "dir" => FieldKey::shown("dir", self.dir.display()),
                f => f
                    .strip_prefix("paths[")
                    .and_then(|i| i.strip_suffix(']'))
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| i.checked_sub(self.overrides.len()))
                    .and_then(|i| self.paths.get(i).map(|p| (i, p)))
                    .and_then(|(i, p)| FieldKey::shown(format!("paths[{i}]"), p)),
            };
            field_error("record", key, &e.rule)
        })?;
        Ok(Some(config))
    }

    /// Checks the section.
    pub(super) fn check(&self) -> Result<()> {
        self.record_config().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn off_by_default_and_parsed_when_set() {
        assert_eq!(
            RecordSection::default().record_config().expect("valid"),
            None
        );
        let config = Config::from_toml_str(
            "[record]\npaths = [\"live/*\"]\nretention = \"7d\"\nsegment_s = 30\n\
             [record.overrides.\"live/cam1\"]\nretention = \"30d\"\n",
        )
        .expect("valid");
        let rc = config.record.record_config().expect("valid").expect("on");
        assert_eq!(rc.segment, Duration::from_secs(30));
        assert_eq!(rc.retention, Some(Duration::from_secs(7 * 86_400)));
        let cam1 = tidewater::StreamKey::parse("live/cam1").expect("key");
        assert_eq!(
            rc.retention_for(&cam1).0,
            Some(Duration::from_secs(30 * 86_400))
        );
    }

    #[test]
    fn errors_name_the_key() {
        for (toml, key) in [
            (
                "[record]\npaths = [\"live/*\"]\nretention = \"a week\"\n",
                "record.retention",
            ),
            (
                "[record]\npaths = [\"live/*\"]\npart_ms = 5\n",
                "record.part_ms",
            ),
            ("[record]\npaths = [\"nope\"]\n", "record.paths[0]"),
            (
                "[record]\npaths = [\"live/*\"]\nsweep_s = 0\n",
                "record.sweep_s",
            ),
            (
                "[record]\npaths = [\"live/*\"]\nformat = \"ts\"\n",
                "record.format",
            ),
        ] {
            let err = Config::from_toml_str(toml).and_then(|c| c.validate());
            let text = err.expect_err(toml).to_string();
            assert!(text.contains(key), "{toml}: {text}");
        }
    }
}
