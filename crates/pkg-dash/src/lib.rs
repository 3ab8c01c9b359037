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
//! let config = DashConfig { latency_target: std::time::Duration::from_secs(2), ..DashConfig::default() };
//! let app: axum::Router = dash_router(engine.context(), config);
//! // Mount `app` on an HTTP listener: GET /dash/{app}/{stream}/manifest.mpd
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # How it packages
//!
//! - **One packager per stream**, started at the stream's publish when it is
//!   always-on (every stream by default, [`DashConfig::always_on_all`]), so
//!   the first player finds the same live edge as any later one; otherwise
//!   started by the first request and stopped after
//!   [`DashConfig::idle_timeout`] without requests. Always-on packaging
//!   runs in a task that [`dash_router`] starts on the tokio runtime it is
//!   called on (none when called outside a runtime). It reads the stream with a
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
//! Low-latency mode is the default ([`DashConfig::low_latency`]): dash.js
//! 5.2, Shaka Player 5.2 and ffmpeg 5.1's DASH demuxer play it; the
//! timeline mode stays for players that need complete segments listed.
//!
//! Timeline mode (`low_latency: false`) writes a `SegmentTimeline` of the complete segments with
//! their exact durations in the track timescale, named by `$Time$`; a
//! segment appears when the keyframe after it arrives. The first MPD
//! request of a stream waits until two segments are complete, so the first
//! player starts with a buffer instead of a segment behind live.
//!
//! `timeShiftBufferDepth` is [`DashConfig::window`] segment targets, but
//! never more than the stream's age (`now - availabilityStartTime`, whole
//! seconds rounded down): no client can reach further back than the stream
//! began, and ffmpeg 5.1's DASH demuxer, whose unsigned arithmetic wraps on
//! a depth larger than that age, then reads a young stream without going
//! back to segments it read ([`mpd::time_shift_depth`]).
//!
//! The first representation's segments start with an in-band MPD update
//! event (`emsg`, `urn:mpeg:dash:event:2012`), so a player reloads the MPD
//! at each segment even when its own reload timer never started (dash.js
//! starts it on a `play` event, which a page that called `play()` early
//! never delivers to it).
//!
//! Low-latency mode writes
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
//! # The end of a stream
//!
//! When a stream ends for good (its publisher gone past the follow grace,
//! or the server stopping), its packager closes the last segment and the
//! MPD turns static: `type="static"` with `mediaPresentationDuration`, each
//! period a `SegmentTimeline` of its segments named by `$Time$` (in either
//! mode), no update period or clock. That MPD and its segments stay served
//! for [`DashConfig::linger`] (10 s), so a player's next reload learns the
//! stream is over and plays the rest; then the stream's routes answer
//! `404`. A republish within the linger starts a new packager.
//!
//! # Who may read: every request asked, players as sessions
//!
//! Every MPD request asks the kernel's authorizer (`read` of the stream,
//! protocol `dash`, with the peer's address, its `Authorization: Basic` or
//! `Bearer` credentials and the query, whose `?token=` the authorizer reads
//! itself); a refusal is answered `401` with `WWW-Authenticate`, `403`,
//! `429` or `503`. So is every init and media segment request, except one
//! whose `?token=` is the token of a live player (below), which is that
//! player's without asking again.
//!
//! **Players** are kernel sessions (listed by the API with protocol `dash`
//! next to the packager's own subscription, kickable): one per read token
//! when the authorizer issues tokens, else one per address (anonymous
//! players behind one address are one session). Each answer's body bytes
//! are counted as sent to its player (a streamed segment's when it ends). A
//! player that sent no request for [`DashConfig::player_idle_timeout`]
//! (default [`DEFAULT_PLAYER_IDLE_TIMEOUT`], 30 s) is dropped. A kicked
//! player's next request is answered `403`; its token stays refused for
//! ten minutes, longer than the authorizer would still accept it. A kick
//! ends a session, it bans nobody: a player that authenticates again (or,
//! anonymous, asks again) is a new session.
//!
//! **Tokens in URLs.** When the authorizer issues a read token for the
//! player ([`Authorizer::read_token`](tidewater_core::Authorizer::read_token)),
//! the MPD's `SegmentTemplate@initialization` and `@media` end with
//! `?token=…` (after the `$Number$`/`$Time$` name: players resolve segment
//! URLs against the MPD's URL *without* its query, so the templates must
//! carry it), and a `Location` names the MPD with it, so a player reloads
//! the MPD with its token too (`UTCTiming`'s `/dash/time` is not guarded
//! and carries none). A player keeps its token across reloads: an MPD
//! request carrying a live player's token gets the same token back, any
//! other a new one. The token stays good as long as its player does, past
//! the authorizer's own expiry (5 minutes for tidewater-auth): segment
//! requests with it are not asked about, and an MPD request with it whose
//! only fault is the token's expiry is still answered. An MPD with a token
//! is `Cache-Control: private`; segments keep their caching. **A CDN in
//! front should key its cache without the `token` parameter** (segments are
//! the same for every player; keyed with it, nothing is ever a hit), and
//! then checks tokens itself or is trusted with the streams it caches.
//! When reads are anonymous (the authorizer issues no token), URLs stay
//! plain and cacheable, as before.
//!
//! # Feature flags
//!
//! None.

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

mod config;
mod emsg;
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod mpd;
mod names;
pub mod packager;
mod players;
mod service;
mod timefmt;

#[cfg(test)]
mod tests;

pub use config::{
    ConfigError, DEFAULT_PLAYER_IDLE_TIMEOUT, DashConfig, SEGMENT_TARGET_RANGE, WINDOW_RANGE,
};
pub use http::{dash_router, dash_router_until};
