//! Timestamps: rescaling between timescales, unwrapping of wrapping protocol
//! clocks and the per-track monotonic repair the kernel applies once for every
//! protocol, plus the media-time ↔ wall-clock anchor of a publish.

use std::time::{Duration, SystemTime};

/// Common timescales.
pub mod timescale {
    /// MPEG system clock for video (and everything in MPEG-TS, RTP video).
    pub const MPEG_90K: u32 = 90_000;
    /// RTMP/FLV milliseconds.
    pub const MILLIS: u32 = 1_000;
    /// Microseconds, the kernel's common scale for comparing tracks.
    pub const MICROS: u32 = 1_000_000;
}

/// Converts a timestamp from one timescale to another, rounding to nearest.
///
/// Works on absolute values in 128-bit arithmetic, so converting every
/// timestamp of a stream (rather than accumulating converted durations)
/// never drifts.
pub fn rescale(value: i64, from: u32, to: u32) -> i64 {
    if from == to || from == 0 {
        return value;
    }
    let num = i128::from(value) * i128::from(to);
    let den = i128::from(from);
    let half = den / 2;
    let q = if num >= 0 {
        (num + half) / den
    } else {
        (num - half) / den
    };
    q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// How a protocol's timestamps wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimestampWrap {
    /// They do not wrap (64-bit sources, already unwrapped).
    #[default]
    None,
    /// They wrap at `2^bits`: 32 for RTMP, 33 for MPEG-TS PES, 32 for RTP.
    Bits(u8),
}

impl TimestampWrap {
    /// RTMP's 32-bit millisecond clock.
    pub const RTMP: TimestampWrap = TimestampWrap::Bits(32);
    /// MPEG-TS's 33-bit 90 kHz clock.
    pub const MPEG_TS: TimestampWrap = TimestampWrap::Bits(33);
}

/// Default size of a jump (either way) that is rebased as a discontinuity
/// rather than repaired frame by frame: 10 seconds.
pub const DISCONTINUITY_THRESHOLD: Duration = Duration::from_secs(10);

/// What the clock did to one frame's timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockAction {
    /// Taken as it came (after unwrapping).
    Kept,
    /// A small step backwards (or a repeat) was nudged forward to stay monotonic.
    Repaired,
    /// A large jump was rebased onto the running timeline; the frame is flagged
    /// [`FrameFlags::DISCONTINUITY`](crate::FrameFlags::DISCONTINUITY).
    Rebased,
}

/// Per-track unwrapping and monotonic repair of decode timestamps.
///
/// Output decode timestamps strictly increase; the composition offset
/// (pts − dts) of each frame is preserved.
#[derive(Clone, Debug)]
pub struct TrackClock {
    wrap: TimestampWrap,
    threshold: i64,
    /// Raw dts of the previous frame and its unwrapped value.
    last_raw: Option<(i64, i64)>,
    /// Added to every unwrapped timestamp (changes on a rebase).
    offset: i64,
    last_dts: Option<i64>,
    last_step: i64,
}

impl TrackClock {
    /// A clock for a track with this wrap and timescale.
    pub fn new(wrap: TimestampWrap, timescale: u32) -> Self {
        let threshold =
            rescale(DISCONTINUITY_THRESHOLD.as_millis() as i64, 1_000, timescale).max(1);
        TrackClock {
            wrap,
            threshold,
            last_raw: None,
            offset: 0,
            last_dts: None,
            last_step: 1,
        }
    }

    /// Unwraps and repairs one frame's (dts, pts) in place.
    pub fn apply(&mut self, dts: &mut i64, pts: &mut i64) -> ClockAction {
        let raw_dts = *dts;
        let cto = self.signed_delta(*pts, raw_dts);
        let unwrapped = match self.last_raw {
            None => self.reduce(raw_dts),
            Some((last_raw, last_unwrapped)) => {
                last_unwrapped.saturating_add(self.signed_delta(raw_dts, last_raw))
            }
        };
        self.last_raw = Some((raw_dts, unwrapped));
        let mut out = unwrapped.saturating_add(self.offset);
        let mut action = ClockAction::Kept;
        if let Some(last) = self.last_dts {
            let step = out.saturating_sub(last);
            if step > self.threshold || step < -self.threshold {
                let target = last.saturating_add(self.last_step.max(1));
                self.offset = self.offset.saturating_add(target.saturating_sub(out));
                out = target;
                action = ClockAction::Rebased;
            } else if step <= 0 {
                out = last.saturating_add(1);
                action = ClockAction::Repaired;
            } else {
                self.last_step = step;
            }
        }
        self.last_dts = Some(out);
        *dts = out;
        *pts = out.saturating_add(cto);
        action
    }

    /// `a - b` as the shortest signed distance on the wrapping circle.
    fn signed_delta(&self, a: i64, b: i64) -> i64 {
        match self.wrap {
            TimestampWrap::None => a.saturating_sub(b),
            TimestampWrap::Bits(bits) => {
                let bits = u32::from(bits.clamp(2, 62));
                let modulus = 1i64 << bits;
                let d = a.wrapping_sub(b).rem_euclid(modulus);
                if d >= modulus / 2 { d - modulus } else { d }
            }
        }
    }

