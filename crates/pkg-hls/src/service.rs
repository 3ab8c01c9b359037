//! The packagers: one task per stream and flavour, started on the first
//! request (or at publish, for always-on streams), stopped when nobody asked
//! for the stream for a while.
//!
//! Each task follows the stream with a kernel [`Follower`], so a publisher
//! that reconnects within the application's grace period continues the same
//! playlist after an `EXT-X-DISCONTINUITY`. What it packages lives in a
//! [`PlaylistState`] behind a mutex; every change bumps a `watch` channel,
//! on which blocking playlist reloads and preload-hint part requests wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tidewater_core::{
    CancellationToken, Event, Follower, IngestContext, PlayerInfo, Request, StreamEventKind,
    StreamKey,
};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::HlsConfig;
use crate::audio::AacFromOpus;
use crate::config::duration_ticks;
use crate::ll::LlPacker;
use crate::master::{self, VariantInfo};
use crate::normalize::{Normalizer, TrackSet};
use crate::players::{Player, Players};
use crate::playlist::{Flavour, PlaylistState};
use crate::segmenter::Targets;
use crate::ts::TsPacker;

/// The HLS service of one engine: its packagers and settings. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Hls {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ctx: IngestContext,
    config: HlsConfig,
    packages: Mutex<HashMap<(StreamKey, Flavour), Arc<Package>>>,
    players: Arc<Players>,
    /// Request times are counted from here (tokio's clock, so tests can pause it).
    started: tokio::time::Instant,
    next_epoch: AtomicU64,
    /// Cancelled by [`Hls::finish_all`]: every packaging ends as if its
    /// stream had.
    finishing: CancellationToken,
}

/// One stream's packaged playlist, shared by the task and the requests.
#[derive(Debug)]
pub(crate) struct Package {
    pub(crate) key: StreamKey,
    pub(crate) flavour: Flavour,
    state: Mutex<PlaylistState>,
    tracks: Mutex<Option<Arc<TrackSet>>>,
    rendered: Mutex<Option<(u64, Bytes)>>,
    changed: watch::Sender<u64>,
    last_access_ms: AtomicU64,
    frame_interval90: AtomicI64,
    stopped: AtomicBool,
}

/// Why a package could not be had.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Not live (and not within its republish grace).
    NotLive(String),
    /// The authorizer said no.
    Auth(tidewater_core::Refusal),
}

