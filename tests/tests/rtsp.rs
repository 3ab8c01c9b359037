//! RTSP through the `tidewater` binary with ffmpeg on both sides: RTSP in
//! (TCP and UDP) read back over RTMP, HLS and RTSP; RTMP in read over RTSP.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tidewater_tests::{
    CLIP_VIDEO, ChildGuard, FrameCrc, ServerCommand, TempDir, X264_LIVE, clip_audio,
    ffmpeg_framecrc, ffmpeg_framecrc_command, ffmpeg_framecrc_input, ffmpeg_publish,
    ffmpeg_realtime, fixed_gop, loopback_config, run_until, wait_live,
};

/// ffmpeg publishing 320x240 H.264 (no B-frames: RTP carries presentation
/// times only) and 48 kHz AAC over RTSP with `transport` (`tcp` or `udp`).
fn rtsp_publish(url: &str, transport: &str, seconds: u32, gop: u32) -> ChildGuard {
    rtsp_publish_bf(url, transport, seconds, gop, 0)
}

/// [`rtsp_publish`] with `bframes` B-frames between reference pictures
/// (x264's b-pyramid on: a reorder depth of 2 from 2 B-frames on).
fn rtsp_publish_bf(url: &str, transport: &str, seconds: u32, gop: u32, bframes: u32) -> ChildGuard {
    let child = ffmpeg_realtime()
        .args(CLIP_VIDEO)
        .args(clip_audio(48_000))
        .args(X264_LIVE)
        .args(fixed_gop(gop))
        .args(["-bf", &bframes.to_string(), "-c:a", "aac", "-b:a", "64k"])
        .args(["-t", &seconds.to_string()])
        .args(["-f", "rtsp", "-rtsp_transport", transport, url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg: {e}"));
    ChildGuard(child)
}

/// ffmpeg reading `url` over RTSP with `transport` for `seconds` of media,
/// decoded to framecrc.
fn rtsp_read(url: &str, transport: &str, seconds: u32) -> FrameCrc {
    ffmpeg_framecrc_input(
        &["-rtsp_transport", transport],
        url,
        &["-t", &seconds.to_string()],
        Duration::from_secs(30),
    )
}

fn assert_decoded(what: &str, crc: &FrameCrc, min_video: usize) {
    assert!(
        crc.codecs.iter().any(|c| c == "rawvideo") && crc.codecs.len() >= 2,
        "{what}: decoded video and audio expected, got {:?}",
        crc.codecs
    );
    let video = crc
        .codecs
        .iter()
        .position(|c| c == "rawvideo")
        .expect("a video stream") as u32;
    let frames = crc.stream(video).len();
    assert!(
        frames >= min_video,
        "{what}: {frames} video frames decoded, expected {min_video}+"
    );
    assert!(
        crc.monotonic(),
        "{what}: timestamps go back: {:?}",
        (0..crc.codecs.len() as u32)
            .flat_map(|i| {
                let lines = crc.stream(i);
                lines
                    .windows(2)
                    .filter(|w| w[1].dts <= w[0].dts)
                    .map(|w| (i, w[0].dts, w[1].dts))
                    .collect::<Vec<_>>()
            })
            .take(5)
            .collect::<Vec<_>>()
    );
}

/// The video packets of `crc` (read with `-c copy`) are B-frame video as
/// published at 25 fps: decode times rise, no picture decodes after it
/// shows, presentation order differs from decode order, and sorted
/// presentation times are one frame apart (none lost, none doubled).
fn assert_reordered_video(what: &str, crc: &FrameCrc, min_frames: usize) {
    let video =
        crc.codecs
            .iter()
            .position(|c| c == "h264")
            .unwrap_or_else(|| panic!("{what}: no h264 stream in {:?}", crc.codecs)) as u32;
    let lines = crc.stream(video);
    assert!(
        lines.len() >= min_frames,
        "{what}: {} video packets, expected {min_frames}+",
        lines.len()
    );
    assert!(
        lines.windows(2).all(|w| w[1].dts > w[0].dts),
        "{what}: decode times do not rise: {:?}",
        lines.iter().map(|l| l.dts).collect::<Vec<_>>()
    );
    assert!(
        lines.iter().all(|l| l.pts >= l.dts),
        "{what}: a picture decodes after it shows"
    );
    assert!(
        lines.windows(2).any(|w| w[1].pts < w[0].pts),
        "{what}: no reordered picture: the publish had B-frames"
    );
    // Pictures that show after the last one read decodes may be cut off
    // by `-t`: only the span before it must be complete.
    let end = lines.last().map_or(0, |l| l.dts);
    let mut pts: Vec<i64> = lines.iter().map(|l| l.pts).filter(|p| *p <= end).collect();
    pts.sort_unstable();
    let steps: Vec<i64> = pts.windows(2).map(|w| w[1] - w[0]).collect();
    let mut sorted = steps.clone();
    sorted.sort_unstable();
    let step = sorted[sorted.len() / 2];
    assert!(step > 0, "{what}: pictures share presentation times");
    assert!(
        steps.iter().all(|s| (s - step).abs() <= 1),
        "{what}: presentation times not one frame ({step}) apart: {steps:?}"
    );
}

#[test]
fn b_frames_published_over_rtsp_are_read_in_order_over_rtmp_and_hls() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp, rtsp) = (server.http_addr(), server.rtmp_addr(), server.rtsp_addr());
    let key = "live/bframes";
    let _publisher = rtsp_publish_bf(&format!("rtsp://{rtsp}/{key}"), "tcp", 40, 25, 3);
    wait_live(http, key, Duration::from_secs(15));
    for (what, url) in [
        ("rtmp", format!("rtmp://{rtmp}/{key}")),
        ("hls", format!("http://{http}/hls/{key}/index.m3u8")),
    ] {
        let crc = ffmpeg_framecrc(&url, &["-t", "4", "-c", "copy"], Duration::from_secs(40));
        assert_reordered_video(
            &format!("{what} reader of a B-frame rtsp publish"),
            &crc,
            75,
        );
        let crc = ffmpeg_framecrc(&url, &["-t", "3"], Duration::from_secs(40));
        assert_decoded(&format!("{what} reader (decoded)"), &crc, 70);
    }
}

