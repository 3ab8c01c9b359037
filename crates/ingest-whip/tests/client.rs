//! A str0m client publishes synthetic H.264 over real UDP (loopback) and
//! loses a packet: the server must ask for a keyframe (PLI, seen by the
//! client), the kernel must get no frame between the loss and the next
//! keyframe, and garbage on the media port must disturb nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request as HttpRequest, StatusCode};
use bytes::Bytes;
use str0m::change::SdpAnswer;
use str0m::format::Codec as RtcCodec;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tidewater_core::{
    AppSpec, CancellationToken, Codec, Engine, Event as KernelEvent, InboundProtocol, Request,
    StreamKey,
};
use tidewater_media::rtp::h264::packetize_h264;
use tidewater_whip::{Whip, WhipConfig};
use tokio::net::UdpSocket;
use tower::ServiceExt;

const SPS: &[u8] = &[
    0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00,
    0x00, 0x03, 0x00, 0xf0, 0x3c, 0x58, 0xba, 0x80,
];
const PPS: &[u8] = &[0x68, 0xce, 0x0f, 0xc8];

/// The client: drains its Rtc, counting keyframe requests.
struct Client {
    rtc: Rtc,
    socket: Arc<UdpSocket>,
    connected: bool,
    keyframe_requests: u32,
    rtp_received: u32,
}

