//! Publish generations, followers, and the idle reaper, on virtual time.

mod common;

use std::time::Duration;

use common::*;
use tidewater_core::{EndReason, Event, RecvError, Request, StreamPolicy};

#[tokio::test(start_paused = true)]
async fn follower_survives_a_republish_with_one_discontinuity() {
    let engine = engine();
    let mut first = publisher(&engine, "live/f").await;
    let mut follower = engine
        .follow(Request::new(key("live/f"), "hls"))
        .await
        .expect("follow");
    for i in 0..5 {
        first.publish(vframe(i, 5)).expect("publish");
    }
    drop(first);
    let engine2 = engine.clone();
    let republish = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut second = match engine2
            .open_publish(tidewater_core::Request::new(key("live/f"), "test"))
            .await
        {
            Ok(s) => s,
            Err(e) => panic!("republish: {e}"),
        };
        second.set_catalog(video_tracks()).expect("catalog");
        for i in 0..5 {
            second.publish(vframe(i, 5)).expect("publish");
        }
        second.finish().await;
    });
    let mut log = vec![];
    loop {
        match follower.recv().await {
            Ok(Event::Frame(f)) => log.push(format!("f{}", index_of(&f))),
            Ok(Event::Catalog(c)) => log.push(format!("c{}", c.version())),
            Ok(Event::Discontinuity { generation }) => log.push(format!("d{generation}")),
            Ok(Event::Skipped { .. }) => log.push("skip".into()),
            Err(e) => {
                log.push(format!("end:{e}"));
                break;
            }
        }
    }
    republish.await.expect("republish");
    let expected = "c1 f0 f1 f2 f3 f4 d2 c1 f0 f1 f2 f3 f4 end:stream ended: publisher finished";
    assert_eq!(log.join(" "), expected);
}

#[tokio::test(start_paused = true)]
async fn follower_ends_when_no_republish_comes_within_the_grace_period() {
    let engine = engine_with(StreamPolicy {
        follow_grace: Duration::from_secs(10),
        ..StreamPolicy::default()
    });
    let mut p = publisher(&engine, "live/g").await;
    let mut follower = engine
        .follow(Request::new(key("live/g"), "rec"))
        .await
        .expect("follow");
    p.publish(vframe(0, 5)).expect("publish");
    drop(p);
    let start = tokio::time::Instant::now();
    let mut end = None;
    while end.is_none() {
        if let Err(e) = follower.recv().await {
            end = Some(e);
        }
    }
    assert_eq!(end, Some(RecvError::Ended(EndReason::Finished)));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_reaper_ends_a_wedged_publish_and_spares_active_ones() {
    let engine = engine_with(StreamPolicy {
        idle_timeout: Duration::from_secs(5),
        ..StreamPolicy::default()
    });
    let mut wedged = publisher(&engine, "live/wedged").await;
    let mut active = publisher(&engine, "live/active").await;
    wedged.publish(vframe(0, 5)).expect("publish");
    let mut viewer_of_wedged = viewer(&engine, "live/wedged").await;
    for i in 0..80 {
        tokio::time::advance(Duration::from_millis(100)).await;
        active.publish(vframe(i, 5)).expect("publish");
        engine.reap_idle();
    }
    assert!(engine.stream(&key("live/wedged")).is_none(), "reaped");
    assert!(engine.stream(&key("live/active")).is_some(), "still live");
    let events = drain(&mut viewer_of_wedged);
    assert!(
        matches!(events.last(), Some(Err(RecvError::Ended(EndReason::Idle)))),
        "{events:?}"
    );
    assert!(
        wedged.publish(vframe(1, 5)).is_err(),
        "the wedged session learns it was ended"
    );
    // The name is free again.
    let _again = publisher(&engine, "live/wedged").await;
}

#[tokio::test(start_paused = true)]
async fn reaper_task_runs_on_its_own() {
    let engine = engine_with(StreamPolicy {
        idle_timeout: Duration::from_secs(2),
        ..StreamPolicy::default()
    });
    let token = tidewater_core::CancellationToken::new();
    let reaper = engine.spawn_reaper(Duration::from_millis(500), token.clone());
    let _p = publisher(&engine, "live/x").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(engine.stream(&key("live/x")).is_none());
    token.cancel();
    reaper.await.expect("reaper stops");
}

#[tokio::test]
async fn shutdown_ends_every_publish() {
    let engine = engine();
    let mut p = publisher(&engine, "live/s").await;
    let mut v = viewer(&engine, "live/s").await;
    p.publish(vframe(0, 5)).expect("publish");
    engine.shutdown();
    let events = drain(&mut v);
    assert!(matches!(
        events.last(),
        Some(Err(RecvError::Ended(EndReason::Shutdown)))
    ));
    assert!(p.publish(vframe(1, 5)).is_err());
}

#[tokio::test]
async fn serve_runs_workers_and_stops_them_all_when_one_fails() {
    use std::sync::Arc;
    use tidewater_core::{CancellationToken, InboundProtocol, IngestContext};

    struct Healthy;
    #[async_trait::async_trait]
    impl InboundProtocol for Healthy {
        fn name(&self) -> &'static str {
            "healthy"
        }
        async fn serve(
            &self,
            ctx: IngestContext,
            shutdown: CancellationToken,
        ) -> tidewater_core::Result<()> {
            let mut s = ctx
                .open_publish(Request::new(key("live/w"), "healthy"))
                .await?;
            s.set_catalog(video_tracks())?;
            shutdown.cancelled().await;
            s.finish().await;
            Ok(())
        }
    }
    struct Broken;
    #[async_trait::async_trait]
    impl InboundProtocol for Broken {
        fn name(&self) -> &'static str {
            "broken"
        }
        async fn serve(
            &self,
            _ctx: IngestContext,
            _shutdown: CancellationToken,
        ) -> tidewater_core::Result<()> {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err(tidewater_core::Error::Config("cannot bind".into()))
        }
    }
    let engine = engine();
    let token = CancellationToken::new();
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        engine.serve(vec![Arc::new(Healthy), Arc::new(Broken)], token.clone()),
    )
    .await
    .expect("serve returns promptly");
    assert!(result.is_err());
    assert!(token.is_cancelled());
    assert!(engine.streams().is_empty());
}

#[tokio::test(start_paused = true)]
async fn cancelled_receives_do_not_restart_the_grace_period() {
    let engine = engine_with(StreamPolicy {
        follow_grace: Duration::from_secs(10),
        ..StreamPolicy::default()
    });
    let mut p = publisher(&engine, "live/c").await;
    let mut follower = engine
        .follow(Request::new(key("live/c"), "push"))
        .await
        .expect("follow");
    p.publish(vframe(0, 5)).expect("publish");
    drop(p);
    let start = tokio::time::Instant::now();
    // A consumer that gives up on each receive after a second (a select!
    // with a timer, say) and tries again.
    let mut tries = 0;
    let end = loop {
        tries += 1;
        assert!(tries < 30, "still waiting after {:?}", start.elapsed());
        match tokio::time::timeout(Duration::from_secs(1), follower.recv()).await {
            Err(_) => continue,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => break e,
        }
    };
    assert_eq!(end, RecvError::Ended(EndReason::Finished));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "the grace ended after {waited:?}"
    );
}
