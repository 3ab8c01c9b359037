//! The audio of a WHIP publish (Opus) where only AAC will do, through the
//! `tidewater` binary: headless Chromium publishes its fake camera and
//! microphone over WHIP to a server that pushes every `live` stream over
//! RTMP (`[apps.live] push`) to a second server, and
//!
//! - ffmpeg reads the first server's TS-HLS (`/hls/...`): H.264 and AAC
//!   (the Opus transcoded), decoded, timestamps rising, AAC packets a
//!   whole AAC frame apart and keeping pace with the video;
//! - the second server receives an RTMP publish of H.264 and AAC (not
//!   enhanced-RTMP Opus), which ffmpeg decodes over RTMP;
//! - one conversion served both (the push and the TS-HLS packager share
//!   the stream's Opus → AAC output);
//! - across a republish (the WHIP session deleted, a second page publishing
//!   within the follow grace) both go on with AAC from the new publish's
//!   own conversion.

use std::net::SocketAddr;
use std::time::Duration;

use tidewater_tests::page::ChromiumPage;
use tidewater_tests::{
    FrameCrc, ServerCommand, catalog_codecs, curl_command, ffmpeg_framecrc_run, http_get,
    loopback_config, try_http_get, wait_json, wait_live,
};

const TIMEOUT: Duration = Duration::from_secs(40);

/// Publishes the fake camera (H.264) and microphone (Opus) over WHIP to
/// `live/webcam`, ICE candidates in the offer.
const PUBLISH_PAGE: &str = r#"<script>
const SERVER = '__SERVER__';
(async () => {
  try {
    const media = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}, audio: true});
    const pc = new RTCPeerConnection({iceServers: []});
    for (const track of media.getTracks()) pc.addTransceiver(track, {direction: 'sendonly'});
    const video = pc.getTransceivers().find(t => t.sender.track && t.sender.track.kind === 'video');
    const codecs = RTCRtpSender.getCapabilities('video').codecs;
    video.setCodecPreferences(codecs.filter(c => c.mimeType === 'video/H264' || c.mimeType === 'video/rtx'));
    pc.onconnectionstatechange = () => log('state ' + pc.connectionState);
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const r = await fetch(SERVER + '/whip/live/webcam', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: pc.localDescription.sdp});
    const answer = await r.text();
    log('location ' + r.headers.get('Location'));
    log('answer ' + r.status);
    if (r.status !== 201) return log('refused ' + answer);
    await pc.setRemoteDescription({type: 'answer', sdp: answer});
  } catch (e) {
    log('error ' + e);
  }
})();
</script>"#;

/// ffmpeg's framecrc of `url`: decoded (`-t 5`) or packets (`-c copy -t 4`).
fn read(url: &str, copy: bool) -> FrameCrc {
    let args: &[&str] = if copy {
        &["-c", "copy", "-t", "4"]
    } else {
        &["-t", "5"]
    };
    let run = ffmpeg_framecrc_run(url, args, TIMEOUT);
    assert!(
        run.status.is_some_and(|s| s.success()),
        "{url} (copy: {copy}) did not end cleanly: {} lines\n{}",
        run.stdout.lines().count(),
        run.stderr
    );
    FrameCrc::parse(&run.stdout)
}

/// Decoded frames of a 640x480 picture and of sound, timestamps rising.
fn check_decoded(crc: &FrameCrc, name: &str) {
    let summary = format!("{name}: codecs {:?}, {} lines", crc.codecs, crc.lines.len());
    let at = |prefix: &str| {
        crc.codecs
            .iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or_else(|| panic!("{summary}: nothing decoded as {prefix}")) as u32
    };
    let frames = crc.stream(at("rawvideo"));
    // Chromium's fake camera runs at up to 30 fps; a busy machine gives fewer.
    assert!(frames.len() >= 50, "{summary}: {} frames", frames.len());
    assert!(
        frames.iter().all(|f| f.size == 640 * 480 * 3 / 2),
        "{summary}: 640x480 YUV 4:2:0"
    );
    // 5 s of 48 kHz AAC: about 234 frames; a busy machine may start late.
    let sound = crc.stream(at("pcm_"));
    assert!(
        sound.len() >= 150,
        "{summary}: {} audio frames",
        sound.len()
    );
    assert!(crc.monotonic(), "{summary}: timestamps go backwards");
}

