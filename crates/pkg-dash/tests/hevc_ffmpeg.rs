//! H.265 + AAC through the DASH routes, read back by ffmpeg's DASH demuxer.
//!
//! No ingest of the server carries H.265 from ffmpeg 5.1 yet (RTMP cannot),
//! so the stream is published in-process: ffmpeg encodes a clip with x265
//! as MPEG-TS, `tidewater_media::ts` demuxes it into the kernel, and the
//! routes serve it on loopback.

use std::process::Command;
use std::time::Duration;

use tidewater_core::{AppSpec, Engine, Frame, Request, StreamKey, TrackInfo};
use tidewater_media::ts::{DemuxEvent, TsDemuxer};
use tidewater_pkg_dash::{DashConfig, dash_router};
use tidewater_tests::ffmpeg_framecrc_text;
use tidewater_tests::tools::encode_ts;

fn clip(codec: &str) -> (Vec<TrackInfo>, Vec<Frame>) {
    let dir = std::env::temp_dir().join(format!("tidewater-dash-{codec}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("clip.ts");
    let vcodec = if codec == "h265" {
        "libx265"
    } else {
        "libx264"
    };
    let picture = "testsrc2=size=320x240:rate=25";
    encode_ts(&path, picture, 12, vcodec, 50, &["-preset", "ultrafast"]);
    let data = std::fs::read(&path).expect("clip");
    let _ = std::fs::remove_dir_all(&dir);
    let mut demux = TsDemuxer::new();
    demux.push(&data).expect("TS");
    demux.flush();
    let (mut tracks, mut frames) = (Vec::new(), Vec::new());
    while let Some(ev) = demux.poll() {
        match ev {
            DemuxEvent::Tracks(t) => tracks = t,
            DemuxEvent::Frame(f) => frames.push(f),
        }
    }
    (tracks, frames)
}

/// Publishes `codec`'s clip (all of it at once, the session kept open) and
/// returns what ffmpeg's DASH demuxer printed with `-f framecrc` and the MPD.
fn play(codec: &str) -> (String, String) {
    let (tracks, frames) = clip(codec);
    assert_eq!(tracks.len(), 2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let engine = Engine::builder()
            .default_app(AppSpec::default())
            .build()
            .expect("engine");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Timeline mode, started by the first request: the clip is
        // published faster than real time, which only a timeline of
        // complete segments (not the clock-driven `$Number$`) follows.
        let config = DashConfig {
            low_latency: false,
            always_on_all: false,
            ..DashConfig::default()
        };
        let router = dash_router(engine.context(), config);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let key = StreamKey::parse("live/clip").expect("key");
        let mut session = engine
            .open_publish(Request::new(key.clone(), "test"))
            .await
            .expect("publish");
        session.set_catalog(tracks).expect("catalog");
        let mut frames = frames.into_iter();
        // A keyframe first, so the packager (started by the first request)
        // begins with it; then the rest of the clip.
        if let Some(f) = frames.next() {
            session.publish(f).expect("frame");
        }
        let url = format!("http://{addr}/dash/live/clip/manifest.mpd");
        let mpd_url = url.clone();
        let mpd = tokio::spawn(async move {
            tokio::task::spawn_blocking(move || {
                let out = Command::new("curl")
                    .args(["-sS", "--noproxy", "*", "--max-time", "20", &mpd_url])
                    .output()
                    .expect("curl");
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
            .await
            .expect("curl task")
        });
        // The request starts the packager: publish the rest once it has
        // subscribed (from the keyframe above).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while engine
            .stream(&key)
            .is_none_or(|s| !s.subscribers.iter().any(|x| x.protocol == "dash"))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the MPD request did not start the packager"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for f in frames {
            session.publish(f).expect("frame");
            tokio::task::yield_now().await;
        }
        let mpd = mpd.await.expect("mpd");
        let crc = tokio::task::spawn_blocking(move || {
            ffmpeg_framecrc_text(&url, &["-t", "6"], Duration::from_secs(120))
        })
        .await
        .expect("ffmpeg task");
        session.finish().await;
        (crc, mpd)
    })
}

fn check(codec: &str, codecs_prefix: &str) {
    let (crc, mpd) = play(codec);
    assert!(mpd.contains(codecs_prefix), "{mpd}");
    assert!(mpd.contains("codecs=\"mp4a.40.2\""), "{mpd}");
    let lines = |stream: &str| {
        crc.lines()
            .filter(|l| l.starts_with(&format!("{stream},")))
            .count()
    };
    assert!(crc.contains("#codec_id 0: rawvideo"), "{crc}");
    assert!(crc.contains("#codec_id 1: pcm_"), "{crc}");
    let (video, audio) = (lines("0"), lines("1"));
    eprintln!("{codec}: {video} video frames, {audio} audio frames");
    // 6 s at 25 fps, and 6 s of 48 kHz AAC (281 frames of 1024 samples).
    assert!((140..=155).contains(&video), "{video} video frames\n{mpd}");
    assert!((270..=290).contains(&audio), "{audio} audio frames");
}

#[test]
fn h265_and_aac_are_decoded_by_ffmpeg_from_the_mpd() {
    check("h265", "codecs=\"hvc1.1.6.L");
}

#[test]
fn h264_and_aac_are_decoded_by_ffmpeg_from_the_mpd() {
    check("h264", "codecs=\"avc1.");
}
