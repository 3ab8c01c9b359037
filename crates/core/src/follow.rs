//! Followers: subscriptions that survive a republish.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::watch;

use crate::bus::{Event, EventRef, Raw, RecvError, Subscription};
use crate::engine::{Engine, Request, StreamSlot};
use crate::error::{EndReason, Error, Result as KernelResult};
use crate::qos::SessionInfo;

/// Follows a stream across publish generations: what packagers, recorders and
/// relays read. When a publish ends, a follower waits up to the stream's
/// `follow_grace` for the next one and continues with
/// [`Event::Discontinuity`] followed by the new catalog; only if none comes
/// does it end.
///
/// Viewers (RTMP, HTTP-FLV, SRT, HTTP-TS) follow too, through
/// [`Engine::follow_live`]: a viewer ends only when its stream really ends
/// (or it is kicked, evicted, or the server shuts down); an operator
/// kicking its publisher ends the stream for it at once. It keeps its session
/// id across generations, and is listed and kickable as a reader of each
/// generation it reads (not while between two).
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
    /// A viewer ([`Engine::follow_live`]): the end of a generation whose
    /// publisher an operator kicked ends it at once (the operator ended the
    /// stream), where a packager still waits for a republish.
    viewer: bool,
}

impl Engine {
    /// Follows a stream that is live now, for a viewer (RTMP, HTTP-FLV, SRT,
    /// HTTP-TS): admitted as [`subscribe`](Self::subscribe) admits (asked of
    /// the authorizer, [`Error::NotFound`] unless live, counted against
    /// `max_readers`), then read as any [`Follower`]: from the cached GOP,
    /// across republishes within the stream's `follow_grace`.
    pub async fn follow_live(&self, req: Request) -> KernelResult<Follower> {
        let key = req.key.clone();
        let follower = self.follow(req).await?;
        // `follow` also accepts a stream between generations (a packager
        // waits for it); a viewer asks for what is live now.
        if follower.current.is_none() {
            return Err(Error::NotFound { key });
        }
        Ok(Follower {
            viewer: true,
            ..follower
        })
    }
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
            viewer: false,
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

    /// Whether an operator kicked this follower ([`Engine::kick`]): it then
    /// ended with [`RecvError::Ended`]`(`[`EndReason::Kicked`]`)` at once,
    /// without waiting for a republish. The same error after a kicked
    /// *publisher*'s stream was not published again within the grace is told
    /// apart by this being `false`.
    pub fn is_kicked(&self) -> bool {
        self.current.as_ref().is_some_and(Subscription::is_kicked)
    }

