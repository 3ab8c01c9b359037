//! Frames as subscribers receive them, borrowed ([`FrameRef`]) or owned
//! ([`SharedFrame`]), with access to their derived outputs.
#![allow(
    clippy::indexing_slicing,
    clippy::expect_used,
    reason = "a FrameRef or SharedFrame is only made for a written slot below BLOCK_LEN, and a OnceLock never becomes unset; no network or file input is read here"
)]

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;

use super::{Block, BlockHandle, Entry, OutputFormat};
use crate::catalog::Catalog;
use crate::frame::Frame;

/// A published frame borrowed from the log (see [`Subscription::recv_ref`](crate::Subscription::recv_ref)).
#[derive(Clone, Copy)]
pub struct FrameRef<'a> {
    block: &'a Arc<Block>,
    index: usize,
}

impl<'a> FrameRef<'a> {
    #[inline]
    pub(crate) fn new(block: &'a Arc<Block>, index: usize) -> Self {
        debug_assert!(block.slots[index].get().is_some());
        FrameRef { block, index }
    }

    #[inline]
    pub(crate) fn entry(&self) -> &'a Entry {
        // Only made for a slot that is already written; a OnceLock never becomes unset.
        self.block.slots[self.index]
            .get()
            .expect("FrameRef of a written slot")
    }

    /// The frame.
    #[inline]
    pub fn frame(&self) -> &'a Frame {
        &self.entry().frame
    }

    /// Its position in the publish generation (0, 1, 2, …).
    #[inline]
    pub fn seq(&self) -> u64 {
        self.block.first_seq + self.index as u64
    }

    /// The catalog it was published under.
    #[inline]
    pub fn catalog(&self) -> &'a Arc<Catalog> {
        &self.entry().catalog
    }

    /// Ingest time, microseconds since its generation started.
    #[inline]
    pub fn ingest_us(&self) -> u64 {
        self.entry().ingest_us
    }

    /// Whether decoding can start here for the whole stream: the GOP's keyframe.
    #[inline]
    pub fn is_gop_start(&self) -> bool {
        self.entry().anchor
    }

    /// An owned handle to the same frame. It allocates a small handle; a
    /// consumer that keeps every frame should receive with
    /// [`Subscription::recv`](crate::Subscription::recv) instead.
    pub fn to_shared(&self) -> SharedFrame {
        SharedFrame {
            block: Arc::new(BlockHandle(Arc::clone(self.block))),
            index: self.index as u32,
        }
    }

    /// The frame's output in `format`, computed by `encode` on first use for
    /// this frame and shared with every other consumer of the stream. Its
    /// bytes count against the stream's ring byte bound while it is retained.
    pub fn derived(
        &self,
        format: OutputFormat,
        encode: impl FnOnce(&Frame, &Catalog) -> Bytes,
    ) -> Bytes {
        let entry = self.entry();
        entry.derived.get_or_make(
            format,
            || encode(&entry.frame, &entry.catalog),
            |made| self.block.charge_derived(made),
        )
    }
}

impl Deref for FrameRef<'_> {
    type Target = Frame;
    #[inline]
    fn deref(&self) -> &Frame {
        self.frame()
    }
}

impl fmt::Debug for FrameRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameRef")
            .field("seq", &self.seq())
            .field("frame", self.frame())
            .finish()
    }
}

/// A published frame as a subscriber receives it: cloning it is one
/// reference-count increment; the payload is never copied.
///
/// It holds its block of the log through a handle owned by the subscriber
/// that received it, so the count it touches is that subscriber's alone.
#[derive(Clone)]
pub struct SharedFrame {
    block: Arc<BlockHandle>,
    index: u32,
}

impl SharedFrame {
    #[inline]
    pub(crate) fn new(block: Arc<BlockHandle>, index: usize) -> Self {
        debug_assert!(block.0.slots[index].get().is_some());
        SharedFrame {
            block,
            index: index as u32,
        }
    }

    /// A borrowed view of the same frame.
    #[inline]
    pub fn as_ref(&self) -> FrameRef<'_> {
        FrameRef {
            block: &self.block.0,
            index: self.index as usize,
        }
    }

    /// The frame.
    #[inline]
    pub fn frame(&self) -> &Frame {
        self.as_ref().frame()
    }

    /// Its position in the publish generation (0, 1, 2, …).
    #[inline]
    pub fn seq(&self) -> u64 {
        self.as_ref().seq()
    }

    /// The catalog it was published under.
    #[inline]
    pub fn catalog(&self) -> &Arc<Catalog> {
        self.as_ref().catalog()
    }

    /// Ingest time, microseconds since its generation started.
    #[inline]
    pub fn ingest_us(&self) -> u64 {
        self.as_ref().ingest_us()
    }

    /// Whether decoding can start here for the whole stream: the GOP's keyframe.
    #[inline]
    pub fn is_gop_start(&self) -> bool {
        self.as_ref().is_gop_start()
    }

    /// The frame's output in `format`: see [`FrameRef::derived`].
    pub fn derived(
        &self,
        format: OutputFormat,
        encode: impl FnOnce(&Frame, &Catalog) -> Bytes,
    ) -> Bytes {
        self.as_ref().derived(format, encode)
    }
}

impl Deref for SharedFrame {
    type Target = Frame;
    #[inline]
    fn deref(&self) -> &Frame {
        self.frame()
    }
}

impl fmt::Debug for SharedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedFrame")
            .field("seq", &self.seq())
            .field("frame", self.frame())
            .finish()
    }
}
