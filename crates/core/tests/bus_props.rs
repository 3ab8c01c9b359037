//! Property tests of the bus invariants over random interleavings of
//! publishing, joining, reading and stalling.

mod common;

use common::*;
use proptest::prelude::*;
use tidewater_core::{Event, StreamPolicy, Subscription};

#[derive(Debug, Clone)]
enum Op {
    /// Publish this many frames.
    Publish(u8),
    /// A new subscriber joins.
    Join,
    /// Subscriber `i % n` reads up to this many events.
    Read(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..40).prop_map(Op::Publish),
        1 => Just(Op::Join),
        4 => (any::<u8>(), 1u8..80).prop_map(|(i, n)| Op::Read(i, n)),
    ]
}

struct Viewer {
    sub: Subscription,
    got: Vec<u64>,
    /// Whether the next frame must be a keyframe (at the start, after a skip).
    expect_key: bool,
    /// Frames skipped after the first delivered one.
    skipped: u64,
}

impl Viewer {
    fn read(&mut self, max: usize, gop: u64) -> Result<(), TestCaseError> {
        for _ in 0..max {
            match self.sub.try_recv() {
                None => break,
                Some(Ok(Event::Frame(f))) => {
                    let i = index_of(&f);
                    if self.expect_key {
                        prop_assert!(
                            f.is_keyframe() && i.is_multiple_of(gop),
                            "start/resume at {i}, not a keyframe"
                        );
                        if let Some(&last) = self.got.last() {
                            prop_assert!(i > last);
                        }
                        self.expect_key = false;
                    } else if let Some(&last) = self.got.last() {
                        prop_assert_eq!(i, last + 1, "gap or repeat without a skip");
                    }
                    self.got.push(i);
                }
                Some(Ok(Event::Skipped { frames })) => {
                    prop_assert!(frames > 0);
                    // Skips before the first delivered frame are outside the span checked below.
                    if !self.got.is_empty() {
                        self.skipped += frames;
                    }
                    self.expect_key = true;
                }
                Some(Ok(Event::Catalog(_))) => {}
                Some(Ok(other)) => prop_assert!(false, "unexpected {other:?}"),
                Some(Err(e)) => prop_assert!(false, "unexpected end {e}"),
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Whatever the interleaving: every subscriber's frames start at a
    /// keyframe, run gap-free and repeat-free, and only ever jump forward to a
    /// keyframe after a reported skip; a subscriber that keeps up misses nothing.
    #[test]
    fn subscribers_see_gapless_runs_from_keyframes(ops in proptest::collection::vec(op(), 1..120), gop in 1u64..40) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        rt.block_on(async {
            let policy = StreamPolicy { ring_frames: 128, gop_frames: 64, max_skips: 1_000, ..StreamPolicy::default() };
            let engine = engine_with(policy);
            let mut p = publisher(&engine, "live/p").await;
            let mut next = 0u64;
            let mut viewers: Vec<Viewer> = vec![];
            let mut keeper = Viewer { sub: viewer(&engine, "live/p").await, got: vec![], expect_key: true, skipped: 0 };
            for op in ops {
                match op {
                    Op::Publish(n) => {
                        for _ in 0..n {
                            p.publish(vframe(next, gop)).expect("publish");
                            next += 1;
                            // One subscriber reads after every frame: it must get everything.
                            keeper.read(usize::MAX, gop)?;
                        }
                    }
                    Op::Join => viewers.push(Viewer { sub: viewer(&engine, "live/p").await, got: vec![], expect_key: true, skipped: 0 }),
                    Op::Read(i, n) => {
                        if !viewers.is_empty() {
                            let len = viewers.len();
                            viewers[usize::from(i) % len].read(usize::from(n), gop)?;
                        }
                    }
                }
            }
            prop_assert_eq!(keeper.got, (0..next).collect::<Vec<_>>());
            prop_assert_eq!(keeper.skipped, 0);
            for v in &mut viewers {
                v.read(usize::MAX, gop)?;
                if let (Some(&first), Some(&last)) = (v.got.first(), v.got.last()) {
                    // Frames delivered plus frames skipped cover the span exactly.
                    let delivered = v.got.len() as u64;
                    prop_assert_eq!(delivered + v.skipped, last - first + 1);
                    prop_assert_eq!(last, next - 1, "a drained subscriber is at the live edge");
                }
            }
            Ok(())
        })?;
    }
}