#[test]
fn rtmp_in_is_read_over_rtsp_tcp_and_udp() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp, rtsp) = (server.http_addr(), server.rtmp_addr(), server.rtsp_addr());
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/cross"), 30, 25);
    wait_live(http, "live/cross", Duration::from_secs(15));
    for transport in ["tcp", "udp"] {
        let crc = rtsp_read(&format!("rtsp://{rtsp}/live/cross"), transport, 3);
        assert_decoded(
            &format!("rtsp/{transport} reader of an RTMP publish"),
            &crc,
            50,
        );
    }
}

#[test]
fn rtsp_in_over_tcp_and_udp_is_read_over_rtmp_hls_and_rtsp() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp, rtsp) = (server.http_addr(), server.rtmp_addr(), server.rtsp_addr());
    for transport in ["tcp", "udp"] {
        let key = format!("live/in-{transport}");
        let _publisher = rtsp_publish(&format!("rtsp://{rtsp}/{key}"), transport, 30, 25);
        let live = wait_live(http, &key, Duration::from_secs(15));
        let text = live.to_string();
        assert!(text.contains("h264") || text.contains("H264"), "{text}");

        let crc = ffmpeg_framecrc(
            &format!("rtmp://{rtmp}/{key}"),
            &["-t", "3"],
            Duration::from_secs(30),
        );
        assert_decoded(
            &format!("rtmp reader of an rtsp/{transport} publish"),
            &crc,
            50,
        );

        let crc = rtsp_read(&format!("rtsp://{rtsp}/{key}"), "tcp", 3);
        assert_decoded(
            &format!("rtsp reader of an rtsp/{transport} publish"),
            &crc,
            50,
        );

        let crc = ffmpeg_framecrc(
            &format!("http://{http}/hls/{key}/index.m3u8"),
            &["-t", "3"],
            Duration::from_secs(40),
        );
        assert_decoded(
            &format!("hls reader of an rtsp/{transport} publish"),
            &crc,
            50,
        );
    }
}

