//! Several `tidewater` processes as one cluster, found through a real etcd
//! (Debian's `etcd-server`), each process and etcd on a host of its own: a
//! Linux network namespace on a private bridge that the test makes and
//! removes ([`tidewater_tests::netns`]; needs root and iproute2, never
//! skipped). The nodes advertise their host's address; ffmpeg publishes to
//! node A from a client host, ffmpeg reads RTMP, HLS and SRT from node B
//! (which pulls the stream once from A) and from C; when A is killed its
//! stream leaves the directory with its lease, the publisher goes to B, and
//! C's reader goes on; etcd restarted empty, the nodes register again.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidewater_tests::abuse;
use tidewater_tests::auth::spawn_read_frames;
use tidewater_tests::netns::{Host, Lab};
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

/// Runs `test` on a client host of a new lab (its readers, publishers and
/// API calls go from there); the lab goes when it returns or panics.
fn in_lab(test: impl FnOnce(&Lab) + Send) {
    let lab = Lab::new();
    let client = lab.host("client");
    client.run(|| test(&lab));
}

/// An etcd of the test's own on a host of its own, killed on drop.
struct Etcd {
    _child: ChildGuard,
    client: SocketAddr,
    host: Host,
    _dir: TempDir,
}

impl Etcd {
    fn start(host: Host) -> Etcd {
        Etcd::start_on(host, TempDir::new("etcd"))
    }

    /// Kills this etcd and starts an empty one at the same address: every
    /// key and lease is gone.
    fn restart_empty(self) -> Etcd {
        let host = self.host.clone();
        drop(self);
        Etcd::start_on(host, TempDir::new("etcd"))
    }

