//! `[auth]` through the `tidewater` binary, against real clients: ffmpeg
//! publishing and reading over RTMP and SRT with and without the right
//! credentials; curl on every HTTP route (HLS, LL-HLS, DASH, HTTP-FLV,
//! HTTP-TS, the API, `/metrics`) with no credentials, Basic, HS256 JWTs,
//! RS256 JWTs from a JWKS file rotated while the server runs, and an HTTP
//! hook (one that answers, one that never does); the refusal counters in
//! `/metrics`; a user bound to `127.0.0.2`; path traversal on every route
//! prefix; kicked readers; hls.js in Chromium on a token-protected LL-HLS
//! stream; and `tidewater hash-password`.
//!
//! Every test checks what the client got (frames decoded, status codes,
//! headers, bodies), not only how it exited.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tidewater_tests::auth::{
    Cred, HttpReply, HttpRequest, auth_config_head, delete_as, exit_of, get_as, is_live_as,
    read_frames, rtmp_url, sessions_as, spawn_read_frames, user_entry, wait_live_as, wait_session,
    with_query,
};
use tidewater_tests::browser::{Player, PlayerRun, play_in_chromium};
use tidewater_tests::srt::{ffmpeg_publish_ts, ffmpeg_srt_url};
use tidewater_tests::tools::run_tool;
use tidewater_tests::{
    ChildGuard, ServerCommand, ServerProcess, TempDir, ffmpeg_framecrc_command, ffmpeg_publish,
    server_binary,
};

const LIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a refused client may take to give up (it is told at once; this
/// only bounds a hang).
const REFUSED_TIMEOUT: Duration = Duration::from_secs(20);
const READ_TIMEOUT: Duration = Duration::from_secs(40);

const PUBLISH_LIVE: &str = r#"{ action = "publish", path = "live/*" }"#;
const READ_LIVE: &str = r#"{ action = "read", path = "live/*" }"#;
const READ_ALL: &str = r#"{ action = "read" }"#;
const API: &str = r#"{ action = "api" }"#;
const METRICS: &str = r#"{ action = "metrics" }"#;

fn publisher() -> Cred {
    Cred::basic("publisher", "pub-pw")
}

fn viewer() -> Cred {
    Cred::basic("viewer", "view-pw")
}

fn admin() -> Cred {
    Cred::basic("admin", "admin-pw")
}

/// `[http]`, the rate limit off, and the three users every test uses:
/// `publisher` (publish `live/*`), `viewer` (read `live/*`, api, metrics)
/// and `admin` (api, metrics).
fn base_config() -> String {
    format!(
        "{}{}{}{}",
        auth_config_head(),
        user_entry("publisher", "pub-pw", &[PUBLISH_LIVE]),
        user_entry("viewer", "view-pw", &[READ_LIVE, API, METRICS]),
        user_entry("admin", "admin-pw", &[API, METRICS]),
    )
}

fn start(config: &str) -> (ServerProcess, SocketAddr, SocketAddr, SocketAddr) {
    let mut server = ServerCommand::with_config(config).spawn();
    let (http, rtmp, srt) = (server.http_addr(), server.rtmp_addr(), server.srt_addr());
    (server, http, rtmp, srt)
}

/// Whether the log has a line containing every one of `parts`.
fn logged(server: &mut ServerProcess, parts: &[&str]) -> bool {
    server
        .output()
        .lines()
        .any(|l| parts.iter().all(|p| l.contains(p)))
}

/// Publishes `live/{stream}` over RTMP as `publisher` for `seconds` and
/// waits until the API (asked as `api_cred`) shows it live.
fn publish_live(
    http: SocketAddr,
    rtmp: SocketAddr,
    key: &str,
    seconds: u32,
    api_cred: &Cred,
) -> ChildGuard {
    let guard = ffmpeg_publish(
        &rtmp_url(rtmp, key, Some(("publisher", "pub-pw"))),
        seconds,
        25,
    );
    wait_live_as(http, key, api_cred, LIVE_TIMEOUT);
    guard
}

/// Asserts a publisher was refused: it exits by itself with a failure and
/// the stream never goes live.
fn assert_publish_refused(
    what: &str,
    mut child: ChildGuard,
    http: SocketAddr,
    key: &str,
    api: &Cred,
) {
    let Some((status, stderr)) = exit_of(&mut child, REFUSED_TIMEOUT) else {
        panic!("{what}: ffmpeg still publishes after {REFUSED_TIMEOUT:?}: it was not refused");
    };
    assert!(
        !status.success(),
        "{what}: ffmpeg exited {status}: a refused publish must fail\n{stderr}"
    );
    assert!(
        !is_live_as(http, key, api),
        "{what}: {key} is live though the publish was refused"
    );
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

const HS_SECRET: &str = "an-hs256-secret-for-the-auth-end-to-end-tests";

/// An HS256 JWT signed with `secret`: `sub`, `exp` `exp_in` seconds from
/// now, and `permissions` as its `tidewater_permissions` claim.
fn hs256(secret: &str, sub: &str, permissions: Value, exp_in: i64) -> String {
    let claims = json!({
        "sub": sub,
        "exp": now_s() as i64 + exp_in,
        "tidewater_permissions": permissions,
    });
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).expect("HMAC key"),
    )
    .expect("sign the JWT")
}

fn read_api_metrics() -> Value {
    json!([
        {"action": "read", "path": "live/*"},
        {"action": "api"},
        {"action": "metrics"},
    ])
}

// ---------------------------------------------------------------------------
// The HTTP routes and what a client must get from each.

/// What a route's body must look like when it is served.
#[derive(Clone, Copy, Debug)]
enum Body {
    Playlist,
    Mpd,
    Flv,
    Ts,
    Json,
    Metrics,
}

impl Body {
    fn fits(self, r: &HttpReply, key: &str) -> bool {
        let text = r.text();
        match self {
            Body::Playlist => text.starts_with("#EXTM3U"),
            Body::Mpd => text.contains("<MPD"),
            Body::Flv => r.body.starts_with(b"FLV") && r.body.len() > 1000,
            Body::Ts => r.body.len() >= 188 * 4 && r.body[0] == 0x47 && r.body[188] == 0x47,
            Body::Json => {
                serde_json::from_slice::<Value>(&r.body).is_ok()
                    && (key.is_empty() || text.contains(key))
            }
            Body::Metrics => text.contains("# TYPE") && text.contains("tidewater_"),
        }
    }