#[test]
fn an_rtsp_publish_needs_credentials_when_auth_says_so() {
    let config = format!(
        "{}[[auth.users]]\nuser = \"cam\"\npassword = \"cam-secret\"\n\
         permissions = [{{ action = \"publish\" }}]\n\
         [[auth.users]]\nuser = \"any\"\n\
         permissions = [{{ action = \"read\" }}, {{ action = \"api\" }}]\n",
        loopback_config()
    );
    let mut server = ServerCommand::with_config(&config).spawn();
    let (http, rtsp) = (server.http_addr(), server.rtsp_addr());
    let mut refused = rtsp_publish(&format!("rtsp://{rtsp}/live/locked"), "tcp", 5, 25);
    let status = refused.wait_for(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| !s.success()),
        "ffmpeg without credentials must fail: {status:?}"
    );
    let streams = tidewater_tests::http_get(&format!("http://{http}/api/v1/streams"));
    assert_eq!(streams.status, 200, "{}", streams.body);
    assert!(!streams.body.contains("live/locked"), "{}", streams.body);

    let _publisher = rtsp_publish(
        &format!("rtsp://cam:cam-secret@{rtsp}/live/locked"),
        "tcp",
        30,
        25,
    );
    wait_live(http, "live/locked", Duration::from_secs(15));
    let crc = rtsp_read(&format!("rtsp://{rtsp}/live/locked"), "tcp", 2);
    assert_decoded("anonymous rtsp reader", &crc, 25);
}

/// ffmpeg decoding `url` over RTSP with `transport`, every frame as it
/// comes, on a thread, until it exits by itself or `deadline`; the framecrc
/// and when it exited (`None`: killed at the deadline).
fn spawn_rtsp_reader(
    url: String,
    transport: &'static str,
    deadline: Instant,
) -> std::thread::JoinHandle<(FrameCrc, Option<Instant>)> {
    std::thread::spawn(move || {
        let mut child = ChildGuard(
            ffmpeg_framecrc_command(
                &["-rtsp_transport", transport],
                &url,
                // Every frame as it comes, in a fine time base: ffmpeg's
                // RTSP timing moves the second frame by a few ms once sender
                // reports arrive, which a 1/25 time base could round onto
                // the first.
                &["-fps_mode", "passthrough", "-enc_time_base:v", "1:90000"],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ffmpeg: {e}")),
        );
        let mut stdout = child.0.stdout.take().expect("piped");
        let text = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
            text
        });
        let mut exited = None;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.0.try_wait() {
                exited = Some(Instant::now());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(child);
        (FrameCrc::parse(&text.join().unwrap_or_default()), exited)
    })
}

#[test]
fn rtsp_readers_play_on_when_the_publisher_comes_back_a_second_later() {
    const GRACE: Duration = Duration::from_secs(3);
    let config = format!(
        "{}[defaults]\nfollow_grace_ms = {}\n",
        loopback_config(),
        GRACE.as_millis()
    );
    let mut server = ServerCommand::with_config(&config).spawn();
    let (http, rtsp) = (server.http_addr(), server.rtsp_addr());
    let url = format!("rtsp://{rtsp}/live/blip");
    let mut first = rtsp_publish(&url, "tcp", 6, 25);
    wait_live(http, "live/blip", Duration::from_secs(15));
    let deadline = Instant::now() + Duration::from_secs(40);
    let readers: Vec<_> = ["tcp", "udp"]
        .into_iter()
        .map(|t| (t, spawn_rtsp_reader(url.clone(), t, deadline)))
        .collect();
    assert!(first.wait_for(Duration::from_secs(15)).is_some());
    std::thread::sleep(Duration::from_secs(1));
    let mut second = rtsp_publish(&url, "tcp", 5, 25);
    wait_live(http, "live/blip", Duration::from_secs(15));
    assert!(second.wait_for(Duration::from_secs(15)).is_some());
    let last_ended = Instant::now();
    for (transport, reader) in readers {
        let what = format!("rtsp/{transport} reader across a republish");
        let (crc, exited) = reader.join().expect("reader");
        // Joined during the first publish's 6 s (25 fps): frames of the
        // second must have been decoded too, in rising time.
        assert_decoded(&what, &crc, 6 * 25 + 2 * 25);
        let exited = exited.unwrap_or_else(|| panic!("{what}: still reading at the deadline"));
        let after = exited.saturating_duration_since(last_ended);
        assert!(
            exited + Duration::from_millis(500) > last_ended + GRACE
                && after <= GRACE + Duration::from_secs(5),
            "{what}: ended {after:?} after the last publish (grace {GRACE:?})"
        );
    }
}

