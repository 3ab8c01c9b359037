//! Retransmission towards a WHEP viewer over real UDP (loopback): a str0m
//! client publishes synthetic H.264 over WHIP, a str0m viewer plays it
//! over WHEP and drops some of the video datagrams the server sends it;
//! its NACKs must bring each lost packet back, as RTX (RFC 4588: its own
//! SSRC and payload type, the original sequence number in the payload),
//! and the viewer must end up with every packet.
//!
//! The server answers NACKs with str0m's own machinery: each viewer's send
//! stream keeps the packets it wrote (`RtpWrite::nackable`) and resends
//! them on the RTX SSRC and payload type the answer negotiated.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request as HttpRequest, StatusCode};
use str0m::change::SdpAnswer;
use str0m::format::Codec as RtcCodec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tidewater_core::{AppSpec, CancellationToken, Engine, InboundProtocol};
use tidewater_media::rtp::h264::packetize_h264;
use tidewater_whip::{Whip, WhipConfig};
use tokio::net::UdpSocket;
use tower::ServiceExt;

const SPS: &[u8] = &[
    0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00,
    0x00, 0x03, 0x00, 0xf0, 0x3c, 0x58, 0xba, 0x80,
];
const PPS: &[u8] = &[0x68, 0xce, 0x0f, 0xc8];

/// The SSRC and sequence number of an RTP datagram (SRTP leaves the
/// header in the clear); `None` for STUN, DTLS and RTCP.
fn rtp_header(datagram: &[u8]) -> Option<(u32, u16)> {
    let first = *datagram.first()?;
    let second = *datagram.get(1)?;
    // RFC 7983: 128..=191 is RTP or RTCP; RTCP's packet types 200..=207
    // (RFC 5761) sit where RTP has the marker bit and payload type 72..=79.
    if !(128..=191).contains(&first) || (200..=207).contains(&second) {
        return None;
    }
    let seq = u16::from_be_bytes([*datagram.get(2)?, *datagram.get(3)?]);
    let ssrc = u32::from_be_bytes(datagram.get(8..12)?.try_into().ok()?);
    Some((ssrc, seq))
}

/// A str0m peer over a loopback socket; a viewer may drop datagrams.
struct Client {
    rtc: Rtc,
    socket: Arc<UdpSocket>,
    connected: bool,
    /// Sequence numbers of the H.264 packets received (repaired ones too).
    received: BTreeSet<u16>,
    /// While set, every `n`th video datagram of the first SSRC is dropped
    /// (its first arrival only).
    drop_every: Option<usize>,
    main_ssrc: Option<u32>,
    seen_main: usize,
    dropped: BTreeSet<u16>,
    /// Datagrams on an SSRC other than the first one (RTX).
    other_ssrc: HashSet<u32>,
    other_datagrams: usize,
}

impl Client {
    fn new(rtc: Rtc, socket: Arc<UdpSocket>) -> Client {
        Client {
            rtc,
            socket,
            connected: false,
            received: BTreeSet::new(),
            drop_every: None,
            main_ssrc: None,
            seen_main: 0,
            dropped: BTreeSet::new(),
            other_ssrc: HashSet::new(),
            other_datagrams: 0,
        }
    }

