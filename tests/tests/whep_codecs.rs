//! WHEP plays the stream's own video codec, whatever the WHIP publisher
//! chose, through the `tidewater` binary: headless Chromium publishes its
//! fake camera in VP9, then in AV1 (`setCodecPreferences` restricted to
//! one codec), and a second Chromium page plays each over WHEP with its
//! default offer: `getStats` names the codec (`video/VP9`, `video/AV1`),
//! `getVideoPlaybackQuality` counts the frames shown, the `<video>` the
//! picture size. A viewer whose offer keeps only H.264 is refused `422`
//! naming the stream's codec, before any session is made. GStreamer's
//! webrtcbin publishes H.265: a Chromium viewer that offers H.265 plays
//! it; one that does not (no H.265 decoder: headless Chromium on Linux) is
//! refused `422` naming H.265.

use std::time::Duration;

use tidewater_tests::gst_whip::{spawn_gst_whip_publish, whip_status};
use tidewater_tests::page::ChromiumPage;
use tidewater_tests::page_scripts::open_webrtc_page;
use tidewater_tests::{ServerCommand, ServerProcess, catalog_codecs, wait_live};

const CONFIG: &str = "[http]\nlisten = \"127.0.0.1:0\"\n";

/// Publishes the fake camera and microphone to `/whip/live/__STREAM__`
/// with only `__MIME__` (and retransmission) offered for video, keeping
/// the resolution when the encoder is short of CPU.
const PUBLISH_PAGE: &str = r#"<script>
(async () => {
  try {
    const {pc, video} = await cameraPublisher('__MIME__');
    const params = video.sender.getParameters();
    params.degradationPreference = 'maintain-resolution';
    await video.sender.setParameters(params);
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const r = await fetch('__SERVER__/whip/live/__STREAM__', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: pc.localDescription.sdp});
    const answer = await r.text();
    log('published ' + r.status);
    if (r.status === 201) await pc.setRemoteDescription({type: 'answer', sdp: answer});
  } catch (e) {
    log('error ' + e);
  }
})();
</script>"#;

/// Plays `/whep/live/__STREAM__`, its video offer limited to the MIME
/// types of `__ONLY__` (a JSON list; empty: Chromium's default offer), and
/// logs what it can receive (`caps`), the answer (`answer STATUS BODY` when
/// refused; its `rtpmap`/`fmtp` lines as `answered`) and every 250 ms a
/// `report` of frames decoded and shown, packets received, the codec and
/// the picture size.
const PLAY_PAGE: &str = r#"<script>
(async () => {
  try {
    const only = __ONLY__;
    const caps = RTCRtpReceiver.getCapabilities('video').codecs.map(c => c.mimeType);
    log('caps ' + JSON.stringify(caps));
    const {viewer, player} = whepViewer(true, true);
    const video = viewer.getTransceivers().find(t => t.receiver.track.kind === 'video');
    if (only.length) video.setCodecPreferences(RTCRtpReceiver.getCapabilities('video').codecs
      .filter(c => only.includes(c.mimeType) || c.mimeType === 'video/rtx'));
    await viewer.setLocalDescription(await viewer.createOffer());
    await gathered(viewer);
    const w = await fetch('__SERVER__/whep/live/__STREAM__', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: viewer.localDescription.sdp});
    const answer = await w.text();
    if (w.status !== 201) return log('answer ' + w.status + ' ' + answer);
    log('answer 201');
    log('answered ' + JSON.stringify(answer.match(/a=(rtpmap|fmtp):\d+ [^\r\n]+/g)));
    await viewer.setRemoteDescription({type: 'answer', sdp: answer});
    setInterval(async () => {
      let decoded = 0, codec = '', packets = 0;
      const stats = await viewer.getStats();
      stats.forEach(s => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          decoded = s.framesDecoded || 0;
          packets = s.packetsReceived || 0;
          const c = s.codecId && stats.get(s.codecId);
          codec = c ? c.mimeType : '';
        }
      });
      const q = player.getVideoPlaybackQuality();
      log('report ' + JSON.stringify({decoded, packets, codec, shown: q.totalVideoFrames, w: player.videoWidth, h: player.videoHeight}));
    }, 250);
  } catch (e) {
    log('error ' + e);
  }
})();
</script>"#;

/// Opens the play page for `stream` with the video offer limited to `only`.
fn play(http: std::net::SocketAddr, stream: &str, only: &[&str]) -> ChromiumPage {
    let only = serde_json::to_string(only).unwrap_or_default();
    open_webrtc_page(
        &PLAY_PAGE
            .replace("__SERVER__", &format!("http://{http}"))
            .replace("__STREAM__", stream)
            .replace("__ONLY__", &only),
    )
}

