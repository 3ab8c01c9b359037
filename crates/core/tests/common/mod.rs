//! Helpers shared by the kernel's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use tidewater_core::{
    AppSpec, Codec, Engine, Event, Frame, PublishSession, RecvError, Request, StreamKey,
    StreamPolicy, Subscription, TrackId, TrackInfo,
};

pub const VIDEO: TrackId = TrackId(1);
pub const AUDIO: TrackId = TrackId(2);

pub fn key(s: &str) -> StreamKey {
    StreamKey::parse(s).expect("valid key")
}

/// A ring of 128 frames (4 blocks) and a 64-frame GOP cache, tolerant of skips:
/// for tests that make a subscriber fall out of the ring.
pub fn small_ring() -> StreamPolicy {
    StreamPolicy {
        ring_frames: 128,
        gop_frames: 64,
        max_skips: 100,
        ..StreamPolicy::default()
    }
}

pub fn policy() -> StreamPolicy {
    StreamPolicy::default()
}

pub fn engine_with(policy: StreamPolicy) -> Engine {
    Engine::builder()
        .app(
            "live",
            AppSpec {
                policy,
                ..AppSpec::default()
            },
        )
        .build()
        .expect("engine")
}

pub fn engine() -> Engine {
    engine_with(policy())
}

pub fn video_tracks() -> Vec<TrackInfo> {
    vec![TrackInfo::video(VIDEO, Codec::H264, 640, 360).with_config(Bytes::from_static(b"avcC-1"))]
}

pub fn av_tracks() -> Vec<TrackInfo> {
    vec![
        TrackInfo::video(VIDEO, Codec::H264, 640, 360).with_config(Bytes::from_static(b"avcC-1")),
        TrackInfo::audio(AUDIO, Codec::Aac, 48_000, 2).with_config(Bytes::from_static(b"\x11\x90")),
    ]
}

pub async fn publisher(engine: &Engine, k: &str) -> PublishSession {
    let mut s = engine
        .open_publish(Request::new(key(k), "test"))
        .await
        .expect("publish");
    s.set_catalog(video_tracks()).expect("catalog");
    s
}

pub async fn viewer(engine: &Engine, k: &str) -> Subscription {
    engine
        .subscribe(Request::new(key(k), "test"))
        .await
        .expect("subscribe")
}

/// Video frame `i` of a 30 fps stream with a keyframe every `gop` frames; the
/// payload carries `i` so receivers can check identity.
pub fn vframe(i: u64, gop: u64) -> Frame {
    let dts = (i * 3_000) as i64;
    Frame::video(
        VIDEO,
        Codec::H264,
        dts,
        dts,
        i.is_multiple_of(gop),
        Bytes::from(i.to_be_bytes().to_vec()),
    )
}

/// The frame index `vframe` wrote into the payload.
pub fn index_of(f: &Frame) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&f.payload[..8]);
    u64::from_be_bytes(b)
}

/// Drains everything ready now.
pub fn drain(sub: &mut Subscription) -> Vec<Result<Event, RecvError>> {
    let mut out = vec![];
    while let Some(r) = sub.try_recv() {
        let stop = r.is_err();
        out.push(r);
        if stop {
            break;
        }
    }
    out
}

/// Frame indices among drained events.
pub fn frames(events: &[Result<Event, RecvError>]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Ok(Event::Frame(f)) => Some(index_of(f)),
            _ => None,
        })
        .collect()
}

pub async fn recv_timeout(sub: &mut Subscription) -> Result<Event, RecvError> {
    tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("event within 10 s")
}
