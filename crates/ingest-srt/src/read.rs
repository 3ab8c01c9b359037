//! An SRT reader: the stream's shared TS bytes sent in 1316-byte messages.
//!
//! The reader follows its stream: across a republish within the stream's
//! `follow_grace` it goes on with the new generation's TS (see
//! [`TsOutput`]); it ends when the stream really ends.
//!
//! Each frame's bytes are counted as sent to the reader
//! ([`Follower::record_sent`]) once they are queued on its connection. A
//! reader an operator kicks ([`Engine::kick`](tidewater_core::Engine::kick))
//! ends at its next receive, woken at once if it waits; its connection is
//! shut down then and there (a shutdown to the peer, nothing more sent).

// This module reads what the network sends: no panics on it.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tidewater_core::{CancellationToken, EventRef, Follower, RecvError, StreamKey};
use tracing::{debug, info, warn};

use crate::connection::SrtConnection;
use crate::output::TsOutput;

/// Seven TS packets: the SRT live-mode payload libsrt and ffmpeg use.
pub(crate) const MESSAGE: usize = 7 * 188;

/// How much longer than the latency a reader's connection stays open after
/// the stream's last bytes (sending and acknowledging them).
const LINGER_MARGIN: Duration = Duration::from_millis(250);

pub(crate) async fn run(
    mut socket: SrtConnection,
    mut sub: Follower,
    key: StreamKey,
    peer: SocketAddr,
    write_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut ts = TsOutput::of(&sub, &key);
    let (incoming, outgoing) = socket.split_mut();
    let mut sent = 0u64;
    let mut ended = None;
    loop {
        let bytes: Bytes = tokio::select! {
            _ = shutdown.cancelled() => break,
            msg = incoming.next() => match msg {
                Some(_) => continue, // a reader has nothing to say; ignore it
                None => {
                    info!(%peer, stream = %key, "srt read ended: the peer closed ({sent} bytes sent)");
                    break;
                }
            },
            ev = sub.recv_ref() => match ev {
                Ok(EventRef::Catalog(_)) => continue,
                Ok(EventRef::Skipped { frames }) => {
                    debug!(%peer, stream = %key, "srt reader fell behind: skipped {frames} frames to a keyframe");
                    continue;
                }
                Ok(EventRef::Frame(f)) => ts.bytes(&f),
                Ok(EventRef::Discontinuity { generation }) => {
                    info!(%peer, stream = %key, generation, "srt reader follows the republished stream");
                    ts = ts.follow(&sub);
                    continue;
                }
                Err(RecvError::Ended(reason)) => {
                    ended = Some(reason);
                    break;
                }
                Err(RecvError::Evicted) => {
                    warn!(%peer, stream = %key, "srt reader evicted for falling behind repeatedly");
                    break;
                }
            },
        };
        if bytes.is_empty() {
            continue;
        }
        let now = Instant::now();
        let send = async {
            let mut at = 0;
            while at < bytes.len() {
                let end = (at + MESSAGE).min(bytes.len());
                outgoing.feed((now, bytes.slice(at..end))).await?;
                at = end;
            }
            outgoing.flush().await
        };
        match tokio::time::timeout(write_timeout, send).await {
            Ok(Ok(())) => {
                sent += bytes.len() as u64;
                sub.record_sent(bytes.len());
                tracing::trace!(%peer, stream = %key, "sent {} bytes", bytes.len());
            }
            Ok(Err(e)) => {
                info!(%peer, stream = %key, "srt read ended: {e}");
                break;
            }
            Err(_) => {
                warn!(%peer, stream = %key, "srt reader accepted nothing for {write_timeout:?}; closing");
                break;
            }
        }
    }
    let kicked = ended.is_some() && sub.is_kicked();
    match ended {
        Some(_) if kicked => {
            info!(%peer, stream = %key, "srt read ended: kicked by the operator ({sent} bytes sent)");
        }
        Some(reason) => {
            info!(%peer, stream = %key, "srt read ended: stream ended ({reason}; {sent} bytes sent)");
        }
        None => {}
    }
    if ended.is_some() && !kicked {
        // srt-protocol sends its shutdown as soon as the last packet is
        // acknowledged, and a libsrt receiver drops what it still holds for
        // play-out then (one latency's worth: the publish's last frames).
        // Closing one latency later lets it play them.
        let linger = socket.latency() + LINGER_MARGIN;
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(linger) => {}
        }
    }
    if kicked {
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.shut_down()).await;
    } else {
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close()).await;
    }
}