    fn reduce(&self, raw: i64) -> i64 {
        match self.wrap {
            TimestampWrap::None => raw,
            TimestampWrap::Bits(bits) => raw.rem_euclid(1i64 << u32::from(bits.clamp(2, 62))),
        }
    }
}

/// Ties media time to wall-clock time for one publish: taken at the first
/// frame, in the kernel's common microsecond scale, shared by all tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockAnchor {
    /// Wall-clock time at which the first frame arrived.
    pub wall: SystemTime,
    /// That frame's decode time in microseconds.
    pub media_us: i64,
}

impl ClockAnchor {
    /// The wall-clock time of a decode timestamp of a track of this stream.
    pub fn wall_clock_of(&self, ts: i64, timescale: u32) -> SystemTime {
        let us = rescale(ts, timescale, timescale::MICROS).saturating_sub(self.media_us);
        if us >= 0 {
            self.wall + Duration::from_micros(us as u64)
        } else {
            self.wall - Duration::from_micros(us.unsigned_abs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rescale_is_exact_and_rounds() {
        assert_eq!(rescale(1_000, 1_000, 90_000), 90_000);
        assert_eq!(rescale(3_003, 90_000, 1_000), 33);
        assert_eq!(rescale(-3_003, 90_000, 1_000), -33);
        assert_eq!(rescale(1, 3, 2), 1);
        // an hour of 29.97 fps frames converted one absolute timestamp at a time
        let last = rescale(107_892 * 3_003, 90_000, 1_000);
        assert_eq!(last, 3_599_996); // exact 3_599_996.4, no accumulated error
    }

    #[test]
    fn rtmp_wrap_is_unwrapped() {
        let mut clock = TrackClock::new(TimestampWrap::RTMP, 1_000);
        let mut out = vec![];
        for raw in [u32::MAX as i64 - 40, u32::MAX as i64 - 7, 26, 59] {
            let (mut d, mut p) = (raw, raw);
            assert_eq!(clock.apply(&mut d, &mut p), ClockAction::Kept);
            out.push(d);
        }
        assert_eq!(
            out,
            vec![
                u32::MAX as i64 - 40,
                u32::MAX as i64 - 7,
                (1i64 << 32) + 26,
                (1i64 << 32) + 59
            ]
        );
    }

    #[test]
    fn mpegts_wrap_keeps_composition_offset() {
        let mut clock = TrackClock::new(TimestampWrap::MPEG_TS, 90_000);
        let wrap = 1i64 << 33;
        let top = wrap - 1_000;
        // pts has wrapped already, dts not yet
        let (mut d, mut p) = (top, 2_000);
        clock.apply(&mut d, &mut p);
        assert_eq!((d, p), (top, top + 3_000));
        // both wrapped
        let (mut d2, mut p2) = (500, 3_500);
        assert_eq!(clock.apply(&mut d2, &mut p2), ClockAction::Kept);
        assert_eq!((d2, p2), (wrap + 500, wrap + 3_500));
    }

    #[test]
    fn backwards_steps_are_repaired_and_jumps_rebased() {
        let mut clock = TrackClock::new(TimestampWrap::None, 1_000);
        let mut seq = vec![];
        for raw in [0, 40, 80, 80, 60, 120, 100_000, 100_040] {
            let (mut d, mut p) = (raw, raw);
            let a = clock.apply(&mut d, &mut p);
            seq.push((d, a));
        }
        assert_eq!(
            seq,
            vec![
                (0, ClockAction::Kept),
                (40, ClockAction::Kept),
                (80, ClockAction::Kept),
                (81, ClockAction::Repaired),
                (82, ClockAction::Repaired),
                (120, ClockAction::Kept),
                (158, ClockAction::Rebased), // continues by the last real step (38)
                (198, ClockAction::Kept),
            ]
        );
    }

    proptest! {
        #[test]
        fn output_dts_strictly_increases(raws in proptest::collection::vec(any::<u32>(), 1..200), bits in prop_oneof![Just(32u8), Just(33u8)]) {
            let mut clock = TrackClock::new(TimestampWrap::Bits(bits), 90_000);
            let mut last = None;
            for raw in raws {
                let (mut d, mut p) = (i64::from(raw), i64::from(raw) + 3_000);
                clock.apply(&mut d, &mut p);
                if let Some(l) = last { prop_assert!(d > l); }
                prop_assert_eq!(p - d, 3_000);
                last = Some(d);
            }
        }

        #[test]
        fn steady_wrapping_clock_unwraps_exactly(start in any::<u32>(), step in 1u32..5_000, n in 1usize..500) {
            let mut clock = TrackClock::new(TimestampWrap::RTMP, 1_000);
            for i in 0..n {
                let exact = i64::from(start) + (i as i64) * i64::from(step);
                let raw = exact & 0xFFFF_FFFF;
                let (mut d, mut p) = (raw, raw);
                prop_assert_eq!(clock.apply(&mut d, &mut p), ClockAction::Kept);
                prop_assert_eq!(d, exact);
            }
        }
    }
}