impl Client {
    fn drain(&mut self) -> Instant {
        loop {
            match self.rtc.poll_output().expect("client output") {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::KeyframeRequest(_)) => self.keyframe_requests += 1,
                Output::Event(Event::RtpPacket(_)) => self.rtp_received += 1,
                Output::Event(_) => {}
            }
        }
    }

    /// Runs the client's I/O until `until`.
    async fn pump(&mut self, until: Instant) {
        let local = self.socket.local_addr().expect("local");
        let mut buf = vec![0u8; 2048];
        loop {
            let timeout = self.drain().min(until);
            let now = Instant::now();
            if now >= until {
                return;
            }
            let wait = timeout
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
                Ok(Ok((n, source))) => {
                    if let Ok(r) = Receive::new(Protocol::Udp, source, local, &buf[..n]) {
                        self.rtc
                            .handle_input(Input::Receive(Instant::now(), r))
                            .expect("client input");
                    }
                }
                _ => self
                    .rtc
                    .handle_input(Input::Timeout(Instant::now()))
                    .expect("client timeout"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_packet_gets_a_pli_and_the_kernel_resumes_at_a_keyframe() {
    let engine = Engine::builder()
        .default_app(AppSpec::default())
        .build()
        .expect("engine");
    let whip = Whip::new(WhipConfig {
        udp_listen: "127.0.0.1:0".parse().expect("addr"),
        pli_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_secs(1),
        ..WhipConfig::default()
    })
    .expect("config");
    let shutdown = CancellationToken::new();
    {
        let (whip, ctx, shutdown) = (whip.clone(), engine.context(), shutdown.clone());
        tokio::spawn(async move { whip.serve(ctx, shutdown).await });
    }
    let media = whip.listening().await;
    let router = whip.router(engine.context());

    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("client socket"));
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_h264(true)
        .build(Instant::now());
    rtc.add_local_candidate(
        Candidate::host(socket.local_addr().expect("addr"), "udp").expect("candidate"),
    );
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    let response = router
        .clone()
        .oneshot(
            HttpRequest::builder()
                .method(Method::POST)
                .uri("/whip/live/client")
                .header("content-type", "application/sdp")
                .body(Body::from(offer.to_sdp_string()))
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::CREATED);
    let answer = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("answer");
    let answer =
        SdpAnswer::from_sdp_string(std::str::from_utf8(&answer).expect("utf-8")).expect("sdp");
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .expect("accept answer");
    let mut client = Client {
        rtc,
        socket,
        connected: false,
        keyframe_requests: 0,
        rtp_received: 0,
    };
    let start = Instant::now();
    while !client.connected && start.elapsed() < Duration::from_secs(10) {
        client
            .pump(Instant::now() + Duration::from_millis(50))
            .await;
    }
    assert!(client.connected, "ICE and DTLS with the server");

    let key = StreamKey::parse("live/client").expect("key");
    let mut subscription = engine
        .subscribe(Request::new(key, "test"))
        .await
        .expect("live");
    // Garbage on the media port from a stranger: dropped, counted.
    let stranger = UdpSocket::bind("127.0.0.1:0").await.expect("stranger");
    for i in 0..50u8 {
        let junk: Vec<u8> = match i % 3 {
            0 => vec![i; 40],
            1 => [
                &[0x00, 0x01, 0x00, 0x08][..],
                &[0x21, 0x12, 0xa4, 0x42],
                &[i; 20],
            ]
            .concat(),
            _ => [&[0x16, 0xfe, 0xfd][..], &[i; 30]].concat(),
        };
        stranger.send_to(&junk, media[0]).await.expect("send junk");
    }

    let pt = {
        let remote = client.rtc.media(mid).expect("media").remote_pts().to_vec();
        let config = client.rtc.codec_config();
        *remote
            .iter()
            .find(|pt| {
                config
                    .find(|p| p.pt() == **pt)
                    .is_some_and(|p| p.spec().codec == RtcCodec::H264)
            })
            .expect("an H.264 payload type in the answer")
    };
    let (mut seq, mut sent_idr_at) = (1000u64, Vec::new());
    let mut keyframe_due = true;
    let mut pli_seen_before = 0;
    const LOST_FRAME: u32 = 10;
    const REORDERED_FRAME: u32 = 20;
    for frame in 0..60u32 {
        if client.keyframe_requests > pli_seen_before {
            pli_seen_before = client.keyframe_requests;
            keyframe_due = true;
        }
        let idr = vec![0x65; 2500];
        // Three packets for the frame sent in reverse order, one otherwise.
        let p_slice = vec![0x41; if frame == REORDERED_FRAME { 2500 } else { 600 }];
        let nals: Vec<&[u8]> = if keyframe_due {
            sent_idr_at.push(frame);
            vec![SPS, PPS, &idr]
        } else {
            vec![&p_slice]
        };
        keyframe_due = false;
        let mut payloads = Vec::new();
        packetize_h264(nals, 1000, &mut payloads);
        let time = 90_000 + frame * 3000;
        let mut numbered: Vec<(u64, usize, _)> = payloads
            .into_iter()
            .enumerate()
            .map(|(i, p)| (seq + i as u64, i, p))
            .collect();
        seq += numbered.len() as u64;
        if frame == REORDERED_FRAME {
            assert!(numbered.len() >= 3);
            numbered.reverse();
        }
        for (this, i, p) in numbered {
            if frame == LOST_FRAME && i == 0 {
                continue; // lost on the way
            }
            let write = RtpWrite::new(
                pt,
                SeqNo::from(this),
                time,
                Instant::now(),
                Arc::<[u8]>::from(&p.data[..]),
            )
            .marker(p.marker);
            client
                .rtc
                .direct_api()
                .stream_tx_by_mid(mid, None)
                .expect("a send stream")
                .write_rtp(write);
            client.drain();
        }
        client
            .pump(Instant::now() + Duration::from_millis(33))
            .await;
    }
    client
        .pump(Instant::now() + Duration::from_millis(200))
        .await;
    let last_heard = Instant::now();

    let mut video: Vec<(i64, bool, Bytes)> = Vec::new();
    while let Some(Ok(event)) = subscription.try_recv() {
        if let KernelEvent::Frame(f) = event
            && f.codec == Codec::H264
        {
            video.push((f.pts, f.is_keyframe(), f.payload.clone()));
        }
    }
    let stats = whip.stats();
    let summary = format!(
        "IDRs sent at {sent_idr_at:?}, PLIs seen {}, kernel frames {:?}, unmatched {:?}",
        client.keyframe_requests,
        video.iter().map(|v| (v.0, v.1)).collect::<Vec<_>>(),
        stats.unmatched
    );
    assert!(client.keyframe_requests >= 1, "{summary}");
    assert!(
        sent_idr_at.len() >= 2 && sent_idr_at[1] > LOST_FRAME,
        "{summary}"
    );
    let resumed = sent_idr_at[1];
    let frame_of = |pts: i64| ((pts - video[0].0) / 3000) as u32;
    let frames: Vec<u32> = video.iter().map(|v| frame_of(v.0)).collect();
    // Every frame before the loss, none from the loss to the new IDR, every one after.
    let expected: Vec<u32> = (0..LOST_FRAME).chain(resumed..60).collect();
    assert_eq!(frames, expected, "{summary}");
    let first_after = video
        .iter()
        .find(|v| frame_of(v.0) == resumed)
        .expect("resumed");
    assert!(first_after.1, "resumes at a keyframe: {summary}");
    assert!(
        stats.unmatched.load(std::sync::atomic::Ordering::Relaxed) >= 50,
        "{summary}"
    );

    // The client vanishes without a DELETE: the session ends by itself.
    assert_eq!(whip.sessions(), 1);
    drop(client);
    let gone = Instant::now();
    while whip.sessions() != 0 && gone.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(whip.sessions(), 0, "ended without the client");
    // str0m's ICE agent notices the silence first (under a second here);
    // the idle timeout is the backstop.
    assert!(last_heard.elapsed() < Duration::from_secs(5));
    let key = StreamKey::parse("live/client").expect("key");
    assert!(engine.subscribe(Request::new(key, "test")).await.is_err());
    shutdown.cancel();
}

/// A str0m client with one H.264 media line of `direction`, negotiated
/// over `path` and connected.
async fn connected_client(
    router: &axum::Router,
    path: &str,
    direction: Direction,
) -> (Client, str0m::media::Mid) {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("client socket"));
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_h264(true)
        .build(Instant::now());
    rtc.add_local_candidate(
        Candidate::host(socket.local_addr().expect("addr"), "udp").expect("candidate"),
    );
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Video, direction, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    let response = router
        .clone()
        .oneshot(
            HttpRequest::builder()
                .method(Method::POST)
                .uri(path)
                .header("content-type", "application/sdp")
                .body(Body::from(offer.to_sdp_string()))
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::CREATED, "{path}");
    let answer = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("answer");
    let answer =
        SdpAnswer::from_sdp_string(std::str::from_utf8(&answer).expect("utf-8")).expect("sdp");
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .expect("accept answer");
    let mut client = Client {
        rtc,
        socket,
        connected: false,
        keyframe_requests: 0,
        rtp_received: 0,
    };
    let start = Instant::now();
    while !client.connected && start.elapsed() < Duration::from_secs(10) {
        client
            .pump(Instant::now() + Duration::from_millis(20))
            .await;
    }
    assert!(client.connected, "{path}: ICE and DTLS with the server");
    (client, mid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whep_viewer_gets_rtp_and_its_keyframe_request_reaches_the_whip_publisher() {
    let engine = Engine::builder()
        .default_app(AppSpec::default())
        .build()
        .expect("engine");
    let whip = Whip::new(WhipConfig {
        udp_listen: "127.0.0.1:0".parse().expect("addr"),
        pli_interval: Duration::from_millis(100),
        ..WhipConfig::default()
    })
    .expect("config");
    let shutdown = CancellationToken::new();
    {
        let (whip, ctx, shutdown) = (whip.clone(), engine.context(), shutdown.clone());
        tokio::spawn(async move { whip.serve(ctx, shutdown).await });
    }
    whip.listening().await;
    let router = whip.router(engine.context());
    let (mut publisher, pub_mid) =
        connected_client(&router, "/whip/live/relay", Direction::SendOnly).await;
    let pt = {
        let remote = publisher
            .rtc
            .media(pub_mid)
            .expect("media")
            .remote_pts()
            .to_vec();
        let config = publisher.rtc.codec_config();
        *remote
            .iter()
            .find(|pt| {
                config
                    .find(|p| p.pt() == **pt)
                    .is_some_and(|p| p.spec().codec == RtcCodec::H264)
            })
            .expect("H.264")
    };
    let mut seq = 1u64;
    let mut send = |client: &mut Client, frame: u32, key: bool| {
        let idr = vec![0x65; 2500];
        let p_slice = vec![0x41; 600];
        let nals: Vec<&[u8]> = if key {
            vec![SPS, PPS, &idr]
        } else {
            vec![&p_slice]
        };
        let mut payloads = Vec::new();
        packetize_h264(nals, 1000, &mut payloads);
        for p in payloads {
            let write = RtpWrite::new(
                pt,
                SeqNo::from(seq),
                frame * 3000,
                Instant::now(),
                Arc::<[u8]>::from(&p.data[..]),
            )
            .marker(p.marker);
            seq += 1;
            client
                .rtc
                .direct_api()
                .stream_tx_by_mid(pub_mid, None)
                .expect("a send stream")
                .write_rtp(write);
            client.drain();
        }
    };
    // The stream is live (and has a keyframe) before the viewer comes.
    for frame in 0..5 {
        send(&mut publisher, frame, frame == 0);
        publisher
            .pump(Instant::now() + Duration::from_millis(33))
            .await;
    }
    let (mut viewer, view_mid) =
        connected_client(&router, "/whep/live/relay", Direction::RecvOnly).await;
    let requests_before = publisher.keyframe_requests;
    for frame in 5..60 {
        send(&mut publisher, frame, false);
        publisher
            .pump(Instant::now() + Duration::from_millis(15))
            .await;
        viewer
            .pump(Instant::now() + Duration::from_millis(15))
            .await;
        if frame == 30 {
            let mut api = viewer.rtc.direct_api();
            let rx = api
                .stream_rx_by_mid(view_mid, None)
                .expect("the viewer's receive stream");
            rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
            viewer.drain();
        }
    }
    let summary = format!(
        "viewer got {} RTP packets; publisher saw {} keyframe requests ({} before the viewer)",
        viewer.rtp_received, publisher.keyframe_requests, requests_before
    );
    // The cached GOP (a 3-packet keyframe and 4 P frames) and 55 live P frames.
    assert!(viewer.rtp_received >= 50, "{summary}");
    assert!(publisher.keyframe_requests > requests_before, "{summary}");
    shutdown.cancel();
}