/// Packets of H.264 and AAC only, the AAC ones 1 024 samples at 48 kHz
/// apart (21.3 ms; `tick` container ticks a millisecond) but for at most
/// `junctions` gaps under 300 ms (where a reader crosses a republish: the
/// new publisher's sound starts where it starts), the audio starting with
/// the video and keeping pace with it.
fn check_aac_packets(crc: &FrameCrc, tick: i64, name: &str, junctions: usize) {
    let mut codecs = crc.codecs.clone();
    codecs.sort();
    assert_eq!(codecs, ["aac", "h264"], "{name}");
    let at = |c: &str| crc.codecs.iter().position(|x| x == c).unwrap_or(0) as u32;
    let (video, audio) = (crc.stream(at("h264")), crc.stream(at("aac")));
    assert!(audio.len() >= 100, "{name}: {} AAC packets", audio.len());
    assert!(video.len() >= 40, "{name}: {} video packets", video.len());
    let steps: Vec<i64> = audio.windows(2).map(|w| w[1].dts - w[0].dts).collect();
    let frame = |d: &i64| (20 * tick..=23 * tick).contains(d);
    let gap = |d: &i64| (23 * tick..=300 * tick).contains(d);
    assert!(
        steps.iter().all(|d| frame(d) || gap(d))
            && steps.iter().filter(|d| gap(d)).count() <= junctions,
        "{name}: AAC packets 1 024 samples apart ({junctions} republish gaps allowed): {steps:?}"
    );
    let (v0, a0) = (video[0].dts, audio[0].dts);
    let (v1, a1) = (video[video.len() - 1].dts, audio[audio.len() - 1].dts);
    assert!(
        (a0 - v0).abs() <= 300 * tick && ((a1 - a0) - (v1 - v0)).abs() <= 300 * tick,
        "{name}: audio spans {a0}..{a1}, video {v0}..{v1} ({tick} ticks a ms)"
    );
}

fn codecs(http: SocketAddr, key: &str) -> Vec<String> {
    let live = wait_live(http, key, TIMEOUT);
    let mut codecs: Vec<String> = catalog_codecs(&live)
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    codecs.sort();
    codecs
}

/// Opens the publish page against `http`; the WHIP session's `Location`.
fn publish(
    http: SocketAddr,
    server: &mut tidewater_tests::ServerProcess,
) -> (ChromiumPage, String) {
    let browser =
        ChromiumPage::open(&PUBLISH_PAGE.replace("__SERVER__", &format!("http://{http}")));
    let answer = browser.wait_for("answer ", TIMEOUT);
    assert_eq!(
        answer.as_deref(),
        Some("201"),
        "page {:?}\n{}",
        browser.lines(),
        server.output()
    );
    let location = browser
        .wait_for("location ", TIMEOUT)
        .expect("the WHIP Location");
    (browser, location)
}

/// Reads the TS-HLS and the pushed RTMP at once, decoded and as packets,
/// and checks both are H.264 + AAC.
/// `junctions`: the republishes the reads may cross.
fn read_both(hls: &str, rtmp: &str, when: &str, junctions: usize) {
    let readers: Vec<_> = [
        ("ts-hls", hls.to_owned(), false),
        ("ts-hls", hls.to_owned(), true),
        ("pushed rtmp", rtmp.to_owned(), false),
        ("pushed rtmp", rtmp.to_owned(), true),
    ]
    .into_iter()
    .map(|(name, url, copy)| std::thread::spawn(move || (name, copy, read(&url, copy))))
    .collect();
    for reader in readers {
        let (name, copy, crc) = reader.join().expect("reader");
        let summary = format!("{name} ({when})");
        if copy {
            // TS: 90 kHz; FLV: milliseconds.
            let tick = if name == "ts-hls" { 90 } else { 1 };
            check_aac_packets(&crc, tick, &summary, junctions);
        } else {
            check_decoded(&crc, &summary);
        }
    }
}

