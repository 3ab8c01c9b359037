//! RTMP publish and play, and HTTP-FLV, against real ffmpeg / ffprobe on loopback.
//!
//! Every wait is bounded; every child process is killed when its handle drops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidewater_core::{AppSpec, CancellationToken, Codec, Engine, InboundProtocol, StreamKey};
use tidewater_ingest_rtmp::{Rtmp, RtmpConfig, http_flv_router};
use tidewater_tests::{
    FrameCrc, ProbedFrames, ffmpeg_framecrc_command, ffmpeg_publish_bframes_command,
    ffprobe_frames_command,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::time::timeout;

struct Harness {
    engine: Engine,
    rtmp: SocketAddr,
    http: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Harness {
    start_with(
        Engine::builder()
            .app("live", AppSpec::default())
            .build()
            .expect("engine"),
    )
    .await
}

async fn start_with(engine: Engine) -> Harness {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
    let rtmp = Arc::new(Rtmp::new(RtmpConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..RtmpConfig::default()
    }));
    let shutdown = CancellationToken::new();
    let workers: Vec<Arc<dyn InboundProtocol>> = vec![rtmp.clone()];
    tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.serve(workers, shutdown).await }
    });
    let rtmp_addr = timeout(Duration::from_secs(5), rtmp.listening())
        .await
        .expect("rtmp listener bound");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("http bind");
    let http = listener.local_addr().expect("http addr");
    let app = http_flv_router(engine.context());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    });
    Harness {
        engine,
        rtmp: rtmp_addr,
        http,
        shutdown,
    }
}

/// Starts a client command of `tidewater_tests` under tokio: no input, its
/// output and errors captured, killed when its handle drops.
fn spawn(cmd: std::process::Command) -> Child {
    let program = cmd.get_program().to_string_lossy().into_owned();
    Command::from(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} (install the ffmpeg package): {e}"))
}

/// ffmpeg publishing the test clip (H.264 with B-frames, AAC) for `seconds`.
fn publish(addr: SocketAddr, path: &str, seconds: u32, gop: u32) -> Child {
    spawn(ffmpeg_publish_bframes_command(
        &format!("rtmp://{addr}/{path}"),
        seconds,
        gop,
    ))
}

