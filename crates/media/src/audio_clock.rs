//! AAC/Opus presentation times rebuilt from sample counts.
//!
//! RTMP carries audio times in milliseconds: a 48 kHz AAC frame lasts
//! 21.333 ms, so the times arrive as 0, 21, 43, 64, … and a packager that
//! rescales them writes sample durations of 1008, 1056, 1008, … instead of
//! 1024. Players tolerate it badly (DASH timelines with an entry per frame,
//! audio clicks at segment joins). [`AudioClock`] gives each frame the time
//! of the previous one plus its sample count, in the sample-rate timescale,
//! anchored at the first frame's time, and re-anchors only on a real gap
//! (frames lost, a pause in the source), on a flagged discontinuity, or when
//! the source's clock and the sample count drift apart by more than the
//! threshold — so the jitter disappears and real gaps are respected.
//!
//! ```
//! use tidewater_media::audio_clock::AudioClock;
//!
//! // 48 kHz AAC with RTMP millisecond times.
//! let mut clock = AudioClock::new(1_000, 48_000);
//! let times: Vec<i64> = [0, 21, 43, 64, 85]
//!     .into_iter()
//!     .map(|ms| clock.next(ms, 1024, false))
//!     .collect();
//! assert_eq!(times, [0, 1024, 2048, 3072, 4096]);
//! // Ten frames lost: the gap is kept, not closed.
//! assert_eq!(clock.next(320, 1024, false), 15_360);
//! ```
//!
//! Sans-IO: no clock inside, only the times and sample counts given.
// Reads network or file input: no indexing, unwrap, expect or panic
// outside tests (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

use tidewater_core::time::rescale;

/// Rebuilds one audio track's presentation times from sample counts.
#[derive(Clone, Debug)]
pub struct AudioClock {
    in_timescale: u32,
    sample_rate: u32,
    /// Re-anchor when the incoming time and the running count disagree by
    /// more than this many frame durations, in thousandths (1500 = 1.5).
    threshold_milli_frames: u32,
    /// Output time of the anchor frame and samples counted since it.
    anchor: Option<Anchor>,
}

#[derive(Clone, Copy, Debug)]
struct Anchor {
    /// Output time (sample-rate timescale) of the anchor frame.
    at: i64,
    /// Samples of every frame since the anchor, the last one included.
    samples: i64,
    /// The last time handed out.
    last: i64,
}

/// What [`AudioClock::next_with_action`] did for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockStep {
    /// The first frame: the timeline starts at its (rescaled) time.
    Started,
    /// The time follows from the previous frame's time plus its samples.
    Counted,
    /// The incoming time was too far from the count (or a discontinuity was
    /// flagged): the timeline restarted at the incoming time.
    Reanchored,
}

impl AudioClock {
    /// A clock reading times in `in_timescale` (1000 for RTMP) and writing
    /// them in `sample_rate`, re-anchoring beyond 1.5 frame durations.
    pub fn new(in_timescale: u32, sample_rate: u32) -> Self {
        AudioClock {
            in_timescale: in_timescale.max(1),
            sample_rate: sample_rate.max(1),
            threshold_milli_frames: 1500,
            anchor: None,
        }
    }

    /// Sets the re-anchor threshold in frame durations (at least 0.5: below
    /// half a frame the incoming jitter itself would re-anchor).
    pub fn with_threshold_frames(mut self, frames: f64) -> Self {
        self.threshold_milli_frames = (frames.max(0.5) * 1000.0).min(u32::MAX as f64) as u32;
        self
    }

    /// The output timescale (the sample rate).
    pub fn timescale(&self) -> u32 {
        self.sample_rate
    }

    /// Forgets the timeline: the next frame starts a new one at its own time.
    pub fn reset(&mut self) {
        self.anchor = None;
    }

    /// The time of a frame of `samples` samples that arrived with `time`
    /// (input timescale); `discontinuity` forces a re-anchor.
    pub fn next(&mut self, time: i64, samples: u32, discontinuity: bool) -> i64 {
        self.next_with_action(time, samples, discontinuity).0
    }

