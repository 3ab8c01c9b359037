//! Fan-out: tidewater's bus against arcly-stream 0.8.3, side by side in one
//! process run.
//!
//! One publisher and N subscriber tasks on a 2-worker-thread tokio runtime;
//! every subscriber consumes every frame (4 KiB payloads, each its own buffer
//! stamped with the frame's index, a keyframe every 30 frames). Pacing is a drain barrier: the publisher publishes a batch of B
//! frames (B below both rings' capacity), waits until every subscriber has
//! consumed the batch, and repeats. The figure is frames delivered (N × frames
//! published) per second of the timed phase. Every subscriber checks that it
//! received every frame exactly once and in order, each with its own payload; a loss, a reorder, a lag or
//! a skip report from either system fails the run with a non-zero exit.
//!
//! Also measured: the cost of one publish with no subscriber, and the memory
//! of an idle stream, an idle subscription and a parked subscriber task (RSS
//! growth of a fresh child process while it creates many of them).
//!
//! ```text
//! cargo xtask bench fanout [OPTIONS]
//! cargo bench -p tidewater-bench --bench fanout -- [OPTIONS]
//!
//!   --quick                 smoke run: small sizes and totals (for CI)
//!   --sizes 1,100,1000      subscriber counts (default 1,100,1000,10000)
//!   --reps 5                repetitions of each measurement; the median is reported
//!   --batch 256             frames per drain batch
//!   --secs 1.5              length of each timed fan-out phase
//!   --publishes 1000000     publishes per no-subscriber cost measurement
//!   --idle-streams 10000    streams created by the memory probe
//!   --idle-subscribers 100000  subscriptions created by the memory probe
//!   --no-memory             skip the memory probes
//!   --what fanout,publish,memory  which parts to run (default: all)
//!   --only tidewater|tidewater-owned|arcly  one system only, raw lines, no table (profiling)
//! ```

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arcly_stream as arcly;
use arcly_stream::prelude::PublishRegistry as _;
use bytes::Bytes;
use tidewater_bench::{
    format_rate, group_thousands, machine, median, process_cpu_ns, rss_bytes, today_utc,
};
use tidewater_core as tw;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::{RecvError as BroadcastRecvError, TryRecvError};

/// Payload bytes of every frame.
const PAYLOAD_LEN: usize = 4096;
/// First byte of every payload (touched by subscribers).
const PAYLOAD_TAG: u8 = 0xA5;
/// A keyframe every this many frames.
const GOP: u64 = 30;
/// Decode-timestamp step (90 kHz clock at 30 fps).
const DTS_STEP: i64 = 3_000;
/// Frames each ring retains: tidewater's `ring_frames` and arcly-stream's
/// broadcast capacity (both systems' default).
const RING_FRAMES: usize = 4_096;
/// Frames of arcly-stream's GOP replay buffer (enabled, as tidewater's GOP cache always is).
const ARCLY_GOP_CACHE: usize = 256;
/// Untimed batches before the timed phase (tasks scheduled, caches warm).
const WARM_BATCHES: u64 = 2;
/// Fewest timed batches, however long they take.
const MIN_TIMED_BATCHES: u64 = 4;
/// How long the publisher waits for a batch to drain before declaring the run stuck.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// What is measured. tidewater's subscribers receive with the lending
/// `Subscription::recv_ref` (no reference count touched) and, separately,
/// with the owned `Subscription::recv` (one `SharedFrame` per frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Tidewater,
    TidewaterOwned,
    Arcly,
}

impl System {
    const FANOUT: [System; 3] = [System::Tidewater, System::TidewaterOwned, System::Arcly];

    fn name(self) -> &'static str {
        match self {
            System::Tidewater => "tidewater",
            System::TidewaterOwned => "tidewater (recv)",
            System::Arcly => "arcly-stream 0.8.3",
        }
    }
}

