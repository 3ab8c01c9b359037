//! The node-to-node relay: an edge pulls one stream from its origin over
//! TCP, in the kernel's own terms (catalog, frames, discontinuities, end),
//! framed by [`RelayCodec`] (see the crate docs for the format).

mod client;
mod codec;
mod hello;
mod server;

pub use client::{PullOutcome, pull};
pub use codec::{Message, RefuseCode, RelayCodec, fuzz_decode};
pub use server::{ClusterSecret, LISTENER, RELAY_PROTOCOL, RelayServer};

/// The relay format's version, sent in every [`Message::Hello`].
pub const VERSION: u8 = 1;

/// The largest message body accepted (a frame's payload plus 26 bytes): an
/// 8K keyframe fits many times over, a length from a corrupt stream cannot
/// make a node allocate gigabytes.
pub const MAX_BODY: usize = 16 << 20;

/// The first bytes of a [`Message::Hello`] body: a peer that is not a relay
/// (a browser, a port scanner) is told apart at once.
pub const MAGIC: [u8; 4] = *b"TWRL";
