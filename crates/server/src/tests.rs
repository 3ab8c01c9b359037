use std::net::SocketAddr;

use serde_json::Value;
use tidewater::bytes::Bytes;
use tidewater::{CancellationToken, Codec, Frame, Request, StreamKey, TrackId, TrackInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::*;

/// In-process publishers say they are on loopback: the default `[auth]`
/// allows anonymous publish from there only.
const PUBLISHER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50_000);

/// A server on a free loopback port, serving until the token is cancelled.
struct Running {
    addr: SocketAddr,
    engine: Engine,
    shutdown: CancellationToken,
    task: JoinHandle<Result<()>>,
}

async fn start(extra_config: &str) -> Running {
    let config = Config::from_toml_str(&format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[srt]\nlisten = \"127.0.0.1:0\"\n[rtsp]\nlisten = \"127.0.0.1:0\"\nudp_rtp_port = 0\nudp_rtcp_port = 0\n[webrtc]\nudp_listen = \"127.0.0.1:0\"\n[rtmp]\nlisten = \"127.0.0.1:0\"\n{extra_config}"
    ))
    .expect("config");
    let server = Server::bind(&config).await.expect("bind");
    let (addr, engine) = (server.local_addr(), server.engine().clone());
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.serve(shutdown.clone()));
    Running {
        addr,
        engine,
        shutdown,
        task,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(DRAIN_TIMEOUT * 2, self.task)
            .await
            .expect("stops in time");
        result.expect("server task").expect("clean stop");
    }
}

/// One HTTP/1.1 GET over a fresh TCP connection: (status, content type, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.expect("read");
    let response = String::from_utf8(response).expect("utf-8");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "this little client reads plain bodies only"
    );
    (status, content_type, body.to_string())
}

