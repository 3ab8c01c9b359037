//! Followers: subscriptions that survive a republish.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::bus::{Event, RecvError, Subscription};
use crate::engine::StreamSlot;
use crate::error::EndReason;
use crate::qos::SessionInfo;

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
    /// Who follows: every generation's subscription carries the same id.
    info: SessionInfo,
    grace: Duration,
    /// Set while between generations: why the last one ended and until when
    /// a republish is waited for.
    gap: Option<Gap>,
}

#[derive(Clone, Copy, Debug)]
struct Gap {
    reason: EndReason,
    deadline: tokio::time::Instant,
}

impl Follower {
    pub(crate) fn new(slot: Arc<StreamSlot>, info: SessionInfo, grace: Duration) -> Self {
        let changes = slot.watch();
        let current = slot
            .live()
            .map(|bus| Subscription::attach(bus, info.clone()));
        let last_generation = current.as_ref().map_or(0, |s| s.generation());
        Follower {
            slot,
            changes,
            current,
            last_generation,
            info,
            grace,
            gap: None,
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

    /// This follower's id (unique within the engine; the same for every
    /// generation it reads).
    pub fn id(&self) -> u64 {
        self.info.id
    }

    /// Counts `bytes` written for this follower (see
    /// [`Subscription::record_sent`]), on the generation being read; bytes
    /// reported between generations are not counted.
    #[inline]
    pub fn record_sent(&self, bytes: usize) {
        if let Some(sub) = &self.current {
            sub.record_sent(bytes);
        }
    }

    /// The next event; `Err` once the stream ended and was not published again
    /// within the grace period, at shutdown, or on eviction.
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        loop {
            if let Some(sub) = &mut self.current {
                match sub.recv().await {
                    Ok(event) => return Ok(event),
                    Err(RecvError::Evicted) => return Err(RecvError::Evicted),
                    // Kicked itself (not its publisher): no republish is awaited.
                    Err(e @ RecvError::Ended(EndReason::Kicked)) if sub.is_kicked() => {
                        return Err(e);
                    }
                    Err(RecvError::Ended(reason)) => {
                        self.current = None;
                        self.gap = Some(Gap {
                            reason,
                            deadline: tokio::time::Instant::now() + self.grace,
                        });
                    }
                }
            }
            // Between generations. The gap (and its deadline) lives in the
            // follower, not in this future, so a `recv` dropped while waiting
            // (in a `select!`, under a timeout) does not restart the grace.
            let gap = *self.gap.get_or_insert(Gap {
                reason: EndReason::Finished,
                deadline: tokio::time::Instant::now() + self.grace,
            });
            if gap.reason == EndReason::Shutdown {
                return Err(RecvError::Ended(gap.reason));
            }
            loop {
                if let Some(bus) = self.slot.latest()
                    && bus.generation > self.last_generation
                {
                    let had_previous = self.last_generation != 0;
                    self.last_generation = bus.generation;
                    self.gap = None;
                    self.current = Some(Subscription::attach(bus, self.info.clone()));
                    if had_previous {
                        return Ok(Event::Discontinuity {
                            generation: self.last_generation,
                        });
                    }
                    break;
                }
                match tokio::time::timeout_at(gap.deadline, self.changes.changed()).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(_)) | Err(_) => return Err(RecvError::Ended(gap.reason)),
                }
            }
        }
    }
}
