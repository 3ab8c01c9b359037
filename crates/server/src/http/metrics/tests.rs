//! `/metrics` scraped over HTTP and read back with a Prometheus text parser.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};
use tidewater::bytes::Bytes;
use tidewater::rtmp::PushStatuses;
use tidewater::{
    Action, AppSpec, AuthRequest, Authorizer, Codec, Credentials, Engine, Frame, PublishSession,
    Request, StreamKey, TrackId, TrackInfo,
};
use tidewater_auth::{AuthConfig, Authorization, RefusalCause, UserConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{CONTENT_TYPE, Metrics};
use crate::http::test_client::{Client, spawn};
use crate::{Config, Reloader};

fn key(text: &str) -> StreamKey {
    StreamKey::parse(text).expect("key")
}

fn engine() -> Engine {
    Engine::builder()
        .app("live", AppSpec::default())
        .build()
        .expect("engine")
}

/// A stream with H.264 and AAC tracks and one GOP of `frames` video frames
/// of 100 bytes (the first a keyframe).
async fn publish(engine: &Engine, path: &str, frames: i64) -> PublishSession {
    let mut p = engine
        .open_publish(Request::new(key(path), "test-in"))
        .await
        .expect("publish");
    p.set_catalog(vec![
        TrackInfo::video(TrackId(1), Codec::H264, 64, 64)
            .with_config(Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 0])),
        TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2)
            .with_config(Bytes::from_static(&[0x11, 0x90])),
    ])
    .expect("catalog");
    for i in 0..frames {
        p.publish(Frame::video(
            TrackId(1),
            Codec::H264,
            i * 3000,
            i * 3000,
            i == 0,
            Bytes::from(vec![0u8; 100]),
        ))
        .expect("frame");
    }
    p
}

/// An HTTP-FLV reader that has received its first bytes and keeps reading.
struct FlvReader {
    received: tokio::task::JoinHandle<()>,
}

