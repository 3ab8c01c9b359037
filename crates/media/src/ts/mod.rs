//! MPEG-TS: a muxer from frames ([`TsMuxer`]) and a sans-IO demuxer to
//! frames ([`TsDemuxer`]).
//!
//! The muxer writes packets through `mpeg2ts` (PAT, PMT with its CRC, PES
//! headers, adaptation fields and stuffing). The demuxer reads packets,
//! PSI and PES headers itself: `mpeg2ts`'s reader is `io::Read`-driven,
//! fails a packet of a PID it has not yet seen in a PMT (every packet before
//! the first PMT of a stream joined mid-way), and rejects a whole PMT over
//! one stream type it does not list; a demuxer of network input must skip
//! those and carry on.
//!
//! # A live output's start, and what ffmpeg's probe waits for
//!
//! A live output starts each reader with a PAT and a PMT (one program, video
//! then audio, the PCR on the video PID), then the keyframe whose first packet
//! carries the PCR and `random_access_indicator`, its parameter sets inserted
//! before it, then every later frame. That is everything a demuxer needs:
//! libavformat with `scan_all_pmts=0` (its default for applications such as
//! mpv) ends `avformat_find_stream_info` once it has the PMT, both streams'
//! parameters and 20 video frames (its frame-rate analysis).
//!
//! ffmpeg's command-line tools (ffmpeg, ffplay, ffprobe) open every input with
//! `scan_all_pmts=1`, and then the MPEG-TS demuxer never tells the probe that
//! the program is complete: the probe reads until one stream holds
//! `analyzeduration` (5 s) of packet durations or `probesize` (5 MB) of
//! packets. On a live source that is 5 s of media, of which only what the
//! reader was sent at once (the cached GOP) comes early; the rest comes in
//! real time. Nothing in the TS ends that wait without misstating media time;
//! only a reader's start with at least 5 s of media does (measured in
//! BENCHMARKS.md, "First frame in ffmpeg").
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use tidewater_core::{Codec, Frame, TrackId, TrackInfo};
//! use tidewater_media::ts::{DemuxEvent, TsDemuxer, TsMuxer};
//!
//! let track = TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2)
//!     .with_config(Bytes::from_static(&[0x11, 0x90]));
//! let mut mux = TsMuxer::new(&[track])?;
//! let mut out = BytesMut::new();
//! mux.write_psi(&mut out);
//! for i in 0..3 {
//!     let frame = Frame::audio(TrackId(2), Codec::Aac, i * 1024, Bytes::from_static(&[0x21, 0x10, 0x04]));
//!     mux.write_frame(&frame, &mut out)?;
//! }
//! assert_eq!(out.len() % 188, 0);
//!
//! let mut demux = TsDemuxer::new();
//! demux.push(&out)?;
//! demux.flush();
//! let mut frames = 0;
//! while let Some(ev) = demux.poll() {
//!     match ev {
//!         DemuxEvent::Tracks(t) => assert_eq!(t[0].codec, Codec::Aac),
//!         DemuxEvent::Frame(f) => {
//!             assert_eq!(f.pts, frames * 1920); // 1024 samples at 48 kHz in 90 kHz ticks
//!             frames += 1;
//!         }
//!     }
//! }
//! assert_eq!(frames, 3);
//! # Ok::<(), tidewater_media::Error>(())
//! ```

mod demux;
mod mux;
mod opus;
mod packet;
mod pes;
mod psi;

pub use demux::{AUDIO_TRACK, DemuxEvent, DemuxStats, TsDemuxer, VIDEO_TRACK};
pub use mux::TsMuxer;

/// PID of the video stream the muxer writes.
pub const VIDEO_PID: u16 = 0x100;
/// PID of the audio stream the muxer writes.
pub const AUDIO_PID: u16 = 0x101;
/// PID of the PMT the muxer writes.
pub const PMT_PID: u16 = 0x1000;
/// The one program number the muxer writes.
pub const PROGRAM_NUMBER: u16 = 1;
/// Size of a TS packet.
pub const PACKET_SIZE: usize = 188;

#[cfg(test)]
mod tests;
