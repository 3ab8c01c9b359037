//! Per-application and per-stream policies.

use std::collections::HashMap;
use std::time::Duration;

use crate::error::Error;

/// What happens when a second publisher claims a live stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
pub enum DuplicatePublish {
    /// Refuse the newcomer (the default).
    #[default]
    Reject,
    /// End the current publish and let the newcomer take over.
    TakeOver,
}

/// Bounds and timeouts of one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StreamPolicy {
    /// Most frames the stream's ring retains (the live window every subscriber reads from).
    pub ring_frames: usize,
    /// Most bytes the ring retains: payloads plus derived outputs.
    pub ring_bytes: usize,
    /// Longest GOP (in frames) kept for instant start; a longer GOP makes late
    /// joiners wait for the next keyframe.
    pub gop_frames: usize,
    /// Largest GOP (in bytes) kept for instant start.
    pub gop_bytes: usize,
    /// How far (in ingest time) a subscriber may fall behind live before it
    /// skips ahead to a keyframe.
    #[cfg_attr(feature = "serde", serde(with = "duration_ms", rename = "max_lag_ms"))]
    pub max_lag: Duration,
    /// Skips tolerated within `skip_window` before a subscriber is evicted.
    pub max_skips: u32,
    /// The window `max_skips` is counted over.
    #[cfg_attr(
        feature = "serde",
        serde(with = "duration_ms", rename = "skip_window_ms")
    )]
    pub skip_window: Duration,
    /// A publish with no frame for this long is ended by the reaper.
    #[cfg_attr(
        feature = "serde",
        serde(with = "duration_ms", rename = "idle_timeout_ms")
    )]
    pub idle_timeout: Duration,
    /// How long followers (packagers, recorders, relays) wait for a republish.
    #[cfg_attr(
        feature = "serde",
        serde(with = "duration_ms", rename = "follow_grace_ms")
    )]
    pub follow_grace: Duration,
}

impl Default for StreamPolicy {
    fn default() -> Self {
        StreamPolicy {
            ring_frames: 4_096,
            ring_bytes: 64 << 20,
            gop_frames: 2_048,
            gop_bytes: 32 << 20,
            max_lag: Duration::from_secs(5),
            max_skips: 5,
            skip_window: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            follow_grace: Duration::from_secs(10),
        }
    }
}

impl StreamPolicy {
    /// Checks the bounds are consistent: the ring holds at least a whole
    /// cached GOP and a few blocks.
    pub fn validate(&self) -> Result<(), Error> {
        let min = 2 * crate::bus::BLOCK_LEN;
        if self.ring_frames < min {
            return Err(Error::Config(format!("ring_frames must be at least {min}")));
        }
        if self.gop_frames > self.ring_frames || self.gop_bytes > self.ring_bytes {
            return Err(Error::Config(
                "the GOP cache bounds must not exceed the ring bounds".into(),
            ));
        }
        if self.gop_frames == 0 || self.gop_bytes == 0 {
            return Err(Error::Config(
                "gop_frames and gop_bytes must be positive".into(),
            ));
        }
        if self.max_lag.is_zero() || self.idle_timeout.is_zero() {
            return Err(Error::Config(
                "max_lag and idle_timeout must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// An application: a namespace of streams sharing policies.
#[derive(Clone, Debug, Default)]
pub struct AppSpec {
    /// The policy of its streams.
    pub policy: StreamPolicy,
    /// Per-stream overrides of `policy`, by stream name.
    pub streams: HashMap<String, StreamPolicy>,
    /// Most simultaneous publishers (0 = unlimited): with one publisher per
    /// stream, the most live streams of the application.
    pub max_publishers: usize,
    /// Most simultaneous readers of one stream (0 = unlimited). Counts the
    /// kernel's subscribers (RTMP, SRT, HTTP-FLV/TS, RTSP viewers, relays),
    /// not internal readers such as packagers and recorders, nor the HLS and
    /// DASH players they serve.
    pub max_readers: usize,
    /// What a second publisher of a live stream gets.
    pub duplicate: DuplicatePublish,
}

impl AppSpec {
    /// The policy of one stream of this application.
    pub fn policy_for(&self, stream: &str) -> &StreamPolicy {
        self.streams.get(stream).unwrap_or(&self.policy)
    }

    /// Validates every policy.
    pub fn validate(&self) -> Result<(), Error> {
        self.policy.validate()?;
        for (name, p) in &self.streams {
            crate::key::StreamKey::new("app", name)
                .map_err(|e| Error::Config(format!("stream override {name:?}: {e}")))?;
            p.validate()
                .map_err(|e| Error::Config(format!("stream {name}: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
mod duration_ms {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}
