//! Who may read, against a real kernel on loopback with a small test
//! authorizer: every MPD request is asked about, a protected stream's URLs
//! carry the player's read token, segment requests with a live player's
//! token need nothing else, each player is a session of its own (listed,
//! counted, kickable), and an anonymous stream's URLs stay plain.

use std::collections::HashSet;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tidewater_core::{
    Action, AppSpec, AuthRequest, Authorizer, Codec, Credentials, Engine, Frame, Identity, Refusal,
    RefusalKind, Request, SessionSnapshot, StreamKey, TrackId, TrackInfo,
};
use tidewater_pkg_dash::{DashConfig, dash_router};

const AVCC: &[u8] = &[
    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02, 0x68,
    0xee,
];

/// Reads of app `secure` need a user (alice or bob, password `pw`) or a
/// read token it issued; everything else is anonymous. Tokens can be
/// expired at will.
#[derive(Clone, Default)]
struct TestAuth {
    issued: Arc<Mutex<HashSet<String>>>,
    next: Arc<AtomicU64>,
}

impl TestAuth {
    fn expire_all(&self) {
        self.issued.lock().expect("tokens").clear();
    }

    fn decide(&self, req: &AuthRequest) -> Result<Identity, Refusal> {
        if req.action != Action::Read || req.key.as_ref().is_none_or(|k| k.app() != "secure") {
            return Ok(Identity::anonymous());
        }
        if let Some(token) = req.token() {
            if !self.issued.lock().expect("tokens").contains(token) {
                return Err(Refusal::new(
                    RefusalKind::InvalidCredentials,
                    "invalid read token",
                ));
            }
            let user = token.rsplit('-').next().unwrap_or_default();
            return Ok(Identity::named(user));
        }
        match &req.credentials {
            Credentials::UserPass { user, pass }
                if pass == "pw" && (user == "alice" || user == "bob") =>
            {
                Ok(Identity::named(user.clone()))
            }
            Credentials::None => Err(Refusal::new(
                RefusalKind::MissingCredentials,
                "reading secure/* needs a user",
            )),
            _ => Err(Refusal::new(
                RefusalKind::InvalidCredentials,
                "wrong user or password",
            )),
        }
    }
}

// What `#[async_trait]` makes of `async fn authorize`, written out (this
// crate does not depend on the macro).
impl Authorizer for TestAuth {
    fn authorize<'a, 'b, 'c>(
        &'a self,
        request: &'b AuthRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Identity, Refusal>> + Send + 'c>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        let answer = self.decide(request);
        Box::pin(async move { answer })
    }

    fn read_token(&self, key: &StreamKey, who: &Identity, _ip: Option<IpAddr>) -> Option<String> {
        if key.app() != "secure" {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let token = format!("tok-{n}-{}", who.user.as_deref().unwrap_or("anon"));
        self.issued.lock().expect("tokens").insert(token.clone());
        Some(token)
    }

    fn realm(&self) -> String {
        "test-realm".into()
    }
}

/// A blocking GET on loopback from `from` (an address of 127.0.0.0/8) with
/// extra header lines: (status, lower-cased headers, body).
fn get_from(
    rt: &tokio::runtime::Runtime,
    from: &str,
    addr: SocketAddr,
    path: &str,
    headers: &str,
) -> (u16, String, Vec<u8>) {
    let stream = rt
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(format!("{from}:0").parse().expect("address"))?;
            socket.connect(addr).await
        })
        .expect("connect");
    let mut s: TcpStream = stream.into_std().expect("std stream");
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n");
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

/// `Authorization: Basic` for `user:pw`.
fn basic(user: &str) -> String {
    let encoded = match user {
        "alice" => "YWxpY2U6cHc=",
        "bob" => "Ym9iOnB3",
        "mallory" => "bWFsbG9yeTp4",
        other => panic!("no credentials for {other}"),
    };
    format!("Authorization: Basic {encoded}\r\n")
}

