//! WebRTC through the `tidewater` binary: headless Chromium publishes its
//! fake camera and microphone over WHIP (offer first, candidates trickled
//! in `PATCH`es) and ffmpeg decodes the stream over RTMP, LL-HLS, HTTP-TS
//! and SRT (the Opus transcoded to AAC for RTMP and TS), also joining
//! 6 s late (the server asks the browser for keyframes); ffmpeg
//! publishes x264 High + AAC over RTMP and Chromium plays it over WHEP
//! (the AAC transcoded to Opus once for the stream), across a republish. The pages come from another origin than the
//! server's, so every signalling request goes through CORS.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tidewater_tests::decoded::{assert_decoded_video, ffmpeg_decode_within, sorted_catalog_codecs};
use tidewater_tests::page::ChromiumPage;
use tidewater_tests::page_scripts::open_webrtc_page;
use tidewater_tests::srt::ffmpeg_srt_url;
use tidewater_tests::{
    ChildGuard, FrameCrc, ServerCommand, catalog_codecs, curl_command,
    ffmpeg_publish_bframes_command, ffmpeg_realtime, wait_live,
};

/// A STUN and a TURN server announced to clients (never contacted here).
const CONFIG: &str = "[http]\nlisten = \"127.0.0.1:0\"\n\
    [[webrtc.ice_servers]]\nurl = \"stun:127.0.0.1:3478\"\n\
    [[webrtc.ice_servers]]\nurl = \"turn:127.0.0.1:3478\"\nusername = \"viewer\"\ncredential = \"secret\"\n";

const LINKS: &str = "<stun:127.0.0.1:3478>; rel=\"ice-server\", <turn:127.0.0.1:3478>; rel=\"ice-server\"; username=\"viewer\"; credential=\"secret\"; credential-type=\"password\"";

const PUBLISH_PAGE: &str = r#"<script>
const SERVER = '__SERVER__';
(async () => {
  try {
    const {pc} = await cameraPublisher('video/H264');
    const candidates = [];
    pc.onicecandidate = (e) => e.candidate && e.candidate.candidate && candidates.push(e.candidate.candidate);
    pc.onconnectionstatechange = () => log('state ' + pc.connectionState);
    // Trickle ICE: the offer goes before any candidate, they follow in a PATCH.
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const r = await fetch(SERVER + '/whip/live/webcam', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: offer.sdp});
    const location = r.headers.get('Location'), etag = r.headers.get('ETag');
    log('answer ' + JSON.stringify({status: r.status, location, etag, link: r.headers.get('Link'), candidates: (offer.sdp.match(/a=candidate/g) || []).length}));
    const answer = await r.text();
    if (r.status !== 201) return log('refused ' + answer);
    await pc.setRemoteDescription({type: 'answer', sdp: answer});
    await gathered(pc);
    const ufrag = offer.sdp.match(/a=ice-ufrag:(\S+)/)[1], pwd = offer.sdp.match(/a=ice-pwd:(\S+)/)[1];
    const fragment = 'a=ice-ufrag:' + ufrag + '\r\na=ice-pwd:' + pwd + '\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n'
      + candidates.map(c => 'a=' + c + '\r\n').join('') + 'a=end-of-candidates\r\n';
    const patch = (tag) => fetch(SERVER + location, {method: 'PATCH', headers: {'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': tag}, body: fragment});
    log('patch ' + JSON.stringify({status: (await patch(etag)).status, candidates: candidates.length}));
    log('stale ' + (await patch('"not-this-session"')).status);
    log('restart ' + (await patch('*')).status);
  } catch (e) {
    log('error ' + e);
  }
})();
</script>"#;

