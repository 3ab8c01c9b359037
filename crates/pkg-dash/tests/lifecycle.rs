//! The per-stream packager's life against a real kernel on loopback: started
//! by the first request, stopped after `idle_timeout` without requests and
//! started again by the next, gone with the stream (404), and the headers
//! every route answers with.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use tidewater_core::{
    AppSpec, Codec, Engine, Frame, Request, StreamKey, StreamPolicy, TrackId, TrackInfo,
};
use tidewater_pkg_dash::{DashConfig, dash_router};

const AVCC: &[u8] = &[
    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02, 0x68,
    0xee,
];

/// A blocking GET on loopback: (status, lower-cased headers, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, head, raw[split + 4..].to_vec())
}

fn dash_subscribers(engine: &Engine, key: &StreamKey) -> usize {
    engine.stream(key).map_or(0, |s| {
        s.subscribers
            .iter()
            .filter(|x| x.protocol == "dash")
            .count()
    })
}

#[test]
fn started_by_requests_stopped_when_idle_and_gone_with_the_stream() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let policy = StreamPolicy {
        follow_grace: Duration::from_millis(300),
        ..StreamPolicy::default()
    };
    let engine = rt.block_on(async {
        Engine::builder()
            .default_app(AppSpec {
                policy,
                ..AppSpec::default()
            })
            .build()
            .expect("engine")
    });
    let config = DashConfig {
        idle_timeout: Duration::from_millis(800),
        always_on_all: false,
        // The ended stream's static MPD is served this long (the end of
        // the test checks what comes after it).
        linger: Duration::from_millis(100),
        ..DashConfig::default()
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let idle_timeout = config.idle_timeout;
    let router = dash_router(engine.context(), config);
    rt.spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let key = StreamKey::parse("live/life").expect("key");

    // Not live: 404, with CORS.
    let (status, head, _) = get(addr, "/dash/live/life/manifest.mpd");
    assert_eq!(status, 404);
    assert!(head.contains("access-control-allow-origin: *"), "{head}");

    let mut session = rt
        .block_on(engine.open_publish(Request::new(key.clone(), "test")))
        .expect("publish");
    let video = TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
        .with_timescale(1_000)
        .with_config(Bytes::from_static(AVCC));
    session.set_catalog(vec![video]).expect("catalog");
    let frame = |t: i64| {
        Frame::video(
            TrackId(1),
            Codec::H264,
            t,
            t,
            t % 2_000 == 0,
            Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        )
    };
    session.publish(frame(0)).expect("frame");
    assert_eq!(
        dash_subscribers(&engine, &key),
        0,
        "nothing packaged before a request"
    );

    let (status, head, body) = get(addr, "/dash/live/life/manifest.mpd");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        head.contains("content-type: application/dash+xml"),
        "{head}"
    );
    assert!(
        head.contains("cache-control: public, max-age=0, s-maxage=1"),
        "{head}"
    );
    assert_eq!(dash_subscribers(&engine, &key), 1);

    // The packager's last request is no earlier than this.
    let last_request = std::time::Instant::now();
    let (status, head, init) = get(addr, "/dash/live/life/p1-v1-init.mp4");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: video/mp4"), "{head}");
    assert_eq!(&init[4..8], b"ftyp");
    let (status, head, _) = get(addr, "/dash/time");
    assert_eq!(status, 200);
    assert!(head.contains("cache-control: no-store"), "{head}");

    // No request for longer than the idle timeout: the packager stops (and
    // not before that long without a request).
    wait_until("stopped when idle", Duration::from_secs(10), || {
        dash_subscribers(&engine, &key) == 0
    });
    assert!(
        last_request.elapsed() >= idle_timeout,
        "stopped {:?} after the last request, before the idle timeout",
        last_request.elapsed()
    );
    let (status, _, _) = get(addr, "/dash/live/life/manifest.mpd");
    assert_eq!(status, 200);
    assert_eq!(dash_subscribers(&engine, &key), 1, "started again");

    // The stream ends and is not published again within the grace: 404.
    rt.block_on(session.finish());
    wait_until("404 once the grace passed", Duration::from_secs(10), || {
        get(addr, "/dash/live/life/manifest.mpd").0 == 404
    });
    assert_eq!(dash_subscribers(&engine, &key), 0);
}

/// Polls `check` until it holds; panics naming `what` after `limit`.
fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to 3 s for the stream's packager count to become `want`.
fn await_subscribers(engine: &Engine, key: &StreamKey, want: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let n = dash_subscribers(engine, key);
        if n == want || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn by_default_every_stream_is_packaged_from_its_publish_and_never_idles() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let policy = StreamPolicy {
        follow_grace: Duration::from_millis(300),
        ..StreamPolicy::default()
    };
    let engine = rt.block_on(async {
        Engine::builder()
            .default_app(AppSpec {
                policy,
                ..AppSpec::default()
            })
            .build()
            .expect("engine")
    });
    let config = DashConfig {
        idle_timeout: Duration::from_millis(800),
        ..DashConfig::default()
    };
    assert!(config.always_on_all && config.low_latency);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Built inside the runtime, as a server does: the always-on task starts.
    let router = rt.block_on(async { dash_router(engine.context(), config) });
    rt.spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let key = StreamKey::parse("live/always").expect("key");
    let video = TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
        .with_timescale(1_000)
        .with_config(Bytes::from_static(AVCC));
    let frame = |t: i64| {
        Frame::video(
            TrackId(1),
            Codec::H264,
            t,
            t,
            t % 2_000 == 0,
            Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        )
    };
    for round in 0..2 {
        let mut session = rt
            .block_on(engine.open_publish(Request::new(key.clone(), "test")))
            .expect("publish");
        session.set_catalog(vec![video.clone()]).expect("catalog");
        session.publish(frame(0)).expect("frame");
        assert_eq!(
            await_subscribers(&engine, &key, 1),
            1,
            "round {round}: packaged from the publish, before any request"
        );
        // Longer than the idle timeout without a request: still packaged.
        // (Not a wait for something to happen: the check is that nothing does.)
        std::thread::sleep(Duration::from_millis(1_500));
        assert_eq!(dash_subscribers(&engine, &key), 1, "round {round}: idled");
        let (status, _, body) = get(addr, "/dash/live/always/manifest.mpd");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        // The stream ends for good (past the grace): the packager stops; a
        // new publish (the next round) starts one again.
        rt.block_on(session.finish());
        assert_eq!(await_subscribers(&engine, &key, 0), 0, "round {round}");
        // Past the grace, the stream is gone: the next round is a new publish.
        wait_until("the stream gone", Duration::from_secs(10), || {
            engine.stream(&key).is_none()
        });
    }
}
