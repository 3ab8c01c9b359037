//! Packaging settings, and their rules: [`HlsConfig::validate`] is the one
//! check, run by [`Hls::new`](crate::Hls::new) too. A refusal is a
//! [`ConfigError`] naming the field as [`HlsConfig`] names it
//! (`window must hold at least 3 segments`), so an application taking the
//! settings from its users can report it next to its own name for the
//! setting.

use std::time::Duration;

use tidewater_core::StreamKey;

/// The default [`HlsConfig::player_idle_timeout`]: 30 s.
pub const DEFAULT_PLAYER_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A setting refused by [`HlsConfig::validate`]: the field, as named in
/// [`HlsConfig`], and the rule its value breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} {rule}")]
pub struct ConfigError {
    /// The field (`segment_target`, `window`, …).
    pub field: String,
    /// The rule, worded to follow the field (`must be non-zero`).
    pub rule: String,
}

/// Settings of the HLS and LL-HLS packagers and routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HlsConfig {
    /// Segments are cut on the first keyframe at least this long after the
    /// segment's start (default 2 s).
    pub segment_target: Duration,
    /// Complete segments listed in a playlist (default 6).
    pub window: usize,
    /// LL-HLS partial segment target (default 200 ms). The playlist's
    /// `PART-TARGET` is 5 % above it, so parts cut on frame boundaries fit
    /// under it (see [`part_target_declared`](Self::part_target_declared)).
    pub part_target: Duration,
    /// The longest a first segment may run without a keyframe before it is
    /// cut anyway (default 10 s): the target duration never exceeds this.
    pub max_segment: Duration,
    /// A stream whose playlists and segments nobody requested for this long
    /// stops being packaged (default 30 s), unless it is always-on (every
    /// stream is, by default).
    pub idle_timeout: Duration,
    /// A player (one session per read token, or per address when reads are
    /// anonymous) that sent no request for this long is dropped from the
    /// sessions (default [`DEFAULT_PLAYER_IDLE_TIMEOUT`], 30 s); its token
    /// is then no longer accepted beyond the authorizer's own validity.
    /// At least twice [`max_segment`](Self::max_segment), so a player
    /// reloading its playlist once per target duration is never dropped.
    pub player_idle_timeout: Duration,
    /// Streams packaged from their publish on, whether requested or not.
    pub always_on: Vec<StreamKey>,
    /// Package every stream from its publish on (default true), so the
    /// first player of a stream finds the same live edge as any later one.
    /// The cost is the packaging of streams nobody watches: about 0.1–0.25
    /// ms of CPU per stream-second for LL-HLS and 0.24–0.75 ms for MPEG-TS
    /// HLS at 2–8 Mbit/s (BENCHMARKS.md). With false, a stream's packagers
    /// start with its first request, whose playlist then waits for the
    /// first segment, made of the kernel's cached GOP replayed at once, and
    /// whose player starts seconds behind live (hls.js 1.7 at 6.1 s for a
    /// player opened 6 s after the publish of a 2 s GOP).
    pub always_on_all: bool,
    /// How long the first playlist request waits for the first segment
    /// before answering 503 (default 15 s).
    pub first_segment_timeout: Duration,
    /// After the stream ends, how long the final playlist (with
    /// `EXT-X-ENDLIST`) stays served (default 10 s).
    pub linger: Duration,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            segment_target: Duration::from_secs(2),
            window: 6,
            part_target: Duration::from_millis(200),
            max_segment: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            player_idle_timeout: DEFAULT_PLAYER_IDLE_TIMEOUT,
            always_on: Vec::new(),
            always_on_all: true,
            first_segment_timeout: Duration::from_secs(15),
            linger: Duration::from_secs(10),
        }
    }
}

impl HlsConfig {
    /// `PART-TARGET` as written in LL-HLS playlists: the configured part
    /// target plus 5 %, in 90 kHz ticks. Parts are closed before the next
    /// frame would take them past it, and the 5 % absorbs the millisecond
    /// jitter of RTMP timestamps (six 30 fps frames are 200 or 201 ms), so
    /// parts stay whole-frame and above 85 % of the target.
    pub fn part_target_declared(&self) -> i64 {
        let ticks = duration_ticks(self.part_target).max(90);
        ticks + ticks / 20
    }

