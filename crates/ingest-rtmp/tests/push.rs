//! Push between two in-process engines, over RTMP and RTMPS, with ffmpeg
//! publishing to the first and ffprobe reading from the second.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidewater_core::{AppSpec, CancellationToken, Engine, InboundProtocol, StreamKey};
use tidewater_ingest_rtmp::{
    Backoff, ClientTls, PushConfig, PushRoutes, PushState, PushStatuses, PushTarget, Rtmp,
    RtmpConfig, RtmpPush, ServerTls,
};
use tidewater_tests::{ChildGuard, ffmpeg_publish, ffprobe_packets};
use tokio::time::timeout;

struct Node {
    engine: Engine,
    rtmp: SocketAddr,
    shutdown: CancellationToken,
    pushes: Option<PushStatuses>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn config() -> RtmpConfig {
    RtmpConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..RtmpConfig::default()
    }
}

async fn node(tls: Option<ServerTls>, routes: Option<PushRoutes>) -> Node {
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
    let rtmp = Arc::new(match tls {
        Some(tls) => Rtmp::with_tls(config(), tls),
        None => Rtmp::new(config()),
    });
    let mut workers: Vec<Arc<dyn InboundProtocol>> = vec![rtmp.clone()];
    let mut pushes = None;
    if let Some(routes) = routes {
        let push = Arc::new(RtmpPush::new(
            routes,
            PushConfig {
                backoff: Backoff {
                    initial: Duration::from_millis(200),
                    max: Duration::from_millis(800),
                    max_attempts: 0,
                },
                ..PushConfig::default()
            },
        ));
        pushes = Some(push.statuses());
        workers.push(push);
    }
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.serve(workers, shutdown).await }
    });
    let rtmp_addr = timeout(Duration::from_secs(5), rtmp.listening())
        .await
        .expect("listener bound");
    Node {
        engine,
        rtmp: rtmp_addr,
        shutdown,
        pushes,
    }
}

/// ffmpeg publishing the generated clip (H.264, a keyframe a second, AAC) for `seconds`.
fn publish(url: &str, seconds: u32) -> ChildGuard {
    ffmpeg_publish(url, seconds, 25)
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn live(engine: &Engine, key: &str) -> bool {
    engine
        .stream(&StreamKey::parse(key).expect("key"))
        .is_some_and(|s| s.catalog.is_some_and(|c| c.tracks.len() == 2))
}

/// ffprobe's streams and video packet count of a URL read for a while.
async fn probe(url: &str) -> (Vec<String>, usize) {
    let url = url.to_string();
    let probed =
        tokio::task::spawn_blocking(move || ffprobe_packets(&url, 3, Duration::from_secs(20)))
            .await
            .expect("ffprobe finishes");
    let streams = probed
        .streams
        .iter()
        .map(|s| {
            s.split_once(':')
                .map_or(s.as_str(), |(_, codec)| codec)
                .to_string()
        })
        .collect();
    (streams, probed.packets("video").len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_stream_is_readable_at_the_destination_and_survives_its_restart() {
    let dest = node(None, None).await;
    let dest_addr = dest.rtmp;
    let mut routes = PushRoutes::new();
    routes.set_app(
        "live",
        vec![PushTarget::parse(&format!("rtmp://{dest_addr}/live/copy"), None).expect("url")],
    );
    let src = node(None, Some(routes)).await;
    let statuses = src.pushes.clone().expect("push statuses");
    let _publisher = publish(&format!("rtmp://{}/live/cam", src.rtmp), 30);
    let key = StreamKey::parse("live/cam").expect("key");
    wait_until(
        "pushed stream live at the destination",
        Duration::from_secs(20),
        || live(&dest.engine, "live/copy"),
    )
    .await;
    let s = statuses.of(&key).expect("a push");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].status.state, PushState::Active, "{s:?}");
    assert!(s[0].status.connected_since_unix_ms.is_some());
    assert_eq!(s[0].url, format!("rtmp://{dest_addr}/live/copy"));
    // The destination handed out stream id 1: the push writes the chunks
    // built once per frame in the stream's derived-output cache (it is the
    // stream's only reader here).
    let snap = src.engine.stream(&key).expect("live");
    assert_eq!(snap.subscribers.len(), 1, "the push");
    assert!(snap.derived_bytes > 0, "shared chunks built");
    let (streams, video) = probe(&format!("rtmp://{dest_addr}/live/copy")).await;
    assert_eq!(streams, ["h264", "aac"]);
    assert!(video >= 50, "{video} video packets in 3 s");

    // The destination goes away: the push reconnects with backoff ...
    drop(dest);
    wait_until("push reconnecting", Duration::from_secs(10), || {
        statuses
            .of(&key)
            .is_some_and(|s| s[0].status.state == PushState::Reconnecting)
    })
    .await;
    wait_until("a second attempt, failed", Duration::from_secs(10), || {
        statuses
            .of(&key)
            .is_some_and(|s| s[0].status.attempts >= 2 && !s[0].status.last_errors.is_empty())
    })
    .await;

    // ... and a destination back on the same port gets the stream again.
    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .build()
        .expect("engine");
    let rtmp = Arc::new(Rtmp::new(RtmpConfig {
        listen: dest_addr,
        ..config()
    }));
    let shutdown = CancellationToken::new();
    let workers: Vec<Arc<dyn InboundProtocol>> = vec![rtmp.clone()];
    tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.serve(workers, shutdown).await }
    });
    let _dest2 = Node {
        engine: engine.clone(),
        rtmp: dest_addr,
        shutdown,
        pushes: None,
    };
    wait_until(
        "pushed again after the restart",
        Duration::from_secs(10),
        || live(&engine, "live/copy"),
    )
    .await;
    assert_eq!(
        statuses.of(&key).expect("a push")[0].status.state,
        PushState::Active
    );
    let (streams, video) = probe(&format!("rtmp://{dest_addr}/live/copy")).await;
    assert_eq!(streams, ["h264", "aac"]);
    assert!(video >= 50, "{video} video packets in 3 s");
}

fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, ServerTls) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("leaf params")
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("leaf");
    std::fs::create_dir_all(dir).expect("dir");
    let (ca_path, cert_path, key_path) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_path, ca_cert.pem()).expect("write");
    std::fs::write(&cert_path, leaf.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    (
        ca_path,
        ServerTls::from_pem_files(&cert_path, &key_path).expect("server tls"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmps_push_with_a_configured_ca_and_ffmpeg_over_rtmps() {
    let dir = std::env::temp_dir().join(format!("tidewater-push-tls-{}", std::process::id()));
    let (ca, server_tls) = certificate(&dir);
    let dest = node(Some(server_tls), None).await;

    // ffmpeg publishes over RTMPS (it does not verify by default).
    let _direct = publish(&format!("rtmps://{}/live/direct", dest.rtmp), 20);
    wait_until("ffmpeg over rtmps", Duration::from_secs(20), || {
        live(&dest.engine, "live/direct")
    })
    .await;

    // A push trusting the test CA gets through; one trusting only the
    // platform roots is refused in the TLS handshake.
    let mut routes = PushRoutes::new();
    routes.set_app(
        "live",
        vec![
            PushTarget::parse(
                &format!("rtmps://{}/live/secure", dest.rtmp),
                Some(ClientTls::with_ca_file(&ca).expect("ca")),
            )
            .expect("url"),
            PushTarget::parse(
                &format!("rtmps://{}/live/untrusted", dest.rtmp),
                Some(ClientTls::with_roots(rustls::RootCertStore::empty()).expect("roots")),
            )
            .expect("url"),
        ],
    );
    let src = node(None, Some(routes)).await;
    let statuses = src.pushes.clone().expect("statuses");
    let _publisher = publish(&format!("rtmp://{}/live/cam", src.rtmp), 20);
    wait_until("rtmps push live", Duration::from_secs(20), || {
        live(&dest.engine, "live/secure")
    })
    .await;
    let key = StreamKey::parse("live/cam").expect("key");
    wait_until("untrusted push failing", Duration::from_secs(10), || {
        statuses.of(&key).is_some_and(|s| {
            s.len() == 2
                && s[1]
                    .status
                    .last_errors
                    .iter()
                    .any(|e| e.message.contains("tls"))
        })
    })
    .await;
    let s = statuses.of(&key).expect("pushes");
    assert_eq!(s[0].status.state, PushState::Active, "{s:?}");
    assert_eq!(s[1].status.state, PushState::Reconnecting, "{s:?}");
    assert!(
        dest.engine
            .stream(&StreamKey::parse("live/untrusted").expect("key"))
            .is_none()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Publishes `frames` 25 fps video frames in-process, from `dts` 0, paced.
async fn publish_frames(
    engine: &Engine,
    key: &StreamKey,
    frames: i64,
) -> tidewater_core::PublishSession {
    use tidewater_core::bytes::Bytes;
    use tidewater_core::{Codec, Frame, Request, TimestampWrap, TrackId, TrackInfo};
    let mut p = engine
        .open_publish(Request::new(key.clone(), "test"))
        .await
        .expect("publish");
    p.set_catalog(vec![
        TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
            .with_timescale(1000)
            .with_wrap(TimestampWrap::RTMP)
            .with_config(Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe0, 0])),
    ])
    .expect("catalog");
    for i in 0..frames {
        let t = i * 40;
        p.publish(Frame::video(
            TrackId(1),
            Codec::H264,
            t,
            t,
            i % 25 == 0,
            Bytes::from(vec![0, 0, 0, 1, if i % 25 == 0 { 0x65 } else { 0x41 }]),
        ))
        .expect("frame");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_follows_a_republish_on_one_connection_and_stops_when_the_stream_ends() {
    use tidewater_core::{Event, Request, StreamPolicy};
    let dest = node(None, None).await;
    let mut routes = PushRoutes::new();
    routes.set_stream(
        StreamKey::parse("live/cam").expect("key"),
        vec![PushTarget::parse(&format!("rtmp://{}/live", dest.rtmp), None).expect("url")],
    );
    // The source: a short follow grace, so that the end comes soon.
    let engine = Engine::builder()
        .app(
            "live",
            AppSpec {
                policy: StreamPolicy {
                    follow_grace: Duration::from_secs(1),
                    ..StreamPolicy::default()
                },
                ..AppSpec::default()
            },
        )
        .build()
        .expect("engine");
    let push = Arc::new(RtmpPush::new(routes, PushConfig::default()));
    let statuses = push.statuses();
    let shutdown = CancellationToken::new();
    let _guard = Node {
        engine: engine.clone(),
        rtmp: dest.rtmp,
        shutdown: shutdown.clone(),
        pushes: None,
    };
    tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        let workers: Vec<Arc<dyn InboundProtocol>> = vec![push];
        async move { engine.serve(workers, shutdown).await }
    });
    // No wait for the worker to subscribe to the kernel's events: it starts
    // a push for every stream already live when it does.

    let key = StreamKey::parse("live/cam").expect("key");
    let first = publish_frames(&engine, &key, 50).await;
    // Without a stream name in the URL, the stream keeps its own.
    let copy = StreamKey::parse("live/cam").expect("key");
    wait_until("pushed", Duration::from_secs(10), || {
        dest.engine
            .stream(&copy)
            .is_some_and(|s| s.catalog.is_some())
    })
    .await;
    let generation = dest.engine.stream(&copy).expect("live").generation;
    let mut viewer = dest
        .engine
        .subscribe(Request::new(copy.clone(), "test"))
        .await
        .expect("viewer");
    // The republish restarts its timestamps at 0.
    first.finish().await;
    let second = publish_frames(&engine, &key, 50).await;
    let mut dts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while dts.len() < 75 {
        assert!(
            Instant::now() < deadline,
            "only {} frames at the destination",
            dts.len()
        );
        match timeout(Duration::from_secs(5), viewer.recv()).await {
            Ok(Ok(Event::Frame(f))) => dts.push(f.frame().dts),
            Ok(Ok(_)) => {}
            other => panic!("the destination's viewer ended: {other:?}"),
        }
    }
    assert!(
        dts.windows(2).all(|w| w[1] > w[0]),
        "timestamps at the destination go back: {dts:?}"
    );
    let snap = dest.engine.stream(&copy).expect("still live");
    assert_eq!(
        snap.generation, generation,
        "one publish at the destination across the republish"
    );
    // The push itself kept the timestamps going on (the destination's
    // kernel would otherwise have had to repair or rebase them).
    assert_eq!(
        (snap.qos.timestamps_repaired, snap.qos.timestamps_rebased),
        (0, 0),
        "{:?}",
        snap.qos
    );
    let step = dts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(step <= 100, "a gap of {step} ms at the republish");
    assert_eq!(
        statuses.of(&key).expect("push")[0].status.attempts,
        1,
        "no reconnection"
    );

    // The stream ends for good: the push unpublishes and is gone.
    second.finish().await;
    let ended = timeout(Duration::from_secs(10), async {
        loop {
            if viewer.recv().await.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the destination's stream ended");
    wait_until("push gone", Duration::from_secs(5), || {
        statuses.of(&key).is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_a_destination_that_is_down_stops_when_the_stream_ends() {
    use tidewater_core::StreamPolicy;
    // Nothing listens there: every attempt fails at once, retried every 100 ms.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut routes = PushRoutes::new();
    routes.set_app(
        "live",
        vec![PushTarget::parse(&format!("rtmp://{closed}/live/x"), None).expect("url")],
    );
    let engine = Engine::builder()
        .app(
            "live",
            AppSpec {
                policy: StreamPolicy {
                    follow_grace: Duration::from_secs(1),
                    ..StreamPolicy::default()
                },
                ..AppSpec::default()
            },
        )
        .build()
        .expect("engine");
    let push = Arc::new(RtmpPush::new(
        routes,
        PushConfig {
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_millis(100),
                max_attempts: 0,
            },
            ..PushConfig::default()
        },
    ));
    let statuses = push.statuses();
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        let workers: Vec<Arc<dyn InboundProtocol>> = vec![push];
        async move { engine.serve(workers, shutdown).await }
    });
    let _guard = Node {
        engine: engine.clone(),
        rtmp: closed,
        shutdown,
        pushes: None,
    };
    // Streams live before the worker subscribed are pushed too: no wait.
    let key = StreamKey::parse("live/cam").expect("key");
    let publisher = publish_frames(&engine, &key, 10).await;
    wait_until("a few failed attempts", Duration::from_secs(5), || {
        statuses.of(&key).is_some_and(|s| s[0].status.attempts >= 3)
    })
    .await;
    publisher.finish().await;
    let ended = Instant::now();
    // The grace is 1 s; attempts every 100 ms must not keep it from expiring.
    wait_until("push gone after the grace", Duration::from_secs(5), || {
        statuses.of(&key).is_none()
    })
    .await;
    assert!(
        ended.elapsed() >= Duration::from_millis(900),
        "gone before the grace expired"
    );
}
