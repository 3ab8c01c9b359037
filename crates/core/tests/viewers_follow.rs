//! Viewers that follow their stream across republishes
//! (`Engine::follow_live`), with the lending receives protocol drivers use.

mod common;

use std::time::Duration;

use common::*;
use tidewater_core::{
    AppSpec, DuplicatePublish, EndReason, Engine, Error, EventRef, Follower, RecvError, Request,
    SessionKind, StreamPolicy,
};

/// What a viewer received, as a compact log: `c` catalog, `f<i>` frame,
/// `d<g>` discontinuity, `end:…`.
fn log_ready(viewer: &mut Follower, log: &mut Vec<String>) {
    while let Some(ev) = viewer.try_recv_ref() {
        match ev {
            Ok(EventRef::Catalog(_)) => log.push("c".into()),
            Ok(EventRef::Frame(f)) => log.push(format!("f{}", index_of(&f))),
            Ok(EventRef::Skipped { frames }) => log.push(format!("skip{frames}")),
            Ok(EventRef::Discontinuity { generation }) => log.push(format!("d{generation}")),
            Err(e) => {
                log.push(format!("end:{e}"));
                return;
            }
        }
    }
}

fn viewers_listed(engine: &Engine) -> Vec<u64> {
    engine
        .sessions()
        .iter()
        .filter(|s| s.kind == SessionKind::Reader)
        .map(|s| s.id)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_viewer_is_refused_unless_the_stream_is_live() {
    let engine = engine();
    let refused = engine
        .follow_live(Request::new(key("live/none"), "rtmp"))
        .await;
    assert!(
        matches!(refused, Err(Error::NotFound { .. })),
        "{refused:?}"
    );
    let mut p = publisher(&engine, "live/gone").await;
    p.publish(vframe(0, 5)).expect("publish");
    p.finish().await;
    // Ended, within the grace: a packager may wait for it, a viewer may not.
    let refused = engine
        .follow_live(Request::new(key("live/gone"), "rtmp"))
        .await;
    assert!(
        matches!(refused, Err(Error::NotFound { .. })),
        "{refused:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_viewer_plays_on_across_a_republish_as_the_same_session() {
    let engine = engine();
    let mut first = publisher(&engine, "live/v").await;
    for i in 0..3 {
        first.publish(vframe(i, 5)).expect("publish");
    }
    let mut viewer = engine
        .follow_live(Request::new(key("live/v"), "rtmp"))
        .await
        .expect("viewer");
    let mut log = vec![];
    log_ready(&mut viewer, &mut log);
    assert_eq!(viewers_listed(&engine), [viewer.id()]);
    first.publish(vframe(3, 5)).expect("publish");
    first.finish().await;
    log_ready(&mut viewer, &mut log);
    assert_eq!(
        log.join(" "),
        "c f0 f1 f2 f3",
        "nothing ends the viewer yet"
    );
    assert!(viewers_listed(&engine).is_empty(), "not listed between two");

    tokio::time::advance(Duration::from_secs(1)).await;
    let mut second = publisher(&engine, "live/v").await;
    // The lending receive waits for the republish.
    match viewer.recv_ref().await {
        Ok(EventRef::Discontinuity { generation }) => log.push(format!("d{generation}")),
        other => panic!("{other:?}"),
    }
    for i in 0..2 {
        second.publish(vframe(i, 5)).expect("publish");
    }
    log_ready(&mut viewer, &mut log);
    assert_eq!(log.join(" "), "c f0 f1 f2 f3 d2 c f0 f1");
    assert_eq!(viewer.generation(), 2);
    assert_eq!(viewers_listed(&engine), [viewer.id()], "the same id");

    // Kicked in the second generation: over at once, no republish awaited.
    assert!(engine.kick(viewer.id()));
    log_ready(&mut viewer, &mut log);
    assert_eq!(
        log.last().map(String::as_str),
        Some("end:stream ended: kicked by the operator")
    );
    assert!(viewer.is_kicked());
    second.publish(vframe(2, 5)).expect("the stream goes on");
}

#[tokio::test(start_paused = true)]
async fn a_viewer_ends_when_no_republish_comes_within_the_grace() {
    let engine = engine_with(StreamPolicy {
        follow_grace: Duration::from_secs(4),
        ..StreamPolicy::default()
    });
    let mut p = publisher(&engine, "live/end").await;
    p.publish(vframe(0, 5)).expect("publish");
    let mut waiting = engine
        .follow_live(Request::new(key("live/end"), "srt"))
        .await
        .expect("viewer");
    let mut polling = engine
        .follow_live(Request::new(key("live/end"), "http-ts"))
        .await
        .expect("viewer");
    p.finish().await;
    let mut log = vec![];
    // The polling viewer sees the end now: its grace starts.
    log_ready(&mut polling, &mut log);
    assert_eq!(log.join(" "), "c f0");
    let start = tokio::time::Instant::now();
    let end = loop {
        match waiting.recv_ref().await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(end, RecvError::Ended(EndReason::Finished));
    assert_eq!(start.elapsed(), Duration::from_secs(4));
    assert!(!waiting.is_kicked());
    log_ready(&mut polling, &mut log);
    assert_eq!(log.join(" "), "c f0 end:stream ended: publisher finished");
}

#[tokio::test(start_paused = true)]
async fn a_viewer_follows_a_take_over() {
    let engine = Engine::builder()
        .app(
            "live",
            AppSpec {
                duplicate: DuplicatePublish::TakeOver,
                ..AppSpec::default()
            },
        )
        .build()
        .expect("engine");
    let mut first = publisher(&engine, "live/t").await;
    first.publish(vframe(0, 5)).expect("publish");
    let mut viewer = engine
        .follow_live(Request::new(key("live/t"), "rtmp"))
        .await
        .expect("viewer");
    let mut second = publisher(&engine, "live/t").await;
    second.publish(vframe(0, 5)).expect("publish");
    let mut log = vec![];
    log_ready(&mut viewer, &mut log);
    assert_eq!(log.join(" "), "c f0 d2 c f0");
    assert!(first.publish(vframe(1, 5)).is_err(), "taken over");
}

#[tokio::test(start_paused = true)]
async fn viewers_count_against_the_reader_limit() {
    let engine = Engine::builder()
        .app(
            "live",
            AppSpec {
                max_readers: 1,
                ..AppSpec::default()
            },
        )
        .build()
        .expect("engine");
    let mut p = publisher(&engine, "live/l").await;
    p.publish(vframe(0, 5)).expect("publish");
    let _one = engine
        .follow_live(Request::new(key("live/l"), "rtmp"))
        .await
        .expect("first viewer");
    let refused = engine
        .follow_live(Request::new(key("live/l"), "rtmp"))
        .await;
    assert!(
        matches!(refused, Err(Error::ReaderLimit { limit: 1, .. })),
        "{refused:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn kicking_the_publisher_ends_its_viewers_at_once_and_not_its_packagers() {
    let engine = engine();
    let mut p = publisher(&engine, "live/k").await;
    p.publish(vframe(0, 5)).expect("publish");
    let mut viewer = engine
        .follow_live(Request::new(key("live/k"), "rtmp"))
        .await
        .expect("viewer");
    let mut packager = engine
        .follow(Request::new(key("live/k"), "hls").internal())
        .await
        .expect("packager");
    let publisher_id = engine
        .sessions()
        .iter()
        .find(|s| s.kind == SessionKind::Publisher)
        .map(|s| s.id)
        .expect("listed");
    assert!(engine.kick(publisher_id));
    let mut log = vec![];
    log_ready(&mut viewer, &mut log);
    assert_eq!(
        log.join(" "),
        "c f0 end:stream ended: kicked by the operator"
    );
    assert!(!viewer.is_kicked(), "its publisher was, not itself");
    let mut log = vec![];
    log_ready(&mut packager, &mut log);
    assert_eq!(log.join(" "), "c f0", "a packager waits for a republish");
}
