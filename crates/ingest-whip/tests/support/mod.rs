//! What the WHIP crate's tests share (`mod support;` in each test file):
//! a WHIP/WHEP server in process on a loopback media port, its router
//! served over HTTP for browsers, str0m clients negotiated with its
//! router, synthetic H.264 for a str0m publisher, the reading of a
//! Chromium page's playback reports, and (`sdp_edits`) the edited offers
//! of the signalling property tests.
//!
//! The str0m client itself is `tidewater_tests::str0m_peer` (the binary's
//! tests use it too); what is here needs this crate or `tidewater-media`,
//! which `tidewater-tests` does not depend on.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

pub mod sdp_edits;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request as HttpRequest, StatusCode};
use str0m::media::{Direction, Pt};
use tidewater_core::{AppSpec, CancellationToken, Engine, InboundProtocol};
use tidewater_media::rtp::h264::packetize_h264;
use tidewater_tests::page::ChromiumPage;
use tidewater_tests::str0m_peer::Str0mPeer;
use tidewater_whip::{Whip, WhipConfig};
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// An SPS (Constrained Baseline, 640 × 480) for synthetic keyframes.
pub const SPS: &[u8] = &[
    0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00,
    0x00, 0x03, 0x00, 0xf0, 0x3c, 0x58, 0xba, 0x80,
];
/// The PPS that goes with [`SPS`].
pub const PPS: &[u8] = &[0x68, 0xce, 0x0f, 0xc8];

/// An engine with the default application (every stream key allowed).
pub fn engine() -> Engine {
    Engine::builder()
        .default_app(AppSpec::default())
        .build()
        .expect("engine")
}

/// `config` with the media port on 127.0.0.1, any free port.
pub fn loopback(config: WhipConfig) -> WhipConfig {
    WhipConfig {
        udp_listen: "127.0.0.1:0".parse().expect("addr"),
        ..config
    }
}

/// A WHIP/WHEP server running in process for `engine`.
pub struct WhipUnderTest {
    /// The protocol (stats, sessions, QoS).
    pub whip: Whip,
    /// Its signalling router.
    pub router: axum::Router,
    /// The media port's addresses.
    pub media: Vec<SocketAddr>,
    /// Stops it.
    pub shutdown: CancellationToken,
    /// Its media worker (ends after `shutdown`).
    pub worker: JoinHandle<tidewater_core::Result<()>>,
}

/// Starts WHIP with `config` on `engine` and waits for its media port.
pub async fn start_whip(engine: &Engine, config: WhipConfig) -> WhipUnderTest {
    let whip = Whip::new(config).expect("config");
    let shutdown = CancellationToken::new();
    let worker = {
        let (whip, ctx, shutdown) = (whip.clone(), engine.context(), shutdown.clone());
        tokio::spawn(async move { whip.serve(ctx, shutdown).await })
    };
    let media = whip.listening().await;
    let router = whip.router(engine.context());
    WhipUnderTest {
        whip,
        router,
        media,
        shutdown,
        worker,
    }
}

/// WHIP for a browser page: the server in process with the default
/// configuration (media port on 127.0.0.1) and its router served over HTTP
/// on 127.0.0.1 (the page comes from another origin, so CORS is exercised).
pub struct WhipOverHttp {
    /// The protocol (stats, sessions).
    pub whip: Whip,
    /// The media port's addresses.
    pub media: Vec<SocketAddr>,
    /// The HTTP server's address.
    pub http: SocketAddr,
    shutdown: CancellationToken,
    worker: JoinHandle<tidewater_core::Result<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl WhipOverHttp {
    /// Starts WHIP on `engine` and serves its router.
    pub async fn start(engine: &Engine) -> WhipOverHttp {
        let WhipUnderTest {
            whip,
            router,
            media,
            shutdown,
            worker,
        } = start_whip(engine, loopback(WhipConfig::default())).await;
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind http");
        let http = listener.local_addr().expect("http addr");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        WhipOverHttp {
            whip,
            media,
            http,
            shutdown,
            worker,
            server,
        }
    }

    /// Stops it: the media worker must end without an error; the HTTP
    /// server is aborted.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.worker.await.expect("join").expect("worker");
        self.server.abort();
    }
}

/// `POST`s `offer` to `path` on the router: the answer, which must come
/// with 201 Created.
pub async fn post_offer(router: &axum::Router, path: &str, offer: String) -> String {
    let response = router
        .clone()
        .oneshot(
            HttpRequest::builder()
                .method(Method::POST)
                .uri(path)
                .header("content-type", "application/sdp")
                .body(Body::from(offer))
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::CREATED, "{path}");
    let answer = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("answer");
    String::from_utf8(answer.to_vec()).expect("utf-8")
}

/// A str0m client with one H.264 media line of `direction`, negotiated
/// over `path` and connected (within 10 s); the answer's SDP too.
pub async fn connected_client(
    router: &axum::Router,
    path: &str,
    direction: Direction,
) -> (Str0mPeer, String) {
    let (pending, offer) = Str0mPeer::offer(direction).await;
    let answer = post_offer(router, path, offer).await;
    let mut client = pending.accept(&answer);
    let connected = client
        .pump_until_connected(Duration::from_secs(10), Duration::from_millis(20))
        .await;
    assert!(connected, "{path}: ICE and DTLS with the server");
    (client, answer)
}

/// Synthetic H.264 from a str0m publisher: a keyframe is SPS, PPS and a
/// 2 500-byte IDR, any other frame one P slice of `p_slice_len` bytes;
/// packetized at 1 000 bytes, frame `n` at RTP time `n × 3000`.
pub struct SyntheticH264 {
    /// The payload type the answer kept for H.264.
    pub pt: Pt,
    /// The next packet's sequence number.
    pub seq: u64,
    /// The P slice's size.
    pub p_slice_len: usize,
}

impl SyntheticH264 {
    /// Sends frame `frame` (a keyframe when `key`) from `publisher`.
    pub fn send(&mut self, publisher: &mut Str0mPeer, frame: u32, key: bool) {
        let idr = vec![0x65; 2500];
        let p_slice = vec![0x41; self.p_slice_len];
        let nals: Vec<&[u8]> = if key {
            vec![SPS, PPS, &idr]
        } else {
            vec![&p_slice]
        };
        let mut payloads = Vec::new();
        packetize_h264(nals, 1000, &mut payloads);
        for p in payloads {
            publisher.write_rtp(self.pt, self.seq, frame * 3000, &p.data, p.marker);
            self.seq += 1;
        }
    }
}

/// Polls `page`'s latest `report {json}` line every 250 ms for up to
/// `timeout`, reading each with `read`, until `done` holds: the last
/// reading, `None` when no report came.
pub async fn poll_report<T>(
    page: &ChromiumPage,
    timeout: Duration,
    read: impl Fn(&serde_json::Value) -> T,
    done: impl Fn(&T) -> bool,
) -> Option<T> {
    let start = Instant::now();
    let mut best = None;
    while start.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let last = page
            .lines()
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("report ").map(str::to_owned));
        if let Some(report) = last {
            let v: serde_json::Value = serde_json::from_str(&report).expect("json");
            let reading = read(&v);
            let finished = done(&reading);
            best = Some(reading);
            if finished {
                break;
            }
        }
    }
    best
}
