//! Audio transcoding for the tidewater kernel: AAC → Opus for WebRTC
//! viewers of RTMP, SRT and RTSP streams, and Opus → AAC for RTMP,
//! HTTP-FLV and MPEG-TS readers of WebRTC (WHIP) streams, **once per
//! stream and target codec**, started when the first reader needs it and
//! stopped when the last one leaves.
//!
//! | source audio | WHEP | RTMP, HTTP-FLV | TS (SRT, HTTP-TS, TS-HLS) | fMP4 (LL-HLS, DASH, record) | RTSP |
//! |---|---|---|---|---|---|
//! | AAC | Opus (transcoded here) | AAC | AAC | AAC | AAC |
//! | Opus (WHIP) | Opus | AAC (transcoded here) | AAC (transcoded here) | Opus | Opus |
//!
//! Wired: WHEP (`tidewater-whip`), RTMP players, HTTP-FLV and RTMP pushes
//! (`[[push]]`, `tidewater-ingest-rtmp`), SRT readers and HTTP-TS
//! (`tidewater-ingest-srt`), TS-HLS (`tidewater-pkg-hls`; LL-HLS carries
//! the Opus), each behind its `transcode` feature, which the umbrella's
//! `transcode` feature turns on. Those that need AAC pick the track and
//! the frames with [`select`] ([`aac_in_place_of_opus`], [`aac_frames`]),
//! so they all agree: they announce the AAC track in place of the
//! catalog's Opus one (sequence header, `onMetaData`, PMT) on the Opus
//! track's clock and write one tag or PES per converted packet.
//!
//! # What it does
//!
//! [`Pipeline`] (sans-IO): decode (AAC-LC from its AudioSpecificConfig,
//! mono or stereo, 44.1 or 48 kHz and every other ADTS rate; Opus at
//! 48 kHz), resample to 48 kHz (libswresample; more than two channels are
//! downmixed to stereo), queue, encode: Opus in 20 ms packets (960
//! samples; 96 kbit/s stereo, 64 kbit/s mono) or AAC-LC at 48 kHz in
//! 1 024-sample frames (128 / 96 kbit/s) with its AudioSpecificConfig
//! ([`output_track`]). Output times are in 48 kHz ticks and come from the
//! input's: consecutive packets are contiguous, and the queue's head is
//! moved to the input's timeline whenever the two disagree by more than one
//! output frame (a lost packet, a source clock that runs fast), so nothing
//! drifts however long the stream runs. A packet that does not decode is
//! skipped and logged (the first and every 500th), never a panic.
//!
//! [`AudioOutput`] shares one pipeline per (publish generation, target
//! codec) among every reader, as a derived output of the kernel (see
//! [`shared`](crate::shared)); readers of a republish attach to the new
//! generation's.
//!
//! # Library decision: libavcodec through `ffmpeg-next`
//!
//! One library covers both directions and the resampling: libavcodec's
//! AAC decoder and AAC-LC encoder, libopus through libavcodec's `libopus`
//! wrapper (Debian's libavcodec is built with it), libavcodec's Opus
//! decoder, and libswresample. The alternatives checked:
//!
//! - `symphonia` (pure Rust, MPL-2.0) decodes AAC-LC but encodes nothing,
//!   and has no Opus;
//! - `opus`/`audiopus` bind libopus (bundled C sources, built with cmake
//!   unless a system libopus is found) but do nothing for AAC;
//! - the only AAC *encoder* crates bind fdk-aac (`fdk-aac-sys`, bundled
//!   C++ under the Fraunhofer FDK licence, which Debian keeps out of main),
//!   a third library with a licence exception of its own;
//! - a resampler would have been a fourth crate (`rubato`).
//!
//! `ffmpeg-next` 9 (maintained, builds against FFmpeg 3.4 to 8, detects the
//! version at build time) links Debian's FFmpeg 5.1 dynamically; its
//! binding crate runs bindgen, so the build needs clang. Its licence is the
//! WTFPL, accepted in `deny.toml` with that reason; the FFmpeg libraries
//! themselves are LGPL-2.1+ and linked dynamically. Clean build of the
//! binding and wrapper: about 50 s on this 2-core machine. The workspace
//! forbids `unsafe` code: this crate uses the wrapper's safe API only
//! (which is why an AAC decoder is fed ADTS built from the
//! AudioSpecificConfig rather than the configuration as `extradata`).
//!
//! # What building and running need installed
//!
//! `cargo build` / `cargo run --release` of the server (which turns the
//! umbrella's `transcode` feature on) need, on Debian 12:
//!
//! ```text
//! apt-get install pkg-config clang libclang-dev \
//!     libavcodec-dev libavformat-dev libavutil-dev libswresample-dev
//! ```
//!
//! and at run time the libraries those pull in (`libavcodec59`,
//! `libswresample4`, `libopus0`). `cargo xtask install` installs them.
//!
//! # Tests
//!
//! The crate's unit tests put a 440 Hz sine through AAC (44.1 kHz, mono
//! and stereo) → Opus and Opus → AAC, decode the result and check its
//! frequency, its length (within one frame plus the codecs' delay) and
//! its contiguous times; bad packets are skipped; a conversion started
//! again never steps back in time. End to end (through the `tidewater`
//! binary, `tests/tests/webrtc.rs`): Chromium plays over WHEP an ffmpeg
//! RTMP publish with AAC and receives audio with a level; Chromium
//! publishes over WHIP and ffmpeg decodes AAC over RTMP, SRT and HTTP-TS
//! (packets 1 024 samples apart, starting with the video and keeping pace);
//! `tests/tests/whip_audio.rs`: ffmpeg decodes H.264 + AAC over TS-HLS of
//! a Chromium WHIP publish, and a second server receives its RTMP push as
//! H.264 + AAC, one conversion serving both.

#![deny(missing_docs)]
// Modules here read network or file input: no indexing, unwrap, expect or
// panic outside tests (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

mod error;
mod fifo;
pub mod pipeline;
pub mod select;
pub mod shared;
#[cfg(test)]
mod tests;

pub use error::Error;
pub use pipeline::{OUTPUT_RATE, Packet, Pipeline, output_track};
pub use select::{aac_frames, aac_in_place_of_opus};
pub use shared::{AudioOutput, Transcoders, format, packets};
