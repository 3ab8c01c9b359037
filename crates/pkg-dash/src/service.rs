//! The per-stream packagers behind the routes: one per live stream, started
//! at its publish for always-on streams (every stream by default) or else by
//! the first request, fed by a kernel [`Follower`] (so a republish becomes
//! a new period), stopped after `idle_timeout` without requests (never, for
//! always-on streams) or when the stream ends and is not published again
//! within the follow grace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use tidewater_core::{
    Event, Follower, IngestContext, RecvError, Request, StreamEventKind, StreamKey,
    time::ClockAnchor,
};
use tidewater_http::{Refusal, refused, text};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::DashConfig;
use crate::packager::{Packager, PackagerConfig};
use crate::players::Players;

/// What every route shares: the kernel, the settings, the live packagers
/// and their players.
pub(crate) struct Shared {
    pub(crate) ctx: IngestContext,
    pub(crate) config: DashConfig,
    pub(crate) streams: Mutex<HashMap<StreamKey, Arc<Entry>>>,
    pub(crate) players: Arc<Players>,
    /// Cancelled when the server stops: every packager ends as if its
    /// stream had ([`dash_router_until`](crate::dash_router_until)).
    pub(crate) finishing: tidewater_core::CancellationToken,
}

/// One stream's packager, shared by its driver task and the requests.
pub(crate) struct Entry {
    pub(crate) packager: Mutex<Packager>,
    /// The packager's change count, for waiting readers; closed when the
    /// driver stops.
    pub(crate) changes: watch::Sender<u64>,
    last_access: Mutex<Instant>,
}

impl Entry {
    pub(crate) fn touch(&self) {
        *lock(&self.last_access) = Instant::now();
    }

