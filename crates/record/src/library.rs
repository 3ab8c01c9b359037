//! The recordings on disk, as playback sees them: [`Library`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tidewater_core::StreamKey;

use crate::cache::{self, CachedDir, CachedIndex};
use crate::index::{self, Segment};

/// Two segments further apart than this (wall clock) are separate spans.
pub const SPAN_GAP_MS: i64 = 1500;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The live state of one stream being recorded, shared by its writer thread,
/// its task and playback.
#[derive(Debug, Default)]
pub struct StreamShared {
    pub(crate) queued: AtomicUsize,
    bytes: AtomicU64,
    current: Mutex<Option<Segment>>,
    error: Mutex<Option<String>>,
    index_lock: Arc<Mutex<()>>,
    counters: Arc<StreamCounters>,
}

/// Counters of one stream's recording that outlive a recording run (kept
/// per stream key for the life of the process).
#[derive(Debug, Default)]
pub(crate) struct StreamCounters {
    keyframe_drops: AtomicU64,
    disk_errors: AtomicU64,
}

impl StreamShared {
    pub(crate) fn set_current(&self, s: Option<Segment>) {
        *lock(&self.current) = s;
    }

    pub(crate) fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn fail(&self, why: String) {
        self.counters.disk_errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.error) = Some(why);
    }

    pub(crate) fn dropped_to_keyframe(&self) {
        self.counters.keyframe_drops.fetch_add(1, Ordering::Relaxed);
    }

    fn status(&self, key: &StreamKey, recording: bool) -> StreamStatus {
        StreamStatus {
            key: key.clone(),
            recording,
            current: lock(&self.current).as_ref().map(|c| c.file.clone()),
            bytes: self.bytes.load(Ordering::Relaxed),
            error: lock(&self.error).clone(),
            keyframe_drops: self.counters.keyframe_drops.load(Ordering::Relaxed),
            disk_errors: self.counters.disk_errors.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn failed(&self) -> bool {
        lock(&self.error).is_some()
    }

    pub(crate) fn with_index<T>(&self, f: impl FnOnce() -> T) -> T {
        let _g = lock(&self.index_lock);
        f()
    }
}

/// What [`Library::status`] and [`Library::state`] say of a stream's
/// recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamStatus {
    /// The stream.
    pub key: StreamKey,
    /// Whether it is being recorded now.
    pub recording: bool,
    /// The file being written, if any.
    pub current: Option<String>,
    /// Bytes written by its last (or current) recording run.
    pub bytes: u64,
    /// Why its last recording run stopped, if it failed (`disk full`).
    pub error: Option<String>,
    /// Times its recording dropped to the next keyframe (a slow disk, or
    /// the kernel skipped it), since the process started.
    pub keyframe_drops: u64,
    /// Times a write error stopped its recording, since the process started.
    pub disk_errors: u64,
}

impl StreamStatus {
    /// A stream not recorded (yet) by this process.
    pub fn idle(key: StreamKey) -> Self {
        StreamStatus {
            key,
            recording: false,
            current: None,
            bytes: 0,
            error: None,
            keyframe_drops: 0,
            disk_errors: 0,
        }
    }
}

/// A continuous span of recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Start (Unix ms).
    pub start_ms: i64,
    /// Duration (ms).
    pub duration_ms: i64,
}

/// One piece of a range download: `len` bytes of `file` from `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The file.
    pub path: PathBuf,
    /// Where in it.
    pub offset: u64,
    /// How many bytes.
    pub len: u64,
}

/// Why a range download ends before the end of the range asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The stream was published anew (or the recorder dropped frames).
    Discontinuity,
    /// The decoder configuration changed.
    ConfigChange,
}

impl Cut {
    /// As a header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Cut::Discontinuity => "discontinuity",
            Cut::ConfigChange => "config-change",
        }
    }
}

