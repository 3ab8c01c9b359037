//! Panics contained to the session that raised them.
//!
//! A protocol worker runs each connection (session) as a task of its own
//! and spawns it wrapped in [`contained`]: a panic in that task (a bug
//! reached by a peer's input) ends that session only. It is logged once
//! with the listener, the peer and the stream the session was publishing
//! or reading, and counted in the listener's
//! [`ListenerStats::panics`](crate::ListenerStats); the listener, the stream
//! and every other session go on. What the session held is released as the
//! panic unwinds (its publish ends, its subscriptions drop), as on any
//! other end.
//!
//! The stream is noted by the kernel itself: [`IngestContext`]'s publish,
//! subscribe and follow calls record their key in the running session's
//! context, so drivers only wrap their spawns.
//!
//! [`IngestContext`]: crate::IngestContext

use std::any::Any;
use std::cell::RefCell;
use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::key::StreamKey;
use crate::registry::ListenerStats;

tokio::task_local! {
    /// The stream of the session task being polled, if it named one yet.
    static STREAM: RefCell<Option<StreamKey>>;
}

/// Runs `session` (one connection's task of listener `stats`, from `peer`)
/// so that a panic in it ends it alone: logged with the listener, the peer
/// and the session's stream, and counted. Spawn what it returns.
pub fn contained<F>(
    stats: &Arc<ListenerStats>,
    peer: impl Display + Send + 'static,
    session: F,
) -> impl Future<Output = ()> + Send + 'static
where
    F: Future<Output = ()> + Send + 'static,
{
    let stats = Arc::clone(stats);
    STREAM.scope(RefCell::new(None), async move {
        if let Err(payload) = (CatchUnwind(Box::pin(session))).await {
            let stream = STREAM
                .try_with(|s| s.borrow().as_ref().map(ToString::to_string))
                .ok()
                .flatten()
                .unwrap_or_else(|| "-".to_string());
            stats.panicked();
            tracing::error!(
                listener = stats.name(),
                peer = %peer,
                stream = %stream,
                "{}: session task panicked ({}); that session is closed, the listener and other sessions go on",
                stats.name(),
                message(payload.as_ref())
            );
        }
    })
}

/// Notes `key` as the stream of the session task running now (if it runs
/// under [`contained`]), for the log line of a panic.
pub(crate) fn note_stream(key: &StreamKey) {
    let _ = STREAM.try_with(|s| *s.borrow_mut() = Some(key.clone()));
    #[cfg(any(test, feature = "test-hooks"))]
    hook::check(key);
}

fn message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-text payload")
}

/// Polls the session, turning a panic during a poll into an `Err`.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let session = self.0.as_mut();
        // Unwind safety: after a panic the session is dropped, never polled again.
        match std::panic::catch_unwind(AssertUnwindSafe(|| session.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// A test-only fault: a session that publishes or reads the named stream
/// panics there, inside its own task, as a bug would.
#[cfg(any(test, feature = "test-hooks"))]
pub mod hook {
    use std::sync::Mutex;

    use crate::key::StreamKey;

    static PANIC_ON: Mutex<Vec<String>> = Mutex::new(Vec::new());

    /// From now on, sessions that publish or read `stream` (`app/stream`)
    /// panic when they ask the kernel for it.
    pub fn panic_on_stream(stream: &str) {
        PANIC_ON
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(stream.to_string());
    }

    #[allow(
        clippy::panic,
        reason = "the test-only fault this hook exists to inject"
    )]
    pub(super) fn check(key: &StreamKey) {
        let hit = PANIC_ON
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|s| s == key.as_str());
        if hit {
            panic!("injected fault for stream {key}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::task::JoinSet;

    use super::{contained, hook, note_stream};
    use crate::key::StreamKey;
    use crate::registry::ListenerStats;

    #[tokio::test]
    async fn a_panicking_session_ends_alone_and_is_counted() {
        hook::panic_on_stream("live/contain-unit");
        let stats = Arc::new(ListenerStats::new("unit"));
        let mut sessions = JoinSet::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..3u32 {
            let tx = tx.clone();
            sessions.spawn(contained(&stats, format!("127.0.0.1:{i}"), async move {
                let name = if i == 1 {
                    "live/contain-unit"
                } else {
                    "live/fine"
                };
                note_stream(&StreamKey::parse(name).expect("key"));
                tokio::task::yield_now().await;
                let _ = tx.send(i);
            }));
        }
        drop(tx);
        let mut finished = Vec::new();
        while let Some(i) = rx.recv().await {
            finished.push(i);
        }
        finished.sort_unstable();
        assert_eq!(finished, [0, 2]);
        // Every task ended normally: the panic did not escape to the join.
        while let Some(joined) = sessions.join_next().await {
            assert!(joined.is_ok());
        }
        assert_eq!(stats.snapshot().panics, 1);
    }
}