    /// Checks the settings: a segment target of at least 500 ms, a maximum
    /// segment from the segment target to 60 s, a window of 3 to 100
    /// segments, a part target from 50 ms to half the segment target,
    /// non-zero timeouts, a player idle timeout of at least twice the
    /// maximum segment. The error names the first field that breaks its
    /// rule, in that order.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, rule: &str| {
            Err(ConfigError {
                field: field.into(),
                rule: rule.into(),
            })
        };
        if self.segment_target < Duration::from_millis(500) {
            return bad("segment_target", "must be at least 500 ms");
        }
        if self.max_segment < self.segment_target {
            return bad("max_segment", "must be at least the segment target");
        }
        if self.max_segment > Duration::from_secs(60) {
            return bad("max_segment", "must be at most 60 s");
        }
        if self.window < 3 {
            return bad("window", "must hold at least 3 segments");
        }
        if self.window > 100 {
            return bad("window", "must hold at most 100 segments");
        }
        if self.part_target < Duration::from_millis(50)
            || self.part_target * 2 > self.segment_target
        {
            return bad(
                "part_target",
                "must be at least 50 ms and at most half the segment target",
            );
        }
        if self.idle_timeout.is_zero() {
            return bad("idle_timeout", "must be non-zero");
        }
        if self.first_segment_timeout.is_zero() {
            return bad("first_segment_timeout", "must be non-zero");
        }
        if self.player_idle_timeout < self.max_segment * 2 {
            return bad(
                "player_idle_timeout",
                "must be at least twice the maximum segment duration",
            );
        }
        Ok(())
    }

    /// Whether `key` is packaged from its publish on.
    pub fn is_always_on(&self, key: &StreamKey) -> bool {
        self.always_on_all || self.always_on.contains(key)
    }
}

/// A duration in 90 kHz ticks.
pub(crate) fn duration_ticks(d: Duration) -> i64 {
    i64::try_from(d.as_micros() * 9 / 100).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_declared_part_target_is_five_percent_up() {
        let c = HlsConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.part_target_declared(), 18_900);
        assert!(c.is_always_on(&StreamKey::parse("live/any").expect("key")));
    }

    #[test]
    fn invalid_settings_are_refused() {
        let bad = [
            HlsConfig {
                window: 2,
                ..HlsConfig::default()
            },
            HlsConfig {
                part_target: Duration::from_millis(1500),
                ..HlsConfig::default()
            },
            HlsConfig {
                segment_target: Duration::from_millis(100),
                ..HlsConfig::default()
            },
            HlsConfig {
                max_segment: Duration::from_secs(1),
                ..HlsConfig::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn refusals_name_the_field() {
        let field = |c: HlsConfig| c.validate().expect_err("refused").field;
        let d = HlsConfig::default;
        assert_eq!(field(HlsConfig { window: 101, ..d() }), "window");
        assert_eq!(
            field(HlsConfig {
                part_target: Duration::from_millis(10),
                ..d()
            }),
            "part_target"
        );
        assert_eq!(
            field(HlsConfig {
                max_segment: Duration::from_secs(61),
                ..d()
            }),
            "max_segment"
        );
        assert_eq!(
            field(HlsConfig {
                idle_timeout: Duration::ZERO,
                ..d()
            }),
            "idle_timeout"
        );
        assert_eq!(
            field(HlsConfig {
                first_segment_timeout: Duration::ZERO,
                ..d()
            }),
            "first_segment_timeout"
        );
        assert_eq!(
            field(HlsConfig {
                player_idle_timeout: Duration::from_secs(19),
                ..d()
            }),
            "player_idle_timeout"
        );
        assert_eq!(
            HlsConfig {
                player_idle_timeout: Duration::from_secs(20),
                ..d()
            }
            .validate(),
            Ok(())
        );
        let e = HlsConfig { window: 2, ..d() }
            .validate()
            .expect_err("refused");
        assert_eq!(e.to_string(), "window must hold at least 3 segments");
    }
}
