//! Credentials through the auth seam, with ffmpeg 5.1 as the client: a
//! publisher's `rtsp://user:pass@…` reaches the authorizer as
//! `Credentials::UserPass` after a `401` with a Basic challenge, a wrong
//! password is refused, and a reader's `?token=` reaches it in the query.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tidewater_core::{
    Action, AppSpec, AuthRequest, Authorizer, CancellationToken, Credentials, Engine, Identity,
    InboundProtocol, Refusal, RefusalKind, StreamKey,
};
use tidewater_rtsp::{Rtsp, RtspConfig};
use tidewater_tests::{FrameCrc, ffmpeg_framecrc_command};
use tokio::process::Command;
use tokio::time::{Instant, timeout};

/// What the authorizer was asked: action, protocol, credentials, query.
type Asked = (Action, &'static str, Credentials, Option<String>);

/// Publish needs `pub` / `secret`; read needs `token=t0k`. Remembers what it was asked.
#[derive(Default)]
struct Rules {
    asked: Mutex<Vec<Asked>>,
}

struct Shared(Arc<Rules>);

#[async_trait]
impl Authorizer for Shared {
    async fn authorize(&self, r: &AuthRequest) -> Result<Identity, Refusal> {
        if let Ok(mut asked) = self.0.asked.lock() {
            asked.push((r.action, r.protocol, r.credentials.clone(), r.query.clone()));
        }
        match r.action {
            Action::Publish => match &r.credentials {
                Credentials::UserPass { user, pass } if user == "pub" && pass == "secret" => {
                    Ok(Identity::named("pub"))
                }
                Credentials::None => Err(Refusal::new(
                    RefusalKind::MissingCredentials,
                    "credentials required",
                )),
                _ => Err(Refusal::new(
                    RefusalKind::InvalidCredentials,
                    "wrong user or password",
                )),
            },
            _ if r.token() == Some("t0k") => Ok(Identity::anonymous()),
            _ if r.token().is_none() => Err(Refusal::new(
                RefusalKind::MissingCredentials,
                "token required",
            )),
            _ => Err(Refusal::forbidden("wrong token")),
        }
    }
}

struct Harness {
    engine: Engine,
    addr: SocketAddr,
    rules: Arc<Rules>,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Harness {
    let rules = Arc::new(Rules::default());
    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .authorizer(Shared(Arc::clone(&rules)))
        .build()
        .expect("engine");
    let rtsp = Arc::new(
        Rtsp::new(RtspConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            udp: false,
            ..RtspConfig::default()
        })
        .expect("config"),
    );
    let shutdown = CancellationToken::new();
    let workers: Vec<Arc<dyn InboundProtocol>> = vec![rtsp.clone()];
    tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.serve(workers, shutdown).await }
    });
    let addr = timeout(Duration::from_secs(5), rtsp.listening())
        .await
        .expect("bound");
    Harness {
        engine,
        addr,
        rules,
        shutdown,
    }
}

fn publisher(url: &str, seconds: u32) -> tokio::process::Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "0",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
        ])
        .args([
            "-t",
            &seconds.to_string(),
            "-f",
            "rtsp",
            "-rtsp_transport",
            "tcp",
            url,
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg: {e}"))
}

async fn live_within(engine: &Engine, key: &str, limit: Duration) -> bool {
    let key = StreamKey::parse(key).expect("key");
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if engine.context().stream(&key).is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_answers_the_basic_challenge_and_a_wrong_password_is_refused() {
    let h = start().await;
    let wrong = publisher(&format!("rtsp://pub:guess@{}/live/wrong", h.addr), 2);
    let out = timeout(Duration::from_secs(20), wrong.wait_with_output())
        .await
        .expect("the refused publisher exits")
        .expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused publish must fail");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(
        h.engine
            .context()
            .stream(&StreamKey::parse("live/wrong").expect("key"))
            .is_none()
    );
    let refusals = h
        .engine
        .context()
        .listener_stats("rtsp")
        .snapshot()
        .refusals;
    assert!(
        refusals
            .iter()
            .any(|(why, n)| *why == "unauthorized" && *n >= 2),
        "the challenge and the wrong password are counted: {refusals:?}"
    );

    let _right = publisher(&format!("rtsp://pub:secret@{}/live/cam", h.addr), 10);
    assert!(
        live_within(&h.engine, "live/cam", Duration::from_secs(15)).await,
        "the right password publishes"
    );
    let asked = h.rules.asked.lock().expect("lock").clone();
    let publishes: Vec<&Credentials> = asked
        .iter()
        .filter(|a| a.0 == Action::Publish && a.1 == "rtsp")
        .map(|a| &a.2)
        .collect();
    // Each ffmpeg asks without credentials first, then answers the challenge.
    assert!(publishes.contains(&&Credentials::None));
    assert!(publishes.contains(&&Credentials::UserPass {
        user: "pub".into(),
        pass: "guess".into()
    }));
    assert!(publishes.contains(&&Credentials::UserPass {
        user: "pub".into(),
        pass: "secret".into()
    }));
}

async fn read(url: &str) -> (FrameCrc, String) {
    let child = Command::from(ffmpeg_framecrc_command(
        &["-rtsp_transport", "tcp"],
        url,
        &["-t", "2"],
    ))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true)
    .spawn()
    .unwrap_or_else(|e| panic!("cannot run ffmpeg: {e}"));
    let out = timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the reader finished")
        .expect("output");
    (
        FrameCrc::parse(&String::from_utf8_lossy(&out.stdout)),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_token_in_the_query_reaches_the_authorizer() {
    let h = start().await;
    let _publisher = publisher(&format!("rtsp://pub:secret@{}/live/tok", h.addr), 20);
    assert!(live_within(&h.engine, "live/tok", Duration::from_secs(15)).await);
    let (crc, stderr) = read(&format!("rtsp://{}/live/tok", h.addr)).await;
    assert!(crc.lines.is_empty());
    assert!(stderr.contains("401"), "{stderr}");
    let (crc, stderr) = read(&format!("rtsp://{}/live/tok?token=t0k", h.addr)).await;
    assert!(
        crc.stream(0).len() >= 25,
        "decoded frames with the token: {}\n{stderr}",
        crc.lines.len()
    );
    let asked = h.rules.asked.lock().expect("lock").clone();
    assert!(
        asked
            .iter()
            .any(|a| a.0 == Action::Read && a.1 == "rtsp" && a.3.as_deref() == Some("token=t0k")),
        "{asked:?}"
    );
}