async fn flv_reader(addr: SocketAddr, path: &str) -> FlvReader {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    let request =
        format!("GET /flv/{path}.flv HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut buf = vec![0u8; 64 * 1024];
    let n = socket.read(&mut buf).await.expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let received = tokio::spawn(async move {
        while let Ok(n) = socket.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    FlvReader { received }
}

async fn scrape(client: Client) -> Vec<Sample> {
    let response = client.full("GET", "/metrics").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.header("content-type"), Some(CONTENT_TYPE));
    parse(&response.body)
}

fn parse(text: &str) -> Vec<Sample> {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text")
        .samples
}

/// The one sample of `metric` whose labels include `labels`.
fn find<'a>(samples: &'a [Sample], metric: &str, labels: &[(&str, &str)]) -> &'a Value {
    let found: Vec<_> = samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{metric} {labels:?}: {found:#?}");
    &found[0].value
}

fn counter(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(samples, metric, labels) {
        Value::Counter(v) => *v,
        other => panic!("{metric} {labels:?} is not a counter: {other:?}"),
    }
}

fn gauge(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(samples, metric, labels) {
        Value::Gauge(v) => *v,
        other => panic!("{metric} {labels:?} is not a gauge: {other:?}"),
    }
}

/// A histogram's observation count (its `+Inf` bucket).
fn histogram_count(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(samples, metric, labels) {
        Value::Histogram(buckets) => {
            let counts: Vec<f64> = buckets.iter().map(|b| b.count).collect();
            assert!(
                counts.windows(2).all(|w| w[0] <= w[1]),
                "cumulative: {counts:?}"
            );
            let inf = buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .expect("an +Inf bucket");
            inf.count
        }
        other => panic!("{metric} {labels:?} is not a histogram: {other:?}"),
    }
}

#[tokio::test]
async fn a_scrape_shows_live_streams_with_their_readers_and_drops_ended_ones() {
    let engine = engine();
    let served = spawn(crate::http::router(engine.clone())).await;
    let client = Client(served.addr);

    let cam = publish(&engine, "live/cam1", 10).await;
    let gone = publish(&engine, "live/gone", 3).await;
    let flv_a = flv_reader(served.addr, "live/cam1").await;
    let flv_b = flv_reader(served.addr, "live/cam1").await;
    let mut inproc = engine
        .subscribe(Request::new(key("live/cam1"), "test-out"))
        .await
        .expect("subscribe");
    while let Some(Ok(_)) = inproc.try_recv() {}
    inproc.record_sent(500);
    let _gone_reader = engine
        .subscribe(Request::new(key("live/gone"), "test-out"))
        .await
        .expect("subscribe");
    let rtmp = engine.listener_stats("rtmp");
    let _open = rtmp.accepted();
    rtmp.refused("unauthorized");

    // The HTTP-FLV feeds count what they hand to their responses.
    let cam1 = [("path", "live/cam1"), ("protocol", "http-flv")];
    let mut samples = scrape(client).await;
    for _ in 0..100 {
        if counter(&samples, "tidewater_stream_bytes_out_total", &cam1) > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        samples = scrape(client).await;
    }

    assert_eq!(gauge(&samples, "tidewater_streams", &[]), 2.0);
    let publisher = [("path", "live/cam1"), ("protocol", "test-in")];
    assert_eq!(
        gauge(&samples, "tidewater_stream_publishers", &publisher),
        1.0
    );
    assert_eq!(
        counter(&samples, "tidewater_stream_frames_in_total", &publisher),
        10.0
    );
    assert_eq!(
        counter(&samples, "tidewater_stream_bytes_in_total", &publisher),
        1000.0
    );
    assert_eq!(gauge(&samples, "tidewater_stream_readers", &cam1), 2.0);
    // Header, catalog tags and ten video tags of 100 bytes, for each reader.
    let flv_bytes = counter(&samples, "tidewater_stream_bytes_out_total", &cam1);
    assert!(flv_bytes > 2.0 * 1000.0, "{flv_bytes}");
    assert_eq!(
        histogram_count(&samples, "tidewater_stream_join_seconds", &cam1),
        2.0
    );
    histogram_count(&samples, "tidewater_stream_reader_lag_seconds", &cam1);
    assert_eq!(
        counter(&samples, "tidewater_stream_skips_total", &cam1),
        0.0
    );
    assert_eq!(
        counter(&samples, "tidewater_stream_evictions_total", &cam1),
        0.0
    );
    let test_out = [("path", "live/cam1"), ("protocol", "test-out")];
    assert_eq!(gauge(&samples, "tidewater_stream_readers", &test_out), 1.0);
    assert_eq!(
        counter(&samples, "tidewater_stream_bytes_out_total", &test_out),
        500.0
    );

    let listener = [("listener", "rtmp")];
    assert_eq!(
        counter(&samples, "tidewater_listener_connections_total", &listener),
        1.0
    );
    assert_eq!(
        gauge(&samples, "tidewater_listener_open_connections", &listener),
        1.0
    );
    assert_eq!(
        counter(
            &samples,
            "tidewater_listener_refusals_total",
            &[("listener", "rtmp"), ("reason", "unauthorized")]
        ),
        1.0
    );
    assert!(gauge(&samples, "tidewater_uptime_seconds", &[]) >= 0.0);
    assert!(gauge(&samples, "tidewater_process_open_fds", &[]) >= 3.0);
    // At least the task serving this scrape.
    assert!(gauge(&samples, "tidewater_runtime_alive_tasks", &[]) >= 1.0);
    assert!(gauge(&samples, "tidewater_process_open_sockets", &[]) >= 3.0);
    assert!(
        samples
            .iter()
            .any(|s| s.labels.get("path") == Some("live/gone"))
    );

    // A reader that leaves keeps its counts; one stream ending takes all of
    // its series with it.
    drop(inproc);
    drop(gone);
    let samples = scrape(client).await;
    assert_eq!(gauge(&samples, "tidewater_streams", &[]), 1.0);
    assert_eq!(gauge(&samples, "tidewater_stream_readers", &test_out), 0.0);
    assert_eq!(
        counter(&samples, "tidewater_stream_bytes_out_total", &test_out),
        500.0
    );
    // Delivered frames are published every 256 frames, and when a reader leaves.
    assert_eq!(
        counter(&samples, "tidewater_stream_frames_out_total", &test_out),
        10.0
    );
    let left: Vec<_> = samples
        .iter()
        .filter(|s| s.labels.get("path") == Some("live/gone"))
        .collect();
    assert!(left.is_empty(), "series of an ended stream: {left:#?}");

    cam.finish().await;
    let samples = scrape(client).await;
    assert_eq!(gauge(&samples, "tidewater_streams", &[]), 0.0);
    assert!(samples.iter().all(|s| s.labels.get("path").is_none()));
    flv_a.received.await.expect("reader a");
    flv_b.received.await.expect("reader b");
    served.stop().await;
}

#[tokio::test]
async fn every_family_is_typed_and_named_tidewater() {
    let engine = engine();
    let _cam = publish(&engine, "live/cam1", 2).await;
    let _reader = engine
        .subscribe(Request::new(key("live/cam1"), "test-out"))
        .await
        .expect("subscribe");
    engine.listener_stats("srt").refused("handshake");
    let text = Metrics::new(engine).render();
    let mut types = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("name and type");
            types.insert(name.to_string(), kind.to_string());
        }
    }
    for sample in parse(&text) {
        assert!(sample.metric.starts_with("tidewater_"), "{}", sample.metric);
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                sample
                    .metric
                    .strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(&sample.metric);
        let kind = types
            .get(family)
            .unwrap_or_else(|| panic!("{} has no TYPE line", sample.metric));
        if kind == "counter" {
            assert!(sample.metric.ends_with("_total"), "{}", sample.metric);
        }
    }
    for family in [
        "tidewater_stream_publishers",
        "tidewater_stream_readers",
        "tidewater_stream_bytes_in_total",
        "tidewater_stream_bytes_out_total",
        "tidewater_stream_frames_in_total",
        "tidewater_stream_skips_total",
        "tidewater_stream_evictions_total",
        "tidewater_stream_reader_lag_seconds",
        "tidewater_stream_join_seconds",
        "tidewater_listener_refusals_total",
        "tidewater_uptime_seconds",
    ] {
        assert!(types.contains_key(family), "{family} missing:\n{text}");
    }
}

