//! Where a subscription starts: the newest cached GOP's keyframe, or, for a
//! reader that asks to start with more video frames than that GOP holds yet
//! (see [`Request::start_video_frames`](crate::Request::start_video_frames)),
//! the keyframe of an earlier GOP still in the window.
//!
//! Why a reader would: ffmpeg's FLV demuxer (RTMP, HTTP-FLV) shows nothing
//! until it has analysed 40 video frames (libavformat's frame-rate probe:
//! 20 frames, doubled for FLV's millisecond time base, whatever the
//! `onMetaData` says). Joined just after a keyframe, it gets a handful in
//! the burst and waits for the rest in real time: up to 1.6 s at 25 fps. An
//! earlier keyframe gives it the 40 at once, at the price of starting that
//! much further behind live.
#![allow(
    clippy::indexing_slicing,
    reason = "the ring's slot indexes are checked against BLOCK_LEN where they are made; no network or file input is read here"
)]

use std::sync::Arc;
use std::sync::atomic::Ordering::Acquire;

use super::{Anchor, BLOCK_LEN, Block, Bus};
use crate::frame::MediaKind;

/// The block and sequence number a subscription starts at: the newest
/// anchor's, or the newest earlier keyframe's from which at least
/// `want_video` video frames are retained (the oldest acceptable one when
/// none has that many). An earlier keyframe must still be in the window and
/// at most the stream's `max_lag` (in ingest time) before the newest one:
/// the extra delay is bounded, and the subscription does not apply
/// `max_lag` until it reaches the newest keyframe (see
/// `Subscription::replay_until`).
pub(crate) fn start_point(bus: &Bus, anchor: &Anchor, want_video: usize) -> (Arc<Block>, u64) {
    let mut best = (Arc::clone(&anchor.block), anchor.seq);
    if want_video == 0 || video_frames(&anchor.block, anchor.seq, want_video) >= want_video {
        return best;
    }
    let Some(newest_us) = ingest_us(&anchor.block, anchor.seq) else {
        return best;
    };
    let max_lag = bus.policy.max_lag.as_micros() as u64;
    let tail = bus.tail_seq.load(Acquire);
    for (weak, seq) in &anchor.earlier {
        let Some(block) = weak.upgrade() else { break };
        if block.expired.load(Acquire) || *seq < tail || *seq < block.first_seq {
            break;
        }
        match ingest_us(&block, *seq) {
            Some(us) if newest_us.saturating_sub(us) <= max_lag => {}
            _ => break,
        }
        let enough = video_frames(&block, *seq, want_video) >= want_video;
        best = (block, *seq);
        if enough {
            break;
        }
    }
    best
}

/// The ingest time of frame `seq` of `block`.
fn ingest_us(block: &Block, seq: u64) -> Option<u64> {
    let index = usize::try_from(seq.checked_sub(block.first_seq)?).ok()?;
    block.slots.get(index)?.get().map(|e| e.ingest_us)
}

/// The video frames retained from `seq` (in `block`) on, counted up to `limit`.
fn video_frames(block: &Arc<Block>, seq: u64, limit: usize) -> usize {
    let mut count = 0;
    let mut block = Arc::clone(block);
    let mut index = seq.saturating_sub(block.first_seq) as usize;
    loop {
        while index < BLOCK_LEN {
            let Some(entry) = block.slots[index].get() else {
                return count;
            };
            if entry.frame.kind() == MediaKind::Video {
                count += 1;
                if count >= limit {
                    return count;
                }
            }
            index += 1;
        }
        let Some(next) = block.next.load_full() else {
            return count;
        };
        block = next;
        index = 0;
    }
}
