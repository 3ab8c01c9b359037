//! What an operator of a public SRT listener relies on, on loopback with
//! real clients (ffmpeg 5.1, srt-live-transmit; libsrt 1.5): kicks end a
//! reader or a publisher at once while the rest flows, the listener's
//! counters, the per-address connection limit and the handshake timeout.
//!
//! Every wait is bounded; every child process is killed when its handle drops.

use std::io::Write;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tidewater_core::{
    AppSpec, CancellationToken, Engine, InboundProtocol, ListenerSnapshot, SessionKind,
    SessionSnapshot, StreamKey,
};
use tidewater_ingest_srt::{PathEncryption, Srt, SrtConfig};
use tidewater_tests::ffmpeg_copy_ts_command;
use tidewater_tests::srt::{ffmpeg_publish_ts_command, ffmpeg_srt_url, slt_read_command};
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// Everything the server logged (each test binary is one process).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn lines_with(&self, words: &[&str]) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().expect("log"))
            .lines()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .map(str::to_string)
            .collect()
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        // Also to the test's output, shown when it fails.
        print!("{}", String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log() -> Log {
    static LOG: OnceLock<Log> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Log::default();
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        log
    })
    .clone()
}

const PASSPHRASE: &str = "correct-horse-battery";

/// Cancels the server when the test ends.
struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

struct Server {
    engine: Engine,
    srt: SocketAddr,
    _stop: CancelOnDrop,
}

/// Serves an engine (apps `live` and `secure`, the latter encrypted) with
/// one SRT listener on a free loopback port, with `config`'s limits.
async fn serve(config: SrtConfig) -> Server {
    let _ = log();
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
            ..config
        })
        .expect("config"),
    );
    let shutdown = CancellationToken::new();
    let workers: Vec<Arc<dyn InboundProtocol>> = vec![srt.clone()];
    tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.serve(workers, shutdown).await }
    });
    let addr = timeout(Duration::from_secs(5), srt.listening())
        .await
        .expect("srt listener bound");
    Server {
        engine,
        srt: addr,
        _stop: CancelOnDrop(shutdown),
    }
}

/// ffmpeg publishing `seconds` of the test clip (H.264 + AAC) to `url`.
fn publish(url: &str, seconds: u32) -> Child {
    let mut c = Command::from(ffmpeg_publish_ts_command(url, seconds, 25, "libx264"));
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg runs (install ffmpeg 5.1)")
}

/// ffmpeg copying `url` as MPEG-TS to nowhere.
fn read(url: &str) -> Child {
    let mut c = Command::from(ffmpeg_copy_ts_command(url, &[], "-"));
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg runs (install ffmpeg 5.1)")
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
        engine.stream(&key).and_then(|s| s.catalog)
    })
    .await;
}

/// The SRT sessions of `kind` on `key`.
fn sessions(engine: &Engine, key: &str, kind: SessionKind) -> Vec<SessionSnapshot> {
    engine
        .sessions()
        .into_iter()
        .filter(|s| s.kind == kind && s.path.as_str() == key && s.protocol == "srt")
        .collect()
}

/// Session `id` as it is now.
fn by_id(engine: &Engine, id: u64) -> Option<SessionSnapshot> {
    engine.sessions().into_iter().find(|s| s.id == id)
}

/// The SRT reader of `key` that is not one of `known`, once it has been
/// sent something.
async fn new_reader(engine: &Engine, key: &str, known: &[u64]) -> SessionSnapshot {
    wait_for(
        &format!("a new SRT reader of {key} sent bytes"),
        Duration::from_secs(20),
        || {
            sessions(engine, key, SessionKind::Reader)
                .into_iter()
                .find(|s| !known.contains(&s.id) && s.bytes_out > 0)
        },
    )
    .await
}

/// Waits until session `id`'s counter `of` has grown by more than `by`.
async fn grows(engine: &Engine, id: u64, what: &str, of: fn(&SessionSnapshot) -> u64, by: u64) {
    let start = by_id(engine, id).map_or(0, |s| of(&s));
    wait_for(
        &format!("{what} (session {id}) flows"),
        Duration::from_secs(5),
        || by_id(engine, id).filter(|s| of(s) > start + by),
    )
    .await;
}

