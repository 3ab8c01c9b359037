//! WHIP publishes in VP8, VP9 and AV1 through the `tidewater` binary:
//! headless Chromium publishes its fake camera and microphone with
//! `setCodecPreferences` restricted to one of them (the server answers
//! that codec when the offer has no H.264); ffprobe names the codec and
//! resolution of the LL-HLS and DASH (fMP4) outputs and ffmpeg decodes 5 s
//! of the LL-HLS one
//! (frame count, size, monotonic timestamps). RTMP (ffprobe), HTTP-FLV,
//! HTTP-TS, TS-HLS and SRT (ffprobe) readers of the VP8 stream are refused with the
//! reason, at once rather than left hanging; a Chromium WHEP viewer plays
//! the VP8 stream (frames decoded and shown).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use tidewater_tests::decoded::{assert_decoded_video, ffmpeg_decode_within, sorted_catalog_codecs};
use tidewater_tests::gst_whip::{spawn_gst_whip_publish, whip_status};
use tidewater_tests::page::ChromiumPage;
use tidewater_tests::page_scripts::open_webrtc_page;
use tidewater_tests::srt::ffmpeg_srt_url;
use tidewater_tests::{ServerCommand, ServerProcess, run_until, wait_live};

const CONFIG: &str = "[http]\nlisten = \"127.0.0.1:0\"\n";

/// Publishes with only `__MIME__` (and its retransmission format) offered
/// for video, keeping the resolution when the encoder is short of CPU (a
/// busy machine must not turn the 640 × 480 check into a flake).
const PUBLISH_PAGE: &str = r#"<script>
const SERVER = '__SERVER__';
(async () => {
  try {
    const caps = RTCRtpSender.getCapabilities('video').codecs.map(c => c.mimeType);
    log('caps ' + JSON.stringify(caps));
    const {pc, video} = await cameraPublisher('__MIME__');
    const params = video.sender.getParameters();
    params.degradationPreference = 'maintain-resolution';
    await video.sender.setParameters(params);
    pc.onconnectionstatechange = () => log('state ' + pc.connectionState);
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const r = await fetch(SERVER + '/whip/live/__STREAM__', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: pc.localDescription.sdp});
    const answer = await r.text();
    const video_codecs = (answer.match(/a=rtpmap:\d+ [A-Za-z0-9]+/g) || []).map(l => l.split(' ')[1]);
    log('answer ' + JSON.stringify({status: r.status, codecs: video_codecs}));
    if (r.status !== 201) return log('refused ' + answer);
    await pc.setRemoteDescription({type: 'answer', sdp: answer});
  } catch (e) {
    log('error ' + e);
  }
})();
</script>"#;

/// Plays `/whep/live/__STREAM__` and reports, every 250 ms, the frames
/// decoded and shown, the codec and the picture size.
const PLAY_PAGE: &str = r#"<script>
const SERVER = '__SERVER__';
(async () => {
  try {
    const {viewer, player} = whepViewer(true, true);
    await viewer.setLocalDescription(await viewer.createOffer());
    await gathered(viewer);
    const w = await fetch(SERVER + '/whep/live/__STREAM__', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: viewer.localDescription.sdp});
    const answer = await w.text();
    log('answer ' + w.status);
    if (w.status !== 201) return log('refused ' + answer);
    await viewer.setRemoteDescription({type: 'answer', sdp: answer});
    setInterval(async () => {
      let decoded = 0, codec = '';
      const stats = await viewer.getStats();
      stats.forEach(s => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          decoded = s.framesDecoded || 0;
          const c = s.codecId && stats.get(s.codecId);
          codec = c ? c.mimeType : '';
        }
      });
      const q = player.getVideoPlaybackQuality();
      log('report ' + JSON.stringify({decoded, codec, shown: q.totalVideoFrames, w: player.videoWidth, h: player.videoHeight}));
    }, 250);
  } catch (e) {
    log('error ' + e);
  }
})();
</script>"#;

/// ffprobe's codec name, width and height of the first video stream of `url`.
fn probe_video(url: &str) -> (String, String) {
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=codec_name,width,height",
        "-of",
        "csv=p=0",
        url,
    ]);
    let run = run_until(cmd, Duration::from_secs(40));
    // HLS lists the stream once per variant and program: the first line.
    let first = run.stdout.lines().find(|l| !l.trim().is_empty());
    (first.unwrap_or_default().trim().to_owned(), run.stderr)
}

