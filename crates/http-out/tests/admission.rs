//! Reader admission and the live body against a real kernel: the refusals'
//! statuses, then a subscribed reader getting the published frame's bytes
//! until the publish ends, and a feed noticing a client that went away.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request as HttpRequest;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use tidewater_core::{
    AppSpec, Codec, Engine, EventRef, Follower, Frame, IngestContext, Request, StreamKey, TrackId,
    TrackInfo,
};
use tidewater_http::{Ending, Feed, subscribe_file};

const AVCC: &[u8] = &[
    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02, 0x68,
    0xee,
];
const PAYLOAD: &[u8] = &[0, 0, 0, 1, 0x65, 0x88];

fn engine() -> Engine {
    Engine::builder()
        .default_app(AppSpec::default())
        .build()
        .expect("engine")
}

fn get(uri: &str) -> HttpRequest {
    HttpRequest::builder()
        .uri(uri)
        .body(Body::empty())
        .expect("request")
}

async fn status_of(ctx: &IngestContext, app: &str, file: &str) -> StatusCode {
    match subscribe_file(ctx, "test", app, file, ".raw", &get("/raw/x")).await {
        Ok(_) => StatusCode::OK,
        Err(refusal) => refusal.status(),
    }
}

/// A live stream `live/cam` with one keyframe in its GOP cache.
async fn live_stream(engine: &Engine) -> tidewater_core::PublishSession {
    let key = StreamKey::parse("live/cam").expect("key");
    let mut session = engine
        .open_publish(Request::new(key, "test"))
        .await
        .expect("publish");
    let video = TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
        .with_timescale(1_000)
        .with_config(Bytes::from_static(AVCC));
    session.set_catalog(vec![video]).expect("catalog");
    session
        .publish(Frame::video(
            TrackId(1),
            Codec::H264,
            0,
            0,
            true,
            Bytes::from_static(PAYLOAD),
        ))
        .expect("frame");
    session
}

fn payloads(event: EventRef<'_>) -> Bytes {
    match event {
        EventRef::Frame(f) => f.payload.clone(),
        _ => Bytes::new(),
    }
}

#[tokio::test]
async fn refusals_map_to_statuses() {
    let engine = engine();
    let ctx = engine.context();
    assert_eq!(
        status_of(&ctx, "live", "cam.flv").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(&ctx, "..", "cam.raw").await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status_of(&ctx, "live", "cam.raw").await,
        StatusCode::NOT_FOUND
    );
    let _session = live_stream(&engine).await;
    assert_eq!(status_of(&ctx, "live", "cam.raw").await, StatusCode::OK);
}

/// A live stream and a live response of it with its feed and subscription.
async fn play(engine: &Engine) -> (tidewater_core::PublishSession, Response, Feed, Follower) {
    let session = live_stream(engine).await;
    let play = subscribe_file(
        &engine.context(),
        "test",
        "live",
        "cam.raw",
        ".raw",
        &get("/raw/x?t=1"),
    )
    .await
    .expect("admitted");
    let (response, feed) = tidewater_http::live(
        "test",
        "application/octet-stream",
        play.key,
        play.peer,
        Duration::from_secs(10),
    );
    (session, response, feed, play.subscription)
}

// Virtual time: the feed waits the stream's grace for a republish.
#[tokio::test(start_paused = true)]
async fn a_reader_gets_the_frames_until_the_stream_ends() {
    let engine = engine();
    let (session, response, feed, sub) = play(&engine).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let task = tokio::spawn(feed.run(sub, payloads));
    session.finish().await;
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    assert_eq!(&body[..], PAYLOAD);
    assert_eq!(task.await.expect("feed"), Ending::StreamEnded);
}

/// Counts the generations it is told of, and sends each frame's payload.
struct Generations(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl tidewater_http::LiveEncoder for Generations {
    fn generation(&mut self, follower: &Follower) {
        self.0
            .store(follower.generation(), std::sync::atomic::Ordering::Relaxed);
    }

    fn encode(&mut self, event: EventRef<'_>) -> Bytes {
        payloads(event)
    }
}

#[tokio::test(start_paused = true)]
async fn a_response_goes_on_across_a_republish() {
    let engine = engine();
    let (session, response, feed, sub) = play(&engine).await;
    let generation = std::sync::Arc::default();
    let task = tokio::spawn(feed.run(sub, Generations(std::sync::Arc::clone(&generation))));
    let mut body = response.into_body().into_data_stream();
    assert_eq!(next_chunk(&mut body).await.as_deref(), Some(PAYLOAD));
    session.finish().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = live_stream(&engine).await;
    assert_eq!(
        next_chunk(&mut body).await.as_deref(),
        Some(PAYLOAD),
        "the new publish's frame on the same response"
    );
    assert_eq!(generation.load(std::sync::atomic::Ordering::Relaxed), 2);
    again.finish().await;
    assert_eq!(next_chunk(&mut body).await, None, "ends with the stream");
    assert_eq!(task.await.expect("feed"), Ending::StreamEnded);
}

#[tokio::test]
async fn a_feed_counts_what_it_sends_and_ends_when_kicked() {
    let engine = engine();
    let (_session, response, feed, sub) = play(&engine).await;
    let id = sub.id();
    let task = tokio::spawn(feed.run(sub, payloads));
    let mut body = response.into_body().into_data_stream();
    let first = next_chunk(&mut body).await;
    assert_eq!(first.as_deref(), Some(PAYLOAD));
    let sent = engine
        .sessions()
        .into_iter()
        .find(|s| s.id == id)
        .expect("listed")
        .bytes_out;
    assert_eq!(sent, PAYLOAD.len() as u64);
    assert!(engine.kick(id));
    let ending = tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("ends within 1 s")
        .expect("feed");
    assert_eq!(ending, Ending::Kicked);
    assert_eq!(next_chunk(&mut body).await, None, "the response ends");
}

/// The next chunk of a body stream.
async fn next_chunk(body: &mut axum::body::BodyDataStream) -> Option<Bytes> {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(std::pin::Pin::new(&mut *body), cx))
        .await
        .map(|r| r.expect("chunk"))
}

#[tokio::test]
async fn a_feed_stops_when_the_client_goes_away() {
    let engine = engine();
    let (_session, response, feed, sub) = play(&engine).await;
    drop(response);
    assert_eq!(feed.run(sub, payloads).await, Ending::ClientGone);
}
