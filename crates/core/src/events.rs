//! Lifecycle events and the observer hook.

use std::net::SocketAddr;

use crate::error::EndReason;
use crate::key::StreamKey;

/// Something that happened to a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StreamEvent {
    /// The stream.
    pub key: StreamKey,
    /// What happened.
    pub kind: StreamEventKind,
}

/// The kinds of [`StreamEvent`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(tag = "event", rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum StreamEventKind {
    /// A publish generation started.
    PublishStarted {
        /// Its number.
        generation: u64,
        /// The ingest protocol.
        protocol: &'static str,
        /// The publisher's address.
        peer: Option<SocketAddr>,
    },
    /// A publish generation ended.
    PublishEnded {
        /// Its number.
        generation: u64,
        /// Why.
        reason: EndReason,
    },
    /// The publisher announced a new catalog version.
    CatalogChanged {
        /// The generation.
        generation: u64,
        /// The new version.
        version: u64,
    },
    /// A subscriber joined.
    SubscriberJoined {
        /// Its id.
        id: u64,
        /// Its protocol.
        protocol: &'static str,
    },
    /// A subscriber fell behind and skipped ahead to a keyframe.
    SubscriberLagged {
        /// Its id.
        id: u64,
        /// Frames it skipped.
        skipped: u64,
    },
    /// A subscriber stayed behind past the policy and was evicted.
    SubscriberEvicted {
        /// Its id.
        id: u64,
    },
    /// A subscriber left.
    SubscriberLeft {
        /// Its id.
        id: u64,
    },
}

/// A synchronous hook called for every event, on the thread where it happens.
/// Keep it cheap: it runs on subscriber and control paths (never per frame).
pub trait Observer: Send + Sync + 'static {
    /// Called for each event.
    fn on_event(&self, event: &StreamEvent);
}

/// Observes nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {
    fn on_event(&self, _event: &StreamEvent) {}
}