/// Waits for the viewer to decode and show 60 frames of `mime` at
/// `width` × `height`; returns its last report.
fn expect_playback(
    server: &mut ServerProcess,
    viewer: &ChromiumPage,
    mime: &str,
    width: u64,
    height: u64,
) -> serde_json::Value {
    let answer = viewer.wait_for("answer ", Duration::from_secs(40));
    assert_eq!(
        answer.as_deref(),
        Some("201"),
        "{mime}: WHEP answer; page {:?}",
        viewer.lines()
    );
    // Generous: a busy machine decodes slowly; the fake camera gives up to
    // 30 frames a second.
    let report = viewer.wait_until("report ", Duration::from_secs(60), |r| {
        let v: serde_json::Value = serde_json::from_str(r).unwrap_or_default();
        v["decoded"].as_u64() >= Some(60) && v["shown"].as_u64() >= Some(60) && v["w"] == width
    });
    let report: serde_json::Value = report
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_else(|| {
            panic!(
                "{mime}: no WHEP report: page {:?}",
                lines_but_reports(viewer)
            )
        });
    let context = format!(
        "{report}; page {:?}\nserver: {}",
        lines_but_reports(viewer),
        server.output()
    );
    assert_eq!(report["codec"], mime, "{context}");
    assert!(report["decoded"].as_u64() >= Some(60), "{context}");
    assert!(report["shown"].as_u64() >= Some(60), "{context}");
    assert_eq!(
        (&report["w"], &report["h"]),
        (&width.into(), &height.into()),
        "{context}"
    );
    report
}

/// The page's lines without its periodic reports (for failure messages).
fn lines_but_reports(page: &ChromiumPage) -> Vec<String> {
    let mut lines = page.lines();
    lines.retain(|l| !l.starts_with("report "));
    lines
}

/// Waits for the viewer's refusal: `422` with a body naming `codec`.
fn expect_refusal(viewer: &ChromiumPage, codec: &str) -> String {
    let answer = viewer
        .wait_for("answer ", Duration::from_secs(40))
        .unwrap_or_else(|| panic!("no WHEP answer: page {:?}", viewer.lines()));
    assert!(
        answer.starts_with("422 ")
            && answer.contains(&format!("the stream's video is {codec}"))
            && answer.contains("does not accept"),
        "{answer}"
    );
    answer
}

#[test]
fn chromium_plays_vp9_and_av1_whip_publishes_over_whep() {
    let mut server = ServerCommand::with_config(CONFIG).spawn();
    let http = server.http_addr();
    for (mime, stream, catalog) in [("video/VP9", "vp9", "Vp9"), ("video/AV1", "av1", "Av1")] {
        let publisher = open_webrtc_page(
            &PUBLISH_PAGE
                .replace("__SERVER__", &format!("http://{http}"))
                .replace("__MIME__", mime)
                .replace("__STREAM__", stream),
        );
        let status = publisher.wait_for("published ", Duration::from_secs(40));
        assert_eq!(
            status.as_deref(),
            Some("201"),
            "{mime}: page {:?}\n{}",
            publisher.lines(),
            server.output()
        );
        let live = wait_live(http, &format!("live/{stream}"), Duration::from_secs(30));
        let codecs = catalog_codecs(&live);
        assert!(
            codecs.iter().any(|c| c == catalog),
            "{mime}: catalog {live}"
        );

        // Chromium's default offer has VP8, VP9, AV1 and H.264: the answer
        // sends the stream's codec on the line.
        let viewer = play(http, stream, &[]);
        let report = expect_playback(&mut server, &viewer, mime, 640, 480);
        eprintln!("WHEP of the {mime} publish: {report}");
        drop(viewer);

        // A viewer that takes H.264 only gets the reason, not a black picture.
        let h264_only = play(http, stream, &["video/H264"]);
        let refused = expect_refusal(&h264_only, stream);
        eprintln!("H.264-only viewer of the {mime} publish: {refused}");
        drop(h264_only);
        drop(publisher);
    }
}

/// GStreamer's webrtcbin (`tests/helpers/gst_whip_publish.py --h265`)
/// publishes x265: a Chromium viewer plays it when its offer has H.265,
/// else gets `422` naming H.265 (which Chromium does without a hardware
/// decoder, as here).
#[test]
fn an_h265_publish_plays_where_the_viewer_offers_h265_and_is_refused_by_name_elsewhere() {
    let mut server = ServerCommand::with_config(CONFIG).spawn();
    let http = server.http_addr();
    let mut publisher =
        spawn_gst_whip_publish(&format!("http://{http}/whip/live/hevc"), 60, &["--h265"]);
    let status = whip_status(&mut publisher, Duration::from_secs(30));
    assert_eq!(status.as_deref(), Some("201"), "{}", server.output());
    let live = wait_live(http, "live/hevc", Duration::from_secs(30));
    assert!(
        catalog_codecs(&live).iter().any(|c| c == "H265"),
        "catalog {live}"
    );
    let viewer = play(http, "hevc", &[]);
    let caps = viewer
        .wait_for("caps ", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no capabilities: page {:?}", viewer.lines()));
    if caps.contains("video/H265") {
        let report = expect_playback(&mut server, &viewer, "video/H265", 320, 240);
        eprintln!("WHEP of the H.265 publish: {report}");
    } else {
        let refused = expect_refusal(&viewer, "h265");
        assert!(refused.contains("hardware decoder"), "{refused}");
        let logged = server
            .wait_for_line(
                "whep: play refused: the stream's video is h265",
                Duration::from_secs(10),
            )
            .unwrap_or_else(|| panic!("no refusal logged:\n{}", server.output()));
        assert!(logged.contains("live/hevc"), "{logged}");
        eprintln!("this Chromium receives {caps}; H.265 viewer refused: {refused}");
    }
}
