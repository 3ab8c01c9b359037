//! Decode timestamps for RTP video, which carries presentation times only.
//!
//! A stream whose pictures are reordered (B-frames) needs decode times that
//! rise in decode (arrival) order and never pass a picture's presentation
//! time. With a reorder depth `D` (at most `D` pictures precede any picture
//! in decode order and follow it in output order), the `n`-th decode time
//! is taken as the `(n - D)`-th smallest presentation time seen: every
//! picture's own presentation time is at least that (at most `D` earlier
//! pictures show after it), and the value is already known when picture
//! `n` arrives (a later picture cannot show before it without `D + 1`
//! earlier pictures showing after that one). So nothing is delayed: only
//! the decode times move back by about `D` frame durations. The first `D`
//! pictures get decode times one step (a frame at 30 fps, or less) apart
//! below the first presentation time.
//!
//! The depth comes from the H.264 SPS (`max_num_reorder_frames` of its VUI,
//! read with `h264-reader`; Baseline has none) when it says; otherwise it
//! starts at 0 and is learned from the pictures that arrive out of order
//! (the picture that reveals a deeper reorder gets a decode time clamped to
//! its presentation time, which the kernel's clock then repairs).
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

use std::collections::VecDeque;

/// The deepest reorder followed (H.264 allows 16; encoders use up to 4).
pub const MAX_DEPTH: usize = 16;

/// Derives one video track's decode timestamps from its presentation
/// timestamps in 32-bit wrapping RTP time (see the module docs).
#[derive(Clone, Debug)]
pub struct DtsDeriver {
    depth: usize,
    /// Whether the depth is learned from arrivals (not given by the SPS).
    learn: bool,
    /// Presentation times (unwrapped) not yet used as a decode time, ascending.
    pool: Vec<i64>,
    /// The latest presentation times in decode order, for learning and steps.
    recent: VecDeque<i64>,
    /// The previous raw timestamp and its unwrapped value.
    last: Option<(u32, i64)>,
    last_dts: Option<i64>,
    /// The step used before a frame duration is seen.
    default_step: i64,
}

impl DtsDeriver {
    /// A deriver with a known reorder depth (`Some(0)`: no reordering), or
    /// one that learns it (`None`); `default_step` is a frame duration in
    /// the track's clock for the first pictures (e.g. 3000 at 90 kHz).
    pub fn new(depth: Option<usize>, default_step: u32) -> DtsDeriver {
        DtsDeriver {
            depth: depth.unwrap_or(0).min(MAX_DEPTH),
            learn: depth.is_none(),
            pool: Vec::with_capacity(MAX_DEPTH + 1),
            recent: VecDeque::with_capacity(MAX_DEPTH + 1),
            last: None,
            last_dts: None,
            default_step: i64::from(default_step.max(1)),
        }
    }

    /// The reorder depth in force.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Sets a depth the decoder configuration states (a new SPS); the
    /// timeline carries on.
    pub fn set_depth(&mut self, depth: Option<usize>) {
        self.learn = depth.is_none();
        if let Some(d) = depth {
            self.depth = d.min(MAX_DEPTH);
        }
    }

    /// The decode timestamp of the next picture (in decode order) with
    /// presentation timestamp `pts`, in the same 32-bit wrapping clock
    /// (as an `i64` that may leave `0..2^32`: only its distance to `pts`
    /// matters to the kernel's unwrapping).
    pub fn next(&mut self, pts: u32) -> i64 {
        let ext = match self.last {
            None => i64::from(pts),
            Some((raw, ext)) => ext + i64::from(pts.wrapping_sub(raw) as i32),
        };
        self.last = Some((pts, ext));
        if self.learn {
            let shown_later = self.recent.iter().filter(|p| **p > ext).count();
            self.depth = self.depth.max(shown_later.min(MAX_DEPTH));
        }
        if self.recent.len() > MAX_DEPTH {
            self.recent.pop_front();
        }
        self.recent.push_back(ext);
        let at = self.pool.partition_point(|p| *p <= ext);
        self.pool.insert(at, ext);
        let mut dts = if self.pool.len() > self.depth {
            self.pool.remove(0)
        } else {
            // The first pictures (or a depth just learned): one step apart
            // below the smallest pending presentation time.
            let missing = (self.depth + 1 - self.pool.len()) as i64;
            // The pool holds `ext` at least (inserted above).
            self.pool.first().copied().unwrap_or(ext) - missing * self.step()
        };
        // A stream deeper than stated (or a timestamp jump) must still not
        // decode after it shows; the kernel repairs what goes back.
        if let Some(last) = self.last_dts
            && dts <= last
        {
            dts = last + 1;
        }
        dts = dts.min(ext);
        while self.pool.len() > MAX_DEPTH + 1 {
            self.pool.remove(0);
        }
        self.last_dts = Some(dts);
        i64::from(pts) - (ext - dts)
    }

    /// The frame duration: the smallest positive gap between recent
    /// presentation times, at most the default (early on the gaps seen
    /// may span reordered pictures).
    fn step(&self) -> i64 {
        let mut sorted: Vec<i64> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        sorted
            .windows(2)
            .map(|w| match w {
                [a, b] => b - a,
                _ => 0,
            })
            .filter(|d| *d > 0)
            .min()
            .map_or(self.default_step, |d| d.min(self.default_step))
    }
}

