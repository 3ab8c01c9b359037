//! A live response: a body of unbounded length (chunked transfer encoding)
//! fed by a task that reads the kernel.
//!
//! The task hands bytes to the body through a small bounded channel. A
//! client that stops reading fills the channel; after the write timeout the
//! task gives up and the response ends, so a stalled client holds no kernel
//! memory for long. A client that is merely slow makes the task fall behind,
//! and the kernel skips it to the next keyframe.
//!
//! Every chunk handed to the body is counted as sent for the reader's session
//! ([`Subscription::record_sent`]); a reader an operator kicks ends at its
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
use tidewater_core::{EndReason, EventRef, RecvError, StreamKey, Subscription};
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

/// Why a [`Feed`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The publish ended for good.
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
    /// Receives from `sub` and sends what `encode` makes of each catalog and
    /// frame (nothing when it returns empty bytes), until the publish ends,
    /// the client goes away, or the client stops reading for the write
    /// timeout. Each ending is logged with peer and stream.
    pub async fn run<F>(self, mut sub: Subscription, mut encode: F) -> Ending
    where
        F: FnMut(EventRef<'_>) -> Bytes,
    {
        let Feed {
            tx,
            protocol,
            key,
            peer,
            write_timeout,
        } = self;
        let end = loop {
            let bytes = match sub.recv_ref().await {
                Ok(EventRef::Skipped { frames }) => {
                    debug!(%peer, stream = %key, "{protocol}: fell behind, skipped {frames} frames");
                    continue;
                }
                Ok(event) => encode(event),
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
