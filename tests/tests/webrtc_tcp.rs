//! ICE-TCP (RFC 6544) through the `tidewater` binary: with `[webrtc]
//! transports = ["tcp"]` the answers carry only passive TCP candidates, and
//! headless Chromium publishes its fake camera over WHIP and plays it back
//! over WHEP through them (the selected candidate pair is TCP in both peer
//! connections' `getStats`, the viewer decodes frames, ffmpeg decodes the
//! publish over RTMP). With both transports (the default) Chromium picks
//! UDP, and garbage, a bogus frame length and an empty frame on the TCP
//! port each get their connection closed and a log line naming the peer,
//! while the UDP publish goes on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tidewater_tests::decoded::{assert_decoded_video, ffmpeg_decode_within};
use tidewater_tests::metrics::Scrape;
use tidewater_tests::page::ChromiumPage;
use tidewater_tests::{ServerCommand, ServerProcess, wait_live};

/// Publishes the fake camera to `live/STREAM` (H.264, after gathering: no
/// trickle), then plays `live/STREAM` over WHEP in a second peer
/// connection; reports each one's selected candidate pair and the
/// viewer's decoded frames every 500 ms.
const PAGE: &str = r#"<script>
const SERVER = '__SERVER__', STREAM = '__STREAM__';
const selected = (stats) => {
  let pair = null;
  stats.forEach(s => { if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId); });
  if (!pair) stats.forEach(s => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
  if (!pair) return null;
  const l = stats.get(pair.localCandidateId), r = stats.get(pair.remoteCandidateId);
  return {local: l && l.protocol, remote: r && r.protocol, tcpType: r && r.tcpType, port: r && r.port, received: pair.bytesReceived, sent: pair.bytesSent};
};
const offerOf = async (pc) => { await pc.setLocalDescription(await pc.createOffer()); await gathered(pc); return pc.localDescription.sdp; };
const post = async (what, pc) => {
  const r = await fetch(SERVER + '/' + what + '/live/' + STREAM, {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: await offerOf(pc)});
  const answer = await r.text();
  const lines = answer.split('\r\n').filter(l => l.startsWith('a=candidate:'));
  log(what + '-answer ' + JSON.stringify({status: r.status, tcp: lines.filter(l => / tcp .* tcptype passive/i.test(l)).length, udp: lines.filter(l => / udp /i.test(l)).length}));
  if (r.status !== 201) { log('refused ' + answer); return false; }
  await pc.setRemoteDescription({type: 'answer', sdp: answer});
  return true;
};
(async () => {
  try {
    const media = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}, audio: true});
    const pub = new RTCPeerConnection({iceServers: []});
    for (const track of media.getTracks()) pub.addTransceiver(track, {direction: 'sendonly'});
    const video = pub.getTransceivers().find(t => t.sender.track && t.sender.track.kind === 'video');
    video.setCodecPreferences(RTCRtpSender.getCapabilities('video').codecs.filter(c => c.mimeType === 'video/H264' || c.mimeType === 'video/rtx'));
    pub.onconnectionstatechange = () => log('pub-state ' + pub.connectionState);
    if (!await post('whip', pub)) return;
    setInterval(async () => log('pub ' + JSON.stringify({pair: selected(await pub.getStats())})), 500);
    if (__PLAY__) {
      // The viewer joins once the publish is live (its first keyframe in).
      await new Promise(done => setTimeout(done, 3000));
      const viewer = new RTCPeerConnection({iceServers: []});
      viewer.addTransceiver('video', {direction: 'recvonly'});
      viewer.addTransceiver('audio', {direction: 'recvonly'});
      const player = document.createElement('video');
      player.muted = true; player.autoplay = true; player.playsInline = true;
      document.body.appendChild(player);
      const received = new MediaStream();
      viewer.ontrack = (e) => { received.addTrack(e.track); player.srcObject = received; };
      viewer.onconnectionstatechange = () => log('view-state ' + viewer.connectionState);
      if (!await post('whep', viewer)) return;
      setInterval(async () => {
        const stats = await viewer.getStats();
        let decoded = 0;
        stats.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video') decoded = s.framesDecoded || 0; });
        const q = player.getVideoPlaybackQuality();
        log('view ' + JSON.stringify({pair: selected(stats), decoded, shown: q.totalVideoFrames, w: player.videoWidth, h: player.videoHeight}));
      }, 500);
    }
  } catch (e) {
    log('error ' + e);
  }
})();
</script>"#;