/// The MPD's template URLs and `Location`, all checked to carry the same
/// query: (initialization, media, location, token).
fn urls(body: &[u8]) -> (Vec<String>, Vec<String>, Vec<String>, Option<String>) {
    let xml = String::from_utf8_lossy(body).into_owned();
    let doc = roxmltree::Document::parse(&xml).expect("an MPD");
    let mut init = Vec::new();
    let mut media = Vec::new();
    for t in doc
        .descendants()
        .filter(|n| n.has_tag_name("SegmentTemplate"))
    {
        init.push(t.attribute("initialization").expect("init").to_string());
        media.push(t.attribute("media").expect("media").to_string());
    }
    let location: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("Location"))
        .filter_map(|n| n.text().map(str::to_owned))
        .collect();
    assert!(!media.is_empty(), "{xml}");
    let token = |u: &String| u.split_once("?token=").map(|(_, t)| t.to_string());
    let first = token(&media[0]);
    for u in init.iter().chain(&media).chain(&location) {
        assert_eq!(token(u), first, "{u} in {xml}");
    }
    (init, media, location, first)
}

/// The DASH players of `key`: its `dash` sessions but the packager's own
/// subscription.
fn players(engine: &Engine, key: &StreamKey) -> Vec<SessionSnapshot> {
    let packager: Vec<u64> = engine
        .stream(key)
        .map(|s| s.subscribers.iter().map(|x| x.id).collect())
        .unwrap_or_default();
    engine
        .sessions()
        .into_iter()
        .filter(|s| s.protocol == "dash" && &s.path == key && !packager.contains(&s.id))
        .collect()
}

