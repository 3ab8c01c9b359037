//! Digest through the real authorizer with ffmpeg 5.1 and GStreamer 1.22 as
//! clients: the `401` offers Digest SHA-256, Digest MD5 and Basic, and both
//! (MD5 only) must still pick Digest MD5, be let in with the right password
//! and refused with a wrong one.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tidewater_auth::{AuthConfig, Authorization};
use tidewater_core::{
    Action, AppSpec, AuthRequest, Authorizer, CancellationToken, Credentials, Engine, Identity,
    InboundProtocol, Refusal, StreamKey,
};
use tidewater_rtsp::{Rtsp, RtspConfig};
use tokio::process::Command;
use tokio::time::{Instant, timeout};

/// The server's authorizer, remembering what each request brought.
struct Recording {
    inner: Authorization,
    asked: Mutex<Vec<(Action, Credentials)>>,
}

#[async_trait]
impl Authorizer for Recording {
    async fn authorize(&self, r: &AuthRequest) -> Result<Identity, Refusal> {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push((r.action, r.credentials.clone()));
        }
        self.inner.authorize(r).await
    }

    fn realm(&self) -> String {
        self.inner.realm()
    }

    fn digest_nonce(&self) -> Option<String> {
        Some(self.inner.digest_nonce())
    }
}

async fn start() -> (Engine, SocketAddr, Arc<Recording>, CancellationToken) {
    let config: AuthConfig = toml::from_str(
        r#"
        realm = "cams"
        [[users]]
        user = "pub"
        password = "secret"
        permissions = [{ action = "publish" }]
        [[users]]
        user = "viewer"
        password = "look"
        permissions = [{ action = "read" }]
        "#,
    )
    .expect("config");
    let auth = Arc::new(Recording {
        inner: Authorization::new(config).expect("authorization"),
        asked: Mutex::new(Vec::new()),
    });
    // The engine owns its authorizer; the test keeps a handle on what it saw.
    struct Shared(Arc<Recording>);
    #[async_trait]
    impl Authorizer for Shared {
        async fn authorize(&self, r: &AuthRequest) -> Result<Identity, Refusal> {
            self.0.authorize(r).await
        }
        fn realm(&self) -> String {
            self.0.realm()
        }
        fn digest_nonce(&self) -> Option<String> {
            self.0.digest_nonce()
        }
    }
    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .authorizer(Shared(Arc::clone(&auth)))
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
    (engine, addr, auth, shutdown)
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
        ])
        .args(["-pix_fmt", "yuv420p", "-t", &seconds.to_string()])
        .args(["-f", "rtsp", "-rtsp_transport", "tcp", url])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg: {e}"))
}

/// Pictures GStreamer's `rtspsrc` decodes from `live/cam` as `viewer` with
/// `password` (it stops after 25, or is stopped after 15 s).
async fn gst_read(addr: SocketAddr, password: &str, out: &std::path::Path) -> u64 {
    let pipeline = format!(
        "rtspsrc location=rtsp://{addr}/live/cam user-id=viewer user-pw={password} protocols=tcp \
         ! rtph264depay ! h264parse ! avdec_h264 ! videoconvert \
         ! video/x-raw,format=I420,width=320,height=240 ! identity eos-after=25 \
         ! filesink location={}",
        out.display()
    );
    let child = Command::new("gst-launch-1.0")
        .args(pipeline.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run gst-launch-1.0: {e}"));
    let _ = timeout(Duration::from_secs(15), child.wait_with_output()).await;
    std::fs::metadata(out).map_or(0, |m| m.len()) / (320 * 240 * 3 / 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_and_gstreamer_answer_digest_md5_next_to_the_sha256_challenge() {
    let (engine, addr, auth, shutdown) = start().await;
    let wrong = publisher(&format!("rtsp://pub:guess@{addr}/live/wrong"), 2);
    let out = timeout(Duration::from_secs(20), wrong.wait_with_output())
        .await
        .expect("the refused publisher exits")
        .expect("output");
    assert!(!out.status.success(), "a wrong password must not publish");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let _right = publisher(&format!("rtsp://pub:secret@{addr}/live/cam"), 10);
    let key = StreamKey::parse("live/cam").expect("key");
    let deadline = Instant::now() + Duration::from_secs(15);
    while engine.context().stream(&key).is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        engine.context().stream(&key).is_some(),
        "the right password publishes"
    );
    // GStreamer's rtspsrc reads it: refused with a wrong password, decoding
    // pictures with the right one.
    let dir = tidewater_tests::TempDir::new("rtsp-digest");
    assert_eq!(
        gst_read(addr, "guess", &dir.path().join("wrong.yuv")).await,
        0
    );
    let pictures = gst_read(addr, "look", &dir.path().join("right.yuv")).await;
    assert!(pictures >= 20, "{pictures} pictures decoded");

    let asked = auth.asked.lock().expect("lock").clone();
    let digests: Vec<_> = asked
        .iter()
        .filter_map(|(action, c)| match c {
            Credentials::Digest(d) => Some((action, d)),
            _ => None,
        })
        .collect();
    // Both ffmpegs and both rtspsrc answered with Digest MD5 (never Basic,
    // never SHA-256).
    assert!(
        digests
            .iter()
            .filter(|(a, _)| **a == Action::Publish)
            .count()
            >= 2
            && digests.iter().filter(|(a, _)| **a == Action::Read).count() >= 2,
        "{asked:?}"
    );
    assert!(
        digests.iter().all(|(_, d)| d.realm == "cams"
            && d.algorithm
                .as_deref()
                .is_none_or(|a| a.eq_ignore_ascii_case("MD5"))),
        "{asked:?}"
    );
    assert!(
        !asked
            .iter()
            .any(|(_, c)| matches!(c, Credentials::UserPass { .. })),
        "{asked:?}"
    );
    shutdown.cancel();
}
