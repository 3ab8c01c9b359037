//! The stream directory: who holds which stream, in etcd, and its local copy.

#[cfg(feature = "etcd")]
mod etcd;
mod map;

#[cfg(feature = "etcd")]
pub use etcd::{Claim, EtcdDirectory};
pub use map::{
    Holder, NODES, NodeInfo, ROOT, STREAMS, StreamMap, node_path, parse_stream_path, stream_path,
};