/// Chromium publishes in `mime`; the stream's catalog names `catalog`, and
/// ffprobe `probe` over LL-HLS, which ffmpeg decodes.
fn publish_and_read_ll_hls(
    server: &mut ServerProcess,
    http: SocketAddr,
    mime: &str,
    stream: &str,
    catalog: &str,
    probe: &str,
) -> ChromiumPage {
    let page = open_webrtc_page(
        &PUBLISH_PAGE
            .replace("__SERVER__", &format!("http://{http}"))
            .replace("__MIME__", mime)
            .replace("__STREAM__", stream),
    );
    let caps = page
        .wait_for("caps ", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no capabilities: page {:?}", page.lines()));
    assert!(
        caps.contains(mime),
        "this Chromium cannot send {mime}: {caps}"
    );
    let answer = page
        .wait_for("answer ", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no answer: page {:?}\n{}", page.lines(), server.output()));
    let codec = mime.trim_start_matches("video/");
    assert!(
        answer.contains("\"status\":201") && answer.contains(&format!("\"{codec}\"")),
        "{mime}: the answer {answer}"
    );
    let live = wait_live(http, &format!("live/{stream}"), Duration::from_secs(30));
    let codecs = sorted_catalog_codecs(&live);
    let mut expected = vec![catalog.to_owned(), "Opus".to_owned()];
    expected.sort();
    assert_eq!(codecs, expected, "{live}");

    let url = format!("http://{http}/llhls/live/{stream}/index.m3u8");
    let (probed, stderr) = probe_video(&url);
    assert_eq!(
        probed,
        format!("{probe},640,480"),
        "ffprobe of {url}: {stderr}"
    );
    // DASH shares the fMP4 sample entries: ffprobe reads the same there.
    let dash = format!("http://{http}/dash/live/{stream}/manifest.mpd");
    let (probed, stderr) = probe_video(&dash);
    assert_eq!(
        probed,
        format!("{probe},640,480"),
        "ffprobe of {dash}: {stderr}"
    );
    let (crc, ended) = ffmpeg_decode_within(&[], &url, &["-t", "5"], Duration::from_secs(40));
    let summary = format!(
        "{mime} over LL-HLS: codecs {:?}, {} lines",
        crc.codecs,
        crc.lines.len()
    );
    assert!(ended, "{summary}: ffmpeg did not finish 5 s in time");
    // The fake camera runs at up to 30 fps; a busy machine gives fewer.
    let frames = assert_decoded_video(&crc, &summary, 50, 640, 480);
    let audio = crc.codecs.iter().position(|c| c.starts_with("pcm_"));
    assert!(
        audio.is_some_and(|a| crc.stream(a as u32).len() >= 150),
        "{summary}: no sound"
    );
    eprintln!("{summary}: {} video frames", frames.len());
    page
}

#[test]
fn chromium_publishes_vp8_vp9_and_av1_over_whip_and_ll_hls_carries_them() {
    let mut server = ServerCommand::with_config(CONFIG).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());

    let vp8 = publish_and_read_ll_hls(&mut server, http, "video/VP8", "vp8", "Vp8", "vp8");
    // RTMP cannot carry VP8: ffprobe gets the server's error at once.
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-show_streams"])
        .arg(format!("rtmp://{rtmp}/live/vp8"));
    let run = run_until(cmd, Duration::from_secs(20));
    assert!(
        !run.killed_at_deadline() && run.status.is_some_and(|s| !s.success()),
        "ffprobe over RTMP should fail at once: {run:?}"
    );
    assert!(
        run.stderr.contains("vp8, which RTMP and FLV cannot carry"),
        "ffprobe over RTMP: {}",
        run.stderr
    );
    let refusal = server
        .wait_for_line(
            "play refused: the stream's video is vp8",
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| panic!("no refusal logged:\n{}", server.output()));
    assert!(refusal.contains("live/vp8"), "{refusal}");
    // HTTP-FLV: 415 with the reason.
    let flv = tidewater_tests::try_http_get(&format!("http://{http}/flv/live/vp8.flv"));
    let flv = flv.expect("an HTTP answer");
    assert_eq!(flv.status, 415, "{}", flv.body);
    assert!(flv.body.contains("cannot carry"), "{}", flv.body);
    // HTTP-TS and SRT cannot carry it either: 415 with the reason, and the
    // SRT caller rejected in its handshake (logged with the reason).
    let ts = tidewater_tests::try_http_get(&format!("http://{http}/ts/live/vp8.ts"));
    let ts = ts.expect("an HTTP answer");
    assert_eq!(ts.status, 415, "{}", ts.body);
    assert!(ts.body.contains("MPEG-TS cannot carry"), "{}", ts.body);
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-show_streams"])
        .arg(ffmpeg_srt_url(server.srt_addr(), "read:live/vp8"));
    let run = run_until(cmd, Duration::from_secs(20));
    assert!(
        !run.killed_at_deadline() && run.status.is_some_and(|s| !s.success()),
        "ffprobe over SRT should fail at once: {run:?}"
    );
    server
        .wait_for_line(
            "srt read refused: the stream's video is vp8",
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| panic!("no SRT refusal logged:\n{}", server.output()));
    let hls = tidewater_tests::try_http_get(&format!("http://{http}/hls/live/vp8/index.m3u8"));
    let hls = hls.expect("an HTTP answer");
    assert_eq!(hls.status, 415, "TS-HLS: {}", hls.body);
    assert!(hls.body.contains("MPEG-TS cannot carry"), "{}", hls.body);
    // WHEP carries VP8: a Chromium viewer decodes and shows the picture.
    let viewer = open_webrtc_page(
        &PLAY_PAGE
            .replace("__SERVER__", &format!("http://{http}"))
            .replace("__STREAM__", "vp8"),
    );
    let report = viewer.wait_until("report ", Duration::from_secs(40), |r| {
        let v: serde_json::Value = serde_json::from_str(r).unwrap_or_default();
        v["decoded"].as_u64() >= Some(60) && v["shown"].as_u64() >= Some(60) && v["w"] == 640
    });
    let report: serde_json::Value = report
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_else(|| panic!("no WHEP report: page {:?}", viewer.lines()));
    assert_eq!(
        report["codec"],
        "video/VP8",
        "{report}; page {:?}",
        viewer.lines()
    );
    assert!(
        report["decoded"].as_u64() >= Some(60),
        "{report}; page {:?}",
        viewer.lines()
    );
    assert!(report["shown"].as_u64() >= Some(60), "{report}");
    assert_eq!(
        (&report["w"], &report["h"]),
        (&640.into(), &480.into()),
        "{report}"
    );
    eprintln!("WHEP of the VP8 publish: {report}");
    drop(viewer);
    drop(vp8);

    let vp9 = publish_and_read_ll_hls(&mut server, http, "video/VP9", "vp9", "Vp9", "vp9");
    drop(vp9);
    let av1 = publish_and_read_ll_hls(&mut server, http, "video/AV1", "av1", "Av1", "av1");
    drop(av1);
}

/// GStreamer's webrtcbin (`tests/helpers/gst_whip_publish.py --h265`)
/// publishes x265 (Main, 320 × 240, 25 fps) and Opus: the server answers
/// H.265, the catalog has an `hvcC`, and ffmpeg decodes it over LL-HLS
/// (`hvc1`) and over HTTP-TS (which carries H.265).
#[test]
fn gstreamer_publishes_h265_over_whip_and_ll_hls_and_ts_carry_it() {
    let mut server = ServerCommand::with_config(CONFIG).spawn();
    let http = server.http_addr();
    let mut publisher =
        spawn_gst_whip_publish(&format!("http://{http}/whip/live/hevc"), 25, &["--h265"]);
    let status = whip_status(&mut publisher, Duration::from_secs(30));
    assert_eq!(status.as_deref(), Some("201"), "{}", server.output());
    let live = wait_live(http, "live/hevc", Duration::from_secs(30));
    let codecs = sorted_catalog_codecs(&live);
    assert_eq!(codecs, ["H265", "Opus"], "{live}");
    for (what, url) in [
        (
            "LL-HLS",
            format!("http://{http}/llhls/live/hevc/index.m3u8"),
        ),
        ("HTTP-TS", format!("http://{http}/ts/live/hevc.ts")),
    ] {
        let (probed, stderr) = probe_video(&url);
        assert_eq!(probed, "hevc,320,240", "ffprobe over {what}: {stderr}");
        let (crc, ended) = ffmpeg_decode_within(&[], &url, &["-t", "5"], Duration::from_secs(40));
        let summary = format!("H.265 over {what}: codecs {:?}", crc.codecs);
        assert!(ended, "{summary}: ffmpeg did not finish 5 s in time");
        // 25 fps for 5 s; a busy machine gives fewer.
        let frames = assert_decoded_video(&crc, &summary, 50, 320, 240);
        eprintln!("{summary}: {} video frames", frames.len());
    }
}