/// A self-signed certificate for 127.0.0.1 and its key, in `dir`.
fn certificate(dir: &TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    (
        dir.write("cert.pem", &cert.pem()),
        dir.write("key.pem", &key.serialize_pem()),
    )
}

#[test]
fn ffmpeg_publishes_and_reads_over_rtsps() {
    let dir = TempDir::new("rtsps");
    let (cert, key) = certificate(&dir);
    let mut server = ServerCommand::with_config(&format!(
        "{}[rtsps]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
        loopback_config(),
        cert.display(),
        key.display()
    ))
    .spawn();
    let (http, rtsp) = (server.http_addr(), server.rtsp_addr());
    let line = server
        .wait_for_line("rtsps listening on ", Duration::from_secs(10))
        .expect("an RTSPS listener");
    let rtsps: std::net::SocketAddr = line
        .rsplit("rtsps listening on ")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    assert_ne!(rtsp, rtsps);
    // ffmpeg does not verify the certificate by default; RTSPS is
    // interleaved on the TLS connection.
    let _publisher = rtsp_publish(&format!("rtsps://{rtsps}/live/sec"), "tcp", 30, 25);
    wait_live(http, "live/sec", Duration::from_secs(15));
    let crc = rtsp_read(&format!("rtsps://{rtsps}/live/sec"), "tcp", 3);
    assert_decoded("rtsps reader of an rtsps publish", &crc, 50);
    let crc = rtsp_read(&format!("rtsp://{rtsp}/live/sec"), "tcp", 2);
    assert_decoded("rtsp reader of an rtsps publish", &crc, 25);
    // Plain RTSP on the TLS port is not answered as RTSP.
    let run = run_until(
        ffmpeg_framecrc_command(
            &["-rtsp_transport", "tcp"],
            &format!("rtsp://{rtsps}/live/sec"),
            &["-t", "1"],
        ),
        Duration::from_secs(30),
    );
    let status = run.status.expect("ffmpeg gives up on its own");
    assert!(
        !status.success() && !run.stderr.is_empty(),
        "plain RTSP on the RTSPS port must fail: {status:?} {}",
        run.stderr
    );
    assert!(
        FrameCrc::parse(&run.stdout).lines.is_empty(),
        "plain RTSP read from the RTSPS port"
    );
}

/// What a hand-driven RTSP connection reads: a response's text, or an
/// interleaved packet (channel, bytes).
enum Read {
    Response(String),
    Packet(u8, Vec<u8>),
}

/// A raw RTSP/TCP connection, to check the exchange itself (RTP-Info,
/// PAUSE) where players hide it.
struct RawRtsp {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
    cseq: u32,
}

impl RawRtsp {
    fn connect(addr: std::net::SocketAddr) -> RawRtsp {
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        RawRtsp {
            stream,
            buf: Vec::new(),
            cseq: 0,
        }
    }

    fn send(&mut self, method: &str, url: &str, headers: &str) {
        use std::io::Write;
        self.cseq += 1;
        let request = format!(
            "{method} {url} RTSP/1.0\r\nCSeq: {}\r\n{headers}\r\n",
            self.cseq
        );
        self.stream.write_all(request.as_bytes()).expect("write");
    }

    /// The next message, or `None` when nothing came for 200 ms.
    fn next(&mut self) -> Option<Read> {
        loop {
            if self.buf.first() == Some(&b'$') && self.buf.len() >= 4 {
                let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                if self.buf.len() >= 4 + len {
                    let channel = self.buf[1];
                    let packet = self.buf[4..4 + len].to_vec();
                    self.buf.drain(..4 + len);
                    return Some(Read::Packet(channel, packet));
                }
            } else if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end + 4]).to_string();
                let body = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + body {
                    let text = String::from_utf8_lossy(&self.buf[..end + 4 + body]).to_string();
                    self.buf.drain(..end + 4 + body);
                    return Some(Read::Response(text));
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            match std::io::Read::read(&mut self.stream, &mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }

    /// The response to the last request; the packets read before it.
    fn response(&mut self) -> (String, Vec<(u8, Vec<u8>)>) {
        let mut packets = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.next() {
                Some(Read::Response(text)) => return (text, packets),
                Some(Read::Packet(c, p)) => packets.push((c, p)),
                None => {}
            }
        }
        panic!("no response to request {}", self.cseq)
    }

