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
//! At least one of them sees the other's write. `tests/loom_wait.rs` checks
//! this protocol exhaustively under loom.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::task::Waker;

use atomic_waker::AtomicWaker;
use crossbeam_queue::SegQueue;

/// One subscription's parking spot.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    waker: AtomicWaker,
    queued: AtomicBool,
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
