//! Authorization of every playlist and segment request, signed tokens in the
//! playlists' URIs, and the players as sessions of the engine, over HTTP on
//! loopback with a test authorizer: app `secure` needs credentials (users
//! `alice:a` and `bob:b`, or a token it issued), app `live` is open to all.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tidewater_core::{
    Action, AppSpec, AuthRequest, Authorizer, Codec, Credentials, Engine, Frame, Identity, Refusal,
    RefusalKind, Request, SessionSnapshot, StreamKey, TrackId, TrackInfo,
};
use tidewater_pkg_hls::{Hls, HlsConfig, router, validate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const AVCC: &[u8] = &[
    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02, 0x68,
    0xee,
];
const ALICE: &str = "Basic YWxpY2U6YQ=="; // alice:a
const BOB: &str = "Basic Ym9iOmI="; // bob:b
const WRONG: &str = "Basic YWxpY2U6d3Jvbmc="; // alice:wrong

/// The test authorizer: it counts what it is asked and the tokens it
/// refused, and can forget every token it issued (as if they expired).
#[derive(Default)]
struct TestAuth {
    asked: AtomicU64,
    bad_tokens: AtomicU64,
    issued: AtomicU64,
    /// Issued tokens: their stream and user.
    tokens: Mutex<HashMap<String, (StreamKey, Option<String>)>>,
}

impl TestAuth {
    fn decide(&self, req: &AuthRequest) -> Result<Identity, Refusal> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        let key = req.key.clone().ok_or("no stream")?;
        if key.app() != "secure" || req.action == Action::Publish {
            return Ok(Identity::anonymous());
        }
        match &req.credentials {
            Credentials::UserPass { user, pass } => {
                return match (user.as_str(), pass.as_str()) {
                    ("alice", "a") | ("bob", "b") => Ok(Identity::named(user.clone())),
                    _ => Err(Refusal::new(
                        RefusalKind::InvalidCredentials,
                        "wrong user or password",
                    )),
                };
            }
            Credentials::None => {}
            _ => return Err(Refusal::forbidden("unexpected credentials")),
        }
        let Some(token) = req.token() else {
            return Err(Refusal::new(
                RefusalKind::MissingCredentials,
                "credentials needed to read secure/*",
            ));
        };
        let tokens = self.tokens.lock().expect("tokens");
        match tokens.get(token) {
            Some((k, user)) if *k == key => Ok(user
                .clone()
                .map_or_else(Identity::anonymous, Identity::named)),
            _ => {
                self.bad_tokens.fetch_add(1, Ordering::Relaxed);
                Err(Refusal::new(
                    RefusalKind::InvalidCredentials,
                    "invalid or expired token",
                ))
            }
        }
    }

    /// Every token issued so far expires.
    fn expire_all(&self) {
        self.tokens.lock().expect("tokens").clear();
    }
}

/// The test authorizer behind an `Arc`, so the test keeps a handle on it.
#[derive(Clone, Default)]
struct Shared(Arc<TestAuth>);

impl Authorizer for Shared {
    fn authorize<'a, 'b, 'f>(
        &'a self,
        request: &'b AuthRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Identity, Refusal>> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        Box::pin(async move { self.0.decide(request) })
    }

    fn read_token(&self, key: &StreamKey, who: &Identity, _ip: Option<IpAddr>) -> Option<String> {
        if key.app() != "secure" {
            return None;
        }
        let n = self.0.issued.fetch_add(1, Ordering::Relaxed);
        // Not URI-safe on purpose: the packager must encode it.
        let token = format!("t{n} {}", who.user.as_deref().unwrap_or("-"));
        let encoded = token.replace(' ', "%20");
        self.0
            .tokens
            .lock()
            .expect("tokens")
            .insert(encoded, (key.clone(), who.user.clone()));
        Some(token)
    }

    fn realm(&self) -> String {
        "test-realm".into()
    }
}

struct Server {
    addr: SocketAddr,
    engine: Engine,
    auth: Arc<TestAuth>,
    feeders: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for f in &self.feeders {
            f.abort();
        }
    }
}

