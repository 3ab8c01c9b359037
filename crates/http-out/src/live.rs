//! A live response: a body of unbounded length (chunked transfer encoding)
//! fed by a task that reads the kernel.
//!
//! The task hands bytes to the body through a small bounded channel. A
//! client that stops reading fills the channel; after the write timeout the
//! task gives up and the response ends, so a stalled client holds no kernel
//! memory for long. A client that is merely slow makes the task fall behind,
//! and the kernel skips it to the next keyframe.
//!
//! The task follows the stream ([`Follower`]): across a republish within
//! the stream's grace the response goes on, its [`LiveEncoder`] told of
//! each new generation; it ends when the stream really ends.
//!
//! Every chunk handed to the body is counted as sent for the reader's session
//! ([`Follower::record_sent`]); a reader an operator kicks ends at its
//! next receive ([`Ending::Kicked`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use tidewater_core::{EndReason, EventRef, Follower, RecvError, StreamKey};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::cors::reply;
use crate::request::who;

/// Chunks queued between the feeding task and the response body.
pub const CHANNEL_DEPTH: usize = 64;

/// A response body fed through a channel: it ends when every sender is gone.
pub fn channel_body(rx: mpsc::Receiver<Bytes>) -> Body {
    Body::from_stream(ReceiverStream(rx))
}

/// A response body of chunks known up front, sent as they are (no copy).
pub fn chunks_body(chunks: impl IntoIterator<Item = Bytes>) -> Body {
    Body::from_stream(ChunkStream(chunks.into_iter().collect()))
}

struct ReceiverStream(mpsc::Receiver<Bytes>);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|b| b.map(Ok))
    }
}

struct ChunkStream(VecDeque<Bytes>);

impl futures_core::Stream for ChunkStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// What a live response makes of its stream's events.
pub trait LiveEncoder {
    /// The generation read next: called before the first event and after
    /// each republish (the follower is then attached to the new
    /// generation, whose catalog comes next), for state kept per
    /// generation ([`Follower::generation_state`]) and timestamp rebasing.
    fn generation(&mut self, follower: &Follower);

    /// The bytes a catalog or frame becomes (empty: nothing to send).
    fn encode(&mut self, event: EventRef<'_>) -> Bytes;
}

/// A closure is an encoder that keeps nothing per generation.
impl<F: FnMut(EventRef<'_>) -> Bytes> LiveEncoder for F {
    fn generation(&mut self, _: &Follower) {}

    fn encode(&mut self, event: EventRef<'_>) -> Bytes {
        self(event)
    }
}

/// Why a [`Feed`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The stream ended for good (no republish within its grace).
    StreamEnded,
    /// The kernel evicted the reader for falling behind repeatedly.
    Evicted,
    /// The client closed the response.
    ClientGone,
    /// The client read nothing for the write timeout.
    ClientStalled,
    /// An operator ended the reader's session.
    Kicked,
}

/// The feeding side of a live response made by [`live`].
#[derive(Debug)]
pub struct Feed {
    tx: mpsc::Sender<Bytes>,
    protocol: &'static str,
    key: StreamKey,
    peer: String,
    write_timeout: Duration,
}

/// A `200` live response of `content_type` (never cached), and the [`Feed`]
/// that writes it; run the feed on a task of its own.
pub fn live(
    protocol: &'static str,
    content_type: &'static str,
    key: StreamKey,
    peer: Option<SocketAddr>,
    write_timeout: Duration,
) -> (Response, Feed) {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let response = reply(StatusCode::OK, content_type, "no-cache", channel_body(rx));
    let feed = Feed {
        tx,
        protocol,
        key,
        peer: who(peer),
        write_timeout,
    };
    (response, feed)
}

impl Feed {
    /// Receives from `sub` and sends what `encoder` makes of each catalog and
    /// frame (nothing when it returns empty bytes), across republishes,
    /// until the stream ends, the client goes away, or the client stops
    /// reading for the write timeout. Each ending is logged with peer and
    /// stream.
    pub async fn run<E: LiveEncoder>(self, mut sub: Follower, mut encoder: E) -> Ending {
        let Feed {
            tx,
            protocol,
            key,
            peer,
            write_timeout,
        } = self;
        encoder.generation(&sub);
        let end = loop {
            let bytes = match sub.recv_ref().await {
                Ok(EventRef::Skipped { frames }) => {
                    debug!(%peer, stream = %key, "{protocol}: fell behind, skipped {frames} frames");
                    continue;
                }
                Ok(EventRef::Discontinuity { generation }) => {
                    info!(%peer, stream = %key, generation, "{protocol}: the stream was published again; playing on");
                    encoder.generation(&sub);
                    continue;
                }
                Ok(event) => encoder.encode(event),
                Err(e) => break e,
            };
            if bytes.is_empty() {
                continue;
            }
            let len = bytes.len();
            match tokio::time::timeout(write_timeout, tx.send(bytes)).await {
                Ok(Ok(())) => sub.record_sent(len),
                Ok(Err(_)) => {
                    info!(%peer, stream = %key, "{protocol}: client went away");
                    return Ending::ClientGone;
                }
                Err(_) => {
                    warn!(%peer, stream = %key, "{protocol}: client stopped reading for {write_timeout:?}; ending the response");
                    return Ending::ClientStalled;
                }
            }
        };
        match end {
            RecvError::Ended(EndReason::Kicked) if sub.is_kicked() => {
                info!(%peer, stream = %key, "{protocol}: kicked by the operator");
                Ending::Kicked
            }
            RecvError::Ended(reason) => {
                info!(%peer, stream = %key, "{protocol}: stream ended ({reason})");
                Ending::StreamEnded
            }
            RecvError::Evicted => {
                warn!(%peer, stream = %key, "{protocol}: evicted for falling behind repeatedly");
                Ending::Evicted
            }
        }
    }
}