    fn start_on(host: Host, dir: TempDir) -> Etcd {
        let client = SocketAddr::from((host.addr(), 2379));
        let client_url = format!("http://{client}");
        // Peers: none but itself, on the host's own loopback.
        let peer_url = "http://127.0.0.1:2380";
        let child = host.run(|| {
            Command::new("etcd")
                .args(["--name", "test", "--data-dir"])
                .arg(dir.file("data"))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", peer_url])
                .args(["--initial-advertise-peer-urls", peer_url])
                .args(["--initial-cluster", &format!("test={peer_url}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run etcd (install the etcd-server package): {e}")
                })
        });
        let etcd = Etcd {
            _child: ChildGuard(child),
            client,
            host,
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
        TcpStream::connect_timeout(&self.client, Duration::from_secs(2)).ok()?;
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

    /// Waits up to `timeout` for the keys under `/tidewater/` to be `keys`.
    fn wait_keys(&self, keys: &[&str], timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let mut now = self.range("/tidewater/").unwrap_or_default();
            now.sort();
            if now == keys {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "the directory is {now:?} after {timeout:?}, not {keys:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
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

/// A node of the cluster on a host of its own: its process and the
/// addresses it listens at (the host's).
struct Node {
    process: ServerProcess,
    host: Host,
    http: SocketAddr,
    rtmp: SocketAddr,
    srt: SocketAddr,
}

/// The relay's port on every host.
const RELAY_PORT: u16 = 7935;

/// Starts node `id` on a new host of `lab`; it advertises the host's address.
fn node(lab: &Lab, etcd: &Etcd, id: &str, lease_ttl: Duration) -> Node {
    node_with(lab, etcd, id, lease_ttl, "")
}

/// [`node`] with more configuration (`extra`, TOML tables).
fn node_with(lab: &Lab, etcd: &Etcd, id: &str, lease_ttl: Duration, extra: &str) -> Node {
    let host = lab.host(id);
    let addr = host.addr();
    let config = format!(
        "[http]\nlisten = \"{addr}:8080\"\n\n[cluster]\netcd = [\"{}\"]\nnode_id = \"{id}\"\nsecret = \"{SECRET}\"\nrelay_listen = \"{addr}:{RELAY_PORT}\"\nadvertise = [\"rtmp://{addr}/\", \"http://{addr}:8080/\"]\nlease_ttl_ms = {}\n\n{}\n{extra}",
        etcd.url(),
        lease_ttl.as_millis(),
        lab_users(addr)
    );
    let mut process = host.run(|| {
        ServerCommand::with_config(&config)
            .env("TIDEWATER_RTMP__LISTEN", &format!("{addr}:1935"))
            .env("TIDEWATER_SRT__LISTEN", &format!("{addr}:9710"))
            .spawn()
    });
    let http = process.http_addr();
    let rtmp = process.rtmp_addr();
    let srt = process.srt_addr();
    Node {
        process,
        host,
        http,
        rtmp,
        srt,
    }
}

/// `[auth]` for a node off loopback: everyone on the lab's network may
/// publish, read, play and use the API (the defaults allow publish and the
/// API from loopback only).
fn lab_users(addr: Ipv4Addr) -> String {
    let [a, b, c, _] = addr.octets();
    format!(
        "[[auth.users]]\nuser = \"any\"\nips = [\"{a}.{b}.{c}.0/24\"]\npermissions = [{{ action = \"publish\" }}, {{ action = \"read\" }}, {{ action = \"playback\" }}, {{ action = \"api\" }}]\n"
    )
}

impl Node {
    fn url(&self, key: &str) -> String {
        format!("http://{}/api/v1/streams/{key}", self.http)
    }

    fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://{}/{key}", self.rtmp)
    }

    /// Polls its API until `key`'s JSON satisfies `check`.
    fn wait_stream(
        &self,
        key: &str,
        check: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_json(&self.url(key), LIVE_TIMEOUT, check)
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

/// The hosts (IP addresses) of a stream's relay readers: the edges pulling it.
fn relay_hosts(stream: &serde_json::Value) -> Vec<String> {
    let mut hosts: Vec<String> = stream["subscribers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["protocol"] == "relay")
        .map(|s| {
            let peer = s["peer"].as_str().unwrap_or("");
            peer.parse::<SocketAddr>()
                .map_or(peer.to_string(), |a| a.ip().to_string())
        })
        .collect();
    hosts.sort();
    hosts
}

/// What node `id` wrote about itself in the directory.
fn node_entry(etcd: &Etcd, id: &str) -> serde_json::Value {
    let entries = etcd.entries("/tidewater/nodes/").expect("etcd");
    let (_, value) = entries
        .iter()
        .find(|(k, _)| *k == format!("/tidewater/nodes/{id}"))
        .unwrap_or_else(|| panic!("no node {id} in {entries:?}"));
    serde_json::from_str(value).expect("node json")
}

/// Checks what a reader decoded: it ended by itself, with `min_video`
/// video frames, audio, and timestamps that never go back.
fn assert_decoded(name: &str, got: &tidewater_tests::auth::ReaderOutcome, min_video: usize) {
    assert!(
        !got.failed() && got.status.is_some(),
        "{name} reader ended badly or hung: {got:?}"
    );
    assert!(
        got.video_frames() >= min_video,
        "{name}: {} video frames, expected {min_video}",
        got.video_frames()
    );
    assert!(got.audio_frames() > 0, "{name}: no audio");
    assert!(got.crc.monotonic(), "{name}: timestamps go back");
}

/// The proof, on five hosts (etcd, A, B, C, and a client running
/// ffmpeg): B pulls once for all its readers, a killed origin leaves the
/// directory and its readers follow the publisher to B, and nodes register
/// again in an etcd restarted empty.
#[test]
fn three_hosts_pull_once_per_edge_follow_a_killed_origin_and_register_again() {
    in_lab(|lab| {
        let etcd = Etcd::start(lab.host("etcd"));
        // The default lease_ttl: the failover bound is the one users get.
        let ttl = Duration::from_secs(10);
        // The default duplicate policy, `reject`: the publisher comes back
        // to B, which was pulling the stream from A for its own readers.
        let a = node(lab, &etcd, "a", ttl);
        let b = node(lab, &etcd, "b", ttl);
        let c = node(lab, &etcd, "c", ttl);
        let publisher = ffmpeg_publish(&a.rtmp_url("live/cam"), 60, 25);
        let at_a = wait_live(a.http, "live/cam", LIVE_TIMEOUT);
        etcd.wait_keys(
            &[
                "/tidewater/nodes/a",
                "/tidewater/nodes/b",
                "/tidewater/nodes/c",
                "/tidewater/streams/live/cam",
            ],
            Duration::from_secs(5),
        );
        // Every node advertises its own host's address.
        for n in [&a, &b, &c] {
            let id = n.host.namespace().rsplit('-').next().unwrap_or_default();
            let entry = node_entry(&etcd, id);
            assert_eq!(
                entry["relay"],
                format!("{}:{RELAY_PORT}", n.host.addr()),
                "{entry}"
            );
            assert_eq!(entry["advertise"][0], format!("rtmp://{}/", n.host.addr()));
        }

        // Two RTMP readers, an HLS and an SRT reader at B; an RTMP reader
        // at C for 20 s of media, through the failover below.
        let at_b_rtmp = b.rtmp_url("live/cam");
        let first = spawn_read_frames(at_b_rtmp.clone(), &["-t", "6"], Duration::from_secs(30));
        let second = spawn_read_frames(at_b_rtmp, &["-t", "6"], Duration::from_secs(30));
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
        let at_c_reader = spawn_read_frames(
            c.rtmp_url("live/cam"),
            &["-t", "20"],
            Duration::from_secs(70),
        );
        let at_b = b.wait_stream("live/cam", |s| readers_by(s, "rtmp") >= 2);
        assert_eq!(at_b["protocol"], "relay", "B pulls the stream: {at_b}");
        assert_eq!(catalog_codecs(&at_b), catalog_codecs(&at_a));
        let before = c.wait_stream("live/cam", |s| readers_by(s, "rtmp") == 1);
        // A sends the stream once to B's host and once to C's, whatever
        // B's readers.
        let at_a = stream_json(a.http, "live/cam").expect("live at A");
        let mut edges = vec![b.host.addr().to_string(), c.host.addr().to_string()];
        edges.sort();
        assert_eq!(relay_hosts(&at_a), edges, "one pull per edge: {at_a}");
        assert_eq!(readers_by(&at_a, "rtmp"), 0, "{at_a}");

        for (name, reader) in [
            ("rtmp 1 at B", first),
            ("rtmp 2 at B", second),
            ("hls at B", hls),
            ("srt at B", srt),
        ] {
            assert_decoded(name, &reader.join().expect("reader"), 75);
        }
        let at_a = stream_json(a.http, "live/cam").expect("live at A");
        assert_eq!(relay_hosts(&at_a), edges, "still one pull per edge: {at_a}");

        // A dies: its node and stream leave the directory with its lease.
        a.process.signal("KILL");
        let killed = Instant::now();
        drop(publisher);
        etcd.wait_keys(
            &["/tidewater/nodes/b", "/tidewater/nodes/c"],
            ttl + Duration::from_secs(4),
        );
        let gone = killed.elapsed();
        // The publisher reconnects, to B; C follows it there.
        let republished = Instant::now();
        let _publisher = ffmpeg_publish(&b.rtmp_url("live/cam"), 40, 25);
        wait_json(&b.url("live/cam"), Duration::from_secs(15), |s| {
            s["protocol"] == "rtmp" && relay_hosts(s) == [c.host.addr().to_string()]
        });
        let followed = republished.elapsed();
        // C's pulled publish ended with A's lease and the next one (from B)
        // began; C's reader stayed and followed it: a discontinuity, not an
        // end. B lists C's relay connection a moment before C has
        // registered the pulled publish (the full run once read C between
        // the two): wait for it.
        let after = c.wait_stream("live/cam", |s| {
            s["protocol"] == "relay" && s["generation"].as_u64() > before["generation"].as_u64()
        });
        assert_eq!(after["protocol"], "relay", "{after}");
        assert!(
            after["generation"].as_u64() > before["generation"].as_u64(),
            "{before} then {after}"
        );
        // 20 s of media, about 7 of them before A died.
        assert_decoded("rtmp at C", &at_c_reader.join().expect("reader"), 400);
        eprintln!(
            "directory emptied {gone:?} after the kill; C pulled from B {followed:?} after the republish"
        );

        // etcd restarted empty: B and C and B's stream are back in it,
        // while a reader at C goes on.
        let reader = spawn_read_frames(
            c.rtmp_url("live/cam"),
            &["-t", "10"],
            Duration::from_secs(40),
        );
        c.wait_stream("live/cam", |s| readers_by(s, "rtmp") == 1);
        let etcd = etcd.restart_empty();
        let again = etcd.wait_keys(
            &[
                "/tidewater/nodes/b",
                "/tidewater/nodes/c",
                "/tidewater/streams/live/cam",
            ],
            Duration::from_secs(15),
        );
        eprintln!("registered again {again:?} after etcd restarted empty");
        assert_decoded(
            "rtmp at C across the restart",
            &reader.join().expect("reader"),
            200,
        );
        let at_b = stream_json(b.http, "live/cam").expect("live at B");
        assert_eq!(relay_hosts(&at_b), [c.host.addr().to_string()], "{at_b}");
    });
}

#[test]
fn a_second_publish_of_a_stream_held_on_another_host_is_refused() {
    in_lab(|lab| {
        let etcd = Etcd::start(lab.host("etcd"));
        // `open` takes over: a publish there moves the stream at once.
        let open = "[apps.open]\nduplicate = \"take_over\"\n";
        let a = node_with(lab, &etcd, "a", Duration::from_secs(10), open);
        let mut b = node_with(lab, &etcd, "b", Duration::from_secs(10), open);
        let _first = ffmpeg_publish(&a.rtmp_url("live/dup"), 30, 25);
        wait_live(a.http, "live/dup", LIVE_TIMEOUT);
        etcd.wait_keys(
            &[
                "/tidewater/nodes/a",
                "/tidewater/nodes/b",
                "/tidewater/streams/live/dup",
            ],
            LIVE_TIMEOUT,
        );
        let before = stream_json(a.http, "live/dup").expect("live at A");
        // A viewer at A across the refused publish at B.
        let viewer = spawn_read_frames(a.rtmp_url("live/dup"), &["-t", "4"], LIVE_TIMEOUT);
        // The same stream to B, where the directory says A holds it and the
        // default duplicate policy is reject: refused at admission, as a
        // local duplicate is, before B opens any publish.
        let mut second = ffmpeg_publish(&b.rtmp_url("live/dup"), 30, 25);
        let exited = tidewater_tests::auth::exit_of(&mut second, Duration::from_secs(15));
        let Some((status, stderr)) = exited else {
            panic!("the second publisher was not refused: still publishing after 15 s");
        };
        assert!(!status.success(), "{status}: {stderr}");
        assert!(
            stderr.contains("held by node \"a\"") && stderr.contains("duplicate = \"reject\""),
            "ffmpeg was not told why: {stderr}"
        );
        let line = b
            .process
            .wait_for_line(
                "publish refused: live/dup is held by node \"a\"",
                LIVE_TIMEOUT,
            )
            .unwrap_or_else(|| panic!("no refusal line in B's log:\n{}", b.process.output()));
        assert!(line.contains("[cluster]"), "{line}");
        eprintln!("B refused the second publisher: {line}");
        if let Some(told) = stderr.lines().find(|l| l.contains("held by node")) {
            eprintln!("ffmpeg was told: {told}");
        }
        // Refused before acceptance: B never started (and so never ended)
        // a publish of its own.
        let log = b.process.output();
        assert!(
            !log.lines()
                .any(|l| (l.contains("publish started") && !l.contains("relay"))
                    || l.contains("claimed the stream first")),
            "{log}"
        );
        // A's publish and its viewer are untouched.
        let viewed = viewer.join().expect("viewer thread");
        assert!(viewed.status.is_some_and(|s| s.success()), "{viewed:?}");
        assert!(viewed.video_frames() >= 90, "{viewed:?}");
        assert!(viewed.crc.monotonic(), "{viewed:?}");
        let after = stream_json(a.http, "live/dup").expect("live at A");
        for field in ["generation", "started_unix_ms", "peer"] {
            assert_eq!(before[field], after[field], "{field}: {before} / {after}");
        }
        let entries = etcd.entries("/tidewater/streams/").expect("etcd");
        assert_eq!(entries.len(), 1, "{entries:?}");
        let holder: serde_json::Value = serde_json::from_str(&entries[0].1).expect("holder json");
        assert_eq!(holder["node"], "a", "{holder}");
        assert_eq!(
            holder["relay"],
            format!("{}:{RELAY_PORT}", a.host.addr()),
            "{holder}"
        );
        // A still publishes, and B serves it as an edge (pulled from A), not
        // as an origin of its own.
        let at_a = stream_json(a.http, "live/dup").expect("live at A");
        assert_eq!(at_a["protocol"], "rtmp");
        let frames = tidewater_tests::auth::read_frames(
            &b.rtmp_url("live/dup"),
            &["-t", "2"],
            Duration::from_secs(20),
        );
        assert!(frames.video_frames() >= 25, "{frames:?}");
        let at_b = stream_json(b.http, "live/dup").expect("pulled at B");
        assert_eq!(at_b["protocol"], "relay", "{at_b}");
        // B's reader is gone: B stops pulling after its idle grace (10 s),
        // although its always-on HLS and DASH packagers still subscribe.
        let idle = Instant::now();
        // Meanwhile, under `take_over` admission lets a second publisher in
        // and the stream moves: B becomes its origin, A's publisher ends.
        let holder_of = |key: &str| {
            let entries = etcd.entries("/tidewater/streams/").unwrap_or_default();
            entries
                .iter()
                .find(|(k, _)| k.ends_with(key))
                .and_then(|(_, v)| serde_json::from_str::<serde_json::Value>(v).ok())
                .map(|h| h["node"].clone())
        };
        let mut old = ffmpeg_publish(&a.rtmp_url("open/move"), 30, 25);
        wait_live(a.http, "open/move", LIVE_TIMEOUT);
        let _new = ffmpeg_publish(&b.rtmp_url("open/move"), 30, 25);
        b.wait_stream("open/move", |s| s["protocol"] == "rtmp");
        let ended = tidewater_tests::auth::exit_of(&mut old, LIVE_TIMEOUT);
        assert!(
            ended.is_some(),
            "A's publisher still runs after the take-over"
        );
        let moved = Instant::now();
        while holder_of("open/move") != Some("b".into()) {
            assert!(
                moved.elapsed() < LIVE_TIMEOUT,
                "{:?}",
                etcd.entries("/tidewater/streams/")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        wait_json(&a.url("live/dup"), Duration::from_secs(20), |s| {
            relay_hosts(s).is_empty()
        });
        eprintln!(
            "B stopped pulling {:?} after its last reader",
            idle.elapsed()
        );
    });
}

/// A GET's status and `Cache-Control`, with `curl_args` (credentials).
fn cache_control(url: &str, curl_args: &[&str]) -> (u16, String) {
    let out = curl_command()
        .args(curl_args)
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\n%header{cache-control}",
            url,
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, cache) = text.split_once('\n').unwrap_or((&text, ""));
    (status.trim().parse().unwrap_or(0), cache.trim().to_string())
}

/// The `s-maxage` (shared caches' lifetime) of a `Cache-Control` value.
fn s_maxage(cache: &str) -> Option<u32> {
    cache
        .split(',')
        .find_map(|d| d.trim().strip_prefix("s-maxage="))
        .and_then(|v| v.parse().ok())
}

/// Every `URI="…"` of a playlist, in order.
fn quoted_uris(playlist: &str) -> Vec<String> {
    playlist
        .split("URI=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

/// The value of the playlist tag `#NAME:` as a number.
fn tag_number(playlist: &str, name: &str) -> u64 {
    playlist
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {playlist}"))
}

/// What a CDN in front of an edge is told: HLS, LL-HLS (blocking reload
/// included) and DASH at an edge that pulls the stream, asked anonymously
/// (shared caches may keep them) and with credentials (they may not).
#[test]
fn hls_ll_hls_and_dash_at_an_edge_tell_a_cdn_what_it_may_cache() {
    in_lab(|lab| {
        let etcd = Etcd::start(lab.host("etcd"));
        let viewer = "[[auth.users]]\nuser = \"viewer\"\npassword = \"viewer-pass\"\npermissions = [{ action = \"read\" }, { action = \"playback\" }]\n";
        let ttl = Duration::from_secs(10);
        let a = node_with(lab, &etcd, "a", ttl, viewer);
        let b = node_with(lab, &etcd, "b", ttl, viewer);
        let _publisher = ffmpeg_publish(&a.rtmp_url("live/cdn"), 60, 25);
        wait_live(a.http, "live/cdn", LIVE_TIMEOUT);
        let base = |kind: &str| format!("http://{}/{kind}/live/cdn", b.http);
        let anonymous: &[&str] = &[];
        let user: &[&str] = &["-u", "viewer:viewer-pass"];
        let get = |url: &str| {
            let r = tidewater_tests::try_http_get(url).expect("GET");
            assert_eq!(r.status, 200, "{url}: {}", r.body);
            r.body
        };

        // HLS: the playlist for half a target duration (in shared caches),
        // segments for good.
        let hls = base("hls");
        let playlist = get(&format!("{hls}/index.m3u8"));
        let at_b = stream_json(b.http, "live/cdn").expect("live at B");
        assert_eq!(at_b["protocol"], "relay", "B is an edge: {at_b}");
        let td = tag_number(&playlist, "#EXT-X-TARGETDURATION:");
        let (status, cache) = cache_control(&format!("{hls}/index.m3u8"), anonymous);
        assert_eq!(status, 200);
        // Browsers revalidate (max-age=0); shared caches keep it a while.
        assert!(cache.starts_with("public, max-age=0, s-maxage="), "{cache}");
        let age = u64::from(s_maxage(&cache).expect("s-maxage"));
        assert!(
            age >= 1 && age <= (td / 2).max(1),
            "{cache} with target duration {td}"
        );
        let segment = playlist
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.is_empty())
            .expect("a segment");
        let (status, cache) = cache_control(&format!("{hls}/{segment}"), anonymous);
        assert_eq!(
            (status, cache.as_str()),
            (200, "public, max-age=3600, immutable")
        );
        let (status, cache) = cache_control(&format!("{hls}/{segment}"), user);
        assert_eq!(
            (status, cache.as_str()),
            (200, "private, max-age=3600, immutable")
        );
        let (status, cache) = cache_control(&format!("{hls}/index.m3u8"), user);
        assert_eq!((status, cache.as_str()), (200, "private, no-cache"));

        // LL-HLS: the playlist for a second; a blocking reload for its URL,
        // answered once the part it asks for exists; init and parts for good.
        let ll = base("llhls");
        let (status, cache) = cache_control(&format!("{ll}/index.m3u8"), anonymous);
        assert_eq!(
            (status, cache.as_str()),
            (200, "public, max-age=0, s-maxage=1")
        );
        let playlist = get(&format!("{ll}/index.m3u8"));
        let td = tag_number(&playlist, "#EXT-X-TARGETDURATION:");
        let segments = playlist
            .lines()
            .filter(|l| l.starts_with("#EXTINF"))
            .count() as u64;
        let next = tag_number(&playlist, "#EXT-X-MEDIA-SEQUENCE:") + segments + 1;
        let blocking = format!("{ll}/index.m3u8?_HLS_msn={next}&_HLS_part=0");
        let (status, cache) = cache_control(&blocking, anonymous);
        assert_eq!(status, 200, "{blocking}");
        assert_eq!(cache, format!("public, max-age=0, s-maxage={}", td.max(1)));
        let answered = get(&blocking);
        assert!(
            answered.contains(&format!("-{next}.0.m4s")),
            "the blocking reload's playlist lacks part 0 of segment {next}: {answered}"
        );
        let uris = quoted_uris(&answered);
        let init = uris.iter().find(|u| u.starts_with("init-")).expect("init");
        let part = uris
            .iter()
            .find(|u| u.starts_with("part-"))
            .expect("a part");
        for file in [init, part] {
            let (status, cache) = cache_control(&format!("{ll}/{file}"), anonymous);
            assert_eq!(
                (status, cache.as_str()),
                (200, "public, max-age=3600, immutable"),
                "{file}"
            );
        }

        // DASH: the MPD for a second, init and segments for a minute (their
        // names start again with a new packager), private with credentials.
        let dash = base("dash");
        let (status, cache) = cache_control(&format!("{dash}/manifest.mpd"), anonymous);
        assert_eq!(
            (status, cache.as_str()),
            (200, "public, max-age=0, s-maxage=1")
        );
        let mpd = get(&format!("{dash}/manifest.mpd"));
        let template = mpd
            .split("initialization=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("an initialization template");
        let rep = mpd
            .split("<Representation id=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("a representation");
        let init = template.replace("$RepresentationID$", rep);
        let (status, cache) = cache_control(&format!("{dash}/{init}"), anonymous);
        assert_eq!(
            (status, cache.as_str()),
            (200, "public, max-age=60"),
            "{init}"
        );
        let (status, cache) = cache_control(&format!("{dash}/{init}"), user);
        assert_eq!(
            (status, cache.as_str()),
            (200, "private, max-age=60"),
            "{init}"
        );
    });
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

/// Seconds from starting `ffprobe` on `url` to the first video keyframe
/// packet it lists: the reader's connect to its first keyframe, ffprobe's
/// start-up included (probing kept to the minimum, so that it lists packets
/// as they come).
fn first_keyframe(url: &str) -> f64 {
    let started = Instant::now();
    let mut child = ChildGuard(
        Command::new("ffprobe")
            .args(["-hide_banner", "-loglevel", "error"])
            .args([
                "-probesize",
                "32",
                "-analyzeduration",
                "0",
                "-fpsprobesize",
                "0",
            ])
            .args(["-select_streams", "v", "-show_entries", "packet=flags"])
            .args(["-of", "csv=p=0", url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffprobe"),
    );
    let out = child.0.stdout.take().expect("piped stdout");
    let found = std::io::BufRead::lines(std::io::BufReader::new(out))
        .map_while(Result::ok)
        .any(|line| line.starts_with('K'));
    assert!(found, "no keyframe from {url}");
    started.elapsed().as_secs_f64()
}

/// The egress figure's sample: the ingest's bytes at the origin and the
/// bytes sent to each relay reader (by edge host).
fn egress(origin: &Node, key: &str) -> (u64, Vec<(String, u64)>) {
    let s = stream_json(origin.http, key).expect("live at the origin");
    let mut relays: Vec<(String, u64)> = s["subscribers"]
        .as_array()
        .expect("subscribers")
        .iter()
        .filter(|r| r["protocol"] == "relay")
        .map(|r| {
            (
                r["peer"].as_str().unwrap_or("").to_string(),
                r["bytes_sent"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    relays.sort();
    (s["qos"]["bytes"].as_u64().unwrap_or(0), relays)
}

/// Per relay, the bytes sent over `window` divided by the bytes ingested.
fn egress_ratios(origin: &Node, key: &str, window: Duration) -> Vec<f64> {
    let (in0, out0) = egress(origin, key);
    std::thread::sleep(window);
    let (in1, out1) = egress(origin, key);
    let ingest = in1.saturating_sub(in0) as f64;
    assert!(ingest > 0.0, "nothing ingested in {window:?}");
    out1.iter()
        .map(|(peer, bytes)| {
            let before = out0.iter().find(|(p, _)| p == peer).map_or(0, |(_, b)| *b);
            bytes.saturating_sub(before) as f64 / ingest
        })
        .collect()
}

/// The figures of BENCHMARKS.md's cluster section (printed; run with
/// `--nocapture`), and the property behind the egress one: the origin sends
/// each stream once per edge, with 1 edge of 10 readers as with 3.
#[test]
fn edge_join_times_and_origin_egress_with_one_and_three_edges_of_ten_readers() {
    in_lab(|lab| {
        let etcd = Etcd::start(lab.host("etcd"));
        let ttl = Duration::from_secs(10);
        let a = node(lab, &etcd, "a", ttl);
        let edges: Vec<Node> = ["b", "c", "d"]
            .iter()
            .map(|id| node(lab, &etcd, id, ttl))
            .collect();
        let _publisher = ffmpeg_publish(&a.rtmp_url("live/fig"), 90, 25);
        wait_live(a.http, "live/fig", LIVE_TIMEOUT);
        std::thread::sleep(Duration::from_secs(2));
        let key = "live/fig";
        let origin: Vec<f64> = (0..3).map(|_| first_keyframe(&a.rtmp_url(key))).collect();
        let origin_picture: Vec<f64> = (0..3).map(|_| first_picture(&a.rtmp_url(key))).collect();
        // Cold: nobody reads the stream at the edge yet, the pull starts.
        let mut cold = vec![first_keyframe(&edges[0].rtmp_url(key))];
        // Warm: 10 readers keep B's pull going.
        let window = Duration::from_secs(6);
        let mut readers: Vec<ChildGuard> = (0..10)
            .map(|_| copy_reader(&edges[0].rtmp_url(key), 80))
            .collect();
        edges[0].wait_stream(key, |s| readers_by(s, "rtmp") >= 10);
        let warm: Vec<f64> = (0..3)
            .map(|_| first_keyframe(&edges[0].rtmp_url(key)))
            .collect();
        let warm_picture: Vec<f64> = (0..3)
            .map(|_| first_picture(&edges[0].rtmp_url(key)))
            .collect();
        // One edge of 10 readers: one relay at A.
        let at_a = stream_json(a.http, key).expect("live at A");
        assert_eq!(
            relay_hosts(&at_a),
            [edges[0].host.addr().to_string()],
            "{at_a}"
        );
        let one = egress_ratios(&a, key, window);
        assert_eq!(one.len(), 1, "one relay for 10 readers at one edge");
        // Three: C and D start cold too, then get 10 readers each.
        for n in &edges[1..] {
            cold.push(first_keyframe(&n.rtmp_url(key)));
            readers.extend((0..10).map(|_| copy_reader(&n.rtmp_url(key), 60)));
        }
        for n in &edges {
            n.wait_stream(key, |s| readers_by(s, "rtmp") >= 10);
        }
        let three = egress_ratios(&a, key, window);
        let at_a = stream_json(a.http, key).expect("live at A");
        let mut hosts: Vec<String> = edges.iter().map(|n| n.host.addr().to_string()).collect();
        hosts.sort();
        assert_eq!(relay_hosts(&at_a), hosts, "one relay per edge at A: {at_a}");
        assert_eq!(three.len(), 3, "{at_a}");
        assert_eq!(readers_by(&at_a, "rtmp"), 0, "{at_a}");
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        eprintln!(
            "first keyframe packet (ffprobe, s): origin median {:.2}; edge cold {}; edge warm median {:.2}",
            median(origin),
            fmt(&cold),
            median(warm)
        );
        eprintln!(
            "first picture (ffmpeg -frames:v 1, s): origin median {:.2}; edge warm median {:.2}",
            median(origin_picture),
            median(warm_picture)
        );
        eprintln!(
            "origin egress over {window:?} per edge, x the ingest: 1 edge x 10 readers {} (total {:.2}); 3 edges x 10 readers {} (total {:.2})",
            fmt(&one),
            one.iter().sum::<f64>(),
            fmt(&three),
            three.iter().sum::<f64>()
        );
        // Each edge gets the stream once: about the ingest, never a
        // multiple of it (the relay's framing adds a few per cent).
        for ratio in one.iter().chain(&three) {
            assert!(
                (0.8..1.3).contains(ratio),
                "an edge got {ratio:.2}x the ingest"
            );
        }
        drop(readers);
    });
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

/// Sends `payload` to `addr`, closes the sending half (the message can
/// never be completed) and waits up to `limit` for the server to close:
/// how long that took, `None` if it had not.
fn send_then_eof(
    addr: SocketAddr,
    payload: &[u8],
    limit: Duration,
) -> (SocketAddr, Option<Duration>) {
    let mut s = TcpStream::connect(addr).expect("connect to the relay port");
    let local = s.local_addr().expect("local address");
    let _ = s.write_all(payload);
    let _ = s.shutdown(Shutdown::Write);
    let sent = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        let left = limit.saturating_sub(sent.elapsed());
        if left.is_zero() {
            return (local, None);
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => return (local, Some(sent.elapsed())),
            // The origin answers nothing to a peer that never said hello.
            Ok(n) => panic!("the relay answered {n} bytes to a truncated message"),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (local, Some(sent.elapsed())),
        }
    }
}

/// Hostile peers on the origin's relay port (garbage, a hello cut short
/// and left hanging, a frame message cut short by the peer's close, a
/// length prefix of 4 GiB): each connection is closed with a log line
/// naming the peer, while the origin's stream, its own reader and the edge
/// pulling it for another reader go on, on the same relay connection.
#[test]
fn the_relay_port_closes_garbage_truncated_and_oversized_messages_and_the_stream_goes_on() {
    in_lab(|lab| {
        let etcd = Etcd::start(lab.host("etcd"));
        let ttl = Duration::from_secs(10);
        let mut a = node(lab, &etcd, "a", ttl);
        let b = node(lab, &etcd, "b", ttl);
        let _publisher = ffmpeg_publish(&a.rtmp_url("live/cam"), 60, 25);
        wait_live(a.http, "live/cam", LIVE_TIMEOUT);
        // 20 s of media read across every attack, at the origin and at the edge.
        let at_a = spawn_read_frames(
            a.rtmp_url("live/cam"),
            &["-t", "20"],
            Duration::from_secs(70),
        );
        let at_b = spawn_read_frames(
            b.rtmp_url("live/cam"),
            &["-t", "20"],
            Duration::from_secs(70),
        );
        let pulled = a.wait_stream("live/cam", |s| {
            relay_hosts(s) == [b.host.addr().to_string()]
        });
        let relay_peer = |s: &serde_json::Value| -> Vec<String> {
            s["subscribers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["protocol"] == "relay")
                .map(|s| s["peer"].as_str().unwrap_or("").to_string())
                .collect()
        };
        let edge_before = relay_peer(&pulled);

        let relay = SocketAddr::from((a.host.addr(), RELAY_PORT));
        // The origin gives a peer 5 s to say hello (`relay_hello_timeout_ms`'s default).
        let limit = Duration::from_secs(15);
        // A hello (type 1) announcing 200 body bytes, of which 24 come.
        let mut truncated_hello = vec![1u8, 0, 0, 0, 200];
        truncated_hello.extend_from_slice(b"TWRL");
        truncated_hello.extend(std::iter::repeat_n(0x41, 20));
        // A frame message (type 5) announcing 1 000 bytes, 100 come, then the peer's close.
        let mut truncated_frame = vec![5u8, 0, 0, 0x03, 0xE8];
        truncated_frame.extend(std::iter::repeat_n(0x07, 100));
        // A hello whose length prefix says 4 GiB (the relay takes 16 MiB at most).
        let mut oversized = vec![1u8, 0xFF, 0xFF, 0xFF, 0xFF];
        oversized.extend(std::iter::repeat_n(0x33, 4096));

        let mut closed: Vec<(String, SocketAddr, Duration)> = Vec::new();
        for outcome in [
            abuse::tcp("relay garbage", relay, &abuse::garbage(4096), limit),
            abuse::tcp("relay oversized length", relay, &oversized, limit),
            abuse::tcp("relay truncated hello", relay, &truncated_hello, limit),
        ] {
            let after = outcome
                .closed_after
                .unwrap_or_else(|| panic!("{}: still open after {limit:?}", outcome.what));
            assert!(
                outcome.answer.is_empty(),
                "{}: the origin answered {:?}",
                outcome.what,
                outcome.answer
            );
            closed.push((outcome.what, outcome.local, after));
        }
        let (local, after) = send_then_eof(relay, &truncated_frame, limit);
        let after = after.unwrap_or_else(|| panic!("truncated frame: still open after {limit:?}"));
        closed.push(("relay truncated frame".into(), local, after));

        for (what, local, after) in &closed {
            let line = a
                .process
                .wait_for_line(&format!("peer={local}"), Duration::from_secs(10))
                .unwrap_or_else(|| {
                    panic!("{what}: no log line names {local}:\n{}", a.process.output())
                });
            // Each line says what happened in the relay's words.
            let says = match what.as_str() {
                "relay oversized length" => "over the 65536-byte limit of a hello",
                "relay truncated hello" => "([cluster] relay_hello_timeout_ms)",
                // Garbage, and a frame message where the hello belongs.
                _ => "not a relay hello",
            };
            assert!(
                line.contains("relay: closed the connection from") && line.contains(says),
                "{what}: {line}"
            );
            eprintln!("{what}: closed after {after:?}; {line}");
        }
        // Garbage and an oversized prefix are refused at once; a hello
        // that never completes at the hello timeout.
        for (what, _, after) in &closed {
            let bound = if what.contains("hello") { 10 } else { 3 };
            assert!(
                *after < Duration::from_secs(bound),
                "{what}: closed after {after:?}"
            );
        }
        assert!(
            !a.process.output().contains("panicked"),
            "{}",
            a.process.output()
        );

        assert_decoded("rtmp at the origin", &at_a.join().expect("reader"), 450);
        assert_decoded("rtmp at the edge", &at_b.join().expect("reader"), 450);
        let after = stream_json(a.http, "live/cam").expect("still live at the origin");
        assert_eq!(
            relay_peer(&after),
            edge_before,
            "the edge's pull was not disturbed: {after}"
        );
    });
}
