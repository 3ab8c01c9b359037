//! Fan-out semantics of the bus, through the public API.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use tidewater_core::{
    AppSpec, Codec, EndReason, Engine, Event, Frame, OutputFormat, RecvError, Request,
    StreamPolicy, TimestampWrap, TrackInfo,
};

#[tokio::test]
async fn keeping_up_subscriber_gets_every_frame_once_in_order() {
    let engine = engine();
    let mut publisher = publisher(&engine, "live/a").await;
    let mut sub = viewer(&engine, "live/a").await;
    let mut got = vec![];
    for i in 0..1_000 {
        publisher.publish(vframe(i, 30)).expect("publish");
        if i % 7 == 0 {
            got.extend(frames(&drain(&mut sub)));
        }
    }
    got.extend(frames(&drain(&mut sub)));
    assert_eq!(got, (0..1_000).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publisher_and_subscribers_lose_and_repeat_nothing() {
    let engine = engine_with(roomy());
    let mut publisher = publisher(&engine, "live/a").await;
    let mut tasks = vec![];
    for _ in 0..8 {
        let mut sub = viewer(&engine, "live/a").await;
        tasks.push(tokio::spawn(async move {
            let mut got = vec![];
            loop {
                match recv_timeout(&mut sub).await {
                    Ok(Event::Frame(f)) => got.push(index_of(&f)),
                    Ok(Event::Catalog(_)) => {}
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(RecvError::Ended(EndReason::Finished)) => return got,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    let n = 20_000;
    let pub_task = tokio::spawn(async move {
        for i in 0..n {
            publisher.publish(vframe(i, 50)).expect("publish");
            if i % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        publisher.finish().await;
    });
    pub_task.await.expect("publisher");
    for t in tasks {
        let got = t.await.expect("subscriber");
        assert_eq!(got, (0..n).collect::<Vec<_>>());
    }
}

/// A ring larger than anything these tests publish, so no subscriber can
/// legitimately fall out of it however the threads are scheduled.
fn roomy() -> StreamPolicy {
    StreamPolicy {
        ring_frames: 32_768,
        ring_bytes: 1 << 30,
        max_lag: Duration::from_secs(3_600),
        ..StreamPolicy::default()
    }
}

#[tokio::test]
async fn late_joiner_starts_with_catalog_then_the_cached_keyframe() {
    let engine = engine();
    let mut publisher = publisher(&engine, "live/a").await;
    for i in 0..75 {
        publisher.publish(vframe(i, 30)).expect("publish");
    }
    let mut sub = viewer(&engine, "live/a").await;
    let events = drain(&mut sub);
    match &events[0] {
        Ok(Event::Catalog(c)) => assert_eq!(
            c.video().and_then(|t| t.config.clone()),
            Some(Bytes::from_static(b"avcC-1"))
        ),
        other => panic!("first event {other:?}"),
    }
    assert_eq!(frames(&events), (60..75).collect::<Vec<_>>());
    match &events[1] {
        Ok(Event::Frame(f)) => assert!(f.is_keyframe() && f.is_gop_start()),
        other => panic!("second event {other:?}"),
    }
    let snap = engine.stream(&key("live/a")).expect("live");
    assert!(snap.subscribers[0].join_time_us > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiners_racing_the_publisher_get_a_gapless_run_from_a_keyframe() {
    let engine = engine();
    let mut publisher = publisher(&engine, "live/a").await;
    let gop = 10;
    let n = 30_000u64;
    let stop = Arc::new(AtomicUsize::new(0));
    let mut joiners = vec![];
    for j in 0..6 {
        let engine = engine.clone();
        let stop = Arc::clone(&stop);
        joiners.push(tokio::spawn(async move {
            let mut runs = 0;
            while stop.load(Ordering::Acquire) == 0 {
                let Ok(mut sub) = engine.subscribe(Request::new(key("live/a"), "test")).await
                else {
                    break;
                };
                // Read a while, concurrently with the publisher, then leave.
                let want = 50 + (j * 37 + runs * 11) % 200;
                // Runs of frames separated by skips (a joiner descheduled for
                // longer than the ring lags legitimately).
                let mut runs_seen: Vec<Vec<u64>> = vec![vec![]];
                let mut total = 0;
                while total < want {
                    match recv_timeout(&mut sub).await {
                        Ok(Event::Frame(f)) => {
                            let run = runs_seen.last_mut().expect("a run");
                            if run.is_empty() {
                                assert!(f.is_keyframe(), "a run starts at a keyframe");
                            }
                            run.push(index_of(&f));
                            total += 1;
                        }
                        Ok(Event::Skipped { .. }) => runs_seen.push(vec![]),
                        Ok(Event::Catalog(_)) => {}
                        Ok(other) => panic!("unexpected {other:?}"),
                        Err(_) => break,
                    }
                }
                for run in runs_seen.iter().filter(|r| !r.is_empty()) {
                    assert_eq!(run[0] % gop, 0);
                    for w in run.windows(2) {
                        assert_eq!(
                            w[1],
                            w[0] + 1,
                            "gap or repeat: {:?}",
                            &run[..run.len().min(20)]
                        );
                    }
                }
                runs += 1;
            }
            runs
        }));
    }
    for i in 0..n {
        publisher.publish(vframe(i, gop)).expect("publish");
        if i % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    stop.store(1, Ordering::Release);
    publisher.finish().await;
    let mut total = 0;
    for j in joiners {
        total += j.await.expect("joiner");
    }
    assert!(total > 20, "only {total} joins exercised the seam");
}

#[tokio::test(start_paused = true)]
async fn lagging_subscriber_resumes_at_a_keyframe_with_drops_counted() {
    let engine = engine_with(small_ring());
    let mut publisher = publisher(&engine, "live/a").await;
    let mut sub = viewer(&engine, "live/a").await;
    for i in 0..10 {
        publisher.publish(vframe(i, 30)).expect("publish");
    }
    assert_eq!(frames(&drain(&mut sub)), (0..10).collect::<Vec<_>>());
    // The subscriber stalls while 500 frames go by: far more than the ring.
    for i in 10..510 {
        publisher.publish(vframe(i, 30)).expect("publish");
    }
    let events = drain(&mut sub);
    let skipped = match &events[0] {
        Ok(Event::Skipped { frames }) => *frames,
        other => panic!("expected a skip first, got {other:?}"),
    };
    let got = frames(&events);
    assert_eq!(got[0] % 30, 0, "resumes at a keyframe, not mid-GOP");
    assert_eq!(got[0], 480, "at the newest cached keyframe");
    assert_eq!(skipped, 480 - 10);
    assert_eq!(got, (480..510).collect::<Vec<_>>());
    let snap = engine.stream(&key("live/a")).expect("live");
    assert_eq!(snap.qos.lag_events, 1);
    assert_eq!(snap.qos.skipped_frames, 470);
    assert_eq!(snap.subscribers[0].skipped, 470);
}

#[tokio::test(start_paused = true)]
async fn subscriber_behind_by_more_than_max_lag_skips_ahead() {
    let policy = StreamPolicy {
        max_lag: Duration::from_secs(2),
        ..StreamPolicy::default()
    };
    let engine = engine_with(policy);
    let mut publisher = publisher(&engine, "live/a").await;
    let mut sub = viewer(&engine, "live/a").await;
    // 30 fps in real (virtual) time; the subscriber reads nothing for 5 s.
    for i in 0..150 {
        publisher.publish(vframe(i, 60)).expect("publish");
        tokio::time::advance(Duration::from_micros(33_333)).await;
    }
    let events = drain(&mut sub);
    let got = frames(&events);
    // It delivered the first block, then noticed it was > 2 s behind and jumped.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Ok(Event::Skipped { .. }))),
        "{events:?}"
    );
    assert_eq!(*got.last().expect("frames"), 149);
    let resumed = got.iter().copied().find(|&i| i >= 60).expect("resumed");
    assert_eq!(resumed, 120, "jumped to the newest keyframe");
}

#[tokio::test(start_paused = true)]
async fn chronically_slow_subscriber_is_evicted() {
    let policy = StreamPolicy {
        ring_frames: 128,
        gop_frames: 64,
        max_skips: 2,
        ..StreamPolicy::default()
    };
    let engine = engine_with(policy);
    let mut events_rx = engine.subscribe_events();
    let mut publisher = publisher(&engine, "live/a").await;
    let mut slow = viewer(&engine, "live/a").await;
    let mut fast = viewer(&engine, "live/a").await;
    let mut fast_got = vec![];
    let mut outcome = None;
    for round in 0..4u64 {
        for i in round * 300..(round + 1) * 300 {
            publisher.publish(vframe(i, 30)).expect("publish");
            if i % 10 == 0 {
                fast_got.extend(frames(&drain(&mut fast)));
            }
        }
        if let Some(Err(e)) = drain(&mut slow).into_iter().find(|e| e.is_err()) {
            outcome = Some(e);
            break;
        }
    }
    fast_got.extend(frames(&drain(&mut fast)));
    assert_eq!(outcome, Some(RecvError::Evicted));
    assert!(matches!(slow.try_recv(), Some(Err(RecvError::Evicted))));
    // The fast subscriber never noticed.
    assert_eq!(fast_got, (0..fast_got.len() as u64).collect::<Vec<_>>());
    let snap = engine.stream(&key("live/a")).expect("live");
    assert_eq!(snap.qos.evictions, 1);
    let mut saw_evict = false;
    while let Ok(ev) = events_rx.try_recv() {
        saw_evict |= matches!(
            ev.kind,
            tidewater_core::StreamEventKind::SubscriberEvicted { .. }
        );
    }
    assert!(saw_evict);
}

#[tokio::test]
async fn publisher_end_ends_viewers_after_the_last_frame() {
    let engine = engine();
    let mut publisher = publisher(&engine, "live/a").await;
    let mut sub = viewer(&engine, "live/a").await;
    for i in 0..5 {
        publisher.publish(vframe(i, 30)).expect("publish");
    }
    drop(publisher);
    let events = drain(&mut sub);
    assert_eq!(frames(&events), vec![0, 1, 2, 3, 4]);
    assert!(matches!(
        events.last(),
        Some(Err(RecvError::Ended(EndReason::Finished)))
    ));
    assert!(engine.stream(&key("live/a")).is_none());
    assert!(
        engine
            .subscribe(Request::new(key("live/a"), "test"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn parked_viewer_is_woken_by_publish_and_by_end() {
    let engine = engine();
    let mut publisher = publisher(&engine, "live/a").await;
    let mut sub = viewer(&engine, "live/a").await;
    let task = tokio::spawn(async move {
        let mut got = vec![];
        loop {
            match sub.recv().await {
                Ok(Event::Frame(f)) => got.push(index_of(&f)),
                Ok(_) => {}
                Err(e) => return (got, e),
            }
        }
    });
    for i in 0..3 {
        tokio::task::yield_now().await;
        publisher.publish(vframe(i, 30)).expect("publish");
    }
    tokio::task::yield_now().await;
    publisher.finish().await;
    let (got, end) = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("woken")
        .expect("task");
    assert_eq!(got, vec![0, 1, 2]);
    assert_eq!(end, RecvError::Ended(EndReason::Finished));
}

#[tokio::test]
async fn duplicate_publish_is_rejected_by_default() {
    let engine = engine();
    let _first = publisher(&engine, "live/a").await;
    let err = engine
        .open_publish(Request::new(key("live/a"), "test"))
        .await
        .expect_err("duplicate");
    assert!(err.to_string().contains("already being published"), "{err}");
}

#[tokio::test]
async fn take_over_ends_the_old_publish_and_its_drop_spares_the_new_one() {
    let engine = Engine::builder()
        .app(
            "live",
            AppSpec {
                duplicate: tidewater_core::DuplicatePublish::TakeOver,
                ..AppSpec::default()
            },
        )
        .build()
        .expect("engine");
    let mut old = publisher(&engine, "live/a").await;
    old.publish(vframe(0, 30)).expect("publish");
    let mut old_viewer = viewer(&engine, "live/a").await;
    let mut new = publisher(&engine, "live/a").await;
    assert_eq!(new.generation(), 2);
    assert!(matches!(
        old.publish(vframe(1, 30)),
        Err(tidewater_core::Error::PublishEnded {
            reason: EndReason::Superseded,
            generation: 1,
            ..
        })
    ));
    let events = drain(&mut old_viewer);
    assert!(matches!(
        events.last(),
        Some(Err(RecvError::Ended(EndReason::Superseded)))
    ));
    let mut new_viewer = viewer(&engine, "live/a").await;
    drop(old);
    new.publish(vframe(0, 30)).expect("new publish still open");
    assert_eq!(engine.stream(&key("live/a")).expect("live").generation, 2);
    assert_eq!(frames(&drain(&mut new_viewer)), vec![0]);
}

#[tokio::test]
async fn publisher_limit_per_app() {
    let engine = Engine::builder()
        .app(
            "live",
            AppSpec {
                max_publishers: 1,
                ..AppSpec::default()
            },
        )
        .build()
        .expect("engine");
    let _a = publisher(&engine, "live/a").await;
    let err = engine
        .open_publish(Request::new(key("live/b"), "test"))
        .await
        .expect_err("limit");
    assert!(matches!(
        err,
        tidewater_core::Error::PublisherLimit { limit: 1, .. }
    ));
    assert!(
        engine
            .open_publish(Request::new(key("other/b"), "test"))
            .await
            .is_err(),
        "unknown app refused"
    );
}

#[tokio::test]
async fn frames_need_a_catalog_and_known_tracks() {
    let engine = engine();
    let mut s = engine
        .open_publish(Request::new(key("live/a"), "test"))
        .await
        .expect("publish");
    assert!(matches!(
        s.publish(vframe(0, 30)),
        Err(tidewater_core::Error::NoCatalog { .. })
    ));
    s.set_catalog(video_tracks()).expect("catalog");
    let stray = Frame::audio(AUDIO, Codec::Aac, 0, Bytes::from_static(b"x"));
    assert!(matches!(
        s.publish(stray),
        Err(tidewater_core::Error::UnknownTrack { .. })
    ));
    assert!(s.set_catalog(vec![]).is_err());
}

#[tokio::test]
async fn catalog_change_is_delivered_in_band_and_cached_gops_keep_theirs() {
    let engine = engine();
    let mut publisher = publisher(&engine, "live/a").await;
    let mut early = viewer(&engine, "live/a").await;
    for i in 0..30 {
        publisher.publish(vframe(i, 30)).expect("publish");
    }
    // A late joiner now gets version 1 with the cached GOP.
    let mut late = viewer(&engine, "live/a").await;
    let mut tracks = video_tracks();
    tracks[0].config = Some(Bytes::from_static(b"avcC-2"));
    tracks[0].video = Some(tidewater_core::VideoParams {
        width: 1280,
        height: 720,
        frame_rate: None,
    });
    let v2 = publisher.set_catalog(tracks.clone()).expect("catalog v2");
    assert_eq!(v2.version(), 2);
    assert_eq!(
        publisher.set_catalog(tracks).expect("same").version(),
        2,
        "an unchanged set is no new version"
    );
    for i in 30..40 {
        publisher.publish(vframe(i, 30)).expect("publish");
    }
    for sub in [&mut early, &mut late] {
        let events = drain(sub);
        let versions: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Ok(Event::Catalog(c)) => Some(c.version()),
                _ => None,
            })
            .collect();
        assert_eq!(versions, vec![1, 2]);
        // Version 2 arrives right before frame 30, the first encoded with it.
        let pos = events
            .iter()
            .position(|e| matches!(e, Ok(Event::Catalog(c)) if c.version() == 2))
            .expect("v2");
        assert!(
            matches!(&events[pos + 1], Ok(Event::Frame(f)) if index_of(f) == 30 && f.catalog().version() == 2)
        );
    }
    let newest = viewer(&engine, "live/a").await;
    drop(newest);
}

#[tokio::test]
async fn late_joiner_audio_starts_at_the_keyframe_pts() {
    let engine = engine();
    let mut s = engine
        .open_publish(Request::new(key("live/av"), "test"))
        .await
        .expect("publish");
    s.set_catalog(av_tracks()).expect("catalog");
    // Video at 90 kHz, keyframe at 1 s; audio (48 kHz) interleaved slightly late.
    s.publish(Frame::video(
        VIDEO,
        Codec::H264,
        0,
        0,
        true,
        Bytes::from_static(b"k0"),
    ))
    .expect("v");
    s.publish(Frame::video(
        VIDEO,
        Codec::H264,
        90_000,
        90_000,
        true,
        Bytes::from_static(b"k1"),
    ))
    .expect("v");
    for ms in [960u64, 980, 1_000, 1_020, 1_040] {
        let ts = (ms * 48) as i64;
        s.publish(Frame::audio(
            AUDIO,
            Codec::Aac,
            ts,
            Bytes::from(ms.to_string()),
        ))
        .expect("a");
    }
    let mut sub = viewer(&engine, "live/av").await;
    let audio: Vec<String> = drain(&mut sub)
        .into_iter()
        .filter_map(|e| match e {
            Ok(Event::Frame(f)) if f.track == AUDIO => {
                Some(String::from_utf8_lossy(&f.payload).into_owned())
            }
            _ => None,
        })
        .collect();
    assert_eq!(audio, vec!["1000", "1020", "1040"]);
}

#[tokio::test]
async fn audio_only_stream_starts_at_the_newest_audio_frame() {
    let engine = engine();
    let mut s = engine
        .open_publish(Request::new(key("live/radio"), "test"))
        .await
        .expect("publish");
    s.set_catalog(vec![TrackInfo::audio(AUDIO, Codec::Opus, 48_000, 2)])
        .expect("catalog");
    for i in 0..10 {
        s.publish(Frame::audio(
            AUDIO,
            Codec::Opus,
            i * 960,
            Bytes::from(vec![i as u8]),
        ))
        .expect("a");
    }
    let mut sub = viewer(&engine, "live/radio").await;
    let got: Vec<u8> = drain(&mut sub)
        .into_iter()
        .filter_map(|e| match e {
            Ok(Event::Frame(f)) => Some(f.payload[0]),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![9]);
}

#[tokio::test]
async fn rtmp_timestamps_wrapping_at_32_bits_reach_subscribers_unwrapped() {
    let engine = engine();
    let mut s = engine
        .open_publish(Request::new(key("live/wrap"), "test"))
        .await
        .expect("publish");
    s.set_catalog(vec![
        TrackInfo::video(VIDEO, Codec::H264, 64, 64)
            .with_timescale(1_000)
            .with_wrap(TimestampWrap::RTMP),
    ])
    .expect("catalog");
    let mut sub = viewer(&engine, "live/wrap").await;
    let start = u32::MAX as i64 - 100;
    for i in 0..10i64 {
        let raw = (start + i * 33) & 0xFFFF_FFFF;
        s.publish(Frame::video(
            VIDEO,
            Codec::H264,
            raw,
            raw,
            i == 0,
            Bytes::from_static(b"f"),
        ))
        .expect("publish");
    }
    let dts: Vec<i64> = drain(&mut sub)
        .into_iter()
        .filter_map(|e| match e {
            Ok(Event::Frame(f)) => Some(f.dts),
            _ => None,
        })
        .collect();
    assert_eq!(dts, (0..10).map(|i| start + i * 33).collect::<Vec<_>>());
    let anchor = s.clock_anchor().expect("anchor after the first frame");
    assert_eq!(
        sub.clock_anchor(),
        Some(anchor),
        "subscribers see the publish's anchor"
    );
    // The first frame maps to the anchor's wall time; 33 ms later maps 33 ms later.
    assert_eq!(anchor.wall_clock_of(start, 1_000), anchor.wall);
    assert_eq!(
        anchor.wall_clock_of(start + 33, 1_000),
        anchor.wall + Duration::from_millis(33)
    );
}

#[tokio::test]
async fn derived_outputs_are_computed_once_per_frame_for_all_viewers() {
    let engine = engine();
    let format = OutputFormat::new("test-upper");
    let mut publisher = publisher(&engine, "live/a").await;
    let mut subs = vec![];
    for _ in 0..50 {
        subs.push(viewer(&engine, "live/a").await);
    }
    for i in 0..20 {
        publisher.publish(vframe(i, 10)).expect("publish");
    }
    let calls = AtomicUsize::new(0);
    for sub in &mut subs {
        for e in drain(sub) {
            if let Ok(Event::Frame(f)) = e {
                let out = f.derived(format, |frame, _catalog| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    Bytes::from(frame.payload.iter().rev().copied().collect::<Vec<_>>())
                });
                assert_eq!(out.len(), 8);
            }
        }
    }
    assert_eq!(
        calls.load(Ordering::Relaxed),
        20,
        "one encode per frame, not per viewer"
    );
    assert_eq!(
        engine.stream(&key("live/a")).expect("live").derived_bytes,
        20 * 8
    );
}

#[tokio::test]
async fn stream_without_cached_gop_makes_joiners_wait_for_the_next_keyframe() {
    // A GOP longer than the cache bound is not offered.
    let policy = StreamPolicy {
        ring_frames: 256,
        gop_frames: 40,
        ..StreamPolicy::default()
    };
    let engine = engine_with(policy);
    let mut publisher = publisher(&engine, "live/a").await;
    for i in 0..60 {
        publisher.publish(vframe(i, 100)).expect("publish");
    }
    let mut sub = viewer(&engine, "live/a").await;
    assert!(frames(&drain(&mut sub)).is_empty(), "nothing mid-GOP");
    for i in 60..110 {
        publisher.publish(vframe(i, 100)).expect("publish");
    }
    let got = frames(&drain(&mut sub));
    assert_eq!(got, (100..110).collect::<Vec<_>>());
}

#[tokio::test]
async fn authorizer_is_asked_on_publish_and_read() {
    struct TokenAuth;
    #[async_trait::async_trait]
    impl tidewater_core::Authorizer for TokenAuth {
        async fn authorize(
            &self,
            req: &tidewater_core::AuthRequest,
        ) -> Result<tidewater_core::Identity, tidewater_core::Refusal> {
            match (req.action, req.token()) {
                (tidewater_core::Action::Publish, Some("pub")) => {
                    Ok(tidewater_core::Identity::named("publisher"))
                }
                (tidewater_core::Action::Read, _) if req.peer.is_some() => {
                    Ok(tidewater_core::Identity::anonymous())
                }
                _ => Err("bad token".into()),
            }
        }
    }
    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .authorizer(TokenAuth)
        .build()
        .expect("engine");
    let denied = engine
        .open_publish(Request::new(key("live/a"), "test").query("token=nope"))
        .await;
    match denied {
        Err(e @ tidewater_core::Error::Unauthorized { .. }) => {
            assert_eq!(
                e.to_string(),
                "publish live/a from an unknown address refused: bad token"
            );
        }
        other => panic!("{other:?}"),
    }
    let mut s = engine
        .open_publish(Request::new(key("live/a"), "test").query("token=pub"))
        .await
        .expect("allowed");
    s.set_catalog(video_tracks()).expect("catalog");
    assert!(
        engine
            .subscribe(Request::new(key("live/a"), "test"))
            .await
            .is_err()
    );
    let peer = "127.0.0.1:5000".parse().expect("addr");
    assert!(
        engine
            .subscribe(Request::new(key("live/a"), "test").peer(peer))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn snapshot_reports_catalog_metadata_and_qos() {
    let engine = engine();
    let peer = "127.0.0.1:4000".parse().expect("addr");
    let mut s = engine
        .open_publish(Request::new(key("live/q"), "rtmp").peer(peer))
        .await
        .expect("publish");
    s.set_catalog(av_tracks()).expect("catalog");
    s.set_metadata("encoder", "Lavf59");
    let _sub = viewer(&engine, "live/q").await;
    for i in 0..10 {
        s.publish(vframe(i, 5)).expect("publish");
    }
    let snap = engine.stream(&key("live/q")).expect("live");
    assert_eq!(snap.protocol, "rtmp");
    assert_eq!(snap.peer, Some(peer));
    assert_eq!(
        snap.metadata.get("encoder").map(String::as_str),
        Some("Lavf59")
    );
    let catalog = snap.catalog.expect("catalog");
    assert_eq!(catalog.tracks.len(), 2);
    assert_eq!(catalog.tracks[1].audio.map(|a| a.sample_rate), Some(48_000));
    assert_eq!(snap.qos.frames, 10);
    assert_eq!(snap.qos.bytes, 80);
    assert_eq!(snap.qos.keyframes, 2);
    assert_eq!(snap.qos.subscribers, 1);
    assert_eq!(engine.streams().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lending_receive_delivers_the_same_sequence_as_owned_receive() {
    use tidewater_core::EventRef;
    let engine = engine_with(roomy());
    let mut publisher = publisher(&engine, "live/lend").await;
    let mut lender = viewer(&engine, "live/lend").await;
    let task = tokio::spawn(async move {
        let mut got = vec![];
        let mut kept = None;
        let mut catalogs = 0;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), lender.recv_ref())
                .await
                .expect("event")
            {
                Ok(EventRef::Frame(f)) => {
                    let i = index_of(&f);
                    assert_eq!(f.seq(), i);
                    if i == 7 {
                        kept = Some(f.to_shared());
                    }
                    got.push(i);
                }
                Ok(EventRef::Catalog(_)) => catalogs += 1,
                Ok(EventRef::Skipped { .. }) => panic!("no skip expected"),
                Ok(EventRef::Discontinuity { .. }) => panic!("a subscription has none"),
                Err(RecvError::Ended(_)) => return (got, kept, catalogs),
                Err(e) => panic!("{e}"),
            }
        }
    });
    for i in 0..5_000 {
        publisher.publish(vframe(i, 30)).expect("publish");
        if i % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    publisher.finish().await;
    let (got, kept, catalogs) = task.await.expect("lender");
    assert_eq!(got, (0..5_000).collect::<Vec<_>>());
    assert_eq!(catalogs, 1);
    assert_eq!(
        index_of(&kept.expect("kept")),
        7,
        "a frame kept with to_shared outlives later receives"
    );
}

#[tokio::test]
async fn mixing_owned_and_lending_receives_across_a_skip() {
    use tidewater_core::EventRef;
    let engine = engine_with(small_ring());
    let mut publisher = publisher(&engine, "live/mix").await;
    let mut sub = viewer(&engine, "live/mix").await;
    for i in 0..40 {
        publisher.publish(vframe(i, 20)).expect("publish");
    }
    let mut got = vec![];
    let mut skipped = 0;
    let mut turn = 0;
    let mut read =
        |sub: &mut tidewater_core::Subscription, got: &mut Vec<u64>, skipped: &mut u64| loop {
            turn += 1;
            if turn % 2 == 0 {
                match sub.try_recv() {
                    Some(Ok(Event::Frame(f))) => got.push(index_of(&f)),
                    Some(Ok(Event::Skipped { frames })) => *skipped += frames,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => panic!("{e}"),
                    None => return,
                }
            } else {
                match sub.try_recv_ref() {
                    Some(Ok(EventRef::Frame(f))) => got.push(index_of(&f)),
                    Some(Ok(EventRef::Skipped { frames })) => *skipped += frames,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => panic!("{e}"),
                    None => return,
                }
            }
        };
    read(&mut sub, &mut got, &mut skipped);
    assert_eq!(got, (0..40).collect::<Vec<_>>());
    for i in 40..400 {
        publisher.publish(vframe(i, 20)).expect("publish");
    }
    read(&mut sub, &mut got, &mut skipped);
    assert_eq!(&got[40..], &(380..400).collect::<Vec<_>>()[..]);
    assert_eq!(skipped, 380 - 40);
}
