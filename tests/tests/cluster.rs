//! Several `tidewater` processes as one cluster, found through a real etcd
//! (Debian's `etcd-server`) that the test starts on loopback ports with a
//! data directory of its own: ffmpeg publishes to node A, ffmpeg reads RTMP,
//! HLS and SRT from node B (which pulls the stream once from A), and when A is
//! killed its stream leaves the directory with its lease, the publisher
//! goes to B, and a reader on C goes on.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidewater_tests::auth::spawn_read_frames;
use tidewater_tests::{
    ChildGuard, ServerCommand, ServerProcess, TempDir, catalog_codecs, curl_command,
    ffmpeg_publish, wait_json, wait_live,
};

const SECRET: &str = "cluster-test-secret-0123456789";
const LIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// An etcd of the test's own, killed on drop.
struct Etcd {
    _child: ChildGuard,
    client: SocketAddr,
    peer: u16,
    _dir: TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        Etcd::start_on(TempDir::new("etcd"), free_port(), free_port())
    }

    /// Kills this etcd and starts an empty one on the same ports: every
    /// key and lease is gone.
    fn restart_empty(self) -> Etcd {
        let (client, peer) = (self.client.port(), self.peer);
        drop(self);
        Etcd::start_on(TempDir::new("etcd"), client, peer)
    }

    fn start_on(dir: TempDir, client: u16, peer: u16) -> Etcd {
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "test", "--data-dir"])
            .arg(dir.file("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run etcd (install the etcd-server package): {e}"));
        let etcd = Etcd {
            _child: ChildGuard(child),
            client: SocketAddr::from(([127, 0, 0, 1], client)),
            peer,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while etcd.range("/tidewater/").is_none() {
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        etcd
    }

    fn url(&self) -> String {
        format!("http://{}", self.client)
    }

    /// The keys under `prefix`, read through etcd's JSON gateway with curl.
    fn range(&self, prefix: &str) -> Option<Vec<String>> {
        Some(self.entries(prefix)?.into_iter().map(|(k, _)| k).collect())
    }

    /// The keys under `prefix` with their values.
    fn entries(&self, prefix: &str) -> Option<Vec<(String, String)>> {
        TcpStream::connect(self.client).ok()?;
        let key = base64(prefix.as_bytes());
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let body = format!("{{\"key\":\"{key}\",\"range_end\":\"{}\"}}", base64(&end));
        let out = curl_command()
            .args(["-s", "-X", "POST", "-d", &body])
            .arg(format!("{}/v3/kv/range", self.url()))
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.get("header")?;
        Some(
            v["kvs"]
                .as_array()
                .map(|kvs| {
                    kvs.iter()
                        .filter_map(|kv| {
                            let key = unbase64(kv["key"].as_str()?);
                            Some((key, unbase64(kv["value"].as_str().unwrap_or(""))))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        )
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> String {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().take_while(|c| *c != b'=') {
        let Some(v) = B64.iter().position(|b| *b == c) else {
            continue;
        };
        bits = bits << 6 | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A node of the cluster: its process, HTTP and RTMP addresses.
struct Node {
    process: ServerProcess,
    http: SocketAddr,
    rtmp: SocketAddr,
    srt: SocketAddr,
}

fn node(etcd: &Etcd, id: &str, lease_ttl_ms: u64) -> Node {
    let relay = free_port();
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[cluster]\netcd = [\"{}\"]\nnode_id = \"{id}\"\nsecret = \"{SECRET}\"\nrelay_listen = \"127.0.0.1:{relay}\"\nlease_ttl_ms = {lease_ttl_ms}\n",
        etcd.url()
    );
    let (mut process, http) = ServerCommand::with_config(&config).start();
    let rtmp = process.rtmp_addr();
    let srt = process.srt_addr();
    Node {
        process,
        http,
        rtmp,
        srt,
    }
}

fn stream_json(http: SocketAddr, key: &str) -> Option<serde_json::Value> {
    let r = tidewater_tests::try_http_get(&format!("http://{http}/api/v1/streams/{key}")).ok()?;
    (r.status == 200).then(|| r.json())
}

fn readers_by(stream: &serde_json::Value, protocol: &str) -> usize {
    stream["subscribers"].as_array().map_or(0, |s| {
        s.iter().filter(|s| s["protocol"] == protocol).count()
    })
}

#[test]
fn an_edge_pulls_once_for_its_readers_and_serves_rtmp_hls_and_srt() {
    let etcd = Etcd::start();
    let a = node(&etcd, "a", 10_000);
    let b = node(&etcd, "b", 10_000);
    let _publisher = ffmpeg_publish(&format!("rtmp://{}/live/cam", a.rtmp), 30, 25);
    let at_a = wait_live(a.http, "live/cam", LIVE_TIMEOUT);
    assert_eq!(
        etcd.range("/tidewater/streams/").expect("etcd"),
        ["/tidewater/streams/live/cam"]
    );
    assert_eq!(
        etcd.range("/tidewater/nodes/").expect("etcd"),
        ["/tidewater/nodes/a", "/tidewater/nodes/b"]
    );

    // Two RTMP readers and an HLS reader at B, none at A.
    let rtmp_url = format!("rtmp://{}/live/cam", b.rtmp);
    let first = spawn_read_frames(rtmp_url.clone(), &["-t", "6"], Duration::from_secs(30));
    let second = spawn_read_frames(rtmp_url, &["-t", "6"], Duration::from_secs(30));
    let hls = spawn_read_frames(
        format!("http://{}/hls/live/cam/index.m3u8", b.http),
        &["-t", "4"],
        Duration::from_secs(40),
    );
    let srt = spawn_read_frames(
        tidewater_tests::srt::ffmpeg_srt_url(b.srt, "read:live/cam"),
        &["-t", "4"],
        Duration::from_secs(30),
    );
    // Both RTMP readers on B, then count A's relay readers: one.
    let at_b = wait_json(
        &format!("http://{}/api/v1/streams/live/cam", b.http),
        LIVE_TIMEOUT,
        |s| readers_by(s, "rtmp") >= 2,
    );
    assert_eq!(at_b["protocol"], "relay", "B pulls the stream: {at_b}");
    assert_eq!(catalog_codecs(&at_b), catalog_codecs(&at_a));
    let at_a = stream_json(a.http, "live/cam").expect("live at A");
    assert_eq!(
        readers_by(&at_a, "relay"),
        1,
        "one pull for every reader at B: {at_a}"
    );
    assert_eq!(readers_by(&at_a, "rtmp"), 0, "{at_a}");

    for (name, reader) in [
        ("rtmp 1", first),
        ("rtmp 2", second),
        ("hls", hls),
        ("srt", srt),
    ] {
        let got = reader.join().expect("reader");
        assert!(
            !got.failed() && got.status.is_some(),
            "{name} reader at B: {got:?}"
        );
        assert!(
            got.video_frames() >= 75,
            "{name}: {} video frames",
            got.video_frames()
        );
        assert!(got.audio_frames() > 0, "{name}: no audio");
        assert!(got.crc.monotonic(), "{name}: timestamps go back");
    }
    // Still one relay after all of them.
    let at_a = stream_json(a.http, "live/cam").expect("live at A");
    assert!(readers_by(&at_a, "relay") <= 1, "{at_a}");
}

#[test]
fn a_killed_origins_stream_leaves_with_its_lease_and_readers_follow_the_publisher() {
    let etcd = Etcd::start();
    let ttl = Duration::from_secs(3);
    let a = node(&etcd, "a", ttl.as_millis() as u64);
    let b = node(&etcd, "b", ttl.as_millis() as u64);
    let c = node(&etcd, "c", ttl.as_millis() as u64);
    let first_publisher = ffmpeg_publish(&format!("rtmp://{}/live/move", a.rtmp), 60, 25);
    wait_live(a.http, "live/move", LIVE_TIMEOUT);

    // A reader on C for 20 s of media: it can only get them through the failover.
    let reader = spawn_read_frames(
        format!("rtmp://{}/live/move", c.rtmp),
        &["-t", "20"],
        Duration::from_secs(60),
    );
    let before = wait_json(
        &format!("http://{}/api/v1/streams/live/move", c.http),
        LIVE_TIMEOUT,
        |s| readers_by(s, "rtmp") == 1,
    );
    std::thread::sleep(Duration::from_secs(3));

    a.process.signal("KILL");
    let killed = Instant::now();
    drop(first_publisher);
    let deadline = killed + ttl + Duration::from_secs(4);
    while etcd.range("/tidewater/streams/").expect("etcd") != Vec::<String>::new() {
        assert!(
            Instant::now() < deadline,
            "A's stream still in the directory {:?} after its death",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let gone = killed.elapsed();
    assert!(
        !etcd
            .range("/tidewater/nodes/")
            .expect("etcd")
            .contains(&"/tidewater/nodes/a".to_string())
    );

    // The publisher reconnects, to B.
    let republished = Instant::now();
    let _second_publisher = ffmpeg_publish(&format!("rtmp://{}/live/move", b.rtmp), 40, 25);
    wait_json(
        &format!("http://{}/api/v1/streams/live/move", b.http),
        Duration::from_secs(15),
        |s| readers_by(s, "relay") == 1,
    );
    let followed = republished.elapsed();
    // The reader on C read one publish all along: no end, a discontinuity.
    let after = stream_json(c.http, "live/move").expect("still live at C");
    assert_eq!(after["generation"], before["generation"], "{after}");

    let got = reader.join().expect("reader");
    assert!(
        !got.failed() && got.status.is_some(),
        "the reader at C ended badly or hung: {got:?}"
    );
    // 20 s of media, about 6 of them before A died.
    assert!(
        got.video_frames() >= 400,
        "{} video frames",
        got.video_frames()
    );
    assert!(
        got.crc.monotonic(),
        "timestamps go back across the failover"
    );
    assert!(
        followed < Duration::from_secs(15),
        "C followed after {followed:?}"
    );
    eprintln!(
        "directory emptied {gone:?} after the kill; C pulled from B {followed:?} after the republish"
    );
}

#[test]
fn a_second_publish_of_a_stream_held_elsewhere_is_refused_cluster_wide() {
    let etcd = Etcd::start();
    let a = node(&etcd, "a", 10_000);
    let b = node(&etcd, "b", 10_000);
    let _first = ffmpeg_publish(&format!("rtmp://{}/live/dup", a.rtmp), 30, 25);
    wait_live(a.http, "live/dup", LIVE_TIMEOUT);
    // The same stream to B: the transaction finds it held by A (the
    // default duplicate policy is reject), and B ends its publish.
    let mut second = ffmpeg_publish(&format!("rtmp://{}/live/dup", b.rtmp), 30, 25);
    let exited = second.wait_for(Duration::from_secs(15));
    assert!(
        exited.is_some_and(|s| !s.success()),
        "the second publisher was not refused: {exited:?}"
    );
    let entries = etcd.entries("/tidewater/streams/").expect("etcd");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let holder: serde_json::Value = serde_json::from_str(&entries[0].1).expect("holder json");
    assert_eq!(holder["node"], "a", "{holder}");
    // A still publishes, and B serves it as an edge (pulled from A), not
    // as an origin of its own.
    let at_a = stream_json(a.http, "live/dup").expect("live at A");
    assert_eq!(at_a["protocol"], "rtmp");
    let frames = tidewater_tests::auth::read_frames(
        &format!("rtmp://{}/live/dup", b.rtmp),
        &["-t", "2"],
        Duration::from_secs(20),
    );
    assert!(frames.video_frames() >= 25, "{frames:?}");
    let at_b = stream_json(b.http, "live/dup").expect("pulled at B");
    assert_eq!(at_b["protocol"], "relay", "{at_b}");
}

#[test]
fn nodes_and_their_streams_register_again_in_an_etcd_restarted_empty() {
    let etcd = Etcd::start();
    let a = node(&etcd, "a", 4_000);
    let b = node(&etcd, "b", 4_000);
    let _publisher = ffmpeg_publish(&format!("rtmp://{}/live/again", a.rtmp), 40, 25);
    wait_live(a.http, "live/again", LIVE_TIMEOUT);
    // A reader at B for 16 s of media, across the restart.
    let reader = spawn_read_frames(
        format!("rtmp://{}/live/again", b.rtmp),
        &["-t", "16"],
        Duration::from_secs(45),
    );
    wait_json(
        &format!("http://{}/api/v1/streams/live/again", b.http),
        LIVE_TIMEOUT,
        |s| readers_by(s, "rtmp") == 1,
    );
    std::thread::sleep(Duration::from_secs(2));
    let etcd = etcd.restart_empty();
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(15);
    loop {
        let mut keys = etcd.range("/tidewater/").expect("etcd");
        keys.sort();
        if keys
            == [
                "/tidewater/nodes/a",
                "/tidewater/nodes/b",
                "/tidewater/streams/live/again",
            ]
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not registered again 15 s after the restart: {keys:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "registered again {:?} after etcd restarted empty",
        restarted.elapsed()
    );
    // The pull at B went on through it.
    let got = reader.join().expect("reader");
    assert!(
        !got.failed() && got.status.is_some(),
        "the reader at B: {got:?}"
    );
    assert!(
        got.video_frames() >= 350,
        "{} video frames",
        got.video_frames()
    );
    assert!(got.crc.monotonic());
    let at_a = stream_json(a.http, "live/again").expect("live at A");
    assert_eq!(readers_by(&at_a, "relay"), 1, "{at_a}");
}

/// Seconds from starting `ffmpeg -i url -frames:v 1` to its exit: the
/// first picture decoded (ffmpeg's start-up and probing included).
fn first_picture(url: &str) -> f64 {
    let started = Instant::now();
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i", url])
        .args(["-frames:v", "1", "-f", "null", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "no picture from {url}");
    started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A reader copying `url` without decoding, for `seconds`.
fn copy_reader(url: &str, seconds: u32) -> ChildGuard {
    ChildGuard(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i", url])
            .args(["-t", &seconds.to_string(), "-c", "copy", "-f", "null", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg"),
    )
}

/// The figures of BENCHMARKS.md's cluster section (printed), and the
/// property behind the egress one: the origin sends each stream once per
/// edge, however many readers each edge has.
#[test]
fn edge_join_times_and_origin_egress_with_two_edges_of_five_readers() {
    let etcd = Etcd::start();
    let a = node(&etcd, "a", 10_000);
    let b = node(&etcd, "b", 10_000);
    let c = node(&etcd, "c", 10_000);
    let _publisher = ffmpeg_publish(&format!("rtmp://{}/live/fig", a.rtmp), 60, 25);
    wait_live(a.http, "live/fig", LIVE_TIMEOUT);
    std::thread::sleep(Duration::from_secs(2));
    let at = |n: &Node| format!("rtmp://{}/live/fig", n.rtmp);
    let origin: Vec<f64> = (0..3).map(|_| first_picture(&at(&a))).collect();
    // Cold: nobody reads the stream at the edge yet, the pull starts.
    let cold = [first_picture(&at(&b)), first_picture(&at(&c))];
    // Warm: a reader keeps the pull going.
    let _keep = copy_reader(&at(&b), 50);
    std::thread::sleep(Duration::from_secs(1));
    let warm: Vec<f64> = (0..3).map(|_| first_picture(&at(&b))).collect();

    let readers: Vec<ChildGuard> = [&b, &c]
        .iter()
        .flat_map(|n| (0..5).map(|_| copy_reader(&at(n), 40)))
        .collect();
    for n in [&b, &c] {
        wait_json(
            &format!("http://{}/api/v1/streams/live/fig", n.http),
            LIVE_TIMEOUT,
            |s| readers_by(s, "rtmp") >= 5,
        );
    }
    let sample = || {
        let s = stream_json(a.http, "live/fig").expect("live at A");
        let relays: Vec<u64> = s["subscribers"]
            .as_array()
            .expect("subscribers")
            .iter()
            .filter(|r| r["protocol"] == "relay")
            .map(|r| r["bytes_sent"].as_u64().unwrap_or(0))
            .collect();
        (s["qos"]["bytes"].as_u64().unwrap_or(0), relays, s)
    };
    let (in0, out0, _) = sample();
    std::thread::sleep(Duration::from_secs(6));
    let (in1, out1, at_a) = sample();
    assert_eq!(out1.len(), 2, "one relay per edge at A: {at_a}");
    assert_eq!(readers_by(&at_a, "rtmp"), 0, "{at_a}");
    let ingest = (in1 - in0) as f64;
    let per_edge: Vec<f64> = out1
        .iter()
        .zip(&out0)
        .map(|(b, a)| (b - a) as f64 / ingest)
        .collect();
    eprintln!(
        "first picture (ffmpeg -frames:v 1, s): origin median {:.2}; edge cold {:.2} / {:.2}; edge warm median {:.2}",
        median(origin),
        cold[0],
        cold[1],
        median(warm)
    );
    eprintln!(
        "origin egress over 6 s, 2 edges x 5 readers: {:.0} kB ingest, per edge {:.2}x / {:.2}x the ingest, total {:.2}x",
        ingest / 1000.0,
        per_edge[0],
        per_edge[1],
        per_edge.iter().sum::<f64>()
    );
    drop(readers);
}

#[test]
fn without_etcd_a_cluster_node_does_not_start_and_says_why() {
    let dead = free_port();
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[cluster]\netcd = [\"http://127.0.0.1:{dead}\"]\nnode_id = \"a\"\nsecret = \"{SECRET}\"\nrelay_listen = \"127.0.0.1:{}\"\n",
        free_port()
    );
    let mut process = ServerCommand::with_config(&config).spawn();
    let (status, output) = process.expect_exit(Duration::from_secs(30));
    assert!(!status.success());
    assert!(output.contains("cluster"), "{output}");
}