    /// [`next`](Self::next), also saying what was done.
    pub fn next_with_action(
        &mut self,
        time: i64,
        samples: u32,
        discontinuity: bool,
    ) -> (i64, ClockStep) {
        let incoming = rescale(time, self.in_timescale, self.sample_rate);
        let samples = i64::from(samples.max(1));
        let Some(a) = &mut self.anchor else {
            self.anchor = Some(Anchor {
                at: incoming,
                samples,
                last: incoming,
            });
            return (incoming, ClockStep::Started);
        };
        let expected = a.at.saturating_add(a.samples);
        let threshold = samples.saturating_mul(i64::from(self.threshold_milli_frames)) / 1000;
        let off = incoming.saturating_sub(expected);
        if !discontinuity && off.abs() <= threshold {
            a.samples = a.samples.saturating_add(samples);
            a.last = expected;
            return (expected, ClockStep::Counted);
        }
        // A real gap, a step back or a flagged discontinuity: restart at the
        // incoming time, but never at or before the last time handed out
        // (a step back can overlap the previous frame by at most one tick).
        let at = incoming.max(a.last.saturating_add(1));
        *a = Anchor {
            at,
            samples,
            last: at,
        };
        (at, ClockStep::Reanchored)
    }
}

/// Samples per AAC frame from the AudioSpecificConfig: 960 when its
/// frameLengthFlag says so, else 1024 (HE-AAC's SBR frames still advance
/// 1024 samples of the core rate the config announces).
pub fn aac_frame_samples(asc: &[u8]) -> u32 {
    // audioObjectType (5, or 5 + 6 when 31), sampling index (4, or 4 + 24
    // when 15), channel config (4), then GASpecificConfig's frameLengthFlag.
    let mut bits = Bits { data: asc, pos: 0 };
    let Some(mut aot) = bits.read(5) else {
        return 1024;
    };
    if aot == 31 {
        aot = match bits.read(6) {
            Some(v) => 32 + v,
            None => return 1024,
        };
    }
    let Some(index) = bits.read(4) else {
        return 1024;
    };
    if index == 15 && bits.read(24).is_none() {
        return 1024;
    }
    if bits.read(4).is_none() {
        return 1024;
    }
    // GASpecificConfig follows for the general audio object types only.
    let ga = matches!(aot, 1..=4 | 6 | 7 | 17 | 19..=23);
    match bits.read(1) {
        Some(1) if ga => 960,
        _ => 1024,
    }
}

/// Samples (at 48 kHz, Opus's clock) in one Opus packet, from its TOC byte
/// and frame count (RFC 6716 §3.1); `None` for a malformed packet.
pub fn opus_packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame size in units of 2.5 ms (120 samples at 48 kHz).
    let units: u32 = match config {
        0..=11 => *[4, 8, 16, 24].get(usize::from(config % 4))?,
        12..=15 => *[4, 8].get(usize::from(config % 2))?,
        _ => *[1, 2, 4, 8].get(usize::from(config % 4))?,
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let samples = units * 120 * frames;
    // RFC 6716: a packet never holds more than 120 ms.
    (frames > 0 && samples <= 5760).then_some(samples)
}