    /// The state of type `T` of the generation being read (see
    /// [`Subscription::generation_state`]); `None` between generations. A
    /// consumer that keeps such state asks again after each
    /// [`Event::Discontinuity`].
    pub fn generation_state<T: Default + Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.current.as_ref().map(Subscription::generation_state)
    }

    /// The next event; `Err` once the stream ended and was not published again
    /// within the grace period, at shutdown, on eviction, or when kicked.
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        let raw = match self.next_raw().await? {
            Next::Raw(raw) => raw,
            Next::Discontinuity(generation) => return Ok(Event::Discontinuity { generation }),
        };
        match &mut self.current {
            Some(sub) => Ok(sub.own(raw)),
            // `next_raw` yields a raw event only from the current generation.
            None => Err(RecvError::Ended(EndReason::Finished)),
        }
    }

    /// The next event, lending the frame out of the log (see
    /// [`Subscription::recv_ref`]), with
    /// [`EventRef::Discontinuity`] at a republish: the cheapest receive for
    /// a consumer that serializes each frame before asking for the next.
    /// Cancel-safe: dropped while waiting for a republish, it keeps the
    /// grace's deadline.
    pub async fn recv_ref(&mut self) -> Result<EventRef<'_>, RecvError> {
        let raw = match self.next_raw().await? {
            Next::Raw(raw) => raw,
            Next::Discontinuity(generation) => {
                return Ok(EventRef::Discontinuity { generation });
            }
        };
        match &self.current {
            Some(sub) => Ok(sub.lend(raw)),
            None => Err(RecvError::Ended(EndReason::Finished)),
        }
    }

    /// The next event if one is ready now, lending the frame (see
    /// [`recv_ref`](Self::recv_ref)). Between generations it attaches to a
    /// republish that has come, and reports the end once the grace is over,
    /// without waiting for either.
    pub fn try_recv_ref(&mut self) -> Option<Result<EventRef<'_>, RecvError>> {
        let raw = match self.try_next_raw()? {
            Ok(Next::Raw(raw)) => raw,
            Ok(Next::Discontinuity(generation)) => {
                return Some(Ok(EventRef::Discontinuity { generation }));
            }
            Err(e) => return Some(Err(e)),
        };
        match &self.current {
            Some(sub) => Some(Ok(sub.lend(raw))),
            None => Some(Err(RecvError::Ended(EndReason::Finished))),
        }
    }

    /// Handles the end of the current generation's subscription: `Err` when
    /// the follower itself is over (evicted, kicked), otherwise the gap
    /// before a republish starts.
    fn generation_ended(&mut self, e: RecvError) -> Result<(), RecvError> {
        match e {
            RecvError::Evicted => Err(RecvError::Evicted),
            // Kicked itself, or a viewer of a kicked publisher: no
            // republish is awaited.
            RecvError::Ended(EndReason::Kicked) if self.is_kicked() || self.viewer => Err(e),
            RecvError::Ended(reason) => {
                self.current = None;
                self.gap = Some(Gap {
                    reason,
                    deadline: tokio::time::Instant::now() + self.grace,
                });
                Ok(())
            }
        }
    }

    /// Attaches to a generation newer than the last one read, if there is
    /// one; `Some(discontinuity)` when it did, telling whether a previous
    /// generation was read (then an [`Event::Discontinuity`] is due).
    fn attach_newer(&mut self) -> Option<bool> {
        let bus = self.slot.latest()?;
        if bus.generation <= self.last_generation {
            return None;
        }
        let had_previous = self.last_generation != 0;
        self.last_generation = bus.generation;
        self.gap = None;
        self.current = Some(Subscription::attach(bus, self.info.clone()));
        Some(had_previous)
    }

    /// The gap being waited through (made now if the follower started
    /// between generations).
    fn gap(&mut self) -> Gap {
        *self.gap.get_or_insert(Gap {
            reason: EndReason::Finished,
            deadline: tokio::time::Instant::now() + self.grace,
        })
    }

    /// The next raw event of the current generation, or the discontinuity
    /// of a republish, waiting through a gap up to the grace.
    async fn next_raw(&mut self) -> Result<Next, RecvError> {
        loop {
            if let Some(sub) = &mut self.current {
                match poll_fn(|cx| sub.poll_raw(cx)).await {
                    Ok(raw) => return Ok(Next::Raw(raw)),
                    Err(e) => self.generation_ended(e)?,
                }
            }
            // Between generations. The gap (and its deadline) lives in the
            // follower, not in this future, so a receive dropped while
            // waiting (in a `select!`, under a timeout) does not restart the
            // grace.
            let gap = self.gap();
            if gap.reason == EndReason::Shutdown {
                return Err(RecvError::Ended(gap.reason));
            }
            loop {
                match self.attach_newer() {
                    Some(true) => return Ok(Next::Discontinuity(self.last_generation)),
                    Some(false) => break,
                    None => {}
                }
                match tokio::time::timeout_at(gap.deadline, self.changes.changed()).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(_)) | Err(_) => return Err(RecvError::Ended(gap.reason)),
                }
            }
        }
    }

    /// [`next_raw`](Self::next_raw) without waiting: `None` when nothing is ready.
    fn try_next_raw(&mut self) -> Option<Result<Next, RecvError>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        loop {
            if let Some(sub) = &mut self.current {
                match sub.poll_raw(&mut cx) {
                    Poll::Ready(Ok(raw)) => return Some(Ok(Next::Raw(raw))),
                    Poll::Ready(Err(e)) => {
                        if let Err(e) = self.generation_ended(e) {
                            return Some(Err(e));
                        }
                    }
                    Poll::Pending => return None,
                }
            }
            let gap = self.gap();
            if gap.reason == EndReason::Shutdown {
                return Some(Err(RecvError::Ended(gap.reason)));
            }
            match self.attach_newer() {
                Some(true) => return Some(Ok(Next::Discontinuity(self.last_generation))),
                Some(false) => continue,
                None if tokio::time::Instant::now() >= gap.deadline => {
                    return Some(Err(RecvError::Ended(gap.reason)));
                }
                None => return None,
            }
        }
    }
}

/// What the receive machinery of a follower produces.
enum Next {
    /// An event of the current generation.
    Raw(Raw),
    /// A republish was attached to.
    Discontinuity(u64),
}
