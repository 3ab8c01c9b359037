//! Decoded samples waiting for the encoder, and the presentation time of
//! the oldest one, kept from the input's timestamps rather than counted.
//!
//! The encoder takes fixed frames (960 samples for 20 ms of Opus, 1 024
//! for AAC) while the decoder hands out whatever one input packet holds
//! (1 024 AAC samples at 44.1 kHz become about 1 115 at 48 kHz). The FIFO
//! sits between them. Its head time moves on by the samples taken out, so
//! consecutive output frames are exactly contiguous; every input checks
//! that head time against its own timestamp (less what is still queued)
//! and moves it there when the two disagree by more than the tolerance.
//! A source whose clock runs slightly fast or slow against its sample
//! count (or loses a packet) therefore never drifts more than the
//! tolerance from the input's timeline, however long it runs.

use std::collections::VecDeque;

/// Planar samples of up to two channels with the time of the first one.
#[derive(Debug)]
pub(crate) struct Fifo {
    channels: Vec<VecDeque<f32>>,
    /// Time of the oldest queued sample, in the output rate's ticks;
    /// `None` before the first input.
    head: Option<i64>,
    /// How far (ticks) the head may stray from what the input says.
    tolerance: i64,
    /// At most this many samples per channel are held; older ones are
    /// dropped (a bound, never reached while the encoder keeps up).
    capacity: usize,
    /// Times the head was moved to follow the input.
    pub(crate) realigned: u64,
}

impl Fifo {
    /// A FIFO of `channels` channels holding at most `capacity` samples
    /// each, realigned when the input strays more than `tolerance` ticks.
    pub(crate) fn new(channels: usize, tolerance: i64, capacity: usize) -> Fifo {
        Fifo {
            channels: (0..channels.max(1)).map(|_| VecDeque::new()).collect(),
            head: None,
            tolerance,
            capacity,
            realigned: 0,
        }
    }

    /// Queued samples per channel.
    pub(crate) fn len(&self) -> usize {
        self.channels.first().map_or(0, VecDeque::len)
    }

    /// Adds the samples decoded from an input whose first sample is at
    /// `time` (output ticks). `planes` has one slice per input channel; a
    /// mono input fills both channels of a stereo FIFO, extra input
    /// channels beyond the FIFO's are ignored (the resampler downmixes
    /// before this).
    pub(crate) fn push(&mut self, time: i64, planes: &[&[f32]]) {
        let Some(first) = planes.first() else {
            return;
        };
        let queued = self.len() as i64;
        // Where the input says the oldest queued sample is.
        let said = time - queued;
        match self.head {
            Some(head) if (said - head).abs() <= self.tolerance => {}
            Some(_) => {
                self.head = Some(said);
                self.realigned += 1;
            }
            None => self.head = Some(said),
        }
        for (i, channel) in self.channels.iter_mut().enumerate() {
            let plane = planes.get(i).unwrap_or(first);
            channel.extend(plane.iter().take(first.len()));
        }
        let over = self.len().saturating_sub(self.capacity);
        if over > 0 {
            for channel in &mut self.channels {
                channel.drain(..over);
            }
            self.head = self.head.map(|h| h + over as i64);
        }
    }

    /// Takes `n` samples per channel and their time, once that many are queued.
    pub(crate) fn pop(&mut self, n: usize) -> Option<(i64, Vec<Vec<f32>>)> {
        if self.len() < n || n == 0 {
            return None;
        }
        let head = self.head?;
        let out = self
            .channels
            .iter_mut()
            .map(|c| c.drain(..n).collect())
            .collect();
        self.head = Some(head + n as i64);
        Some((head, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_contiguous_and_follow_small_jitter_without_moving() {
        let mut fifo = Fifo::new(2, 480, 48_000);
        let input = vec![0.5f32; 1115];
        let mut times = Vec::new();
        // 44.1 kHz AAC frames at 48 kHz, their times rounded to ms first
        // (as RTMP carries them): jitter under the tolerance.
        for i in 0..100i64 {
            let exact = i * 1024 * 48_000 / 44_100;
            let ms = (exact * 1000 / 48_000) * 48;
            fifo.push(ms, &[&input]);
            while let Some((t, planes)) = fifo.pop(960) {
                assert_eq!(planes.len(), 2);
                assert_eq!(planes[1].len(), 960);
                times.push(t);
            }
        }
        assert_eq!(fifo.realigned, 0);
        assert!(times.windows(2).all(|w| w[1] - w[0] == 960), "{times:?}");
    }

    #[test]
    fn a_clock_running_fast_is_followed_within_the_tolerance() {
        let mut fifo = Fifo::new(1, 960, 48_000);
        let input = vec![0.0f32; 960];
        let mut last = 0;
        // The input's times advance 1 % faster than its samples: after
        // 3 000 frames (a minute) the sample count is 600 ms behind.
        for i in 0..3000i64 {
            let time = i * 960 * 101 / 100;
            fifo.push(time, &[&input]);
            while let Some((t, _)) = fifo.pop(960) {
                assert!((t - (time - fifo.len() as i64)).abs() <= 960 + 960);
                last = t;
            }
        }
        let said = 2999 * 960 * 101 / 100;
        assert!((last - said).abs() <= 960, "{last} vs {said}");
        assert!(fifo.realigned > 0);
    }

    #[test]
    fn the_bound_drops_the_oldest() {
        let mut fifo = Fifo::new(1, 0, 1000);
        fifo.push(0, &[&[1.0; 800]]);
        fifo.push(800, &[&[2.0; 800]]);
        assert_eq!(fifo.len(), 1000);
        let (t, planes) = fifo.pop(1000).expect("full");
        assert_eq!(t, 600);
        assert_eq!(planes[0][0], 1.0);
        assert_eq!(planes[0][999], 2.0);
    }
}
