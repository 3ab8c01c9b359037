//! Recording of live streams to crash-safe fragmented MP4 on disk, an
//! index per stream, retention, and the queries playback is built on.
//!
//! A [`Recorder`] is one more consumer of the kernel: for every stream whose
//! key matches one of its path globs (`live/*`), it follows the stream from
//! its publish on (across republishes within the application's grace
//! period, like the packagers) and writes
//! `{dir}/{app}/{stream}/{start}.mp4`, where `start` is the wall-clock time
//! of the file's first frame (`2026-12-07T06-23-44-123Z.mp4`).
//!
//! # The files
//!
//! Each file is fragmented MP4 (the shared writer of
//! [`tidewater_media::fmp4`]): an init segment, then one `moof` + `mdat`
//! per *part*. A part closes at every keyframe and at the first frame after
//! [`RecordConfig::part`] (default 1 s); it is written with one `write` and
//! flushed to the OS. A new file starts at the first keyframe after
//! [`RecordConfig::segment`] (default 60 s), at a republish, at a change of
//! decoder configuration, and after frames were lost. The recorded tracks
//! are the stream's first video and first audio track: H.264, H.265, AV1,
//! AAC and Opus (what the fMP4 writer maps).
//!
//! Timestamps are on the *publish timeline* (0 at the publish's first
//! keyframe), so the files of one publish continue each other and their
//! fragments can be served back to back (see [`Library::range`]).
//!
//! # Crash safety
//!
//! After a `kill -9` or a power loss the tail of the file being written may
//! be a partial box. On start, [`Recorder::run`] scans every file the index
//! does not list, cuts the file after its last complete `moof` + `mdat`
//! ([`index::repair`]) and indexes it: everything up to the last complete
//! part plays. (Parts are flushed to the OS, not `fsync`ed; a file is
//! `fsync`ed when it closes. A power loss can therefore lose the parts the
//! OS had not written yet, never the file's readability.)
//!
//! # Slow and full disks
//!
//! Each stream has a writer thread fed through a bounded queue (at most
//! [`RecordConfig::queue_bytes`]): the stream's task never waits for the
//! disk. When the queue is full the recorder drops what is pending and
//! resumes at the next keyframe in a new file (counted in
//! [`Stats::keyframe_drops`]). A write error (a full disk) stops recording
//! that stream with an error log line, counted in [`Stats::disk_errors`] and
//! shown by [`Library::status`]; the stream and its viewers are unaffected.
//!
//! # Index
//!
//! `{dir}/{app}/{stream}/index.jsonl` holds one line per finished file
//! ([`index::Segment`]: start, publish-timeline base, init length, codecs,
//! and each fragment's offset, length, time, duration and whether it starts
//! on a keyframe). Listing and playback read it and never scan files, except
//! the one being written (known in memory) and files the index misses. A
//! lost index is rebuilt from the files on start. The [`Library`] keeps
//! what it read of each index (from the repair on start on), reads only the
//! lines appended since, and lists a directory again only when it changes:
//! a list or a range over a month of 60 s segments takes milliseconds, at
//! the cost of the parsed index in memory (about 100 MB for a month of one
//! stream with 1 s parts).
//!
//! # Retention
//!
//! [`RecordConfig::retention`] (`"7d"`, see [`parse_duration`]) and
//! [`RecordConfig::max_bytes`], per path rule or for all, enforced every
//! [`RecordConfig::sweep_interval`] by [`Recorder::sweep`]; the file being
//! written is never deleted. A file being downloaded may be deleted: on
//! Unix its reader keeps reading it to the end.
//!
//! # Playback
//!
//! [`Library`] answers the server's playback routes: [`Library::spans`]
//! (continuous spans), [`Library::playlist`] (an HLS VOD playlist with byte
//! ranges into the files, an `EXT-X-MAP` per file, `EXT-X-DISCONTINUITY`
//! where the publish timeline breaks, segments that start on keyframes) and
//! [`Library::range`] (the pieces of one fragmented MP4 of a range, cut at
//! the keyframe at or before its start, ending early at a republish or a
//! configuration change).
//!
//! ```
//! use tidewater_core::{AppSpec, CancellationToken, Engine};
//! use tidewater_record::{PathRule, RecordConfig, Recorder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::builder().default_app(AppSpec::default()).build()?;
//! let config = RecordConfig {
//!     dir: std::env::temp_dir().join("tidewater-doc-recordings"),
//!     paths: vec![PathRule::new("live/*")],
//!     retention: tidewater_record::parse_duration("7d"),
//!     ..RecordConfig::default()
//! };
//! let recorder = Recorder::new(engine.context(), config)?;
//! let shutdown = CancellationToken::new();
//! let task = tokio::spawn(recorder.clone().run(shutdown.clone()));
//! // … publish live/cam1: it is recorded; recorder.library() lists it …
//! shutdown.cancel();
//! task.await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! None. The umbrella crate `tidewater` re-exports this crate as
//! `tidewater::record` with its feature `record`.
//!
//! # Not done yet
//!
//! MPEG-TS as a second format; leases that keep retention from deleting a
//! file being read (deletion is safe on Unix, see above); per-fragment
//! `fsync` as an option; a more compact index for very long recordings.

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

mod cache;
mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod index;
mod library;
mod mux;
mod recorder;
mod stats;
pub mod time;
mod writer;

pub use config::{ConfigError, PathRule, RecordConfig, glob, parse_duration};
pub use library::{Cut, Library, Piece, RangePlan, Span, StreamStatus, playlist, spans};
pub use mux::{FileStart, FragmentOut, Muxer, Output, Targets};
pub use recorder::{Error, PROTOCOL, Recorder};
pub use stats::{Stats, StatsSnapshot};

#[cfg(test)]
mod tests;