/// An engine with the test authorizer, the HLS routes on loopback, and
/// `secure/cam` and `live/cam` published (1 s GOPs, 25 fps) until dropped.
async fn server(player_idle_timeout: Duration) -> Server {
    let auth = Shared::default();
    let engine = Engine::builder()
        .app("secure", AppSpec::default())
        .app("live", AppSpec::default())
        .authorizer(auth.clone())
        .build()
        .expect("engine");
    let config = HlsConfig {
        segment_target: Duration::from_secs(1),
        max_segment: Duration::from_secs(1),
        player_idle_timeout,
        ..HlsConfig::default()
    };
    let hls = Hls::new(engine.context(), config).expect("hls");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = router(hls).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut feeders = Vec::new();
    for key in ["secure/cam", "live/cam"] {
        let key = StreamKey::parse(key).expect("key");
        let mut s = engine
            .open_publish(Request::new(key, "test"))
            .await
            .expect("publish");
        s.set_catalog(vec![
            TrackInfo::video(TrackId(1), Codec::H264, 640, 360)
                .with_timescale(1000)
                .with_config(Bytes::from_static(AVCC)),
        ])
        .expect("catalog");
        feeders.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(40));
            for i in 0i64.. {
                tick.tick().await;
                let keyframe = i % 25 == 0;
                let nal: &'static [u8] = if keyframe {
                    &[0, 0, 0, 2, 0x65, 0x88]
                } else {
                    &[0, 0, 0, 2, 0x41, 0x9a]
                };
                let frame = Frame::video(
                    TrackId(1),
                    Codec::H264,
                    i * 40,
                    i * 40,
                    keyframe,
                    Bytes::from_static(nal),
                );
                if s.publish(frame).is_err() {
                    return;
                }
            }
        }));
    }
    Server {
        addr,
        engine,
        auth: auth.0,
        feeders,
    }
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// `GET path` from `from` (a loopback address), with an `Authorization`
/// header when given.
async fn get(addr: SocketAddr, from: [u8; 4], path: &str, authorization: Option<&str>) -> Answer {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback address");
    let mut stream = socket.connect(addr).await.expect("connect");
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within 20 s")
        .expect("read");
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
    let body = String::from_utf8_lossy(&raw[split + 4..]).into_owned();
    Answer { status, head, body }
}

/// Every URI a playlist carries: URI lines and `URI="…"` attributes.
fn uris(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines() {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            out.push(line.to_owned());
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("URI=\"") {
            let value = &rest[at + 5..];
            let end = value.find('"').expect("closing quote");
            out.push(value[..end].to_owned());
            rest = &value[end..];
        }
    }
    out
}

/// The one token every URI of `playlist` carries (panics when one lacks it
/// or they differ).
fn token_of(playlist: &str) -> String {
    let uris = uris(playlist);
    assert!(!uris.is_empty(), "{playlist}");
    let mut token = None;
    for uri in &uris {
        let t = uri
            .split_once('?')
            .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("token=")))
            .unwrap_or_else(|| panic!("{uri} has no token in\n{playlist}"));
        assert_eq!(*token.get_or_insert(t), t, "{playlist}");
    }
    token.expect("a token").to_owned()
}

/// A URI of `playlist` that starts with `prefix`.
fn uri_starting(playlist: &str, prefix: &str) -> String {
    uris(playlist)
        .into_iter()
        .find(|u| u.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}… in\n{playlist}"))
}

fn players(engine: &Engine) -> Vec<SessionSnapshot> {
    engine
        .sessions()
        .into_iter()
        .filter(|s| s.protocol == "hls" || s.protocol == "llhls")
        .collect()
}

