//! The kernel's one error type.

use std::net::SocketAddr;

use crate::auth::{Action, Refusal};
use crate::frame::TrackId;
use crate::key::StreamKey;

/// Why a publish generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
pub enum EndReason {
    /// The publisher finished or disconnected.
    Finished,
    /// Another publisher took the stream over.
    Superseded,
    /// The idle reaper ended it: no frame within the idle timeout.
    Idle,
    /// The engine is shutting down.
    Shutdown,
    /// An operator ended the session ([`Engine::kick`](crate::Engine::kick)):
    /// a kicked publisher's generation ends with this reason (its readers see
    /// it as the end of the stream), and a kicked reader's own subscription
    /// ends with it while the stream goes on.
    Kicked,
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EndReason::Finished => "publisher finished",
            EndReason::Superseded => "taken over by a new publisher",
            EndReason::Idle => "idle timeout",
            EndReason::Shutdown => "shutdown",
            EndReason::Kicked => "kicked by the operator",
        })
    }
}

/// Errors of the kernel, each with the stream (and peer, where known) it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stream name failed validation.
    #[error("invalid stream key {key:?}: {reason}")]
    InvalidKey {
        /// The offending text, escaped and truncated.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No application of that name is configured.
    #[error("unknown application {app:?} (stream {key})")]
    UnknownApp {
        /// The application.
        app: String,
        /// The stream asked for.
        key: StreamKey,
    },
    /// The stream already has a live publisher and the application rejects duplicates.
    #[error("stream {key} is already being published by {}", crate::logs::Peer(*peer))]
    AlreadyPublishing {
        /// The stream.
        key: StreamKey,
        /// The peer publishing it now (`None`: an in-process publisher). The
        /// refused one is the peer of the request, which its listener logs.
        peer: Option<SocketAddr>,
    },
    /// The application has as many publishers as it allows.
    #[error("application {app} allows {limit} publishers; stream {key} refused")]
    PublisherLimit {
        /// The application.
        app: String,
        /// Its limit.
        limit: usize,
        /// The refused stream.
        key: StreamKey,
    },
    /// The stream has as many readers as its application allows.
    #[error("stream {key} allows {limit} readers; one more refused")]
    ReaderLimit {
        /// The stream.
        key: StreamKey,
        /// Its application's limit.
        limit: usize,
    },
    /// Nothing is published under that name.
    #[error("stream {key} is not being published")]
    NotFound {
        /// The stream.
        key: StreamKey,
    },
    /// The authorizer refused: `publish live/cam1 from 192.0.2.7 refused: …`.
    #[error("{action} {key} from {} refused: {refusal}", peer_ip(.peer))]
    Unauthorized {
        /// Publish or read.
        action: Action,
        /// The stream.
        key: StreamKey,
        /// The peer.
        peer: Option<SocketAddr>,
        /// The authorizer's answer: its kind chooses the wire answer (see
        /// [`RefusalKind`](crate::RefusalKind)), its reason is for people.
        refusal: Refusal,
    },
    /// This publish generation has ended; publishing into it is refused.
    #[error("publish of {key} (generation {generation}) has ended: {reason}")]
    PublishEnded {
        /// The stream.
        key: StreamKey,
        /// The ended generation.
        generation: u64,
        /// Why it ended.
        reason: EndReason,
    },
    /// A frame was published before any catalog.
    #[error("stream {key}: frame published before a catalog")]
    NoCatalog {
        /// The stream.
        key: StreamKey,
    },
    /// A frame names a track its catalog does not have.
    #[error("stream {key}: frame for track {track:?}, which the catalog does not have")]
    UnknownTrack {
        /// The stream.
        key: StreamKey,
        /// The track.
        track: TrackId,
    },
    /// A catalog failed validation.
    #[error("stream {key}: invalid catalog: {reason}")]
    InvalidCatalog {
        /// The stream.
        key: StreamKey,
        /// What is wrong.
        reason: &'static str,
    },
    /// A policy or engine configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A protocol worker failed.
    #[error("{protocol}: {source}")]
    Protocol {
        /// The protocol's name.
        protocol: &'static str,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The kernel's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The peer's address without its port, for refusal lines.
fn peer_ip(peer: &Option<SocketAddr>) -> String {
    peer.map_or_else(|| "an unknown address".to_string(), |p| p.ip().to_string())
}
