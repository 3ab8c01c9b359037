//! Datagrams on the media port that no session takes: counted per cause in
//! the kernel's listener counters (listener [`LISTENER`]: metrics
//! `tidewater_listener_refusals_total{listener="webrtc",reason=…}`) and
//! logged naming the peer, at most [`LogLimiter::per_listener`]'s burst
//! per interval with a count of the lines left out, so that a scan or a
//! flood of garbage costs a counter increment each, not a log line each.
//!
//! [`LogLimiter::per_listener`]: tidewater_core::logs::LogLimiter::per_listener
// Handles datagrams no session takes (anyone's bytes): no indexing,
// unwrap, expect or panic outside tests (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

use std::net::SocketAddr;
use std::sync::Arc;

use tidewater_core::ListenerStats;
use tracing::info;

/// The media port's name in the listener counters.
pub const LISTENER: &str = "webrtc";

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Junk {
    /// Neither STUN, DTLS, RTP nor RTCP (RFC 7983's first-byte ranges).
    Malformed,
    /// WebRTC-looking traffic from an address no session knows, or STUN
    /// with an ICE username no session has (a stale peer, a scan).
    UnknownPeer,
}

impl Junk {
    /// The counter's reason label (a fixed word, never peer text).
    pub fn reason(self) -> &'static str {
        match self {
            Junk::Malformed => "malformed",
            Junk::UnknownPeer => "unknown_peer",
        }
    }

    /// What the cause means, for a log line.
    pub fn describe(self) -> &'static str {
        match self {
            Junk::Malformed => "neither STUN, DTLS, RTP nor RTCP",
            Junk::UnknownPeer => "no WebRTC session has this address or ICE username",
        }
    }
}

/// Counts and logs the datagrams no session accepts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Strangers {
    stats: Arc<ListenerStats>,
}

impl Strangers {
    /// Counting into `stats` (the engine's listener counters of [`LISTENER`]).
    pub fn new(stats: Arc<ListenerStats>) -> Self {
        Strangers { stats }
    }

    /// A datagram of `len` bytes from `peer` was dropped for `junk`.
    pub fn dropped(&self, peer: SocketAddr, junk: Junk, len: usize) {
        self.stats.refused(junk.reason());
        if let Some(note) = self.stats.log_limit().check_now() {
            info!(
                peer = %peer,
                "webrtc: dropped a datagram of {len} bytes from {peer} on the media port ({}): {}{note}",
                junk.reason(),
                junk.describe()
            );
        }
    }
}

impl Strangers {
    /// An ICE-TCP connection from `peer` was closed for `why` (logged at
    /// the same bounded rate), counted for `junk` when its bytes were junk.
    pub fn closed(&self, peer: SocketAddr, junk: Option<Junk>, why: &str) {
        if let Some(junk) = junk {
            self.stats.refused(junk.reason());
        }
        if let Some(note) = self.stats.log_limit().check_now() {
            info!(
                peer = %peer,
                "webrtc: closed the ICE-TCP connection of {peer}: {why}{note}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::{AppSpec, Engine};

    #[test]
    fn every_dropped_datagram_is_counted_by_cause() {
        let engine = Engine::builder()
            .default_app(AppSpec::default())
            .build()
            .expect("engine");
        let strangers = Strangers::new(engine.listener_stats(LISTENER));
        let peer: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        for _ in 0..100 {
            strangers.dropped(peer, Junk::Malformed, 12);
        }
        strangers.dropped(peer, Junk::UnknownPeer, 100);
        let listeners = engine.listeners();
        let webrtc = listeners
            .iter()
            .find(|l| l.name == LISTENER)
            .expect("the webrtc listener's counters");
        let count = |reason: &str| {
            webrtc
                .refusals
                .iter()
                .find(|(r, _)| *r == reason)
                .map(|(_, n)| *n)
        };
        assert_eq!(count("malformed"), Some(100), "{webrtc:?}");
        assert_eq!(count("unknown_peer"), Some(1), "{webrtc:?}");
    }
}