/// A range download: an init segment and fragments, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangePlan {
    /// Wall-clock start of the first fragment (the keyframe at or before the
    /// start asked for).
    pub start_ms: i64,
    /// Duration covered (ms).
    pub duration_ms: i64,
    /// The bytes, in order.
    pub pieces: Vec<Piece>,
    /// Set when it ends early.
    pub cut: Option<Cut>,
}

impl RangePlan {
    /// Total bytes.
    pub fn len(&self) -> u64 {
        self.pieces.iter().map(|p| p.len).sum()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}

/// The recordings under one root directory, and the streams being recorded
/// into it. Cheap to clone. Every method reads files: call them off the
/// async runtime's hot threads (`spawn_blocking`).
#[derive(Clone, Debug)]
pub struct Library {
    inner: Arc<LibraryInner>,
}

#[derive(Debug)]
struct LibraryInner {
    root: PathBuf,
    live: Mutex<HashMap<StreamKey, Arc<StreamShared>>>,
    /// How each stream's last recording run ended.
    ended: Mutex<HashMap<StreamKey, StreamStatus>>,
    index_locks: Mutex<HashMap<StreamKey, Arc<Mutex<()>>>>,
    counters: Mutex<HashMap<StreamKey, Arc<StreamCounters>>>,
    caches: Mutex<HashMap<StreamKey, Arc<Mutex<StreamCache>>>>,
}

/// What playback keeps of one stream's directory between requests.
#[derive(Debug, Default)]
struct StreamCache {
    index: CachedIndex,
    dir: CachedDir,
}

/// The segments of a stream as playback sees them.
struct View {
    indexed: Arc<Vec<Segment>>,
    /// The file being written and files the index misses.
    extra: Vec<Segment>,
}

impl View {
    /// Every segment with media, oldest first.
    fn sorted(&self) -> Vec<&Segment> {
        let mut v: Vec<&Segment> = self
            .indexed
            .iter()
            .chain(&self.extra)
            .filter(|s| !s.fragments.is_empty())
            .collect();
        // Nearly sorted already (the index is written in order): cheap.
        v.sort_by(|a, b| a.start_ms.cmp(&b.start_ms).then(a.file.cmp(&b.file)));
        v
    }
}

impl Library {
    /// The recordings under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Library {
            inner: Arc::new(LibraryInner {
                root: root.into(),
                live: Mutex::default(),
                ended: Mutex::default(),
                index_locks: Mutex::default(),
                counters: Mutex::default(),
                caches: Mutex::default(),
            }),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The directory of `key`'s recordings.
    pub fn dir(&self, key: &StreamKey) -> PathBuf {
        index::stream_dir(&self.inner.root, key)
    }

    fn index_lock(&self, key: &StreamKey) -> Arc<Mutex<()>> {
        lock(&self.inner.index_locks)
            .entry(key.clone())
            .or_default()
            .clone()
    }

    pub(crate) fn register(&self, key: &StreamKey) -> Arc<StreamShared> {
        let counters = lock(&self.inner.counters)
            .entry(key.clone())
            .or_default()
            .clone();
        let shared = Arc::new(StreamShared {
            index_lock: self.index_lock(key),
            counters,
            ..StreamShared::default()
        });
        lock(&self.inner.live).insert(key.clone(), shared.clone());
        shared
    }

    pub(crate) fn unregister(&self, key: &StreamKey, shared: &Arc<StreamShared>) {
        let mut live = lock(&self.inner.live);
        if live.get(key).is_some_and(|s| Arc::ptr_eq(s, shared)) {
            live.remove(key);
            lock(&self.inner.ended).insert(key.clone(), shared.status(key, false));
        }
    }

    /// The streams being recorded now.
    pub fn status(&self) -> Vec<StreamStatus> {
        let mut v: Vec<StreamStatus> = lock(&self.inner.live)
            .iter()
            .map(|(k, s)| s.status(k, !s.failed()))
            .collect();
        v.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        v
    }