const LOCAL: [u8; 4] = [127, 0, 0, 1];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_playlists_need_credentials_and_carry_one_token() {
    let s = server(Duration::from_secs(30)).await;
    let base = "/llhls/secure/cam";

    // No credentials, wrong ones: 401 with the challenges.
    for auth in [None, Some(WRONG)] {
        let a = get(s.addr, LOCAL, &format!("{base}/index.m3u8"), auth).await;
        assert_eq!(a.status, 401, "{auth:?}: {}", a.body);
        assert!(
            a.head
                .contains("www-authenticate: basic realm=\"test-realm\""),
            "{}",
            a.head
        );
    }
    assert!(
        players(&s.engine).is_empty(),
        "refused requests are no players"
    );

    // The master playlist: its variant carries a token.
    let master = get(s.addr, LOCAL, &format!("{base}/master.m3u8"), Some(ALICE)).await;
    assert_eq!(master.status, 200, "{}", master.body);
    let token = token_of(&master.body);
    assert!(
        token.contains("%20"),
        "the token is encoded for the URI: {token}"
    );

    // The media playlist reloaded with it, without credentials: the same
    // token in every URI (init, parts, segments, preload hint).
    let media = get(
        s.addr,
        LOCAL,
        &format!("{base}/index.m3u8?token={token}"),
        None,
    )
    .await;
    assert_eq!(media.status, 200, "{}", media.body);
    assert_eq!(token_of(&media.body), token);
    validate::check(&media.body).unwrap_or_else(|e| panic!("{e}\n{}", media.body));
    for tag in ["#EXT-X-MAP:URI=\"", "#EXT-X-PART:", "#EXT-X-PRELOAD-HINT:"] {
        assert!(media.body.contains(tag), "{tag}\n{}", media.body);
    }
    let seg = uri_starting(&media.body, "seg-");
    let init = uri_starting(&media.body, "init-");
    let part = uri_starting(&media.body, "part-");
    let ours = players(&s.engine);
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(
        (ours[0].protocol, ours[0].user.as_deref()),
        ("llhls", Some("alice"))
    );

    // Segments, parts and init with the token: served without asking the
    // authorizer; without it (or with another): 401.
    let asked = s.auth.asked.load(Ordering::Relaxed);
    for uri in [&seg, &init, &part] {
        let a = get(s.addr, LOCAL, &format!("{base}/{uri}"), None).await;
        assert_eq!(a.status, 200, "{uri}: {}", a.body);
    }
    assert_eq!(s.auth.asked.load(Ordering::Relaxed), asked);
    let plain = seg.split_once('?').expect("query").0;
    let a = get(s.addr, LOCAL, &format!("{base}/{plain}"), None).await;
    assert_eq!(a.status, 401, "{}", a.body);
    let a = get(s.addr, LOCAL, &format!("{base}/{plain}?token=forged"), None).await;
    assert_eq!(a.status, 401, "{}", a.body);

    // A blocking reload keeps the token (and the player's other parameters
    // are the player's own).
    let msn: u64 = media
        .body
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|n| n.parse().ok())
        .expect("media sequence");
    let blocking = format!("{base}/index.m3u8?_HLS_msn={}&token={token}", msn + 1);
    let a = get(s.addr, LOCAL, &blocking, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(token_of(&a.body), token);

    // Every token the authorizer issued expires: the live player's token
    // still works, on playlists and media, and the authorizer never saw it
    // as a failed attempt.
    s.auth.expire_all();
    let bad = s.auth.bad_tokens.load(Ordering::Relaxed);
    let a = get(
        s.addr,
        LOCAL,
        &format!("{base}/index.m3u8?token={token}"),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(token_of(&a.body), token, "the player keeps its token");
    let seg = uri_starting(&a.body, "seg-");
    let a = get(s.addr, LOCAL, &format!("{base}/{seg}"), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(s.auth.bad_tokens.load(Ordering::Relaxed), bad);
    assert_eq!(players(&s.engine).len(), 1, "still one player");
    let bytes = players(&s.engine)[0].bytes_out;
    assert!(bytes > 0, "what was sent is counted");

    // Classic HLS: the same, with its own player.
    let ts = get(s.addr, LOCAL, "/hls/secure/cam/index.m3u8", Some(ALICE)).await;
    assert_eq!(ts.status, 200, "{}", ts.body);
    let ts_token = token_of(&ts.body);
    let seg = uri_starting(&ts.body, "seg-");
    let a = get(s.addr, LOCAL, &format!("/hls/secure/cam/{seg}"), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let protocols: Vec<_> = players(&s.engine).iter().map(|p| p.protocol).collect();
    assert_eq!(protocols.len(), 2, "{protocols:?}");
    assert!(protocols.contains(&"hls") && protocols.contains(&"llhls"));
    assert_ne!(ts_token, token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_player_is_a_session_and_is_kicked_alone() {
    let s = server(Duration::from_secs(30)).await;
    let base = "/llhls/secure/cam";
    let (alice_ip, bob_ip) = ([127, 0, 0, 2], [127, 0, 0, 3]);
    let mut tokens = Vec::new();
    for (from, auth) in [(alice_ip, ALICE), (bob_ip, BOB)] {
        let master = get(s.addr, from, &format!("{base}/master.m3u8"), Some(auth)).await;
        assert_eq!(master.status, 200, "{}", master.body);
        let token = token_of(&master.body);
        // A reload with credentials and no token is the same player.
        let again = get(s.addr, from, &format!("{base}/index.m3u8"), Some(auth)).await;
        assert_eq!(again.status, 200, "{}", again.body);
        assert_eq!(token_of(&again.body), token);
        tokens.push(token);
    }
    let listed = players(&s.engine);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let alice = listed
        .iter()
        .find(|p| p.user.as_deref() == Some("alice"))
        .expect("alice");
    let bob = listed
        .iter()
        .find(|p| p.user.as_deref() == Some("bob"))
        .expect("bob");
    assert_eq!(alice.peer.map(|p| p.ip()), Some(IpAddr::from(alice_ip)));
    assert_eq!(bob.peer.map(|p| p.ip()), Some(IpAddr::from(bob_ip)));
    assert_eq!((alice.protocol, bob.protocol), ("llhls", "llhls"));
    assert!(alice.bytes_out > 0 && bob.bytes_out > 0);

    assert!(s.engine.kick(alice.id));
    let reload = |from, token: &str| {
        let path = format!("{base}/index.m3u8?token={token}");
        async move { get(s.addr, from, &path, None).await }
    };
    let a = reload(alice_ip, &tokens[0]).await;
    assert_eq!(a.status, 403, "{}", a.body);
    // Its token stays refused, for media too, while bob plays on.
    let b = reload(bob_ip, &tokens[1]).await;
    assert_eq!(b.status, 200, "{}", b.body);
    let seg = uri_starting(&b.body, "seg-");
    let alice_seg = seg.replace(&tokens[1], &tokens[0]);
    let a = get(s.addr, alice_ip, &format!("{base}/{alice_seg}"), None).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = reload(alice_ip, &tokens[0]).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let b = get(s.addr, bob_ip, &format!("{base}/{seg}"), None).await;
    assert_eq!(b.status, 200, "{}", b.body);
    let listed = players(&s.engine);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].user.as_deref(), Some("bob"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_streams_have_plain_uris_and_one_player_per_address() {
    let s = server(Duration::from_secs(30)).await;
    let media = get(s.addr, LOCAL, "/llhls/live/cam/index.m3u8", None).await;
    assert_eq!(media.status, 200, "{}", media.body);
    assert!(!media.body.contains("token"), "{}", media.body);
    let master = get(s.addr, LOCAL, "/llhls/live/cam/master.m3u8", None).await;
    assert!(!master.body.contains("token"), "{}", master.body);
    let seg = uri_starting(&media.body, "seg-");
    let a = get(s.addr, LOCAL, &format!("/llhls/live/cam/{seg}"), None).await;
    assert_eq!(a.status, 200);
    assert!(
        a.head
            .contains("cache-control: public, max-age=3600, immutable"),
        "{}",
        a.head
    );
    let other = get(s.addr, [127, 0, 0, 4], "/llhls/live/cam/index.m3u8", None).await;
    assert_eq!(other.status, 200);
    let listed = players(&s.engine);
    let mut peers: Vec<_> = listed
        .iter()
        .filter_map(|p| p.peer)
        .map(|p| p.ip())
        .collect();
    peers.sort();
    assert_eq!(
        peers,
        [IpAddr::from(LOCAL), IpAddr::from([127, 0, 0, 4])],
        "{listed:?}"
    );
    assert!(listed.iter().all(|p| p.user.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_players_leave_the_sessions() {
    let s = server(Duration::from_secs(2)).await;
    let a = get(s.addr, LOCAL, "/hls/secure/cam/index.m3u8", Some(ALICE)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let token = token_of(&a.body);
    assert_eq!(players(&s.engine).len(), 1);
    let mut left = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if players(&s.engine).is_empty() {
            left = true;
            break;
        }
    }
    assert!(left, "still listed: {:?}", players(&s.engine));
    // Its token was forgotten with it: now only the authorizer decides
    // (which still knows it here).
    let again = get(
        s.addr,
        LOCAL,
        &format!("/hls/secure/cam/index.m3u8?token={token}"),
        None,
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(token_of(&again.body), token);
    s.auth.expire_all();
    for _ in 0..100 {
        if players(&s.engine).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(players(&s.engine).is_empty());
    let gone = get(
        s.addr,
        LOCAL,
        &format!("/hls/secure/cam/index.m3u8?token={token}"),
        None,
    )
    .await;
    assert_eq!(gone.status, 401, "{}", gone.body);
}