/// The reorder depth an H.264 SPS NAL unit (with its header byte) states:
/// `max_num_reorder_frames` of its VUI, 0 for Baseline profiles and
/// intra-only ones, `None` when it does not say.
pub fn h264_reorder_depth(sps: &[u8]) -> Option<usize> {
    use h264_reader::nal::sps::SeqParameterSet;
    use h264_reader::rbsp::{BitReader, decode_nal};
    let rbsp = decode_nal(sps).ok()?;
    let sps = SeqParameterSet::from_bits(BitReader::new(&*rbsp)).ok()?;
    if let Some(r) = sps
        .vui_parameters
        .as_ref()
        .and_then(|v| v.bitstream_restrictions.as_ref())
    {
        return usize::try_from(r.max_num_reorder_frames).ok();
    }
    let constraint_set3 = sps.constraint_flags.flag3();
    match u8::from(sps.profile_idc) {
        // Baseline and Constrained Baseline have no B slices; CAVLC 4:4:4
        // Intra and the High … Intra profiles no inter prediction.
        66 | 44 => Some(0),
        100 | 110 | 122 | 244 if constraint_set3 => Some(0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode order I P B B P B B … with presentation times in frames of 3000.
    fn ibbp(n: usize) -> Vec<u32> {
        let mut out = vec![0];
        let mut base = 0;
        while out.len() < n {
            out.extend([base + 3, base + 1, base + 2]);
            base += 3;
        }
        out.truncate(n);
        out.into_iter().map(|f| 1_000 + f * 3000).collect()
    }

    fn check(pts: &[u32], dts: &[i64]) {
        for (p, d) in pts.iter().zip(dts) {
            assert!(*d <= i64::from(*p), "dts {d} after pts {p}");
        }
        assert!(dts.windows(2).all(|w| w[0] < w[1]), "not rising: {dts:?}");
    }

    #[test]
    fn b_frames_get_rising_decode_times_before_their_presentation() {
        let pts = ibbp(30);
        let mut d = DtsDeriver::new(Some(1), 3000);
        let dts: Vec<i64> = pts.iter().map(|p| d.next(*p)).collect();
        check(&pts, &dts);
        // One frame behind once running; the first one step below its pts.
        assert_eq!(dts[0], 1_000 - 3000);
        let mut d = DtsDeriver::new(Some(2), 3000);
        let first: Vec<i64> = [0u32, 12_000, 6000, 3000]
            .iter()
            .map(|p| d.next(*p))
            .collect();
        assert_eq!(
            first,
            vec![-6000, -3000, 0, 3000],
            "the gaps seen early are not steps"
        );
        assert_eq!(dts[10], dts[9] + 3000);
    }

    #[test]
    fn a_pyramid_with_depth_two_and_across_the_wrap() {
        // I P B b B with a reference B (b-pyramid): P=4, B=2, b=1, b=3.
        let mut frames = vec![0u32];
        for g in 0..8u32 {
            let b = g * 4;
            frames.extend([b + 4, b + 2, b + 1, b + 3]);
        }
        let base = u32::MAX - 20_000;
        let pts: Vec<u32> = frames.iter().map(|f| base.wrapping_add(f * 3000)).collect();
        let mut d = DtsDeriver::new(Some(2), 3000);
        // Only the distance to each pts counts: put it on the unwrapped line.
        let ext_pts: Vec<u32> = frames.iter().map(|f| 20_000 + f * 3000).collect();
        let dts: Vec<i64> = pts
            .iter()
            .zip(&ext_pts)
            .map(|(p, e)| i64::from(*e) - (i64::from(*p) - d.next(*p)))
            .collect();
        assert!(pts.iter().any(|p| *p < base), "crosses the wrap");
        check(&ext_pts, &dts);
    }

    #[test]
    fn the_depth_is_learned_when_the_sps_does_not_say() {
        let pts = ibbp(40);
        let mut d = DtsDeriver::new(None, 3000);
        let dts: Vec<i64> = pts.iter().map(|p| d.next(*p)).collect();
        assert_eq!(d.depth(), 1);
        // The picture that revealed the reorder is clamped; all after it are right.
        check(&pts[4..], &dts[4..]);
        for (p, dt) in pts.iter().zip(&dts) {
            assert!(*dt <= i64::from(*p));
        }
    }

    #[test]
    fn without_reordering_decode_equals_presentation() {
        let mut d = DtsDeriver::new(None, 3000);
        for i in 0..50u32 {
            let pts = i * 3003;
            assert_eq!(d.next(pts), i64::from(pts));
        }
        assert_eq!(d.depth(), 0);
    }

    #[test]
    fn the_x264_sps_states_its_depth() {
        // x264, High profile, -bf 3 with b-pyramid: max_num_reorder_frames 2.
        let sps: &[u8] = &[
            0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03,
            0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
        ];
        assert_eq!(h264_reorder_depth(sps), Some(2));
        // Baseline without VUI: none.
        let baseline: &[u8] = &[
            0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00,
            0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x58, 0xba, 0x80,
        ];
        assert_eq!(h264_reorder_depth(baseline), Some(0));
        assert_eq!(h264_reorder_depth(&[0x67, 0x64]), None);
    }
}
