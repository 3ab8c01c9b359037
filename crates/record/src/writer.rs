//! The disk side: one thread per recorded stream, fed by a bounded queue.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use crate::index::{self, Fragment, Segment};
use crate::library::StreamShared;
use crate::mux::Output;
use crate::stats::Stats;

/// Bytes an operation puts in the queue.
pub(crate) fn op_bytes(op: &Output) -> usize {
    match op {
        Output::Open(s) => s.init.len(),
        Output::Fragment(f) => f.bytes.len(),
        Output::Close => 0,
    }
}

struct Open {
    file: File,
    path: PathBuf,
    segment: Segment,
}

/// Runs until the queue closes or the disk fails (then the stream's shared
/// state says so and the rest of the queue is discarded).
pub(crate) fn run(
    dir: PathBuf,
    mut rx: mpsc::Receiver<Output>,
    shared: Arc<StreamShared>,
    stats: Arc<Stats>,
) {
    let mut open: Option<Open> = None;
    while let Some(op) = rx.blocking_recv() {
        let size = op_bytes(&op);
        let result = apply(&dir, op, &mut open, &shared, &stats);
        shared.queued.fetch_sub(size, Ordering::AcqRel);
        if let Err(e) = result {
            let what = match e.raw_os_error() {
                Some(28) => "disk full".to_string(),
                _ => e.to_string(),
            };
            tracing::error!(
                "record: {}: writing failed ({what}): recording of this stream stopped until its \
                 next publish; free space there, or cap it with `[record] retention` / `max_bytes` \
                 or move `[record] dir`",
                dir.display()
            );
            stats.disk_errors.fetch_add(1, Ordering::Relaxed);
            shared.fail(what);
            // Keep what is complete on disk, indexed.
            if let Some(o) = open.take() {
                drop(o.file);
                let scanned = index::repair(&o.path, o.segment.start_ms);
                if let Ok(s) = scanned {
                    let _ = shared.with_index(|| index::append_index(&dir, &s.segment));
                }
                shared.set_current(None);
            }
            rx.close();
            while rx.blocking_recv().is_some() {}
            return;
        }
    }
    if let Err(e) = close(&dir, &mut open, &shared, &stats) {
        tracing::warn!("record: {}: closing: {e}", dir.display());
    }
}

fn apply(
    dir: &std::path::Path,
    op: Output,
    open: &mut Option<Open>,
    shared: &StreamShared,
    stats: &Stats,
) -> io::Result<()> {
    match op {
        Output::Open(start) => {
            close(dir, open, shared, stats)?;
            fs::create_dir_all(dir)?;
            // Two files of one stream never share a name.
            let mut start_ms = start.start_ms;
            let mut name = crate::time::file_name(start_ms);
            while dir.join(&name).exists() {
                start_ms += 1;
                name = crate::time::file_name(start_ms);
            }
            let path = dir.join(&name);
            let segment = Segment {
                file: name,
                start_ms,
                base_ms: start.base_ms,
                init_len: start.init.len() as u64,
                codecs: start.codecs,
                fragments: Vec::new(),
            };
            // Known as the file being written before it exists, under the
            // index lock: a rebuild never takes it for a crashed one.
            let mut file = shared.with_index(|| {
                shared.set_current(Some(segment.clone()));
                File::create(&path)
            })?;
            file.write_all(&start.init)?;
            stats
                .bytes
                .fetch_add(start.init.len() as u64, Ordering::Relaxed);
            *open = Some(Open {
                file,
                path,
                segment,
            });
        }
        Output::Fragment(f) => {
            let Some(o) = open.as_mut() else {
                return Ok(());
            };
            let offset = o.segment.bytes();
            // One write of the whole fragment: a crash leaves at most one
            // partial box at the tail, which the next start cuts off.
            o.file.write_all(&f.bytes)?;
            o.file.flush()?;
            o.segment.fragments.push(Fragment {
                offset,
                len: f.bytes.len() as u64,
                t_ms: f.t_ms,
                duration_ms: f.duration_ms,
                key: f.keyframe,
            });
            shared.set_current(Some(o.segment.clone()));
            stats.fragments.fetch_add(1, Ordering::Relaxed);
            stats
                .bytes
                .fetch_add(f.bytes.len() as u64, Ordering::Relaxed);
            shared.add_bytes(f.bytes.len() as u64);
        }
        Output::Close => close(dir, open, shared, stats)?,
    }
    Ok(())
}

fn close(
    dir: &std::path::Path,
    open: &mut Option<Open>,
    shared: &StreamShared,
    stats: &Stats,
) -> io::Result<()> {
    let Some(o) = open.take() else {
        return Ok(());
    };
    o.file.sync_data()?;
    drop(o.file);
    if o.segment.fragments.is_empty() {
        // A file with no media is of no use to anyone.
        fs::remove_file(&o.path)?;
    } else {
        shared.with_index(|| index::append_index(dir, &o.segment))?;
        stats.segments.fetch_add(1, Ordering::Relaxed);
    }
    shared.set_current(None);
    Ok(())
}