    /// The recording state of `key`: the run in progress, else how the last
    /// one ended, else `None` (not recorded since the process started).
    pub fn state(&self, key: &StreamKey) -> Option<StreamStatus> {
        if let Some(s) = lock(&self.inner.live).get(key) {
            return Some(s.status(key, !s.failed()));
        }
        lock(&self.inner.ended).get(key).cloned()
    }

    /// The file being written for `key`, if any.
    pub fn current_file(&self, key: &StreamKey) -> Option<String> {
        let live = lock(&self.inner.live);
        let s = live.get(key)?;
        lock(&s.current).as_ref().map(|c| c.file.clone())
    }

    /// Repairs and indexes `key`'s directory (see [`index::rebuild`]),
    /// leaving the file being written alone. What it read is kept for
    /// playback (see [`cache`](crate::cache)): after the start's repair,
    /// the first request does not parse the index again.
    pub fn rebuild(&self, key: &StreamKey) -> std::io::Result<Arc<Vec<Segment>>> {
        let dir = self.dir(key);
        let cache = self.cache_of(key);
        let mut c = lock(&cache);
        let index_lock = self.index_lock(key);
        let _g = lock(&index_lock);
        // Looked up under the index lock: a file the writer closes meanwhile
        // is in the index by the time the lock is had.
        let writing = self.current_file(key);
        let segments = Arc::new(index::rebuild(&dir, writing.as_deref())?);
        cache::prime(&dir, &mut c.index, segments.clone());
        // The first request after a start finds the files listed too.
        cache::refresh_dir(&dir, &mut c.dir);
        Ok(segments)
    }