/// A request of `action` on `live/cam1` from `ip`, with a user and password
/// when given.
fn auth_request(action: Action, ip: [u8; 4], user: Option<(&str, &str)>) -> AuthRequest {
    let mut request = AuthRequest::new(action, "test")
        .key(key("live/cam1"))
        .peer(SocketAddr::from((ip, 40_000)));
    if let Some((user, pass)) = user {
        request = request.credentials(Credentials::UserPass {
            user: user.into(),
            pass: pass.into(),
        });
    }
    request
}

/// Every `tidewater_auth_refusals_total` series: cause → count.
fn refusals(samples: &[Sample]) -> HashMap<String, f64> {
    samples
        .iter()
        .filter(|s| s.metric == "tidewater_auth_refusals_total")
        .map(|s| {
            let cause = s.labels.get("cause").expect("a cause label").to_string();
            match s.value {
                Value::Counter(v) => (cause, v),
                ref other => panic!("refusals of {cause} is not a counter: {other:?}"),
            }
        })
        .collect()
}

#[tokio::test]
async fn the_authorizers_decisions_are_counted_by_cause() {
    let auth = Authorization::new(AuthConfig {
        users: vec![
            UserConfig::new("pub", "pub-secret").permit(Action::Publish, Some("live/*")),
            UserConfig::new("viewer", "view-secret").permit(Action::Read, Some("live/*")),
        ],
        ..AuthConfig::default()
    })
    .expect("auth");
    let local = [127, 0, 0, 1];
    let allowed = [
        auth_request(Action::Publish, local, Some(("pub", "pub-secret"))),
        auth_request(Action::Read, local, Some(("viewer", "view-secret"))),
        auth_request(Action::Read, local, Some(("viewer", "view-secret"))),
    ];
    for request in &allowed {
        auth.authorize(request).await.expect("allowed");
    }
    let refused = [
        // Wrong password, unknown user: invalid credentials.
        auth_request(Action::Read, local, Some(("viewer", "wrong"))),
        auth_request(Action::Read, [192, 0, 2, 7], Some(("nobody", "x"))),
        // Users configured: no anonymous access, not even from loopback.
        auth_request(Action::Read, local, None),
        // A viewer may not publish.
        auth_request(Action::Publish, local, Some(("viewer", "view-secret"))),
    ];
    for request in &refused {
        auth.authorize(request).await.expect_err("refused");
    }

    let served = spawn(super::router_with_authorization(
        engine(),
        Some(auth.clone()),
    ))
    .await;
    let samples = scrape(Client(served.addr)).await;
    assert_eq!(counter(&samples, "tidewater_auth_allowed_total", &[]), 3.0);
    let by_cause = refusals(&samples);
    // Every cause has its series, zeros included, and nothing else does.
    assert_eq!(by_cause.len(), RefusalCause::ALL.len(), "{by_cause:?}");
    for cause in RefusalCause::ALL {
        let want = match cause {
            RefusalCause::InvalidCredentials => 2.0,
            RefusalCause::AnonymousNotAllowed | RefusalCause::NotPermitted => 1.0,
            _ => 0.0,
        };
        assert_eq!(by_cause.get(cause.as_str()), Some(&want), "{cause}");
        assert!(
            cause
                .as_str()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'),
            "{cause} is not snake case"
        );
    }
    // The figures are the authorizer's own.
    let stats = auth.stats();
    assert_eq!(stats.allowed, 3);
    assert_eq!(stats.refused_total(), 4);

    // Later decisions show in the next scrape.
    auth.authorize(&auth_request(
        Action::Read,
        local,
        Some(("viewer", "wrong")),
    ))
    .await
    .expect_err("refused");
    let samples = scrape(Client(served.addr)).await;
    assert_eq!(
        refusals(&samples).get("invalid_credentials"),
        Some(&3.0),
        "a later refusal"
    );
    served.stop().await;
}

