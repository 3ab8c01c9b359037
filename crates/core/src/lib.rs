//! The tidewater kernel: a live stream's frames fanned out, zero-copy and
//! without locks on the publish path, from one publisher to any number of
//! subscribers, with instant start from the cached GOP, a slow subscriber
//! only ever hurting itself, and the stream's catalog, clock and QoS kept once
//! for every protocol.
//!
//! This crate knows no protocol and no container. Protocol crates depend on
//! the seam ([`InboundProtocol`], [`IngestContext`], [`PublishRegistry`],
//! [`PlaybackRegistry`], [`EventBus`]) and convert frames to and from the
//! canonical payload forms documented in [`frame`].
//!
//! ```
//! use bytes::Bytes;
//! use tidewater_core::{AppSpec, Codec, Engine, Event, Frame, Request, StreamKey, TrackId, TrackInfo};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tidewater_core::Error> {
//! let engine = Engine::builder().app("live", AppSpec::default()).build()?;
//! let key = StreamKey::parse("live/cam1")?;
//!
//! // Publish: announce the tracks, then frames.
//! let mut session = engine.open_publish(Request::new(key.clone(), "example")).await?;
//! session.set_catalog(vec![TrackInfo::video(TrackId(1), Codec::H264, 1280, 720)])?;
//! session.publish(Frame::video(TrackId(1), Codec::H264, 0, 0, true, Bytes::from_static(b"idr")))?;
//!
//! // A late joiner starts at once from the cached GOP: catalog, then keyframe.
//! let mut viewer = engine.subscribe(Request::new(key, "example")).await?;
//! assert!(matches!(viewer.recv().await, Ok(Event::Catalog(_))));
//! match viewer.recv().await {
//!     Ok(Event::Frame(f)) => assert!(f.is_keyframe()),
//!     other => panic!("{other:?}"),
//! }
//! session.finish().await;
//! assert!(viewer.recv().await.is_err());
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! - `serde`: `Serialize` for snapshots, events and policies (the server's API uses it).

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

mod auth;
pub mod bus;
mod catalog;
mod contain;
mod engine;
mod error;
mod events;
mod follow;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
mod key;
pub mod logs;
mod players;
mod policy;
mod protocol;
mod qos;
mod registry;
mod session;
mod snapshot;
pub mod time;

pub use auth::{
    Action, AuthRequest, Authorizer, Credentials, DigestCredentials, Identity, PermitAll, Refusal,
    RefusalKind, UnknownAction,
};
pub use bus::{Event, EventRef, FrameRef, OutputFormat, RecvError, SharedFrame, Subscription};
pub use catalog::{AudioParams, Catalog, TrackInfo, VideoParams};
pub use contain::contained;
#[cfg(any(test, feature = "test-hooks"))]
pub use contain::hook;
pub use engine::{Engine, EngineBuilder, OnDemandSource, Request};
pub use error::{EndReason, Error, Result};
pub use events::{NoopObserver, Observer, StreamEvent, StreamEventKind};
pub use follow::Follower;
pub use frame::{Codec, Frame, FrameFlags, MediaKind, TrackId};
pub use key::StreamKey;
pub use players::{PlayerInfo, PlayerSession};
pub use policy::{AppSpec, DuplicatePublish, StreamPolicy};
pub use protocol::{
    BoundAddr, CONNECTION_GRACE, InboundProtocol, IngestContext, drain_connections,
};
pub use qos::{
    HistogramSnapshot, LATENCY_BUCKETS_US, QosSnapshot, ReaderMetrics, StreamMetrics,
    SubscriberSnapshot,
};
pub use registry::{
    EventBus, ListenerSnapshot, ListenerStats, OpenConnection, PlaybackRegistry, PublishRegistry,
    Registry,
};
pub use session::PublishSession;
pub use snapshot::{CatalogSnapshot, SessionKind, SessionSnapshot, StreamSnapshot, TrackSnapshot};
pub use time::{ClockAnchor, TimestampWrap, TrackClock, rescale};

/// Re-exported so embedders and protocol crates share one version.
pub use bytes;
/// Re-exported for [`InboundProtocol::serve`].
pub use tokio_util::sync::CancellationToken;
