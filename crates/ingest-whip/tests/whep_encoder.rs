//! Chromium plays over WHEP a stream an encoder published the way RTMP
//! hands streams to the kernel (H.264 without in-band parameter sets,
//! millisecond timestamps): the catalog's SPS/PPS must reach the player.

mod support;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use tidewater_core::{Codec, Frame, Request, StreamKey, TrackId, TrackInfo};
use tidewater_media::codec::{annexb_nals, build_avcc, to_length_prefixed};
use tidewater_tests::TempDir;
use tidewater_tests::page_scripts::open_webrtc_page;

use support::{WhipOverHttp, engine, poll_report};

/// The page (served by the test's own server: another origin, so CORS is
/// exercised); `log` and `gathered` come from `ChromiumPage`, `whepViewer`
/// from `page_scripts`.
const PAGE: &str = r#"<script>
const SERVER = '__SERVER__';
(async () => {
  try {
    const {viewer, player} = whepViewer(false, true);
    await viewer.setLocalDescription(await viewer.createOffer());
    await gathered(viewer);
    const w = await fetch(SERVER + '/whep/live/encoder', {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: viewer.localDescription.sdp});
    log('whep ' + w.status);
    const answer = await w.text();
    if (w.status !== 201) return log('refused ' + answer);
    await viewer.setRemoteDescription({type: 'answer', sdp: answer});
    setInterval(async () => {
      let decoded = 0;
      (await viewer.getStats()).forEach(s => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') decoded = s.framesDecoded || 0;
      });
      log('report ' + JSON.stringify({decoded, w: player.videoWidth, h: player.videoHeight}));
    }, 500);
  } catch (e) {
    log('error ' + e);
  }
})();
</script>"#;

/// An encoder's H.264 (x264, no B-frames, 640x360) as an RTMP publisher
/// hands it to the kernel: parameter sets only in the catalog's avcC,
/// 1 kHz timestamps. Access units split at x264's delimiters.
fn encoder_stream(dir: &TempDir) -> (Bytes, Vec<(bool, Bytes)>) {
    let file = dir.file("in.h264");
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30",
            "-t",
            "4",
        ])
        .args([
            "-c:v",
            "libx264",
            "-bf",
            "0",
            "-g",
            "30",
            "-x264-params",
            "aud=1",
            "-f",
            "h264",
        ])
        .arg(&file)
        .status()
        .expect("ffmpeg (cargo xtask test installs it)");
    assert!(status.success());
    let data = std::fs::read(&file).expect("read");
    let (mut sps, mut pps) = (None, None);
    let mut units: Vec<(bool, Bytes)> = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    let flush = |current: &mut Vec<&[u8]>, units: &mut Vec<(bool, Bytes)>| {
        if !current.is_empty() {
            let key = current.iter().any(|n| n[0] & 0x1f == 5);
            units.push((key, to_length_prefixed(current.iter().copied())));
            current.clear();
        }
    };
    for nal in annexb_nals(&data).filter(|n| !n.is_empty()) {
        match nal[0] & 0x1f {
            9 => flush(&mut current, &mut units),
            7 => sps = Some(nal.to_vec()),
            8 => pps = Some(nal.to_vec()),
            _ => current.push(nal),
        }
    }
    flush(&mut current, &mut units);
    let (sps, pps) = (sps.expect("SPS"), pps.expect("PPS"));
    let avcc = build_avcc(&[&sps[..]], &[&pps[..]]).expect("avcC");
    (avcc, units)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_an_encoders_stream_over_whep() {
    let engine = engine();
    let profile = TempDir::new("whep-encoder");
    let (avcc, units) = encoder_stream(&profile);
    assert!(units.len() >= 100 && units[0].0, "{} units", units.len());
    let mut publish = engine
        .open_publish(Request::new(
            StreamKey::parse("live/encoder").expect("key"),
            "test",
        ))
        .await
        .expect("publish");
    publish
        .set_catalog(vec![
            TrackInfo::video(TrackId(1), Codec::H264, 640, 360)
                .with_timescale(1000)
                .with_config(avcc),
        ])
        .expect("catalog");
    let publisher = tokio::spawn(async move {
        // Real time, looping the file (timestamps keep increasing).
        for i in 0..(units.len() * 4) {
            let (key, au) = &units[i % units.len()];
            let pts = (i as i64) * 1000 / 30;
            if publish
                .publish(Frame::video(
                    TrackId(1),
                    Codec::H264,
                    pts,
                    pts,
                    *key,
                    au.clone(),
                ))
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(33)).await;
        }
    });

    let web = WhipOverHttp::start(&engine).await;
    let (whip, http) = (&web.whip, web.http);
    let log = open_webrtc_page(&PAGE.replace("__SERVER__", &format!("http://{http}")));

    let best = poll_report(
        &log,
        Duration::from_secs(30),
        |v| {
            let decoded = v["decoded"].as_u64().unwrap_or(0);
            let size = (v["w"].as_u64().unwrap_or(0), v["h"].as_u64().unwrap_or(0));
            (decoded, size)
        },
        |&(decoded, size)| decoded >= 60 && size == (640, 360),
    )
    .await;
    let summary = format!(
        "page {:?}; best {best:?}; sent {:?}",
        log.lines(),
        whip.stats().sent
    );
    let (decoded, size) = best.unwrap_or_else(|| panic!("no report: {summary}"));
    assert_eq!(size, (640, 360), "{summary}");
    assert!(decoded >= 60, "{summary}");
    drop(log);
    publisher.abort();
    web.stop().await;
}
