//! On-demand sources: a reader asking for a stream that is not live here
//! may make something start publishing it (a cluster edge pulling from the
//! stream's origin, an on-demand camera pull), and the reader then waits a
//! bounded time for that publish instead of being refused at once.
//!
//! The hook sits in the engine's read path ([`Engine::subscribe`],
//! [`Engine::follow`], and [`Engine::await_source`] for readers that only
//! check whether a stream is live, like a packager): protocols know nothing
//! of it. Sources are asked in the order they were added; the first that
//! takes the request wins.

use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use crate::key::StreamKey;
use crate::policy::DuplicatePublish;

/// Something that can start publishing a stream when a reader asks for it.
pub trait OnDemandSource: Send + Sync + 'static {
    /// A reader asked for `key`, which is not live here. Returns how long
    /// the reader should wait for the publish when this source starts (or
    /// has already started) one, `None` when it has none for `key`. Called
    /// on the read path: it must not block (spawn the work).
    fn request(&self, key: &StreamKey) -> Option<Duration>;
}

/// The registered sources, asked in order.
#[derive(Default)]
pub(crate) struct OnDemandSources(std::sync::RwLock<Vec<Arc<dyn OnDemandSource>>>);

impl std::fmt::Debug for OnDemandSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDemandSources").finish_non_exhaustive()
    }
}

impl OnDemandSources {
    fn request(&self, key: &StreamKey) -> Option<Duration> {
        let sources = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        sources.iter().find_map(|s| s.request(key))
    }
}

impl Engine {
    /// Adds an on-demand source, asked after those added before it.
    pub fn add_on_demand(&self, source: Arc<dyn OnDemandSource>) {
        self.inner
            .on_demand
            .0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(source);
    }

    /// Makes sure `key` is live if it can be: when it is not, asks the
    /// on-demand sources and waits (up to what the source said) for its
    /// publish. Returns whether the stream is live. Not authorized: the
    /// caller's own subscribe or follow is.
    pub async fn await_source(&self, key: &StreamKey) -> bool {
        if self.live_slot(key).and_then(|s| s.live()).is_some() {
            return true;
        }
        let Some(wait) = self.inner.on_demand.request(key) else {
            return false;
        };
        // The slot is made now so its generation can be watched; the
        // reaper forgets it if nothing comes (nobody holds it then).
        let slot = {
            let mut streams = self.inner.streams.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(
                streams
                    .entry(key.clone())
                    .or_insert_with(|| Arc::new(super::StreamSlot::new(key.clone()))),
            )
        };
        let mut changes = slot.watch();
        let live = tokio::time::timeout(wait, changes.wait_for(|g| *g != 0)).await;
        matches!(live, Ok(Ok(_))) && slot.live().is_some()
    }

    /// The duplicate-publish policy of `key`'s application (`None` for an
    /// unknown application): what a cluster applies across nodes.
    pub fn duplicate_policy(&self, key: &StreamKey) -> Option<DuplicatePublish> {
        self.app(key).ok().map(|a| a.duplicate)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;

    use super::*;
    use crate::{AppSpec, Codec, Event, Frame, Request, TrackId, TrackInfo};

    /// Publishes `live/pulled` when asked, counting the requests.
    struct Starter {
        engine: Engine,
        asked: AtomicUsize,
    }

    impl OnDemandSource for Starter {
        fn request(&self, key: &StreamKey) -> Option<Duration> {
            if key.stream() != "pulled" {
                return None;
            }
            self.asked.fetch_add(1, Ordering::Relaxed);
            let (engine, key) = (self.engine.clone(), key.clone());
            tokio::spawn(async move {
                let mut s = engine
                    .open_publish(Request::new(key, "test"))
                    .await
                    .expect("publish");
                s.set_catalog(vec![TrackInfo::video(TrackId(1), Codec::H264, 2, 2)])
                    .expect("catalog");
                s.publish(Frame::video(
                    TrackId(1),
                    Codec::H264,
                    0,
                    0,
                    true,
                    Bytes::from_static(b"k"),
                ))
                .expect("frame");
                // Held until the test ends.
                std::future::pending::<()>().await;
            });
            Some(Duration::from_secs(5))
        }
    }

    fn engine() -> Engine {
        Engine::builder()
            .app("live", AppSpec::default())
            .build()
            .expect("engine")
    }

    #[tokio::test]
    async fn a_reader_of_a_stream_that_is_not_live_waits_for_the_source_it_starts() {
        let engine = engine();
        let starter = Arc::new(Starter {
            engine: engine.clone(),
            asked: AtomicUsize::new(0),
        });
        engine.add_on_demand(starter.clone());
        let key = StreamKey::parse("live/pulled").expect("key");
        let mut sub = engine
            .subscribe(Request::new(key.clone(), "test"))
            .await
            .expect("the source's publish");
        assert!(matches!(sub.recv().await, Ok(Event::Catalog(_))));
        // Live now: a second reader does not ask again.
        engine
            .follow(Request::new(key, "test"))
            .await
            .expect("follow");
        assert_eq!(starter.asked.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_stream_no_source_takes_is_refused_at_once() {
        let engine = engine();
        engine.add_on_demand(Arc::new(Starter {
            engine: engine.clone(),
            asked: AtomicUsize::new(0),
        }));
        let key = StreamKey::parse("live/other").expect("key");
        assert!(!engine.await_source(&key).await);
        assert!(matches!(
            engine.subscribe(Request::new(key, "test")).await,
            Err(crate::Error::NotFound { .. })
        ));
    }
}
