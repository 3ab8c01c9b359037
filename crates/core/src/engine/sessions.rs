//! Sessions: every publisher and reader of the live streams, listed and
//! ended by id; the per-stream and per-listener figures behind metrics.
//!
//! Nothing here keeps state of its own: sessions are read from the live
//! publish generations (their publisher and their subscriber lists) when
//! asked, so a session is listed exactly while it is attached to a live
//! stream. A follower (a packager, a relay) between two generations of its
//! stream is not listed (nor kickable) until it attaches to the next one.

use std::sync::Arc;

use super::Engine;
use crate::error::EndReason;
use crate::qos::StreamMetrics;
use crate::registry::{ListenerSnapshot, ListenerStats};
use crate::snapshot::SessionSnapshot;

impl Engine {
    /// Every publisher and reader of the live streams, sorted by id. A kicked
    /// reader is no longer listed, even before its driver has let it go.
    pub fn sessions(&self) -> Vec<SessionSnapshot> {
        let mut out = Vec::new();
        for slot in self.slots() {
            let Some(bus) = slot.live() else { continue };
            out.push(SessionSnapshot::publisher(&bus));
            let subs = bus.subscribers.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(
                subs.iter()
                    .filter_map(std::sync::Weak::upgrade)
                    .filter(|s| {
                        !s.info.internal
                            && !s.is_kicked()
                            && !s.left.load(std::sync::atomic::Ordering::Relaxed)
                    })
                    .map(|s| SessionSnapshot::reader(&bus, &s)),
            );
        }
        out.extend(
            self.inner
                .players
                .snapshots(|key| self.stream(key).map_or(0, |s| s.generation)),
        );
        out.sort_by_key(|s| s.id);
        out
    }

    /// Ends session `id` on the operator's behalf; returns whether a live
    /// session had that id.
    ///
    /// - A reader's subscription ends at its next receive with
    ///   [`RecvError::Ended`](crate::RecvError::Ended)`(`[`EndReason::Kicked`]`)`
    ///   (and [`Subscription::is_kicked`](crate::Subscription::is_kicked)); a
    ///   parked one is woken for it at once. The stream and its other readers
    ///   go on.
    /// - A publisher's generation ends with [`EndReason::Kicked`]: its
    ///   session's [`publish`](crate::PublishSession::publish) fails from then
    ///   on and [`closed`](crate::PublishSession::closed) resolves, so its
    ///   driver closes the connection even while no frame comes; its readers
    ///   see the stream end (followers wait for a republish within their
    ///   grace period, as after any end).
    pub fn kick(&self, id: u64) -> bool {
        // A player's next request is refused by its packager.
        if self.inner.players.kick(id) {
            return true;
        }
        for slot in self.slots() {
            let Some(bus) = slot.live() else { continue };
            if bus.meta.id == id {
                tracing::info!(stream = %bus.key, session = id, protocol = bus.meta.protocol, peer = %crate::logs::Peer(bus.meta.peer), "publisher kicked by the operator");
                return slot.end(&bus, EndReason::Kicked, &self.inner.emitter);
            }
            let found = bus
                .subscribers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter_map(std::sync::Weak::upgrade)
                .find(|s| s.info.id == id);
            if let Some(sub) = found {
                if sub.left.load(std::sync::atomic::Ordering::Relaxed) {
                    continue;
                }
                let kicked = sub.kick();
                if kicked {
                    tracing::info!(stream = %bus.key, session = id, protocol = sub.info.protocol, peer = %crate::logs::Peer(sub.info.peer), "reader kicked by the operator");
                }
                return kicked;
            }
        }
        false
    }