    fn cache_of(&self, key: &StreamKey) -> Arc<Mutex<StreamCache>> {
        lock(&self.inner.caches)
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// The streams that have a directory under the root (`app/stream`).
    pub fn streams(&self) -> Vec<StreamKey> {
        let mut v = Vec::new();
        let Ok(apps) = std::fs::read_dir(&self.inner.root) else {
            return v;
        };
        for app in apps.filter_map(Result::ok) {
            let Ok(streams) = std::fs::read_dir(app.path()) else {
                continue;
            };
            for s in streams.filter_map(Result::ok) {
                if let (Some(a), Some(n)) = (app.file_name().to_str(), s.file_name().to_str())
                    && let Ok(k) = StreamKey::new(a, n)
                {
                    v.push(k);
                }
            }
        }
        v.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        v
    }

    /// The index and file list of `key`, brought up to date (see
    /// [`cache`](crate::cache)), then the file being written and any file
    /// the index misses.
    fn view(&self, key: &StreamKey) -> View {
        let dir = self.dir(key);
        let cache = self.cache_of(key);
        let (indexed, names, files) = {
            let mut c = lock(&cache);
            {
                let index_lock = self.index_lock(key);
                let _g = lock(&index_lock);
                cache::refresh_index(&dir, &mut c.index);
            }
            cache::refresh_dir(&dir, &mut c.dir);
            (
                c.index.segments.clone(),
                c.index.names.clone(),
                c.dir.files.clone(),
            )
        };
        let current = lock(&self.inner.live)
            .get(key)
            .and_then(|s| lock(&s.current).clone());
        let mut extra = Vec::new();
        for (name, start) in files.iter() {
            if names.contains(name) {
                continue;
            }
            match &current {
                Some(c) if c.file == *name => extra.push(c.clone()),
                _ => {
                    if let Ok(s) = index::scan(&dir.join(name), *start) {
                        extra.push(s.segment);
                    }
                }
            }
        }
        // Written since the directory was listed.
        if let Some(c) = current
            && !names.contains(&c.file)
            && !extra.iter().any(|s| s.file == c.file)
        {
            extra.push(c);
        }
        View { indexed, extra }
    }

    /// Every segment of `key`, oldest first: the index, the file being
    /// written (up to its last complete fragment), and any file the index
    /// misses (scanned, not repaired).
    pub fn segments(&self, key: &StreamKey) -> Vec<Segment> {
        self.view(key).sorted().into_iter().cloned().collect()
    }

    /// The continuous spans of `key`'s recordings.
    pub fn spans(&self, key: &StreamKey) -> Vec<Span> {
        spans_of(&self.view(key).sorted())
    }

    /// An HLS VOD playlist of `key` over `[start_ms, start_ms + duration_ms)`
    /// (see the crate docs); `uri(file)` names a segment file. `None` when
    /// nothing was recorded then.
    pub fn playlist(
        &self,
        key: &StreamKey,
        start_ms: i64,
        duration_ms: i64,
        uri: impl Fn(&str) -> String,
    ) -> Option<String> {
        playlist_of(&self.view(key).sorted(), start_ms, duration_ms, uri)
    }

    /// The pieces of one fragmented MP4 of `key` over the range: the init
    /// segment of the file holding `start_ms`, its fragments from the
    /// keyframe at or before it, and those of the files that continue it,
    /// up to the end of the range, a republish or a configuration change.
    pub fn range(&self, key: &StreamKey, start_ms: i64, duration_ms: i64) -> Option<RangePlan> {
        let dir = self.dir(key);
        let view = self.view(key);
        let segments = view.sorted();
        let end = start_ms.saturating_add(duration_ms.max(0));
        let first = segments
            .iter()
            .position(|s| s.end_ms() > start_ms && s.start_ms < end)?;
        let mut plan = RangePlan {
            start_ms: 0,
            duration_ms: 0,
            pieces: Vec::new(),
            cut: None,
        };
        let mut prev: Option<&Segment> = None;
        let mut prev_init: Option<Vec<u8>> = None;
        for &s in segments.get(first..).unwrap_or_default() {
            if s.start_ms >= end {
                break;
            }
            let init = read_init(&dir.join(&s.file), s.init_len);
            if let Some(p) = prev {
                if !same_timeline(p, s) {
                    plan.cut = Some(Cut::Discontinuity);
                    break;
                }
                // The timeline goes on but the init segment differs: the
                // decoder would need the new one, which one fMP4 cannot say.
                if !same_config(p, s) || init.is_none() || init != prev_init {
                    plan.cut = Some(Cut::ConfigChange);
                    break;
                }
            } else {
                plan.pieces.push(Piece {
                    path: dir.join(&s.file),
                    offset: 0,
                    len: s.init_len,
                });
            }
            let groups = groups(s);
            let mut began = prev.is_some();
            for g in &groups {
                let (g_start, g_end) = (s.start_ms + g.t_ms, s.start_ms + g.t_ms + g.duration_ms);
                if g_end <= start_ms || g_start >= end {
                    continue;
                }
                if !began {
                    plan.start_ms = g_start;
                    began = true;
                }
                plan.duration_ms = g_end - plan.start_ms;
                plan.pieces.push(Piece {
                    path: dir.join(&s.file),
                    offset: g.offset,
                    len: g.len,
                });
            }
            prev = Some(s);
            prev_init = init;
        }
        (plan.pieces.len() > 1).then_some(plan)
    }
}

fn read_init(path: &Path, len: u64) -> Option<Vec<u8>> {
    let mut f = File::open(path).ok()?;
    f.seek(SeekFrom::Start(0)).ok()?;
    let mut buf = vec![0; usize::try_from(len.min(1 << 20)).ok()?];
    f.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// Whether `next` continues `prev` on the same publish timeline (no
/// republish, no frames lost in between).
fn same_timeline(prev: &Segment, next: &Segment) -> bool {
    next.base_ms > 0
        && (next.base_ms - (prev.base_ms + prev.duration_ms())).abs() <= 100
        && (next.start_ms - prev.end_ms()).abs() <= SPAN_GAP_MS
}

/// Whether `next` has the tracks of `prev`, as far as the index says (the
/// init bytes decide for a range download).
fn same_config(prev: &Segment, next: &Segment) -> bool {
    next.codecs == prev.codecs && next.init_len == prev.init_len
}

/// Whether `next` continues `prev` on the same publish timeline with the
/// same tracks (its fragments can follow `prev`'s in one file).
fn continues(prev: &Segment, next: &Segment) -> bool {
    same_timeline(prev, next) && same_config(prev, next)
}

/// The continuous spans of `segments` (sorted by start).
pub fn spans(segments: &[Segment]) -> Vec<Span> {
    spans_of(&segments.iter().collect::<Vec<_>>())
}

fn spans_of(segments: &[&Segment]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for &s in segments {
        let d = s.duration_ms();
        if d <= 0 {
            continue;
        }
        match out.last_mut() {
            Some(last) if s.start_ms - (last.start_ms + last.duration_ms) <= SPAN_GAP_MS => {
                let end = (s.start_ms + d).max(last.start_ms + last.duration_ms);
                last.duration_ms = end - last.start_ms;
            }
            _ => out.push(Span {
                start_ms: s.start_ms,
                duration_ms: d,
            }),
        }
    }
    out
}

/// A run of fragments starting at a keyframe fragment: one HLS segment.
#[derive(Clone, Copy, Debug)]
struct Group {
    offset: u64,
    len: u64,
    t_ms: i64,
    duration_ms: i64,
}

fn groups(s: &Segment) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for f in &s.fragments {
        match out.last_mut() {
            Some(g) if !f.key && g.offset + g.len == f.offset => {
                g.len += f.len;
                g.duration_ms = f.t_ms + f.duration_ms - g.t_ms;
            }
            _ => out.push(Group {
                offset: f.offset,
                len: f.len,
                t_ms: f.t_ms,
                duration_ms: f.duration_ms,
            }),
        }
    }
    out
}

/// An HLS VOD playlist over `segments` (see [`Library::playlist`]).
pub fn playlist(
    segments: &[Segment],
    start_ms: i64,
    duration_ms: i64,
    uri: impl Fn(&str) -> String,
) -> Option<String> {
    playlist_of(
        &segments.iter().collect::<Vec<_>>(),
        start_ms,
        duration_ms,
        uri,
    )
}

fn playlist_of(
    segments: &[&Segment],
    start_ms: i64,
    duration_ms: i64,
    uri: impl Fn(&str) -> String,
) -> Option<String> {
    let end = start_ms.saturating_add(duration_ms.max(0));
    let mut body = String::new();
    let mut target = 1;
    let mut prev: Option<&Segment> = None;
    let mut any = false;
    for &s in segments {
        if s.end_ms() <= start_ms || s.start_ms >= end {
            continue;
        }
        let mut first_in_file = true;
        for g in groups(s) {
            let (g_start, g_end) = (s.start_ms + g.t_ms, s.start_ms + g.t_ms + g.duration_ms);
            if g_end <= start_ms || g_start >= end || g.duration_ms <= 0 {
                continue;
            }
            if first_in_file {
                if let Some(p) = prev
                    && !continues(p, s)
                {
                    body.push_str("#EXT-X-DISCONTINUITY\n");
                }
                let _ = writeln!(
                    body,
                    "#EXT-X-MAP:URI=\"{}\",BYTERANGE=\"{}@0\"",
                    uri(&s.file),
                    s.init_len
                );
                first_in_file = false;
                prev = Some(s);
            }
            let secs = g.duration_ms as f64 / 1000.0;
            target = target.max((g.duration_ms + 999) / 1000);
            let _ = writeln!(
                body,
                "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{secs:.3},\n#EXT-X-BYTERANGE:{}@{}\n{}",
                crate::time::rfc3339(g_start),
                g.len,
                g.offset,
                uri(&s.file)
            );
            any = true;
        }
    }
    if !any {
        return None;
    }
    Some(format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n{body}#EXT-X-ENDLIST\n"
    ))
}
