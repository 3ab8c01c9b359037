//! Several tidewater nodes as one service: publishers land on any node (the
//! stream's **origin**), viewers connect to any node (an **edge**), and an
//! edge pulls each stream from its origin once, however many viewers it has.
//! Membership and the stream directory live in etcd; media goes node to
//! node over a small relay protocol.
//!
//! # Why etcd (and not NATS)
//!
//! The directory needs three things: entries that vanish when their node
//! dies, a compare-and-set to decide a duplicate publish cluster-wide, and
//! a watch of a prefix so edges learn of moves without polling. etcd has all
//! three as primitives (leases, transactions over `create_revision`/value,
//! prefix watches with a start revision, so no event is missed between the
//! listing and the watch), is packaged by Debian (`etcd-server` 3.4), and is
//! what operators already run next to Kubernetes. NATS JetStream KV offers
//! per-key TTLs and watches too, but a key's TTL is per bucket and is not
//! tied to a node's liveness (each key would need its own refresh), and
//! compare-and-set is per key only. The price of etcd is the client:
//! `etcd-client` (0.21, default features off: no TLS) speaks gRPC through
//! tonic and prost and needs `protoc` at build time. It adds 26 crates to
//! the server's build (tonic, prost, prost-build with petgraph and
//! pulldown-cmark, tonic-build, tokio-stream, hyper-timeout, …; hyper, h2,
//! tower and axum were there already). Measured with `cargo build -p
//! tidewater-cluster --target-dir <empty> -j2`: 58 s without the `etcd`
//! feature, then 164 s more to add it, on two cores shared with other builds
//! (load average 8 to 11), so read it as a ratio: the gRPC stack costs
//! about three times the rest of the crate's dependency tree. The relay
//! codec and the directory's map do not need it: they build with the
//! `etcd` feature off (the fuzz target does).
//!
//! # The directory in etcd
//!
//! | key | value | lease |
//! |---|---|---|
//! | `/tidewater/nodes/{node_id}` | JSON [`NodeInfo`](directory::NodeInfo): id, relay address, advertised addresses, load (origin streams, readers) | the node's |
//! | `/tidewater/streams/{app}/{stream}` | JSON [`Holder`](directory::Holder): origin node id, its relay address, its publish generation | the origin node's |
//!
//! Each node holds one **lease** (TTL `lease_ttl`, 10 s by default), renewed
//! every third of it; everything it writes is attached to it, so a node that
//! dies (SIGKILL, power, network) leaves the directory with all its streams
//! when the lease expires, with nobody cleaning up. A node that loses its
//! lease (etcd restarted or unreachable past the TTL) grants a new one and
//! writes its node key and every stream it holds again. A node that stops
//! cleanly revokes its lease.
//!
//! When a publish starts on a node (any ingest protocol; the kernel's
//! `PublishStarted` event, not the protocols, tells the cluster), the node
//! **claims** the stream in one etcd transaction, decided by the
//! application's `duplicate` policy:
//!
//! - `reject`: put the key only if it does not exist (`create_revision == 0`),
//!   else read who holds it; held by another node, the publish here is ended.
//!   That is the last word, for the race only: a publish of a stream the
//!   node's copy of the directory already shows held elsewhere is refused
//!   *before* it is accepted (see *Admission* below).
//! - `take_over`: put unconditionally. The node that held it sees, in its
//!   watch, a put by another node at a later revision than its own and ends
//!   its local publish; edges see the key move and follow it.
//!
//! **Admission.** Under `reject`, the cluster's authorizer
//! ([`ClusterSecret`], the one chain the engine and the cluster share: the
//! server builds it once) asks the node's map after the server's own
//! authorizer let the publisher in (a peer without credentials learns
//! nothing of the cluster): a stream another node holds is refused there,
//! as a duplicate on one server is, on every protocol, with the holder
//! named to the publisher and in the log (`publish refused: live/a is held
//! by node "a" of the cluster ([cluster]) and its application rejects a
//! second publisher (duplicate = "reject"): …`). The refusal is a
//! `Forbidden` one, so each protocol answers it as it answers its
//! authorizer's (RTMP `NetStream.Publish.Denied` with that description,
//! which ffmpeg prints as `Server error: …`; SRT rejection 2403; RTSP and
//! WHIP 403), and it is counted under the listener counters of `cluster`,
//! reason `already_publishing`. The map is read in memory (no etcd round
//! trip per publish), so it can lag the directory by the watch's delay:
//! two nodes admitting one stream within that window both pass, and the
//! transaction then decides, ending the loser's publish just after it was
//! accepted (it may deliver a few frames to nobody first). Publishes the
//! server trusts without asking its authorizer (a `[[pull]]` camera) are
//! decided by the transaction alone. `take_over` is not checked at
//! admission: it always claims.
//!
//! When the publish ends, the node deletes the key in a transaction that
//! compares the value (so a newer claim by another node is never deleted).
//! The **generation** in the value is the origin's publish generation: an
//! edge reconnects when the holder's node or relay address changes.
//!
//! Every node watches `/tidewater/streams/` (listing first, then watching
//! from the listing's revision + 1) into a local map ([`StreamMap`]): an
//! edge decides from memory whether a stream exists elsewhere.
//!
//! # Edge pulls
//!
//! The kernel asks its on-demand sources when a reader (RTMP, SRT, RTSP,
//! WHEP, an HLS or DASH packager) asks for a stream that is not live here
//! ([`Engine::add_on_demand`](tidewater_core::Engine::add_on_demand)). The
//! cluster's source ([`Edges`]) answers for streams the map says another
//! node holds: it starts one pull task per stream (a second reader finds it
//! running) and tells the reader to wait up to `pull_wait` (5 s). The pull
//! connects to the origin's relay, and on the first catalog opens an
//! ordinary local publish (protocol `relay`), so the GOP cache, every output
//! and every packager work at the edge as on the origin, and later readers
//! join from the edge's cache at once.
//!
//! The pull stops when nobody has read the stream here for `idle_grace`
//! (10 s): viewers over any protocol and HLS/DASH players count (the
//! engine's sessions of the stream, counted once a second per pull), the
//! server's own always-on packagers and recorders do not, or every stream
//! an edge ever pulled would stay pulled. When the origin's connection fails, the pull keeps its local
//! publish open and follows the directory for `failover_grace` (20 s):
//!
//! - another node claims the stream while the local publish is still open
//!   (`take_over`, or a key that moved): the pull connects there and goes
//!   on in the same local publish, and readers here see a timestamp
//!   discontinuity (the kernel's clock rebases the jump and flags it);
//! - no node holds the stream any more (the dead origin's lease expired,
//!   or the publish ended there): the local publish ends, as a publish on a
//!   single server does, and readers here stay for the kernel's follow
//!   grace (`follow_grace_ms`, 10 s) waiting for the next one; when the
//!   publisher reconnects to any node (this one included: nothing here
//!   holds the stream, so `reject` lets it in) and the directory says so,
//!   the pull opens the next local publish and those readers follow into
//!   it, with a discontinuity, not an end.
//!
//! A working pull goes on when its key merely vanishes (etcd restarted
//! empty): only a failed connection and an empty directory end it.
//!
//! # The relay
//!
//! TCP, one connection per pulled stream, edge to origin. Not RTSP: the
//! kernel's frames and catalog go as they are (every codec the kernel knows,
//! decoder configurations, frame rates and bit rates unchanged; only the
//! timestamp wrap is reset, since the origin already unwrapped them), with no
//! repacketizing at either end. Every message is
//!
//! ```text
//! type: u8 | body length: u32 BE (≤ 16 MiB) | body
//! ```
//!
//! | type | direction | body |
//! |---|---|---|
//! | 1 hello | edge → origin | `TWRL`, version (1), node id, token, `app/stream` (strings: u16 length + UTF-8) |
//! | 2 accepted | origin → edge | generation u64 |
//! | 3 refused | origin → edge | code u8 (1 unauthorized, 2 not found, 3 other), reason |
//! | 4 catalog | origin → edge | track count u8, then per track: id u32, codec u8, timescale u32, wrap u8, presence flags u8, then the present fields (config: u32 length + bytes; video: width, height u32, frame rate u32/u32; audio: rate u32, channels u8; bit rate u32) |
//! | 5 frame | origin → edge | track u32, codec u8, flags u8 (keyframe 1, discontinuity 2), pts i64, dts i64, payload (the rest) |
//! | 6 discontinuity | origin → edge | the origin's new generation u64 |
//! | 7 end | origin → edge | reason u8 |
//! | 8 ping | origin → edge | empty, every second without media |
//!
//! A new version of the format changes the hello's version byte; an origin
//! refuses a version it does not speak by name. The origin tells a hello
//! from anything else by its first five bytes (type 1, at most 64 KiB) and
//! waits `relay_hello_timeout` (5 s by default; `[cluster]
//! relay_hello_timeout_ms`) for the rest, with at most
//! `relay_max_connections` (4096) relay connections open at once; whatever
//! else reaches the port is closed
//! unanswered, with a WARN line naming the peer and the cause (at most 20
//! per 10 s, then a count of those left out) and a count in
//! `tidewater_listener_refusals_total{listener="relay",reason=…}`. [`RelayCodec`] is sans-IO
//! (a `tokio_util` codec: bytes in, messages out), bounded, and fuzzed
//! (`fuzz/` target `cluster_relay`, and its property-test twin).
//!
//! **Authentication** goes through the auth seam: the edge's hello carries
//! the cluster's shared secret, which the origin checks in constant time;
//! its read of the stream and the edge's local publish present the secret
//! as a bearer token to [`ClusterSecret`], an authorizer wrapped around the
//! server's own, which lets them in (protocol `relay` only) and hands every
//! other request to the server's authorizer. The relay reader is an
//! ordinary session at the origin (listed, counted, kickable, protocol
//! `relay`, user `cluster`). The relay is plain TCP: run it on a private
//! network (TLS for it is not in this phase).
//!
//! # Limits of this phase
//!
//! - A duplicate publish under `reject` is refused at admission only when
//!   the node's copy of the directory already shows the stream held
//!   elsewhere; two nodes admitting it at once (within the watch's delay,
//!   milliseconds on a LAN) both accept it, and the publisher whose claim
//!   loses is ended right after (see *Admission*).
//! - The protocol listeners count the admission refusal as they count any
//!   refusal of their authorizer (`unauthorized`, and RTMP says
//!   `NetStream.Publish.Denied`, not the `BadName` of a local duplicate);
//!   its own cause is the `cluster` listener's `already_publishing`. The
//!   `[auth]` figures (`tidewater_auth_*`) do not count it: `[auth]` said yes.
//! - An origin's publisher reconnecting to another node with `reject` is
//!   refused until the dead node's lease expires (up to `lease_ttl`);
//!   `take_over` moves the stream at once.
//! - The relay is not encrypted; etcd may be (`https://` endpoints with
//!   the `tls` feature and a CA file), with or without user and password.
//!
//! # Feature flags
//!
//! - `etcd` (default): the etcd directory and [`Cluster`]. Without it only
//!   the relay, the local map and the edge source build (no gRPC stack).
//! - `tls`: TLS to etcd.

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

mod admission;
mod config;
pub mod directory;
mod edge;
mod error;
#[cfg(feature = "etcd")]
mod node;
pub mod relay;

pub use config::{
    ClusterConfig, DEFAULT_RELAY_HELLO_TIMEOUT, DEFAULT_RELAY_MAX_CONNECTIONS,
    MAX_RELAY_HELLO_TIMEOUT, MIN_RELAY_HELLO_TIMEOUT,
};
pub use directory::StreamMap;
pub use edge::Edges;
pub use error::{Error, Result};
#[cfg(feature = "etcd")]
pub use node::Cluster;
pub use relay::{ClusterSecret, RelayCodec};

/// Entry points of the fuzz targets.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::relay::fuzz_decode as cluster_relay;
}
