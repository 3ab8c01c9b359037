//! WHIP signalling against the router: answers, CORS, refusals, session
//! ends, limits. Offers come from a str0m client, as a WHIP client makes them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request as HttpRequest, StatusCode, header};
use axum::response::Response;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};
use tidewater_core::{
    AppSpec, AuthRequest, Authorizer, CancellationToken, Credentials, Engine, Identity,
    InboundProtocol, Refusal, RefusalKind, Request, StreamKey,
};
use tidewater_whip::{Whip, WhipConfig};
use tower::ServiceExt;

/// A client's offer: send-only H.264 and Opus, or only H.266 (a video
/// codec the server does not take).
fn offer(h266_only: bool) -> String {
    let builder = Rtc::builder().clear_codecs();
    let builder = if h266_only {
        builder.enable_h266(true)
    } else {
        builder.enable_h264(true).enable_opus(true, false)
    };
    let mut rtc = builder.build(Instant::now());
    rtc.add_local_candidate(
        Candidate::host("127.0.0.1:9".parse().expect("addr"), "udp").expect("candidate"),
    );
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    if !h266_only {
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    }
    let (offer, _pending) = api.apply().expect("an offer");
    offer.to_sdp_string()
}

struct Harness {
    engine: Engine,
    whip: Whip,
    router: axum::Router,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(engine: Engine, config: WhipConfig) -> Harness {
    let whip = Whip::new(config).expect("config");
    let shutdown = CancellationToken::new();
    {
        let (whip, ctx, shutdown) = (whip.clone(), engine.context(), shutdown.clone());
        tokio::spawn(async move { whip.serve(ctx, shutdown).await });
    }
    whip.listening().await;
    let router = whip.router(engine.context());
    Harness {
        engine,
        whip,
        router,
        shutdown,
    }
}

fn loopback() -> WhipConfig {
    WhipConfig {
        udp_listen: "127.0.0.1:0".parse().expect("addr"),
        ..WhipConfig::default()
    }
}

fn engine() -> Engine {
    Engine::builder()
        .default_app(AppSpec::default())
        .build()
        .expect("engine")
}

async fn call(
    router: &axum::Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: String,
) -> (Response, String) {
    let mut req = HttpRequest::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = router
        .clone()
        .oneshot(req.body(Body::from(body)).expect("request"))
        .await
        .expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("body");
    (
        Response::from_parts(parts, Body::empty()),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

const SDP: (&str, &str) = ("content-type", "application/sdp");

/// `POST`s `body` to `uri` as `application/sdp` (an offer, or what stands
/// in for one).
async fn post_sdp(router: &axum::Router, uri: &str, body: String) -> (Response, String) {
    call(router, Method::POST, uri, &[SDP], body).await
}

#[tokio::test]
async fn an_offer_is_answered_and_delete_ends_the_publish() {
    let h = start(engine(), loopback()).await;
    let media = h.whip.listening().await;
    let (r, answer) = post_sdp(&h.router, "/whip/live/cam", offer(false)).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{answer}");
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/sdp");
    assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let location = r.headers()[header::LOCATION]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(location.starts_with("/whip/live/cam/"), "{location}");
    let etag = r.headers()[header::ETAG].to_str().expect("ascii");
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    // A real answer: parses, ICE-lite, our host candidate, H.264 and Opus.
    SdpAnswer::from_sdp_string(&answer).expect("the answer parses");
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(
        answer.contains(&format!("127.0.0.1 {} typ host", media[0].port())),
        "{answer}"
    );
    assert!(
        answer.contains("H264/90000") && answer.contains("opus/48000"),
        "{answer}"
    );
    assert_eq!(h.whip.sessions(), 1);

    // The stream is published: a second publisher is refused.
    let key = StreamKey::parse("live/cam").expect("key");
    let (r, _) = post_sdp(&h.router, "/whip/live/cam", offer(false)).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // Trickle ICE: 204 for the session's ETag (or none), 412 for another,
    // 422 for an ICE restart, 400 for garbage, 415 for another type.
    let etag = etag.to_owned();
    let fragment = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
        a=candidate:1 1 udp 2122260223 127.0.0.1 40000 typ host\r\na=end-of-candidates\r\n";
    let trickle = ("content-type", "application/trickle-ice-sdpfrag");
    for (if_match, body, status) in [
        (Some(etag.as_str()), fragment, StatusCode::NO_CONTENT),
        (None, "a=end-of-candidates\r\n", StatusCode::NO_CONTENT),
        (Some("\"other\""), fragment, StatusCode::PRECONDITION_FAILED),
        (Some("*"), fragment, StatusCode::UNPROCESSABLE_ENTITY),
        (Some(etag.as_str()), "hello", StatusCode::BAD_REQUEST),
    ] {
        let mut headers = vec![trickle];
        if let Some(tag) = if_match {
            headers.push(("if-match", tag));
        }
        let (r, text) = call(&h.router, Method::PATCH, &location, &headers, body.into()).await;
        assert_eq!(r.status(), status, "{if_match:?} {body:?}: {text}");
    }
    let (r, _) = call(&h.router, Method::PATCH, &location, &[SDP], fragment.into()).await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (r, _) = call(
        &h.router,
        Method::PATCH,
        "/whip/live/cam/0123",
        &[trickle],
        fragment.into(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let (r, _) = call(&h.router, Method::DELETE, &location, &[], String::new()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (r, _) = call(&h.router, Method::DELETE, &location, &[], String::new()).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let start = Instant::now();
    while h.whip.sessions() != 0 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.whip.sessions(), 0);
    // The publish ended with the session: the stream may be published again.
    assert!(h.engine.subscribe(Request::new(key, "test")).await.is_err());
    let (r, _) = post_sdp(&h.router, "/whip/live/cam", offer(false)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn bad_offers_get_clear_errors_and_leave_nothing_published() {
    let h = start(engine(), loopback()).await;
    let (r, _) = call(
        &h.router,
        Method::POST,
        "/whip/live/a",
        &[("content-type", "text/plain")],
        offer(false),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (r, body) = post_sdp(&h.router, "/whip/live/a", "v=0\r\ngarbage\r\n".into()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    let (r, body) = post_sdp(&h.router, "/whip/live/a", offer(true)).await;
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE, "{body}");
    assert!(body.contains("H.264") && body.contains("H266"), "{body}");
    let (r, _) = post_sdp(&h.router, "/whip/live/a", "x".repeat(70_000)).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (r, _) = post_sdp(&h.router, "/whip/live/..", offer(false)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(h.whip.sessions(), 0);
    let key = StreamKey::parse("live/a").expect("key");
    assert!(h.engine.subscribe(Request::new(key, "test")).await.is_err());
    // Nothing stuck: a good offer is answered.
    let (r, _) = post_sdp(&h.router, "/whip/live/a", offer(false)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn preflight_allows_other_origins_to_publish_with_a_token() {
    let h = start(engine(), loopback()).await;
    let (r, _) = call(
        &h.router,
        Method::OPTIONS,
        "/whip/live/cam",
        &[],
        String::new(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let hd = r.headers();
    assert_eq!(hd[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(
        hd[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .expect("ascii")
            .contains("POST")
    );
    assert!(
        hd[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .expect("ascii")
            .contains("Authorization")
    );
    assert_eq!(hd["accept-post"], "application/sdp");
    let (r, _) = call(
        &h.router,
        Method::OPTIONS,
        "/whip/live/cam/abc",
        &[],
        String::new(),
    )
    .await;
    assert!(
        r.headers()[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .expect("ascii")
            .contains("DELETE")
    );
}

/// Allows publishing only with `Authorization: Bearer s3cret`.
struct Bearer(Arc<std::sync::Mutex<Vec<AuthRequest>>>);

#[async_trait::async_trait]
impl Authorizer for Bearer {
    async fn authorize(&self, request: &AuthRequest) -> Result<Identity, Refusal> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request.clone());
        match &request.credentials {
            Credentials::Token(t) if t == "s3cret" => Ok(Identity::anonymous()),
            Credentials::None => Err(Refusal::new(
                RefusalKind::MissingCredentials,
                "publish needs a token",
            )),
            _ => Err(Refusal::new(RefusalKind::InvalidCredentials, "wrong token")),
        }
    }
}

#[tokio::test]
async fn the_bearer_token_reaches_the_authorizer_and_refusals_are_401() {
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let engine = Engine::builder()
        .default_app(AppSpec::default())
        .authorizer(Bearer(Arc::clone(&asked)))
        .build()
        .expect("engine");
    let h = start(engine, loopback()).await;
    let (r, body) = post_sdp(&h.router, "/whip/live/cam?x=1", offer(false)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{body}");
    assert!(r.headers().get(header::WWW_AUTHENTICATE).is_some());
    let (r, _) = call(
        &h.router,
        Method::POST,
        "/whip/live/cam",
        &[SDP, ("authorization", "Bearer nope")],
        offer(false),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (r, _) = call(
        &h.router,
        Method::POST,
        "/whip/live/cam",
        &[SDP, ("authorization", "Bearer s3cret")],
        offer(false),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let asked = asked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(asked.len(), 3);
    assert!(asked.iter().all(|a| a.protocol == "whip"));
    assert_eq!(asked[0].query.as_deref(), Some("x=1"));
    assert_eq!(h.whip.sessions(), 1);
}

#[tokio::test]
async fn sessions_are_bounded_and_the_media_port_must_listen() {
    // Before the worker listens: 503.
    let whip = Whip::new(loopback()).expect("config");
    let e = engine();
    let router = whip.router(e.context());
    let (r, _) = post_sdp(&router, "/whip/live/cam", offer(false)).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    let h = start(
        engine(),
        WhipConfig {
            max_sessions: 1,
            ..loopback()
        },
    )
    .await;
    let (r, _) = post_sdp(&h.router, "/whip/live/one", offer(false)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (r, _) = post_sdp(&h.router, "/whip/live/two", offer(false)).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.whip.sessions(), 1);
}

#[tokio::test]
async fn a_peer_that_never_connects_is_ended() {
    let h = start(
        engine(),
        WhipConfig {
            connect_timeout: Duration::from_millis(300),
            ..loopback()
        },
    )
    .await;
    let (r, _) = post_sdp(&h.router, "/whip/live/cam", offer(false)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let start = Instant::now();
    while h.whip.sessions() != 0 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.whip.sessions(), 0);
    let key = StreamKey::parse("live/cam").expect("key");
    assert!(h.engine.subscribe(Request::new(key, "test")).await.is_err());
}

/// A viewer's offer: receive-only H.264 and Opus.
fn viewer_offer() -> String {
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(
        Candidate::host("127.0.0.1:9".parse().expect("addr"), "udp").expect("candidate"),
    );
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    api.apply().expect("offer").0.to_sdp_string()
}

#[tokio::test]
async fn whep_answers_a_live_stream_and_refuses_one_that_is_not() {
    let h = start(engine(), loopback()).await;
    let (r, body) = post_sdp(&h.router, "/whep/live/cam", viewer_offer()).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "{body}");
    assert_eq!(h.whip.sessions(), 0);

    let key = StreamKey::parse("live/cam").expect("key");
    let _publish = h
        .engine
        .open_publish(Request::new(key, "test"))
        .await
        .expect("publish");
    let (r, answer) = post_sdp(&h.router, "/whep/live/cam", viewer_offer()).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{answer}");
    assert!(
        answer.contains("a=sendonly") && answer.contains("H264/90000"),
        "{answer}"
    );
    let location = r.headers()[header::LOCATION]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(location.starts_with("/whep/live/cam/"), "{location}");
    assert_eq!(h.whip.sessions(), 1);
    let (r, _) = call(
        &h.router,
        Method::OPTIONS,
        "/whep/live/cam",
        &[],
        String::new(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (r, _) = call(&h.router, Method::DELETE, &location, &[], String::new()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let start = Instant::now();
    while h.whip.sessions() != 0 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.whip.sessions(), 0);
}

#[tokio::test]
async fn whep_refuses_a_stream_with_b_frames_with_a_clear_answer() {
    use bytes::Bytes;
    use tidewater_core::{Codec, Frame, TrackId, TrackInfo};
    let h = start(engine(), loopback()).await;
    let key = StreamKey::parse("live/bframes").expect("key");
    let mut publish = h
        .engine
        .open_publish(Request::new(key, "test"))
        .await
        .expect("publish");
    publish
        .set_catalog(vec![
            TrackInfo::video(TrackId(1), Codec::H264, 640, 360)
                .with_timescale(1000)
                .with_config(Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe0, 0])),
        ])
        .expect("catalog");
    // I P B B …: the P frame is presented after the B frames decoded after it.
    let frames = [
        (0, 0, true),
        (100, 33, false),
        (33, 66, false),
        (66, 100, false),
    ];
    for (pts, dts, key) in frames {
        publish
            .publish(Frame::video(
                TrackId(1),
                Codec::H264,
                pts,
                dts,
                key,
                Bytes::from_static(&[0, 0, 0, 2, 0x65, 0]),
            ))
            .expect("frame");
    }
    let (r, body) = post_sdp(&h.router, "/whep/live/bframes", viewer_offer()).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.contains("B-frames") && body.contains("-bf 0"),
        "{body}"
    );
    assert_eq!(h.whip.sessions(), 0);
}

#[tokio::test]
async fn configured_ice_servers_are_announced_in_link_headers() {
    let config = WhipConfig {
        ice_servers: vec![
            tidewater_whip::IceServer {
                url: "stun:127.0.0.1:3478".into(),
                username: None,
                credential: None,
            },
            tidewater_whip::IceServer {
                url: "turn:127.0.0.1:3478".into(),
                username: Some("u".into()),
                credential: Some("p".into()),
            },
        ],
        ..loopback()
    };
    let h = start(engine(), config).await;
    let (r, answer) = post_sdp(&h.router, "/whip/live/ice", offer(false)).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{answer}");
    let links: Vec<_> = r
        .headers()
        .get_all(header::LINK)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    assert_eq!(
        links,
        vec![
            "<stun:127.0.0.1:3478>; rel=\"ice-server\"".to_owned(),
            "<turn:127.0.0.1:3478>; rel=\"ice-server\"; username=\"u\"; credential=\"p\"; credential-type=\"password\"".to_owned(),
        ]
    );
    // Without servers configured, none.
    let h = start(engine(), loopback()).await;
    let (r, _) = post_sdp(&h.router, "/whip/live/ice", offer(false)).await;
    assert!(r.headers().get(header::LINK).is_none());
}

/// Other video codecs: a publisher offering them next to H.264 gets H.264
/// only; one offering VP8 and VP9 (with Opus) gets VP8 only; a WHEP viewer
/// of a stream whose video is H.265 gets `422` naming it.
#[tokio::test]
async fn h264_is_preferred_then_vp8_and_whep_refuses_other_video_by_name() {
    let h = start(engine(), loopback()).await;
    let offer_of = |h264: bool| {
        let builder = Rtc::builder()
            .clear_codecs()
            .enable_vp8(true)
            .enable_vp9(true)
            .enable_opus(true, false);
        let builder = if h264 {
            builder.enable_h264(true)
        } else {
            builder
        };
        let mut rtc = builder.build(Instant::now());
        rtc.add_local_candidate(
            Candidate::host("127.0.0.1:9".parse().expect("addr"), "udp").expect("candidate"),
        );
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        api.apply().expect("offer").0.to_sdp_string()
    };
    let (r, body) = post_sdp(&h.router, "/whip/live/v", offer_of(false)).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{body}");
    assert!(
        body.contains("VP8/90000") && !body.contains("VP9/90000") && !body.contains("H264"),
        "{body}"
    );
    let (r, answer) = post_sdp(&h.router, "/whip/live/v2", offer_of(true)).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{answer}");
    assert!(
        answer.contains("H264/90000") && !answer.contains("VP8/90000"),
        "{answer}"
    );

    let mut publish = h
        .engine
        .open_publish(Request::new(
            StreamKey::parse("live/hevc").expect("key"),
            "test",
        ))
        .await
        .expect("publish");
    publish
        .set_catalog(vec![tidewater_core::TrackInfo::video(
            tidewater_core::TrackId(1),
            tidewater_core::Codec::H265,
            640,
            360,
        )])
        .expect("catalog");
    let (r, body) = post_sdp(&h.router, "/whep/live/hevc", viewer_offer()).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("h265"), "{body}");
}
