//! The recorder service: one task and one writer thread per recorded stream.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tidewater_core::{
    CancellationToken, Event, Follower, IngestContext, Request, StreamEventKind, StreamKey, TrackId,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::RecordConfig;
use crate::library::Library;
use crate::mux::{Muxer, Output, Targets};
use crate::stats::Stats;
use crate::time::unix_ms;
use crate::writer;

/// Operations queued between a stream's task and its writer thread.
const QUEUE_OPS: usize = 1024;

/// The protocol name a recorder follows streams as.
pub const PROTOCOL: &str = "recorder";

/// Records every stream that a `[record]` path matches. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Recorder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ctx: IngestContext,
    config: RecordConfig,
    library: Library,
    stats: Arc<Stats>,
    running: Mutex<HashSet<StreamKey>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a recorder cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is invalid.
    #[error("invalid record setting: {0}")]
    Config(#[from] crate::config::ConfigError),
}

impl Recorder {
    /// A recorder over the kernel behind `ctx`.
    pub fn new(ctx: IngestContext, config: RecordConfig) -> Result<Self, Error> {
        config.validate()?;
        let library = Library::new(config.dir.clone());
        Ok(Recorder {
            inner: Arc::new(Inner {
                ctx,
                config,
                library,
                stats: Arc::default(),
                running: Mutex::default(),
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &RecordConfig {
        &self.inner.config
    }

    /// The recordings (for playback).
    pub fn library(&self) -> &Library {
        &self.inner.library
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The recording state of `key`, as the API shows it: `None` when no
    /// path rule records it, else its state ([`Library::state`]; idle when
    /// it was not recorded since the process started).
    pub fn status_of(&self, key: &StreamKey) -> Option<crate::StreamStatus> {
        self.inner.config.rule_for(key)?;
        Some(
            self.inner
                .library
                .state(key)
                .unwrap_or_else(|| crate::StreamStatus::idle(key.clone())),
        )
    }

    /// Repairs and indexes every stream directory (done by
    /// [`run`](Self::run) before it records anything).
    pub fn repair_all(&self) {
        let lib = &self.inner.library;
        for key in lib.streams() {
            if let Err(e) = lib.rebuild(&key) {
                warn!(
                    "record: {}: index not rebuilt: {e}",
                    lib.dir(&key).display()
                );
            }
        }
    }

    /// Records matching streams from their publish on, and enforces
    /// retention, until `shutdown`. Returns at once when no path is recorded.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.inner.config.paths.is_empty() {
            return;
        }
        let this = self.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || this.repair_all()).await {
            warn!("record: repair on start failed: {e}");
        }
        let mut events = self.inner.ctx.subscribe_events();
        for s in self.inner.ctx.streams() {
            self.start(&s.key, &shutdown);
        }
        let mut sweep = tokio::time::interval(self.inner.config.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = sweep.tick() => {
                    let this = self.clone();
                    let _ = tokio::task::spawn_blocking(move || this.sweep(SystemTime::now())).await;
                }
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        if let StreamEventKind::PublishStarted { .. } = ev.kind {
                            self.start(&ev.key, &shutdown);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        warn!("record: missed {n} stream events; checking live streams");
                        for s in self.inner.ctx.streams() {
                            self.start(&s.key, &shutdown);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    fn start(&self, key: &StreamKey, shutdown: &CancellationToken) {
        if self.inner.config.rule_for(key).is_none() {
            return;
        }
        if !lock(&self.inner.running).insert(key.clone()) {
            return;
        }
        tokio::spawn(record(
            self.inner.clone(),
            key.clone(),
            shutdown.child_token(),
        ));
    }

    /// Deletes what retention says should go, as of `now`: segments that
    /// ended before `now - retention`, then the oldest ones while a stream's
    /// recordings exceed its size cap. Never the file being written.
    /// Returns the number of files deleted.
    pub fn sweep(&self, now: SystemTime) -> usize {
        let lib = &self.inner.library;
        let mut deleted = 0;
        for key in lib.streams() {
            let (retention, cap) = self.inner.config.retention_for(&key);
            if retention.is_none() && cap.is_none() {
                continue;
            }
            deleted += sweep_stream(lib, &key, retention, cap, now, &self.inner.stats);
        }
        deleted
    }
}

fn sweep_stream(
    lib: &Library,
    key: &StreamKey,
    retention: Option<Duration>,
    cap: Option<u64>,
    now: SystemTime,
    stats: &Stats,
) -> usize {
    let dir = lib.dir(key);
    let current = lib.current_file(key);
    let lock = lib.rebuild(key);
    let Ok(segments) = lock else {
        return 0;
    };
    let oldest_kept =
        retention.map(|r| unix_ms(now) - i64::try_from(r.as_millis()).unwrap_or(i64::MAX));
    let mut total: u64 = segments.iter().map(|s| s.bytes()).sum();
    let mut doomed = HashSet::new();
    for s in segments.iter() {
        if current.as_deref() == Some(s.file.as_str()) {
            continue;
        }
        let old = oldest_kept.is_some_and(|t| s.end_ms() < t);
        let over = cap.is_some_and(|c| total > c);
        if old || over {
            doomed.insert(s.file.clone());
            total = total.saturating_sub(s.bytes());
        }
    }
    if doomed.is_empty() {
        return 0;
    }
    let mut n = 0;
    for f in &doomed {
        match std::fs::remove_file(dir.join(f)) {
            Ok(()) => n += 1,
            Err(e) => warn!("record: {}: not deleted: {e}", dir.join(f).display()),
        }
    }
    // Rebuild drops the entries whose files are gone.
    let _ = lib.rebuild(key);
    info!("record: {key}: retention deleted {n} segment(s)");
    stats.deleted.fetch_add(n as u64, Ordering::Relaxed);
    n
}

/// Records one stream while it is live (across republishes within the grace).
async fn record(inner: Arc<Inner>, key: StreamKey, shutdown: CancellationToken) {
    loop {
        let follower = match inner
            .ctx
            .follow(Request::new(key.clone(), PROTOCOL).internal())
            .await
        {
            Ok(f) => f,
            Err(e) => {
                debug!("record: {key}: not followed: {e}");
                break;
            }
        };
        let failed = follow(&inner, &key, follower, &shutdown).await;
        if failed || shutdown.is_cancelled() || inner.ctx.stream(&key).is_none() {
            break;
        }
    }
    lock(&inner.running).remove(&key);
}

/// Follows until the stream ends; `true` when the disk failed.
async fn follow(
    inner: &Arc<Inner>,
    key: &StreamKey,
    mut follower: Follower,
    shutdown: &CancellationToken,
) -> bool {
    let c = &inner.config;
    let shared = inner.library.register(key);
    let (tx, rx) = mpsc::channel::<Output>(QUEUE_OPS);
    let dir = inner.library.dir(key);
    let writer = {
        let (shared, stats, dir) = (shared.clone(), inner.stats.clone(), dir.clone());
        std::thread::Builder::new()
            .name("tidewater-record".into())
            .spawn(move || writer::run(dir, rx, shared, stats))
    };
    let writer = match writer {
        Ok(w) => w,
        Err(e) => {
            warn!("record: {key}: no writer thread: {e}");
            inner.library.unregister(key, &shared);
            return true;
        }
    };
    info!("record: {key}: recording into {}", dir.display());
    let targets = Targets {
        part90: i64::try_from(c.part.as_millis()).unwrap_or(1000) * 90,
        segment90: i64::try_from(c.segment.as_millis()).unwrap_or(60_000) * 90,
    };
    let mut mux = Muxer::new(targets);
    let mut outs = Vec::new();
    let mut timescales: HashMap<TrackId, u32> = HashMap::new();
    let mut dropping = false;
    loop {
        if shared.failed() {
            break;
        }
        let ev = tokio::select! {
            _ = shutdown.cancelled() => Err(tidewater_core::RecvError::Ended(tidewater_core::EndReason::Shutdown)),
            ev = follower.recv() => ev,
        };
        match ev {
            Ok(Event::Catalog(catalog)) => {
                timescales = catalog
                    .tracks()
                    .iter()
                    .map(|t| (t.id, t.timescale))
                    .collect();
                if let Err(e) = mux.catalog(&catalog, &mut outs) {
                    warn!(
                        "record: {key}: tracks not recordable: {e} (not recorded; `[record] paths` chooses what is)"
                    );
                }
            }
            Ok(Event::Frame(f)) => {
                let frame = f.frame();
                let wall = match (follower.clock_anchor(), timescales.get(&frame.track)) {
                    (Some(a), Some(ts)) => a.wall_clock_of(frame.dts, *ts),
                    _ => SystemTime::now(),
                };
                mux.frame(frame, unix_ms(wall), &mut outs);
            }
            Ok(Event::Skipped { frames }) => {
                inner.stats.keyframe_drops.fetch_add(1, Ordering::Relaxed);
                shared.dropped_to_keyframe();
                debug!("record: {key}: fell behind, {frames} frames skipped");
                mux.skip(frames, &mut outs);
            }
            Ok(Event::Discontinuity { generation }) => {
                info!("record: {key}: republished (generation {generation}): new segment");
                mux.discontinuity(&mut outs);
            }
            Err(_) => {
                mux.end(&mut outs);
                for op in outs.drain(..) {
                    shared
                        .queued
                        .fetch_add(writer::op_bytes(&op), Ordering::AcqRel);
                    if tx.send(op).await.is_err() {
                        break;
                    }
                }
                break;
            }
        }
        // Hand over without waiting: a full queue (a slow disk) drops to the
        // next keyframe instead of holding the kernel back.
        for op in outs.drain(..) {
            let size = writer::op_bytes(&op);
            let over = shared.queued.load(Ordering::Acquire) + size > c.queue_bytes;
            if !over {
                shared.queued.fetch_add(size, Ordering::AcqRel);
                match tx.try_send(op) {
                    Ok(()) => {
                        dropping = false;
                        continue;
                    }
                    Err(_) => {
                        shared.queued.fetch_sub(size, Ordering::AcqRel);
                    }
                }
            }
            if !dropping {
                warn!("record: {key}: disk too slow: dropping to the next keyframe");
                dropping = true;
            }
            inner.stats.keyframe_drops.fetch_add(1, Ordering::Relaxed);
            shared.dropped_to_keyframe();
            mux.abandon();
            break;
        }
        outs.clear();
    }
    drop(tx);
    let joined = tokio::task::spawn_blocking(move || writer.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        warn!("record: {key}: writer thread panicked");
    }
    let failed = shared.failed();
    inner.library.unregister(key, &shared);
    info!("record: {key}: recording stopped");
    failed
}
