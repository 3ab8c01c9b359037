//! Derived outputs: a protocol's per-frame encoding (RTMP chunks, TS packets,
//! RTP packets, …), built once per frame by whichever consumer asks first and
//! shared by every other consumer of the stream.
//!
//! There is no registry: an [`OutputFormat`] is a typed key compared by value
//! (a name and a parameter such as a chunk size), so two engines in one
//! process share nothing and a protocol may use as many formats as its
//! streams ask for. Each frame keeps the outputs made of it in a short
//! append-only chain (one node per format actually used on that frame,
//! typically one to three), read with one acquire load per node and never
//! locked on the read path.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

/// A derived output format: a name saying what a protocol makes of a frame
/// and a parameter distinguishing variants of it (a chunk size, a packet
/// size; 0 when there are none). Two formats are the same when both are
/// equal.
///
/// ```
/// use tidewater_core::OutputFormat;
///
/// const RTMP_CHUNKS: OutputFormat = OutputFormat::new("rtmp-chunks");
/// let at_8k = RTMP_CHUNKS.with_param(8192);
/// assert_ne!(RTMP_CHUNKS, at_8k);
/// assert_eq!(at_8k.name(), "rtmp-chunks");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutputFormat {
    name: &'static str,
    param: u64,
}

impl OutputFormat {
    /// The format of this name, with parameter 0.
    pub const fn new(name: &'static str) -> OutputFormat {
        OutputFormat { name, param: 0 }
    }

    /// The same format with another parameter.
    pub const fn with_param(self, param: u64) -> OutputFormat {
        OutputFormat { param, ..self }
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its parameter.
    pub fn param(&self) -> u64 {
        self.param
    }
}

impl fmt::Debug for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OutputFormat({}:{})", self.name, self.param)
    }
}

/// The outputs made of one frame: an append-only chain, one node per format.
#[derive(Debug, Default)]
pub(crate) struct DerivedOutputs {
    head: OnceLock<Box<Node>>,
}

#[derive(Debug)]
struct Node {
    format: OutputFormat,
    bytes: Bytes,
    next: OnceLock<Box<Node>>,
}

impl DerivedOutputs {
    /// The output in `format`, made by `encode` if no consumer made it yet.
    /// `charge` is told the size of an output this call made.
    pub(crate) fn get_or_make(
        &self,
        format: OutputFormat,
        encode: impl FnOnce() -> Bytes,
        charge: impl FnOnce(usize),
    ) -> Bytes {
        let mut encode = Some(encode);
        let mut made = 0;
        let mut link = &self.head;
        loop {
            let node = match link.get() {
                Some(node) => node,
                // Append at the tail. Another consumer may append another
                // format there first: then this walks on past its node.
                None => link.get_or_init(|| {
                    let bytes = encode.take().map(|e| e()).unwrap_or_default();
                    made = bytes.len();
                    Box::new(Node {
                        format,
                        bytes,
                        next: OnceLock::new(),
                    })
                }),
            };
            if node.format == format {
                if made > 0 {
                    charge(made);
                }
                return node.bytes.clone();
            }
            link = &node.next;
        }
    }
}

/// State a derived format keeps across frames of one publish generation (a
/// muxer's continuity counters, say), one value per type, made on first use
/// and dropped with the generation. See [`Subscription::generation_state`](crate::Subscription::generation_state).
#[derive(Default)]
pub(crate) struct GenerationState {
    values: Mutex<Vec<(TypeId, Arc<dyn Any + Send + Sync>)>>,
}

impl fmt::Debug for GenerationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.values.lock().map(|v| v.len()).unwrap_or(0);
        write!(f, "GenerationState({n} values)")
    }
}

impl GenerationState {
    /// The generation's value of type `T`, made with `T::default()` on first use.
    pub(crate) fn get<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let id = TypeId::of::<T>();
        if let Some(value) = values
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| Arc::clone(v).downcast::<T>().ok())
        {
            return value;
        }
        let value = Arc::new(T::default());
        values.push((id, Arc::clone(&value) as Arc<dyn Any + Send + Sync>));
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_is_made_once_and_kept_apart() {
        let outputs = DerivedOutputs::default();
        let a = OutputFormat::new("a");
        let a2 = a.with_param(2);
        let b = OutputFormat::new("b");
        let mut charged = 0;
        let first = outputs.get_or_make(a, || Bytes::from_static(b"A"), |n| charged += n);
        let second = outputs.get_or_make(a2, || Bytes::from_static(b"A2"), |n| charged += n);
        let third = outputs.get_or_make(b, || Bytes::from_static(b"BBB"), |n| charged += n);
        assert_eq!(
            (&first[..], &second[..], &third[..]),
            (&b"A"[..], &b"A2"[..], &b"BBB"[..])
        );
        assert_eq!(charged, 6);
        // Asked again, nothing is made or charged.
        for (format, want) in [(b, &b"BBB"[..]), (a, b"A"), (a2, b"A2")] {
            let got =
                outputs.get_or_make(format, || unreachable!("made twice"), |_| unreachable!());
            assert_eq!(&got[..], want);
        }
    }

    #[test]
    fn many_formats_on_one_frame() {
        let outputs = DerivedOutputs::default();
        for i in 0..100u64 {
            let f = OutputFormat::new("n").with_param(i);
            outputs.get_or_make(f, || Bytes::from(i.to_be_bytes().to_vec()), |_| {});
        }
        for i in (0..100u64).rev() {
            let f = OutputFormat::new("n").with_param(i);
            let got = outputs.get_or_make(f, || unreachable!(), |_| {});
            assert_eq!(&got[..], &i.to_be_bytes());
        }
    }

    #[test]
    fn racing_consumers_of_several_formats_agree() {
        let outputs = DerivedOutputs::default();
        let made = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let (outputs, made) = (&outputs, &made);
                s.spawn(move || {
                    for i in 0..4u64 {
                        let f = OutputFormat::new("race").with_param((t + i) % 4);
                        let got = outputs.get_or_make(
                            f,
                            || {
                                made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                Bytes::from(f.param().to_be_bytes().to_vec())
                            },
                            |_| {},
                        );
                        assert_eq!(&got[..], &f.param().to_be_bytes());
                    }
                });
            }
        });
        assert_eq!(made.into_inner(), 4, "each format made exactly once");
    }

    #[test]
    fn generation_state_is_one_value_per_type() {
        #[derive(Default)]
        struct Counter(std::sync::atomic::AtomicU32);
        let state = GenerationState::default();
        state
            .get::<Counter>()
            .0
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        state
            .get::<Counter>()
            .0
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            state
                .get::<Counter>()
                .0
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        assert_eq!(*state.get::<String>(), "");
    }
}