#[tokio::test]
async fn without_an_authorizer_there_are_no_auth_families() {
    let text = Metrics::new(engine()).render();
    assert!(!text.contains("tidewater_auth_"), "{text}");
}

#[tokio::test]
async fn the_servers_routes_count_the_servers_authorizer() {
    // Anyone may read metrics (the test client's peer address is unknown to
    // the guard); the same authorizer serves the engine, the HTTP guard and
    // the reloader, as in the server.
    let config = Config::from_toml_str(
        "[[auth.users]]\nuser = \"any\"\npermissions = [{ action = \"metrics\" }]\n",
    )
    .expect("config");
    let auth = config.auth.authorization().expect("auth");
    let engine = config.build_engine_with(&auth).expect("engine");
    let reloader = Reloader::new(None, config, auth.clone());
    let served = spawn(crate::http::router_with(
        engine,
        PushStatuses::default(),
        Some(reloader),
    ))
    .await;
    let client = Client(served.addr);
    let remote = auth_request(Action::Publish, [192, 0, 2, 7], None);
    auth.authorize(&remote)
        .await
        .expect_err("anonymous may not publish");

    let samples = scrape(client).await;
    // The guard allowed this scrape before it rendered.
    assert_eq!(counter(&samples, "tidewater_auth_allowed_total", &[]), 1.0);
    let by_cause = refusals(&samples);
    assert_eq!(by_cause.len(), RefusalCause::ALL.len(), "{by_cause:?}");
    assert_eq!(by_cause.values().sum::<f64>(), 1.0, "{by_cause:?}");
    assert_eq!(
        by_cause.get("anonymous_not_allowed"),
        Some(&1.0),
        "{by_cause:?}"
    );

    let samples = scrape(client).await;
    assert_eq!(counter(&samples, "tidewater_auth_allowed_total", &[]), 2.0);
    served.stop().await;
}

/// The `recording` series of `path` in `samples`, by family.
fn recording_series(samples: &[Sample], path: &str) -> HashMap<String, f64> {
    samples
        .iter()
        .filter(|s| s.metric.starts_with("tidewater_recording_"))
        .filter(|s| s.labels.get("path") == Some(path))
        .map(|s| {
            let v = match s.value {
                Value::Counter(v) | Value::Gauge(v) => v,
                ref other => panic!("{}: {other:?}", s.metric),
            };
            (s.metric.clone(), v)
        })
        .collect()
}

