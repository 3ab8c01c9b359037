//! What to record and where: [`RecordConfig`].

use std::path::PathBuf;
use std::time::Duration;

use tidewater_core::StreamKey;

/// A refused setting: the field as [`RecordConfig`] names it, and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct ConfigError {
    /// The field (`paths[1]`, `segment`, …).
    pub field: String,
    /// What it must be.
    pub rule: String,
}

/// One rule of what is recorded: streams whose key matches `pattern`, with
/// optional per-rule retention overrides. The most specific rule (the first
/// one that matches, in order) applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRule {
    /// A glob over `app/stream`: `*` matches any run of characters except
    /// `/`, `?` one such character (`live/*`, `*/cam?`, `live/cam1`).
    pub pattern: String,
    /// Segments older than this are deleted (`None`: the recorder's default).
    pub retention: Option<Duration>,
    /// The recordings of one stream are kept under this many bytes, oldest
    /// deleted first (`None`: the recorder's default).
    pub max_bytes: Option<u64>,
}

impl PathRule {
    /// A rule with the recorder's default retention.
    pub fn new(pattern: impl Into<String>) -> Self {
        PathRule {
            pattern: pattern.into(),
            retention: None,
            max_bytes: None,
        }
    }
}

/// The recorder's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordConfig {
    /// Root directory: a stream's segments are `{dir}/{app}/{stream}/{start}.mp4`.
    pub dir: PathBuf,
    /// What is recorded (nothing when empty).
    pub paths: Vec<PathRule>,
    /// A new file at the first keyframe after this long (default 60 s).
    pub segment: Duration,
    /// A fragment (`moof` + `mdat`) is written and flushed at the first
    /// frame after this long, and at every keyframe (default 1 s).
    pub part: Duration,
    /// Segments that ended longer ago than this are deleted (default: kept).
    pub retention: Option<Duration>,
    /// Per-stream size cap (default: none).
    pub max_bytes: Option<u64>,
    /// How often retention is enforced (default 60 s).
    pub sweep_interval: Duration,
    /// Bytes queued for the disk per stream before the recorder drops to the
    /// next keyframe (default 32 MiB).
    pub queue_bytes: usize,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            dir: PathBuf::from("recordings"),
            paths: Vec::new(),
            segment: Duration::from_secs(60),
            part: Duration::from_secs(1),
            retention: None,
            max_bytes: None,
            sweep_interval: Duration::from_secs(60),
            queue_bytes: 32 << 20,
        }
    }
}

impl RecordConfig {
    /// Checks every value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field: &str, rule: &str| ConfigError {
            field: field.into(),
            rule: rule.into(),
        };
        if self.dir.as_os_str().is_empty() {
            return Err(err("dir", "must not be empty"));
        }
        if self.part < Duration::from_millis(100) || self.part > Duration::from_secs(10) {
            return Err(err("part", "must be 100 ms to 10 s"));
        }
        if self.segment < self.part || self.segment > Duration::from_secs(3600) {
            return Err(err("segment", "must be at least the part and at most 1 h"));
        }
        if self.sweep_interval < Duration::from_secs(1) {
            return Err(err("sweep_interval", "must be at least 1 s"));
        }
        if self.queue_bytes < 1 << 20 {
            return Err(err("queue_bytes", "must be at least 1 MiB"));
        }
        for (i, rule) in self.paths.iter().enumerate() {
            let p = &rule.pattern;
            if p.is_empty() || p.matches('/').count() != 1 || p.contains("..") {
                return Err(err(
                    &format!("paths[{i}]"),
                    "must be a glob over app/stream (one `/`)",
                ));
            }
        }
        Ok(())
    }

    /// The rule that records `key`, if any.
    pub fn rule_for(&self, key: &StreamKey) -> Option<&PathRule> {
        self.paths.iter().find(|r| glob(&r.pattern, key.as_str()))
    }

    /// The retention of `key` (its rule's, else the default).
    pub fn retention_for(&self, key: &StreamKey) -> (Option<Duration>, Option<u64>) {
        let rule = self.rule_for(key);
        (
            rule.and_then(|r| r.retention).or(self.retention),
            rule.and_then(|r| r.max_bytes).or(self.max_bytes),
        )
    }
}

/// Whether `text` matches `pattern` (`*`: any run without `/`; `?`: one
/// character other than `/`).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative matching with one backtrack point per star.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&tc) = t.get(ti) {
        let pc = p.get(pi).copied();
        if pc.is_some_and(|pc| pc == tc || (pc == '?' && tc != '/')) {
            pi += 1;
            ti += 1;
        } else if pc == Some('*') {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star.filter(|&(_, st)| t.get(st).is_some_and(|c| *c != '/'))
        {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p.get(pi) == Some(&'*') {
        pi += 1;
    }
    pi == p.len()
}

/// A duration as operators write it: a number with a unit `s`, `m`, `h`,
/// `d` or `w` (`"7d"`, `"36h"`, `"90s"`); several may follow each other
/// (`"1d12h"`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        let n: u64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
        any = true;
    }
    (any && digits.is_empty()).then(|| Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("live/*", "live/cam1"));
        assert!(glob("*/*", "a/b"));
        assert!(glob("live/cam?", "live/cam7"));
        assert!(glob("*/cam*1", "x/cam-11"));
        assert!(!glob("live/*", "other/cam1"));
        assert!(!glob("live*", "live/cam1"), "a star stops at the slash");
        assert!(!glob("live/cam?", "live/cam10"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1d12h"), Some(Duration::from_secs(129_600)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        for bad in ["", "7", "d", "7x", "-1d", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = RecordConfig {
            paths: vec![PathRule::new("live/*")],
            ..RecordConfig::default()
        };
        assert_eq!(c.validate(), Ok(()));
        c.paths.push(PathRule::new("nope"));
        assert_eq!(c.validate().map_err(|e| e.field), Err("paths[1]".into()));
        c.paths.pop();
        c.part = Duration::from_millis(10);
        assert_eq!(c.validate().map_err(|e| e.field), Err("part".into()));
    }
}
