//! SRT publish and read, and HTTP-TS, against ffmpeg 5.1 and
//! srt-live-transmit (libsrt 1.5) on loopback: what the clients got is
//! checked with ffprobe (codecs, decoded frame counts, timestamps).
//!
//! Every wait is bounded; every child process is killed when its handle drops.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

mod support;

use support::{Log, capture};
use tidewater_core::{AppSpec, CancellationToken, Engine, InboundProtocol, StreamKey};
use tidewater_ingest_srt::{PathEncryption, Srt, SrtConfig, http_ts_router};
use tidewater_tests::ffmpeg_copy_ts_command;
use tidewater_tests::srt::{ffmpeg_publish_ts_command, slt_publish, slt_read_command};
use tidewater_tests::tools::{count_frames, frame_pts};
use tokio::process::{Child, Command};
use tokio::time::timeout;

struct Harness {
    engine: Engine,
    srt: SocketAddr,
    http: SocketAddr,
    shutdown: CancellationToken,
    dir: PathBuf,
    /// What the server logged (every test of this binary together).
    log: Log,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const PASSPHRASE: &str = "correct-horse-battery";

async fn start(name: &str) -> Harness {
    let (log, _) = capture();
    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .app("secure", AppSpec::default())
        .build()
        .expect("engine");
    let srt = Arc::new(
        Srt::new(SrtConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            encryption: vec![PathEncryption {
                path: "secure".into(),
                passphrase: PASSPHRASE.into(),
                key_length: 16,
            }],
            ..SrtConfig::default()
        })
        .expect("config"),
    );
    let shutdown = CancellationToken::new();
    let workers: Vec<Arc<dyn InboundProtocol>> = vec![srt.clone()];
    tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.serve(workers, shutdown).await }
    });
    let srt_addr = timeout(Duration::from_secs(5), srt.listening())
        .await
        .expect("srt listener bound");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("http bind");
    let http = listener.local_addr().expect("http addr");
    let app = http_ts_router(engine.context(), Duration::from_secs(5));
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    });
    let dir = std::env::temp_dir().join(format!("tidewater-srt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    Harness {
        engine,
        srt: srt_addr,
        http,
        shutdown,
        dir,
        log,
    }
}

/// ffmpeg copying `url` as MPEG-TS into `out` (`-` for its standard
/// output), with `args` before the output, killed when its handle drops.
fn read(url: &str, args: &[&str], out: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::from(ffmpeg_copy_ts_command(url, args, out));
    c.kill_on_drop(true);
    c
}

/// Publishes `seconds` of 25 fps video (`vcodec`, GOP 25) + AAC in real time to `url`.
fn publish(url: &str, seconds: u32, vcodec: &str) -> Child {
    let mut c = Command::from(ffmpeg_publish_ts_command(url, seconds, 25, vcodec));
    c.stdout(Stdio::null()).kill_on_drop(true);
    c.spawn().expect("ffmpeg runs (install ffmpeg 5.1)")
}

fn srt_url(h: &Harness, streamid: &str, extra: &str) -> String {
    // ffmpeg's latency is in microseconds.
    format!("srt://{}?streamid={streamid}&latency=120000{extra}", h.srt)
}