/// A server with `[record]` and an ffmpeg RTMP publish: while it publishes,
/// `/metrics` shows the stream recorded with bytes growing and no drops or
/// disk errors; once the stream ended, its series are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_publish_shows_in_the_recording_families() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir =
        std::env::temp_dir().join(format!("tidewater-metrics-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rtmp_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let config = Config::from_toml_str(&format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[srt]\nlisten = \"127.0.0.1:0\"\n[rtsp]\nlisten = \"127.0.0.1:0\"\nudp_rtp_port = 0\nudp_rtcp_port = 0\n[webrtc]\nudp_listen = \"127.0.0.1:0\"\n\
         [rtmp]\nlisten = \"127.0.0.1:{rtmp_port}\"\n\
         [hls]\nalways_on_all = false\n[dash]\nalways_on_all = false\n\
         [record]\npaths = [\"live/*\"]\ndir = {:?}\nsegment_s = 2\n",
        dir.display().to_string()
    ))
    .expect("config");
    let server = crate::Server::bind(&config).await.expect("bind");
    let client = Client(server.local_addr());
    let shutdown = tidewater::CancellationToken::new();
    let task = tokio::spawn(server.serve(shutdown.clone()));
    let rtmp = SocketAddr::from(([127, 0, 0, 1], rtmp_port));
    for _ in 0..200 {
        if TcpStream::connect(rtmp).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Before any publish there is no live stream, so no series.
    assert!(recording_series(&scrape(client).await, "live/rec").is_empty());

    // 4 s at 25 fps (GOP 1 s), in real time.
    let url = format!("rtmp://{rtmp}/live/rec");
    let published = tokio::task::spawn_blocking(move || {
        std::process::Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=25",
                "-t",
                "4",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-g",
                "25",
                "-pix_fmt",
                "yuv420p",
                "-f",
                "flv",
                &url,
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run ffmpeg (install ffmpeg): {e}"))
    });

    // While it publishes: recorded, and the bytes grow as fragments land.
    let mut seen: Vec<HashMap<String, f64>> = Vec::new();
    for _ in 0..200 {
        let series = recording_series(&scrape(client).await, "live/rec");
        let bytes = series
            .get("tidewater_recording_bytes_total")
            .copied()
            .unwrap_or(0.0);
        if bytes > 0.0 {
            let first = seen
                .first()
                .map_or(bytes, |s| s["tidewater_recording_bytes_total"]);
            seen.push(series);
            if bytes > first {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen.len() >= 2,
        "no recording bytes while publishing: {seen:?}"
    );
    for series in &seen {
        assert_eq!(series.len(), 4, "{series:?}");
        assert_eq!(series["tidewater_recording_active"], 1.0, "{series:?}");
        assert_eq!(series["tidewater_recording_keyframe_drops_total"], 0.0);
        assert_eq!(series["tidewater_recording_disk_errors_total"], 0.0);
    }
    let bytes = |s: &HashMap<String, f64>| s["tidewater_recording_bytes_total"];
    assert!(
        seen.windows(2).all(|w| bytes(&w[1]) >= bytes(&w[0])),
        "{seen:?}"
    );
    assert!(bytes(&seen[seen.len() - 1]) > bytes(&seen[0]), "{seen:?}");

    // The families are typed as named (counters end in `_total`).
    let text = client.full("GET", "/metrics").await.body;
    for (family, kind) in [
        ("tidewater_recording_active", "gauge"),
        ("tidewater_recording_bytes_total", "counter"),
        ("tidewater_recording_keyframe_drops_total", "counter"),
        ("tidewater_recording_disk_errors_total", "counter"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} {kind}\n")),
            "{family} {kind}:\n{text}"
        );
    }

    let published = published.await.expect("ffmpeg ran");
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    // Once the stream ended, its series are gone.
    let mut gone = false;
    for _ in 0..200 {
        if recording_series(&scrape(client).await, "live/rec").is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "recording series outlived the stream");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    let _ = std::fs::remove_dir_all(&dir);
}