#[test]
fn protected_players_are_asked_tokened_counted_and_kicked_one_by_one() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let auth = TestAuth::default();
    let engine = rt.block_on(async {
        Engine::builder()
            .default_app(AppSpec::default())
            .authorizer(auth.clone())
            .build()
            .expect("engine")
    });
    let config = DashConfig {
        low_latency: true,
        ..DashConfig::default()
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = dash_router(engine.context(), config);
    rt.spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    let get = |from: &str, path: &str, headers: &str| get_from(&rt, from, addr, path, headers);

    let key = StreamKey::parse("secure/cam").expect("key");
    let open = StreamKey::parse("live/open").expect("key");
    let mut sessions = Vec::new();
    for k in [&key, &open] {
        let mut session = rt
            .block_on(engine.open_publish(Request::new(k.clone(), "test")))
            .expect("publish");
        let video = TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
            .with_timescale(1_000)
            .with_config(Bytes::from_static(AVCC));
        session.set_catalog(vec![video]).expect("catalog");
        sessions.push(session);
    }
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
    for s in &mut sessions {
        s.publish(frame(0)).expect("frame");
    }

    // No credentials, wrong ones: 401 with the challenges, and no player.
    let mpd = "/dash/secure/cam/manifest.mpd";
    let (status, head, _) = get("127.0.0.1", mpd, "");
    assert_eq!(status, 401);
    assert!(
        head.contains("www-authenticate: basic realm=\"test-realm\""),
        "{head}"
    );
    let (status, _, _) = get("127.0.0.1", mpd, &basic("mallory"));
    assert_eq!(status, 401);
    assert!(players(&engine, &key).is_empty());

    // Alice: her MPD's URLs all carry her token; it is hers alone.
    let (status, head, body) = get("127.0.0.1", mpd, &basic("alice"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(head.contains("cache-control: private, no-cache"), "{head}");
    let (init, media, location, alice) = urls(&body);
    let alice = alice.expect("alice's token");
    assert_eq!(
        init[0],
        format!("p1-$RepresentationID$-init.mp4?token={alice}")
    );
    assert_eq!(
        media[0],
        format!("p1-$RepresentationID$-$Number$.m4s?token={alice}")
    );
    assert_eq!(location, [format!("manifest.mpd?token={alice}")]);

    // The first segment completes.
    for t in (40..=4_000).step_by(40) {
        sessions[0].publish(frame(t)).expect("frame");
    }
    let file = |name: &str, token: &str| match token {
        "" => format!("/dash/secure/cam/{name}"),
        t => format!("/dash/secure/cam/{name}?token={t}"),
    };
    let (status, _, body) = get("127.0.0.1", &file("p1-v1-init.mp4", &alice), "");
    assert_eq!(status, 200);
    assert_eq!(&body[4..8], b"ftyp");
    let (status, _, body) = get("127.0.0.1", &file("p1-v1-1.m4s", &alice), "");
    assert_eq!(status, 200);
    assert!(!body.is_empty());
    // Without a token, or with one never issued: asked, refused.
    let (status, head, _) = get("127.0.0.1", &file("p1-v1-init.mp4", ""), "");
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate"), "{head}");
    let (status, _, _) = get("127.0.0.1", &file("p1-v1-init.mp4", "tok-99-alice"), "");
    assert_eq!(status, 401);

    // Bob, from another address: a second player with a token of his own.
    let (status, _, body) = get("127.0.0.2", mpd, &basic("bob"));
    assert_eq!(status, 200);
    let bob = urls(&body).3.expect("bob's token");
    assert_ne!(bob, alice);
    let listed = players(&engine, &key);
    assert_eq!(listed.len(), 2, "{listed:?}");
    for (s, (ip, user)) in listed
        .iter()
        .zip([("127.0.0.1", "alice"), ("127.0.0.2", "bob")])
    {
        assert_eq!(s.protocol, "dash");
        assert_eq!(s.peer.map(|p| p.ip().to_string()).as_deref(), Some(ip));
        assert_eq!(s.user.as_deref(), Some(user));
        assert!(s.bytes_out > 0, "{s:?}");
    }
    let before = listed[0].bytes_out;

    // Alice reloads her MPD from its Location: same token, same session,
    // and what she was sent is counted.
    let (status, _, body) = get("127.0.0.1", &format!("{mpd}?token={alice}"), "");
    assert_eq!(status, 200);
    assert_eq!(urls(&body).3.as_deref(), Some(alice.as_str()));
    let listed = players(&engine, &key);
    assert_eq!(listed.len(), 2);
    assert!(listed[0].bytes_out >= before + body.len() as u64);

    // Bob is kicked: his next requests are refused (though the authorizer
    // would still take his token), Alice plays on.
    assert!(engine.kick(listed[1].id));
    let (status, _, _) = get("127.0.0.2", &file("p1-v1-init.mp4", &bob), "");
    assert_eq!(status, 403);
    let (status, _, _) = get("127.0.0.2", &file("p1-v1-1.m4s", &bob), "");
    assert_eq!(status, 403);
    let (status, _, _) = get("127.0.0.2", &format!("{mpd}?token={bob}"), "");
    assert_eq!(status, 403);
    let (status, _, _) = get("127.0.0.1", &file("p1-v1-init.mp4", &alice), "");
    assert_eq!(status, 200);
    let listed = players(&engine, &key);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].user.as_deref(), Some("alice"));

    // Alice's token outlives the authorizer's expiry while she plays.
    auth.expire_all();
    let (status, _, _) = get("127.0.0.1", &file("p1-v1-init.mp4", &alice), "");
    assert_eq!(status, 200);
    let (status, _, body) = get("127.0.0.1", &format!("{mpd}?token={alice}"), "");
    assert_eq!(status, 200);
    assert_eq!(urls(&body).3.as_deref(), Some(alice.as_str()));

    // An anonymous stream: plain URLs, cacheable MPD, one player per address.
    let (status, head, body) = get("127.0.0.1", "/dash/live/open/manifest.mpd", "");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        head.contains("cache-control: public, max-age=0, s-maxage=1"),
        "{head}"
    );
    assert!(!head.contains("private"), "{head}");
    let (_, _, location, token) = urls(&body);
    assert_eq!((location.len(), token), (0, None));
    assert!(!String::from_utf8_lossy(&body).contains("token"));
    let (status, _, _) = get("127.0.0.1", "/dash/live/open/p1-v1-init.mp4", "");
    assert_eq!(status, 200);
    let listed = players(&engine, &open);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].user, None);
}
