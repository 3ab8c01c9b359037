//! tidewater: a live-media streaming kernel and the protocols built on it.
//!
//! This umbrella crate re-exports the kernel ([`tidewater_core`]) and, behind
//! feature flags, each protocol crate as it lands. Embedders depend on this
//! crate and pick features; protocol crates depend only on the kernel.
//!
//! ```
//! use tidewater::bytes::Bytes;
//! use tidewater::{AppSpec, Codec, Engine, Event, Frame, Request, StreamKey, TrackId, TrackInfo};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tidewater::Error> {
//! let engine = Engine::builder().default_app(AppSpec::default()).build()?;
//! let key = StreamKey::parse("live/demo")?;
//! let mut publisher = engine.open_publish(Request::new(key.clone(), "embedded")).await?;
//! publisher.set_catalog(vec![TrackInfo::video(TrackId(1), Codec::H264, 640, 360)])?;
//! let mut viewer = engine.subscribe(Request::new(key, "embedded")).await?;
//! publisher.publish(Frame::video(TrackId(1), Codec::H264, 0, 0, true, Bytes::from_static(b"idr")))?;
//! let mut frames = 0;
//! while let Some(Ok(event)) = viewer.try_recv() {
//!     if let Event::Frame(frame) = event {
//!         assert_eq!(&frame.payload[..], b"idr");
//!         frames += 1;
//!     }
//! }
//! assert_eq!(frames, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | what it adds |
//! |---|---|
//! | (none) | the kernel: bus, GOP cache, catalog, clock, QoS, registries, protocol seam |
//! | `serde` | `Serialize` for snapshots and events |
//! | `rtmp` | [`rtmp`]: RTMP publish and play on one port, HTTP-FLV |
//! | `rtsp` | [`rtsp`]: RTSP publish and read, RTP over TCP or UDP (H.264, H.265, AAC, Opus) |
//! | `srt` | [`srt`]: SRT publish and read by stream id (MPEG-TS), HTTP-TS |
//! | `dash` | [`dash`]: DASH and low-latency DASH packaging (dynamic MPD, CMAF segments) |
//! | `hls` | [`hls`]: HLS (MPEG-TS) and LL-HLS (fMP4 parts) packaging |
//! | `whip` | [`whip`]: WebRTC: WHIP ingest and WHEP playback (H.264, Opus), media on one UDP port |
//! | `record` | [`record`]: recording to crash-safe fMP4 files, index, retention, playback queries |
//! | `transcode` | [`transcode`]: audio converted once per stream when a reader needs it (AAC → Opus for WHEP; Opus → AAC for RTMP, HTTP-FLV, SRT, HTTP-TS); needs libavcodec, libswresample and clang to build |
//! | `cluster` | [`cluster`]: origins and edges found through etcd, node-to-node relay, edge pulls (needs `protoc` to build) |
//! | `full` | every implemented protocol: `rtmp`, `rtsp`, `srt`, `dash`, `hls` |

#![deny(missing_docs)]
// Only re-exports today; the rule holds here too so that code added to the
// umbrella later reads input as the crates it re-exports do
// (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

pub use tidewater_core::*;

/// RTMP publish and play, and HTTP-FLV (feature `rtmp`).
#[cfg(feature = "rtmp")]
pub use tidewater_ingest_rtmp as rtmp;

/// RTSP publish and read (feature `rtsp`).
#[cfg(feature = "rtsp")]
pub use tidewater_rtsp as rtsp;

/// SRT publish and read by stream id, and HTTP-TS (feature `srt`).
#[cfg(feature = "srt")]
pub use tidewater_ingest_srt as srt;

/// DASH and low-latency DASH packaging (feature `dash`).
#[cfg(feature = "dash")]
pub use tidewater_pkg_dash as dash;

/// HLS and LL-HLS packaging (feature `hls`).
#[cfg(feature = "hls")]
pub use tidewater_pkg_hls as hls;

/// Recording to fragmented MP4 files, with an index, retention and playback
/// queries (feature `record`).
#[cfg(feature = "record")]
pub use tidewater_record as record;

/// WebRTC: WHIP ingest and WHEP playback, media on one UDP port (feature `whip`).
#[cfg(feature = "whip")]
pub use tidewater_whip as whip;

/// Audio transcoding once per stream: AAC → Opus for WHEP viewers, Opus →
/// AAC for RTMP, HTTP-FLV, SRT and HTTP-TS readers (feature `transcode`).
#[cfg(feature = "transcode")]
pub use tidewater_transcode as transcode;

/// Several nodes as one service: the stream directory in etcd, the
/// node-to-node relay and edge pulls (feature `cluster`).
#[cfg(feature = "cluster")]
pub use tidewater_cluster as cluster;