fn open_page(http: SocketAddr, stream: &str, play: bool) -> ChromiumPage {
    ChromiumPage::open(
        &PAGE
            .replace("__SERVER__", &format!("http://{http}"))
            .replace("__STREAM__", stream)
            .replace("__PLAY__", if play { "true" } else { "false" }),
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The media port's address for `proto` (`UDP` or `TCP`) from the line
/// the server logs when it listens.
fn media_addr(server: &mut ServerProcess, proto: &str) -> Option<SocketAddr> {
    let line = server
        .wait_for_line("WebRTC media on ", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no media line:\n{}", server.output()));
    let list = line.split("WebRTC media on ").nth(1)?;
    list.split(", ").find_map(|entry| {
        let (p, addr) = entry.trim().split_once(' ')?;
        (p == proto).then(|| addr.parse().ok()).flatten()
    })
}

/// Reports of `prefix` whose selected pair is set, waiting up to `timeout`
/// for one that `done` accepts; the last one seen.
fn wait_report(
    page: &ChromiumPage,
    prefix: &str,
    timeout: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let last = page.wait_until(prefix, timeout, |l| done(&json(l)));
    last.map(|l| json(&l)).unwrap_or(serde_json::Value::Null)
}

#[test]
fn chromium_publishes_and_plays_through_ice_tcp_when_only_tcp_is_offered() {
    let mut server = ServerCommand::with_config(
        "[http]\nlisten = \"127.0.0.1:0\"\n[webrtc]\ntransports = [\"tcp\"]\n",
    )
    .spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let tcp = media_addr(&mut server, "TCP").expect("a TCP media address");
    assert_eq!(media_addr(&mut server, "UDP"), None, "UDP is not offered");
    let page = open_page(http, "tcpcam", true);
    let answer = page
        .wait_for("whip-answer ", Duration::from_secs(40))
        .unwrap_or_else(|| panic!("no answer: {:?}\n{}", page.lines(), server.output()));
    let answer = json(&answer);
    assert_eq!(answer["status"], 201, "{answer}");
    assert!(answer["tcp"].as_u64() >= Some(1), "{answer}");
    assert_eq!(answer["udp"], 0, "{answer}");
    wait_live(http, "live/tcpcam", Duration::from_secs(40));

    // The publisher's selected pair: its TCP connection to the passive
    // candidate on the media port.
    let publisher = wait_report(&page, "pub ", Duration::from_secs(30), |r| {
        r["pair"]["remote"] == "tcp"
    });
    assert_eq!(publisher["pair"]["local"], "tcp", "{publisher}");
    assert_eq!(publisher["pair"]["remote"], "tcp", "{publisher}");
    assert_eq!(publisher["pair"]["port"], tcp.port(), "{publisher}");

    // ffmpeg decodes what came over TCP (RTMP out).
    let (crc, ended) = ffmpeg_decode_within(
        &[],
        &format!("rtmp://{rtmp}/live/tcpcam"),
        &["-t", "4"],
        Duration::from_secs(40),
    );
    let summary = format!("rtmp of the ICE-TCP publish: {:?}", crc.codecs);
    assert!(ended, "{summary}\n{}", server.output());
    assert_decoded_video(&crc, &summary, 40, 640, 480);

    // The viewer plays it through ICE-TCP as well: frames decoded and shown.
    let viewer = wait_report(&page, "view ", Duration::from_secs(40), |r| {
        r["shown"].as_u64() >= Some(60) && r["pair"]["remote"] == "tcp"
    });
    assert_eq!(
        page.wait_for("whep-answer ", Duration::ZERO)
            .map(|a| json(&a)["udp"].clone()),
        Some(serde_json::json!(0)),
        "{:?}",
        page.lines()
    );
    eprintln!("publisher: {publisher}\nviewer: {viewer}");
    assert!(
        viewer["shown"].as_u64() >= Some(60) && viewer["decoded"].as_u64() >= Some(60),
        "the WHEP viewer over ICE-TCP: {viewer}\npage: {:?}\n{}",
        page.lines(),
        server.output()
    );
    assert_eq!(
        (&viewer["w"], &viewer["h"]),
        (&serde_json::json!(640), &serde_json::json!(480))
    );
    assert_eq!(viewer["pair"]["local"], "tcp", "{viewer}");
    assert_eq!(viewer["pair"]["remote"], "tcp", "{viewer}");
    assert!(
        viewer["pair"]["received"].as_u64() > Some(100_000),
        "{viewer}"
    );
    assert!(
        server.output().contains("webrtc: connected"),
        "{}",
        server.output()
    );
}

/// Reads `stream` until the server closes it (EOF or reset); whether that
/// happened within `timeout`.
fn closed_by_server(stream: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn udp_is_preferred_and_junk_on_the_tcp_port_closes_only_its_connection() {
    let mut server = ServerCommand::with_config("[http]\nlisten = \"127.0.0.1:0\"\n").spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let tcp = media_addr(&mut server, "TCP").expect("ICE-TCP is on by default");
    let udp = media_addr(&mut server, "UDP").expect("UDP is on by default");
    assert_eq!(tcp.port(), udp.port(), "one port number");
    let page = open_page(http, "udpcam", false);
    let answer = json(
        &page
            .wait_for("whip-answer ", Duration::from_secs(40))
            .unwrap_or_else(|| panic!("no answer: {:?}\n{}", page.lines(), server.output())),
    );
    assert_eq!(answer["status"], 201, "{answer}");
    assert!(
        answer["tcp"].as_u64() >= Some(1) && answer["udp"].as_u64() >= Some(1),
        "{answer}"
    );
    wait_live(http, "live/udpcam", Duration::from_secs(40));
    let publisher = wait_report(&page, "pub ", Duration::from_secs(30), |r| {
        !r["pair"].is_null()
    });
    assert_eq!(
        publisher["pair"]["remote"], "udp",
        "UDP wins by priority: {publisher}"
    );
    let before = Scrape::get(http).sum(
        "tidewater_listener_refusals_total",
        &[("listener", "webrtc"), ("reason", "malformed")],
    );

    // Garbage: an HTTP request (its first two bytes read as a length of
    // 18 245), then enough bytes to complete that frame.
    let mut garbage = TcpStream::connect(tcp).expect("connect");
    let mut junk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    junk.resize(20_000, b'x');
    garbage.write_all(&junk).expect("write garbage");
    // A bogus length: 65 535 announced, 10 bytes sent, then the end.
    let mut bogus = TcpStream::connect(tcp).expect("connect");
    bogus
        .write_all(&[0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        .expect("write");
    bogus.shutdown(std::net::Shutdown::Write).expect("shutdown");
    // An empty frame.
    let mut empty = TcpStream::connect(tcp).expect("connect");
    empty.write_all(&[0, 0]).expect("write");
    for (name, conn) in [
        ("garbage", &mut garbage),
        ("bogus length", &mut bogus),
        ("empty frame", &mut empty),
    ] {
        let peer = conn.local_addr().expect("local");
        assert!(
            closed_by_server(conn, Duration::from_secs(20)),
            "{name}: the server kept the connection\n{}",
            server.output()
        );
        let line = server.wait_for_line(
            &format!("closed the ICE-TCP connection of {peer}"),
            Duration::from_secs(10),
        );
        assert!(
            line.is_some(),
            "{name}: no log line naming {peer}\n{}",
            server.output()
        );
    }
    let after = Scrape::get(http).sum(
        "tidewater_listener_refusals_total",
        &[("listener", "webrtc"), ("reason", "malformed")],
    );
    assert!(after >= before + 3.0, "malformed: {before} then {after}");

    // The UDP publish went on: still connected, and decoded after the junk.
    let (crc, ended) = ffmpeg_decode_within(
        &[],
        &format!("rtmp://{rtmp}/live/udpcam"),
        &["-t", "4"],
        Duration::from_secs(40),
    );
    let summary = format!("rtmp of the UDP publish after the junk: {:?}", crc.codecs);
    assert!(ended, "{summary}\n{}", server.output());
    assert_decoded_video(&crc, &summary, 40, 640, 480);
    assert!(
        !page.lines().iter().any(|l| l.starts_with("pub-state ")
            && (l.ends_with("failed") || l.ends_with("disconnected"))),
        "{:?}",
        page.lines()
    );
    let output = server.output();
    assert!(
        !output.contains("whip: session ended"),
        "the UDP session ended:\n{output}"
    );
}

/// A port already taken on TCP fails the start naming the key.
#[test]
fn a_taken_tcp_port_fails_the_start_naming_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let mut server = ServerCommand::with_config("[http]\nlisten = \"127.0.0.1:0\"\n")
        .env("TIDEWATER_WEBRTC__UDP_LISTEN", &addr.to_string())
        .spawn();
    let (status, output) = server.expect_exit(Duration::from_secs(20));
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("[webrtc] transports") && output.contains(&addr.to_string()),
        "{output}"
    );
}
