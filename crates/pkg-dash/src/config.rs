//! Settings of the DASH routes, and their rules: [`DashConfig::validate`] is
//! the one check. [`dash_router`](crate::dash_router) takes the settings as
//! given (it has no error to return): call `validate` first with settings
//! that come from users, as the server does. A refusal is a [`ConfigError`]
//! naming the field as [`DashConfig`] names it (`window must be 2 to 1000`),
//! so an application can report it next to its own name for the setting.

use std::ops::RangeInclusive;
use std::time::Duration;

/// The segment targets accepted.
pub const SEGMENT_TARGET_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(200)..=Duration::from_secs(20);
/// The windows accepted, in complete segments per track.
pub const WINDOW_RANGE: RangeInclusive<usize> = 2..=1000;

/// A setting refused by [`DashConfig::validate`]: the field, as named in
/// [`DashConfig`], and the rule its value breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} {rule}")]
pub struct ConfigError {
    /// The field (`segment_target`, `window`, …).
    pub field: String,
    /// The rule, worded to follow the field (`must be positive`).
    pub rule: String,
}

/// Settings of the DASH routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DashConfig {
    /// Target segment duration (segments start at the keyframes on this grid).
    pub segment_target: Duration,
    /// Complete segments kept per track.
    pub window: usize,
    /// Low-latency mode: chunked CMAF, `$Number$` template, latency target.
    pub low_latency: bool,
    /// The `ServiceDescription` latency target (low-latency mode).
    pub latency_target: Duration,
    /// A packager with no request for this long stops.
    pub idle_timeout: Duration,
    /// How long the first MPD request waits for the first segment.
    pub ready_timeout: Duration,
}

impl Default for DashConfig {
    fn default() -> Self {
        DashConfig {
            segment_target: Duration::from_secs(2),
            window: 6,
            low_latency: false,
            latency_target: Duration::from_millis(1500),
            idle_timeout: Duration::from_secs(30),
            ready_timeout: Duration::from_secs(10),
        }
    }
}

impl DashConfig {
    /// Checks the settings: `segment_target` in [`SEGMENT_TARGET_RANGE`],
    /// `window` in [`WINDOW_RANGE`], positive `latency_target` and
    /// `idle_timeout`. The error names the first field that breaks its rule,
    /// in that order.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, rule: String| {
            Err(ConfigError {
                field: field.into(),
                rule,
            })
        };
        if !SEGMENT_TARGET_RANGE.contains(&self.segment_target) {
            return bad(
                "segment_target",
                format!(
                    "must be {:?} to {:?}",
                    SEGMENT_TARGET_RANGE.start(),
                    SEGMENT_TARGET_RANGE.end()
                ),
            );
        }
        if !WINDOW_RANGE.contains(&self.window) {
            return bad(
                "window",
                format!("must be {} to {}", WINDOW_RANGE.start(), WINDOW_RANGE.end()),
            );
        }
        for (field, value) in [
            ("latency_target", self.latency_target),
            ("idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return bad(field, "must be positive".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(DashConfig::default().validate(), Ok(()));
    }

    #[test]
    fn refusals_name_the_field() {
        let d = DashConfig::default;
        let field = |c: DashConfig| c.validate().expect_err("refused").field;
        for ms in [199, 20_001] {
            let c = DashConfig {
                segment_target: Duration::from_millis(ms),
                ..d()
            };
            assert_eq!(field(c), "segment_target");
        }
        for ms in [200, 20_000] {
            let c = DashConfig {
                segment_target: Duration::from_millis(ms),
                ..d()
            };
            assert_eq!(c.validate(), Ok(()));
        }
        assert_eq!(
            DashConfig { window: 1, ..d() }
                .validate()
                .expect_err("refused")
                .to_string(),
            "window must be 2 to 1000"
        );
        assert_eq!(
            field(DashConfig {
                window: 1001,
                ..d()
            }),
            "window"
        );
        let zero = Duration::ZERO;
        assert_eq!(
            field(DashConfig {
                latency_target: zero,
                ..d()
            }),
            "latency_target"
        );
        assert_eq!(
            field(DashConfig {
                idle_timeout: zero,
                ..d()
            }),
            "idle_timeout"
        );
    }
}