impl Hls {
    /// The service over the kernel behind `ctx`. Fails on invalid settings.
    pub fn new(ctx: IngestContext, config: HlsConfig) -> Result<Self, crate::Error> {
        config.validate().map_err(crate::Error::Config)?;
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Hls {
            inner: Arc::new(Inner {
                ctx,
                config,
                packages: Mutex::new(HashMap::new()),
                players: Arc::default(),
                started: tokio::time::Instant::now(),
                next_epoch: AtomicU64::new(seed << 12),
                finishing: CancellationToken::new(),
            }),
        })
    }

    /// Ends every packaging now as if its stream had ended, for a server
    /// that stops: each playlist gets `EXT-X-ENDLIST` and stays served for
    /// [`HlsConfig::linger`]. It covers streams waiting in their follow
    /// grace for a republish, which would otherwise end only when the grace
    /// does.
    pub fn finish_all(&self) {
        self.inner.finishing.cancel();
    }

    /// The settings.
    pub fn config(&self) -> &HlsConfig {
        &self.inner.config
    }

    /// Streams and flavours being packaged now.
    pub fn packaging(&self) -> Vec<(StreamKey, Flavour)> {
        let mut v: Vec<_> = lock(&self.inner.packages).keys().cloned().collect();
        v.sort_by(|a, b| (a.0.as_str(), a.1.prefix()).cmp(&(b.0.as_str(), b.1.prefix())));
        v
    }

    /// Packages always-on streams from their publish on, until `shutdown`.
    /// Does nothing (returns at once) when no stream is always-on.
    pub async fn run_always_on(self, shutdown: CancellationToken) {
        let c = &self.inner.config;
        if !c.always_on_all && c.always_on.is_empty() {
            return;
        }
        let mut events = self.inner.ctx.subscribe_events();
        // Streams already live when this starts.
        for s in self.inner.ctx.streams() {
            self.start_always_on(&s.key).await;
        }
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = events.recv() => ev,
            };
            match ev {
                Ok(ev) => {
                    if let StreamEventKind::PublishStarted { .. } = ev.kind {
                        self.start_always_on(&ev.key).await;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    warn!("hls: missed {n} stream events; checking live streams");
                    for s in self.inner.ctx.streams() {
                        self.start_always_on(&s.key).await;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn start_always_on(&self, key: &StreamKey) {
        if !self.inner.config.is_always_on(key) {
            return;
        }
        for flavour in [Flavour::Ts, Flavour::Fmp4] {
            let follow = || Request::new(key.clone(), packager_protocol(flavour)).internal();
            if let Err(e) = self.package(key, flavour, follow).await {
                debug!(stream = %key, "hls: always-on packaging not started: {e:?}");
            }
        }
    }

    /// The kernel behind the service.
    pub(crate) fn ctx(&self) -> &IngestContext {
        &self.inner.ctx
    }

    /// The players.
    pub(crate) fn players(&self) -> &Players {
        &self.inner.players
    }

    /// Milliseconds on the service's clock (tokio's, so tests can pause it).
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The player an admitted request comes from: the known one, or a new
    /// one registered with the engine (`Err` when the one that got there
    /// first was kicked meanwhile).
    pub(crate) fn seat(
        &self,
        ticket: crate::access::Ticket,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<Arc<Player>, ()> {
        let (newcomer, token) = match ticket {
            crate::access::Ticket::Player(p) => return Ok(p),
            crate::access::Ticket::New(n, t) => (n, t),
        };
        let info = PlayerInfo {
            key: newcomer.seat.key.clone(),
            protocol: newcomer.seat.flavour.prefix(),
            peer,
            user: newcomer.identity.user.clone(),
        };
        let ctx = &self.inner.ctx;
        let (player, sweep) = self
            .inner
            .players
            .join(newcomer, token, self.now_ms(), || ctx.register_player(info))?;
        if sweep {
            tokio::spawn(crate::players::sweeper(
                Arc::downgrade(&self.inner.players),
                self.inner.started,
                self.inner.config.player_idle_timeout,
            ));
        }
        Ok(player)
    }

    /// The package of `key` in `flavour`, started if needed by following
    /// the stream with `follow` (who asks, with which rights).
    pub(crate) async fn package(
        &self,
        key: &StreamKey,
        flavour: Flavour,
        follow: impl FnOnce() -> Request,
    ) -> Result<Arc<Package>, Refusal> {
        let id = (key.clone(), flavour);
        {
            let mut packages = lock(&self.inner.packages);
            if let Some(p) = packages.get(&id) {
                // An ended playlist lingers for its players, until the
                // stream is published again: then a new packaging starts.
                let republished =
                    p.with(PlaylistState::ended) && self.inner.ctx.stream(key).is_some();
                if !republished {
                    p.touch(&self.inner);
                    return Ok(p.clone());
                }
                packages.remove(&id);
            }
        }
        // A stream that ended is still followable during its grace period,
        // and a follower would replay its last GOP: only a live stream gets a
        // new packager (one already running keeps serving through the grace).
        // (An on-demand source, a cluster edge pull, may start it first.)
        if !self.inner.ctx.await_source(key).await {
            return Err(Refusal::NotLive(format!("stream {key} is not live")));
        }
        let follower = match self.inner.ctx.follow(follow()).await {
            Ok(f) => f,
            Err(tidewater_core::Error::Unauthorized { refusal, .. }) => {
                return Err(Refusal::Auth(refusal));
            }
            Err(e) => return Err(Refusal::NotLive(format!("stream {key} is not live ({e})"))),
        };
        let mut packages = lock(&self.inner.packages);
        // Another request may have started it meanwhile.
        if let Some(p) = packages.get(&id) {
            p.touch(&self.inner);
            return Ok(p.clone());
        }
        let c = &self.inner.config;
        let epoch = format!(
            "{:x}",
            self.inner.next_epoch.fetch_add(1, Ordering::Relaxed)
        );
        let part_target = c.part_target_declared();
        let state = PlaylistState::new(flavour, c.window, part_target as f64 / 90_000.0, epoch);
        let (changed, _) = watch::channel(0);
        let package = Arc::new(Package {
            key: key.clone(),
            flavour,
            state: Mutex::new(state),
            tracks: Mutex::new(None),
            rendered: Mutex::new(None),
            changed,
            last_access_ms: AtomicU64::new(0),
            frame_interval90: AtomicI64::new(0),
            stopped: AtomicBool::new(false),
        });
        package.touch(&self.inner);
        packages.insert(id, package.clone());
        drop(packages);
        info!(stream = %key, "{}: packaging started", flavour.prefix());
        tokio::spawn(run(self.inner.clone(), package.clone(), follower));
        Ok(package)
    }
}

/// The protocol a packager follows its stream as (listed with the
/// sessions next to its players).
pub(crate) fn packager_protocol(flavour: Flavour) -> &'static str {
    match flavour {
        Flavour::Ts => "hls-packager",
        Flavour::Fmp4 => "llhls-packager",
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Package {
    fn touch(&self, inner: &Inner) {
        let ms = u64::try_from(inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_access_ms.store(ms, Ordering::Relaxed);
    }

    /// Runs `f` on the state.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&PlaylistState) -> T) -> T {
        f(&lock(&self.state))
    }

    /// Whether the task stopped (the stream ended, or an error).
    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Waits until `f` says something or `timeout` passes (`None` then).
    pub(crate) async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&PlaylistState) -> Option<T>,
    ) -> Option<T> {
        // Subscribe before looking, so a change in between is not missed.
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = self.with(&mut f) {
                return Some(v);
            }
            if self.stopped() {
                return None;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return self.with(&mut f),
            }
        }
    }

    /// The media playlist (rendered once per change, shared by every request).
    pub(crate) fn media_playlist(&self) -> Option<Bytes> {
        let state = lock(&self.state);
        let version = state.version();
        let mut cache = lock(&self.rendered);
        if let Some((v, b)) = cache.as_ref()
            && *v == version
        {
            return Some(b.clone());
        }
        let text = Bytes::from(state.render()?);
        *cache = Some((version, text.clone()));
        Some(text)
    }

    /// The multivariant playlist.
    pub(crate) fn master_playlist(&self) -> Option<String> {
        let tracks = lock(&self.tracks).clone()?;
        let peak = self.with(|s| s.peak_bitrate());
        Some(master::render(&VariantInfo {
            tracks: &tracks,
            peak_bitrate: peak,
            frame_interval90: self.frame_interval90.load(Ordering::Relaxed),
            version: match self.flavour {
                Flavour::Ts => 3,
                Flavour::Fmp4 => 6,
            },
        }))
    }
}

/// The packer of a flavour.
#[derive(Debug)]
enum Packer {
    Ll(LlPacker),
    Ts(TsPacker),
}

impl Packer {
    fn tracks(&mut self, set: Arc<TrackSet>, pl: &mut PlaylistState) -> Result<(), crate::Error> {
        match self {
            Packer::Ll(p) => p.tracks(set, pl),
            Packer::Ts(p) => p.tracks(set, pl),
        }
    }

    fn unit(
        &mut self,
        u: crate::normalize::Unit,
        pl: &mut PlaylistState,
    ) -> Result<(), crate::Error> {
        match self {
            Packer::Ll(p) => p.unit(u, pl),
            Packer::Ts(p) => p.unit(u, pl),
        }
    }

    fn discontinuity(&mut self, pl: &mut PlaylistState) {
        match self {
            Packer::Ll(p) => p.discontinuity(pl),
            Packer::Ts(p) => p.discontinuity(pl),
        }
    }

    fn finish(&mut self, pl: &mut PlaylistState) {
        match self {
            Packer::Ll(p) => p.finish(pl),
            Packer::Ts(p) => p.finish(pl),
        }
    }
}

/// The packaging task of one stream and flavour.
async fn run(inner: Arc<Inner>, pkg: Arc<Package>, mut follower: Follower) {
    let c = &inner.config;
    let targets = Targets {
        segment: duration_ticks(c.segment_target),
        part: (pkg.flavour == Flavour::Fmp4).then(|| c.part_target_declared()),
        max_segment: duration_ticks(c.max_segment),
    };
    let mut packer = match pkg.flavour {
        Flavour::Fmp4 => Packer::Ll(LlPacker::new(targets)),
        Flavour::Ts => Packer::Ts(TsPacker::new(targets)),
    };
    let mut norm = Normalizer::new();
    let mut aac = AacFromOpus::new(pkg.flavour == Flavour::Ts, pkg.key.as_str());
    aac.generation(&follower);
    let mut converted = Vec::new();
    let always_on = c.is_always_on(&pkg.key);
    let idle_ms = u64::try_from(c.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let who = format!("{} stream {}", pkg.flavour.prefix(), pkg.key);
    let mut version = 0;
    let outcome: Result<&'static str, crate::Error> = loop {
        let ev = tokio::select! {
            ev = follower.recv() => ev,
            () = inner.finishing.cancelled() => {
                Err(tidewater_core::RecvError::Ended(tidewater_core::EndReason::Shutdown))
            }
            _ = tick.tick() => {
                let now = u64::try_from(inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
                let idle = now.saturating_sub(pkg.last_access_ms.load(Ordering::Relaxed));
                if !always_on && idle > idle_ms {
                    break Ok("idle");
                }
                continue;
            }
        };
        let mut state = lock(&pkg.state);
        let step = match ev {
            Ok(Event::Catalog(catalog)) => match norm.set_tracks(&aac.tracks(&catalog)) {
                Some(set) => {
                    *lock(&pkg.tracks) = Some(set.clone());
                    packer.tracks(set, &mut state)
                }
                _ => Ok(()),
            },
            Ok(Event::Frame(frame)) => {
                converted.clear();
                if aac.convert(&frame, &mut converted) {
                    converted
                        .iter()
                        .filter_map(|f| norm.frame(f))
                        .try_for_each(|unit| packer.unit(unit, &mut state))
                } else {
                    match norm.frame(&frame) {
                        Some(unit) => packer.unit(unit, &mut state),
                        None => Ok(()),
                    }
                }
            }
            Ok(Event::Skipped { frames }) => {
                debug!("{who}: packager fell behind, {frames} frames skipped");
                packer.discontinuity(&mut state);
                Ok(())
            }
            Ok(Event::Discontinuity { generation }) => {
                info!("{who}: republished (generation {generation}): discontinuity");
                packer.discontinuity(&mut state);
                norm.discontinuity();
                aac.generation(&follower);
                Ok(())
            }
            Err(e) => {
                packer.finish(&mut state);
                drop(state);
                pkg.changed.send_replace(u64::MAX);
                break Ok(match e {
                    tidewater_core::RecvError::Evicted => "evicted for falling behind",
                    tidewater_core::RecvError::Ended(_) => "stream ended",
                });
            }
        };
        if let Err(e) = step {
            state.end();
            break Err(e);
        }
        pkg.frame_interval90
            .store(norm.interval90(), Ordering::Relaxed);
        if state.version() != version {
            version = state.version();
            drop(state);
            pkg.changed.send_replace(version);
        }
    };
    match &outcome {
        Ok(why) => info!("{who}: packaging stopped: {why}"),
        Err(e) => warn!("{who}: packaging stopped: {e}"),
    }
    if matches!(outcome, Ok("stream ended")) {
        // Players get the final playlist (EXT-X-ENDLIST) for a while.
        tokio::time::sleep(c.linger).await;
    }
    pkg.stopped.store(true, Ordering::Release);
    pkg.changed.send_replace(u64::MAX);
    let mut packages = lock(&inner.packages);
    let id = (pkg.key.clone(), pkg.flavour);
    if packages.get(&id).is_some_and(|p| Arc::ptr_eq(p, &pkg)) {
        packages.remove(&id);
    }
}
