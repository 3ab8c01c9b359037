//! Two engines on loopback, no etcd: the origin's relay serves, the edge's
//! source pulls what a hand-filled directory says the origin holds.

use std::sync::Arc;
use std::time::Duration;

use tidewater_cluster::directory::{Holder, StreamMap, stream_path};
use tidewater_cluster::relay::RelayServer;
use tidewater_cluster::{ClusterConfig, ClusterSecret, Edges};
use tidewater_core::bytes::Bytes;
use tidewater_core::{
    AppSpec, CancellationToken, Codec, Engine, Event, Frame, PermitAll, Request, StreamKey,
    TrackId, TrackInfo,
};

const SECRET: &str = "a-cluster-secret-of-some-length";

fn engine(secret: &str) -> (Engine, Arc<ClusterSecret>) {
    let auth = Arc::new(ClusterSecret::new(secret, Arc::new(PermitAll)));
    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .authorizer(ClusterSecretRef(Arc::clone(&auth)))
        .build()
        .expect("engine");
    (engine, auth)
}

/// The builder takes an authorizer by value; the test keeps a handle too.
struct ClusterSecretRef(Arc<ClusterSecret>);

#[async_trait::async_trait]
impl tidewater_core::Authorizer for ClusterSecretRef {
    async fn authorize(
        &self,
        request: &tidewater_core::AuthRequest,
    ) -> Result<tidewater_core::Identity, tidewater_core::Refusal> {
        self.0.authorize(request).await
    }
}

async fn origin(secret: &str) -> (Engine, std::net::SocketAddr, CancellationToken) {
    let (engine, auth) = engine(secret);
    let server = Arc::new(RelayServer::new(engine.clone(), auth));
    let bound = server.bound();
    let stop = CancellationToken::new();
    tokio::spawn({
        let (server, stop) = (Arc::clone(&server), stop.clone());
        async move {
            server
                .serve("127.0.0.1:0".parse().expect("addr"), stop)
                .await
        }
    });
    (engine, bound.wait().await, stop)
}

fn edge(map: Arc<StreamMap>, secret: &str) -> (Engine, Edges) {
    let (engine, _) = engine(secret);
    let mut config = ClusterConfig::new(
        vec!["http://127.0.0.1:1".into()],
        "edge",
        "127.0.0.1:1".parse().expect("addr"),
        secret,
    );
    config.idle_grace = Duration::from_secs(2);
    let edges = Edges::new(engine.clone(), map, &config, CancellationToken::new());
    engine.add_on_demand(Arc::new(edges.clone()));
    (engine, edges)
}

fn holds(map: &StreamMap, key: &StreamKey, relay: std::net::SocketAddr) {
    let holder = Holder {
        node: "origin".into(),
        relay,
        generation: 1,
    };
    map.put(stream_path(key).as_bytes(), holder.to_value().as_bytes());
}

