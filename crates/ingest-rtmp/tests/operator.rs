//! What an operator of a public server relies on, on loopback: credentials
//! from real ffmpeg publishers and players, kicks, connection limits, the
//! handshake timeout, and an RTMPS certificate renewed on disk.
//!
//! Every wait is bounded; every child process is killed when its handle drops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidewater_core::{
    Action, AppSpec, AuthRequest, Authorizer, CancellationToken, Credentials, Engine, Identity,
    InboundProtocol, ListenerSnapshot, Refusal, RefusalKind, SessionKind, SessionSnapshot,
    StreamKey,
};
use tidewater_ingest_rtmp::{Rtmp, RtmpConfig, ServerTls};
use tidewater_tests::{FrameCrc, ffmpeg_framecrc_command, ffmpeg_publish_bframes_command};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::timeout;

struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

struct Server {
    engine: Engine,
    addr: SocketAddr,
    _stop: CancelOnDrop,
}

/// Serves `engine` with one RTMP (or, with `tls`, RTMPS) listener on a free
/// loopback port.
async fn serve(engine: Engine, config: RtmpConfig, tls: Option<ServerTls>) -> Server {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
    let config = RtmpConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..config
    };
    let rtmp = Arc::new(match tls {
        None => Rtmp::new(config),
        Some(tls) => Rtmp::with_tls(config, tls),
    });
    let shutdown = CancellationToken::new();
    let workers: Vec<Arc<dyn InboundProtocol>> = vec![rtmp.clone()];
    tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.serve(workers, shutdown).await }
    });
    let addr = timeout(Duration::from_secs(5), rtmp.listening())
        .await
        .expect("listener bound");
    Server {
        engine,
        addr,
        _stop: CancelOnDrop(shutdown),
    }
}

fn engine() -> Engine {
    Engine::builder()
        .app("live", AppSpec::default())
        .build()
        .expect("engine")
}

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

/// ffmpeg publishing the test clip to `url` for `seconds`.
fn publish(url: &str, seconds: u32) -> Child {
    spawn(ffmpeg_publish_bframes_command(url, seconds, 50))
}

/// ffmpeg decoding the video of `url` into framecrc lines.
fn play(url: &str) -> Child {
    spawn(ffmpeg_framecrc_command(
        &["-rw_timeout", "15000000"],
        url,
        &["-map", "0:v"],
    ))
}