const PLAY_PAGE: &str = r#"<script>
const SERVER = '__SERVER__';
const offerOf = async (pc) => { await pc.setLocalDescription(await pc.createOffer()); await gathered(pc); return pc.localDescription.sdp; };
(async () => {
  try {
    // A stream with B-frames is refused with a reason.
    const probe = new RTCPeerConnection({iceServers: []});
    probe.addTransceiver('video', {direction: 'recvonly'});
    const b = await fetch(SERVER + '/whep/live/bframes', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: await offerOf(probe)});
    log('bframes ' + b.status + ' ' + await b.text());
    probe.close();

    // Not muted: WebRTC measures a track's level after the element's
    // volume (the browser runs with --mute-audio, so nothing is heard).
    const {viewer, player} = whepViewer(true, false);
    viewer.onconnectionstatechange = () => log('state ' + viewer.connectionState);
    const w = await fetch(SERVER + '/whep/live/cam1', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: await offerOf(viewer)});
    log('answer ' + JSON.stringify({status: w.status, location: w.headers.get('Location'), etag: w.headers.get('ETag'), link: w.headers.get('Link')}));
    const answer = await w.text();
    if (w.status !== 201) return log('refused ' + answer);
    await viewer.setRemoteDescription({type: 'answer', sdp: answer});
    setInterval(async () => {
      let decoded = 0, audio = 0, samples = 0, level = 0, energy = 0, concealed = 0, acodec = '', codec = '';
      const stats = await viewer.getStats();
      stats.forEach(s => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          decoded = s.framesDecoded || 0;
          const c = s.codecId && stats.get(s.codecId);
          codec = c ? c.mimeType + ' ' + (c.sdpFmtpLine || '') : '';
        }
        if (s.type === 'inbound-rtp' && s.kind === 'audio') {
          audio = s.packetsReceived || 0;
          samples = s.totalSamplesReceived || 0;
          level = Math.max(level, s.audioLevel || 0);
          energy = s.totalAudioEnergy || 0;
          concealed = s.concealedSamples || 0;
          const c = s.codecId && stats.get(s.codecId);
          acodec = c ? c.mimeType : '';
        }
      });
      const q = player.getVideoPlaybackQuality();
      log('report ' + JSON.stringify({decoded, audio, samples, level, energy, concealed, acodec, codec, shown: q.totalVideoFrames, w: player.videoWidth, h: player.videoHeight}));
    }, 250);
  } catch (e) {
    log('error ' + e);
  }
})();
</script>"#;