fn tracks() -> Vec<TrackInfo> {
    vec![
        TrackInfo::video(TrackId(1), Codec::H265, 1280, 720)
            .with_config(Bytes::from_static(b"hvcC")),
        TrackInfo::audio(TrackId(2), Codec::Opus, 48_000, 2),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_reader_gets_the_origins_catalog_and_frames_through_one_pull() {
    let (origin, relay, _stop) = origin(SECRET).await;
    let key = StreamKey::parse("live/cam").expect("key");
    let mut publisher = origin
        .open_publish(Request::new(key.clone(), "test"))
        .await
        .expect("publish");
    publisher.set_catalog(tracks()).expect("catalog");
    publisher
        .publish(Frame::video(
            TrackId(1),
            Codec::H265,
            0,
            0,
            true,
            Bytes::from_static(b"idr"),
        ))
        .expect("frame");
    let map = Arc::new(StreamMap::default());
    holds(&map, &key, relay);
    let (edge, edges) = edge(map, SECRET);

    let mut first = edge
        .subscribe(Request::new(key.clone(), "test"))
        .await
        .expect("pulled");
    let mut second = edge
        .subscribe(Request::new(key.clone(), "test"))
        .await
        .expect("pulled");
    assert_eq!(edges.pulling(), vec![key.clone()]);
    for sub in [&mut first, &mut second] {
        match sub.recv().await {
            Ok(Event::Catalog(c)) => {
                assert_eq!(c.tracks().len(), 2);
                assert_eq!(c.tracks()[0].config.as_deref(), Some(&b"hvcC"[..]));
                assert_eq!(c.tracks()[1].codec, Codec::Opus);
            }
            other => panic!("{other:?}"),
        }
        match sub.recv().await {
            Ok(Event::Frame(f)) => {
                assert!(f.frame().is_keyframe());
                assert_eq!(&f.frame().payload[..], b"idr");
            }
            other => panic!("{other:?}"),
        }
    }
    // One relay reader at the origin, however many readers at the edge.
    let at_origin = origin.stream(&key).expect("live");
    let relays = at_origin
        .subscribers
        .iter()
        .filter(|s| s.protocol == "relay")
        .count();
    assert_eq!(relays, 1);
    // Live frames follow.
    publisher
        .publish(Frame::audio(
            TrackId(2),
            Codec::Opus,
            960,
            Bytes::from_static(b"op"),
        ))
        .expect("frame");
    match tokio::time::timeout(Duration::from_secs(5), first.recv()).await {
        Ok(Ok(Event::Frame(f))) => assert_eq!(f.frame().codec, Codec::Opus),
        other => panic!("{other:?}"),
    }
    // Readers gone: the pull stops after the idle grace.
    drop((first, second));
    tokio::time::timeout(Duration::from_secs(10), async {
        while !edges.pulling().is_empty() || edge.stream(&key).is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the pull stops when idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_with_the_wrong_secret_is_refused_and_its_reader_gets_not_found() {
    let (origin, relay, _stop) = origin(SECRET).await;
    let key = StreamKey::parse("live/cam").expect("key");
    let mut publisher = origin
        .open_publish(Request::new(key.clone(), "test"))
        .await
        .expect("publish");
    publisher.set_catalog(tracks()).expect("catalog");
    let map = Arc::new(StreamMap::default());
    holds(&map, &key, relay);
    let (edge, _) = edge(map, "not-the-cluster-secret-at-all");
    let refused = edge.subscribe(Request::new(key.clone(), "test")).await;
    assert!(matches!(
        refused,
        Err(tidewater_core::Error::NotFound { .. })
    ));
    let at_origin = origin.stream(&key).expect("live");
    assert!(at_origin.subscribers.is_empty());
    // The edge tries again within its `pull_wait`: each try is counted.
    let refusals = relay_refusals(&origin, 1).await;
    assert!(
        matches!(refusals[..], [("unauthorized", n)] if n >= 1),
        "{refusals:?}"
    );
}

#[tokio::test]
async fn a_stream_nobody_holds_is_not_pulled() {
    let (edge, edges) = edge(Arc::new(StreamMap::default()), SECRET);
    let key = StreamKey::parse("live/none").expect("key");
    assert!(!edge.await_source(&key).await);
    assert!(edges.pulling().is_empty());
}

/// The relay listener's refusals by cause, once `want` of them are counted.
async fn relay_refusals(engine: &Engine, want: u64) -> Vec<(&'static str, u64)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let refusals = engine
            .listeners()
            .into_iter()
            .find(|l| l.name == tidewater_cluster::relay::LISTENER)
            .map(|l| l.refusals)
            .unwrap_or_default();
        if refusals.iter().map(|(_, n)| n).sum::<u64>() >= want
            || tokio::time::Instant::now() > deadline
        {
            return refusals;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_the_relay_port_is_closed_unanswered_and_counted_by_cause() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (origin, relay, _stop) = origin(SECRET).await;
    // Each sends its bytes, half-closes, and must see the origin close
    // without a byte of answer.
    let junk: [(&str, Vec<u8>); 4] = [
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("a frame first", vec![5, 0, 0, 0, 30, 1, 2, 3]),
        ("a 4 GiB hello", vec![1, 0xFF, 0xFF, 0xFF, 0xFF, 0x33]),
        (
            "a hello cut short",
            vec![1, 0, 0, 0, 200, b'T', b'W', b'R', b'L'],
        ),
    ];
    for _ in 0..10 {
        for (what, bytes) in &junk {
            let mut s = tokio::net::TcpStream::connect(relay)
                .await
                .expect("connect");
            s.write_all(bytes).await.expect("write");
            s.shutdown().await.expect("half-close");
            let mut answer = Vec::new();
            // A reset is a close too (the result's error); either way
            // nothing may have been answered.
            let _closed = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer))
                .await
                .unwrap_or_else(|_| panic!("{what}: still open"));
            assert!(answer.is_empty(), "{what}: answered {answer:?}");
        }
    }
    let mut refusals = relay_refusals(&origin, 40).await;
    refusals.sort();
    assert_eq!(
        refusals,
        [("closed_early", 10), ("not_relay", 20), ("too_large", 10)]
    );

    // The port still serves a node: a reader of a live stream at an edge.
    let key = StreamKey::parse("live/cam").expect("key");
    let mut publisher = origin
        .open_publish(Request::new(key.clone(), "test"))
        .await
        .expect("publish");
    publisher.set_catalog(tracks()).expect("catalog");
    publisher
        .publish(Frame::video(
            TrackId(1),
            Codec::H265,
            0,
            0,
            true,
            Bytes::from_static(b"idr"),
        ))
        .expect("frame");
    let map = Arc::new(StreamMap::default());
    holds(&map, &key, relay);
    let (edge, _edges) = edge(map, SECRET);
    let mut reader = edge
        .subscribe(Request::new(key.clone(), "test"))
        .await
        .expect("the edge's reader");
    assert!(matches!(reader.recv().await, Ok(Event::Catalog(_))));
}