/// A big-endian bit reader that says `None` past the end.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtmp_jitter_disappears() {
        let mut clock = AudioClock::new(1_000, 44_100);
        for n in 0..10_000i64 {
            // The millisecond times an RTMP encoder sends (truncated).
            let ms = 5_000 + n * 1024 * 1000 / 44_100;
            let (t, step) = clock.next_with_action(ms, 1024, false);
            assert_eq!(t, 220_500 + n * 1024, "frame {n}");
            let want = if n == 0 {
                ClockStep::Started
            } else {
                ClockStep::Counted
            };
            assert_eq!(step, want);
        }
    }

    #[test]
    fn gap_is_respected_and_discontinuity_reanchors() {
        let mut clock = AudioClock::new(48_000, 48_000);
        assert_eq!(clock.next(0, 1024, false), 0);
        assert_eq!(clock.next(1024, 1024, false), 1024);
        // Three frames lost (3 frame durations off, beyond 1.5): re-anchored.
        assert_eq!(
            clock.next_with_action(5 * 1024, 1024, false),
            (5120, ClockStep::Reanchored)
        );
        assert_eq!(clock.next(6 * 1024 + 3, 1024, false), 6144);
        assert_eq!(
            clock.next_with_action(7 * 1024, 1024, true),
            (7168, ClockStep::Reanchored)
        );
        // A step back re-anchors without going backwards.
        let (t, step) = clock.next_with_action(0, 1024, false);
        assert_eq!(step, ClockStep::Reanchored);
        assert_eq!(t, 7169);
        clock.reset();
        assert_eq!(clock.next(10, 1024, false), 10);
    }

    #[test]
    fn aac_samples_from_config() {
        assert_eq!(aac_frame_samples(&[0x11, 0x90]), 1024);
        // AAC-LC 48 kHz stereo, frameLengthFlag set.
        assert_eq!(aac_frame_samples(&[0x11, 0x94]), 960);
        assert_eq!(aac_frame_samples(&[0x29, 0x88, 0x56, 0xe5]), 1024);
        assert_eq!(aac_frame_samples(&[]), 1024);
        assert_eq!(aac_frame_samples(&[0xff]), 1024);
    }

    #[test]
    fn opus_toc() {
        // SILK 20 ms (config 1), one frame.
        assert_eq!(opus_packet_samples(&[0x08]), Some(960));
        // CELT 20 ms (config 31), two frames.
        assert_eq!(opus_packet_samples(&[0xf9]), Some(1920));
        // Hybrid 10 ms (config 12), code 3 with 3 frames.
        assert_eq!(opus_packet_samples(&[0x63, 0x03]), Some(1440));
        // CELT 2.5 ms (config 16), code 3 with 48 frames = 120 ms.
        assert_eq!(opus_packet_samples(&[0x83, 48]), Some(5760));
        assert_eq!(opus_packet_samples(&[0x83, 49]), None);
        assert_eq!(opus_packet_samples(&[0x83, 0]), None);
        assert_eq!(opus_packet_samples(&[0x83]), None);
        assert_eq!(opus_packet_samples(&[]), None);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// A small deterministic generator for per-frame jitter over long runs.
    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *state >> 33
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]

        /// An hour of AAC frames with millisecond times jittered by up to
        /// ±3 ms: every output time is exactly the start plus the samples
        /// counted, with no drift at the end.
        #[test]
        fn no_drift_over_an_hour(
            rate in prop::sample::select(vec![22_050u32, 32_000, 44_100, 48_000]),
            samples in prop::sample::select(vec![960u32, 1024]),
            start_ms in 0i64..1_000_000,
            seed in any::<u64>(),
        ) {
            let mut clock = AudioClock::new(1_000, rate);
            let frames = 3_600 * i64::from(rate) / i64::from(samples);
            let mut state = seed;
            // The timeline is anchored at the first frame's (jittered) time.
            let first = clock.next(start_ms + (lcg(&mut state) % 7) as i64 - 3, samples, false);
            let start = rescale(start_ms, 1_000, rate);
            prop_assert!((first - start).abs() <= rescale(3, 1_000, rate) + 1);
            for n in 1..frames {
                let exact_ms = start_ms + n * i64::from(samples) * 1_000 / i64::from(rate);
                let jitter = (lcg(&mut state) % 7) as i64 - 3;
                let t = clock.next(exact_ms + jitter, samples, false);
                prop_assert_eq!(t, first + n * i64::from(samples));
            }
        }
    }

    proptest! {
        /// Whatever the input times, output times strictly increase.
        #[test]
        fn monotonic(
            steps in prop::collection::vec((-2_000i64..5_000, 1u32..4_096, any::<bool>()), 1..400),
            rate in 8_000u32..96_000,
        ) {
            let mut clock = AudioClock::new(1_000, rate);
            let mut time = 0i64;
            let mut last = None;
            for (delta, samples, disc) in steps {
                time += delta;
                let t = clock.next(time, samples, disc);
                if let Some(last) = last {
                    prop_assert!(t > last, "{} after {}", t, last);
                }
                last = Some(t);
            }
        }

        /// A gap of two frame durations or more (lost frames, a pause) is
        /// kept: the frame after it gets its own incoming time.
        #[test]
        fn gaps_are_respected(
            before in 1i64..50,
            lost in 2i64..500,
            rate in prop::sample::select(vec![44_100u32, 48_000]),
        ) {
            let mut clock = AudioClock::new(rate, rate);
            for n in 0..before {
                clock.next(n * 1024, 1024, false);
            }
            let at = (before + lost) * 1024;
            prop_assert_eq!(clock.next_with_action(at, 1024, false), (at, ClockStep::Reanchored));
            prop_assert_eq!(clock.next(at + 1024 + 7, 1024, false), at + 1024);
        }

        /// Arbitrary bytes never panic the configuration and TOC readers.
        #[test]
        fn readers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..16)) {
            let n = aac_frame_samples(&bytes);
            prop_assert!(n == 960 || n == 1024);
            if let Some(s) = opus_packet_samples(&bytes) {
                prop_assert!((120..=5_760).contains(&s));
            }
        }
    }
}
