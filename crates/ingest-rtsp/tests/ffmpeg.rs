//! RTSP publish and read against ffmpeg 5.1 on loopback, RTP interleaved on
//! TCP and over UDP: what the kernel got from ffmpeg is checked frame by frame (codecs,
//! keyframe first, AVCC payloads, monotonic timestamps at the right
//! rate), and what ffmpeg got from us is decoded and counted with
//! `framecrc`.
//!
//! Every wait is bounded; every child process is killed when its handle drops.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tidewater_core::{
    AppSpec, CancellationToken, Codec, Engine, Event, InboundProtocol, Request, StreamKey,
    Subscription,
};
use tidewater_media::codec::length_prefixed_nals;
use tidewater_rtsp::{Rtsp, RtspConfig};
use tidewater_tests::{FrameCrc, ffmpeg_framecrc_command};
use tokio::process::{Child, Command};
use tokio::time::{Instant, timeout};

struct Harness {
    engine: Engine,
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Harness {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .build()
        .expect("engine");
    let rtsp = Arc::new(
        Rtsp::new(RtspConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            rtp_port: 0,
            rtcp_port: 0,
            ..RtspConfig::default()
        })
        .expect("config"),
    );
    let shutdown = CancellationToken::new();
    let workers: Vec<Arc<dyn InboundProtocol>> = vec![rtsp.clone()];
    tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.serve(workers, shutdown).await }
    });
    let addr = timeout(Duration::from_secs(5), rtsp.listening())
        .await
        .expect("rtsp listener bound");
    Harness {
        engine,
        addr,
        shutdown,
    }
}

/// ffmpeg publishing H.264 (no B-frames, 25 fps, a keyframe every second)
/// and AAC (48 kHz) from lavfi over RTSP with RTP on `transport` (`tcp` or
/// `udp`), for `seconds`.
fn publish(url: &str, seconds: u32, transport: &str) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "0",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-b:a", "64k", "-t", &seconds.to_string()])
        .args(["-f", "rtsp", "-rtsp_transport", transport, url])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg (install the ffmpeg package): {e}"))
}