async fn finish(child: Child, limit: Duration, what: &str) -> Output {
    timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Polls `f` every 20 ms until it gives something; panics after `limit`.
async fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_live(engine: &Engine, key: &str) {
    let key = StreamKey::parse(key).expect("key");
    wait_for(&format!("{key} live"), Duration::from_secs(20), || {
        engine
            .stream(&key)
            .filter(|s| s.catalog.as_ref().is_some_and(|c| c.tracks.len() == 2))
    })
    .await;
}

/// The live session of `kind` on `key` over `protocol`, once there is one
/// that `ready` accepts.
async fn session(
    engine: &Engine,
    key: &str,
    kind: SessionKind,
    ready: impl Fn(&SessionSnapshot) -> bool,
) -> SessionSnapshot {
    wait_for(
        &format!("{kind:?} session on {key}"),
        Duration::from_secs(20),
        || {
            engine.sessions().into_iter().find(|s| {
                s.kind == kind && s.path.as_str() == key && s.protocol == "rtmp" && ready(s)
            })
        },
    )
    .await
}

fn listener(engine: &Engine, name: &str) -> ListenerSnapshot {
    engine
        .listeners()
        .into_iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no {name} listener counters"))
}

fn refusals(engine: &Engine, name: &str, reason: &str) -> u64 {
    listener(engine, name)
        .refusals
        .iter()
        .find(|(r, _)| *r == reason)
        .map_or(0, |(_, n)| *n)
}

/// A raw client: the handshake by hand (answered: the connection was accepted).
async fn raw_client(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
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

/// Sends `connect` to `live` and, with `request`, `createStream` and that
/// command (`publish` or `play`) for `stream`.
async fn raw_commands(s: &mut TcpStream, request: Option<(&str, &str)>) {
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::messages::{MessagePayload, RtmpMessage};
    use rml_rtmp::rml_amf0::Amf0Value;
    use rml_rtmp::time::RtmpTimestamp;
    let mut ser = ChunkSerializer::new();
    let mut app = HashMap::new();
    app.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
    let mut commands = vec![(0, "connect", 1.0, Amf0Value::Object(app), vec![])];
    if let Some((command, stream)) = request {
        commands.push((0, "createStream", 2.0, Amf0Value::Null, vec![]));
        commands.push((
            1,
            command,
            3.0,
            Amf0Value::Null,
            vec![Amf0Value::Utf8String(stream.into())],
        ));
    }
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

/// Reads until the server closes; panics if it does not within `limit`.
async fn closed_by_server(s: &mut TcpStream, limit: Duration, what: &str) {
    let mut buf = [0u8; 4096];
    let closed = timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "{what}: the server kept the connection open"
    );
}

/// Publish and read as user `a`, password `p@ss`; user `flood` is rate
/// limited. Remembers what it was asked.
struct UserPass(Arc<Mutex<Vec<AuthRequest>>>);

#[async_trait::async_trait]
impl Authorizer for UserPass {
    async fn authorize(&self, request: &AuthRequest) -> Result<Identity, Refusal> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request.clone());
        match &request.credentials {
            Credentials::UserPass { user, pass } if user == "a" && pass == "p@ss" => {
                Ok(Identity::named("a"))
            }
            Credentials::UserPass { user, .. } if user == "flood" => Err(Refusal::new(
                RefusalKind::RateLimited,
                "too many failed attempts from this address",
            )),
            Credentials::None => Err(Refusal::new(
                RefusalKind::MissingCredentials,
                "no credentials offered",
            )),
            _ => Err(Refusal::new(
                RefusalKind::InvalidCredentials,
                "wrong user or password",
            )),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_with_user_and_pass_publishes_and_plays_and_other_credentials_are_refused_and_counted()
 {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .authorizer(UserPass(Arc::clone(&asked)))
        .build()
        .expect("engine");
    let h = serve(engine, RtmpConfig::default(), None).await;
    let url = |path: &str| format!("rtmp://{}/{path}", h.addr);

    // Refused publishes: the reason reaches ffmpeg; each refusal is counted.
    for (path, reason) in [
        ("live/cam?user=a&pass=nope", "wrong user or password"),
        ("live/cam", "no credentials offered"),
        ("live/cam?user=flood&pass=x", "too many failed attempts"),
    ] {
        let out = finish(publish(&url(path), 2), Duration::from_secs(20), path).await;
        assert!(!out.status.success(), "{path} was accepted");
        let err = stderr(&out);
        assert!(
            err.contains("Server error") && err.contains(reason),
            "{path}: ffmpeg was not told why: {err}"
        );
    }
    assert_eq!(refusals(&h.engine, "rtmp", "unauthorized"), 2);
    assert_eq!(refusals(&h.engine, "rtmp", "rate_limited"), 1);
    assert!(
        h.engine
            .stream(&StreamKey::parse("live/cam").expect("key"))
            .is_none()
    );

    // The right ones, percent-encoded: published and read.
    let publisher = publish(&url("live/cam?user=a&pass=p%40ss"), 8);
    // OBS puts the credentials in the server URL: on `connect`'s app and tcUrl.
    let mut obs = ffmpeg_publish_bframes_command(&url("live/obs"), 2, 50);
    let args: Vec<_> = obs.get_args().map(|a| a.to_os_string()).collect();
    let (output, head) = args.split_last().expect("arguments");
    obs = std::process::Command::new(obs.get_program());
    obs.args(head)
        .args([
            "-rtmp_app",
            "live?user=a&pass=p%40ss",
            "-rtmp_playpath",
            "obs",
        ])
        .arg(output);
    let obs = spawn(obs);
    wait_live(&h.engine, "live/cam").await;

    let refused = finish(
        play(&url("live/cam")),
        Duration::from_secs(20),
        "anonymous player",
    )
    .await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("no credentials offered"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(refusals(&h.engine, "rtmp", "unauthorized"), 3);

    let viewer = play(&url("live/cam?user=a&pass=p%40ss"));
    // Bytes written to the viewer are counted on its session.
    let reader = session(&h.engine, "live/cam", SessionKind::Reader, |s| {
        s.bytes_out > 0
    })
    .await;
    assert_eq!(reader.user.as_deref(), Some("a"));
    let out = finish(publisher, Duration::from_secs(30), "publisher").await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = finish(
        obs,
        Duration::from_secs(30),
        "publisher with credentials on connect",
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = finish(viewer, Duration::from_secs(20), "player with credentials").await;
    assert!(out.status.success(), "{}", stderr(&out));
    let pictures = FrameCrc::parse(&String::from_utf8_lossy(&out.stdout))
        .lines
        .len();
    assert!(
        pictures >= 50,
        "the player decoded only {pictures} pictures"
    );

    // What the authorizer saw: the stream key never carries the query, the
    // password never travels in it.
    let asked = asked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for req in &asked {
        let key = req.key.as_ref().map(|k| k.as_str().to_string());
        assert!(
            key.as_deref() == Some("live/cam") || key.as_deref() == Some("live/obs"),
            "{key:?}"
        );
        assert!(
            req.query.as_deref().is_none_or(|q| !q.contains("pass")),
            "{:?}",
            req.query
        );
        assert!(req.peer.is_some_and(|p| p.ip().is_loopback()));
    }
    let allowed = |action, key: &str| {
        asked.iter().any(|r| {
            r.action == action
                && r.key.as_ref().is_some_and(|k| k.as_str() == key)
                && r.credentials
                    == Credentials::UserPass {
                        user: "a".into(),
                        pass: "p@ss".into(),
                    }
        })
    };
    assert!(allowed(Action::Publish, "live/cam"));
    assert!(allowed(Action::Publish, "live/obs"));
    assert!(allowed(Action::Read, "live/cam"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_kick_ends_an_rtmp_viewer_and_an_rtmp_publisher_within_a_second() {
    let h = serve(engine(), RtmpConfig::default(), None).await;
    let publisher = publish(&format!("rtmp://{}/live/kick", h.addr), 30);
    wait_live(&h.engine, "live/kick").await;
    let viewer = play(&format!("rtmp://{}/live/kick", h.addr));
    // Well into the stream (the cached GOP and more than a second live), so
    // that the player is past probing and decoding.
    let reader = session(&h.engine, "live/kick", SessionKind::Reader, |s| {
        s.bytes_out > 0 && s.frames >= 100
    })
    .await;

    assert!(h.engine.kick(reader.id), "the viewer is kickable");
    let kicked = Instant::now();
    let out = finish(viewer, Duration::from_secs(10), "kicked viewer").await;
    let took = kicked.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the viewer ended {took:?} after the kick"
    );
    assert!(
        !FrameCrc::parse(&String::from_utf8_lossy(&out.stdout))
            .lines
            .is_empty(),
        "the viewer decoded nothing before the kick: {}",
        stderr(&out)
    );
    let key = StreamKey::parse("live/kick").expect("key");
    assert!(h.engine.stream(&key).is_some(), "the stream goes on");

    let publishing = session(&h.engine, "live/kick", SessionKind::Publisher, |_| true).await;
    assert!(h.engine.kick(publishing.id), "the publisher is kickable");
    let kicked = Instant::now();
    let out = finish(publisher, Duration::from_secs(10), "kicked publisher").await;
    let took = kicked.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the publisher ended {took:?} after the kick"
    );
    assert!(!out.status.success(), "ffmpeg noticed its connection ended");
    assert!(h.engine.stream(&key).is_none(), "the stream ended");

    // A publisher that sends nothing at all is closed as promptly.
    let mut silent = raw_client(h.addr).await;
    raw_commands(&mut silent, Some(("publish", "silent"))).await;
    let publishing = session(&h.engine, "live/silent", SessionKind::Publisher, |_| true).await;
    assert!(h.engine.kick(publishing.id));
    let kicked = Instant::now();
    closed_by_server(
        &mut silent,
        Duration::from_secs(10),
        "kicked silent publisher",
    )
    .await;
    let took = kicked.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the connection closed {took:?} after the kick"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_connection_from_one_loopback_address_is_refused_and_counted() {
    let config = RtmpConfig {
        max_connections_per_loopback_ip: 2,
        ..RtmpConfig::default()
    };
    let h = serve(engine(), config, None).await;
    let first = raw_client(h.addr).await;
    let _second = raw_client(h.addr).await;
    let mut third = TcpStream::connect(h.addr).await.expect("connect");
    closed_by_server(&mut third, Duration::from_secs(5), "third connection").await;
    assert_eq!(refusals(&h.engine, "rtmp", "too_many_connections"), 1);
    let counters = listener(&h.engine, "rtmp");
    assert_eq!((counters.connections, counters.open), (2, 2));

    // A closed connection frees its place.
    drop(first);
    wait_for(
        "the first connection counted closed",
        Duration::from_secs(5),
        || (listener(&h.engine, "rtmp").open == 1).then_some(()),
    )
    .await;
    let _again = raw_client(h.addr).await;
    assert_eq!(listener(&h.engine, "rtmp").connections, 3);
    assert_eq!(refusals(&h.engine, "rtmp", "too_many_connections"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_do_not_publish_or_play_in_time_are_closed_and_counted() {
    let config = RtmpConfig {
        handshake_timeout: Duration::from_millis(300),
        ..RtmpConfig::default()
    };
    let h = serve(engine(), config, None).await;
    // Connects and says nothing.
    let mut mute = TcpStream::connect(h.addr).await.expect("connect");
    closed_by_server(&mut mute, Duration::from_secs(5), "silent peer").await;
    // Handshakes and connects, and goes no further.
    let mut idle = raw_client(h.addr).await;
    raw_commands(&mut idle, None).await;
    closed_by_server(&mut idle, Duration::from_secs(5), "idle peer").await;
    wait_for("both timeouts counted", Duration::from_secs(5), || {
        (refusals(&h.engine, "rtmp", "handshake_timeout") == 2).then_some(())
    })
    .await;
    assert_eq!(listener(&h.engine, "rtmp").open, 0);
}

/// A CA and two leaf certificates for 127.0.0.1 it signed: (CA PEM,
/// [(certificate PEM, key PEM, certificate DER)]).
fn certificates() -> (String, Vec<(String, String, Vec<u8>)>) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let leaves = (0..2)
        .map(|_| {
            let key = rcgen::KeyPair::generate().expect("key");
            let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
                .expect("leaf params")
                .signed_by(&key, &ca_cert, &ca_key)
                .expect("leaf");
            (leaf.pem(), key.serialize_pem(), leaf.der().to_vec())
        })
        .collect();
    (ca_cert.pem(), leaves)
}

/// The certificate the RTMPS listener at `addr` presents (verified against `ca`).
async fn served_certificate(addr: SocketAddr, ca: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).expect("ca pem"))
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::IpAddress(addr.ip().into()), tcp),
    )
    .await
    .expect("tls handshake in time")
    .expect("tls handshake");
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a certificate")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmps_serves_a_renewed_certificate_and_keeps_it_when_the_next_files_are_bad() {
    let dir = std::env::temp_dir().join(format!("tidewater-rtmps-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (ca, leaves) = certificates();
    std::fs::write(&cert, &leaves[0].0).expect("write");
    std::fs::write(&key, &leaves[0].1).expect("write");
    let tls = ServerTls::from_pem_files(&cert, &key).expect("server tls");
    let config = RtmpConfig {
        handshake_timeout: Duration::from_millis(500),
        ..RtmpConfig::default()
    };
    let h = serve(engine(), config, Some(tls)).await;
    assert_eq!(served_certificate(h.addr, &ca).await, leaves[0].2);

    // Renewed: the key first, then the certificate, as a renewal tool might.
    std::fs::write(&key, &leaves[1].1).expect("write");
    std::fs::write(&cert, &leaves[1].0).expect("write");
    let mut served = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while served != leaves[1].2 {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        served = served_certificate(h.addr, &ca).await;
    }

    // A bad key: the renewed pair stays in service.
    std::fs::write(&key, "not a key").expect("write");
    tokio::time::sleep(
        tidewater_ingest_rtmp::tls::RELOAD_CHECK_INTERVAL * 2 + Duration::from_millis(500),
    )
    .await;
    assert_eq!(served_certificate(h.addr, &ca).await, leaves[1].2);

    // A peer that never starts TLS is closed after the handshake timeout.
    let mut mute = TcpStream::connect(h.addr).await.expect("connect");
    closed_by_server(&mut mute, Duration::from_secs(5), "silent rtmps peer").await;
    wait_for("the timeout counted", Duration::from_secs(5), || {
        (refusals(&h.engine, "rtmps", "handshake_timeout") == 1).then_some(())
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