/// Waits until the media playlist has `n` segments after its last
/// discontinuity (what a player starting at the live edge reads is then
/// all from the current publish).
fn wait_segments_after_discontinuity(playlist: &str, n: usize) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let text = try_http_get(playlist).map(|r| r.body).unwrap_or_default();
        let after = text.rsplit("#EXT-X-DISCONTINUITY\n").next().unwrap_or("");
        if text.contains("#EXT-X-DISCONTINUITY") && after.matches("#EXTINF").count() >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {n} segments after the republish:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_whip_publish_is_aac_over_ts_hls_and_in_an_rtmp_push() {
    let mut dest = ServerCommand::with_config(&loopback_config()).spawn();
    let (dest_http, dest_rtmp) = (dest.http_addr(), dest.rtmp_addr());
    let mut src = ServerCommand::with_config(&format!(
        "{}[rtmp]\nlisten = \"127.0.0.1:0\"\n[apps.live]\npush = [\"rtmp://{dest_rtmp}/live/copy\"]\n",
        loopback_config()
    ))
    .spawn();
    let src_http = src.http_addr();

    let (browser, location) = publish(src_http, &mut src);
    assert_eq!(codecs(src_http, "live/webcam"), ["H264", "Opus"]);

    // The push arrives as an ordinary RTMP publish, its audio AAC.
    wait_json(
        &format!("http://{src_http}/api/v1/streams/live/webcam/pushes"),
        TIMEOUT,
        |v| v["pushes"][0]["state"] == "active",
    );
    let copy = wait_live(dest_http, "live/copy", TIMEOUT);
    assert_eq!(copy["protocol"], "rtmp", "{copy}");
    assert_eq!(
        codecs(dest_http, "live/copy"),
        ["Aac", "H264"],
        "{}",
        dest.output()
    );

    // TS-HLS of the WHIP publish and RTMP of the push, read at once.
    let hls = format!("http://{src_http}/hls/live/webcam/index.m3u8");
    let rtmp = format!("rtmp://{dest_rtmp}/live/copy");
    read_both(&hls, &rtmp, "first publish", 0);
    // The push and the TS-HLS packager needed AAC at once: one conversion.
    let output = src.output();
    assert_eq!(
        output.matches("transcode: audio to aac started").count(),
        1,
        "{output}"
    );

    // The publisher goes and comes back within the follow grace: the push
    // (same connection) and the packager follow, each on the new publish's
    // conversion (the first one stops with its generation).
    let deleted = curl_command()
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "DELETE",
        ])
        .arg(format!("http://{src_http}{location}"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&deleted.stdout), "200");
    drop(browser);
    let (_browser, _) = publish(src_http, &mut src);
    wait_live(src_http, "live/webcam", TIMEOUT);
    wait_segments_after_discontinuity(&hls, 2);
    // The readers start at the newest keyframe, which may still be the
    // first publish's at the destination (one continuous publish there).
    read_both(&hls, &rtmp, "after the republish", 1);
    let output = src.output();
    assert_eq!(
        output.matches("transcode: audio to aac started").count(),
        2,
        "one conversion per publish: {output}"
    );
    let pushes = http_get(&format!(
        "http://{src_http}/api/v1/streams/live/webcam/pushes"
    ))
    .json();
    assert_eq!(
        pushes["pushes"][0]["attempts"], 1,
        "the push went on: {pushes}"
    );
}
