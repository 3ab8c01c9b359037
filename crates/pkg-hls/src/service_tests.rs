//! The packager tasks on virtual time, fed by a real kernel.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tidewater_core::{
    AppSpec, Codec, Engine, Frame, PublishSession, Request, StreamKey, TrackId, TrackInfo,
};

use crate::playlist::Flavour;
use crate::service::{Package, Refusal};
use crate::sim_tests::AVCC;
use crate::validate::{self, Tracker};
use crate::{Hls, HlsConfig};

const FPS: i64 = 25;

fn engine() -> Engine {
    Engine::builder()
        .app("live", AppSpec::default())
        .build()
        .expect("engine")
}

fn key() -> StreamKey {
    StreamKey::parse("live/cam").expect("key")
}

async fn publisher(engine: &Engine) -> PublishSession {
    let mut s = engine
        .open_publish(Request::new(key(), "test"))
        .await
        .expect("publish");
    s.set_catalog(vec![
        TrackInfo::video(TrackId(1), Codec::H264, 1280, 720)
            .with_timescale(1000)
            .with_config(Bytes::from_static(AVCC)),
        TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2)
            .with_timescale(1000)
            .with_config(Bytes::from_static(&[0x11, 0x90])),
    ])
    .expect("catalog");
    s
}

/// Publishes `frames` video frames at 25 fps (keyframe every 2 s) from
/// frame `from`, with AAC in between, in (virtual) real time.
async fn feed(s: &mut PublishSession, from: i64, frames: i64) {
    let mut audio = from * 1000 / FPS * 48 / 1024;
    for i in from..from + frames {
        let ms = i * 1000 / FPS;
        let key = i % (2 * FPS) == 0;
        let nal: &'static [u8] = if key {
            &[0, 0, 0, 2, 0x65, 0x88]
        } else {
            &[0, 0, 0, 2, 0x41, 0x9a]
        };
        s.publish(Frame::video(
            TrackId(1),
            Codec::H264,
            ms,
            ms,
            key,
            Bytes::from_static(nal),
        ))
        .expect("video");
        while audio * 1024 / 48 <= ms {
            s.publish(Frame::audio(
                TrackId(2),
                Codec::Aac,
                audio * 1024 / 48,
                Bytes::from_static(&[0x21, 0x10, 0x04]),
            ))
            .expect("audio");
            audio += 1;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// The packager of `live/cam` in `flavour`, started on request.
async fn packaging(hls: &Hls, flavour: Flavour) -> Arc<Package> {
    hls.package(&key(), flavour, follow).await.expect("package")
}

/// The kernel request a packager follows `live/cam` with.
fn follow() -> Request {
    Request::new(key(), "hls-packager")
}

fn config() -> HlsConfig {
    HlsConfig {
        idle_timeout: Duration::from_secs(5),
        linger: Duration::from_secs(3),
        // Started by requests: what most of these tests look at.
        always_on_all: false,
        ..HlsConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn packages_on_request_stops_when_idle_and_restarts() {
    let engine = engine();
    let hls = Hls::new(engine.context(), config()).expect("hls");
    assert!(matches!(
        hls.package(&key(), Flavour::Fmp4, follow).await,
        Err(Refusal::NotLive(m)) if m.contains("live/cam is not live")
    ));
    let mut s = publisher(&engine).await;
    feed(&mut s, 0, 10).await;
    let pkg = packaging(&hls, Flavour::Fmp4).await;
    let ts = packaging(&hls, Flavour::Ts).await;
    assert_eq!(hls.packaging().len(), 2);
    // However many requests: one packager per stream and flavour.
    for _ in 0..10 {
        let again = packaging(&hls, Flavour::Fmp4).await;
        assert!(Arc::ptr_eq(&again, &pkg));
    }
    assert_eq!(hls.packaging().len(), 2);
    feed(&mut s, 10, 4 * FPS).await;
    for p in [&pkg, &ts] {
        let text = p.media_playlist().expect("a segment is complete");
        validate::check(&String::from_utf8_lossy(&text)).expect("valid");
        // Rendered once per change: every (anonymous) player gets the same bytes.
        let again = p.media_playlist().expect("playlist");
        assert_eq!(text.as_ptr(), again.as_ptr(), "served from the cache");
    }
    // Requests keep it going; without them it stops after the idle timeout.
    feed(&mut s, 5 * FPS, 8 * FPS).await;
    assert!(hls.packaging().is_empty(), "{:?}", hls.packaging());
    assert!(pkg.stopped());
    // And starts again, with a new epoch.
    let again = packaging(&hls, Flavour::Fmp4).await;
    assert_ne!(
        again.with(|s| s.epoch().to_owned()),
        pkg.with(|s| s.epoch().to_owned())
    );
    s.finish().await;
}

#[tokio::test(start_paused = true)]
async fn blocking_reload_waits_for_the_part_and_times_out_beyond() {
    let engine = engine();
    let hls = Hls::new(engine.context(), config()).expect("hls");
    let mut s = publisher(&engine).await;
    feed(&mut s, 0, 5).await;
    let pkg = packaging(&hls, Flavour::Fmp4).await;
    let feeder = tokio::spawn(async move {
        feed(&mut s, 5, 6 * FPS).await;
        s
    });
    assert!(
        pkg.wait_for(Duration::from_secs(5), |s| s.ready().then_some(()))
            .await
            .is_some()
    );
    let pos = pkg.with(|s| s.position());
    let started = tokio::time::Instant::now();
    let got = pkg
        .wait_for(Duration::from_secs(6), |s| {
            s.satisfies(pos.msn, Some(pos.parts)).then_some(())
        })
        .await;
    assert!(got.is_some());
    let waited = started.elapsed();
    assert!(waited <= Duration::from_millis(300), "{waited:?}");
    // Two segments ahead cannot come within the hold.
    let far = pkg
        .wait_for(Duration::from_millis(500), |s| {
            s.satisfies(pos.msn + 3, None).then_some(())
        })
        .await;
    assert!(far.is_none());
    let s = feeder.await.expect("feeder");
    s.finish().await;
}

#[tokio::test(start_paused = true)]
async fn republish_continues_the_playlist_and_the_end_is_listed() {
    let engine = engine();
    let hls = Hls::new(
        engine.context(),
        HlsConfig {
            idle_timeout: Duration::from_secs(60),
            ..config()
        },
    )
    .expect("hls");
    let mut s = publisher(&engine).await;
    feed(&mut s, 0, 5).await;
    let pkg = packaging(&hls, Flavour::Fmp4).await;
    let mut tracker = Tracker::new();
    let mut check = |pkg: &crate::service::Package| {
        if let Some(text) = pkg.media_playlist() {
            let text = String::from_utf8_lossy(&text).into_owned();
            tracker
                .update(&text)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
        }
    };
    let mut at = 5;
    for _ in 0..6 {
        feed(&mut s, at, FPS).await;
        at += FPS;
        check(&pkg);
    }
    s.finish().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Ended: no new packaging starts (the other flavour was never asked for),
    // the running one keeps its playlist through the grace period.
    assert!(matches!(
        hls.package(&key(), Flavour::Ts, follow).await,
        Err(Refusal::NotLive(_))
    ));
    assert!(hls.package(&key(), Flavour::Fmp4, follow).await.is_ok());
    // Back within the grace period, times from 0 again.
    let mut s = publisher(&engine).await;
    for k in 0..8 {
        feed(&mut s, k * FPS, FPS).await;
        check(&pkg);
    }
    let text = String::from_utf8_lossy(&pkg.media_playlist().expect("playlist")).into_owned();
    assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    s.finish().await;
    // The follower gives up after the grace; the playlist ends.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let text = String::from_utf8_lossy(&pkg.media_playlist().expect("playlist")).into_owned();
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    check(&pkg);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(hls.packaging().is_empty());
}

#[tokio::test(start_paused = true)]
async fn always_on_streams_are_packaged_from_their_publish() {
    let engine = engine();
    let hls = Hls::new(
        engine.context(),
        HlsConfig {
            always_on: vec![key()],
            ..config()
        },
    )
    .expect("hls");
    let shutdown = tidewater_core::CancellationToken::new();
    let task = tokio::spawn(hls.clone().run_always_on(shutdown.clone()));
    tokio::task::yield_now().await;
    assert!(hls.packaging().is_empty());
    let mut s = publisher(&engine).await;
    feed(&mut s, 0, 3 * FPS).await;
    assert_eq!(hls.packaging().len(), 2, "both flavours, without a request");
    // Nobody asks, yet it keeps packaging past the idle timeout.
    feed(&mut s, 3 * FPS, 8 * FPS).await;
    assert_eq!(hls.packaging().len(), 2);
    shutdown.cancel();
    task.await.expect("always-on task");
    s.finish().await;
}
