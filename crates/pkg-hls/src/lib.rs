//! HLS (MPEG-TS) and LL-HLS (fMP4 parts) packaging of tidewater live
//! streams, whatever protocol they came in on, served over HTTP from memory.
//!
//! - **Classic HLS**: `GET /hls/{app}/{stream}/index.m3u8`: MPEG-TS segments
//!   cut on keyframes near [`HlsConfig::segment_target`] (2 s), a sliding
//!   window of [`HlsConfig::window`] (6) segments.
//! - **LL-HLS** (draft-pantos-hls-rfc8216bis): `GET /llhls/{app}/{stream}/index.m3u8`:
//!   an fMP4 init segment (`EXT-X-MAP`), segments made of ~200 ms parts
//!   (`EXT-X-PART`, `INDEPENDENT=YES` on parts that start with a keyframe),
//!   `EXT-X-PART-INF`, `EXT-X-PRELOAD-HINT`, `EXT-X-SERVER-CONTROL` with
//!   `CAN-BLOCK-RELOAD=YES` and `PART-HOLD-BACK` = 3 × `PART-TARGET`;
//!   blocking playlist reload (`_HLS_msn`, `_HLS_part`) and a request for the
//!   hinted part wait for it (three target durations at most, then `503`).
//! - `master.m3u8` next to each: `BANDWIDTH` (measured peak segment rate),
//!   `CODECS` (RFC 6381, from the decoder configurations), `RESOLUTION`,
//!   `FRAME-RATE`.
//!
//! See [`router`] for every route and the headers (CORS, cache control,
//! content types) and status codes.
//!
//! ```
//! use tidewater_core::{AppSpec, Engine};
//! use tidewater_pkg_hls::{Hls, HlsConfig, router};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::builder().app("live", AppSpec::default()).build()?;
//! let hls = Hls::new(engine.context(), HlsConfig::default())?;
//! // Always-on streams (every stream by default) are packaged from their publish on:
//! let shutdown = tidewater_core::CancellationToken::new();
//! tokio::spawn(hls.clone().run_always_on(shutdown.clone()));
//! // The routes, to merge into the application's HTTP router.
//! let _app: axum::Router = router(hls);
//! shutdown.cancel();
//! # Ok(())
//! # }
//! ```
//!
//! # How
//!
//! Packaging happens **once per stream**, however many viewers: one
//! packager task per flavour follows the stream with a kernel
//! [`Follower`](tidewater_core::Follower) and keeps the playlist, segments
//! and parts in a bounded in-memory window; every request reads from it.
//! By default every stream is **always-on** ([`HlsConfig::always_on_all`]):
//! [`Hls::run_always_on`] starts its packagers at the publish, so the first
//! player finds segments and parts made in real time and the same live edge
//! as any later one (hls.js in low-latency mode sits at about 1 s whether it
//! opens the stream 1 s, 6 s or 60 s after the publish). Otherwise the first
//! request for a stream starts its packagers, a stream nobody requested for
//! [`HlsConfig::idle_timeout`] stops being packaged and starts again on the
//! next request, and the first playlist is answered as soon as the first
//! segment is complete (the kernel hands the packager the cached GOP, so
//! that is one keyframe interval at most); its segment and parts are then
//! the cached GOP replayed at once, and a player that trusts the playlist's
//! edge starts that far behind live.
//!
//! The packaging logic is sans-IO and tested on synthetic streams:
//! [`normalize`] (one continuous timeline: video at 90 kHz, audio times
//! rebuilt from sample counts, continuing across a republish),
//! [`segmenter`] (where segments and parts are cut, and how the target
//! duration is chosen and kept), [`ll`] and [`ts`] (the two packers),
//! [`playlist`] (the window and the playlist writer). `validate` (behind
//! the `validate` feature) checks playlists against RFC 8216 and the LL-HLS
//! rules; the unit tests run it on every update, the end-to-end tests on
//! what the server serves.
//!
//! # Access: authorization, tokens, players
//!
//! - **Every playlist request** (multivariant, media, LL-HLS blocking
//!   reload) is put to the engine's [`Authorizer`](tidewater_core::Authorizer)
//!   as `read` of the stream over `hls`, with the peer, the
//!   `Authorization` header's credentials (Basic or Bearer) and the query
//!   (`?token=`). A refusal is answered as
//!   [`tidewater_http::refusal_response`] makes it: `401` with
//!   `WWW-Authenticate` challenges when credentials are missing or wrong,
//!   `403`, `429` or `503`.
//! - **Signed tokens in URIs.** When the authorizer hands out a read token
//!   for the identity it recognized
//!   ([`IngestContext::read_token`](tidewater_core::IngestContext::read_token)),
//!   every URI the playlists carry — the media playlist in the
//!   multivariant one, segments, parts, `EXT-X-MAP`, preload hints,
//!   rendition reports — gets `?token=…` (`&token=…` after a query of its
//!   own), so a player that authenticated once fetches everything else
//!   without credentials. The token names the **player**: a playlist
//!   reload with it gets the same token in its URIs, and it stays good for
//!   as long as that player's session lives, even past the authorizer's
//!   own expiry (5 minutes for tidewater-auth's): playback is never cut.
//!   Such a reload is still authorized, with a fresh token for the same
//!   identity shown to the authorizer in place of the player's (so an
//!   expired token never counts as a failed attempt). A player that
//!   reloads with its credentials and no token (some do not keep the
//!   multivariant playlist's query) stays the same player: it is found by
//!   stream, flavour, user and address.
//! - **Segments, parts, init segments** carrying the token of a live player
//!   of that stream and flavour are served without asking the authorizer
//!   (the token was issued here); any other request for them is asked about
//!   like a playlist.
//! - **Anonymous reads** (the authorizer hands out no token) keep plain
//!   URIs, so playlists and segments stay cacheable: the media playlist is
//!   rendered once per change and the same bytes go to every anonymous
//!   player. Tokenized players get the cached rendering with their token
//!   added, per request.
//! - **A CDN or cache in front** should key its cache **without the `token`
//!   query parameter**, or it stores every segment once per player. It then
//!   serves what it cached without asking this server, so a protected
//!   stream behind a shared cache is only as protected as the cache makes
//!   it (its own token check, or keep such streams off it).
//! - **Players are sessions.** Each player is registered with the engine
//!   ([`PlayerSession`](tidewater_core::PlayerSession), protocol `hls` or
//!   `llhls`, its first address and user): one per token, or one per
//!   address, stream and flavour when reads are anonymous. The bytes of
//!   every answer are counted to it. One with no request for
//!   [`HlsConfig::player_idle_timeout`] (default 30 s) is dropped; its token
//!   is then only as good as the authorizer says. The packager itself is
//!   listed too, as `hls-packager` or `llhls-packager`: it follows the
//!   stream with the rights of the player that started it.
//! - **Kicked players.** A player kicked through the engine gets `403` on
//!   its next request and is forgotten; its token is refused from then on
//!   (for an hour, longer than any read token lives). A kick ends a
//!   session, it does not ban: a player with valid credentials may start a
//!   new one, and an anonymous one at the same address does on its next
//!   request. Take the permission away to keep someone out.
//! - Tokens are written in URIs percent-encoded where needed (signed read
//!   tokens never need it) and compared as written.
//!
//! # Decisions
//!
//! - **Target duration.** Fixed when the first segment closes: the larger
//!   of the configured target and the first segment (so the keyframe
//!   interval). A later, longer GOP is cut without a keyframe rather than
//!   let an `EXTINF` round above it (see [`segmenter`]).
//! - **`PART-TARGET` 5 % above the configured part target.** Parts are whole
//!   frames; RTMP's millisecond times make six 30 fps frames 200 or 201 ms.
//! - **Republish.** A publisher that comes back within the application's
//!   follow grace continues the same playlist after `EXT-X-DISCONTINUITY`
//!   (the discontinuity sequence counts them as they leave the window); the
//!   timeline continues where it stopped, so PTS and `tfdt` keep increasing.
//! - **Epoch in every URI.** Segment, part and init URIs carry a token of
//!   the packager instance, so they can be cached as `immutable`: a later
//!   packaging of the same stream never reuses a URI.
//! - **Own playlist writer.** `m3u8-rs` 6 cannot write the LL-HLS tags (see
//!   [`playlist`]); it parses every playlist back in the tests.
//! - **No delta updates.** `_HLS_skip` is accepted and ignored and
//!   `CAN-SKIP-UNTIL` is not offered: with a 6-segment window a delta
//!   update would skip nothing.
//!
//! # Feature flags
//!
//! - `validate` (off): the playlist checker, `validate` (RFC 8216 and the
//!   LL-HLS rules, every playlist also parsed with `m3u8-rs`, which it
//!   pulls in), and the fuzzing entry points that run it. For tests and
//!   fuzzing: the packager itself never needs it. The crate's own tests
//!   turn it on (a dev-dependency on itself).
//! - `transcode` (off; on through the umbrella's `transcode`, so in the
//!   server): classic HLS carries an Opus stream's audio (a WHIP publish)
//!   as AAC, from the stream's one Opus → AAC conversion that its RTMP, SRT
//!   and HTTP-TS readers share (`tidewater-transcode`, started by the
//!   first that needs it); LL-HLS carries the Opus. Without it the TS
//!   segments carry the Opus as it is.
//!
//! The umbrella crate `tidewater` exposes this crate as `tidewater::hls`
//! behind its `hls` feature.

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

/// The end-of-publish methods both packers share, built on their own
/// `close` (which ends the segment in progress).
macro_rules! packer_endings {
    () => {
        /// The publish ended and another follows: close the segment in progress.
        pub fn discontinuity(&mut self, pl: &mut PlaylistState) {
            self.close(pl);
            pl.mark_discontinuity();
        }

        /// The stream ended for good.
        pub fn finish(&mut self, pl: &mut PlaylistState) {
            self.close(pl);
            pl.end();
        }
    };
}

mod access;
mod audio;
mod config;
mod error;
#[cfg(feature = "validate")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod ll;
pub mod master;
pub mod normalize;
mod players;
pub mod playlist;
pub mod segmenter;
mod service;
pub mod ts;
#[cfg(feature = "validate")]
pub mod validate;

#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod sim_tests;

pub use config::{ConfigError, DEFAULT_PLAYER_IDLE_TIMEOUT, HlsConfig};
pub use error::Error;
pub use http::router;
pub use service::Hls;
