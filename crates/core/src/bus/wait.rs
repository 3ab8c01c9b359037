//! A lock-free set of parked subscribers.
//!
//! Each subscription owns one [`Waiter`]. Parking registers its waker in the
//! waiter's `AtomicWaker` and, if the waiter is not already queued, pushes it
//! on a lock-free queue; the publisher drains the queue after each frame and
//! wakes what it pops. The `queued` flag bounds the queue to one entry per
//! subscription however often a subscription re-polls between frames.
//!
//! No wakeup is lost: the publisher makes the frame visible, then (after a
//! sequentially consistent fence) looks at the queue; a parking subscriber
//! enqueues, then (after the same kind of fence) looks for the frame again.
//! At least one of them sees the other's write. The loom model at the end of
//! this file checks the protocol exhaustively: build with
//! `RUSTFLAGS="--cfg tidewater_loom"` and run `cargo test -p tidewater-core --lib loom`
//! (`cargo xtask test` does). Under that cfg the queue and the waker cell are
//! replaced by lock-based stand-ins with the same contract, so loom explores
//! every interleaving of the protocol around them.

use std::sync::Arc;
use std::task::Waker;

#[cfg(not(tidewater_loom))]
use {
    atomic_waker::AtomicWaker,
    crossbeam_queue::SegQueue,
    std::sync::atomic::{AtomicBool, Ordering, fence},
};
#[cfg(tidewater_loom)]
use {
    loom::sync::atomic::{AtomicBool, Ordering, fence},
    loom_shim::{AtomicWaker, SegQueue},
};

/// One subscription's parking spot.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    waker: AtomicWaker,
    queued: AtomicBool,
}

impl Waiter {
    /// Wakes the subscription if it is parked (to notice something other
    /// than a new frame: a kick). It stays queued if it was.
    pub fn wake(&self) {
        self.waker.wake();
    }
}

/// The parked subscribers of one stream.
#[derive(Debug, Default)]
pub(crate) struct WaitList {
    queue: SegQueue<Arc<Waiter>>,
}

impl WaitList {
    /// Parks `waiter` with `waker`. The caller must look for new data again
    /// after this returns and before it returns `Pending`.
    pub fn register(&self, waiter: &Arc<Waiter>, waker: &Waker) {
        waiter.waker.register(waker);
        if !waiter.queued.swap(true, Ordering::AcqRel) {
            self.queue.push(Arc::clone(waiter));
        }
        fence(Ordering::SeqCst);
    }

    /// Wakes every subscriber parked before this call. The caller must have
    /// made the new data visible before calling.
    pub fn notify_all(&self) {
        fence(Ordering::SeqCst);
        // Bounded by what is queued now, so subscribers re-parking while we
        // drain cannot keep the publisher here.
        let mut n = self.queue.len();
        while n > 0 {
            let Some(waiter) = self.queue.pop() else {
                break;
            };
            waiter.queued.store(false, Ordering::Release);
            waiter.waker.wake();
            n -= 1;
        }
    }

    /// How many subscribers are parked (approximate while others run).
    #[allow(dead_code)]
    pub fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(tidewater_loom)]
mod loom_shim {
    use std::collections::VecDeque;
    use std::task::Waker;

    use loom::sync::Mutex;

    #[derive(Debug, Default)]
    pub struct AtomicWaker(Mutex<Option<Waker>>);

    impl AtomicWaker {
        pub fn register(&self, waker: &Waker) {
            *self.0.lock().expect("lock") = Some(waker.clone());
        }
        pub fn wake(&self) {
            let waker = self.0.lock().expect("lock").take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    #[derive(Debug)]
    pub struct SegQueue<T>(Mutex<VecDeque<T>>);

    impl<T> Default for SegQueue<T> {
        fn default() -> Self {
            SegQueue(Mutex::new(VecDeque::new()))
        }
    }

    impl<T> SegQueue<T> {
        pub fn push(&self, v: T) {
            self.0.lock().expect("lock").push_back(v);
        }
        pub fn pop(&self) -> Option<T> {
            self.0.lock().expect("lock").pop_front()
        }
        pub fn len(&self) -> usize {
            self.0.lock().expect("lock").len()
        }
    }
}

#[cfg(all(test, tidewater_loom))]
mod loom_tests {
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

    use super::{WaitList, Waiter};

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, SeqCst);
        }
    }

    /// A subscriber's poll: look, park, look again (what `poll_recv` does).
    fn poll(
        list: &WaitList,
        waiter: &Arc<Waiter>,
        waker: &Waker,
        head: &AtomicU64,
        seen: u64,
    ) -> Option<u64> {
        let now = head.load(SeqCst);
        if now > seen {
            return Some(now);
        }
        list.register(waiter, waker);
        let now = head.load(SeqCst);
        (now > seen).then_some(now)
    }

    #[test]
    fn loom_a_parked_subscriber_is_never_left_asleep() {
        loom::model(|| {
            let list = Arc::new(WaitList::default());
            let head = Arc::new(AtomicU64::new(0));
            let publisher = {
                let (list, head) = (Arc::clone(&list), Arc::clone(&head));
                loom::thread::spawn(move || {
                    head.store(1, SeqCst);
                    list.notify_all();
                })
            };
            let waiter = Arc::new(Waiter::default());
            let flag = Arc::new(Flag(AtomicBool::new(false)));
            let waker = Waker::from(Arc::clone(&flag));
            let ready = poll(&list, &waiter, &waker, &head, 0).is_some();
            publisher.join().expect("publisher");
            assert!(ready || flag.0.load(SeqCst), "pending, and never woken");
        });
    }

    #[test]
    fn loom_re_parking_between_two_frames_loses_no_wakeup() {
        loom::model(|| {
            let list = Arc::new(WaitList::default());
            let head = Arc::new(AtomicU64::new(0));
            let publisher = {
                let (list, head) = (Arc::clone(&list), Arc::clone(&head));
                loom::thread::spawn(move || {
                    for seq in 1..=2 {
                        head.store(seq, SeqCst);
                        list.notify_all();
                    }
                })
            };
            let waiter = Arc::new(Waiter::default());
            let mut seen = 0;
            let mut last_pending_flag = None;
            for _ in 0..2 {
                let flag = Arc::new(Flag(AtomicBool::new(false)));
                let waker = Waker::from(Arc::clone(&flag));
                match poll(&list, &waiter, &waker, &head, seen) {
                    Some(now) => {
                        seen = now;
                        last_pending_flag = None;
                    }
                    None => last_pending_flag = Some(flag),
                }
            }
            publisher.join().expect("publisher");
            if let Some(flag) = last_pending_flag {
                // The last poll parked: unless it already saw everything, it must have been woken.
                assert!(
                    seen == 2 || flag.0.load(SeqCst),
                    "parked at {seen} and never woken"
                );
            }
            // The queue never holds a waiter twice.
            assert!(list.len() <= 1);
        });
    }
}