async fn get_json(addr: SocketAddr, path: &str, want_status: u16) -> Value {
    let (status, content_type, body) = get(addr, path).await;
    assert_eq!(status, want_status, "{path}: {body}");
    assert_eq!(content_type, "application/json", "{path}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn key(text: &str) -> StreamKey {
    StreamKey::parse(text).expect("valid key")
}

#[tokio::test]
async fn healthz_answers_ok() {
    let server = start("").await;
    let (status, content_type, body) = get(server.addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    server.stop().await;
}

#[tokio::test]
async fn stream_list_is_empty_without_publishers() {
    let server = start("").await;
    let list = get_json(server.addr, "/api/v1/streams", 200).await;
    assert_eq!(list, serde_json::json!({ "streams": [] }));
    server.stop().await;
}

#[tokio::test]
async fn api_shows_a_published_stream_with_catalog_metadata_and_qos() {
    // Without the packagers that follow every stream by default, so that the
    // test's viewer is the one subscriber.
    let server = start("[hls]\nalways_on_all = false\n[dash]\nalways_on_all = false\n").await;
    let cam = key("live/cam1");
    let mut publisher = server
        .engine
        .open_publish(Request::new(cam.clone(), "test").peer(PUBLISHER))
        .await
        .expect("publish");
    publisher
        .set_catalog(vec![
            TrackInfo::video(TrackId(1), Codec::H264, 1280, 720)
                .with_config(Bytes::from_static(&[1, 0x64, 0, 0x1f])),
            TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2),
        ])
        .expect("catalog");
    publisher.set_metadata("encoder", "unit-test");
    let payloads: [&'static [u8]; 3] = [b"keyframe", b"p1", b"p2-frame"];
    for (i, payload) in payloads.iter().enumerate() {
        let t = i as i64 * 3000;
        publisher
            .publish(Frame::video(
                TrackId(1),
                Codec::H264,
                t,
                t,
                i == 0,
                Bytes::from_static(payload),
            ))
            .expect("video frame");
    }
    publisher
        .publish(Frame::audio(
            TrackId(2),
            Codec::Aac,
            0,
            Bytes::from_static(b"aac"),
        ))
        .expect("audio frame");
    let _viewer = server
        .engine
        .subscribe(Request::new(cam.clone(), "test"))
        .await
        .expect("subscribe");
    // An idle publish elsewhere, without a catalog yet.
    let _other = server
        .engine
        .open_publish(Request::new(key("live/bare"), "test").peer(PUBLISHER))
        .await
        .expect("publish");

    let list = get_json(server.addr, "/api/v1/streams", 200).await;
    let streams = list["streams"].as_array().expect("a list");
    let keys: Vec<_> = streams
        .iter()
        .map(|s| s["key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys, ["live/bare", "live/cam1"], "sorted by key");
    assert_eq!(streams[0]["catalog"], Value::Null);

    let one = get_json(server.addr, "/api/v1/streams/live/cam1", 200).await;
    assert_eq!(
        &one, &streams[1],
        "the single-stream route shows the same snapshot"
    );
    assert_eq!(one["key"], "live/cam1");
    assert_eq!(one["protocol"], "test");
    assert_eq!(one["generation"], 1);
    assert!(one["started_unix_ms"].as_u64().expect("start time") > 1_600_000_000_000);
    assert_eq!(one["metadata"]["encoder"], "unit-test");

    let catalog = &one["catalog"];
    assert_eq!(catalog["version"], 1);
    let tracks = catalog["tracks"].as_array().expect("tracks");
    assert_eq!(tracks.len(), 2);
    assert_eq!(tracks[0]["id"], 1);
    assert_eq!(tracks[0]["kind"], "video");
    assert_eq!(tracks[0]["codec"], "H264");
    assert_eq!(tracks[0]["timescale"], 90_000);
    assert_eq!(tracks[0]["video"]["width"], 1280);
    assert_eq!(tracks[0]["video"]["height"], 720);
    assert_eq!(tracks[0]["config_bytes"], 4);
    assert_eq!(tracks[1]["kind"], "audio");
    assert_eq!(tracks[1]["codec"], "Aac");
    assert_eq!(tracks[1]["audio"]["sample_rate"], 48_000);
    assert_eq!(tracks[1]["audio"]["channels"], 2);

    let qos = &one["qos"];
    let bytes: usize = payloads.iter().map(|p| p.len()).sum::<usize>() + 3;
    assert_eq!(qos["frames"], 4);
    assert_eq!(qos["bytes"], bytes);
    assert_eq!(qos["keyframes"], 1);
    assert_eq!(qos["subscribers"], 1);
    assert_eq!(qos["subscribers_total"], 1);
    assert!(
        qos["fps"].is_number() && qos["bitrate_bps"].is_number(),
        "{qos}"
    );
    let subscribers = one["subscribers"].as_array().expect("subscribers");
    assert_eq!(subscribers.len(), 1);
    assert_eq!(subscribers[0]["protocol"], "test");
    assert_eq!(subscribers[0]["evicted"], false);

    publisher.finish().await;
    let gone = get_json(server.addr, "/api/v1/streams/live/cam1", 404).await;
    assert_eq!(gone["error"]["code"], "not_found");
    server.stop().await;
}

#[tokio::test]
async fn api_errors_are_json() {
    let server = start("").await;
    let missing = get_json(server.addr, "/api/v1/streams/live/nobody", 404).await;
    assert_eq!(missing["error"]["code"], "not_found");
    assert_eq!(
        missing["error"]["message"],
        "stream live/nobody is not being published"
    );

    let invalid = get_json(server.addr, "/api/v1/streams/live/a%20b", 400).await;
    assert_eq!(invalid["error"]["code"], "invalid_key");
    assert!(
        invalid["error"]["message"]
            .as_str()
            .expect("message")
            .contains("whitespace"),
        "{invalid}"
    );

    let route = get_json(server.addr, "/api/v1/nothing", 404).await;
    assert_eq!(route["error"]["message"], "no API route /api/v1/nothing");

    // Outputs not built yet are not routed; `/` is the web console ([web]).
    assert_eq!(get(server.addr, "/hls/live/x/index.m3u8").await.0, 404);
    assert_eq!(get(server.addr, "/").await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_publishes_and_closes_the_port() {
    let server = start("").await;
    let cam = key("live/cam1");
    let mut publisher = server
        .engine
        .open_publish(Request::new(cam.clone(), "test").peer(PUBLISHER))
        .await
        .expect("publish");
    publisher
        .set_catalog(vec![TrackInfo::video(TrackId(1), Codec::H264, 640, 360)])
        .expect("catalog");
    let mut viewer = server
        .engine
        .subscribe(Request::new(cam.clone(), "test"))
        .await
        .expect("subscribe");
    let (addr, engine) = (server.addr, server.engine.clone());

    server.stop().await;
    assert!(engine.streams().is_empty());
    let refused = publisher.publish(Frame::video(
        TrackId(1),
        Codec::H264,
        0,
        0,
        true,
        Bytes::from_static(b"k"),
    ));
    assert!(
        matches!(
            refused,
            Err(tidewater::Error::PublishEnded {
                reason: tidewater::EndReason::Shutdown,
                ..
            })
        ),
        "{refused:?}"
    );
    loop {
        match viewer.recv().await {
            Ok(_) => continue,
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        tidewater::RecvError::Ended(tidewater::EndReason::Shutdown)
                    ),
                    "{e:?}"
                );
                break;
            }
        }
    }
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port is closed"
    );
}

#[tokio::test]
async fn a_taken_port_is_a_bind_error_naming_the_key() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = taken.local_addr().expect("addr");
    let config = Config::from_toml_str(&format!(
        "[http]\nlisten = \"{addr}\"\n[rtmp]\nenabled = false"
    ))
    .expect("config");
    let err = Server::bind(&config).await.expect_err("port in use");
    assert!(matches!(err, Error::Bind { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&addr.to_string())
            && text.contains("[http] listen")
            && text.contains("os error"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_reaper_runs_while_serving() {
    let server = start("[apps.live]\nidle_timeout_ms = 1500\n").await;
    let _publisher = server
        .engine
        .open_publish(Request::new(key("live/quiet"), "test").peer(PUBLISHER))
        .await
        .expect("publish");
    assert_eq!(server.engine.streams().len(), 1);
    for _ in 0..40 {
        tokio::time::sleep(REAP_INTERVAL / 4).await;
        if server.engine.streams().is_empty() {
            break;
        }
    }
    assert!(
        server.engine.streams().is_empty(),
        "the idle publish was reaped"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_cleanly_every_time() {
    for _ in 0..20 {
        let server = start("").await;
        assert_eq!(get(server.addr, "/healthz").await.0, 200);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_lists_pushes_with_their_status() {
    // A destination that refuses connections: a port that was free a moment ago.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let server = start(&format!(
        // (start() ends in the [rtmp] section: these keys continue it.)
        "push_retry_initial_ms = 100\npush_retry_max_ms = 200\n\
         [apps.live]\npush = [\"rtmp://{closed}/backup/copy?token=s3cret\"]\n\
         [apps.live.streams.quiet]\npush = []\n"
    ))
    .await;
    let missing = get_json(server.addr, "/api/v1/streams/live/nope/pushes", 404).await;
    assert_eq!(missing["error"]["code"], "not_found");

    let mut publishers = Vec::new();
    for name in ["live/cam1", "live/quiet"] {
        let mut p = server
            .engine
            .open_publish(Request::new(key(name), "test").peer(PUBLISHER))
            .await
            .expect("publish");
        p.set_catalog(vec![TrackInfo::video(TrackId(1), Codec::H264, 640, 360)])
            .expect("catalog");
        publishers.push(p);
    }
    // Wait until a few attempts failed.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let pushes = loop {
        let v = get_json(server.addr, "/api/v1/streams/live/cam1/pushes", 200).await;
        if v["pushes"][0]["attempts"].as_u64().unwrap_or(0) >= 3 {
            break v;
        }
        assert!(tokio::time::Instant::now() < deadline, "no retries: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let push = &pushes["pushes"][0];
    assert_eq!(push["url"], format!("rtmp://{closed}/backup/copy"));
    assert!(
        ["reconnecting", "starting"].contains(&push["state"].as_str().unwrap_or("")),
        "{push}"
    );
    assert!(push["connected_since_unix_ms"].is_null());
    let errors = push["last_errors"].as_array().expect("errors");
    assert!(!errors.is_empty() && errors.len() <= 5, "{push}");
    assert!(
        errors[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("refused")),
        "{push}"
    );
    assert!(!pushes.to_string().contains("s3cret"), "{pushes}");

    // The stream list carries each stream's pushes.
    let list = get_json(server.addr, "/api/v1/streams", 200).await;
    let streams = list["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[0]["key"], "live/cam1");
    assert_eq!(streams[0]["pushes"].as_array().map(Vec::len), Some(1));
    assert_eq!(streams[1]["pushes"], serde_json::json!([]));
    let quiet = get_json(server.addr, "/api/v1/streams/live/quiet/pushes", 200).await;
    assert_eq!(quiet, serde_json::json!({ "pushes": [] }));

    // The stream ends: its push stops and is gone.
    for p in publishers {
        p.finish().await;
    }
    server.stop().await;
}
