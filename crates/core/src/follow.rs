//! Followers: subscriptions that survive a republish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::bus::{Event, RecvError, Subscription};
use crate::engine::StreamSlot;
use crate::error::EndReason;

/// Follows a stream across publish generations: what packagers, recorders and
/// relays read. When a publish ends, a follower waits up to the stream's
/// `follow_grace` for the next one and continues with
/// [`Event::Discontinuity`] followed by the new catalog; only if none comes
/// does it end.
#[derive(Debug)]
pub struct Follower {
    slot: Arc<StreamSlot>,
    changes: watch::Receiver<u64>,
    current: Option<Subscription>,
    last_generation: u64,
    id: u64,
    protocol: &'static str,
    peer: Option<SocketAddr>,
    grace: Duration,
}

impl Follower {
    pub(crate) fn new(
        slot: Arc<StreamSlot>,
        id: u64,
        protocol: &'static str,
        peer: Option<SocketAddr>,
        grace: Duration,
    ) -> Self {
        let changes = slot.watch();
        let current = slot
            .live()
            .map(|bus| Subscription::attach(bus, id, protocol, peer));
        let last_generation = current.as_ref().map_or(0, |s| s.generation());
        Follower {
            slot,
            changes,
            current,
            last_generation,
            id,
            protocol,
            peer,
            grace,
        }
    }

    /// The media-time ↔ wall-clock anchor of the generation being read.
    pub fn clock_anchor(&self) -> Option<crate::time::ClockAnchor> {
        self.current.as_ref().and_then(Subscription::clock_anchor)
    }

    /// The generation being read (0 before the first).
    pub fn generation(&self) -> u64 {
        self.last_generation
    }

    /// The next event; `Err` once the stream ended and was not published again
    /// within the grace period, at shutdown, or on eviction.
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        loop {
            let ended = match &mut self.current {
                Some(sub) => match sub.recv().await {
                    Ok(event) => return Ok(event),
                    Err(RecvError::Evicted) => return Err(RecvError::Evicted),
                    Err(RecvError::Ended(reason)) => reason,
                },
                None => EndReason::Finished,
            };
            self.current = None;
            if ended == EndReason::Shutdown {
                return Err(RecvError::Ended(ended));
            }
            let deadline = tokio::time::Instant::now() + self.grace;
            loop {
                if let Some(bus) = self.slot.latest() {
                    if bus.generation > self.last_generation {
                        let had_previous = self.last_generation != 0;
                        self.last_generation = bus.generation;
                        self.current =
                            Some(Subscription::attach(bus, self.id, self.protocol, self.peer));
                        if had_previous {
                            return Ok(Event::Discontinuity {
                                generation: self.last_generation,
                            });
                        }
                        break;
                    }
                }
                match tokio::time::timeout_at(deadline, self.changes.changed()).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(_)) | Err(_) => return Err(RecvError::Ended(ended)),
                }
            }
        }
    }
}
