//! An SRT publisher: datagrams of MPEG-TS → demuxer → the kernel.
//!
//! The publish ending from outside — an operator's kick
//! ([`Engine::kick`](tidewater_core::Engine::kick)), a takeover, the engine
//! stopping — is waited for next to the socket
//! ([`PublishSession::closed`]): the connection is shut down at once
//! (a shutdown to the peer), whether the publisher keeps sending or sends
//! nothing.

// This module reads what the network sends: no panics on it.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use tidewater_core::{CancellationToken, EndReason, PublishSession};
use tidewater_media::ts::{DemuxEvent, TsDemuxer};
use tracing::{info, warn};

use crate::connection::SrtConnection;
use crate::error::{Error, Result};

pub(crate) async fn run(
    mut socket: SrtConnection,
    mut session: PublishSession,
    peer: SocketAddr,
    read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let key = session.key().clone();
    let mut demux = TsDemuxer::new();
    let mut frames = 0u64;
    let closed = session.closed();
    tokio::pin!(closed);
    let mut ended_by: Option<EndReason> = None;
    let result: Result<()> = loop {
        let msg = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            reason = &mut closed => {
                info!(%peer, stream = %key, "srt publish ended: {reason}");
                ended_by = Some(reason);
                break Ok(());
            }
            m = tokio::time::timeout(read_timeout, socket.next()) => m,
        };
        let data = match msg {
            Err(_) => {
                warn!(%peer, stream = %key, "srt publisher sent nothing for {read_timeout:?}; closing");
                break Ok(());
            }
            Ok(None) => {
                info!(%peer, stream = %key, "srt publish ended: the peer closed");
                break Ok(());
            }
            Ok(Some((_, data))) => data,
        };
        if let Err(source) = demux.push(&data) {
            break Err(Error::Demux {
                peer,
                stream: key.to_string(),
                source,
            });
        }
        if let Err(e) = deliver(&mut demux, &mut session, peer, &mut frames) {
            break Err(e);
        }
    };
    if let Err(e) = result {
        let ended = match &e {
            Error::Kernel { source, .. } => match **source {
                tidewater_core::Error::PublishEnded { reason, .. } => Some(reason),
                _ => None,
            },
            _ => None,
        };
        match ended {
            // Ended from outside between two looks at `closed`.
            Some(reason) => {
                info!(%peer, stream = %key, "srt publish ended: {reason}");
                ended_by = Some(reason);
            }
            None => warn!(%peer, stream = %key, "srt publish refused and closed: {e}"),
        }
    } else if ended_by.is_none() {
        demux.end_live();
        let _ = deliver(&mut demux, &mut session, peer, &mut frames);
    }
    let stats = demux.stats();
    info!(
        %peer, stream = %key,
        frames, packets = stats.packets, lost = stats.discontinuities, dropped_frames = stats.dropped_frames,
        cut_at_end = stats.unterminated_at_end,
        "srt publish finished"
    );
    session.finish().await;
    if ended_by.is_some() {
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.shut_down()).await;
    } else {
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close()).await;
    }
}

fn deliver(
    demux: &mut TsDemuxer,
    session: &mut PublishSession,
    peer: SocketAddr,
    frames: &mut u64,
) -> Result<()> {
    let kernel = |source, session: &PublishSession| Error::Kernel {
        peer,
        stream: session.key().to_string(),
        source: Box::new(source),
    };
    while let Some(ev) = demux.poll() {
        match ev {
            DemuxEvent::Tracks(tracks) => {
                session
                    .set_catalog(tracks)
                    .map_err(|e| kernel(e, session))?;
            }
            DemuxEvent::Frame(frame) => {
                session.publish(frame).map_err(|e| kernel(e, session))?;
                *frames += 1;
            }
        }
    }
    Ok(())
}
