//! Settings of the DASH routes, and their rules: [`DashConfig::validate`] is
//! the one check. [`dash_router`](crate::dash_router) takes the settings as
//! given (it has no error to return): call `validate` first with settings
//! that come from users, as the server does. A refusal is a [`ConfigError`]
//! naming the field as [`DashConfig`] names it (`window must be 2 to 1000`),
//! so an application can report it next to its own name for the setting.

use std::ops::RangeInclusive;
use std::time::Duration;

use tidewater_core::StreamKey;

/// The segment targets accepted.
pub const SEGMENT_TARGET_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(200)..=Duration::from_secs(20);
/// The windows accepted, in complete segments per track.
pub const WINDOW_RANGE: RangeInclusive<usize> = 2..=1000;
/// The default [`DashConfig::player_idle_timeout`]: 30 s.
pub const DEFAULT_PLAYER_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest [`DashConfig::player_idle_timeout`] accepted (twice the
/// longest `minimumUpdatePeriod` of a low-latency MPD).
const PLAYER_IDLE_TIMEOUT_MIN: Duration = Duration::from_secs(4);

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
    /// Low-latency mode: chunked CMAF, `$Number$` template, latency target
    /// (default true: dash.js, Shaka Player and ffmpeg's DASH demuxer play
    /// it; false writes a `SegmentTimeline` of complete segments, which
    /// players start about two segments behind live).
    pub low_latency: bool,
    /// The `ServiceDescription` latency target (low-latency mode).
    pub latency_target: Duration,
    /// A packager with no request for this long stops, unless its stream
    /// is always-on.
    pub idle_timeout: Duration,
    /// Streams packaged from their publish on, whether requested or not.
    pub always_on: Vec<StreamKey>,
    /// Package every stream from its publish on (default true), so the
    /// first player of a stream finds the same live edge as any later one;
    /// the cost is the packaging of streams nobody watches (about 0.1 ms
    /// of CPU per stream-second, BENCHMARKS.md). With false, a stream's
    /// packager starts with its first request, which then waits for a
    /// segment to be in progress (low-latency mode) or for two complete
    /// segments (timeline mode).
    pub always_on_all: bool,
    /// A player (one session per read token, or per address when reads are
    /// anonymous) that sent no request for this long is dropped from the
    /// sessions (default [`DEFAULT_PLAYER_IDLE_TIMEOUT`], 30 s); its token
    /// is then no longer accepted beyond the authorizer's own validity. At
    /// least [`segment_target`](Self::segment_target) and 4 s: twice the
    /// MPD's `minimumUpdatePeriod` (2 s in low-latency mode, half the target
    /// otherwise), so a playing player, which reloads the MPD that often, is
    /// never dropped.
    pub player_idle_timeout: Duration,
    /// How long the first MPD request waits for the first segment.
    pub ready_timeout: Duration,
    /// After the stream ends, how long its final MPD (`type="static"`, with
    /// the window's segments) and those segments stay served (default 10 s,
    /// as HLS keeps its final playlist), so players fetch the end.
    pub linger: Duration,
}

impl Default for DashConfig {
    fn default() -> Self {
        DashConfig {
            segment_target: Duration::from_secs(2),
            window: 6,
            low_latency: true,
            latency_target: Duration::from_millis(1500),
            idle_timeout: Duration::from_secs(30),
            always_on: Vec::new(),
            always_on_all: true,
            player_idle_timeout: DEFAULT_PLAYER_IDLE_TIMEOUT,
            ready_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(10),
        }
    }
}

impl DashConfig {
    /// Checks the settings: `segment_target` in [`SEGMENT_TARGET_RANGE`],
    /// `window` in [`WINDOW_RANGE`], positive `latency_target` and
    /// `idle_timeout`, `player_idle_timeout` at least 4 s and at least
    /// `segment_target`. The error names the first field that breaks its
    /// rule, in that order.
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
        if self.player_idle_timeout < self.segment_target.max(PLAYER_IDLE_TIMEOUT_MIN) {
            return bad(
                "player_idle_timeout",
                format!("must be at least {PLAYER_IDLE_TIMEOUT_MIN:?} and at least segment_target"),
            );
        }
        Ok(())
    }

    /// Whether `key` is packaged from its publish on.
    pub fn is_always_on(&self, key: &StreamKey) -> bool {
        self.always_on_all || self.always_on.contains(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_low_latency_and_always_on() {
        let d = DashConfig::default();
        assert_eq!(d.validate(), Ok(()));
        assert!(d.low_latency);
        let key = StreamKey::parse("live/any").expect("key");
        assert!(d.is_always_on(&key));
        let listed = DashConfig {
            always_on_all: false,
            always_on: vec![key.clone()],
            ..d
        };
        assert!(listed.is_always_on(&key));
        assert!(!listed.is_always_on(&StreamKey::parse("live/other").expect("key")));
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
        // At least the segment target, and at least 4 s.
        let with = |target: u64, idle: u64| DashConfig {
            segment_target: Duration::from_millis(target),
            player_idle_timeout: Duration::from_millis(idle),
            ..d()
        };
        assert_eq!(with(20_000, 20_000).validate(), Ok(()));
        assert_eq!(with(1_000, 4_000).validate(), Ok(()));
        assert_eq!(
            with(20_000, 19_999)
                .validate()
                .expect_err("refused")
                .to_string(),
            "player_idle_timeout must be at least 4s and at least segment_target"
        );
        assert_eq!(field(with(1_000, 3_999)), "player_idle_timeout");
        assert_eq!(
            field(DashConfig {
                player_idle_timeout: zero,
                ..d()
            }),
            "player_idle_timeout"
        );
    }
}