/// A page (`log` and `gathered` from `ChromiumPage`, `cameraPublisher` and
/// `whepViewer` from `page_scripts`) that talks to the server at `http`.
fn page(body: &str, http: SocketAddr) -> ChromiumPage {
    open_webrtc_page(&body.replace("__SERVER__", &format!("http://{http}")))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// `curl -i` of `url` with `method` and `headers`: status and header lines
/// (lowercase names).
fn curl(method: &str, url: &str, headers: &[&str]) -> (u16, Vec<(String, String)>) {
    let mut cmd = curl_command();
    cmd.args(["-s", "-i", "-X", method]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {text}"));
    let headers = text
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// What ffmpeg prints reading `url` for a few seconds (for failure messages).
fn ffmpeg_says(url: &str) -> String {
    let mut child = ChildGuard(
        std::process::Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-i",
                url,
                "-an",
                "-t",
                "3",
                "-f",
                "null",
                "-",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ffmpeg"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut text);
        text
    });
    child.wait_for(Duration::from_secs(15));
    drop(child);
    reader.join().unwrap_or_default()
}

/// Packets (not decoded: `-c copy`, on the container's clock) of a live
/// URL, 4 s of them.
fn packets_of(url: &str) -> tidewater_tests::ToolRun {
    tidewater_tests::ffmpeg_framecrc_run(url, &["-c", "copy", "-t", "4"], Duration::from_secs(30))
}

/// The audio of a WHIP publish read over RTMP or TS is AAC (transcoded
/// from Opus) with timestamps rising by whole AAC frames (1 024 samples at
/// 48 kHz: 21.3 ms), starting with the video and keeping pace with it.
/// `tick` is the container's ticks per millisecond.
fn check_aac_aligned(crc: &FrameCrc, tick: i64, summary: &str) {
    let at = |name: &str| {
        crc.codecs
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("{summary}: no {name} in {:?}", crc.codecs)) as u32
    };
    let (video, audio) = (crc.stream(at("h264")), crc.stream(at("aac")));
    assert!(audio.len() >= 100, "{summary}: {} AAC packets", audio.len());
    let steps: Vec<i64> = audio.windows(2).map(|w| w[1].dts - w[0].dts).collect();
    assert!(
        steps.iter().all(|d| (20 * tick..=23 * tick).contains(d)),
        "{summary}: AAC packets 1 024 samples apart: {steps:?}"
    );
    let (v0, a0) = (video[0].dts, audio[0].dts);
    assert!(
        (a0 - v0).abs() <= 300 * tick,
        "{summary}: audio starts at {a0}, video at {v0} ({tick} ticks a ms)"
    );
    let (v1, a1) = (video[video.len() - 1].dts, audio[audio.len() - 1].dts);
    assert!(
        ((a1 - a0) - (v1 - v0)).abs() <= 300 * tick,
        "{summary}: audio spans {a0}..{a1}, video {v0}..{v1} ({tick} ticks a ms)"
    );
}

fn wait_gone(http: SocketAddr, key: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(r) = tidewater_tests::try_http_get(&format!("http://{http}/api/v1/streams/{key}"))
            && r.status == 404
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn chromium_publishes_over_whip_and_ffmpeg_decodes_it_over_rtmp_and_ll_hls() {
    let mut server = ServerCommand::with_config(CONFIG).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    // A browser page on another origin may POST an offer with a token.
    let (status, h) = curl(
        "OPTIONS",
        &format!("http://{http}/whip/live/webcam"),
        &[
            "Origin: http://127.0.0.1:9",
            "Access-Control-Request-Method: POST",
            "Access-Control-Request-Headers: authorization, content-type",
        ],
    );
    assert_eq!(status, 204, "{h:?}");
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    let allowed = header(&h, "access-control-allow-headers").unwrap_or_default();
    assert!(
        allowed.contains("Authorization") && allowed.contains("Content-Type"),
        "{h:?}"
    );
    assert_eq!(header(&h, "accept-post"), Some("application/sdp"));

    let browser = page(PUBLISH_PAGE, http);
    let answer = browser
        .wait_for("answer ", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no answer: page {:?}\n{}", browser.lines(), server.output()));
    let answer = json(&answer);
    assert_eq!(answer["status"], 201, "{answer}");
    let location = answer["location"].as_str().expect("Location").to_owned();
    assert!(location.starts_with("/whip/live/webcam/"), "{answer}");
    let id = location.rsplit('/').next().expect("id");
    assert_eq!(answer["etag"], format!("\"{id}\""), "{answer}");
    assert_eq!(answer["link"], LINKS, "{answer}");
    assert_eq!(answer["candidates"], 0, "trickled: the offer had none");

    let live = wait_live(http, "live/webcam", Duration::from_secs(30));
    assert_eq!(live["protocol"], "whip", "{live}");
    let codecs = sorted_catalog_codecs(&live);
    assert_eq!(codecs, ["H264", "Opus"], "{live}");
    let patch = json(
        &browser
            .wait_for("patch ", Duration::from_secs(10))
            .expect("the trickle PATCH"),
    );
    assert_eq!(patch["status"], 204, "{patch}");
    assert!(patch["candidates"].as_u64() >= Some(1), "{patch}");
    assert_eq!(
        browser
            .wait_for("stale ", Duration::from_secs(5))
            .as_deref(),
        Some("412"),
        "a PATCH whose If-Match is not the ETag"
    );
    assert_eq!(
        browser
            .wait_for("restart ", Duration::from_secs(5))
            .as_deref(),
        Some("422"),
        "an ICE restart is refused"
    );

    // Two readers at once, 5 s of decoded frames each: the picture, and
    // the sound (over RTMP the Opus transcoded to AAC once for the stream;
    // LL-HLS carries the Opus).
    let rtmp_url = format!("rtmp://{rtmp}/live/webcam");
    let hls_url = format!("http://{http}/llhls/live/webcam/index.m3u8");
    let ts_url = format!("http://{http}/ts/live/webcam.ts");
    let srt_url = ffmpeg_srt_url(server.srt_addr(), "read:live/webcam");
    // Next to them, the packets (`-c copy`, on the container's clock: FLV
    // ms, TS 90 kHz) of the AAC that RTMP, HTTP-FLV and HTTP-TS carry, 4 s
    // of them.
    let copies: Vec<_> = [
        ("rtmp", rtmp_url.clone(), 1),
        ("http-flv", format!("http://{http}/flv/live/webcam.flv"), 1),
        ("http-ts", ts_url.clone(), 90),
    ]
    .into_iter()
    .map(|(name, url, ticks_per_ms)| {
        std::thread::spawn(move || (name, ticks_per_ms, packets_of(&url)))
    })
    .collect();
    let readers: Vec<_> = [
        ("rtmp", rtmp_url, &[][..], &["-t", "5"][..]),
        ("ll-hls", hls_url, &[][..], &["-t", "5"][..]),
        ("http-ts", ts_url, &[][..], &["-t", "5"][..]),
        ("srt", srt_url, &[][..], &["-t", "5"][..]),
    ]
    .into_iter()
    .map(|(name, url, input, output)| {
        std::thread::spawn(move || {
            let crc = ffmpeg_decode_within(input, &url, output, Duration::from_secs(40));
            (name, url, crc)
        })
    })
    .collect();
    for reader in readers {
        let (name, url, (crc, ended)) = reader.join().expect("reader");
        let summary = format!("{name}: codecs {:?}, {} lines", crc.codecs, crc.lines.len());
        assert!(
            ended,
            "{summary}: ffmpeg did not finish 5 s in time; it says:\n{}",
            ffmpeg_says(&url)
        );
        // Chromium's fake camera runs at up to 30 fps; a busy machine gives
        // fewer. 640x480 YUV 4:2:0.
        assert_decoded_video(&crc, &summary, 50, 640, 480);
        let audio = crc
            .codecs
            .iter()
            .position(|c| c.starts_with("pcm_"))
            .unwrap_or_else(|| panic!("{summary}: no decoded audio")) as u32;
        // 5 s of 48 kHz audio: about 234 AAC frames (RTMP, TS) or 250 Opus
        // frames (LL-HLS) as decoded; a busy machine may start late.
        let sound = crc.stream(audio);
        assert!(
            sound.len() >= 150,
            "{summary}: {} audio frames",
            sound.len()
        );
    }
    for copy in copies {
        let (name, ticks_per_ms, run) = copy.join().expect("copy reader");
        assert!(
            run.status.is_some_and(|s| s.success()),
            "{name} -c copy did not end cleanly: {} packet lines, {}\n{}",
            run.stdout.lines().count(),
            run.stderr,
            server.output()
        );
        check_aac_aligned(&FrameCrc::parse(&run.stdout), ticks_per_ms, name);
    }
    // Six readers needed AAC at once (RTMP and HTTP-TS twice, HTTP-FLV,
    // SRT): one conversion served them all.
    let started = server
        .output()
        .matches("transcode: audio to aac started")
        .count();
    assert_eq!(started, 1, "{}", server.output());

    // DELETE on the Location ends the publish (a page elsewhere may send it).
    let (status, h) = curl(
        "OPTIONS",
        &format!("http://{http}{location}"),
        &[
            "Origin: http://127.0.0.1:9",
            "Access-Control-Request-Method: DELETE",
        ],
    );
    assert_eq!(status, 204);
    assert!(
        header(&h, "access-control-allow-methods").is_some_and(|m| m.contains("DELETE")),
        "{h:?}"
    );
    assert_eq!(
        header(&h, "accept-patch"),
        Some("application/trickle-ice-sdpfrag")
    );
    let (status, _) = curl("DELETE", &format!("http://{http}{location}"), &[]);
    assert_eq!(status, 200);
    assert!(wait_gone(http, "live/webcam"), "the publish ended");
    let (status, _) = curl("DELETE", &format!("http://{http}{location}"), &[]);
    assert_eq!(status, 404);
}

/// Chromium encodes one keyframe per publish unless asked: the server asks
/// for one every `[webrtc] keyframe_interval_ms` (2 s by default), so
/// readers that join late (RTMP, LL-HLS) decode, and LL-HLS cuts segments.
#[test]
fn chromium_whip_publish_gets_periodic_keyframes_for_late_readers() {
    let mut server = ServerCommand::with_config(CONFIG).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let browser = page(PUBLISH_PAGE, http);
    let answer = browser
        .wait_for("answer ", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no answer: page {:?}\n{}", browser.lines(), server.output()));
    assert_eq!(json(&answer)["status"], 201, "{answer}");
    wait_live(http, "live/webcam", Duration::from_secs(30));
    let published = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let stream =
        tidewater_tests::http_get(&format!("http://{http}/api/v1/streams/live/webcam")).json();
    let keyframes = stream["qos"]["keyframes"].as_u64().unwrap_or(0);
    assert!(
        keyframes > 2,
        "{keyframes} keyframes 6 s into the publish: {}\n{}",
        stream["qos"],
        server.output()
    );

    let readers: Vec<_> = [
        ("rtmp", format!("rtmp://{rtmp}/live/webcam")),
        (
            "ll-hls",
            format!("http://{http}/llhls/live/webcam/index.m3u8"),
        ),
    ]
    .into_iter()
    .map(|(name, url)| {
        std::thread::spawn(move || {
            let crc = ffmpeg_decode_within(&[], &url, &["-t", "4"], Duration::from_secs(40));
            (name, url, crc)
        })
    })
    .collect();
    for reader in readers {
        let (name, url, (crc, ended)) = reader.join().expect("reader");
        let summary = format!(
            "{name} joined {:?} after the publish: codecs {:?}, {} lines",
            published.elapsed(),
            crc.codecs,
            crc.lines.len()
        );
        assert!(
            ended,
            "{summary}: ffmpeg did not finish 4 s in time; it says:\n{}",
            ffmpeg_says(&url)
        );
        assert_decoded_video(&crc, &summary, 30, 640, 480);
    }
    // LL-HLS cut segments on the requested keyframes, and parts that
    // start with one say so.
    let playlist =
        tidewater_tests::http_get(&format!("http://{http}/llhls/live/webcam/index.m3u8")).body;
    let segments: Vec<f64> = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect();
    assert!(segments.len() >= 3, "{playlist}");
    assert!(segments.iter().all(|d| *d <= 3.0), "{playlist}");
    let keyframes_now = tidewater_tests::http_get(&format!(
        "http://{http}/api/v1/streams/live/webcam"
    ))
    .json()["qos"]["keyframes"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        keyframes_now > keyframes,
        "{keyframes} then {keyframes_now}"
    );
    eprintln!("keyframes: {keyframes} at 6 s, {keyframes_now} later; LL-HLS segments {segments:?}");
}

/// The README's first publish command (x264's defaults: High profile; AAC),
/// smaller and without B-frames, which WebRTC players do not handle.
fn readme_publish(url: &str, seconds: u32) -> ChildGuard {
    let child = ffmpeg_realtime()
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine"])
        .args(["-c:v", "libx264", "-bf", "0", "-g", "60", "-c:a", "aac"])
        .args(["-t", &seconds.to_string(), "-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg");
    ChildGuard(child)
}

fn decoded(report: &str) -> u64 {
    json(report)["decoded"].as_u64().unwrap_or(0)
}

#[test]
fn chromium_plays_an_rtmp_publish_over_whep_across_a_republish() {
    let mut server = ServerCommand::with_config(CONFIG).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    // Long enough for a slow browser start; stopped below once playback is
    // checked (a fixed short publish raced Chromium's start on a busy CI
    // machine: the audio check ran after the publish had ended).
    let mut first = readme_publish(&format!("rtmp://{rtmp}/live/cam1"), 120);
    let _bframes = ChildGuard(
        ffmpeg_publish_bframes_command(&format!("rtmp://{rtmp}/live/bframes"), 30, 50)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg"),
    );
    let live = wait_live(http, "live/cam1", Duration::from_secs(20));
    assert_eq!(catalog_codecs(&live), vec!["H264", "Aac"], "{live}");
    wait_live(http, "live/bframes", Duration::from_secs(20));
    // Let the B-frame stream's cached GOP show them.
    std::thread::sleep(Duration::from_secs(1));

    let browser = page(PLAY_PAGE, http);
    let refused = browser
        .wait_for("bframes ", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("page {:?}", browser.lines()));
    assert!(
        refused.starts_with("422 ") && refused.contains("B-frames") && refused.contains("-bf 0"),
        "{refused}"
    );
    let answer = json(
        &browser
            .wait_for("answer ", Duration::from_secs(20))
            .unwrap_or_else(|| panic!("page {:?}", browser.lines())),
    );
    assert_eq!(answer["status"], 201, "{answer}");
    assert!(
        answer["location"]
            .as_str()
            .is_some_and(|l| l.starts_with("/whep/live/cam1/")),
        "{answer}"
    );
    assert!(answer["etag"].as_str().is_some_and(|e| e.len() > 10));
    assert_eq!(answer["link"], LINKS, "{answer}");

    // Playing: frames decoded at the published size, H.264.
    let report = browser
        .wait_until("report ", Duration::from_secs(20), |r| {
            let v = json(r);
            decoded(r) >= 60 && v["w"] == 640 && v["h"] == 360
        })
        .unwrap_or_default();
    let v = json(if report.is_empty() { "{}" } else { &report });
    let summary = format!("last report {report}; page {:?}", browser.lines());
    assert!(decoded(&report) >= 60, "{summary}");
    assert_eq!(
        (v["w"].as_u64(), v["h"].as_u64()),
        (Some(640), Some(360)),
        "{summary}"
    );
    assert!(
        v["codec"]
            .as_str()
            .is_some_and(|c| c.starts_with("video/H264")),
        "{summary}"
    );
    // The AAC (ffmpeg's 440 Hz sine, 44.1 kHz mono) arrives as Opus,
    // transcoded once for the stream: packets and decoded samples grow and
    // the sine has a level.
    let report = browser
        .wait_until("report ", Duration::from_secs(20), |r| {
            let v = json(r);
            v["audio"].as_u64().unwrap_or(0) >= 100
                && v["samples"].as_u64().unwrap_or(0) >= 48_000
                && v["level"].as_f64().unwrap_or(0.0) > 0.0
        })
        .unwrap_or_default();
    let v = json(if report.is_empty() { "{}" } else { &report });
    let summary = format!(
        "last report {report}; page {:?}\n{}",
        browser.lines(),
        server.output()
    );
    assert!(v["audio"].as_u64().unwrap_or(0) >= 100, "{summary}");
    assert!(v["samples"].as_u64().unwrap_or(0) >= 48_000, "{summary}");
    assert!(v["level"].as_f64().unwrap_or(0.0) > 0.0, "{summary}");
    assert_eq!(v["acodec"], "audio/opus", "{summary}");
    assert!(
        server
            .wait_for_line("transcode: audio to opus started", Duration::from_secs(5))
            .is_some(),
        "{summary}"
    );

    // The publisher stops (ffmpeg's own clean stop on SIGINT); another
    // publishes 1 s later: the same WHEP session keeps playing (the
    // stream's follow grace).
    first.signal("INT");
    assert!(
        first.wait_for(Duration::from_secs(20)).is_some(),
        "the first publish ends"
    );
    let last = browser.last("report ").unwrap_or_else(|| "{}".into());
    let before = decoded(&last);
    let audio_before = json(&last)["audio"].as_u64().unwrap_or(0);
    std::thread::sleep(Duration::from_secs(1));
    let _second = readme_publish(&format!("rtmp://{rtmp}/live/cam1"), 20);
    let report = browser
        .wait_until("report ", Duration::from_secs(20), |r| {
            decoded(r) >= before + 60
                && json(r)["audio"].as_u64().unwrap_or(0) >= audio_before + 100
        })
        .unwrap_or_default();
    let summary = format!(
        "before {before}, last report {report}; page {:?}\n{}",
        browser.lines(),
        server.output()
    );
    assert!(decoded(&report) >= before + 60, "{summary}");
    assert!(
        json(&report)["audio"].as_u64().unwrap_or(0) >= audio_before + 100,
        "audio goes on after the republish: {summary}"
    );
    let answers = browser
        .lines()
        .iter()
        .filter(|l| l.starts_with("answer "))
        .count();
    assert_eq!(answers, 1, "one WHEP session throughout: {summary}");
    assert!(
        !browser
            .lines()
            .iter()
            .any(|l| l == "state failed" || l == "state disconnected"),
        "{summary}"
    );
}
