//! Panic containment through the RTMP listener with real ffmpeg clients: a
//! session whose task panics (a test-only fault injected when it publishes
//! `live/boom`) ends alone; it is logged with its peer and stream and
//! counted; a publish and a player already running go on undisturbed and
//! the listener keeps accepting.

use std::io::Write;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidewater_core::{AppSpec, CancellationToken, Engine, InboundProtocol, StreamKey};
use tidewater_ingest_rtmp::{Rtmp, RtmpConfig};
use tidewater_tests::{FrameCrc, ffmpeg_framecrc_command, ffmpeg_publish_bframes_command};
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// Everything logged, for the assertions on the panic's line.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

fn spawn(cmd: std::process::Command) -> Child {
    Command::from(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg (install the ffmpeg package)")
}

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

fn live(engine: &Engine, key: &str) -> bool {
    let key = StreamKey::parse(key).expect("key");
    engine
        .stream(&key)
        .is_some_and(|s| s.catalog.as_ref().is_some_and(|c| c.tracks.len() == 2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_session_ends_alone() {
    let log = Log::default();
    let writer = log.clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init();
    tidewater_core::hook::panic_on_stream("live/boom");

    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .build()
        .expect("engine");
    let rtmp = Arc::new(Rtmp::new(RtmpConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..RtmpConfig::default()
    }));
    let shutdown = CancellationToken::new();
    let workers: Vec<Arc<dyn InboundProtocol>> = vec![rtmp.clone()];
    let served = tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.serve(workers, shutdown).await }
    });
    let addr: SocketAddr = timeout(Duration::from_secs(5), rtmp.listening())
        .await
        .expect("listener bound");
    let url = |stream: &str| format!("rtmp://{addr}/live/{stream}");

    // A publish and a player that must go on through the panic.
    let steady = spawn(ffmpeg_publish_bframes_command(&url("steady"), 8, 25));
    wait_for("live/steady live", Duration::from_secs(20), || {
        live(&engine, "live/steady").then_some(())
    })
    .await;
    let player = spawn(ffmpeg_framecrc_command(
        &["-rw_timeout", "15000000"],
        &url("steady"),
        &["-map", "0:v"],
    ));

    // The faulty session: its task panics when it asks to publish.
    let boom = spawn(ffmpeg_publish_bframes_command(&url("boom"), 3, 25));
    let panics = || {
        engine
            .listeners()
            .into_iter()
            .find(|l| l.name == "rtmp")
            .map_or(0, |l| l.panics)
    };
    wait_for("the panic counted", Duration::from_secs(20), || {
        (panics() == 1).then_some(())
    })
    .await;
    let boom = timeout(Duration::from_secs(20), boom.wait_with_output())
        .await
        .expect("the faulty publisher ends")
        .expect("ffmpeg");
    assert!(!boom.status.success(), "the faulty publish was not ended");
    assert!(
        engine
            .stream(&StreamKey::parse("live/boom").expect("key"))
            .is_none()
    );

    // Logged once, with the listener, the peer and the stream.
    let text = log.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("session task panicked"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].contains("listener=\"rtmp\"") || lines[0].contains("listener=rtmp"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("peer=127.0.0.1:"), "{}", lines[0]);
    assert!(lines[0].contains("stream=live/boom"), "{}", lines[0]);
    assert!(lines[0].contains("injected fault"), "{}", lines[0]);

    // The listener accepts after it: a new publish goes live.
    let after = spawn(ffmpeg_publish_bframes_command(&url("after"), 3, 25));
    wait_for("live/after live", Duration::from_secs(20), || {
        live(&engine, "live/after").then_some(())
    })
    .await;

    // The steady publish and its player were not disturbed: the player read
    // the stream to its end, every picture decoded, timestamps increasing.
    let steady = timeout(Duration::from_secs(30), steady.wait_with_output())
        .await
        .expect("the steady publisher ends")
        .expect("ffmpeg");
    assert!(
        steady.status.success(),
        "{}",
        String::from_utf8_lossy(&steady.stderr)
    );
    let played = timeout(Duration::from_secs(30), player.wait_with_output())
        .await
        .expect("the player ends")
        .expect("ffmpeg");
    assert!(
        played.status.success(),
        "{}",
        String::from_utf8_lossy(&played.stderr)
    );
    let crc = FrameCrc::parse(&String::from_utf8_lossy(&played.stdout));
    // 8 s at 25 fps published; the player joined after the stream went live.
    assert!(
        crc.lines.len() >= 100,
        "{} pictures played",
        crc.lines.len()
    );
    assert!(
        crc.lines.windows(2).all(|w| w[1].pts > w[0].pts),
        "timestamps not increasing"
    );
    assert_eq!(panics(), 1);
    drop(after);
    shutdown.cancel();
    served.await.expect("serve").expect("engine stops cleanly");
}
