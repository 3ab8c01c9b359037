//! Chromium (headless, fake camera and microphone) publishes over WHIP to an
//! in-process router and engine; the kernel must get H.264 starting at a
//! keyframe with increasing timestamps, and Opus.

mod support;

use std::time::{Duration, Instant};

use tidewater_core::{Codec, Event, Request, StreamKey};
use tidewater_tests::page_scripts::open_webrtc_page;

use support::{WhipOverHttp, engine};

/// The page (served by the test's own server: another origin, so CORS is
/// exercised); `log` and `gathered` come from `ChromiumPage`,
/// `cameraPublisher` from `page_scripts`.
const PAGE: &str = r#"<script>
const SERVER = '__SERVER__';
(async () => {
  try {
    const {pc} = await cameraPublisher('video/H264');
    pc.onconnectionstatechange = () => log('state ' + pc.connectionState);
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const r = await fetch(SERVER + '/whip/live/chromium', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: pc.localDescription.sdp});
    log('answer ' + r.status + ' ' + r.headers.get('Location') + ' ' + r.headers.get('ETag'));
    const answer = await r.text();
    if (r.status !== 201) return log('refused ' + answer);
    await pc.setRemoteDescription({type: 'answer', sdp: answer});
  } catch (e) {
    log('error ' + e);
  }
})();
</script>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_h264_and_opus_over_whip() {
    let engine = engine();
    let web = WhipOverHttp::start(&engine).await;
    let (whip, http) = (&web.whip, web.http);
    assert_eq!(web.media.len(), 1, "{:?}", web.media);

    let mut log = open_webrtc_page(&PAGE.replace("__SERVER__", &format!("http://{http}")));

    // The publish becomes live once the page has posted its offer.
    let key = StreamKey::parse("live/chromium").expect("key");
    let start = Instant::now();
    let mut subscription = loop {
        if let Ok(s) = engine.subscribe(Request::new(key.clone(), "test")).await {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no publish within 30 s; page said {:?}",
            log.lines()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut catalog = None;
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(5) {
        let event = match tokio::time::timeout(Duration::from_secs(5), subscription.recv()).await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => panic!("subscription ended: {e}; page said {:?}", log.lines()),
            Err(_) => break,
        };
        match event {
            Event::Catalog(c) => catalog = Some(c),
            Event::Frame(f) if f.codec == Codec::H264 => {
                video.push((f.pts, f.dts, f.is_keyframe(), f.payload.clone()))
            }
            Event::Frame(f) if f.codec == Codec::Opus => audio.push(f.pts),
            _ => {}
        }
    }
    let stats = whip.stats();
    let summary = format!(
        "page {:?}; {} video, {} audio frames; datagrams {:?}, unmatched {:?}, PLIs {:?}",
        log.lines(),
        video.len(),
        audio.len(),
        stats.datagrams,
        stats.unmatched,
        stats.keyframe_requests
    );
    assert!(
        log.lines()
            .iter()
            .any(|l| l.starts_with("answer 201 /whip/live/chromium/")),
        "{:?}",
        log.lines()
    );

    let catalog = catalog.expect("a catalog");
    let tracks = catalog.tracks();
    let v = tracks
        .iter()
        .find(|t| t.codec == Codec::H264)
        .unwrap_or_else(|| panic!("an H.264 track: {tracks:?}"));
    assert!(v.config.is_some(), "avcC from the in-band SPS/PPS");
    let size = v.video.map(|s| (s.width, s.height));
    assert_eq!(size, Some((640, 480)), "{summary}");
    assert!(tracks.iter().any(|t| t.codec == Codec::Opus), "{tracks:?}");

    // About 30 fps for 5 s; the first frame a keyframe (the cached GOP).
    assert!(video.len() >= 60, "{summary}");
    assert!(video[0].2, "starts at a keyframe: {summary}");
    assert!(
        video.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 > w[0].1),
        "increasing timestamps: {summary}"
    );
    // Each payload is length-prefixed NAL units, exactly.
    for (_, _, _, payload) in &video {
        let mut rest = &payload[..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            assert!(len > 0 && 4 + len <= rest.len(), "AVCC framing");
            rest = &rest[4 + len..];
        }
    }
    // Opus: 20 ms packets, about 50 a second, on the same timeline.
    assert!(audio.len() >= 100, "{summary}");
    assert!(audio.windows(2).all(|w| w[1] > w[0]), "{summary}");
    assert!(whip.sessions() == 1, "{summary}");
    eprintln!("{summary}; catalog {tracks:?}");

    log.close_browser();
    // Chromium gone: the session ends once ICE times out; DELETE ends it at once.
    let location = log
        .lines()
        .iter()
        .find_map(|l| l.split(' ').nth(2).map(str::to_owned))
        .expect("a Location");
    let delete = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "DELETE",
        ])
        .arg(format!("http://{http}{location}"))
        .output()
        .await
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&delete.stdout), "200");
    let start = Instant::now();
    while whip.sessions() != 0 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(whip.sessions(), 0);
    web.stop().await;
}