    /// Whether its stream ended (its MPD is static, lingering for players).
    fn ended(&self) -> bool {
        lock(&self.packager).ended()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Whether `key` is worth a new player: live, or packaged (a packager
    /// follows its stream across a republish).
    pub(crate) fn servable(&self, key: &StreamKey) -> bool {
        lock(&self.streams).contains_key(key) || self.ctx.stream(key).is_some()
    }

    /// The stream's packager, started on first use (following the stream
    /// with the kernel request `follow` makes).
    pub(crate) async fn entry(
        self: &Arc<Self>,
        key: &StreamKey,
        follow: impl FnOnce() -> Request,
    ) -> Result<Arc<Entry>, Refusal> {
        if let Some(e) = lock(&self.streams).get(key) {
            // An ended stream's final MPD lingers for its players, until
            // the stream is published again: then a new packager starts.
            if !(e.ended() && self.ctx.stream(key).is_some()) {
                e.touch();
                return Ok(Arc::clone(e));
            }
        }
        // A stream that ended stays followable until the kernel reaps it;
        // starting a packager then would replay its last GOP as if live.
        // (An on-demand source, a cluster edge pull, may start it first.)
        if !self.ctx.await_source(key).await {
            return Err(Box::new(not_live(key)));
        }
        let req = follow();
        let peer = req.peer;
        let follower = self
            .ctx
            .follow(req)
            .await
            .map_err(|e| Box::new(refused("dash", peer, key, &e, &self.ctx.realm())))?;
        let mut streams = lock(&self.streams);
        if let Some(e) = streams.get(key).filter(|e| !e.ended()) {
            // Another request started it meanwhile; this follower is dropped.
            return Ok(Arc::clone(e));
        }
        let (changes, _) = watch::channel(0);
        let entry = Arc::new(Entry {
            packager: Mutex::new(Packager::new(PackagerConfig {
                target: self.config.segment_target,
                window: self.config.window,
                low_latency: self.config.low_latency,
            })),
            changes,
            last_access: Mutex::new(Instant::now()),
        });
        streams.insert(key.clone(), Arc::clone(&entry));
        info!(stream = %key, low_latency = self.config.low_latency, "dash packager started");
        tokio::spawn(drive(
            Arc::clone(self),
            key.clone(),
            Arc::clone(&entry),
            follower,
        ));
        Ok(entry)
    }
}

/// Packages always-on streams from their publish on (and those already
/// live when it starts), for as long as the routes (`shared`) live and the
/// kernel sends stream events. Returns at once when no stream is always-on.
pub(crate) async fn run_always_on(shared: Weak<Shared>) {
    let mut events = {
        let Some(s) = shared.upgrade() else { return };
        if !s.config.always_on_all && s.config.always_on.is_empty() {
            return;
        }
        // Subscribed before looking, so a publish in between is not missed.
        let events = s.ctx.subscribe_events();
        for live in s.ctx.streams() {
            s.start_always_on(&live.key).await;
        }
        events
    };
    loop {
        let ev = events.recv().await;
        let Some(s) = shared.upgrade() else { return };
        match ev {
            Ok(ev) => {
                if let StreamEventKind::PublishStarted { .. } = ev.kind {
                    s.start_always_on(&ev.key).await;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                warn!("dash: missed {n} stream events; checking live streams");
                for live in s.ctx.streams() {
                    s.start_always_on(&live.key).await;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

impl Shared {
    /// Starts packaging `key` if it is always-on and not packaged yet. The
    /// packager follows the stream as an internal reader (not asked of the
    /// authorizer: players are, per request).
    async fn start_always_on(self: &Arc<Self>, key: &StreamKey) {
        if !self.config.is_always_on(key) {
            return;
        }
        let follow = || Request::new(key.clone(), "dash").internal();
        if let Err(e) = self.entry(key, follow).await {
            debug!(stream = %key, "dash: always-on packaging not started ({})", e.status());
        }
    }
}

/// The answer about a stream that is not live.
pub(crate) fn not_live(key: &StreamKey) -> axum::response::Response {
    text(StatusCode::NOT_FOUND, format!("stream {key} is not live\n"))
}

/// Feeds the packager from the follower until the stream ends for good or
/// nobody asked for it for `idle_timeout`.
async fn drive(shared: Arc<Shared>, key: StreamKey, entry: Arc<Entry>, mut follower: Follower) {
    let idle = shared.config.idle_timeout;
    let always_on = shared.config.is_always_on(&key);
    let mut tick = tokio::time::interval((idle / 4).max(Duration::from_millis(100)));
    let mut warned = false;
    let mut anchor: Option<ClockAnchor> = None;
    let mut ended = false;
    loop {
        tokio::select! {
            () = shared.finishing.cancelled() => {
                info!(stream = %key, "dash packager stopped: the server is stopping; its MPD is static");
                let mut p = lock(&entry.packager);
                p.finish();
                entry.changes.send_replace(p.changes());
                ended = true;
                break;
            }
            ev = follower.recv() => {
                let mut p = lock(&entry.packager);
                match ev {
                    Ok(Event::Catalog(c)) => p.on_tracks(c.tracks()),
                    Ok(Event::Frame(f)) => {
                        if anchor.is_none() {
                            anchor = follower.clock_anchor();
                        }
                        let timescale = f.catalog().track(f.track).map_or(1_000, |t| t.timescale);
                        let wall = anchor.map_or_else(SystemTime::now, |a| a.wall_clock_of(f.dts, timescale));
                        if let Err(e) = p.on_frame(&f, wall)
                            && !warned {
                                warn!(stream = %key, "dash: {e}");
                                warned = true;
                            }
                    }
                    Ok(Event::Skipped { frames }) => {
                        debug!(stream = %key, "dash packager fell behind, {frames} frames skipped");
                    }
                    Ok(Event::Discontinuity { generation }) => {
                        info!(stream = %key, generation, "dash: republished, new period");
                        anchor = None;
                        p.on_discontinuity();
                    }
                    Err(RecvError::Ended(reason)) => {
                        info!(stream = %key, "dash packager stopped: stream ended ({reason}); its MPD is static");
                        p.finish();
                        entry.changes.send_replace(p.changes());
                        ended = true;
                        break;
                    }
                    Err(RecvError::Evicted) => {
                        warn!(stream = %key, "dash packager stopped: evicted for falling behind");
                        break;
                    }
                }
                entry.changes.send_replace(p.changes());
            }
            _ = tick.tick() => {
                let since = lock(&entry.last_access).elapsed();
                if !always_on && since >= idle {
                    info!(stream = %key, "dash packager stopped: no request for {since:?}");
                    break;
                }
            }
        }
    }
    if ended {
        // Players fetch the final MPD and the last segments meanwhile.
        drop(follower);
        tokio::time::sleep(shared.config.linger).await;
    }
    let mut streams = lock(&shared.streams);
    if streams.get(&key).is_some_and(|e| Arc::ptr_eq(e, &entry)) {
        streams.remove(&key);
        if ended {
            shared.players.end_stream(&key);
        }
    }
    // Dropping the last sender wakes every waiting reader.
}