/// How long `child` takes to end, from now, up to `limit`.
async fn ends_within(child: &mut Child, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    timeout(limit, child.wait())
        .await
        .ok()
        .map(|_| started.elapsed())
}

fn listener(engine: &Engine) -> ListenerSnapshot {
    engine
        .listeners()
        .into_iter()
        .find(|l| l.name == "srt")
        .expect("srt listener counters")
}

fn refusals(engine: &Engine, reason: &str) -> u64 {
    listener(engine)
        .refusals
        .iter()
        .find(|(r, _)| *r == reason)
        .map_or(0, |(_, n)| *n)
}

/// The bound the operator is promised: a kicked session's client ends
/// within a second of the kick.
const KICK: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicked_readers_and_publishers_end_within_a_second_and_the_rest_flows() {
    let server = serve(SrtConfig::default()).await;
    let engine = &server.engine;
    let url = |id: &str| ffmpeg_srt_url(server.srt, id);
    let _publisher_a = publish(&url("publish:live/a"), 40);
    let mut publisher_b = publish(&url("publish:live/b"), 40);
    wait_live(engine, "live/a").await;
    wait_live(engine, "live/b").await;

    // Two readers of live/a; the bytes sent to each are counted.
    let mut first = read(&url("read:live/a"));
    let kicked = new_reader(engine, "live/a", &[]).await;
    let _second = read(&url("read:live/a"));
    let kept = new_reader(engine, "live/a", &[kicked.id]).await;

    assert!(engine.kick(kicked.id), "the reader is kicked");
    let took = ends_within(&mut first, Duration::from_secs(10)).await;
    println!("the kicked reader's ffmpeg ended {took:?} after the kick");
    assert!(
        took.is_some_and(|t| t < KICK),
        "the kicked reader ends within {KICK:?}: {took:?}"
    );
    assert!(
        by_id(engine, kicked.id).is_none(),
        "the kicked reader is gone"
    );
    // The other reader and both publishers go on.
    grows(engine, kept.id, "the other reader", |s| s.bytes_out, 10_000).await;
    let a = sessions(engine, "live/a", SessionKind::Publisher);
    assert_eq!(a.len(), 1, "live/a is published: {a:?}");
    grows(
        engine,
        a[0].id,
        "live/a's publisher",
        |s| s.bytes_in,
        10_000,
    )
    .await;

    // A publisher that keeps sending.
    let b = sessions(engine, "live/b", SessionKind::Publisher);
    assert_eq!(b.len(), 1, "live/b is published: {b:?}");
    assert!(engine.kick(b[0].id), "the publisher of live/b is kicked");
    let took = ends_within(&mut publisher_b, Duration::from_secs(10)).await;
    println!("the kicked publisher's ffmpeg ended {took:?} after the kick");
    assert!(
        took.is_some_and(|t| t < KICK),
        "the kicked publisher ends within {KICK:?}: {took:?}"
    );
    let live_b = StreamKey::parse("live/b").expect("key");
    assert!(engine.stream(&live_b).is_none(), "live/b ended");
    grows(
        engine,
        kept.id,
        "the reader of live/a",
        |s| s.bytes_out,
        10_000,
    )
    .await;
    grows(
        engine,
        a[0].id,
        "live/a's publisher",
        |s| s.bytes_in,
        10_000,
    )
    .await;

    // A publisher that sends nothing at all.
    let mut quiet = srt_tokio::SrtSocket::builder()
        .call(server.srt, Some("publish:live/quiet"))
        .await
        .expect("a quiet publisher connects");
    let q = wait_for(
        "the quiet publisher's session",
        Duration::from_secs(5),
        || sessions(engine, "live/quiet", SessionKind::Publisher).pop(),
    )
    .await;
    assert!(engine.kick(q.id), "the quiet publisher is kicked");
    let started = Instant::now();
    let ended = timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut quiet),
    )
    .await;
    let took = started.elapsed();
    println!("the quiet publisher's connection closed {took:?} after the kick");
    assert!(
        matches!(ended, Ok(None | Some(Err(_)))),
        "the quiet publisher's connection closes"
    );
    assert!(
        took < KICK,
        "the quiet publisher ends within {KICK:?}: {took:?}"
    );
    grows(
        engine,
        kept.id,
        "the reader of live/a",
        |s| s.bytes_out,
        10_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_counts_accepted_and_refused_connections() {
    let server = serve(SrtConfig::default()).await;
    let engine = &server.engine;
    let url = |id: &str, passphrase: &str| {
        format!(
            "{}&passphrase={passphrase}&pbkeylen=16",
            ffmpeg_srt_url(server.srt, id)
        )
    };
    let mut publisher = publish(&url("publish:secure/x", PASSPHRASE), 6);
    wait_live(engine, "secure/x").await;
    let mut wrong = read(&url("read:secure/x", "not-the-passphrase"));
    let status = timeout(Duration::from_secs(10), wrong.wait())
        .await
        .expect("the reader with a wrong passphrase ends")
        .expect("status");
    assert!(!status.success(), "the wrong passphrase is refused");

    let during = listener(engine);
    assert_eq!(
        (during.connections, during.open),
        (1, 1),
        "one accepted, open: {during:?}"
    );
    assert_eq!(
        during.refusals,
        [("bad_passphrase", 1)],
        "one refusal, for its passphrase"
    );
    let refused = log().lines_with(&["srt connection refused", "read secure/x"]);
    assert!(!refused.is_empty(), "the refusal is logged");
    assert!(
        refused.iter().all(|l| !l.contains("not-the-passphrase")),
        "{refused:?}"
    );

    let _ = timeout(Duration::from_secs(20), publisher.wait()).await;
    wait_for(
        "the publisher's connection closed",
        Duration::from_secs(10),
        || (listener(engine).open == 0).then_some(()),
    )
    .await;
    let after = listener(engine);
    assert_eq!(
        (after.connections, after.refusals.len()),
        (1, 1),
        "{after:?}"
    );
}

/// A caller's induction by hand on `udp`: the type of the listener's answer
/// (1: an induction response, 1000 and up: a rejection code).
async fn induction(udp: &tokio::net::UdpSocket, srt: SocketAddr) -> i32 {
    let mut d = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    for w in [4u32, 2, 1000, 1500, 8192, 1, 0x1234, 0] {
        d.extend_from_slice(&w.to_be_bytes());
    }
    d.extend_from_slice(&[127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    udp.send_to(&d, srt).await.expect("send");
    let mut buf = [0u8; 1500];
    let n = timeout(Duration::from_secs(2), udp.recv(&mut buf))
        .await
        .expect("the listener answers")
        .expect("recv");
    assert!(n >= 64, "a handshake answer: {n} bytes");
    i32::from_be_bytes(buf[36..40].try_into().expect("type"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_limit_refuses_the_extra_caller_and_the_first_goes_on() {
    // Loopback callers have their own limit: 1 here.
    let server = serve(SrtConfig {
        max_connections_per_loopback_ip: 1,
        ..SrtConfig::default()
    })
    .await;
    let engine = &server.engine;
    let _publisher = publish(&ffmpeg_srt_url(server.srt, "publish:live/one"), 30);
    wait_live(engine, "live/one").await;
    let publisher = sessions(engine, "live/one", SessionKind::Publisher)
        .pop()
        .expect("the publisher's session");

    // srt-live-transmit reading from the same address is refused in its handshake.
    let dir = tidewater_tests::TempDir::new("srt-operator-limit");
    let out = dir.file("refused.ts");
    let mut slt = Command::from(slt_read_command(
        &format!("srt://{}?streamid=read:live/one", server.srt),
        &out,
        10,
    ))
    .kill_on_drop(true)
    .spawn()
    .expect("srt-live-transmit runs (install srt-tools)");
    wait_for("the extra caller refused", Duration::from_secs(5), || {
        (refusals(engine, "too_many_connections") == 1).then_some(())
    })
    .await;
    // srt-live-transmit 1.5 sometimes reports a rejection and does not exit
    // (Haivision/srt#2776): not waited for long.
    let _ = timeout(Duration::from_secs(3), slt.wait()).await;
    let got = std::fs::metadata(&out).map_or(0, |m| m.len());
    assert_eq!(got, 0, "the refused reader got nothing");
    let lines = log().lines_with(&["srt connection refused", "max_connections_per_loopback_ip"]);
    assert!(!lines.is_empty(), "the refusal is logged");

    // The answer is libsrt's REJX_OVERLOAD, and nothing of the caller is kept.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    assert_eq!(induction(&udp, server.srt).await, 2402);
    assert_eq!(refusals(engine, "too_many_connections"), 2);

    // The first caller goes on publishing.
    grows(
        engine,
        publisher.id,
        "the publisher",
        |s| s.bytes_in,
        50_000,
    )
    .await;
    let l = listener(engine);
    assert_eq!((l.connections, l.open), (1, 1), "{l:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_handshake_is_forgotten_and_frees_its_place() {
    let server = serve(SrtConfig {
        max_connections_per_loopback_ip: 1,
        handshake_timeout: Duration::from_millis(500),
        ..SrtConfig::default()
    })
    .await;
    let engine = &server.engine;
    let (a, b) = (
        tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("udp"),
        tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("udp"),
    );
    // A caller that never concludes holds the address's one place...
    assert_eq!(induction(&a, server.srt).await, 1, "induction answered");
    assert_eq!(induction(&b, server.srt).await, 2402, "no place left");
    // ...until its handshake is forgotten.
    wait_for("the handshake timed out", Duration::from_secs(10), || {
        (refusals(engine, "handshake_timeout") == 1).then_some(())
    })
    .await;
    assert_eq!(
        induction(&b, server.srt).await,
        1,
        "the place is free again"
    );
    let lines = log().lines_with(&["srt connection refused", "did not complete within 500ms"]);
    assert!(!lines.is_empty(), "the timeout is logged");
}

/// A datagram of junk, `i`-th of a deterministic sequence: a third shorter
/// than an SRT header (srt-protocol cannot parse them), the rest as long
/// as a data packet with pseudo-random bytes (they parse as SRT data of no
/// connection).
fn junk(i: u32) -> Vec<u8> {
    let mut x = i.wrapping_mul(2_654_435_761).wrapping_add(12_345);
    let len = if i.is_multiple_of(3) {
        (i % 15) as usize
    } else {
        1332
    };
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_datagrams_are_counted_and_logged_a_few_times_naming_the_peer() {
    let server = serve(SrtConfig::default()).await;
    let engine = &server.engine;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    let me = udp.local_addr().expect("local address");
    let counted = || refusals(engine, "not_srt") + refusals(engine, "no_session");
    // 3 000 datagrams, 100 at a time: each batch is counted before the next
    // goes, so none is lost in a full socket buffer and every one must count.
    let (total, batch) = (3_000u32, 100u32);
    for start in (0..total).step_by(batch as usize) {
        for i in start..start + batch {
            let mut data = junk(i);
            // A set top bit would make it a control packet (a handshake with
            // a zero type): junk here is data or shorter than a header.
            if let Some(first) = data.first_mut() {
                *first &= 0x7F;
            }
            udp.send_to(&data, server.srt).await.expect("send");
        }
        let sent = u64::from(start + batch);
        wait_for("the junk counted", Duration::from_secs(20), || {
            (counted() >= sent).then_some(())
        })
        .await;
    }
    // Every short one is not SRT; of the long ones some do not parse either
    // (their random flags), the rest are data of no connection.
    let short = u64::from(total.div_ceil(3));
    let (not_srt, no_session) = (refusals(engine, "not_srt"), refusals(engine, "no_session"));
    assert!(
        not_srt >= short && no_session > 0 && not_srt + no_session == u64::from(total),
        "{:?}",
        listener(engine)
    );
    assert_eq!(listener(engine).connections, 0, "no connection came of it");
    // The listener still answers a caller from the same address.
    assert_eq!(induction(&udp, server.srt).await, 1, "induction answered");
    let lines = log().lines_with(&["srt: dropped a datagram from", &me.to_string()]);
    assert!(
        !lines.is_empty() && lines.len() <= 20,
        "a few lines, rate-limited, naming the peer: {} lines",
        lines.len()
    );
    assert!(
        lines.iter().any(|l| l.contains("not an SRT packet")),
        "{lines:?}"
    );
}
