//! WHEP figures on `/metrics`, through the `tidewater` binary: ffmpeg
//! publishes over RTMP and a str0m viewer plays over WHEP on its own
//! loopback socket, losing some of the video datagrams on purpose for a
//! while. While it plays, `tidewater_stream_bytes_out_total{protocol="whep"}`
//! rises and agrees with the bytes the viewer received, the stream's
//! `tidewater_webrtc_*` families show its one session, its NACKs and the
//! RTX packets that answered them (as many as the viewer got on its RTX
//! SSRC), and the viewer ends with every packet (repairs included).

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tidewater_tests::metrics::Scrape;
use tidewater_tests::{
    CLIP_VIDEO, ChildGuard, ServerCommand, X264_LIVE, ffmpeg_realtime, fixed_gop, wait_live,
};
use tokio::net::UdpSocket;

/// The SSRC and sequence number of an RTP datagram (SRTP leaves the
/// header in the clear); `None` for STUN, DTLS and RTCP.
fn rtp_header(datagram: &[u8]) -> Option<(u32, u16)> {
    let first = *datagram.first()?;
    let second = *datagram.get(1)?;
    // RFC 7983 / RFC 5761: RTP or RTCP, and RTCP's types 200..=207.
    if !(128..=191).contains(&first) || (200..=207).contains(&second) {
        return None;
    }
    let seq = u16::from_be_bytes([*datagram.get(2)?, *datagram.get(3)?]);
    let ssrc = u32::from_be_bytes(datagram.get(8..12)?.try_into().ok()?);
    Some((ssrc, seq))
}

/// A str0m WHEP viewer that may lose every `n`th video datagram.
struct Viewer {
    rtc: Rtc,
    socket: UdpSocket,
    connected: bool,
    /// Bytes of every datagram received (lost ones excluded).
    bytes: u64,
    /// Sequence numbers of the video packets str0m handed over.
    received: BTreeSet<u16>,
    drop_every: Option<usize>,
    main_ssrc: Option<u32>,
    seen_main: usize,
    dropped: BTreeSet<u16>,
    /// Datagrams on other SSRCs than the first (RTX).
    rtx_ssrcs: HashSet<u32>,
    rtx_datagrams: u64,
    keyframe_first: Option<bool>,
}

impl Viewer {
    fn drain(&mut self) -> Instant {
        loop {
            match self.rtc.poll_output().expect("viewer output") {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::RtpPacket(p)) => {
                    // The first packet starts a keyframe: SPS (7), IDR (5),
                    // or a STAP-A (24) / FU-A (28) of them.
                    self.keyframe_first.get_or_insert_with(|| {
                        let nal = p.payload.first().map_or(0, |b| b & 0x1f);
                        let fu = p.payload.get(1).map_or(0, |b| b & 0x1f);
                        matches!(nal, 5 | 7 | 24) || (nal == 28 && fu == 5)
                    });
                    self.received.insert(p.header.sequence_number);
                }
                Output::Event(_) => {}
            }
        }
    }

    /// Whether this datagram is lost on purpose.
    fn lose(&mut self, datagram: &[u8]) -> bool {
        let Some((ssrc, seq)) = rtp_header(datagram) else {
            return false;
        };
        let main = *self.main_ssrc.get_or_insert(ssrc);
        if ssrc != main {
            self.rtx_ssrcs.insert(ssrc);
            self.rtx_datagrams += 1;
            return false;
        }
        let Some(n) = self.drop_every else {
            return false;
        };
        self.seen_main += 1;
        if self.seen_main.is_multiple_of(n) && self.dropped.insert(seq) {
            return true;
        }
        false
    }

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
                    self.bytes += n as u64;
                    if let Ok(r) = Receive::new(Protocol::Udp, source, local, datagram) {
                        self.rtc
                            .handle_input(Input::Receive(Instant::now(), r))
                            .expect("viewer input");
                    }
                }
                _ => self
                    .rtc
                    .handle_input(Input::Timeout(Instant::now()))
                    .expect("viewer timeout"),
            }
        }
    }
}