/// Subscribes once the stream is live (within 15 s).
async fn subscribe_when_live(engine: &Engine, key: &str) -> Subscription {
    let key = StreamKey::parse(key).expect("key");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(s) = engine.subscribe(Request::new(key.clone(), "test")).await {
            return s;
        }
        assert!(Instant::now() < deadline, "the stream never went live");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_h264_and_aac_over_tcp() {
    published_frames_are_right("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_h264_and_aac_over_udp() {
    published_frames_are_right("udp").await;
}

async fn published_frames_are_right(transport: &str) {
    let h = start().await;
    let mut ffmpeg = publish(&format!("rtsp://{}/live/cam1", h.addr), 6, transport);
    let mut sub = subscribe_when_live(&h.engine, "live/cam1").await;
    let mut codecs = Vec::new();
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    let mut first_video_key = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while video.len() < 75 || audio.len() < 100 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(event) = timeout(left, sub.recv()).await else {
            break;
        };
        match event {
            Ok(Event::Catalog(c)) => {
                codecs = c
                    .tracks()
                    .iter()
                    .map(|t| (t.codec, t.timescale, t.config.is_some()))
                    .collect()
            }
            Ok(Event::Frame(f)) => {
                let f = f.frame();
                match f.codec {
                    Codec::H264 => {
                        first_video_key.get_or_insert(f.is_keyframe());
                        let nals = length_prefixed_nals(&f.payload, 4).expect("AVCC payload");
                        assert!(
                            nals.iter().all(|n| !n.is_empty() && n[0] & 0x1f != 9),
                            "no empty NAL units, no AUD"
                        );
                        video.push(f.pts);
                    }
                    Codec::Aac => audio.push(f.pts),
                    other => panic!("unexpected codec {other:?}"),
                }
            }
            Ok(other) => eprintln!("event {other:?}"),
            Err(e) => {
                eprintln!("subscription ended: {e:?}");
                break;
            }
        }
    }
    drop(ffmpeg.kill().await);
    eprintln!(
        "published: {} video frames, {} audio frames, {codecs:?}",
        video.len(),
        audio.len()
    );
    assert_eq!(
        codecs,
        vec![(Codec::H264, 90_000, true), (Codec::Aac, 48_000, true)]
    );
    assert_eq!(first_video_key, Some(true), "video starts at a keyframe");
    assert!(video.len() >= 75, "video frames: {}", video.len());
    assert!(audio.len() >= 100, "audio frames: {}", audio.len());
    assert!(
        video.windows(2).all(|w| w[1] > w[0]),
        "video timestamps increase"
    );
    assert!(
        audio.windows(2).all(|w| w[1] > w[0]),
        "audio timestamps increase"
    );
    // 25 fps at 90 kHz, 1024 samples per AAC frame at 48 kHz.
    let steps = |ts: &[i64], step: i64| ts.windows(2).filter(|w| w[1] - w[0] == step).count();
    assert!(
        steps(&video, 3600) * 10 >= (video.len() - 1) * 9,
        "video steps of 3600: {video:?}"
    );
    assert!(
        steps(&audio, 1024) * 10 >= (audio.len() - 1) * 9,
        "audio steps of 1024: {audio:?}"
    );
}

/// ffmpeg decoding `url` (RTSP with `transport`) for `seconds` into
/// framecrc, within a bound.
async fn read_back(url: &str, transport: &str, seconds: u32) -> (FrameCrc, String) {
    let mut cmd = Command::from(ffmpeg_framecrc_command(
        &["-rtsp_transport", transport],
        url,
        &["-t", &seconds.to_string()],
    ));
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg: {e}"));
    let out = timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the reader finished")
        .expect("ffmpeg output");
    (
        FrameCrc::parse(&String::from_utf8_lossy(&out.stdout)),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_reads_back_over_tcp() {
    reads_back_decoded("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_reads_back_over_udp() {
    reads_back_decoded("udp").await;
}

/// The codecs ffprobe finds in the description of `url`, in order.
async fn probe_codecs(url: &str, transport: &str) -> Vec<String> {
    let out = timeout(
        Duration::from_secs(30),
        Command::new("ffprobe")
            .args(["-v", "error", "-rtsp_transport", transport])
            .args([
                "-show_entries",
                "stream=codec_name,sample_rate,width",
                "-of",
                "csv=p=0",
                url,
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ffprobe finished")
    .expect("ffprobe ran");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end_matches(',').to_string())
        .collect()
}

async fn reads_back_decoded(transport: &str) {
    let h = start().await;
    let _ffmpeg = publish(&format!("rtsp://{}/live/cam2", h.addr), 30, "tcp");
    drop(subscribe_when_live(&h.engine, "live/cam2").await);
    let url = format!("rtsp://{}/live/cam2", h.addr);
    assert_eq!(
        probe_codecs(&url, transport).await,
        vec!["h264,320".to_string(), "aac,48000".to_string()],
        "what ffprobe finds over {transport}"
    );
    let (crc, stderr) = read_back(&format!("rtsp://{}/live/cam2", h.addr), transport, 4).await;
    assert_eq!(crc.codecs.len(), 2, "two streams: {crc:?}\n{stderr}");
    let video = crc
        .codecs
        .iter()
        .position(|c| c == "rawvideo")
        .expect("decoded video") as u32;
    let audio = crc
        .codecs
        .iter()
        .position(|c| c.starts_with("pcm_"))
        .expect("decoded audio") as u32;
    // 4 s at 25 fps; the reader starts at the cached GOP.
    let frames = crc.stream(video).len();
    eprintln!(
        "read back: {frames} video frames, {} audio frames",
        crc.stream(audio).len()
    );
    assert!(frames >= 75, "decoded video frames: {frames}\n{stderr}");
    assert!(!crc.stream(audio).is_empty(), "decoded audio\n{stderr}");
    assert!(crc.monotonic(), "timestamps increase");
    assert!(
        stderr.is_empty() || !stderr.contains("error while decoding"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_a_stream_that_is_not_live_gets_404() {
    let h = start().await;
    let (crc, stderr) = read_back(&format!("rtsp://{}/live/nothing", h.addr), "tcp", 1).await;
    assert!(crc.lines.is_empty());
    assert!(stderr.contains("404"), "{stderr}");
    let stats = h.engine.context().listener_stats("rtsp").snapshot();
    assert!(stats.connections >= 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_h265_and_reads_it_back() {
    let h = start().await;
    let url = format!("rtsp://{}/live/hevc", h.addr);
    let _ffmpeg = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args([
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-x265-params", "bframes=0:keyint=25:log-level=error"])
        .args(["-t", "20", "-f", "rtsp", "-rtsp_transport", "tcp", &url])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg: {e}"));
    let mut sub = subscribe_when_live(&h.engine, "live/hevc").await;
    let mut catalog = None;
    let mut pts = Vec::new();
    let mut first_key = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while pts.len() < 25 {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, sub.recv()).await {
            Ok(Ok(Event::Catalog(c))) => {
                catalog = c.tracks().first().map(|t| (t.codec, t.config.is_some()))
            }
            Ok(Ok(Event::Frame(f))) => {
                let f = f.frame();
                first_key.get_or_insert(f.is_keyframe());
                assert!(
                    length_prefixed_nals(&f.payload, 4).is_some(),
                    "HVCC payload"
                );
                pts.push(f.pts);
            }
            Ok(Ok(_)) => {}
            other => panic!("no more frames after {}: {other:?}", pts.len()),
        }
    }
    drop(sub);
    assert_eq!(catalog, Some((Codec::H265, true)));
    assert_eq!(first_key, Some(true));
    assert!(
        pts.windows(2).all(|w| w[1] - w[0] == 3600),
        "25 fps at 90 kHz: {pts:?}"
    );
    let (crc, stderr) = read_back(&url, "tcp", 2).await;
    assert_eq!(crc.codecs, vec!["rawvideo".to_string()], "{stderr}");
    assert!(
        crc.stream(0).len() >= 40,
        "decoded H.265 frames: {}\n{stderr}",
        crc.stream(0).len()
    );
    assert!(crc.monotonic());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_opus_and_reads_it_back() {
    let h = start().await;
    let url = format!("rtsp://{}/live/opus", h.addr);
    let _ffmpeg = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "0",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "libopus", "-ac", "2", "-b:a", "64k"])
        .args(["-t", "20", "-f", "rtsp", "-rtsp_transport", "tcp", &url])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg: {e}"));
    let mut sub = subscribe_when_live(&h.engine, "live/opus").await;
    let mut codecs = Vec::new();
    let mut opus = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while opus.len() < 50 {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, sub.recv()).await {
            Ok(Ok(Event::Catalog(c))) => {
                codecs = c.tracks().iter().map(|t| (t.codec, t.timescale)).collect()
            }
            Ok(Ok(Event::Frame(f))) if f.frame().codec == Codec::Opus => {
                assert!(!f.frame().payload.is_empty());
                opus.push(f.frame().pts);
            }
            Ok(Ok(_)) => {}
            other => panic!(
                "no more frames after {} Opus packets: {other:?}",
                opus.len()
            ),
        }
    }
    drop(sub);
    assert_eq!(codecs, vec![(Codec::H264, 90_000), (Codec::Opus, 48_000)]);
    // 20 ms packets at 48 kHz.
    assert!(opus.windows(2).all(|w| w[1] - w[0] == 960), "{opus:?}");
    let (crc, stderr) = read_back(&url, "tcp", 3).await;
    assert_eq!(crc.codecs.len(), 2, "{crc:?}\n{stderr}");
    let audio = crc
        .codecs
        .iter()
        .position(|c| c.starts_with("pcm_"))
        .expect("decoded audio") as u32;
    assert!(
        crc.stream(audio).len() >= 50,
        "decoded Opus frames: {}\n{stderr}\n{:?}",
        crc.stream(audio).len(),
        crc.lines.iter().take(8).collect::<Vec<_>>()
    );
    assert!(crc.monotonic());
}

/// Frames published into the kernel as RTMP publishes them (1 kHz
/// timestamps, presentation 80 ms after decode) are read over RTSP and
/// decoded by ffmpeg: the egress converts timescales and stamps
/// presentation times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_frames_in_a_millisecond_timescale_are_read_over_rtsp() {
    use tidewater_core::{Frame, TrackId, TrackInfo};
    use tidewater_media::codec::{annexb_nals, build_avcc, to_length_prefixed};

    let h = start().await;
    let dir = tidewater_tests::TempDir::new("rtsp-kernel");
    let es = dir.file("video.h264");
    tidewater_tests::tools::encode_annexb(&es, false, 25, 4, 25);
    let data = std::fs::read(&es).expect("encoded");
    // Access units start at each access unit delimiter.
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    for nal in annexb_nals(&data) {
        match nal.first().map(|b| b & 0x1f) {
            Some(9) => units.push(Vec::new()),
            Some(_) => {
                if let Some(u) = units.last_mut() {
                    u.push(nal)
                }
            }
            None => {}
        }
    }
    let first = units.first().expect("access units");
    let find = |t: u8| {
        first
            .iter()
            .copied()
            .filter(|n| n[0] & 0x1f == t)
            .collect::<Vec<&[u8]>>()
    };
    let avcc = build_avcc(&find(7), &find(8)).expect("avcC");
    let frames: Vec<(bool, tidewater_core::bytes::Bytes)> = units
        .iter()
        .map(|u| {
            (
                u.iter().any(|n| n[0] & 0x1f == 5),
                to_length_prefixed(u.iter().copied()),
            )
        })
        .collect();
    let mut publisher = h
        .engine
        .open_publish(Request::new(
            StreamKey::parse("live/kernel").expect("key"),
            "test",
        ))
        .await
        .expect("publish");
    publisher
        .set_catalog(vec![
            TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
                .with_timescale(1000)
                .with_config(avcc),
        ])
        .expect("catalog");
    let feeder = tokio::spawn(async move {
        // Twice through the file: 8 s at 25 fps, paced.
        for (i, (key, payload)) in frames.iter().chain(frames.iter()).enumerate() {
            let dts = i as i64 * 40;
            let frame = Frame::video(
                TrackId(1),
                Codec::H264,
                dts,
                dts + 80,
                *key,
                payload.clone(),
            );
            if publisher.publish(frame).is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        publisher.finish().await;
    });
    // The reader joins once the first frames (a keyframe first) are in.
    let key = StreamKey::parse("live/kernel").expect("key");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.engine.stream(&key).is_none_or(|s| s.qos.frames == 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no frame published within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (crc, stderr) = read_back(&format!("rtsp://{}/live/kernel", h.addr), "tcp", 3).await;
    feeder.abort();
    assert_eq!(crc.codecs, vec!["rawvideo".to_string()], "{stderr}");
    let frames = crc.stream(0).len();
    assert!(frames >= 60, "decoded frames: {frames}\n{stderr}");
    assert!(crc.monotonic());
    // 25 fps: consecutive frames one tick of 1/25 s apart.
    let pts: Vec<i64> = crc.stream(0).iter().map(|l| l.pts).collect();
    assert!(pts.windows(2).all(|w| w[1] - w[0] == 1), "{pts:?}");
}
