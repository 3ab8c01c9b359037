//! Counters of a recorder.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a recorder did, since it started.
#[derive(Debug, Default)]
pub struct Stats {
    /// Segment files finished.
    pub segments: AtomicU64,
    /// Fragments written.
    pub fragments: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
    /// Times the recorder dropped to the next keyframe because the disk
    /// queue was full (a slow disk) or the kernel skipped it.
    pub keyframe_drops: AtomicU64,
    /// Streams whose recording stopped on a write error (a full disk).
    pub disk_errors: AtomicU64,
    /// Segment files deleted by retention.
    pub deleted: AtomicU64,
}

impl Stats {
    /// A plain copy of the counters:
    /// `(segments, fragments, bytes, keyframe_drops, disk_errors, deleted)`.
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            segments: l(&self.segments),
            fragments: l(&self.fragments),
            bytes: l(&self.bytes),
            keyframe_drops: l(&self.keyframe_drops),
            disk_errors: l(&self.disk_errors),
            deleted: l(&self.deleted),
        }
    }
}

/// A copy of [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct StatsSnapshot {
    pub segments: u64,
    pub fragments: u64,
    pub bytes: u64,
    pub keyframe_drops: u64,
    pub disk_errors: u64,
    pub deleted: u64,
}