    /// Whether a refusal's body still carries what only a served route
    /// would (media, a playlist, the API's data).
    fn leaks(r: &HttpReply) -> bool {
        let text = r.text();
        r.body.starts_with(b"FLV")
            || (r.body.len() >= 376 && r.body[0] == 0x47 && r.body[188] == 0x47)
            || text.contains("#EXTM3U")
            || text.contains("<MPD")
            || text.contains("\"streams\"")
            || text.contains("\"sessions\"")
            || text.contains("# TYPE")
            || text.contains("root:")
    }
}

struct Route {
    name: &'static str,
    url: String,
    body: Body,
    /// A live stream that never ends: read for a moment only.
    endless: bool,
    /// Text the served body must contain (the stream's key in the API list).
    needle: String,
}

/// Every HTTP route of `key` on `http`: HLS (media and master playlists),
/// LL-HLS, DASH, HTTP-FLV, HTTP-TS, the API's stream list and sessions, and
/// `/metrics`.
fn routes(http: SocketAddr, key: &str) -> Vec<Route> {
    let r = |name, path: String, body, endless, needle: &str| Route {
        name,
        url: format!("http://{http}{path}"),
        body,
        endless,
        needle: needle.to_string(),
    };
    vec![
        r(
            "hls",
            format!("/hls/{key}/index.m3u8"),
            Body::Playlist,
            false,
            "",
        ),
        r(
            "hls master",
            format!("/hls/{key}/master.m3u8"),
            Body::Playlist,
            false,
            "",
        ),
        r(
            "llhls",
            format!("/llhls/{key}/index.m3u8"),
            Body::Playlist,
            false,
            "",
        ),
        r(
            "dash",
            format!("/dash/{key}/manifest.mpd"),
            Body::Mpd,
            false,
            "",
        ),
        r("http-flv", format!("/flv/{key}.flv"), Body::Flv, true, ""),
        r("http-ts", format!("/ts/{key}.ts"), Body::Ts, true, ""),
        r(
            "api streams",
            "/api/v1/streams".into(),
            Body::Json,
            false,
            key,
        ),
        r(
            "api sessions",
            "/api/v1/sessions".into(),
            Body::Json,
            false,
            "sessions",
        ),
        r("metrics", "/metrics".into(), Body::Metrics, false, ""),
    ]
}

/// What a request must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// 200 with the route's body.
    Served,
    /// 401 with `WWW-Authenticate` challenges (Basic and Bearer).
    Unauthorized,
    /// 403.
    Forbidden,
    /// 503: the deciding service could not be asked.
    Unavailable,
}

fn request(route: &Route, cred: &Cred) -> HttpReply {
    let mut req = HttpRequest::get(&route.url).cred(cred);
    if route.endless {
        req = req.max_time(Duration::from_secs(2));
    }
    req.send()
}

/// Checks one request; a failure is described in `failures`.
fn check(route: &Route, cred: &Cred, want: Want, failures: &mut Vec<String>) -> HttpReply {
    let r = request(route, cred);
    let ok = match want {
        Want::Served => r.status == 200 && route.body.fits(&r, &route.needle),
        Want::Unauthorized => {
            let challenges = r.header_all("www-authenticate");
            r.status == 401
                && challenges.iter().any(|c| c.starts_with("Basic realm="))
                && challenges.iter().any(|c| c.starts_with("Bearer realm="))
                && !Body::leaks(&r)
        }
        Want::Forbidden => r.status == 403 && !Body::leaks(&r),
        Want::Unavailable => r.status == 503 && !Body::leaks(&r),
    };
    if !ok {
        failures.push(format!(
            "{} with {}: want {want:?}, got {}",
            route.name,
            cred.describe(),
            r.summary()
        ));
    }
    r
}

fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} request(s) did not get what they should:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Waits until every playlist route of `key` is served to `cred` (the first
/// segments take a few seconds after the stream goes live).
fn wait_packaged(http: SocketAddr, key: &str, cred: &Cred) {
    let deadline = Instant::now() + LIVE_TIMEOUT;
    for route in routes(http, key)
        .iter()
        .filter(|r| matches!(r.body, Body::Playlist | Body::Mpd))
    {
        loop {
            let r = request(route, cred);
            if r.status == 200 && route.body.fits(&r, "") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {key} not served to {} within {LIVE_TIMEOUT:?}: {}",
                route.name,
                cred.describe(),
                r.summary()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

// ---------------------------------------------------------------------------
// 1. RTMP

#[test]
fn rtmp_publish_and_play_need_the_right_credentials() {
    let (mut server, http, rtmp, _) = start(&base_config());
    let key = "live/cam1";

    for (what, user) in [
        ("no credentials", None),
        ("a wrong password", Some(("publisher", "not-the-password"))),
        ("an unknown user", Some(("mallory", "pub-pw"))),
        ("a user without publish", Some(("viewer", "view-pw"))),
    ] {
        let child = ffmpeg_publish(&rtmp_url(rtmp, key, user), 10, 25);
        assert_publish_refused(what, child, http, key, &admin());
    }
    assert!(
        logged(
            &mut server,
            &["publish live/cam1 from 127.0.0.1", "refused"]
        ),
        "a refused publish is logged:\n{}",
        server.output()
    );

    let _publisher = publish_live(http, rtmp, key, 14, &admin());
    let publisher_session = wait_session(http, &admin(), LIVE_TIMEOUT, |s| {
        s["kind"] == "publisher" && s["path"] == key
    });
    assert_eq!(publisher_session["protocol"], "rtmp", "{publisher_session}");
    assert_eq!(
        publisher_session["user"], "publisher",
        "{publisher_session}"
    );

    let good = spawn_read_frames(
        rtmp_url(rtmp, key, Some(("viewer", "view-pw"))),
        &["-t", "4"],
        READ_TIMEOUT,
    );
    for (what, user) in [
        ("no credentials", None),
        ("a wrong password", Some(("viewer", "nope"))),
        ("a user without read", Some(("publisher", "pub-pw"))),
    ] {
        let out = read_frames(&rtmp_url(rtmp, key, user), &["-t", "4"], REFUSED_TIMEOUT);
        assert!(
            out.failed(),
            "RTMP play with {what}: ffmpeg must fail ({:?})\n{}",
            out.status,
            out.stderr
        );
        assert_eq!(
            (out.video_frames(), out.audio_frames()),
            (0, 0),
            "RTMP play with {what}: nothing may be decoded"
        );
    }
    let good = good.join().expect("reader thread");
    assert!(
        good.status.is_some_and(|s| s.success()),
        "RTMP play as viewer failed ({:?}): {}",
        good.status,
        good.stderr
    );
    assert!(
        good.video_frames() >= 90,
        "viewer decoded {} video frames in 4 s",
        good.video_frames()
    );
    assert!(
        good.audio_frames() >= 100,
        "viewer decoded {} audio frames in 4 s",
        good.audio_frames()
    );
    assert!(good.crc.monotonic(), "timestamps go backwards");
    assert!(
        logged(&mut server, &["read live/cam1 from 127.0.0.1", "refused"]),
        "a refused play is logged:\n{}",
        server.output()
    );
}

// ---------------------------------------------------------------------------
// 2. SRT

#[test]
fn srt_publish_and_read_need_the_right_credentials() {
    let config = format!("{}[auth.jwt]\nsecret = \"{HS_SECRET}\"\n", base_config());
    let (mut server, http, _, srt) = start(&config);
    let key = "live/s1";

    for (what, id) in [
        ("no credentials", "publish:live/s1"),
        ("a wrong password", "publish:live/s1:publisher:wrong"),
        ("a user without publish", "publish:live/s1:viewer:view-pw"),
        (
            "the libsrt form without a password",
            "#!::r=live/s1,m=publish,u=publisher",
        ),
    ] {
        let child = ffmpeg_publish_ts(&ffmpeg_srt_url(srt, id), 10, 25, "libx264");
        assert_publish_refused(what, child, http, key, &admin());
    }
    assert!(
        logged(&mut server, &["publish live/s1 from 127.0.0.1", "refused"]),
        "a refused SRT publish is logged:\n{}",
        server.output()
    );

    let _publisher = ffmpeg_publish_ts(
        &ffmpeg_srt_url(srt, "publish:live/s1:publisher:pub-pw"),
        16,
        25,
        "libx264",
    );
    let live = wait_live_as(http, key, &admin(), LIVE_TIMEOUT);
    assert_eq!(live["protocol"], "srt", "{live}");

    // A JWT in the stream id's query (ffmpeg 5.1 hands the stream id on as
    // written, without percent-decoding it).
    let token = hs256(
        HS_SECRET,
        "srt-viewer",
        json!([{"action": "read", "path": "live/s1"}]),
        600,
    );
    let with_token = format!("read:live/s1?token={token}");
    let good = [
        spawn_read_frames(
            ffmpeg_srt_url(srt, "read:live/s1:viewer:view-pw"),
            &["-t", "4"],
            READ_TIMEOUT,
        ),
        spawn_read_frames(ffmpeg_srt_url(srt, &with_token), &["-t", "4"], READ_TIMEOUT),
    ];
    for (what, id) in [
        ("no credentials", "read:live/s1".to_string()),
        ("a wrong password", "read:live/s1:viewer:nope".to_string()),
        (
            "a user without read",
            "read:live/s1:publisher:pub-pw".to_string(),
        ),
        (
            "a JWT signed with another secret",
            format!(
                "read:live/s1?token={}",
                hs256(
                    "another-secret-entirely",
                    "x",
                    json!([{"action": "read"}]),
                    600
                )
            ),
        ),
    ] {
        let out = read_frames(&ffmpeg_srt_url(srt, &id), &["-t", "4"], REFUSED_TIMEOUT);
        assert!(
            out.status.is_some(),
            "SRT read with {what}: ffmpeg still waits after {REFUSED_TIMEOUT:?}"
        );
        assert_eq!(
            (out.video_frames(), out.audio_frames()),
            (0, 0),
            "SRT read with {what}: nothing may be decoded"
        );
        assert!(
            out.failed(),
            "SRT read with {what}: ffmpeg must fail\n{}",
            out.stderr
        );
    }
    for (what, reader) in ["user:pass", "?token="].into_iter().zip(good) {
        let out = reader.join().expect("reader thread");
        assert!(
            out.status.is_some_and(|s| s.success()),
            "SRT read with {what} failed ({:?}): {}",
            out.status,
            out.stderr
        );
        assert!(
            out.video_frames() >= 90 && out.audio_frames() >= 100,
            "SRT read with {what}: {} video, {} audio frames in 4 s",
            out.video_frames(),
            out.audio_frames()
        );
    }
    assert!(
        logged(&mut server, &["read live/s1 from 127.0.0.1", "refused"]),
        "a refused SRT read is logged:\n{}",
        server.output()
    );
}

// ---------------------------------------------------------------------------
// 3. HTTP routes: no credentials, Basic, HS256, RS256 from a rotated JWKS, a hook

#[test]
fn http_routes_take_basic_and_hs256_jwts() {
    let config = format!("{}[auth.jwt]\nsecret = \"{HS_SECRET}\"\n", base_config());
    let (_server, http, rtmp, _) = start(&config);
    let key = "live/cam1";
    let _publisher = publish_live(http, rtmp, key, 40, &admin());
    wait_packaged(http, key, &viewer());

    let token = hs256(HS_SECRET, "jwt-viewer", read_api_metrics(), 600);
    let forged = hs256(
        "not-the-servers-secret",
        "jwt-viewer",
        read_api_metrics(),
        600,
    );
    let expired = hs256(HS_SECRET, "jwt-viewer", read_api_metrics(), -3600);
    let read_only = hs256(
        HS_SECRET,
        "reader",
        json!([{"action": "read", "path": "live/*"}]),
        600,
    );
    let api_only = hs256(
        HS_SECRET,
        "operator",
        json!([{"action": "api"}, {"action": "metrics"}]),
        600,
    );

    // ffmpeg decodes HLS, LL-HLS and DASH with only ?token= on the URL it
    // is given: the playlists must carry tokens for what they list.
    let decoders: Vec<_> = ["hls", "llhls", "dash"]
        .into_iter()
        .map(|p| {
            let url = match p {
                "dash" => format!("http://{http}/dash/{key}/manifest.mpd"),
                _ => format!("http://{http}/{p}/{key}/index.m3u8"),
            };
            (
                p,
                spawn_read_frames(
                    with_query(&url, "token", &token),
                    &["-t", "4"],
                    READ_TIMEOUT,
                ),
            )
        })
        .collect();

    let mut failures = Vec::new();
    for route in routes(http, key) {
        let media = !route.name.starts_with("api") && route.name != "metrics";
        for (cred, want) in [
            (Cred::None, Want::Unauthorized),
            (viewer(), Want::Served),
            (Cred::basic("viewer", "wrong"), Want::Unauthorized),
            (Cred::basic("nobody", "view-pw"), Want::Unauthorized),
            (Cred::bearer(&token), Want::Served),
            (Cred::query(&token), Want::Served),
            (Cred::bearer(&forged), Want::Unauthorized),
            (Cred::query(&forged), Want::Unauthorized),
            (Cred::bearer(&expired), Want::Unauthorized),
            (Cred::bearer("not-a-jwt"), Want::Unauthorized),
            // Authenticated, without the permission for this route.
            (publisher(), Want::Forbidden),
            (
                Cred::bearer(&read_only),
                if media { Want::Served } else { Want::Forbidden },
            ),
            (
                Cred::bearer(&api_only),
                if media { Want::Forbidden } else { Want::Served },
            ),
        ] {
            check(&route, &cred, want, &mut failures);
        }
    }
    assert_no_failures(&failures);

    // Playlists read with credentials carry signed read tokens in their
    // URIs; a listed segment is served with its token alone and refused
    // without it.
    let playlist = get_as(&format!("http://{http}/hls/{key}/index.m3u8"), &viewer());
    let text = playlist.text();
    let segment = text
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no segment in\n{text}"))
        .to_string();
    assert!(
        segment.contains("token="),
        "the segment URI carries no token: {segment}\n{text}"
    );
    let seg_url = format!("http://{http}/hls/{key}/{segment}");
    let with_its_token = get_as(&seg_url, &Cred::None);
    assert_eq!(with_its_token.status, 200, "{}", with_its_token.summary());
    assert_eq!(
        with_its_token.body.first(),
        Some(&0x47),
        "an MPEG-TS segment"
    );
    let bare = seg_url.split('?').next().unwrap_or_default().to_string();
    let without = get_as(&bare, &Cred::None);
    assert_eq!(without.status, 401, "{bare}: {}", without.summary());
    // A read token grants reading its stream, nothing else.
    let stolen = segment.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let api = get_as(
        &format!("http://{http}/api/v1/streams?{stolen}"),
        &Cred::None,
    );
    assert_eq!(
        api.status,
        403,
        "a read token used on the API: {}",
        api.summary()
    );
    let mpd = get_as(&format!("http://{http}/dash/{key}/manifest.mpd"), &viewer()).text();
    assert!(
        mpd.contains("token="),
        "the MPD's URLs carry no token:\n{mpd}"
    );

    for (name, reader) in decoders {
        let out = reader.join().expect("reader thread");
        assert!(
            out.video_frames() >= 80 && out.audio_frames() >= 100,
            "{name} with ?token=: {} video, {} audio frames decoded ({:?}): {}",
            out.video_frames(),
            out.audio_frames(),
            out.status,
            out.stderr
        );
    }
}

/// An RSA key made by the openssl command line: the signing key (PKCS#1 DER).
fn rsa_key(dir: &TempDir, name: &str) -> EncodingKey {
    let pem = dir.file(&format!("{name}.pem"));
    let der = dir.file(&format!("{name}.der"));
    let path = |p: &std::path::Path| p.display().to_string();
    run_tool(
        "openssl",
        [
            "genrsa",
            "-traditional",
            "-out",
            path(&pem).as_str(),
            "2048",
        ],
    );
    run_tool(
        "openssl",
        [
            "rsa",
            "-in",
            path(&pem).as_str(),
            "-traditional",
            "-outform",
            "DER",
            "-out",
            path(&der).as_str(),
        ],
    );
    EncodingKey::from_rsa_der(&std::fs::read(&der).expect("the DER key"))
}

/// A JWKS holding the public halves of `keys`, by kid.
fn jwks(keys: &[(&str, &EncodingKey)]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, key)| {
            let mut jwk = Jwk::from_encoding_key(key, Algorithm::RS256).expect("public key");
            jwk.common.key_id = Some((*kid).to_string());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            let v = serde_json::to_value(jwk).expect("JWK as JSON");
            assert!(v.get("d").is_none(), "a private part in the JWKS: {v}");
            v
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

fn rs256(kid: &str, key: &EncodingKey, audience: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    let claims = json!({
        "sub": format!("rs-{kid}"),
        "iss": "tidewater-tests",
        "aud": audience,
        "exp": now_s() + 600,
        "tidewater_permissions": read_api_metrics(),
    });
    encode(&header, &claims, key).expect("sign RS256")
}

#[test]
fn rs256_tokens_follow_a_jwks_file_rotated_while_running() {
    let dir = TempDir::new("jwks");
    let (key_a, key_b) = (rsa_key(&dir, "a"), rsa_key(&dir, "b"));
    let jwks_path = dir.write("jwks.json", &jwks(&[("a", &key_a)]));
    let config = format!(
        "{}[auth.jwt]\njwks_file = \"{}\"\nissuer = \"tidewater-tests\"\naudience = \"tidewater\"\n",
        base_config(),
        jwks_path.display()
    );
    let (mut server, http, rtmp, _) = start(&config);
    let key = "live/cam1";
    let _publisher = publish_live(http, rtmp, key, 40, &admin());
    wait_packaged(http, key, &viewer());

    let token_a = rs256("a", &key_a, "tidewater");
    let token_b = rs256("b", &key_b, "tidewater");
    let wrong_audience = rs256("a", &key_a, "someone-else");
    let hs = hs256(HS_SECRET, "x", read_api_metrics(), 600);
    let mut failures = Vec::new();
    for route in routes(http, key) {
        check(&route, &Cred::bearer(&token_a), Want::Served, &mut failures);
        check(&route, &Cred::query(&token_a), Want::Served, &mut failures);
        check(
            &route,
            &Cred::bearer(&token_b),
            Want::Unauthorized,
            &mut failures,
        );
        check(
            &route,
            &Cred::bearer(&wrong_audience),
            Want::Unauthorized,
            &mut failures,
        );
        check(
            &route,
            &Cred::bearer(&hs),
            Want::Unauthorized,
            &mut failures,
        );
    }
    assert_no_failures(&failures);

    // Rotate: the file now holds key b only (written aside, renamed over).
    let aside = dir.write("jwks.json.new", &jwks(&[("b", &key_b)]));
    std::fs::rename(&aside, &jwks_path).expect("rotate the JWKS");
    let api = format!("http://{http}/api/v1/streams");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get_as(&api, &Cred::bearer(&token_b));
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new key's token is still refused 10 s after the JWKS file changed: {}\n{}",
            r.summary(),
            server.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for route in routes(http, key) {
        check(&route, &Cred::bearer(&token_b), Want::Served, &mut failures);
        check(&route, &Cred::query(&token_b), Want::Served, &mut failures);
        check(
            &route,
            &Cred::bearer(&token_a),
            Want::Unauthorized,
            &mut failures,
        );
    }
    assert_no_failures(&failures);
}

/// A JSON-over-HTTP auth hook on loopback: allows the token it was given,
/// answers 401 to a request without token or user, 403 to anything else; or
/// never answers at all. Remembers every request body.
struct Hook {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Value>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hook {
    fn start(allow: &'static str, answers: bool) -> Hook {
        use axum::extract::State;
        use axum::http::StatusCode;

        type Seen = Arc<Mutex<Vec<Value>>>;
        async fn decide(
            State((seen, allow, answers)): State<(Seen, &'static str, bool)>,
            body: axum::body::Bytes,
        ) -> StatusCode {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(v.clone());
            if !answers {
                std::future::pending::<()>().await;
            }
            if v["token"] == allow {
                StatusCode::OK
            } else if v["token"].is_null() && v["user"].is_null() {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            }
        }

        let seen: Seen = Arc::default();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = (Arc::clone(&seen), allow, answers);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind the hook");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send");
                let app = axum::Router::new()
                    .route("/auth", axum::routing::post(decide))
                    .with_state(state);
                tokio::select! {
                    r = axum::serve(listener, app) => r.expect("the hook serves"),
                    _ = stopped => {}
                }
            });
        });
        let addr = addr_rx.recv().expect("the hook's address");
        Hook {
            addr,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/auth", self.addr)
    }

    fn seen(&self) -> Vec<Value> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn an_http_hook_allows_its_token_and_refuses_others() {
    let hook = Hook::start("hook-token-ok", true);
    let config = format!(
        "{}{}[auth.http]\nurl = \"{}\"\ncache_ms = 0\n",
        auth_config_head(),
        user_entry("publisher", "pub-pw", &[PUBLISH_LIVE]),
        hook.url()
    );
    let (_server, http, rtmp, _) = start(&config);
    let key = "live/cam1";
    let hook_cred = Cred::query("hook-token-ok");
    let _publisher = publish_live(http, rtmp, key, 40, &hook_cred);
    wait_packaged(http, key, &hook_cred);

    let mut failures = Vec::new();
    for route in routes(http, key) {
        check(
            &route,
            &Cred::query("hook-token-ok"),
            Want::Served,
            &mut failures,
        );
        check(
            &route,
            &Cred::bearer("hook-token-ok"),
            Want::Served,
            &mut failures,
        );
        check(
            &route,
            &Cred::query("hook-token-bad"),
            Want::Forbidden,
            &mut failures,
        );
        check(
            &route,
            &Cred::bearer("hook-token-bad"),
            Want::Forbidden,
            &mut failures,
        );
        check(&route, &Cred::None, Want::Unauthorized, &mut failures);
    }
    assert_no_failures(&failures);

    // The hook was asked with what the documentation promises.
    let seen = hook.seen();
    let asked = |action: &str, path: Value| {
        seen.iter().any(|v| {
            v["token"] == "hook-token-ok"
                && v["action"] == action
                && v["path"] == path
                && v["ip"] == "127.0.0.1"
                && v["protocol"].as_str().is_some_and(|p| !p.is_empty())
        })
    };
    assert!(
        asked("read", json!(key)),
        "no read of {key} asked: {seen:?}"
    );
    assert!(asked("api", Value::Null), "no api request asked: {seen:?}");
    assert!(
        asked("metrics", Value::Null),
        "no metrics request asked: {seen:?}"
    );
    for v in &seen {
        for field in [
            "user", "password", "token", "ip", "action", "path", "protocol", "id",
        ] {
            assert!(
                v.get(field).is_some(),
                "the hook's body has no {field}: {v}"
            );
        }
    }
}

#[test]
fn a_hook_that_never_answers_refuses() {
    let hook = Hook::start("hook-token-ok", false);
    let config = format!(
        "{}{}{}[auth.http]\nurl = \"{}\"\ntimeout_ms = 500\ncache_ms = 0\n",
        auth_config_head(),
        user_entry("publisher", "pub-pw", &[PUBLISH_LIVE]),
        user_entry("admin", "admin-pw", &[API, METRICS]),
        hook.url()
    );
    let (mut server, http, rtmp, _) = start(&config);
    let key = "live/cam1";
    // A publisher the users table does not know goes to the hook, which
    // never answers: refused.
    let child = ffmpeg_publish(&format!("rtmp://{rtmp}/{key}?token=hook-token-ok"), 10, 25);
    assert_publish_refused(
        "a token only the silent hook could allow",
        child,
        http,
        key,
        &admin(),
    );

    let _publisher = publish_live(http, rtmp, key, 30, &admin());
    let mut failures = Vec::new();
    for route in routes(http, key) {
        check(
            &route,
            &Cred::query("hook-token-ok"),
            Want::Unavailable,
            &mut failures,
        );
    }
    assert_no_failures(&failures);
    assert!(
        !hook.seen().is_empty(),
        "the hook was never asked, so the refusals prove nothing"
    );
    assert!(
        logged(&mut server, &["auth hook failed"]),
        "a silent hook is logged:\n{}",
        server.output()
    );
}

// ---------------------------------------------------------------------------
// 4. /metrics counts the refusals

/// `/metrics` (asked as `admin`) parsed with a Prometheus text parser:
/// `tidewater_listener_refusals_total` summed over its reasons, by listener.
fn refusals_by_listener(http: SocketAddr) -> HashMap<String, f64> {
    let r = get_as(&format!("http://{http}/metrics"), &admin());
    assert_eq!(r.status, 200, "{}", r.summary());
    let text = r.text();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"));
    let mut by_listener = HashMap::new();
    for s in &scrape.samples {
        if !s.metric.starts_with("tidewater_listener_refusals") {
            continue;
        }
        let v = match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{} is not a counter: {other:?}", s.metric),
        };
        let listener = s.labels.get("listener").unwrap_or("").to_string();
        *by_listener.entry(listener).or_insert(0.0) += v;
    }
    by_listener
}

#[test]
fn every_refusal_is_counted_in_metrics() {
    let (_server, http, rtmp, srt) = start(&base_config());
    let count = |listener: &str| {
        refusals_by_listener(http)
            .get(listener)
            .copied()
            .unwrap_or(0.0)
    };
    let before = count("http");

    // One refused request per HTTP route, each checked on its own so the
    // report names the routes whose refusals go uncounted.
    let mut uncounted = Vec::new();
    let mut refused_http = 0.0;
    let refused: Vec<(&str, String, Cred)> = vec![
        ("hls", "/hls/live/cam1/index.m3u8".into(), Cred::None),
        ("llhls", "/llhls/live/cam1/index.m3u8".into(), Cred::None),
        ("dash", "/dash/live/cam1/manifest.mpd".into(), Cred::None),
        ("http-flv", "/flv/live/cam1.flv".into(), Cred::None),
        ("http-ts", "/ts/live/cam1.ts".into(), Cred::None),
        (
            "hls wrong password",
            "/hls/live/cam1/index.m3u8".into(),
            Cred::basic("viewer", "bad"),
        ),
        ("api", "/api/v1/streams".into(), Cred::None),
        (
            "api wrong password",
            "/api/v1/streams".into(),
            Cred::basic("viewer", "bad"),
        ),
        ("metrics forbidden", "/metrics".into(), publisher()),
    ];
    for (name, path, cred) in refused {
        let at = count("http");
        let r = HttpRequest::get(format!("http://{http}{path}"))
            .cred(&cred)
            .max_time(Duration::from_secs(3))
            .send();
        assert!(
            r.status == 401 || r.status == 403,
            "{name}: {}",
            r.summary()
        );
        refused_http += 1.0;
        let now = count("http");
        if now - at != 1.0 {
            uncounted.push(format!(
                "{name} ({path}, {}): counter moved by {}",
                r.status,
                now - at
            ));
        }
    }

    let rtmp_before = count("rtmp");
    let child = ffmpeg_publish(&rtmp_url(rtmp, "live/cam1", None), 5, 25);
    assert_publish_refused(
        "RTMP without credentials",
        child,
        http,
        "live/cam1",
        &admin(),
    );
    let srt_before = count("srt");
    let child = ffmpeg_publish_ts(&ffmpeg_srt_url(srt, "publish:live/cam1"), 5, 25, "libx264");
    assert_publish_refused(
        "SRT without credentials",
        child,
        http,
        "live/cam1",
        &admin(),
    );

    assert_eq!(
        count("rtmp") - rtmp_before,
        1.0,
        "the refused RTMP publish is counted"
    );
    assert_eq!(
        count("srt") - srt_before,
        1.0,
        "the refused SRT publish is counted"
    );
    assert!(
        uncounted.is_empty(),
        "tidewater_listener_refusals_total{{listener=\"http\"}} went from {before} to {} after \
         {refused_http} refused HTTP requests; not counted:\n{}",
        count("http"),
        uncounted.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 5. A user bound to an address

#[test]
fn a_user_restricted_to_127_0_0_2_is_refused_from_127_0_0_1() {
    let config = format!(
        "{}[[auth.users]]\nuser = \"local2\"\npassword = \"l2-pw\"\nips = [\"127.0.0.2/32\"]\npermissions = [{READ_LIVE}, {API}]\n\n",
        base_config(),
    );
    let (mut server, http, rtmp, _) = start(&config);
    let key = "live/cam1";
    let _publisher = publish_live(http, rtmp, key, 30, &admin());
    let local2 = Cred::basic("local2", "l2-pw");
    let api = format!("http://{http}/api/v1/streams");
    let flv = format!("http://{http}/flv/{key}.flv");

    let from_1_api = HttpRequest::get(&api).cred(&local2).send();
    assert_eq!(
        from_1_api.status,
        403,
        "API from 127.0.0.1: {}",
        from_1_api.summary()
    );
    assert!(!Body::leaks(&from_1_api), "{}", from_1_api.summary());
    let from_1_flv = HttpRequest::get(&flv)
        .cred(&local2)
        .max_time(Duration::from_secs(2))
        .send();
    assert_eq!(
        from_1_flv.status,
        403,
        "HTTP-FLV from 127.0.0.1: {}",
        from_1_flv.summary()
    );
    assert!(
        !from_1_flv.body.starts_with(b"FLV"),
        "refused, yet FLV bytes came"
    );

    let from_2_api = HttpRequest::get(&api)
        .cred(&local2)
        .from_ip("127.0.0.2")
        .send();
    assert_eq!(
        from_2_api.status,
        200,
        "API from 127.0.0.2: {}",
        from_2_api.summary()
    );
    assert!(from_2_api.text().contains(key), "{}", from_2_api.summary());
    let from_2_flv = HttpRequest::get(&flv)
        .cred(&local2)
        .from_ip("127.0.0.2")
        .max_time(Duration::from_secs(2))
        .send();
    assert_eq!(
        from_2_flv.status,
        200,
        "HTTP-FLV from 127.0.0.2: {}",
        from_2_flv.summary()
    );
    assert!(
        from_2_flv.body.starts_with(b"FLV") && from_2_flv.body.len() > 1000,
        "HTTP-FLV from 127.0.0.2 got {} bytes",
        from_2_flv.body.len()
    );
    // Wrong password from the right address is still wrong.
    let wrong = HttpRequest::get(&api)
        .cred(&Cred::basic("local2", "nope"))
        .from_ip("127.0.0.2")
        .send();
    assert_eq!(wrong.status, 401, "{}", wrong.summary());
    assert!(
        logged(&mut server, &["local2", "127.0.0.1", "refused"]),
        "the address refusal is logged:\n{}",
        server.output()
    );
}

// ---------------------------------------------------------------------------
// 6. Path traversal

#[test]
fn path_traversal_is_refused_on_every_route_prefix() {
    // `narrow` may read live/open only; the traversals aim at live/secret,
    // at other API routes, and at files.
    let config = format!(
        "{}{}{}",
        base_config(),
        user_entry(
            "narrow",
            "narrow-pw",
            &[r#"{ action = "read", path = "live/open" }"#, API]
        ),
        user_entry("root", "root-pw", &[READ_ALL, API, METRICS]),
    );
    let (_server, http, rtmp, _) = start(&config);
    let _open = publish_live(http, rtmp, "live/open", 60, &admin());
    let _secret = publish_live(http, rtmp, "live/secret", 60, &admin());
    wait_packaged(http, "live/open", &Cred::basic("root", "root-pw"));
    wait_packaged(http, "live/secret", &Cred::basic("root", "root-pw"));
    let sessions_before = sessions_as(http, &admin()).len();

    let mut paths = Vec::new();
    for (prefix, suffix) in [
        ("/hls", "/index.m3u8"),
        ("/llhls", "/index.m3u8"),
        ("/dash", "/manifest.mpd"),
        ("/flv", ".flv"),
        ("/ts", ".ts"),
    ] {
        for template in [
            "{P}/live/open/../secret{S}",
            "{P}/live/open/./../secret{S}",
            "{P}/live/%2e%2e/live/secret{S}",
            "{P}/live/open/%2e%2e/secret{S}",
            "{P}/live/open/..%2fsecret{S}",
            "{P}/live/open/..%2Fsecret{S}",
            "{P}/live%2fsecret{S}",
            "{P}/live/open%2f..%2fsecret{S}",
            "{P}/live/..%2f..%2f..%2f..%2fetc%2fpasswd",
            "{P}/live/open/../../../../../etc/passwd",
            "{P}/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "{P}/..%2f..%2f..%2fetc%2fpasswd{S}",
            "{P}/live/%2e%2e%2f%2e%2e%2fetc%2fpasswd{S}",
            "{P}/live/secret/..{S}",
        ] {
            paths.push((
                "GET",
                template.replace("{P}", prefix).replace("{S}", suffix),
            ));
        }
    }
    for p in [
        "/api/v1/streams/live/open/../secret",
        "/api/v1/streams/live/%2e%2e",
        "/api/v1/streams/live/..%2fsecret",
        "/api/v1/streams/live%2fsecret",
        "/api/v1/streams/../sessions",
        "/api/v1/streams/..%2f..%2f..%2fmetrics",
        "/api/v1/streams/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/api/v1/streams/live/open/..%2f..%2f..%2f..%2fetc%2fpasswd",
    ] {
        paths.push(("GET", p.to_string()));
    }
    for p in [
        "/api/v1/sessions/../streams",
        "/api/v1/sessions/%2e%2e",
        "/api/v1/sessions/..%2fstreams",
        "/api/v1/sessions/1%2f..%2f2",
        "/api/v1/sessions/..%2f..%2f..%2fetc%2fpasswd",
        "/api/v1/sessions/%2e%2e/%2e%2e/metrics",
    ] {
        paths.push(("GET", p.to_string()));
        paths.push(("DELETE", p.to_string()));
    }

    let mut failures = Vec::new();
    for cred in [
        Cred::basic("narrow", "narrow-pw"),
        Cred::basic("root", "root-pw"),
    ] {
        for (method, path) in &paths {
            let r = HttpRequest::new(method, format!("http://{http}{path}"))
                .cred(&cred)
                .max_time(Duration::from_secs(3))
                .send();
            if !(400..500).contains(&r.status) || Body::leaks(&r) {
                failures.push(format!(
                    "{method} {path} as {}: {}",
                    cred.describe(),
                    r.summary()
                ));
            }
        }
    }
    assert_no_failures(&failures);

    // Nothing was kicked by the DELETEs, and both streams still play.
    let sessions_after = sessions_as(http, &admin()).len();
    assert!(
        sessions_after >= sessions_before,
        "sessions went from {sessions_before} to {sessions_after}"
    );
    assert!(is_live_as(http, "live/open", &admin()));
    assert!(is_live_as(http, "live/secret", &admin()));
    // The straight paths work for who may read them, so the refusals above
    // were about the paths.
    let open = HttpRequest::get(format!("http://{http}/flv/live/open.flv"))
        .cred(&Cred::basic("narrow", "narrow-pw"))
        .max_time(Duration::from_secs(2))
        .send();
    assert!(
        open.status == 200 && open.body.starts_with(b"FLV"),
        "{}",
        open.summary()
    );
    let secret = HttpRequest::get(format!("http://{http}/flv/live/secret.flv"))
        .cred(&Cred::basic("narrow", "narrow-pw"))
        .max_time(Duration::from_secs(2))
        .send();
    assert_eq!(secret.status, 403, "{}", secret.summary());
}

// ---------------------------------------------------------------------------
// 7. Kicked sessions

/// Waits up to `timeout` for a child to exit; how long it took.
fn exits_within(child: &mut ChildGuard, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if let Ok(Some(_)) = child.0.try_wait() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn kicked_rtmp_and_http_flv_readers_end_within_a_second() {
    let (_server, http, rtmp, _) = start(&base_config());
    let key = "live/cam1";
    let _publisher = publish_live(http, rtmp, key, 60, &admin());

    let mut rtmp_reader = ChildGuard(
        ffmpeg_framecrc_command(
            &[],
            &rtmp_url(rtmp, key, Some(("viewer", "view-pw"))),
            &["-c", "copy"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg runs"),
    );
    let flv_counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut flv_reader = {
        let mut cmd = HttpRequest::get(format!("http://{http}/flv/{key}.flv"))
            .cred(&viewer())
            .max_time(Duration::from_secs(60))
            .streaming_command();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("curl runs");
        let mut out = child.stdout.take().expect("piped");
        let counted = Arc::clone(&flv_counted);
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = std::io::Read::read(&mut out, &mut buf) {
                if n == 0 {
                    break;
                }
                counted.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
        });
        ChildGuard(child)
    };

    let reading = |protocol: &'static str| {
        move |s: &Value| {
            s["kind"] == "reader"
                && s["protocol"] == protocol
                && s["path"] == key
                && s["bytes_out"].as_u64() > Some(0)
        }
    };
    let rtmp_session = wait_session(http, &admin(), LIVE_TIMEOUT, reading("rtmp"));
    let flv_session = wait_session(http, &admin(), LIVE_TIMEOUT, reading("http-flv"));
    for s in [&rtmp_session, &flv_session] {
        assert_eq!(s["user"], "viewer", "the reader's user is shown: {s}");
    }
    let sessions = format!("http://{http}/api/v1/sessions");
    let rtmp_id = rtmp_session["id"].as_u64().expect("id");
    let flv_id = flv_session["id"].as_u64().expect("id");

    // Kicking needs the api permission.
    let anonymous = delete_as(&format!("{sessions}/{rtmp_id}"), &Cred::None);
    assert_eq!(anonymous.status, 401, "{}", anonymous.summary());
    let as_publisher = delete_as(&format!("{sessions}/{rtmp_id}"), &publisher());
    assert_eq!(as_publisher.status, 403, "{}", as_publisher.summary());
    assert!(
        matches!(rtmp_reader.0.try_wait(), Ok(None)),
        "the refused kicks kicked"
    );

    let kicked = delete_as(&format!("{sessions}/{rtmp_id}"), &admin());
    assert_eq!(kicked.status, 204, "{}", kicked.summary());
    let took = exits_within(&mut rtmp_reader, Duration::from_secs(1));
    assert!(
        took.is_some(),
        "the kicked RTMP reader (ffmpeg) still runs 1 s after the kick"
    );
    assert!(
        matches!(flv_reader.0.try_wait(), Ok(None)),
        "the HTTP-FLV reader was not kicked"
    );

    let kicked = delete_as(&format!("{sessions}/{flv_id}"), &admin());
    assert_eq!(kicked.status, 204, "{}", kicked.summary());
    let at_kick = flv_counted.load(std::sync::atomic::Ordering::Relaxed);
    let took = exits_within(&mut flv_reader, Duration::from_secs(1));
    assert!(
        took.is_some(),
        "the kicked HTTP-FLV response (curl) still runs 1 s after the kick"
    );
    assert!(
        at_kick > 0,
        "the HTTP-FLV reader received nothing before the kick"
    );

    let left = sessions_as(http, &admin());
    assert!(
        left.iter().all(|s| s["id"] != rtmp_id && s["id"] != flv_id),
        "kicked sessions are still listed: {left:?}"
    );
    assert!(
        is_live_as(http, key, &admin()),
        "kicking readers ended the stream"
    );
}

// ---------------------------------------------------------------------------
// 8. hls.js in Chromium with a token

#[test]
fn hls_js_plays_a_token_protected_ll_hls_stream_in_chromium() {
    let config = format!("{}[auth.jwt]\nsecret = \"{HS_SECRET}\"\n", base_config());
    let (_server, http, rtmp, _) = start(&config);
    let key = "live/browser";
    let _publisher = publish_live(http, rtmp, key, 45, &admin());
    let read = json!([{"action": "read", "path": "live/*"}]);
    let browser_token = hs256(HS_SECRET, "browser-viewer", read.clone(), 600);
    let warm_token = hs256(HS_SECRET, "warm-up", read, 600);

    // Warm the packager (as another user, so the browser's session is its own).
    let master = format!("http://{http}/llhls/{key}/master.m3u8");
    let warm = Cred::query(&warm_token);
    wait_packaged(http, key, &warm);
    let warmed = get_as(&master, &warm);
    assert_eq!(warmed.status, 200, "{}", warmed.summary());
    let variant = warmed
        .text()
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no variant in {}", warmed.text()))
        .to_string();
    assert!(
        variant.contains("token="),
        "the master's variant URI carries no token: {variant}"
    );
    assert_eq!(
        get_as(&master, &Cred::None).status,
        401,
        "the master needs a token"
    );

    let url = with_query(&master, "token", &browser_token);
    let run = PlayerRun::new(Player::HlsJs, url, Duration::from_secs(15)).low_latency();
    let player = std::thread::spawn(move || play_in_chromium(&run));
    let session = wait_session(http, &admin(), Duration::from_secs(30), |s| {
        s["path"] == key && s["user"] == "browser-viewer"
    });
    let report = player.join().expect("the player thread");
    let summary = report.summary();
    assert!(report.errors.is_empty(), "player errors:\n{summary}");
    assert!(
        report.progressed() > 8.0,
        "playback barely advanced:\n{summary}"
    );
    assert!(report.monotonic(), "currentTime went backwards:\n{summary}");
    assert!(
        session["protocol"]
            .as_str()
            .is_some_and(|p| p == "llhls" || p == "hls"),
        "the browser is listed as an HLS player: {session}"
    );
    assert_eq!(session["kind"], "reader", "{session}");

    // A segment (or part) URL the playlist lists, without its token: refused.
    let media = get_as(
        &format!("http://{http}/llhls/{key}/index.m3u8"),
        &Cred::query(&browser_token),
    );
    assert_eq!(media.status, 200, "{}", media.summary());
    let text = media.text();
    let uri = text
        .lines()
        .rev()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no segment in\n{text}"))
        .to_string();
    assert!(
        uri.contains("token="),
        "the segment URI carries no token: {uri}"
    );
    let full = format!("http://{http}/llhls/{key}/{uri}");
    let served = get_as(&full, &Cred::None);
    assert_eq!(served.status, 200, "{full}: {}", served.summary());
    let bare = full.split('?').next().unwrap_or_default().to_string();
    let refused = get_as(&bare, &Cred::None);
    assert_eq!(refused.status, 401, "{bare}: {}", refused.summary());
    assert!(
        !refused.header_all("www-authenticate").is_empty(),
        "{}",
        refused.summary()
    );
}

// ---------------------------------------------------------------------------
// 9. tidewater hash-password

#[test]
fn a_hash_password_hash_lets_its_user_publish() {
    let password = "correct horse battery staple";
    let mut child = Command::new(server_binary())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tidewater hash-password runs");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("hash-password ends");
    assert!(
        out.status.success(),
        "tidewater hash-password failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    let hash = stdout.trim();
    assert!(
        hash.starts_with("$argon2id$"),
        "not an argon2id PHC string: {stdout:?}"
    );
    assert_eq!(hash.lines().count(), 1, "one line: {stdout:?}");
    assert!(!hash.contains(password), "the hash shows the password");

    let config = format!(
        "{}{}[[auth.users]]\nuser = \"hashed\"\npassword_hash = \"{hash}\"\npermissions = [{PUBLISH_LIVE}]\n\n",
        auth_config_head(),
        user_entry("admin", "admin-pw", &[API]),
    );
    let (_server, http, rtmp, _) = start(&config);
    let key = "live/hashed";
    let encoded = password.replace(' ', "%20");
    let wrong = ffmpeg_publish(
        &format!("rtmp://{rtmp}/{key}?user=hashed&pass=wrong"),
        10,
        25,
    );
    assert_publish_refused("the wrong password", wrong, http, key, &admin());
    let _right = ffmpeg_publish(
        &format!("rtmp://{rtmp}/{key}?user=hashed&pass={encoded}"),
        10,
        25,
    );
    let live = wait_live_as(http, key, &admin(), LIVE_TIMEOUT);
    assert_eq!(live["protocol"], "rtmp", "{live}");
    let s = wait_session(http, &admin(), LIVE_TIMEOUT, |s| {
        s["kind"] == "publisher" && s["path"] == key
    });
    assert_eq!(s["user"], "hashed", "{s}");
}
