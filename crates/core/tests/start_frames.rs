//! Readers that ask to start with more video frames than the newest GOP
//! holds (`Request::start_video_frames`) start at an earlier keyframe, within
//! bounds; everyone else starts at the newest.

mod common;

use std::time::Duration;

use common::*;
use tidewater_core::{Event, Request, StreamPolicy};

/// The first frame index a new reader asking for `frames` receives.
async fn first_frame(engine: &tidewater_core::Engine, frames: usize) -> u64 {
    let mut sub = engine
        .subscribe(Request::new(key("live/s"), "test").start_video_frames(frames))
        .await
        .expect("subscribe");
    loop {
        match sub.try_recv() {
            Some(Ok(Event::Frame(f))) => return index_of(&f),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_young_gop_starts_a_reader_that_asks_for_more_at_the_previous_keyframe() {
    let engine = engine();
    let mut p = publisher(&engine, "live/s").await;
    // GOPs of 50 frames at 25 fps; the newest has 5 frames so far.
    for i in 0..105 {
        p.publish(vframe(i, 50)).expect("publish");
        tokio::time::advance(Duration::from_millis(40)).await;
    }
    assert_eq!(first_frame(&engine, 0).await, 100, "the newest keyframe");
    assert_eq!(first_frame(&engine, 40).await, 50, "40 frames back");
    assert_eq!(
        first_frame(&engine, 100).await,
        0,
        "as far back as retained and allowed: the oldest acceptable"
    );
    // The newest GOP holds enough: no reason to go back.
    for i in 105..150 {
        p.publish(vframe(i, 50)).expect("publish");
        tokio::time::advance(Duration::from_millis(40)).await;
    }
    assert_eq!(first_frame(&engine, 40).await, 100);
}

#[tokio::test(start_paused = true)]
async fn an_earlier_start_stays_within_max_lag_and_is_not_skipped_forward() {
    let engine = engine_with(StreamPolicy {
        max_lag: Duration::from_millis(1_700),
        ..StreamPolicy::default()
    });
    let mut p = publisher(&engine, "live/s").await;
    // GOPs of 40 frames at 25 fps (1.6 s); the newest (from 160) has 16.
    for i in 0..176 {
        p.publish(vframe(i, 40)).expect("publish");
        tokio::time::advance(Duration::from_millis(40)).await;
    }
    // 120 is 1.6 s before the newest keyframe, 80 is 3.2 s: too far.
    assert_eq!(
        first_frame(&engine, 200).await,
        120,
        "one GOP back, not two"
    );
    // Starting at 120, the reader is 2.2 s behind the head, more than
    // max_lag, when it reaches the next block (128): it still reads the
    // replay through, in order, instead of being skipped to 160.
    let mut sub = engine
        .subscribe(Request::new(key("live/s"), "test").start_video_frames(40))
        .await
        .expect("subscribe");
    let got = frames(&drain(&mut sub));
    assert_eq!(got, (120..176).collect::<Vec<_>>());
}
