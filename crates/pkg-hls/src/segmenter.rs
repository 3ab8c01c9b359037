//! Where segments and parts are cut, decided on the driving track's frames.
//! Sans-IO: 90 kHz times in, decisions out.
//!
//! # Target duration
//!
//! `EXT-X-TARGETDURATION` may not change during a playlist's life (RFC 8216
//! §6.2.1) and every `EXTINF`, rounded to the nearest integer, must be at
//! most it. So:
//!
//! 1. A segment normally ends at the first keyframe at least the configured
//!    target after its start.
//! 2. The target duration is fixed when the **first** segment closes, before
//!    any playlist is served: the larger of the configured target and the
//!    first segment's duration (so the stream's keyframe interval), rounded.
//!    A first segment that finds no keyframe within `max_segment` is cut
//!    there.
//! 3. Afterwards, a segment that would round above the target duration if
//!    it took one more frame is cut before that frame even when it is not a
//!    keyframe (a later GOP longer than the first one). Such a segment does
//!    not start with a keyframe; its first part is not `INDEPENDENT`.
//!
//! # Parts (LL-HLS)
//!
//! A part is closed before a frame when taking that frame and the next one
//! would exceed the declared part target (next frame's length estimated by
//! the last interval): parts are whole frames, at most `PART-TARGET`, and
//! the segment's last part may be shorter.

/// 90 kHz ticks per second.
pub const HZ: i64 = 90_000;

/// What to do before a driving frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Before the first segment: drop the frame (it is not a keyframe).
    Drop,
    /// The first segment starts with this frame.
    Start,
    /// The frame joins the current part.
    Continue,
    /// Close the current part (ending at this frame's time); the frame
    /// starts the next one.
    CutPart,
    /// Close the current segment and its last part; the frame starts the
    /// next segment. `forced`: it is not a keyframe.
    CutSegment {
        /// Cut without a keyframe to keep the target duration.
        forced: bool,
    },
}

/// The segmenter's settings, in 90 kHz ticks.
#[derive(Clone, Copy, Debug)]
pub struct Targets {
    /// Configured segment target.
    pub segment: i64,
    /// Declared part target (`PART-TARGET`), or `None` without parts.
    pub part: Option<i64>,
    /// Longest first segment without a keyframe.
    pub max_segment: i64,
}

/// Cut decisions for one packager.
#[derive(Clone, Debug)]
pub struct Segmenter {
    targets: Targets,
    target_duration: Option<u32>,
    segment_start: Option<i64>,
    part_start: i64,
    last: Option<i64>,
    interval: i64,
}

impl Segmenter {
    /// A segmenter with no segment yet.
    pub fn new(targets: Targets) -> Self {
        Segmenter {
            targets,
            target_duration: None,
            segment_start: None,
            part_start: 0,
            last: None,
            interval: 0,
        }
    }

    /// The target duration in seconds, fixed once the first segment closed.
    pub fn target_duration(&self) -> Option<u32> {
        self.target_duration
    }

    /// Start of the current segment and part (90 kHz), once started.
    pub fn current(&self) -> Option<(i64, i64)> {
        self.segment_start.map(|s| (s, self.part_start))
    }

    /// The last interval between driving frames.
    pub fn interval(&self) -> i64 {
        self.interval
    }

    /// The decision for a driving frame at `t` (90 kHz decode time).
    pub fn driving(&mut self, t: i64, keyframe: bool) -> Step {
        if let Some(last) = self.last
            && t > last
        {
            self.interval = t - last;
        }
        self.last = Some(t);
        let Some(start) = self.segment_start else {
            if !keyframe {
                return Step::Drop;
            }
            self.segment_start = Some(t);
            self.part_start = t;
            return Step::Start;
        };
        let elapsed = t - start;
        if elapsed <= 0 {
            return Step::Continue;
        }
        let natural = keyframe && elapsed >= self.targets.segment;
        let forced = !natural
            && match self.target_duration {
                // Rounds above the target duration once one more frame is in.
                Some(td) => elapsed + self.interval >= i64::from(td) * HZ + HZ / 2,
                None => elapsed + self.interval > self.targets.max_segment,
            };
        if natural || forced {
            if self.target_duration.is_none() {
                self.target_duration =
                    Some(round_secs(elapsed).max(round_secs(self.targets.segment)));
            }
            self.segment_start = Some(t);
            self.part_start = t;
            return Step::CutSegment { forced };
        }
        if let Some(part) = self.targets.part {
            let part_elapsed = t - self.part_start;
            if part_elapsed > 0 && part_elapsed + self.interval > part {
                self.part_start = t;
                return Step::CutPart;
            }
        }
        Step::Continue
    }

    /// Where the current segment ends if the stream stops or is
    /// republished now: the last frame plus the last interval.
    pub fn end(&self) -> Option<i64> {
        self.segment_start?;
        self.last.map(|l| l + self.interval)
    }