/// `POST`s `body` as `application/sdp` to `path`: the status and body.
fn post_sdp(http: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(http).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_bytes_nacks_and_rtx_show_on_metrics_while_a_viewer_plays() {
    let mut server = ServerCommand::with_config("[http]\nlisten = \"127.0.0.1:0\"\n").spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    // 320x240 at 25 fps, a keyframe a second, no B-frames, video only.
    let _publisher = ChildGuard(
        ffmpeg_realtime()
            .args(CLIP_VIDEO)
            .args(X264_LIVE)
            .args(fixed_gop(25))
            .args(["-bf", "0", "-b:v", "1M", "-an"])
            .args(["-t", "60", "-f", "flv", &format!("rtmp://{rtmp}/live/m")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg"),
    );
    tokio::task::spawn_blocking(move || wait_live(http, "live/m", Duration::from_secs(30)))
        .await
        .expect("wait");

    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("viewer socket");
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_h264(true)
        .build(Instant::now());
    rtc.add_local_candidate(
        Candidate::host(socket.local_addr().expect("addr"), "udp").expect("candidate"),
    );
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    let offer = offer.to_sdp_string();
    let (status, answer) =
        tokio::task::spawn_blocking(move || post_sdp(http, "/whep/live/m", &offer))
            .await
            .expect("post");
    assert_eq!(status, 201, "{answer}");
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).expect("sdp"))
        .expect("accept");
    let mut viewer = Viewer {
        rtc,
        socket,
        connected: false,
        bytes: 0,
        received: BTreeSet::new(),
        drop_every: None,
        main_ssrc: None,
        seen_main: 0,
        dropped: BTreeSet::new(),
        rtx_ssrcs: HashSet::new(),
        rtx_datagrams: 0,
        keyframe_first: None,
    };
    let scrape = |http| async move {
        tokio::task::spawn_blocking(move || Scrape::get(http))
            .await
            .expect("scrape")
    };
    let path = [("path", "live/m")];
    let whep = [("path", "live/m"), ("protocol", "whep")];

    // Playing: bytes out rise with what the viewer receives.
    viewer.pump(Instant::now() + Duration::from_secs(3)).await;
    assert!(viewer.connected, "ICE and DTLS with the server");
    let before = viewer.bytes;
    let first = scrape(http).await;
    let after = viewer.bytes;
    let out1 = first.sum("tidewater_stream_bytes_out_total", &whep);
    eprintln!("viewer {before}..{after} bytes; bytes_out {out1}");
    assert!(before > 100_000, "the viewer received {before} bytes");
    // The feeder reports after each frame: at most a frame behind.
    assert!(
        out1 >= before as f64 * 0.8 && out1 <= after as f64 * 1.1 + 100_000.0,
        "bytes_out {out1} against the viewer's {before}..{after}"
    );
    assert_eq!(
        first.sum(
            "tidewater_webrtc_sessions",
            &[("path", "live/m"), ("role", "whep")]
        ),
        1.0
    );

    // Losing every 7th video datagram for 3 s, then 3 s for the repairs
    // and for the next statistics report (every second).
    viewer.drop_every = Some(7);
    viewer.pump(Instant::now() + Duration::from_secs(3)).await;
    viewer.drop_every = None;
    viewer.pump(Instant::now() + Duration::from_secs(3)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let second = loop {
        let s = scrape(http).await;
        if s.sum("tidewater_webrtc_rtx_packets_total", &path) > 0.0
            && s.sum("tidewater_webrtc_nacks_total", &path) > 0.0
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no NACKs or RTX on /metrics after {} losses",
            viewer.dropped.len()
        );
        viewer
            .pump(Instant::now() + Duration::from_millis(500))
            .await;
    };
    let out2 = second.sum("tidewater_stream_bytes_out_total", &whep);
    let nacks = second.sum("tidewater_webrtc_nacks_total", &path);
    let rtx = second.sum("tidewater_webrtc_rtx_packets_total", &path);
    let summary = format!(
        "dropped {}; viewer got {} RTX datagrams on {:?}; /metrics: nacks {nacks}, rtx {rtx}, \
         bytes_out {out1} -> {out2}; viewer bytes {}",
        viewer.dropped.len(),
        viewer.rtx_datagrams,
        viewer.rtx_ssrcs,
        viewer.bytes
    );
    eprintln!("{summary}");
    assert!(out2 > out1 + 100_000.0, "{summary}");
    assert!(viewer.dropped.len() >= 10, "{summary}");
    // A NACK may ask for several packets; each loss was asked for.
    assert!(
        nacks >= 1.0 && nacks <= viewer.dropped.len() as f64 * 3.0,
        "{summary}"
    );
    // The server counts RTX as it sends them, the viewer as they arrive
    // (loopback loses nothing): the figure published before the scrape
    // cannot exceed what arrived since, and covers at least the losses.
    assert_eq!(viewer.rtx_ssrcs.len(), 1, "{summary}");
    assert!(
        rtx >= viewer.dropped.len() as f64 * 0.9 && rtx <= viewer.rtx_datagrams as f64,
        "{summary}"
    );
    // What the viewer got: it started on a keyframe and every lost packet
    // came back.
    assert_eq!(viewer.keyframe_first, Some(true), "{summary}");
    let missing: Vec<&u16> = viewer
        .dropped
        .iter()
        .filter(|s| !viewer.received.contains(s))
        .collect();
    assert!(missing.is_empty(), "still missing {missing:?}; {summary}");
    drop(server);
}
