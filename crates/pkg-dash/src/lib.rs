//! DASH and low-latency DASH packaging of tidewater live streams: a dynamic
//! MPD and per-track CMAF segments (fMP4 from [`tidewater_media::fmp4`])
//! served over HTTP by an [`axum::Router`].
//!
//! ```
//! use tidewater_core::{AppSpec, Engine};
//! use tidewater_pkg_dash::{DashConfig, dash_router};
//!
//! # fn main() -> Result<(), tidewater_core::Error> {
//! let engine = Engine::builder().default_app(AppSpec::default()).build()?;
//! let config = DashConfig { low_latency: true, ..DashConfig::default() };
//! let app: axum::Router = dash_router(engine.context(), config);
//! // Mount `app` on an HTTP listener: GET /dash/{app}/{stream}/manifest.mpd
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # How it packages
//!
//! - **One packager per stream**, started by the first request, stopped after
//!   [`DashConfig::idle_timeout`] without requests. It reads the stream with a
//!   kernel `Follower`: a publisher reconnect (or a new decoder configuration)
//!   ends the current `Period` and starts a new one on the same
//!   availability timeline, so a player crosses it without reloading.
//! - **Segments** are cut at the video keyframe that starts each cell of a
//!   grid of [`DashConfig::segment_target`] (2 s) from the period start (a
//!   quarter of a cell early is accepted, absorbing keyframe jitter), audio
//!   at its first frame after the video cut, with one segment number for both.
//!   Each frame becomes one `moof` + `mdat` chunk the moment it arrives, so
//!   an in-progress segment can be streamed. Only [`DashConfig::window`]
//!   complete segments are kept per track, in memory.
//! - **Timestamps**: video decode times rescaled to 90 kHz from absolute
//!   values (no drift); audio times rebuilt from sample counts by
//!   [`tidewater_media::audio_clock`] in the sample-rate timescale, so RTMP's
//!   millisecond jitter never reaches the timeline.
//! - **Wall clock**: a period's start is the wall-clock time at which the
//!   kernel received its first keyframe (the publish's clock anchor), so the
//!   MPD's clock and the media agree however late the packager started.
//!   `UTCTiming` points at `/dash/time` on the same server.
//!
//! # The MPD, and the low-latency choice
//!
//! Default mode writes a `SegmentTimeline` of the complete segments with
//! their exact durations in the track timescale, named by `$Time$`; a
//! segment appears when the keyframe after it arrives. The first MPD
//! request of a stream waits until two segments are complete, so the first
//! player starts with a buffer instead of a segment behind live.
//!
//! The first representation's segments start with an in-band MPD update
//! event (`emsg`, `urn:mpeg:dash:event:2012`), so a player reloads the MPD
//! at each segment even when its own reload timer never started (dash.js
//! starts it on a `play` event, which a page that called `play()` early
//! never delivers to it).
//!
//! Low-latency mode ([`DashConfig::low_latency`]) writes
//! `SegmentTemplate@duration` with `$Number$` instead, with
//! `availabilityTimeOffset` equal to the segment duration and
//! `availabilityTimeComplete="false"`, and a `ServiceDescription` latency
//! target. A player then computes which segment starts now from the clock
//! alone and asks for it at once; the server answers with chunked transfer
//! encoding, writing each frame's chunk as it is produced. The alternative,
//! a `SegmentTimeline` whose newest entry appears only when complete, does
//! not work with dash.js (checked in its 5.x source): it only requests
//! segments its timeline lists, so it could not fetch the segment in
//! progress and would sit a segment behind. The price of `$Number$`:
//! segment *n* is nominally `[(n-1)·d, n·d)` from the period start, so the
//! publisher's keyframe interval should divide the target (GOP 1 s or 2 s
//! for a 2 s target). Segments are numbered by the grid cell they start in,
//! so a late keyframe never shifts later numbers; a GOP longer than the
//! target leaves some numbers without a segment (those requests get 404).
//!
//! # Feature flags
//!
//! None.

#![deny(missing_docs)]

mod config;
mod emsg;
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod mpd;
mod names;
pub mod packager;
mod service;
mod timefmt;

#[cfg(test)]
mod tests;

pub use config::{ConfigError, DashConfig, SEGMENT_TARGET_RANGE, WINDOW_RANGE};
pub use http::dash_router;