#[derive(Clone, Debug)]
struct Options {
    sizes: Vec<usize>,
    reps: usize,
    batch: u64,
    secs: f64,
    publishes: u64,
    idle_streams: usize,
    idle_subscribers: usize,
    memory: bool,
    fanout: bool,
    publish: bool,
    quick: bool,
    only: Option<System>,
    probe: Option<(String, usize)>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = if quick {
            Options {
                sizes: vec![1, 100, 1_000],
                reps: 1,
                batch: 256,
                secs: 0.2,
                publishes: 100_000,
                idle_streams: 1_000,
                idle_subscribers: 10_000,
                memory: true,
                fanout: true,
                publish: true,
                quick,
                only: None,
                probe: None,
            }
        } else {
            Options {
                sizes: vec![1, 100, 1_000, 10_000],
                reps: 5,
                batch: 256,
                secs: 1.5,
                publishes: 1_000_000,
                idle_streams: 10_000,
                idle_subscribers: 100_000,
                memory: true,
                fanout: true,
                publish: true,
                quick,
                only: None,
                probe: None,
            }
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match arg.as_str() {
                // `cargo bench` passes `--bench` to every harness-less bench.
                "--bench" | "--quick" => {}
                "--sizes" => {
                    o.sizes = value("--sizes")?
                        .split(',')
                        .map(|s| {
                            s.trim()
                                .replace('_', "")
                                .parse::<usize>()
                                .map_err(|e| format!("--sizes {s}: {e}"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                "--reps" => o.reps = parse_num(&value("--reps")?)?,
                "--batch" => o.batch = parse_num(&value("--batch")?)?,
                "--secs" => {
                    o.secs = value("--secs")?
                        .parse()
                        .map_err(|e| format!("--secs: {e}"))?
                }
                "--publishes" => o.publishes = parse_num(&value("--publishes")?)?,
                "--idle-streams" => o.idle_streams = parse_num(&value("--idle-streams")?)?,
                "--idle-subscribers" => {
                    o.idle_subscribers = parse_num(&value("--idle-subscribers")?)?
                }
                "--no-memory" => o.memory = false,
                "--what" => {
                    let what = value("--what")?;
                    o.fanout = false;
                    o.publish = false;
                    o.memory = false;
                    for part in what.split(',') {
                        match part.trim() {
                            "fanout" => o.fanout = true,
                            "publish" => o.publish = true,
                            "memory" => o.memory = true,
                            other => {
                                return Err(format!("--what {other:?}: fanout, publish or memory"));
                            }
                        }
                    }
                }
                "--only" => {
                    o.only = Some(match value("--only")?.as_str() {
                        "tidewater" => System::Tidewater,
                        "tidewater-owned" => System::TidewaterOwned,
                        "arcly" | "arcly-stream" => System::Arcly,
                        other => {
                            return Err(format!(
                                "--only {other:?}: tidewater, tidewater-owned or arcly"
                            ));
                        }
                    });
                }
                "--probe" => {
                    let kind = value("--probe")?;
                    let count = parse_num(&value("--probe")?)?;
                    o.probe = Some((kind, count));
                }
                "-h" | "--help" => return Err(usage()),
                other => return Err(format!("unknown argument {other:?}\n{}", usage())),
            }
        }
        if o.batch == 0 || o.batch as usize >= RING_FRAMES / 2 {
            return Err(format!(
                "--batch must be between 1 and {} (below both rings' capacity)",
                RING_FRAMES / 2 - 1
            ));
        }
        if o.sizes.is_empty()
            || o.sizes.contains(&0)
            || o.reps == 0
            || o.secs <= 0.0
            || o.publishes == 0
        {
            return Err("sizes, reps, secs and publishes must be positive".into());
        }
        Ok(o)
    }
}

fn parse_num<T: std::str::FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.replace('_', "").parse().map_err(|e| format!("{s}: {e}"))
}

fn usage() -> String {
    "usage: fanout [--quick] [--sizes 1,100,1000,10000] [--reps 5] [--batch 256] [--secs 1.5] \
     [--publishes 1000000] [--idle-streams 10000] [--idle-subscribers 100000] [--no-memory] \
     [--what fanout,publish,memory] \
     [--only tidewater|tidewater-owned|arcly]"
        .to_string()
}

/// CPU time of every thread of this process so far (0 where unknown).
fn cpu_ns() -> u64 {
    process_cpu_ns().unwrap_or(0)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

/// A payload with no frame index (zero): for the publish-cost and memory
/// probes, where no subscriber reads it.
fn payload() -> Bytes {
    indexed_payload(0)
}

/// Frame `index`'s own payload: the tag, then the index (8 bytes, little
/// endian), so a subscriber can tell that it got this frame's bytes and not
/// another's (one shared buffer for every frame could not show that).
fn indexed_payload(index: u64) -> Bytes {
    let mut v = vec![0u8; PAYLOAD_LEN];
    v[0] = PAYLOAD_TAG;
    v[1..9].copy_from_slice(&index.to_le_bytes());
    Bytes::from(v)
}

/// The frame index a payload carries, if it is one of [`indexed_payload`]'s.
fn payload_index(payload: &[u8]) -> Option<u64> {
    if payload.len() != PAYLOAD_LEN || payload.first() != Some(&PAYLOAD_TAG) {
        return None;
    }
    let bytes: [u8; 8] = payload.get(1..9)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

fn dts_of(index: u64) -> i64 {
    index as i64 * DTS_STEP
}

fn tw_policy() -> tw::StreamPolicy {
    tw::StreamPolicy {
        ring_frames: RING_FRAMES,
        // Roomy: the ring is bounded by the frame count above, not by bytes.
        ring_bytes: 256 << 20,
        gop_frames: 2_048,
        gop_bytes: 128 << 20,
        // A drained batch is never late; this only keeps a loaded machine from
        // turning a slow batch into a (reported, failing) skip.
        max_lag: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(600),
        ..tw::StreamPolicy::default()
    }
}

fn tw_engine() -> Result<tw::Engine, String> {
    tw::Engine::builder()
        .app(
            "live",
            tw::AppSpec {
                policy: tw_policy(),
                ..tw::AppSpec::default()
            },
        )
        .build()
        .map_err(|e| e.to_string())
}

fn tw_key(stream: &str) -> Result<tw::StreamKey, String> {
    tw::StreamKey::new("live", stream).map_err(|e| e.to_string())
}

async fn tw_open(engine: &tw::Engine, key: &tw::StreamKey) -> Result<tw::PublishSession, String> {
    let mut session = engine
        .open_publish(tw::Request::new(key.clone(), "bench"))
        .await
        .map_err(|e| e.to_string())?;
    session
        .set_catalog(vec![tw::TrackInfo::video(
            tw::TrackId(1),
            tw::Codec::H264,
            1280,
            720,
        )])
        .map_err(|e| e.to_string())?;
    Ok(session)
}

fn tw_frame(index: u64, payload: &Bytes) -> tw::Frame {
    let dts = dts_of(index);
    tw::Frame::video(
        tw::TrackId(1),
        tw::Codec::H264,
        dts,
        dts,
        index.is_multiple_of(GOP),
        payload.clone(),
    )
}

fn arcly_engine() -> Arc<arcly::Engine> {
    arcly::Engine::builder()
        .max_publishers(usize::MAX)
        .application(
            arcly::AppSpec::new("live")
                .broadcast_capacity(RING_FRAMES)
                .gop_cache(ARCLY_GOP_CACHE),
        )
        .build()
}

fn arcly_frame(index: u64, payload: &Bytes) -> arcly::MediaFrame {
    let dts = dts_of(index);
    arcly::MediaFrame::new_video(
        dts,
        dts,
        payload.clone(),
        arcly::CodecId::H264,
        index.is_multiple_of(GOP),
    )
}

// ---------------------------------------------------------------------------
// The drain barrier and the per-subscriber check, shared by both systems.

/// Subscribers report each batch they finished; the publisher waits for all of them.
#[derive(Debug)]
struct Pace {
    subscribers: u64,
    batch: u64,
    /// Subscriber-batches finished, over all subscribers.
    done: AtomicU64,
    notify: Notify,
    failed: AtomicBool,
    error: Mutex<Option<String>>,
}

impl Pace {
    fn new(subscribers: usize, batch: u64) -> Self {
        Pace {
            subscribers: subscribers as u64,
            batch,
            done: AtomicU64::new(0),
            notify: Notify::new(),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
        }
    }

    /// A subscriber finished batch `batches` (1-based).
    fn batch_done(&self, batches: u64) {
        let total = self.done.fetch_add(1, Ordering::AcqRel) + 1;
        if total == self.subscribers * batches {
            self.notify.notify_one();
        }
    }

    fn fail(&self, message: String) {
        let mut error = self.error.lock().unwrap_or_else(|p| p.into_inner());
        error.get_or_insert(message);
        self.failed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until every subscriber finished `batches` batches.
    async fn wait(&self, batches: u64) -> Result<(), String> {
        let target = self.subscribers * batches;
        loop {
            if self.failed.load(Ordering::Acquire) {
                return Err(self.error().unwrap_or_else(|| "a subscriber failed".into()));
            }
            if self.done.load(Ordering::Acquire) >= target {
                return Ok(());
            }
            if tokio::time::timeout(DRAIN_TIMEOUT, self.notify.notified())
                .await
                .is_err()
            {
                let done = self.done.load(Ordering::Acquire);
                return Err(format!(
                    "batch {batches} did not drain within {DRAIN_TIMEOUT:?} ({done} of {target})"
                ));
            }
        }
    }
}

/// One subscriber's view: every frame once, in order, touched.
#[derive(Debug)]
struct Tally {
    pace: Arc<Pace>,
    frames: u64,
    sum: u64,
    /// Frames left in the current batch.
    left: u64,
}

impl Tally {
    fn new(pace: Arc<Pace>) -> Self {
        let left = pace.batch;
        Tally {
            pace,
            frames: 0,
            sum: 0,
            left,
        }
    }

    #[inline]
    fn frame(&mut self, dts: i64, payload: &[u8]) -> Result<(), String> {
        if dts != dts_of(self.frames) {
            return Err(out_of_order(self.frames, dts));
        }
        if payload_index(payload) != Some(self.frames) {
            return Err(wrong_payload(self.frames, payload));
        }
        // Touch the payload so nothing is optimized away.
        self.sum = self
            .sum
            .wrapping_add(payload.len() as u64 + u64::from(payload.first().copied().unwrap_or(0)));
        self.frames += 1;
        self.left -= 1;
        if self.left == 0 {
            self.left = self.pace.batch;
            self.pace.batch_done(self.frames / self.pace.batch);
        }
        Ok(())
    }

    fn fail(&self, message: String) -> (u64, u64) {
        self.pace.fail(message);
        (self.frames, self.sum)
    }
}

#[cold]
fn wrong_payload(expected: u64, payload: &[u8]) -> String {
    format!(
        "frame {expected}: its payload ({} B) carries frame index {:?}",
        payload.len(),
        payload_index(payload)
    )
}

#[cold]
fn out_of_order(expected: u64, dts: i64) -> String {
    format!(
        "frame {expected}: got dts {dts}, expected {} (lost, repeated or reordered)",
        dts_of(expected)
    )
}

async fn tw_subscriber(mut sub: tw::Subscription, pace: Arc<Pace>) -> (u64, u64) {
    let mut tally = Tally::new(pace);
    loop {
        match sub.recv().await {
            Ok(tw::Event::Frame(f)) => {
                if let Err(e) = tally.frame(f.dts, &f.payload) {
                    return tally.fail(format!("tidewater subscriber {}: {e}", sub.id()));
                }
            }
            Ok(tw::Event::Catalog(_)) => {}
            Ok(tw::Event::Skipped { frames }) => {
                return tally.fail(format!(
                    "tidewater subscriber {} skipped {frames} frames",
                    sub.id()
                ));
            }
            Ok(other) => {
                return tally.fail(format!(
                    "tidewater subscriber {}: unexpected {other:?}",
                    sub.id()
                ));
            }
            Err(tw::RecvError::Ended(_)) => return (tally.frames, tally.sum),
            Err(e) => return tally.fail(format!("tidewater subscriber {}: {e}", sub.id())),
        }
    }
}

async fn tw_subscriber_ref(mut sub: tw::Subscription, pace: Arc<Pace>) -> (u64, u64) {
    let mut tally = Tally::new(pace);
    let id = sub.id();
    loop {
        match sub.recv_ref().await {
            Ok(tw::EventRef::Frame(f)) => {
                if let Err(e) = tally.frame(f.dts, &f.payload) {
                    return tally.fail(format!("tidewater subscriber {id}: {e}"));
                }
            }
            Ok(tw::EventRef::Catalog(_)) => {}
            Ok(tw::EventRef::Skipped { frames }) => {
                return tally.fail(format!("tidewater subscriber {id} skipped {frames} frames"));
            }
            // Only followers see republishes; the bench publishes once.
            Ok(tw::EventRef::Discontinuity { .. }) => {
                return tally.fail(format!("tidewater subscriber {id}: a discontinuity"));
            }
            Err(tw::RecvError::Ended(_)) => return (tally.frames, tally.sum),
            Err(e) => return tally.fail(format!("tidewater subscriber {id}: {e}")),
        }
    }
}

async fn arcly_subscriber(
    mut rx: tokio::sync::broadcast::Receiver<Arc<arcly::MediaFrame>>,
    pace: Arc<Pace>,
    index: usize,
) -> (u64, u64) {
    let mut tally = Tally::new(pace);
    loop {
        match rx.recv().await {
            Ok(f) => {
                if let Err(e) = tally.frame(f.dts, &f.data) {
                    return tally.fail(format!("arcly-stream subscriber {index}: {e}"));
                }
            }
            Err(BroadcastRecvError::Lagged(n)) => {
                return tally.fail(format!(
                    "arcly-stream subscriber {index} lagged by {n} frames"
                ));
            }
            Err(BroadcastRecvError::Closed) => return (tally.frames, tally.sum),
        }
    }
}

// ---------------------------------------------------------------------------
// Fan-out.

#[derive(Clone, Copy, Debug)]
struct FanoutRun {
    delivered: u64,
    elapsed: Duration,
    /// CPU time all threads of the process used in the timed phase.
    cpu: Duration,
}

impl FanoutRun {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_ns_per_delivery(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.delivered as f64
    }
}

/// The publisher side of one system, behind one interface for the paced loop.
trait Publisher {
    fn publish(&mut self, index: u64, payload: &Bytes) -> Result<(), String>;
}

struct TwPublisher(tw::PublishSession);

impl Publisher for TwPublisher {
    fn publish(&mut self, index: u64, payload: &Bytes) -> Result<(), String> {
        self.0
            .publish(tw_frame(index, payload))
            .map_err(|e| e.to_string())
    }
}

struct ArclyPublisher {
    handle: arcly::StreamHandle,
    subscribers: usize,
}

impl Publisher for ArclyPublisher {
    fn publish(&mut self, index: u64, payload: &Bytes) -> Result<(), String> {
        let receivers = self
            .handle
            .publish_frame(arcly_frame(index, payload))
            .map_err(|e| e.to_string())?;
        if receivers != self.subscribers {
            return Err(format!(
                "arcly-stream delivered frame {index} to {receivers} of {} receivers",
                self.subscribers
            ));
        }
        Ok(())
    }
}

/// Publishes batches, draining each, until the timed phase lasted `secs`.
/// Returns (frames published in all, timed run).
async fn paced<P: Publisher>(
    publisher: &mut P,
    pace: &Pace,
    subscribers: usize,
    secs: f64,
) -> Result<(u64, FanoutRun), String> {
    let mut published = 0u64;
    let mut batches = 0u64;
    let mut timed: Option<(Instant, u64, u64)> = None;
    loop {
        for _ in 0..pace.batch {
            // Each frame its own payload, stamped with its index (the
            // allocation is the publisher's, the same for every system).
            publisher.publish(published, &indexed_payload(published))?;
            published += 1;
        }
        batches += 1;
        pace.wait(batches).await?;
        match timed {
            None if batches == WARM_BATCHES => timed = Some((Instant::now(), cpu_ns(), published)),
            Some((start, cpu_start, from)) => {
                let elapsed = start.elapsed();
                if elapsed.as_secs_f64() >= secs && batches - WARM_BATCHES >= MIN_TIMED_BATCHES {
                    let delivered = (published - from) * subscribers as u64;
                    let cpu = Duration::from_nanos(cpu_ns().saturating_sub(cpu_start));
                    return Ok((
                        published,
                        FanoutRun {
                            delivered,
                            elapsed,
                            cpu,
                        },
                    ));
                }
            }
            None => {}
        }
    }
}

/// Checks every subscriber received every published frame.
async fn collect(
    system: System,
    tasks: Vec<tokio::task::JoinHandle<(u64, u64)>>,
    pace: &Pace,
    published: u64,
) -> Result<(), String> {
    let expected_sum = published.wrapping_mul(PAYLOAD_LEN as u64 + u64::from(PAYLOAD_TAG));
    for (i, task) in tasks.into_iter().enumerate() {
        let (frames, sum) = task
            .await
            .map_err(|e| format!("{} subscriber {i}: {e}", system.name()))?;
        if let Some(e) = pace.error() {
            return Err(e);
        }
        if frames != published || sum != expected_sum {
            return Err(format!(
                "{} subscriber {i} received {frames} of {published} frames (checksum {sum}, expected {expected_sum})",
                system.name()
            ));
        }
    }
    Ok(())
}

async fn fanout_tidewater(
    system: System,
    subscribers: usize,
    batch: u64,
    secs: f64,
) -> Result<FanoutRun, String> {
    let engine = tw_engine()?;
    let key = tw_key("fanout")?;
    let session = tw_open(&engine, &key).await?;
    let pace = Arc::new(Pace::new(subscribers, batch));
    let mut tasks = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let sub = engine
            .subscribe(tw::Request::new(key.clone(), "bench"))
            .await
            .map_err(|e| e.to_string())?;
        let pace = Arc::clone(&pace);
        tasks.push(if system == System::TidewaterOwned {
            tokio::spawn(tw_subscriber(sub, pace))
        } else {
            tokio::spawn(tw_subscriber_ref(sub, pace))
        });
    }
    let mut publisher = TwPublisher(session);
    let (published, run) = paced(&mut publisher, &pace, subscribers, secs).await?;
    publisher.0.finish().await;
    collect(system, tasks, &pace, published).await?;
    Ok(run)
}

async fn fanout_arcly(subscribers: usize, batch: u64, secs: f64) -> Result<FanoutRun, String> {
    let engine = arcly_engine();
    let key = arcly::StreamKey::new("live", "fanout");
    let handle = engine
        .start_publish(&key)
        .await
        .map_err(|e| e.to_string())?;
    let pace = Arc::new(Pace::new(subscribers, batch));
    let mut tasks = Vec::with_capacity(subscribers);
    for i in 0..subscribers {
        let rx = handle.subscribe();
        tasks.push(tokio::spawn(arcly_subscriber(rx, Arc::clone(&pace), i)));
    }
    let mut publisher = ArclyPublisher {
        handle,
        subscribers,
    };
    let (published, run) = paced(&mut publisher, &pace, subscribers, secs).await?;
    engine.end_publish(&key).await.map_err(|e| e.to_string())?;
    collect(System::Arcly, tasks, &pace, published).await?;
    Ok(run)
}

/// One fan-out measurement on a fresh 2-worker runtime; the publisher is a
/// task on that runtime like the subscribers.
fn fanout(system: System, subscribers: usize, o: &Options) -> Result<FanoutRun, String> {
    let rt = runtime()?;
    let (batch, secs) = (o.batch, o.secs);
    let result = rt.block_on(async move {
        let task = match system {
            System::Tidewater | System::TidewaterOwned => {
                tokio::spawn(fanout_tidewater(system, subscribers, batch, secs))
            }
            System::Arcly => tokio::spawn(fanout_arcly(subscribers, batch, secs)),
        };
        task.await.map_err(|e| format!("publisher task: {e}"))?
    });
    rt.shutdown_timeout(Duration::from_secs(10));
    result
}

// ---------------------------------------------------------------------------
// Publish cost with no subscriber.

fn publish_cost(system: System, count: u64) -> Result<f64, String> {
    let rt = runtime()?;
    let warm = (count / 10).clamp(RING_FRAMES as u64 * 2, 100_000);
    let result = rt.block_on(async move {
        let task = tokio::spawn(async move {
            let payload = payload();
            match system {
                System::Tidewater | System::TidewaterOwned => {
                    let engine = tw_engine()?;
                    let key = tw_key("cost")?;
                    let mut session = tw_open(&engine, &key).await?;
                    // Untimed warm-up: the ring fills and starts recycling blocks.
                    for i in 0..warm {
                        session
                            .publish(tw_frame(i, &payload))
                            .map_err(|e| e.to_string())?;
                    }
                    let start = Instant::now();
                    for i in warm..warm + count {
                        black_box(session.publish(black_box(tw_frame(i, &payload))))
                            .map_err(|e| e.to_string())?;
                    }
                    let elapsed = start.elapsed();
                    session.finish().await;
                    Ok::<_, String>(elapsed)
                }
                System::Arcly => {
                    let engine = arcly_engine();
                    let key = arcly::StreamKey::new("live", "cost");
                    let handle = engine
                        .start_publish(&key)
                        .await
                        .map_err(|e| e.to_string())?;
                    for i in 0..warm {
                        handle
                            .publish_frame(arcly_frame(i, &payload))
                            .map_err(|e| e.to_string())?;
                    }
                    let start = Instant::now();
                    for i in warm..warm + count {
                        black_box(handle.publish_frame(black_box(arcly_frame(i, &payload))))
                            .map_err(|e| e.to_string())?;
                    }
                    let elapsed = start.elapsed();
                    engine.end_publish(&key).await.map_err(|e| e.to_string())?;
                    Ok(elapsed)
                }
            }
        });
        task.await.map_err(|e| format!("publish task: {e}"))?
    });
    rt.shutdown_timeout(Duration::from_secs(10));
    Ok(result?.as_nanos() as f64 / count as f64)
}

// ---------------------------------------------------------------------------
// Memory, measured in a fresh child process per probe so that memory freed by
// an earlier measurement cannot be reused unseen.

const PROBES: [&str; 6] = [
    "tidewater-streams",
    "arcly-streams",
    "tidewater-subscriptions",
    "arcly-subscriptions",
    "tidewater-tasks",
    "arcly-tasks",
];

#[derive(Clone, Copy, Debug)]
struct ProbeResult {
    bytes_each: f64,
    setup: Duration,
}

/// Runs `kind` in this process: creates `count` objects after a warm-up of
/// `count / 20` and prints the RSS growth per object.
fn run_probe(kind: &str, count: usize) -> Result<ProbeResult, String> {
    let rt = runtime()?;
    let warm = (count / 20).max(1);
    let kind = kind.to_string();
    rt.block_on(async move {
        let rss = || rss_bytes().ok_or_else(|| "no /proc/self/status".to_string());
        let payload = payload();
        match kind.as_str() {
            "tidewater-streams" => {
                let engine = tw_engine()?;
                let mut sessions = Vec::with_capacity(warm + count);
                for i in 0..warm {
                    sessions.push(tw_open(&engine, &tw_key(&format!("w{i}"))?).await?);
                }
                let before = rss()?;
                let start = Instant::now();
                for i in 0..count {
                    sessions.push(tw_open(&engine, &tw_key(&format!("s{i}"))?).await?);
                }
                let setup = start.elapsed();
                let after = rss()?;
                black_box(&sessions);
                Ok(ProbeResult {
                    bytes_each: (after as f64 - before as f64) / count as f64,
                    setup,
                })
            }
            "arcly-streams" => {
                let engine = arcly_engine();
                let mut handles = Vec::with_capacity(warm + count);
                for i in 0..warm {
                    let key = arcly::StreamKey::new("live", format!("w{i}"));
                    handles.push(
                        engine
                            .start_publish(&key)
                            .await
                            .map_err(|e| e.to_string())?,
                    );
                }
                let before = rss()?;
                let start = Instant::now();
                for i in 0..count {
                    let key = arcly::StreamKey::new("live", format!("s{i}"));
                    handles.push(
                        engine
                            .start_publish(&key)
                            .await
                            .map_err(|e| e.to_string())?,
                    );
                }
                let setup = start.elapsed();
                let after = rss()?;
                black_box(&handles);
                Ok(ProbeResult {
                    bytes_each: (after as f64 - before as f64) / count as f64,
                    setup,
                })
            }
            "tidewater-subscriptions" | "tidewater-tasks" => {
                let tasks = kind == "tidewater-tasks";
                let engine = tw_engine()?;
                let key = tw_key("idle")?;
                let mut session = tw_open(&engine, &key).await?;
                for i in 0..GOP {
                    session
                        .publish(tw_frame(i, &payload))
                        .map_err(|e| e.to_string())?;
                }
                let parked = Arc::new(AtomicUsize::new(0));
                let mut subs = Vec::with_capacity(if tasks { 0 } else { warm + count });
                let mut handles = Vec::with_capacity(if tasks { warm + count } else { 0 });
                let mut add = |sub: tw::Subscription| {
                    if tasks {
                        let parked = Arc::clone(&parked);
                        handles.push(tokio::spawn(async move {
                            let mut sub = sub;
                            while sub.try_recv().is_some_and(|r| r.is_ok()) {}
                            parked.fetch_add(1, Ordering::Release);
                            while sub.recv().await.is_ok() {}
                        }));
                    } else {
                        subs.push(sub);
                    }
                };
                for _ in 0..warm {
                    add(engine
                        .subscribe(tw::Request::new(key.clone(), "bench"))
                        .await
                        .map_err(|e| e.to_string())?);
                }
                wait_parked(tasks, &parked, warm).await;
                let before = rss()?;
                let start = Instant::now();
                for _ in 0..count {
                    add(engine
                        .subscribe(tw::Request::new(key.clone(), "bench"))
                        .await
                        .map_err(|e| e.to_string())?);
                }
                let setup = start.elapsed();
                wait_parked(tasks, &parked, warm + count).await;
                let after = rss()?;
                black_box(&subs);
                session.finish().await;
                Ok(ProbeResult {
                    bytes_each: (after as f64 - before as f64) / count as f64,
                    setup,
                })
            }
            "arcly-subscriptions" | "arcly-tasks" => {
                let tasks = kind == "arcly-tasks";
                let engine = arcly_engine();
                let key = arcly::StreamKey::new("live", "idle");
                let handle = engine
                    .start_publish(&key)
                    .await
                    .map_err(|e| e.to_string())?;
                for i in 0..GOP {
                    handle
                        .publish_frame(arcly_frame(i, &payload))
                        .map_err(|e| e.to_string())?;
                }
                let parked = Arc::new(AtomicUsize::new(0));
                let mut subs = Vec::with_capacity(if tasks { 0 } else { warm + count });
                let mut handles = Vec::with_capacity(if tasks { warm + count } else { 0 });
                let mut add = |rx: tokio::sync::broadcast::Receiver<Arc<arcly::MediaFrame>>| {
                    if tasks {
                        let parked = Arc::clone(&parked);
                        handles.push(tokio::spawn(async move {
                            let mut rx = rx;
                            while !matches!(
                                rx.try_recv(),
                                Err(TryRecvError::Empty | TryRecvError::Closed)
                            ) {}
                            parked.fetch_add(1, Ordering::Release);
                            while rx.recv().await.is_ok() {}
                        }));
                    } else {
                        subs.push(rx);
                    }
                };
                for _ in 0..warm {
                    add(handle.subscribe());
                }
                wait_parked(tasks, &parked, warm).await;
                let before = rss()?;
                let start = Instant::now();
                for _ in 0..count {
                    add(handle.subscribe());
                }
                let setup = start.elapsed();
                wait_parked(tasks, &parked, warm + count).await;
                let after = rss()?;
                black_box(&subs);
                engine.end_publish(&key).await.map_err(|e| e.to_string())?;
                Ok(ProbeResult {
                    bytes_each: (after as f64 - before as f64) / count as f64,
                    setup,
                })
            }
            other => Err(format!("unknown probe {other:?}")),
        }
    })
}

/// Waits until `n` probe tasks are parked in `recv` (a moment after they said so).
async fn wait_parked(tasks: bool, parked: &AtomicUsize, n: usize) {
    if !tasks {
        return;
    }
    while parked.load(Ordering::Acquire) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Runs a probe in a child process (this same binary with `--probe`).
fn probe(kind: &str, count: usize) -> Result<ProbeResult, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = std::process::Command::new(exe)
        .args(["--probe", kind, &count.to_string()])
        .output()
        .map_err(|e| format!("probe {kind}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "probe {kind} failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("probe-result "))
        .ok_or_else(|| format!("probe {kind}: no result in {stdout:?}"))?;
    let mut fields = line.split_whitespace();
    let bytes_each: f64 = fields
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or("probe: bad bytes")?;
    let setup_ns: u64 = fields
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or("probe: bad setup time")?;
    Ok(ProbeResult {
        bytes_each,
        setup: Duration::from_nanos(setup_ns),
    })
}

// ---------------------------------------------------------------------------

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some((kind, count)) = &options.probe {
        return match run_probe(kind, *count) {
            Ok(r) => {
                println!("probe-result {:.1} {}", r.bytes_each, r.setup.as_nanos());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("probe {kind}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nFAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn describe(system: System, n: usize, run: &FanoutRun) -> String {
    format!(
        "N={n:>6} {:<19} {:>12} frames/s ({} delivered in {:.2} s, {:.0} ns CPU per delivery)",
        system.name(),
        format_rate(run.rate()),
        group_thousands(run.delivered),
        run.elapsed.as_secs_f64(),
        run.cpu_ns_per_delivery()
    )
}

/// One system alone, raw lines, no table (for profiling).
fn run_one(system: System, o: &Options) -> Result<(), String> {
    for _ in 0..o.reps {
        if o.fanout {
            for &n in &o.sizes {
                let run = fanout(system, n, o)
                    .map_err(|e| format!("{} fan-out to {n}: {e}", system.name()))?;
                println!("{}", describe(system, n, &run));
            }
        }
        if o.publish {
            println!(
                "{:<19} {:.1} ns per publish, no subscriber",
                system.name(),
                publish_cost(system, o.publishes)?
            );
        }
    }
    Ok(())
}

fn run(o: &Options) -> Result<(), String> {
    if let Some(system) = o.only {
        return run_one(system, o);
    }

    println!("## Fan-out (issue: kernel)\n");
    println!(
        "Command: `cargo xtask bench fanout{}` · machine: {} · date: {}\n",
        if o.quick { " --quick" } else { "" },
        machine(),
        today_utc()
    );

    if o.fanout {
        println!(
            "One publisher, N subscriber tasks, 2-worker tokio runtime, {PAYLOAD_LEN} B payloads, keyframe \
             every {GOP} frames, drain barrier every {} frames (rings: {RING_FRAMES} frames), ≥ {:.1} s timed \
             per measurement, median of {} interleaved runs; lossless and in order for every system \
             (checked). tidewater subscribers use `recv_ref` (lent frames); the `recv` columns use owned \
             `SharedFrame`s.\n",
            o.batch, o.secs, o.reps
        );
        // Interleaved: each repetition runs every size on every system,
        // rotating which goes first.
        let mut runs: Vec<[Vec<FanoutRun>; 3]> = o
            .sizes
            .iter()
            .map(|_| [Vec::new(), Vec::new(), Vec::new()])
            .collect();
        for rep in 0..o.reps {
            for (i, &n) in o.sizes.iter().enumerate() {
                let mut order = System::FANOUT;
                order.rotate_left((rep + i) % System::FANOUT.len());
                for system in order {
                    let run = fanout(system, n, o)
                        .map_err(|e| format!("{} fan-out to {n}: {e}", system.name()))?;
                    eprintln!("  rep {} {}", rep + 1, describe(system, n, &run));
                    runs[i][system as usize].push(run);
                }
            }
        }
        println!(
            "| subscribers N | tidewater frames/s | arcly-stream 0.8.3 frames/s | ratio \
             | tidewater `recv` (owned) frames/s | ratio \
             | CPU ns per delivery: tidewater | `recv` | arcly |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (i, &n) in o.sizes.iter().enumerate() {
            let of = |s: System, f: fn(&FanoutRun) -> f64| {
                median(&runs[i][s as usize].iter().map(f).collect::<Vec<_>>())
            };
            let rate = |s: System| of(s, FanoutRun::rate);
            let cpu = |s: System| of(s, FanoutRun::cpu_ns_per_delivery);
            let (t, owned, a) = (
                rate(System::Tidewater),
                rate(System::TidewaterOwned),
                rate(System::Arcly),
            );
            println!(
                "| {} | {} | {} | **{:.2}×** | {} | {:.2}× | {:.0} | {:.0} | {:.0} |",
                group_thousands(n as u64),
                format_rate(t),
                format_rate(a),
                t / a,
                format_rate(owned),
                owned / a,
                cpu(System::Tidewater),
                cpu(System::TidewaterOwned),
                cpu(System::Arcly)
            );
        }
        println!();
    }

    if o.publish {
        let mut cost = [Vec::new(), Vec::new(), Vec::new()];
        for rep in 0..o.reps {
            let order = if rep % 2 == 0 {
                [System::Tidewater, System::Arcly]
            } else {
                [System::Arcly, System::Tidewater]
            };
            for system in order {
                cost[system as usize].push(publish_cost(system, o.publishes)?);
            }
        }
        let (tw_cost, ar_cost) = (
            median(&cost[System::Tidewater as usize]),
            median(&cost[System::Arcly as usize]),
        );
        println!(
            "| publish with no subscriber ({} × 4 KiB frames, median of {}) | tidewater | arcly-stream 0.8.3 | ratio |",
            group_thousands(o.publishes),
            o.reps
        );
        println!("|---|---:|---:|---:|");
        println!(
            "| ns per publish | {tw_cost:.0} | {ar_cost:.0} | {:.2}× |",
            ar_cost / tw_cost
        );
        println!();
    }

    if o.memory {
        type ArclyReceiver = tokio::sync::broadcast::Receiver<Arc<arcly::MediaFrame>>;
        let rows = [
            (
                "idle stream (published, no frame yet)",
                o.idle_streams,
                [PROBES[0], PROBES[1]],
                Some((
                    size_of::<tw::PublishSession>(),
                    size_of::<arcly::StreamHandle>(),
                )),
            ),
            (
                "idle subscription (the object, kept in a Vec)",
                o.idle_subscribers,
                [PROBES[2], PROBES[3]],
                Some((size_of::<tw::Subscription>(), size_of::<ArclyReceiver>())),
            ),
            (
                "idle subscriber task (parked in recv)",
                o.idle_subscribers,
                [PROBES[4], PROBES[5]],
                None,
            ),
        ];
        let mut results = Vec::new();
        for (label, count, kinds, inline) in rows {
            let t = probe(kinds[0], count)?;
            let a = probe(kinds[1], count)?;
            eprintln!(
                "  memory {label}: tidewater {:.0} B (set-up {:.2} s), arcly {:.0} B (set-up {:.2} s)",
                t.bytes_each,
                t.setup.as_secs_f64(),
                a.bytes_each,
                a.setup.as_secs_f64()
            );
            results.push((label, count, t, a, inline));
        }
        println!(
            "| memory, bytes each (RSS growth / N) | N | tidewater | arcly-stream 0.8.3 \
             | set-up of N: tidewater | set-up of N: arcly |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for (label, count, t, a, inline) in results {
            let (ti, ai) = match inline {
                Some((ti, ai)) => (format!(" (inline {ti})"), format!(" (inline {ai})")),
                None => (String::new(), String::new()),
            };
            println!(
                "| {label} | {} | {:.0}{ti} | {:.0}{ai} | {:.3} s | {:.3} s |",
                group_thousands(count as u64),
                t.bytes_each,
                a.bytes_each,
                t.setup.as_secs_f64(),
                a.setup.as_secs_f64()
            );
        }
        println!();
    }
    Ok(())
}