    /// Per-stream figures of every live stream, sorted by key: the
    /// publisher's counters and, per reader protocol, the readers' (those
    /// reading now and those that left this generation). Built when asked,
    /// so a stream that ended is simply no longer there.
    pub fn stream_metrics(&self) -> Vec<StreamMetrics> {
        let mut out: Vec<_> = self
            .slots()
            .iter()
            .filter_map(|s| s.live())
            .map(|b| StreamMetrics::of(&b))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// The connection counters of listener `name`, made on first use (the
    /// same as [`IngestContext::listener_stats`](crate::IngestContext::listener_stats)
    /// of this engine's contexts).
    pub fn listener_stats(&self, name: &'static str) -> Arc<ListenerStats> {
        self.inner.listeners.get(name)
    }

    /// Every listener's counters, sorted by name.
    pub fn listeners(&self) -> Vec<ListenerSnapshot> {
        self.inner.listeners.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use crate::{
        AppSpec, Codec, EndReason, Engine, Event, Frame, RecvError, Request, SessionKind,
        StreamKey, TrackId, TrackInfo,
    };

    fn engine() -> Engine {
        Engine::builder()
            .app("live", AppSpec::default())
            .build()
            .expect("engine")
    }

    fn key(text: &str) -> StreamKey {
        StreamKey::parse(text).expect("key")
    }

    fn video(i: i64, keyframe: bool) -> Frame {
        Frame::video(
            TrackId(1),
            Codec::H264,
            i * 3000,
            i * 3000,
            keyframe,
            Bytes::from_static(b"frame"),
        )
    }

    async fn publisher(engine: &Engine, path: &str) -> crate::PublishSession {
        let mut p = engine
            .open_publish(Request::new(key(path), "test-in").user("alice"))
            .await
            .expect("publish");
        p.set_catalog(vec![TrackInfo::video(TrackId(1), Codec::H264, 64, 64)])
            .expect("catalog");
        p.publish(video(0, true)).expect("frame");
        p
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_list_publishers_and_readers_with_their_figures() {
        let engine = engine();
        let mut p = publisher(&engine, "live/a").await;
        let mut reader = engine
            .subscribe(
                Request::new(key("live/a"), "test-out")
                    .peer("127.0.0.1:5000".parse().expect("addr")),
            )
            .await
            .expect("subscribe");
        let follower = engine
            .follow(Request::new(key("live/a"), "test-follow").user("bob"))
            .await
            .expect("follow");
        while let Some(Ok(_)) = reader.try_recv() {}
        reader.record_sent(1000);
        reader.record_sent(234);
        p.publish(video(1, false)).expect("frame");

        let sessions = engine.sessions();
        assert_eq!(sessions.len(), 3, "{sessions:#?}");
        let ids: Vec<_> = sessions.iter().map(|s| s.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted by id: {ids:?}");
        let publisher = &sessions[0];
        assert_eq!(publisher.kind, SessionKind::Publisher);
        assert_eq!(publisher.protocol, "test-in");
        assert_eq!(publisher.user.as_deref(), Some("alice"));
        assert_eq!(publisher.path, key("live/a"));
        assert_eq!((publisher.frames, publisher.bytes_in), (2, 10));
        let r = &sessions[1];
        assert_eq!(
            (r.id, r.kind, r.protocol),
            (reader.id(), SessionKind::Reader, "test-out")
        );
        assert_eq!(r.peer, Some("127.0.0.1:5000".parse().expect("addr")));
        assert_eq!(r.bytes_out, 1234);
        assert!(r.join_time_us > 0);
        let f = &sessions[2];
        assert_eq!((f.id, f.user.as_deref()), (follower.id(), Some("bob")));

        // Ids are unique across publishers and readers.
        let mut all = ids.clone();
        all.dedup();
        assert_eq!(all, ids);

        // A packager is not a session; the players it registers are.
        let _packager = engine
            .follow(Request::new(key("live/a"), "hls").internal())
            .await
            .expect("follow");
        let player = engine.register_player(crate::PlayerInfo {
            key: key("live/a"),
            protocol: "hls",
            peer: Some("127.0.0.1:6000".parse().expect("addr")),
            user: None,
        });
        p.publish(video(2, false)).expect("frame");
        let sessions = engine.sessions();
        assert_eq!(sessions.len(), 4, "{sessions:#?}");
        let listed = &sessions[3];
        assert_eq!((listed.id, listed.protocol), (player.id(), "hls"));
        assert_eq!(listed.generation, sessions[0].generation);
        assert!(engine.kick(player.id()));
        assert!(player.is_kicked());
        assert_eq!(engine.sessions().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_kicked_idle_reader_ends_at_once_and_the_stream_goes_on() {
        let engine = engine();
        let mut p = publisher(&engine, "live/a").await;
        let mut kicked = engine
            .subscribe(Request::new(key("live/a"), "test"))
            .await
            .expect("subscribe");
        let mut other = engine
            .subscribe(Request::new(key("live/a"), "test"))
            .await
            .expect("subscribe");
        while let Some(Ok(_)) = kicked.try_recv() {}
        while let Some(Ok(_)) = other.try_recv() {}
        let id = kicked.id();
        // Parked, waiting for a frame that never comes.
        let waiting = tokio::spawn(async move {
            let end = kicked.recv().await;
            (end, kicked.is_kicked())
        });
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        assert!(engine.kick(id));
        let (end, is_kicked) = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("ends within 1 s with no frame published")
            .expect("task");
        assert_eq!(started.elapsed(), Duration::ZERO, "woken, not polled later");
        assert_eq!(end.expect_err("ended"), RecvError::Ended(EndReason::Kicked));
        assert!(is_kicked);
        assert!(!engine.kick(id), "a session is kicked once");
        assert!(engine.sessions().iter().all(|s| s.id != id));

        p.publish(video(1, false)).expect("the publish goes on");
        assert!(matches!(other.try_recv(), Some(Ok(Event::Frame(_)))));
        assert!(!other.is_kicked());
        assert_eq!(engine.sessions().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_kicked_busy_reader_ends_at_its_next_receive() {
        let engine = engine();
        let mut p = publisher(&engine, "live/a").await;
        let mut reader = engine
            .subscribe(Request::new(key("live/a"), "test"))
            .await
            .expect("subscribe");
        for i in 1..200 {
            p.publish(video(i, i % 50 == 0)).expect("frame");
        }
        // On the fast path, in the middle of the log.
        for _ in 0..100 {
            assert!(matches!(reader.try_recv(), Some(Ok(_))));
        }
        assert!(engine.kick(reader.id()));
        assert_eq!(
            reader.try_recv().map(|r| r.map(|_| ())),
            Some(Err(RecvError::Ended(EndReason::Kicked)))
        );
        assert_eq!(
            reader.try_recv().map(|r| r.map(|_| ())),
            Some(Err(RecvError::Ended(EndReason::Kicked))),
            "and stays ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_kicked_publisher_ends_its_session_and_its_readers_see_the_end() {
        let engine = engine();
        let mut p = publisher(&engine, "live/a").await;
        let mut reader = engine
            .subscribe(Request::new(key("live/a"), "test"))
            .await
            .expect("subscribe");
        let mut follower = engine
            .follow(Request::new(key("live/a"), "test"))
            .await
            .expect("follow");
        let publisher_id = engine.sessions()[0].id;
        let closed = p.closed();
        let watcher = tokio::spawn(closed);
        tokio::task::yield_now().await;
        assert!(engine.kick(publisher_id));
        let reason = tokio::time::timeout(Duration::from_secs(1), watcher)
            .await
            .expect("an idle publisher's driver hears of it at once")
            .expect("task");
        assert_eq!(reason, EndReason::Kicked);
        match p.publish(video(1, false)) {
            Err(crate::Error::PublishEnded { reason, .. }) => assert_eq!(reason, EndReason::Kicked),
            other => panic!("{other:?}"),
        }
        // The reader gets what was published, then the end.
        let end = loop {
            match reader.try_recv() {
                Some(Ok(_)) => continue,
                other => break other.map(|r| r.map(|_| ())),
            }
        };
        assert_eq!(end, Some(Err(RecvError::Ended(EndReason::Kicked))));
        assert!(!reader.is_kicked(), "the reader itself was not kicked");
        assert!(engine.stream(&key("live/a")).is_none());
        assert!(engine.sessions().is_empty());

        // The follower waits for a republish, as after any end.
        let next = tokio::spawn(async move {
            loop {
                match follower.recv().await {
                    Ok(Event::Discontinuity { generation }) => return Ok(generation),
                    Ok(_) => continue,
                    Err(e) => return Err(e),
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _again = publisher(&engine, "live/a").await;
        assert_eq!(next.await.expect("task"), Ok(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_kicked_follower_does_not_wait_for_a_republish() {
        let engine = engine();
        let _p = publisher(&engine, "live/a").await;
        let mut follower = engine
            .follow(Request::new(key("live/a"), "hls"))
            .await
            .expect("follow");
        assert!(matches!(follower.recv().await, Ok(Event::Catalog(_))));
        assert!(matches!(follower.recv().await, Ok(Event::Frame(_))));
        let id = follower.id();
        let waiting = tokio::spawn(async move { follower.recv().await.map(|_| ()) });
        tokio::task::yield_now().await;
        assert!(engine.kick(id));
        let end = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("within 1 s")
            .expect("task");
        assert_eq!(end, Err(RecvError::Ended(EndReason::Kicked)));
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_ids_kick_nothing() {
        let engine = engine();
        let _p = publisher(&engine, "live/a").await;
        assert!(!engine.kick(0));
        assert!(!engine.kick(999));
        assert_eq!(engine.sessions().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn stream_metrics_add_up_readers_per_protocol_and_keep_those_that_left() {
        let engine = engine();
        let mut p = publisher(&engine, "live/a").await;
        let mut a = engine
            .subscribe(Request::new(key("live/a"), "flv"))
            .await
            .expect("subscribe");
        let mut b = engine
            .subscribe(Request::new(key("live/a"), "flv"))
            .await
            .expect("subscribe");
        let mut c = engine
            .subscribe(Request::new(key("live/a"), "ts"))
            .await
            .expect("subscribe");
        for s in [&mut a, &mut b, &mut c] {
            while let Some(Ok(_)) = s.try_recv() {}
        }
        a.record_sent(100);
        b.record_sent(10);
        c.record_sent(1);
        for i in 1..=64 {
            tokio::time::advance(Duration::from_millis(10)).await;
            p.publish(video(i, false)).expect("frame");
        }
        // Only `a` reads on: its lag is sampled at each block it enters.
        while let Some(Ok(_)) = a.try_recv() {}

        let metrics = engine.stream_metrics();
        assert_eq!(metrics.len(), 1);
        let m = &metrics[0];
        assert_eq!((m.protocol, m.frames_in, m.bytes_in), ("test-in", 65, 325));
        let protocols: Vec<_> = m
            .readers
            .iter()
            .map(|r| (r.protocol, r.readers, r.bytes_out))
            .collect();
        assert_eq!(protocols, [("flv", 2, 110), ("ts", 1, 1)]);
        let flv = &m.readers[0];
        assert_eq!(flv.join_time.count(), 2, "one join time per reader");
        assert!(flv.lag.count() >= 1, "{:?}", flv.lag);

        drop(b);
        let after = &engine.stream_metrics()[0].readers[0];
        assert_eq!(
            (after.readers, after.bytes_out),
            (1, 110),
            "a reader that left still counts"
        );
        assert_eq!(after.join_time.count(), 2);
        assert!(after.lag.count() >= flv.lag.count());

        drop(p);
        assert!(engine.stream_metrics().is_empty(), "an ended stream leaves");
    }

    #[tokio::test(start_paused = true)]
    async fn listener_stats_are_shared_by_every_context_of_an_engine() {
        let engine = engine();
        let (one, two) = (engine.context(), engine.context());
        let open = one.listener_stats("rtmp").accepted();
        let _other = two.listener_stats("rtmp").accepted();
        two.listener_stats("rtmp").refused("unauthorized");
        two.listener_stats("rtmp").refused("unauthorized");
        one.listener_stats("srt").refused("handshake");
        drop(open);
        let listeners = engine.listeners();
        assert_eq!(listeners.len(), 2);
        assert_eq!(listeners[0].name, "rtmp");
        assert_eq!((listeners[0].connections, listeners[0].open), (2, 1));
        assert_eq!(listeners[0].refusals, [("unauthorized", 2)]);
        assert_eq!(listeners[1].refusals, [("handshake", 1)]);
        // Another engine shares nothing.
        assert!(self::engine().listeners().is_empty());
    }
}

#[cfg(test)]
mod internal_tests {
    use async_trait::async_trait;

    use crate::{
        Action, AppSpec, AuthRequest, Authorizer, Codec, Engine, Identity, Refusal, Request,
        StreamKey, TrackId, TrackInfo,
    };

    /// Publishes only; reads of peers are refused.
    struct PublishOnly;

    #[async_trait]
    impl Authorizer for PublishOnly {
        async fn authorize(&self, request: &AuthRequest) -> Result<Identity, Refusal> {
            match request.action {
                Action::Publish => Ok(Identity::anonymous()),
                _ => Err(Refusal::forbidden("reads need a user")),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn internal_readers_follow_without_the_authorizer_and_peers_do_not() {
        let engine = Engine::builder()
            .app("live", AppSpec::default())
            .authorizer(PublishOnly)
            .build()
            .expect("engine");
        let key = StreamKey::parse("live/a").expect("key");
        let mut p = engine
            .open_publish(Request::new(key.clone(), "test-in"))
            .await
            .expect("publish");
        p.set_catalog(vec![TrackInfo::video(TrackId(1), Codec::H264, 64, 64)])
            .expect("catalog");
        let refused = engine.follow(Request::new(key.clone(), "hls")).await;
        assert!(matches!(refused, Err(crate::Error::Unauthorized { .. })));
        let refused = engine.subscribe(Request::new(key.clone(), "hls")).await;
        assert!(matches!(refused, Err(crate::Error::Unauthorized { .. })));
        let packager = engine
            .follow(Request::new(key.clone(), "hls").internal())
            .await
            .expect("an internal reader is not asked");
        assert!(engine.sessions().iter().all(|s| s.id != packager.id()));
    }

    /// Reads only: every publish of a peer is refused.
    struct ReadOnly;

    #[async_trait]
    impl Authorizer for ReadOnly {
        async fn authorize(&self, request: &AuthRequest) -> Result<Identity, Refusal> {
            match request.action {
                Action::Publish => Err(Refusal::forbidden("no publishing")),
                _ => Ok(Identity::anonymous()),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn internal_publishes_skip_the_authorizer_and_peers_do_not() {
        let engine = Engine::builder()
            .app("cams", AppSpec::default())
            .authorizer(ReadOnly)
            .build()
            .expect("engine");
        let key = StreamKey::parse("cams/door").expect("key");
        let from = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let refused = engine
            .open_publish(Request::new(key.clone(), "rtmp").peer(from))
            .await;
        assert!(
            matches!(
                refused,
                Err(crate::Error::Unauthorized {
                    action: Action::Publish,
                    ..
                })
            ),
            "a peer's publish is asked and refused: {refused:?}"
        );
        assert!(engine.stream(&key).is_none());
        let pull = engine
            .open_publish(
                Request::new(key.clone(), "rtsp-pull")
                    .peer(from)
                    .user("rtsp-pull")
                    .internal(),
            )
            .await
            .expect("an internal publish is not asked");
        // Still an ordinary publisher: live, listed under its user.
        assert!(engine.stream(&key).is_some());
        let listed = engine.sessions();
        assert!(
            listed
                .iter()
                .any(|s| s.id == pull.id() && s.user.as_deref() == Some("rtsp-pull")),
            "the pull is listed: {listed:?}"
        );
    }
}

#[cfg(test)]
mod reader_limit_tests {
    use crate::{AppSpec, Codec, Engine, Error, Request, StreamKey, TrackId, TrackInfo};

    #[tokio::test(start_paused = true)]
    async fn a_stream_refuses_readers_over_its_applications_limit_but_not_internal_ones() {
        let engine = Engine::builder()
            .app(
                "live",
                AppSpec {
                    max_readers: 2,
                    ..AppSpec::default()
                },
            )
            .build()
            .expect("engine");
        let key = StreamKey::parse("live/a").expect("key");
        let mut p = engine
            .open_publish(Request::new(key.clone(), "test-in"))
            .await
            .expect("publish");
        p.set_catalog(vec![TrackInfo::video(TrackId(1), Codec::H264, 64, 64)])
            .expect("catalog");
        let one = engine
            .subscribe(Request::new(key.clone(), "r"))
            .await
            .expect("first");
        let _two = engine
            .follow(Request::new(key.clone(), "r"))
            .await
            .expect("second");
        let third = engine.subscribe(Request::new(key.clone(), "r")).await;
        assert!(
            matches!(third, Err(Error::ReaderLimit { limit: 2, .. })),
            "{third:?}"
        );
        let follow = engine.follow(Request::new(key.clone(), "r")).await;
        assert!(matches!(follow, Err(Error::ReaderLimit { .. })));
        let _packager = engine
            .follow(Request::new(key.clone(), "hls").internal())
            .await
            .expect("a packager is not a viewer");
        drop(one);
        engine
            .subscribe(Request::new(key.clone(), "r"))
            .await
            .expect("a place freed");
    }
}