async fn wait_live(h: &Harness, key: &str) {
    let key = StreamKey::parse(key).expect("key");
    timeout(Duration::from_secs(15), async {
        while h.engine.stream(&key).and_then(|s| s.catalog).is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("stream live with a catalog");
}

/// How a client run by [`finish`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// It exited by itself with status 0.
    Success,
    /// It exited by itself with a failure (a refusal, for a refused caller).
    Failure,
    /// It still ran at the deadline and was killed: neither served nor refused.
    KilledAtDeadline,
}

/// Runs a client to completion, killing it after `secs`; how it ended.
async fn finish(mut child: Child, secs: u64) -> End {
    match timeout(Duration::from_secs(secs), child.wait()).await {
        Ok(Ok(s)) if s.success() => End::Success,
        Ok(Ok(_)) => End::Failure,
        Ok(Err(e)) => panic!("cannot wait for the client: {e}"),
        Err(_) => {
            let _ = child.kill().await;
            End::KilledAtDeadline
        }
    }
}

/// The `srt connection refused` lines logged so far with `what` and `reason="…"`.
fn refusals(h: &Harness, what: &str, reason: &str) -> usize {
    let reason = format!("reason=\"{reason}\"");
    h.log
        .lines_with(&["srt connection refused", what, &reason])
        .len()
}

/// Waits (bounded) until the server logged one more refusal of `what` for
/// `reason` than the `before` it had.
async fn wait_refusal_logged(h: &Harness, what: &str, reason: &str, before: usize) {
    timeout(Duration::from_secs(5), async {
        loop {
            if refusals(h, what, reason) > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no refusal of {what:?} logged for {reason}; log:\n{}",
            h.log.text()
        )
    })
}

struct Probe {
    /// (codec, frames decoded) per stream.
    streams: Vec<(String, u64)>,
    /// pts of each decoded video frame, in decode output order.
    video_pts: Vec<i64>,
}

async fn probe(path: &Path) -> Probe {
    let streams = count_frames(path);
    let video_pts = frame_pts(path)
        .into_iter()
        .filter(|(kind, _)| kind == "video")
        .map(|(_, pts)| pts)
        .collect();
    Probe { streams, video_pts }
}

fn frames(p: &Probe, codec: &str) -> u64 {
    p.streams
        .iter()
        .find(|(c, _)| c == codec)
        .map_or(0, |(_, n)| *n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_and_reads_h264_aac_over_srt_and_http_ts() {
    let h = start("h264").await;
    let _publisher = publish(&srt_url(&h, "publish:live/x", ""), 6, "libx264");
    wait_live(&h, "live/x").await;

    let srt_out = h.dir.join("srt.ts");
    let reader = read(&srt_url(&h, "read:live/x", ""), &[], &srt_out)
        .spawn()
        .expect("ffmpeg reads");
    let http_out = h.dir.join("http.ts");
    let http = read(&format!("http://{}/ts/live/x.ts", h.http), &[], &http_out)
        .spawn()
        .expect("ffmpeg reads http");
    let (a, b) = tokio::join!(finish(reader, 30), finish(http, 30));
    assert_eq!(
        a,
        End::Success,
        "the SRT reader ends cleanly when the publish ends"
    );
    assert_eq!(
        b,
        End::Success,
        "the HTTP-TS reader ends cleanly when the publish ends"
    );
    for out in [&srt_out, &http_out] {
        let p = probe(out).await;
        let v = frames(&p, "h264");
        assert!(
            v >= 125,
            "{out:?}: {v} video frames decoded of 150 ({:?})",
            p.streams
        );
        assert!(frames(&p, "aac") >= 100, "{out:?}: {:?}", p.streams);
        assert!(
            p.video_pts.windows(2).all(|w| w[0] < w[1]),
            "{out:?}: video pts increase"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_over_srt_in_and_out() {
    let h = start("h265").await;
    let _publisher = publish(&srt_url(&h, "publish:live/hevc", ""), 5, "libx265");
    wait_live(&h, "live/hevc").await;
    let out = h.dir.join("hevc.ts");
    let mut reader = read(&srt_url(&h, "read:live/hevc", ""), &[], &out);
    assert_eq!(
        finish(reader.spawn().expect("ffmpeg reads"), 30).await,
        End::Success
    );
    let p = probe(&out).await;
    assert!(frames(&p, "hevc") >= 50, "{:?}", p.streams);
    assert!(frames(&p, "aac") >= 50, "{:?}", p.streams);
    assert!(
        p.video_pts.windows(2).all(|w| w[0] < w[1]),
        "video pts increase"
    );
}

/// srt-live-transmit reading `url` into `out`.
fn slt_read(url: &str, out: &Path) -> Child {
    Command::from(slt_read_command(url, out, 30))
        .kill_on_drop(true)
        .spawn()
        .expect("srt-live-transmit runs (install srt-tools)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_live_transmit_with_access_control_ids_and_a_passphrase() {
    let h = start("slt").await;
    let pass = format!("&passphrase={PASSPHRASE}&pbkeylen=16");
    let base = format!("srt://{}?latency=120", h.srt);
    let (_src, _slt) = slt_publish(
        &format!("{base}&streamid=#!::r=secure/y,m=publish{pass}"),
        6,
    );
    wait_live(&h, "secure/y").await;

    let good = h.dir.join("good.ts");
    let wrong = h.dir.join("wrong.ts");
    let none = h.dir.join("none.ts");
    let r_good = slt_read(
        &format!("{base}&streamid=#!::r=secure/y,m=request{pass}"),
        &good,
    );
    let r_wrong = slt_read(
        &format!(
            "{base}&streamid=#!::r=secure/y,m=request&passphrase=not-the-passphrase&pbkeylen=16"
        ),
        &wrong,
    );
    let r_none = slt_read(&format!("{base}&streamid=#!::r=secure/y,m=request"), &none);
    let (_, _, _) = tokio::join!(finish(r_good, 40), finish(r_wrong, 40), finish(r_none, 40));
    let p = probe(&good).await;
    assert!(
        frames(&p, "h264") >= 100,
        "right passphrase: {:?}",
        p.streams
    );
    assert!(frames(&p, "aac") >= 50, "right passphrase: {:?}", p.streams);
    for refused in [&wrong, &none] {
        let len = std::fs::metadata(refused).map_or(0, |m| m.len());
        assert_eq!(len, 0, "{refused:?}: a refused reader gets nothing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_missing_or_malformed_ids_and_passphrases_are_refused() {
    let h = start("refused").await;
    // Each attempt with a word of the refusal's log line: the server must
    // refuse it (ffmpeg exits with a failure, not a hang until the
    // deadline) and say why.
    let attempts = [
        (
            "publish:secure/z",
            "&passphrase=not%20the%20passphrase",
            "publish secure/z",
            "bad_passphrase",
        ),
        ("publish:secure/z", "", "publish secure/z", "unsecure"),
        (
            "publish:live/z",
            "&passphrase=a-needless-passphrase&pbkeylen=16",
            "publish live/z",
            "unsecure",
        ),
        ("bogus", "", "\"bogus\"", "bad_stream_id"),
        ("publish:live", "", "\"publish:live\"", "bad_stream_id"),
        (
            "read:live/nothing-here",
            "",
            "read live/nothing-here",
            "not_found",
        ),
    ];
    for (id, extra, what, reason) in attempts {
        let url = srt_url(&h, id, extra);
        let before = refusals(&h, what, reason);
        let child = if id.starts_with("read:") {
            let mut r = read(&url, &[], "-");
            r.stdout(Stdio::null());
            r.spawn().expect("ffmpeg reads")
        } else {
            publish(&url, 3, "libx264")
        };
        assert_eq!(
            finish(child, 20).await,
            End::Failure,
            "{id}{extra}: refused"
        );
        wait_refusal_logged(&h, what, reason, before).await;
    }
    for key in ["secure/z", "live/z"] {
        let key = StreamKey::parse(key).expect("key");
        assert!(h.engine.stream(&key).is_none(), "{key} never went live");
    }
    // The right passphrase gets in, whether or not the caller announces its key length.
    let _ok = publish(
        &srt_url(&h, "publish:secure/z", &format!("&passphrase={PASSPHRASE}")),
        4,
        "libx264",
    );
    wait_live(&h, "secure/z").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_and_a_publisher_of_garbage_are_dropped_and_others_are_undisturbed() {
    let h = start("garbage").await;
    // Garbage datagrams at the listener first: it must keep serving.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    for i in 0..2000u32 {
        let len = (i as usize * 37) % 1500;
        let datagram: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect();
        let _ = udp.send_to(&datagram, h.srt).await;
    }
    let _good = publish(&srt_url(&h, "publish:live/good", ""), 8, "libx264");
    wait_live(&h, "live/good").await;
    // Random bytes published through libsrt.
    let noise = h.dir.join("noise.bin");
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&noise, data).expect("noise");
    let slt = Command::new("srt-live-transmit")
        .args(["-a:no", "-q", "-t:20", "file://con"])
        .arg(format!("srt://{}?streamid=publish:live/noise", h.srt))
        .stdin(std::fs::File::open(&noise).expect("noise"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("srt-live-transmit");
    let _ = finish(slt, 25).await;
    let noise_key = StreamKey::parse("live/noise").expect("key");
    assert!(
        h.engine
            .stream(&noise_key)
            .and_then(|s| s.catalog)
            .is_none(),
        "garbage never makes a catalog"
    );
    // The good stream still plays.
    let out = h.dir.join("good.ts");
    let mut reader = read(&srt_url(&h, "read:live/good", ""), &["-t", "2"], &out);
    assert_eq!(
        finish(reader.spawn().expect("ffmpeg reads"), 30).await,
        End::Success
    );
    let p = probe(&out).await;
    assert!(frames(&p, "h264") >= 25, "{:?}", p.streams);
}

/// A caller that encrypts without announcing its key length, on a path
/// without a passphrase, is one srt-protocol 0.4.4's listener panics on
/// accepting (see the crate docs). Since this crate owns the UDP socket, the
/// handshake is refused before srt-protocol is asked to accept it
/// (`REJ_UNSECURE`, counted as `unsecure`): nothing panics, nothing is
/// rebound, and the same listener, at the same address, serves the next
/// caller. (The name is from when the worker rebound its listener after
/// such a panic.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_comes_back_after_srt_protocol_panics() {
    let h = start("restart").await;
    let bad = publish(
        &srt_url(&h, "publish:live/p", "&passphrase=a-needless-passphrase"),
        3,
        "libx264",
    );
    let before = refusals(&h, "publish live/p", "unsecure");
    assert_eq!(
        finish(bad, 20).await,
        End::Failure,
        "the encrypting caller is refused, not served nor left hanging"
    );
    wait_refusal_logged(&h, "publish live/p", "unsecure", before).await;
    let srt = h.engine.listeners();
    let srt = srt.iter().find(|l| l.name == "srt").expect("srt counters");
    assert_eq!(srt.refusals, [("unsecure", 1)], "refused in its handshake");
    let _good = publish(&srt_url(&h, "publish:live/q", ""), 4, "libx264");
    wait_live(&h, "live/q").await;
}