    /// Packets read for `d`.
    fn packets_for(&mut self, d: Duration) -> Vec<(u8, Vec<u8>)> {
        let deadline = Instant::now() + d;
        let mut packets = Vec::new();
        while Instant::now() < deadline {
            if let Some(Read::Packet(c, p)) = self.next() {
                packets.push((c, p));
            }
        }
        packets
    }
}

/// (sequence number, RTP timestamp) of an RTP packet.
fn seq_ts(packet: &[u8]) -> (u16, u32) {
    (
        u16::from_be_bytes([packet[2], packet[3]]),
        u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
    )
}

/// `seq` and `rtptime` of the `RTP-Info` entry for `track`.
fn rtp_info(response: &str, track: &str) -> (u16, u32) {
    let line = response
        .lines()
        .find_map(|l| l.strip_prefix("RTP-Info: "))
        .unwrap_or_else(|| panic!("no RTP-Info in {response}"));
    let entry = line
        .split(',')
        .find(|e| e.contains(track))
        .unwrap_or_else(|| panic!("no {track} in {line}"));
    let field = |name: &str| {
        entry
            .split(';')
            .find_map(|f| f.strip_prefix(name))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {entry}"))
    };
    (field("seq=") as u16, field("rtptime=") as u32)
}

#[test]
fn play_names_its_first_packets_in_rtp_info_and_pause_stops_until_play_resumes() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp, rtsp) = (server.http_addr(), server.rtmp_addr(), server.rtsp_addr());
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/pause"), 30, 25);
    wait_live(http, "live/pause", Duration::from_secs(15));
    let url = format!("rtsp://{rtsp}/live/pause");
    let mut c = RawRtsp::connect(rtsp);
    c.send("DESCRIBE", &url, "Accept: application/sdp\r\n");
    let (sdp, _) = c.response();
    assert!(
        sdp.starts_with("RTSP/1.0 200") && sdp.contains("H264"),
        "{sdp}"
    );
    c.send(
        "SETUP",
        &format!("{url}/trackID=0"),
        "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n",
    );
    let (setup, _) = c.response();
    let session = setup
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .and_then(|s| s.split(';').next())
        .unwrap_or_else(|| panic!("no session in {setup}"))
        .to_string();
    let with_session = format!("Session: {session}\r\n");
    c.send("PLAY", &url, &with_session);
    let (play, _) = c.response();
    assert!(play.starts_with("RTSP/1.0 200"), "{play}");
    assert!(play.contains("Range: npt=0.000-"), "{play}");
    let (seq, rtptime) = rtp_info(&play, "trackID=0");
    let first = c.packets_for(Duration::from_secs(1));
    let video: Vec<&Vec<u8>> = first
        .iter()
        .filter(|(ch, _)| *ch == 0)
        .map(|(_, p)| p)
        .collect();
    assert!(video.len() > 10, "{} video packets in 1 s", video.len());
    assert_eq!(
        seq_ts(video[0]),
        (seq, rtptime),
        "RTP-Info names the first packet"
    );

    c.send("PAUSE", &url, &with_session);
    let (pause, before) = c.response();
    assert!(pause.starts_with("RTSP/1.0 200"), "{pause}");
    let last_seq = first
        .iter()
        .chain(&before)
        .filter(|(ch, _)| *ch == 0)
        .map(|(_, p)| seq_ts(p).0)
        .next_back()
        .expect("video before the pause");
    let paused = c.packets_for(Duration::from_millis(1500));
    assert!(paused.is_empty(), "{} packets while paused", paused.len());

    c.send("PLAY", &url, &with_session);
    let (resume, _) = c.response();
    let (seq, _) = rtp_info(&resume, "trackID=0");
    assert_eq!(seq, last_seq.wrapping_add(1), "the sequence carries on");
    let resumed = c.packets_for(Duration::from_secs(2));
    let video: Vec<&Vec<u8>> = resumed
        .iter()
        .filter(|(ch, _)| *ch == 0)
        .map(|(_, p)| p)
        .collect();
    assert!(
        video.len() > 10,
        "{} video packets after resuming",
        video.len()
    );
    assert_eq!(seq_ts(video[0]).0, seq);
    // Resumed at a keyframe: its parameter sets (alone, or in a STAP-A) first.
    let nal = video[0][12] & 0x1f;
    assert!(
        nal == 7 || nal == 24,
        "first NAL unit type after resuming: {nal}"
    );
}