    fn drain(&mut self) -> Instant {
        loop {
            match self.rtc.poll_output().expect("client output") {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::RtpPacket(p)) => {
                    self.received.insert(p.header.sequence_number);
                }
                Output::Event(_) => {}
            }
        }
    }

    /// Whether the viewer loses this datagram on purpose.
    fn lose(&mut self, datagram: &[u8]) -> bool {
        let Some((ssrc, seq)) = rtp_header(datagram) else {
            return false;
        };
        let main = *self.main_ssrc.get_or_insert(ssrc);
        if ssrc != main {
            self.other_ssrc.insert(ssrc);
            self.other_datagrams += 1;
            return false;
        }
        let Some(n) = self.drop_every else {
            return false;
        };
        self.seen_main += 1;
        if self.seen_main.is_multiple_of(n)
            && !self.dropped.contains(&seq)
            && !self.received.contains(&seq)
        {
            self.dropped.insert(seq);
            return true;
        }
        false
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
                    let datagram = &buf[..n];
                    if self.lose(datagram) {
                        continue;
                    }
                    if let Ok(r) = Receive::new(Protocol::Udp, source, local, datagram) {
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

/// A str0m client with one H.264 media line of `direction`, negotiated
/// over `path` and connected; the answer's SDP too.
async fn connected_client(
    router: &axum::Router,
    path: &str,
    direction: Direction,
) -> (Client, Mid, String) {
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
    let text = String::from_utf8(answer.to_vec()).expect("utf-8");
    let answer = SdpAnswer::from_sdp_string(&text).expect("sdp");
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .expect("accept answer");
    let mut client = Client::new(rtc, socket);
    let start = Instant::now();
    while !client.connected && start.elapsed() < Duration::from_secs(10) {
        client
            .pump(Instant::now() + Duration::from_millis(20))
            .await;
    }
    assert!(client.connected, "{path}: ICE and DTLS with the server");
    (client, mid, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_a_viewer_loses_are_resent_as_rtx_after_its_nacks() {
    let engine = Engine::builder()
        .default_app(AppSpec::default())
        .build()
        .expect("engine");
    let whip = Whip::new(WhipConfig {
        udp_listen: "127.0.0.1:0".parse().expect("addr"),
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
    let (mut publisher, pub_mid, _) =
        connected_client(&router, "/whip/live/rtx", Direction::SendOnly).await;
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
        let p_slice = vec![0x41; 1500];
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
    for frame in 0..3 {
        send(&mut publisher, frame, frame == 0);
        publisher
            .pump(Instant::now() + Duration::from_millis(33))
            .await;
    }
    let (mut viewer, _, answer) =
        connected_client(&router, "/whep/live/rtx", Direction::RecvOnly).await;
    // The answer names an RTX payload type for H.264 and an SSRC group
    // pairing the media SSRC with its RTX SSRC.
    assert!(answer.contains("rtx/90000"), "{answer}");
    assert!(answer.contains("a=ssrc-group:FID"), "{answer}");
    // Live frames, the viewer losing every 7th video datagram for a while,
    // then time for the repairs to arrive.
    for step in 0..90 {
        viewer.drop_every = (10..60).contains(&step).then_some(7);
        send(&mut publisher, 3 + step, false);
        publisher
            .pump(Instant::now() + Duration::from_millis(10))
            .await;
        viewer
            .pump(Instant::now() + Duration::from_millis(10))
            .await;
    }
    let missing: Vec<u16> = viewer
        .dropped
        .iter()
        .filter(|s| !viewer.received.contains(s))
        .copied()
        .collect();
    let summary = format!(
        "dropped {:?}; still missing {missing:?}; {} datagrams on other SSRCs {:?}; {} packets received",
        viewer.dropped,
        viewer.other_datagrams,
        viewer.other_ssrc,
        viewer.received.len()
    );
    eprintln!("{summary}");
    assert!(viewer.dropped.len() >= 10, "{summary}");
    assert!(missing.is_empty(), "{summary}");
    // The repairs came as RTX, on one SSRC of their own, one per loss at
    // least (a lost repair is asked for again).
    assert_eq!(viewer.other_ssrc.len(), 1, "{summary}");
    assert!(viewer.other_datagrams >= viewer.dropped.len(), "{summary}");
    // And every packet between the first and the last arrived.
    let first = *viewer.received.first().expect("packets");
    let last = *viewer.received.last().expect("packets");
    assert_eq!(
        viewer.received.len(),
        usize::from(last - first) + 1,
        "{summary}"
    );
    // The viewer's feedback, as the server read it: its NACKs counted, and
    // TWCC feedback on what was sent (str0m's viewer sends it, as browsers
    // do) giving a round trip. The figures come every second.
    let deadline = Instant::now() + Duration::from_secs(10);
    let qos = loop {
        let qos = whip.qos();
        let viewer_qos = qos.iter().find(|q| q.role == "whep").cloned();
        if let Some(v) = viewer_qos.filter(|v| v.nacks > 0 && v.twcc_rtt_ms.is_some()) {
            break (v, qos);
        }
        assert!(Instant::now() < deadline, "no feedback figures: {qos:#?}");
        publisher
            .pump(Instant::now() + Duration::from_millis(50))
            .await;
        viewer
            .pump(Instant::now() + Duration::from_millis(50))
            .await;
    };
    eprintln!("{:#?}", qos.1);
    let (v, all) = qos;
    assert_eq!(v.stream, "live/rtx", "{v:?}");
    assert!(v.reports >= 1, "{v:?}");
    // Every lost packet was asked for (NACKs may carry several).
    assert!(
        v.nacks >= 1 && v.nacks <= viewer.dropped.len() as u64 * 3,
        "{v:?}"
    );
    assert!(v.twcc_loss.is_some(), "{v:?}");
    assert!(v.bytes_sent > 0, "{v:?}");
    // Joinable with the kernel's sessions (what /api/v1/sessions lists).
    let kernel: Vec<u64> = engine.sessions().iter().map(|s| s.id).collect();
    assert!(
        v.kernel_session.is_some_and(|id| kernel.contains(&id)),
        "{v:?} in {kernel:?}"
    );
    assert!(
        all.iter()
            .any(|q| q.role == "whip" && q.stream == "live/rtx"),
        "{all:#?}"
    );
    shutdown.cancel();
}
