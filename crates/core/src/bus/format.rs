//! Frames as subscribers receive them, and the per-stream cache of derived
//! outputs (RTMP chunks, TS packets, RTP packets, …) built once per frame.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use super::{Block, BlockHandle, Entry};
use crate::catalog::Catalog;
use crate::error::Error;
use crate::frame::Frame;

/// How many derived output formats one process can register.
pub const MAX_OUTPUT_FORMATS: usize = 8;

static FORMATS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// A derived output format: a protocol's per-frame encoding (for example
/// "RTMP chunks of this frame"), computed once per frame by whichever consumer
/// asks first and shared by every other consumer of the same stream.
///
/// Register each format once, at start-up (typically in a `static LazyLock`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutputFormat {
    index: u8,
    name: &'static str,
}

impl OutputFormat {
    /// Registers (or finds) the format of this name. Names are interned
    /// once: at most [`MAX_OUTPUT_FORMATS`] exist per process, so a name
    /// built at run time (`rtmp-chunks-8192`) costs a few bytes once.
    pub fn register(name: &str) -> Result<OutputFormat, Error> {
        let mut formats = FORMATS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = formats.iter().position(|n| *n == name) {
            return Ok(OutputFormat {
                index: i as u8,
                name: formats[i],
            });
        }
        if formats.len() >= MAX_OUTPUT_FORMATS {
            return Err(Error::TooManyFormats(MAX_OUTPUT_FORMATS));
        }
        let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
        formats.push(name);
        Ok(OutputFormat {
            index: (formats.len() - 1) as u8,
            name,
        })
    }

    /// The name it was registered with.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl fmt::Debug for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OutputFormat({})", self.name)
    }
}

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
        let slots = entry
            .derived
            .get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())));
        let slot = &slots[usize::from(format.index)];
        if let Some(b) = slot.get() {
            return b.clone();
        }
        let mut charged = 0;
        let bytes = slot.get_or_init(|| {
            let b = encode(&entry.frame, &entry.catalog);
            charged = b.len();
            b
        });
        if charged > 0 {
            self.block.charge_derived(charged);
        }
        bytes.clone()
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