async fn finish(child: Child, limit: Duration, what: &str) -> Output {
    timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Waits until the stream is live with a catalog of `tracks` tracks.
async fn wait_live(engine: &Engine, key: &str, tracks: usize) -> Instant {
    let key = StreamKey::parse(key).expect("key");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = engine.stream(&key)
            && s.catalog.as_ref().is_some_and(|c| c.tracks.len() == tracks)
        {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{key} not live with {tracks} tracks within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` until it holds; panics naming `what` after `limit`.
async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `ffprobe -show_frames` of a URL: streams and frames as key/value maps.
fn probe(url: &str) -> Child {
    spawn(ffprobe_frames_command(url))
}

/// Codecs, counts, and timestamps of a viewer that joined `joined` seconds
/// into a `seconds`-long 25 fps clip with `gop`-frame GOPs.
fn check_viewer(p: &ProbedFrames, what: &str, joined: f64, seconds: f64, gop: f64) {
    // Exactly the two media streams: no data or subtitle stream made of
    // script tags the demuxer did not take as metadata.
    let kinds: Vec<_> = p
        .streams
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s.get("codec_type").map_or("?", String::as_str),
                s.get("codec_name").map_or("?", String::as_str)
            )
        })
        .collect();
    assert_eq!(kinds, ["video:h264", "audio:aac"], "{what}: streams");
    let codec = |t: &str| {
        p.streams
            .iter()
            .find(|s| s.get("codec_type").is_some_and(|c| c == t))
            .and_then(|s| s.get("codec_name").cloned())
    };
    assert_eq!(
        codec("video").as_deref(),
        Some("h264"),
        "{what}: video codec"
    );
    assert_eq!(
        codec("audio").as_deref(),
        Some("aac"),
        "{what}: audio codec"
    );
    let video = p
        .streams
        .iter()
        .find(|s| s.get("codec_type").is_some_and(|c| c == "video"))
        .expect("video stream");
    assert_eq!(
        (
            video.get("width").map(String::as_str),
            video.get("height").map(String::as_str)
        ),
        (Some("320"), Some("240")),
        "{what}: picture size"
    );
    let audio = p
        .streams
        .iter()
        .find(|s| s.get("codec_type").is_some_and(|c| c == "audio"))
        .expect("audio stream");
    assert_eq!(
        audio.get("sample_rate").map(String::as_str),
        Some("44100"),
        "{what}"
    );

    // Instant start: the first picture is the keyframe of the GOP that was
    // cached when the viewer joined, not the next one.
    let (first, key) = *p
        .video
        .first()
        .unwrap_or_else(|| panic!("{what}: no video frames"));
    assert!(key, "{what}: first video frame is not a keyframe");
    let gop_seconds = gop / 25.0;
    assert!(
        first <= joined + 0.3,
        "{what}: first frame at {first:.3} s for a viewer that joined at {joined:.3} s: not started from the cached GOP"
    );
    // Pictures are presented a little after their decode time (B-frames).
    let gop_index = (first / gop_seconds).floor();
    assert!(
        first - gop_index * gop_seconds < 0.2,
        "{what}: first frame at {first:.3} s is not a GOP start"
    );
    // Lossless and in order: every 40 ms picture from there to the end.
    for w in p.video.windows(2) {
        let step = w[1].0 - w[0].0;
        assert!(
            (step - 0.040).abs() < 0.0015,
            "{what}: video step {step:.4} s between {:.3} and {:.3}",
            w[0].0,
            w[1].0
        );
    }
    let expected = ((seconds - gop_index * gop_seconds) * 25.0).round() as usize;
    assert!(
        p.video.len() == expected,
        "{what}: {} video frames from {first:.3} s, expected {expected}",
        p.video.len()
    );
    assert!(
        p.audio.len() as f64 >= (seconds - first - 0.5) * 44100.0 / 1024.0,
        "{what}: only {} audio frames",
        p.audio.len()
    );
    for w in p.audio.windows(2) {
        let step = w[1] - w[0];
        assert!(
            (0.021..=0.0255).contains(&step),
            "{what}: audio step {step:.4} s between {:.3} and {:.3}",
            w[0],
            w[1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_and_ffprobe_reads_rtmp_and_http_flv_from_the_cached_gop() {
    let h = start().await;
    let (seconds, gop) = (6, 50);
    let publisher = publish(h.rtmp, "live/test", seconds, gop);
    let live = wait_live(&h.engine, "live/test", 2).await;

    // The catalog and metadata the kernel got.
    let snap = h
        .engine
        .stream(&StreamKey::parse("live/test").expect("key"))
        .expect("live");
    let cat = snap.catalog.expect("catalog");
    assert_eq!(cat.tracks[0].codec, Codec::H264);
    assert_eq!(
        cat.tracks[0].video.map(|v| (v.width, v.height)),
        Some((320, 240))
    );
    assert!(cat.tracks[0].config_bytes > 10, "avcC in the catalog");
    assert_eq!(cat.tracks[1].codec, Codec::Aac);
    assert_eq!(
        cat.tracks[1].audio.map(|a| (a.sample_rate, a.channels)),
        Some((44100, 1))
    );
    assert_eq!(snap.protocol, "rtmp");
    assert_eq!(snap.metadata.get("width").map(String::as_str), Some("320"));
    assert_eq!(
        snap.metadata.get("framerate").map(String::as_str),
        Some("25")
    );
    assert!(
        snap.metadata
            .get("encoder")
            .is_some_and(|e| e.starts_with("Lavf")),
        "{:?}",
        snap.metadata
    );

    // Join late, a little over one second in.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let joined = live.elapsed().as_secs_f64();
    let rtmp_view = probe(&format!("rtmp://{}/live/test", h.rtmp));
    let flv_view = probe(&format!("http://{}/flv/live/test.flv", h.http));

    // Viewers share one build of each frame: derived bytes are accounted.
    let key = StreamKey::parse("live/test").expect("key");
    wait_until(
        "two viewers on shared derived outputs",
        Duration::from_secs(15),
        || {
            h.engine
                .stream(&key)
                .is_some_and(|snap| snap.subscribers.len() == 2 && snap.derived_bytes > 0)
        },
    )
    .await;

    let out = finish(publisher, Duration::from_secs(30), "ffmpeg publisher").await;
    assert!(
        out.status.success(),
        "publisher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The end of the publish ends both viewers.
    let rtmp_out = finish(rtmp_view, Duration::from_secs(20), "ffprobe over RTMP").await;
    let flv_out = finish(flv_view, Duration::from_secs(20), "ffprobe over HTTP-FLV").await;
    check_viewer(
        &ProbedFrames::parse(&rtmp_out, "rtmp"),
        "rtmp",
        joined,
        f64::from(seconds),
        f64::from(gop),
    );
    check_viewer(
        &ProbedFrames::parse(&flv_out, "http-flv"),
        "http-flv",
        joined,
        f64::from(seconds),
        f64::from(gop),
    );
}

/// `ffmpeg -f framecrc` of the video of a URL: (pts, crc) per decoded picture.
fn framecrc(url: &str) -> Child {
    spawn(ffmpeg_framecrc_command(
        &["-rw_timeout", "15000000"],
        url,
        &["-map", "0:v"],
    ))
}

fn parse_framecrc(out: &Output, what: &str) -> Vec<(i64, String)> {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    FrameCrc::parse(&String::from_utf8_lossy(&out.stdout))
        .lines
        .into_iter()
        .map(|l| (l.dts, l.crc))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rtmp_viewers_in_parallel_decode_the_same_pictures_and_end_with_the_publish() {
    let h = start().await;
    let publisher = publish(h.rtmp, "live/two", 5, 50);
    wait_live(&h.engine, "live/two", 2).await;
    let url = format!("rtmp://{}/live/two", h.rtmp);
    let a = framecrc(&url);
    let b = framecrc(&url);
    let out = finish(publisher, Duration::from_secs(30), "ffmpeg publisher").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = parse_framecrc(
        &finish(a, Duration::from_secs(20), "viewer a").await,
        "viewer a",
    );
    let b = parse_framecrc(
        &finish(b, Duration::from_secs(20), "viewer b").await,
        "viewer b",
    );
    for (v, name) in [(&a, "a"), (&b, "b")] {
        assert!(
            v.len() >= 75,
            "viewer {name} decoded only {} pictures",
            v.len()
        );
        // framecrc numbers pictures in the 1/25 time base: no gaps, no repeats.
        for w in v.windows(2) {
            assert_eq!(
                w[1].0 - w[0].0,
                1,
                "viewer {name}: gap or repeat at {}",
                w[0].0
            );
        }
    }
    // Where both have a picture, it is the same picture.
    let crcs: HashMap<i64, &String> = a.iter().map(|(p, c)| (*p, c)).collect();
    let common: Vec<_> = b.iter().filter(|(p, _)| crcs.contains_key(p)).collect();
    assert!(
        common.len() >= 75,
        "the viewers share {} pictures",
        common.len()
    );
    for (p, c) in common {
        assert_eq!(crcs[p], c, "picture {p} differs between viewers");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_publish_and_play_get_an_rtmp_error_status() {
    let h = start().await;
    // Play of a stream that is not live.
    let out = finish(
        framecrc(&format!("rtmp://{}/live/nothing", h.rtmp)),
        Duration::from_secs(20),
        "ffmpeg play of a missing stream",
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Server error") && err.contains("not being published"),
        "ffmpeg was not told why: {err}"
    );

    // Publish to an application that does not exist.
    let out = finish(
        publish(h.rtmp, "nosuchapp/x", 2, 50),
        Duration::from_secs(20),
        "publish to an unknown app",
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("unknown application"), "{err}");

    // HTTP-FLV of a stream that is not live: 404, not a hang.
    let mut http = tokio::net::TcpStream::connect(h.http)
        .await
        .expect("http connect");
    http.write_all(
        b"GET /flv/live/nothing.flv HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("request");
    let mut response = Vec::new();
    timeout(Duration::from_secs(5), http.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("response");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");

    // Publish to a taken stream.
    let first = publish(h.rtmp, "live/taken", 6, 50);
    wait_live(&h.engine, "live/taken", 2).await;
    let out = finish(
        publish(h.rtmp, "live/taken", 2, 50),
        Duration::from_secs(20),
        "second publisher",
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("already being published"), "{err}");
    // The first publisher was not disturbed.
    let out = finish(first, Duration::from_secs(30), "first publisher").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A raw client: handshake by hand, then whatever bytes the test wants.
async fn raw_client(addr: SocketAddr) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0u8; 1536]);
    s.write_all(&c0c1).await.expect("c0c1");
    let mut s0s1s2 = vec![0u8; 1 + 1536 * 2];
    timeout(Duration::from_secs(5), s.read_exact(&mut s0s1s2))
        .await
        .expect("s0s1s2 in time")
        .expect("s0s1s2");
    s.write_all(&[0u8; 1536]).await.expect("c2");
    s
}

/// Reads until the server closes; fails if it does not within 5 s.
async fn closed_by_server(s: &mut tokio::net::TcpStream) {
    let mut buf = [0u8; 4096];
    let closed = timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept a bad connection open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_only_its_own_connection() {
    let h = start().await;
    let publisher = publish(h.rtmp, "live/steady", 5, 50);
    wait_live(&h.engine, "live/steady", 2).await;
    let key = StreamKey::parse("live/steady").expect("key");
    // The encoder's lookahead holds the first frames back for a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.engine.stream(&key).is_none_or(|s| s.qos.frames == 0) {
        assert!(Instant::now() < deadline, "no frames within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let frames_before = h.engine.stream(&key).expect("live").qos.frames;

    // A chunk continuing a chunk stream that never started.
    let mut s = raw_client(h.rtmp).await;
    s.write_all(&[0x43, 0, 0, 0, 0, 0, 5, 20])
        .await
        .expect("write");
    closed_by_server(&mut s).await;
    // An absurd message length (16 MiB) on a fresh chunk stream.
    let mut s = raw_client(h.rtmp).await;
    s.write_all(&[0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0])
        .await
        .expect("write");
    closed_by_server(&mut s).await;
    // A bad handshake version.
    let mut s = tokio::net::TcpStream::connect(h.rtmp)
        .await
        .expect("connect");
    s.write_all(&[0x06; 1537]).await.expect("write");
    closed_by_server(&mut s).await;
    // An early disconnect in the middle of the handshake.
    let mut s = tokio::net::TcpStream::connect(h.rtmp)
        .await
        .expect("connect");
    s.write_all(&[3, 0, 0]).await.expect("write");
    drop(s);

    // The publish keeps flowing (and stays live) after all of that.
    wait_until("the publish kept flowing", Duration::from_secs(10), || {
        h.engine
            .stream(&key)
            .is_some_and(|s| s.qos.frames > frames_before)
    })
    .await;
    let out = finish(publisher, Duration::from_secs(30), "ffmpeg publisher").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `connect`, `createStream` and `play` for `live/{stream}` on a raw client.
async fn raw_play(s: &mut tokio::net::TcpStream, stream: &str) {
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::messages::{MessagePayload, RtmpMessage};
    use rml_rtmp::rml_amf0::Amf0Value;
    use rml_rtmp::time::RtmpTimestamp;
    let mut ser = ChunkSerializer::new();
    let mut app = HashMap::new();
    app.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
    let commands = [
        (0, "connect", 1.0, Amf0Value::Object(app), vec![]),
        (0, "createStream", 2.0, Amf0Value::Null, vec![]),
        (
            1,
            "play",
            3.0,
            Amf0Value::Null,
            vec![Amf0Value::Utf8String(stream.into())],
        ),
    ];
    for (stream_id, name, txn, obj, args) in commands {
        let m = RtmpMessage::Amf0Command {
            command_name: name.into(),
            transaction_id: txn,
            command_object: obj,
            additional_arguments: args,
        };
        let p = MessagePayload::from_rtmp_message(m, RtmpTimestamp::new(0), stream_id)
            .expect("payload");
        let bytes = ser.serialize(&p, false, false).expect("serialize").bytes;
        s.write_all(&bytes).await.expect("command");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_stops_reading_is_disconnected_after_the_write_timeout() {
    use bytes::Bytes;
    use tidewater_core::{Frame, Request, TimestampWrap, TrackId, TrackInfo};
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .build()
        .expect("engine");
    let rtmp = Arc::new(Rtmp::new(RtmpConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        write_timeout: Duration::from_millis(800),
        ..RtmpConfig::default()
    }));
    let shutdown = CancellationToken::new();
    let _stop = CancelOnDrop(shutdown.clone());
    let workers: Vec<Arc<dyn InboundProtocol>> = vec![rtmp.clone()];
    tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.serve(workers, shutdown).await }
    });
    let addr = timeout(Duration::from_secs(5), rtmp.listening())
        .await
        .expect("bound");

    // A fast publisher straight into the kernel: 256 KiB keyframes, 100 a second.
    let key = StreamKey::parse("live/fast").expect("key");
    let mut publisher = engine
        .open_publish(Request::new(key.clone(), "test"))
        .await
        .expect("publish");
    publisher
        .set_catalog(vec![
            TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
                .with_timescale(1000)
                .with_wrap(TimestampWrap::RTMP)
                .with_config(Bytes::from_static(&[1, 0x64, 0, 0x0d, 0xff, 0xe0, 0])),
        ])
        .expect("catalog");
    let payload = Bytes::from(vec![0u8; 256 * 1024]);
    let feeding = tokio::spawn(async move {
        for i in 0..1500i64 {
            let frame = Frame::video(
                TrackId(1),
                Codec::H264,
                i * 10,
                i * 10,
                true,
                payload.clone(),
            );
            publisher
                .publish(frame)
                .expect("publishing never fails for a slow viewer");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        publisher.finish().await;
    });

    let mut viewer = raw_client(addr).await;
    raw_play(&mut viewer, "fast").await;
    // Joined, then never reads again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.stream(&key).is_none_or(|s| s.subscribers.is_empty()) {
        assert!(Instant::now() < deadline, "the viewer never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine
        .stream(&key)
        .is_some_and(|s| !s.subscribers.is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "a viewer blocked for 10 s was not disconnected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!feeding.is_finished(), "the publisher was not held up");
    feeding.abort();
    drop(viewer);
}

struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Allows publishing only with `?token=s3cret`, and remembers what it was asked.
struct TokenAuth(Arc<std::sync::Mutex<Vec<tidewater_core::AuthRequest>>>);

#[async_trait::async_trait]
impl tidewater_core::Authorizer for TokenAuth {
    async fn authorize(
        &self,
        request: &tidewater_core::AuthRequest,
    ) -> Result<tidewater_core::Identity, tidewater_core::Refusal> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request.clone());
        match request.token() {
            Some("s3cret") => Ok(tidewater_core::Identity::anonymous()),
            _ => Err("bad token".into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_query_and_peer_reach_the_authorizer() {
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .authorizer(TokenAuth(Arc::clone(&asked)))
        .build()
        .expect("engine");
    let h = start_with(engine).await;
    let out = finish(
        publish(h.rtmp, "live/cam?token=wrong", 2, 50),
        Duration::from_secs(20),
        "publisher with a wrong token",
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Server error") && err.contains("bad token"),
        "{err}"
    );
    let out = finish(
        publish(h.rtmp, "live/cam?token=s3cret", 2, 50),
        Duration::from_secs(20),
        "publisher with the right token",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let asked = asked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    for (req, query) in asked.iter().zip(["token=wrong", "token=s3cret"]) {
        assert_eq!(req.action, tidewater_core::Action::Publish);
        assert_eq!(req.protocol, "rtmp");
        assert_eq!(req.key.as_ref().map(|k| k.as_str()), Some("live/cam"));
        assert_eq!(req.query.as_deref(), Some(query));
        assert!(
            req.peer.is_some_and(|p| p.ip().is_loopback()),
            "{:?}",
            req.peer
        );
    }
}
