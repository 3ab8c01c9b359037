//! Chromium publishes its fake camera and microphone over WHIP and plays the
//! stream back over WHEP in a second peer connection of the same page: the
//! player must decode 640x480 video and receive Opus.

mod support;

use std::time::Duration;

use tidewater_tests::page_scripts::open_webrtc_page;

use support::{WhipOverHttp, engine, poll_report};

/// The page (served by the test's own server: another origin, so CORS is
/// exercised); `log` and `gathered` come from `ChromiumPage`,
/// `cameraPublisher` and `whepViewer` from `page_scripts`.
const PAGE: &str = r#"<script>
const SERVER = '__SERVER__';
(async () => {
  try {
    const {pc} = await cameraPublisher('video/H264');
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const r = await fetch(SERVER + '/whip/live/chromium', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: pc.localDescription.sdp});
    log('whip ' + r.status);
    await pc.setRemoteDescription({type: 'answer', sdp: await r.text()});
    await new Promise(done => setTimeout(done, 1500));

    const {viewer, player} = whepViewer(true, true);
    viewer.onconnectionstatechange = () => log('whep state ' + viewer.connectionState);
    await viewer.setLocalDescription(await viewer.createOffer());
    await gathered(viewer);
    const w = await fetch(SERVER + '/whep/live/chromium', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: viewer.localDescription.sdp});
    log('whep ' + w.status + ' ' + w.headers.get('Location'));
    const answer = await w.text();
    if (w.status !== 201) return log('refused ' + answer);
    await viewer.setRemoteDescription({type: 'answer', sdp: answer});
    setInterval(async () => {
      let decoded = 0, audio = 0;
      (await viewer.getStats()).forEach(s => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') decoded = s.framesDecoded || 0;
        if (s.type === 'inbound-rtp' && s.kind === 'audio') audio = s.packetsReceived || 0;
      });
      const q = player.getVideoPlaybackQuality();
      log('report ' + JSON.stringify({decoded, audio, shown: q.totalVideoFrames, w: player.videoWidth, h: player.videoHeight}));
    }, 500);
  } catch (e) {
    log('error ' + e);
  }
})();
</script>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_over_whep_what_chromium_publishes_over_whip() {
    let engine = engine();
    let web = WhipOverHttp::start(&engine).await;
    let (whip, http) = (&web.whip, web.http);
    assert_eq!(web.media.len(), 1, "{:?}", web.media);

    let log = open_webrtc_page(&PAGE.replace("__SERVER__", &format!("http://{http}")));

    // Reports from the player: frames decoded, size, audio packets.
    let best = poll_report(
        &log,
        Duration::from_secs(30),
        |v| {
            let decoded = v["decoded"].as_u64().unwrap_or(0);
            let audio = v["audio"].as_u64().unwrap_or(0);
            let size = (v["w"].as_u64().unwrap_or(0), v["h"].as_u64().unwrap_or(0));
            (decoded, audio, size)
        },
        |&(decoded, audio, size)| decoded >= 60 && audio >= 50 && size == (640, 480),
    )
    .await;
    let stats = whip.stats();
    let summary = format!(
        "page {:?}; best {best:?}; sent {:?}, frames in {:?}",
        log.lines(),
        stats.sent,
        stats.frames
    );
    let (decoded, audio, size) = best.unwrap_or_else(|| panic!("no report: {summary}"));
    assert!(
        log.lines()
            .iter()
            .any(|l| l.starts_with("whep 201 /whep/live/chromium/")),
        "{summary}"
    );
    assert_eq!(size, (640, 480), "{summary}");
    assert!(decoded >= 60, "{summary}");
    assert!(audio >= 50, "{summary}");
    assert_eq!(whip.sessions(), 2, "{summary}");
    eprintln!("{summary}");
    drop(log);
    web.stop().await;
}