    /// Closes the current segment at `end` (a discontinuity or the end of
    /// the stream); returns its duration. The next driving frame starts a new
    /// segment (it need not be a keyframe only if it is one: a new publish
    /// starts at its cached GOP's keyframe).
    pub fn close(&mut self, end: i64) -> Option<i64> {
        let start = self.segment_start.take()?;
        let duration = (end - start).max(0);
        if self.target_duration.is_none() && duration > 0 {
            self.target_duration = Some(round_secs(duration).max(round_secs(self.targets.segment)));
        }
        self.last = None;
        Some(duration)
    }
}

/// Seconds, rounded to the nearest integer (halves up), at least 1.
pub fn round_secs(ticks: i64) -> u32 {
    u32::try_from((ticks + HZ / 2) / HZ)
        .unwrap_or(u32::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(part: bool) -> Targets {
        Targets {
            segment: 2 * HZ,
            part: part.then_some(18_900),
            max_segment: 10 * HZ,
        }
    }

    /// Feeds `frames` frames at `fps` with a keyframe every `gop` frames and
    /// returns the segment durations (ticks) and part durations of each.
    fn run(
        fps: f64,
        gop: usize,
        frames: usize,
        part: bool,
        jitter_ms: bool,
    ) -> (Vec<i64>, Vec<Vec<i64>>, Option<u32>) {
        let mut s = Segmenter::new(targets(part));
        let mut segs = Vec::new();
        let mut parts: Vec<Vec<i64>> = vec![Vec::new()];
        let (mut seg_start, mut part_start) = (0, 0);
        for i in 0..frames {
            let mut t = (i as f64 * 90_000.0 / fps).round() as i64;
            if jitter_ms {
                // RTMP: millisecond times.
                t = ((i as f64 * 1000.0 / fps).round() as i64) * 90;
            }
            match s.driving(t, i % gop == 0) {
                Step::Start => {
                    seg_start = t;
                    part_start = t;
                }
                Step::CutPart => {
                    parts.last_mut().expect("parts").push(t - part_start);
                    part_start = t;
                }
                Step::CutSegment { .. } => {
                    parts.last_mut().expect("parts").push(t - part_start);
                    parts.push(Vec::new());
                    segs.push(t - seg_start);
                    seg_start = t;
                    part_start = t;
                }
                Step::Continue | Step::Drop => {}
            }
        }
        parts.pop();
        (segs, parts, s.target_duration())
    }

    #[test]
    fn two_second_gop_gives_two_second_segments() {
        let (segs, _, td) = run(25.0, 50, 500, false, false);
        assert_eq!(td, Some(2));
        assert!(segs.iter().all(|&d| d == 2 * HZ), "{segs:?}");
    }

    #[test]
    fn long_gop_sets_the_target_duration() {
        let (segs, _, td) = run(30.0, 120, 1200, false, true);
        assert_eq!(td, Some(4));
        assert!(segs.iter().all(|&d| round_secs(d) <= 4));
    }

    #[test]
    fn longer_later_gop_is_force_cut() {
        let mut s = Segmenter::new(targets(false));
        // First GOP 2 s, then no keyframe for 10 s.
        let mut cuts = Vec::new();
        for i in 0..300 {
            let t = i * 3600;
            if let Step::CutSegment { forced } = s.driving(t, i == 0 || i == 50) {
                cuts.push((t, forced));
            }
        }
        assert_eq!(s.target_duration(), Some(2));
        assert_eq!(cuts[0], (180_000, false));
        let mut prev = 180_000;
        for &(t, forced) in &cuts[1..] {
            assert!(forced);
            assert!(round_secs(t - prev) <= 2, "{}", t - prev);
            prev = t;
        }
    }

    #[test]
    fn parts_fit_the_declared_target_at_common_rates() {
        for (fps, jitter) in [
            (25.0, false),
            (30.0, true),
            (29.97, true),
            (24.0, true),
            (60.0, true),
            (50.0, false),
        ] {
            let gop = (fps * 2.0_f64).round() as usize;
            let (_, parts, _) = run(fps, gop, 600, true, jitter);
            for seg in &parts {
                let (last, whole) = seg.split_last().expect("a part");
                for &p in whole {
                    assert!(p <= 18_900, "{fps}: {p}");
                    assert!(p * 100 >= 18_900 * 85, "{fps}: {p} under 85 %");
                }
                assert!(*last <= 18_900);
            }
        }
    }

    #[test]
    fn waits_for_a_keyframe_and_closes_on_end() {
        let mut s = Segmenter::new(targets(true));
        assert_eq!(s.driving(0, false), Step::Drop);
        assert_eq!(s.driving(3600, true), Step::Start);
        assert_eq!(s.driving(7200, false), Step::Continue);
        assert_eq!(s.end(), Some(10_800));
        assert_eq!(s.close(10_800), Some(7200));
        assert_eq!(s.target_duration(), Some(2));
        assert_eq!(s.end(), None);
        // After a close the next frame starts a segment.
        assert_eq!(s.driving(10_800, true), Step::Start);
    }
}
