//! RTSP readers: the `tidewater` server against gst-rtsp-server, side by side
//! in one run.
//!
//! For each reader count N, transport and server: start the server pinned
//! to CPU 0, feed it one stream from an ffmpeg copy-publisher of a
//! pre-encoded clip (`-re -stream_loop -1 -c copy`), and run the `rtsp-load`
//! tool (N RTSP readers from one thread) pinned to CPU 1 next to the
//! publisher.
//!
//! - **tidewater**: `target/release/tidewater` with its RTSP listener (and
//!   UDP ports) from the environment; ffmpeg publishes over RTSP/TCP
//!   (`-f rtsp`), so the latency figure is RTSP in → RTSP out.
//! - **gst-rtsp-server** 1.22 (Debian): `tests/helpers/rtsp_camera.py
//!   --ts-port`, one shared media factory (`set_shared(True)`) whose
//!   pipeline reads MPEG-TS that ffmpeg sends over UDP (`-f mpegts`),
//!   parses it and payloads it once for every reader, as tidewater builds
//!   its RTP once per stream. Its per-stream work (demuxing, parsing,
//!   payloading a 2 Mbit/s stream) is in its CPU as tidewater's
//!   depacketizing and packetizing is in tidewater's.
//!
//! The load tool ramps the readers up (over at least one GOP), lets them
//! settle, then measures a window: the server's CPU (utime + stime of the
//! server process and its descendants, all threads), Mbit/s delivered, how
//! many readers stayed within 1 s of live, connect → first keyframe byte,
//! and (tidewater) added latency from its RTCP sender reports. Every run gets
//! a fresh server and a fresh publisher; each (server, transport, N) runs
//! `--reps` times, servers alternating which goes first, and the run with the
//! median server CPU is reported with the range.
//!
//! ```text
//! cargo xtask bench rtsp [OPTIONS]
//! cargo bench -p tidewater-bench --bench rtsp -- [OPTIONS]
//!
//!   --quick                  smoke run: 5 readers over TCP and UDP, 3 s window,
//!                            one rep (about a minute with the clip made); a
//!                            reader that fails, ends or gets no keyframe fails it
//!   --sizes 200,500,1000     reader counts over TCP
//!   --udp-sizes 200          reader counts over UDP (empty: none)
//!   --gst-max 500            gst-rtsp-server runs only up to this N
//!   --only tidewater|gst     one server only
//!   --window 15 --settle 6 --ramp-rate 400 --read-interval-ms 100
//!   --reps 3
//!   --tidewater-bin PATH     measure this binary instead of building one
//!   --topology veth          server and anchor in a namespace of their own (CPU 0),
//!                            load tool in another (CPU 1), joined by a veth pair with
//!                            RPS: each side's kernel receive work on its own CPU, as
//!                            on a network (default loopback: the sender's CPU runs
//!                            the receiver's receive path); needs root
//!   --nice -10               run servers, publisher and load tool at this niceness
//!                            (negative needs root): on a machine shared with builds,
//!                            a server starved of its CPU falls behind and its CPU
//!                            figure means nothing; both servers get the same.
//!                            Also this session's autogroup niceness (restored at
//!                            the end, see tidewater_bench::sched), without which
//!                            plain nice does nothing against other sessions' builds;
//!                            start the bench under `setsid` to give it a session
//!                            (and autogroup) of its own
//! ```
//!
//! The clip (30 s of testsrc2 + sine, 1280×720 at 30 fps, H.264 Main without
//! B-frames, filler to a constant 1.9 Mbit/s, AAC 96 kbit/s, a keyframe every
//! 4 s) is generated once into `target/bench-media/`. No B-frames: a
//! publisher's RTP time is then its send time, which the latency figure
//! relies on. Everything listens on and connects to 127.0.0.1 only, or
//! (`--topology veth`, see [`tidewater_bench::topology`]) to the private
//! addresses of the two namespaces the bench makes and removes; every
//! process started here is stopped on the way out, on errors too. With
//! veth the ffmpeg publisher runs in the server's namespace on the load
//! tool's CPU: an encoder next to the server, whose 2 Mbit/s ingest costs
//! either server the same (gst-rtsp-server's MPEG-TS input listens on
//! 127.0.0.1 only).

use std::collections::HashMap;
use std::env;
use std::fs::File;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use tidewater_bench::harness::{
    Fields, Guard, TempDir, build_tidewater, ensure_clip, free_port, have, nofile_limit, pinned,
    tail_of,
};
use tidewater_bench::topology::{Net, Topology};
use tidewater_bench::{group_thousands, machine, today_utc};

/// `nice -n N` in front of a pinned command (`nice` execs it, so the pid
/// stays the program's), or the command as it is.
fn niced(nice: Option<i32>, cmd: std::process::Command) -> std::process::Command {
    let Some(n) = nice else { return cmd };
    let mut out = std::process::Command::new("nice");
    out.args(["-n", &n.to_string()])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    out
}

/// Runs gst-rtsp-server's script (`argv[2]`, its arguments after it) with
/// the RTSP server's address `argv[1]` instead of the 127.0.0.1 it sets,
/// so that readers across the veth pair reach it; on loopback `argv[1]`
/// is 127.0.0.1 and nothing changes.
const GST_ADDRESS: &str = "import gi, runpy, sys
gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0')
from gi.repository import GstRtspServer
set_address = GstRtspServer.RTSPServer.set_address
address = sys.argv[1]
GstRtspServer.RTSPServer.set_address = lambda server, _: set_address(server, address)
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name='__main__')";

/// The load tool, built by cargo next to this bench.
const LOAD_TOOL: &str = env!("CARGO_BIN_EXE_rtsp-load");
/// The path every server serves.
const PATH: &str = "live/bench";
const CLIP_NAME: &str = "rtsp-testsrc2-720p30-h264-1900k-nobf-aac96k-gop4s-30s.mp4";
const GOP_SECS: f64 = 4.0;
/// How long a server may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Open files wanted for the server and the load tool (capped at the hard limit).
const WANT_NOFILE: u64 = 65_536;
/// Other work on the server's CPU (cores) above which a run is flagged.
const OTHER_WORK: f64 = 0.1;
/// Load tool CPU (cores) above which the report warns.
const LOAD_TOOL_BUSY: f64 = 0.8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Server {
    Tidewater,
    Gst,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Tidewater => "tidewater",
            Server::Gst => "gst-rtsp-server",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

#[derive(Clone, Debug)]
struct Options {
    sizes: Vec<usize>,
    udp_sizes: Vec<usize>,
    gst_max: usize,
    servers: Vec<Server>,
    window: f64,
    settle: f64,
    ramp_rate: f64,
    read_interval_ms: u64,
    reps: usize,
    tidewater_bin: Option<PathBuf>,
    /// Niceness of every process started (`None`: inherited).
    nice: Option<i32>,
    /// Loopback, or a veth pair between two namespaces.
    topology: Topology,
    /// `--quick`: a reader that failed, ended or never got a keyframe fails
    /// the run (with 5 readers on any machine, that is a broken server).
    strict: bool,
}

fn counts(arg: &str, s: &str) -> Result<Vec<usize>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .replace('_', "")
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{arg}: not a reader count: {p}"))
        })
        .collect()
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Options {
            sizes: if quick {
                vec![5]
            } else {
                vec![200, 500, 1_000]
            },
            udp_sizes: if quick { vec![5] } else { vec![200] },
            gst_max: 500,
            servers: vec![Server::Tidewater, Server::Gst],
            window: if quick { 3.0 } else { 15.0 },
            settle: if quick { 5.0 } else { 6.0 },
            ramp_rate: 400.0,
            read_interval_ms: 100,
            reps: if quick { 1 } else { 3 },
            strict: quick,
            tidewater_bin: None,
            nice: None,
            topology: Topology::Loopback,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{arg} needs a value"))
            };
            let num = |s: String| -> Result<f64, String> {
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .ok_or_else(|| format!("{arg}: not a positive number: {s}"))
            };
            match arg.as_str() {
                "--bench" | "--quick" => {}
                "--sizes" => o.sizes = counts(arg, &value()?)?,
                "--udp-sizes" => o.udp_sizes = counts(arg, &value()?)?,
                "--gst-max" => o.gst_max = num(value()?)? as usize,
                "--only" => {
                    o.servers = vec![match value()?.as_str() {
                        "tidewater" => Server::Tidewater,
                        "gst" | "gst-rtsp-server" => Server::Gst,
                        other => return Err(format!("--only {other:?}: tidewater or gst")),
                    }]
                }
                "--window" => o.window = num(value()?)?,
                "--settle" => o.settle = num(value()?)?,
                "--ramp-rate" => o.ramp_rate = num(value()?)?,
                "--read-interval-ms" => o.read_interval_ms = num(value()?)? as u64,
                "--reps" => o.reps = num(value()?)? as usize,
                "--tidewater-bin" => o.tidewater_bin = Some(PathBuf::from(value()?)),
                "--topology" => o.topology = Topology::parse(&value()?)?,
                "--nice" => {
                    o.nice = Some(
                        value()?
                            .parse()
                            .ok()
                            .filter(|n: &i32| (-20..=19).contains(n))
                            .ok_or("--nice wants -20 to 19")?,
                    )
                }
                "-h" | "--help" => return Err(usage().into()),
                other => return Err(format!("unknown argument {other:?}\n{}", usage())),
            }
        }
        if o.sizes.is_empty() && o.udp_sizes.is_empty() {
            return Err("--sizes and --udp-sizes are both empty".into());
        }
        Ok(o)
    }
}

fn usage() -> &'static str {
    "usage: rtsp [--quick] [--sizes 200,500,1000] [--udp-sizes 200] [--gst-max 500] \
     [--only tidewater|gst] [--window 15] [--settle 6] [--ramp-rate 400] \
     [--read-interval-ms 100] [--reps 3] [--tidewater-bin PATH] [--topology loopback|veth] \
     [--nice -10]"
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rtsp bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtsp bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How each run starts its processes.
struct Setup {
    workspace: PathBuf,
    clip: PathBuf,
    nofile: u64,
    server_cpu: usize,
    client_cpu: usize,
    tidewater: Result<PathBuf, String>,
    /// Where servers listen and the load tool connects from.
    net: Net,
    /// Which CPU ran the kernel receive of client → server and server →
    /// client traffic, measured at start-up.
    receive_cpus: (usize, usize),
}

type Key = (Server, Transport, usize);

fn run(opts: &Options) -> Result<(), String> {
    // `nice` alone only orders processes within their session's autogroup,
    // and the scheduler shares a busy CPU between autogroups: the session's
    // own niceness (inherited by every process started here, put back at
    // the end) is what wins CPU from builds in other sessions.
    let _autogroup = opts.nice.map(tidewater_bench::sched::AutogroupNice::set);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .ok_or("the bench crate must live two levels below the workspace root")?
        .to_path_buf();
    let target = Path::new(LOAD_TOOL)
        .ancestors()
        .nth(2)
        .ok_or("cannot tell the target directory from the load tool's path")?
        .to_path_buf();
    for tool in ["ffmpeg", "taskset", "prlimit"] {
        if !have(tool) {
            return Err(format!("{tool} is not installed"));
        }
    }
    let clip = ensure_clip(
        &target.join("bench-media"),
        CLIP_NAME,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "30",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-profile:v",
            "main",
            "-bf",
            "0",
            "-b:v",
            "1900k",
            "-minrate",
            "1900k",
            "-maxrate",
            "1900k",
            "-bufsize",
            "1900k",
            "-x264-params",
            "nal-hrd=cbr:keyint=120:min-keyint=120:scenecut=0",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-ac",
            "2",
            "-movflags",
            "+faststart",
        ],
    )?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (server_cpu, client_cpu) = (0, 1 % cpus);
    // Checked on the kernel, not assumed: a topology that did not put each
    // side's receive work where it claims would make every figure lie.
    let (net, receive_cpus) = Net::checked(opts.topology, server_cpu, client_cpu)?;
    let setup = Setup {
        workspace: workspace.clone(),
        clip,
        nofile: nofile_limit(WANT_NOFILE),
        server_cpu,
        client_cpu,
        net,
        receive_cpus,
        tidewater: if !opts.servers.contains(&Server::Tidewater) {
            Err("not selected".into())
        } else if let Some(bin) = &opts.tidewater_bin {
            // Absolute: the server runs in a scratch directory.
            bin.canonicalize()
                .map_err(|e| format!("no binary at {}: {e}", bin.display()))
        } else {
            build_tidewater(&workspace, &target)
        },
    };
    eprintln!(
        "rtsp bench: clip {}, open-file limit {}, server on CPU {}, load tool and publisher on CPU {}; {}",
        setup.clip.display(),
        setup.nofile,
        setup.server_cpu,
        setup.client_cpu,
        setup.net.describe()
    );
    let mut plan: Vec<(Transport, usize)> = Vec::new();
    plan.extend(opts.sizes.iter().map(|&n| (Transport::Tcp, n)));
    plan.extend(opts.udp_sizes.iter().map(|&n| (Transport::Udp, n)));
    let mut runs: HashMap<Key, Vec<Fields>> = HashMap::new();
    let mut failures: HashMap<Key, String> = HashMap::new();
    for (i, &(transport, n)) in plan.iter().enumerate() {
        for rep in 0..opts.reps {
            let mut order: Vec<Server> = opts
                .servers
                .iter()
                .copied()
                .filter(|&s| s != Server::Gst || n <= opts.gst_max)
                .collect();
            if (i + rep) % 2 == 1 {
                order.reverse();
            }
            for server in order {
                eprintln!(
                    "\nrtsp bench: {} with {n} {} readers (run {}/{})",
                    server.name(),
                    transport.name(),
                    rep + 1,
                    opts.reps
                );
                match run_one(&setup, opts, server, transport, n) {
                    Ok(f) => runs.entry((server, transport, n)).or_default().push(f),
                    Err(why) => {
                        eprintln!("rtsp bench: {} failed: {why}", server.name());
                        failures.entry((server, transport, n)).or_insert(why);
                    }
                }
            }
        }
    }
    let results: HashMap<Key, Fields> = runs
        .into_iter()
        .map(|(k, mut list)| (k, representative(&mut list)))
        .collect();
    report(opts, &setup, &plan, &results, &failures);
    if !failures.is_empty() {
        return Err(format!(
            "{} configuration(s) failed (see above)",
            failures.len()
        ));
    }
    Ok(())
}

/// The run with the median server CPU, with the range of all runs.
fn representative(list: &mut [Fields]) -> Fields {
    let cpu = |f: &Fields| f.num("server_cpu").unwrap_or(f64::NAN);
    list.sort_by(|a, b| cpu(a).total_cmp(&cpu(b)));
    let mut chosen = list[list.len() / 2].clone();
    chosen.0.insert("runs".into(), list.len().to_string());
    chosen
        .0
        .insert("cpu_min".into(), format!("{:.3}", cpu(&list[0])));
    chosen.0.insert(
        "cpu_max".into(),
        format!("{:.3}", cpu(&list[list.len() - 1])),
    );
    chosen
}

/// A free even UDP port whose next port is free too.
fn free_udp_pair() -> Result<u16, String> {
    for _ in 0..64 {
        let a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("udp: {e}"))?;
        let port = a.local_addr().map_err(|e| e.to_string())?.port();
        if port % 2 == 0 && UdpSocket::bind((Ipv4Addr::LOCALHOST, port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free pair of UDP ports".into())
}

/// One server, transport and N: fresh server, fresh publisher, one load run.
fn run_one(
    setup: &Setup,
    opts: &Options,
    server: Server,
    transport: Transport,
    n: usize,
) -> Result<Fields, String> {
    let tmp = TempDir::new(
        "rtsp",
        &format!("{}-{}-{n}", server.name(), transport.name()),
    )?;
    let port = free_port()?;
    let log = |name: &str| -> Result<(File, PathBuf), String> {
        let path = tmp.0.join(name);
        File::create(&path)
            .map(|f| (f, path.clone()))
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let (server_log, server_log_path) = log("server.log")?;
    let (pub_log, pub_log_path) = log("publisher.log")?;
    let ip = setup.net.server_ip();
    let url = format!("rtsp://{ip}:{port}/{PATH}");
    // Each command is put on its side first: `ip netns exec` keeps the
    // environment and the directory, but a command's stdio is set after.
    let mut publisher = setup
        .net
        .server(niced(opts.nice, pinned(setup.client_cpu, None, "ffmpeg")));
    publisher
        .args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
        .args(["-re", "-stream_loop", "-1", "-i"])
        .arg(&setup.clip)
        .args(["-c", "copy"])
        .stdin(Stdio::null())
        .stdout(pub_log.try_clone().map_err(|e| e.to_string())?)
        .stderr(pub_log);
    let mut server_proc = match server {
        Server::Tidewater => {
            let bin = setup.tidewater.as_ref().map_err(Clone::clone)?;
            let rtp = free_udp_pair()?;
            let mut cmd = setup.net.server(niced(
                opts.nice,
                pinned(setup.server_cpu, Some(setup.nofile), bin),
            ));
            cmd.env(
                "TIDEWATER_RTSP__LISTEN",
                format!("{}:{port}", setup.net.listen_ip()),
            )
            .env("TIDEWATER_RTSP__UDP_RTP_PORT", rtp.to_string())
            .env("TIDEWATER_RTSP__UDP_RTCP_PORT", (rtp + 1).to_string())
            .env("TIDEWATER_RTMP__LISTEN", "127.0.0.1:0")
            .env("TIDEWATER_HTTP__LISTEN", "127.0.0.1:0")
            .env("TIDEWATER_SRT__LISTEN", "127.0.0.1:0")
            .env("TIDEWATER_WEBRTC__UDP_LISTEN", "127.0.0.1:0")
            .env("TIDEWATER_LOG__LEVEL", "warn")
            .current_dir(&tmp.0)
            .stdin(Stdio::null())
            .stdout(server_log.try_clone().map_err(|e| e.to_string())?)
            .stderr(server_log);
            // From 127.0.0.1, where tidewater takes an anonymous publish.
            publisher
                .args(["-f", "rtsp", "-rtsp_transport", "tcp"])
                .arg(format!("rtsp://127.0.0.1:{port}/{PATH}"));
            Guard::spawn("tidewater", &mut cmd)?.with_log(server_log_path)
        }
        Server::Gst => {
            let ts = free_udp_pair()?;
            let script = setup.workspace.join("tests/helpers/rtsp_camera.py");
            let mut cmd = setup.net.server(niced(
                opts.nice,
                pinned(setup.server_cpu, Some(setup.nofile), "/usr/bin/python3"),
            ));
            cmd.args(["-c", GST_ADDRESS, &ip.to_string()])
                .arg(&script)
                .args(["--port", &port.to_string()])
                .args(["--path", &format!("/{PATH}")])
                .args(["--ts-port", &ts.to_string()])
                .args(["--backlog", "1024"])
                .current_dir(&tmp.0)
                .stdin(Stdio::null())
                .stdout(server_log.try_clone().map_err(|e| e.to_string())?)
                .stderr(server_log);
            publisher.args([
                "-f",
                "mpegts",
                &format!("udp://127.0.0.1:{ts}?pkt_size=1316"),
            ]);
            Guard::spawn("gst-rtsp-server", &mut cmd)?.with_log(server_log_path)
        }
    };
    setup
        .net
        .wait_listening(port, LISTEN_TIMEOUT, || server_proc.alive())
        .map_err(|e| format!("{}: {e}{}", server.name(), server_proc.log_tail()))?;
    let mut publisher = Guard::spawn("ffmpeg publisher", &mut publisher)?;

    let load_log_path = tmp.0.join("rtsp-load.out");
    let load_log = File::create(&load_log_path).map_err(|e| e.to_string())?;
    let ramp_rate = opts.ramp_rate.min(n as f64 / GOP_SECS);
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut cmd = setup.net.client(niced(
        opts.nice,
        pinned(setup.client_cpu, Some(setup.nofile), LOAD_TOOL),
    ));
    cmd.args(["--url", &url])
        .args(["--readers", &n.to_string()])
        .args(["--transport", transport.name()])
        .args(["--ramp-rate", &ramp_rate.to_string()])
        .args(["--settle", &opts.settle.to_string()])
        .args(["--window", &opts.window.to_string()])
        .args(["--read-interval-ms", &opts.read_interval_ms.to_string()])
        .args(["--server-pid", &server_proc.pid().to_string()])
        .args(["--wait-live", "40"])
        .stdin(Stdio::null())
        .stdout(load_log)
        .stderr(Stdio::inherit());
    let mut load = Guard::spawn("rtsp-load", &mut cmd)?;
    let budget =
        Duration::from_secs_f64(40.0 + n as f64 / ramp_rate + opts.settle + opts.window + 60.0);
    let status = load.wait_timeout(budget)?;
    let publisher_alive = publisher.alive();
    let server_alive = server_proc.alive();
    drop(publisher);
    drop(server_proc);
    let text = std::fs::read_to_string(&load_log_path).unwrap_or_default();
    match status {
        None => return Err(format!("the load tool did not finish within {budget:?}")),
        Some(s) if !s.success() => return Err(format!("the load tool failed ({s})")),
        Some(_) => {}
    }
    if !server_alive {
        return Err(format!(
            "{} exited during the run{}",
            server.name(),
            tail_of(&tmp.0.join("server.log"))
        ));
    }
    if !publisher_alive {
        return Err(format!(
            "the publisher exited during the run{}",
            tail_of(&pub_log_path)
        ));
    }
    let mut fields = text
        .lines()
        .find_map(Fields::parse)
        .ok_or("the load tool printed no RESULT line")?;
    let one = loadavg.split_whitespace().next().unwrap_or("?");
    fields.0.insert("loadavg".into(), one.to_string());
    if opts.strict {
        let count = |key: &str| fields.num(key).unwrap_or(f64::NAN);
        let (failed, ended, keyframe) = (count("failed"), count("ended"), count("keyframe"));
        if failed != 0.0 || ended != 0.0 || keyframe != n as f64 {
            return Err(format!(
                "of {n} readers {failed} failed, {ended} ended early, {keyframe} got a keyframe"
            ));
        }
    }
    Ok(fields)
}

/// Milliseconds with a tenth and a sign (a frame can arrive before the
/// time the publish's clock anchor predicts when the publisher ran late at
/// its start).
fn signed(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| format!("{v:.1}"))
}

/// Busy time on the server's CPU beyond the server's own and that CPU's
/// kernel threads', in cores: other processes.
fn other_work(f: &Fields, core: usize) -> Option<f64> {
    let kthreads = f.nth("cpu_kthreads", core).unwrap_or(0.0);
    match (f.nth("cpu_busy", core), f.num("server_cpu")) {
        (Some(busy), Some(own)) => Some((busy - own - kthreads).max(0.0)),
        _ => None,
    }
}

fn report(
    opts: &Options,
    setup: &Setup,
    plan: &[(Transport, usize)],
    results: &HashMap<Key, Fields>,
    failures: &HashMap<Key, String>,
) {
    let (tw, gst) = (Server::Tidewater, Server::Gst);
    let cell =
        |key: Key, f: &dyn Fn(&Fields) -> String| match (results.get(&key), failures.get(&key)) {
            (Some(fields), _) => f(fields),
            (None, Some(_)) => "failed".into(),
            (None, None) => "—".into(),
        };
    let cores = |f: &Fields| {
        f.num("server_cpu")
            .map_or("?".into(), |c| format!("{c:.3}"))
    };
    let per_reader = |n: usize| {
        move |f: &Fields| {
            f.num("server_cpu")
                .map_or("?".into(), |c| format!("{:.2}", c * 1e3 / n as f64))
        }
    };
    let within = |f: &Fields| format!("{} / {}", f.text("within"), f.text("readers"));
    let ms = |v: Option<f64>| v.map_or("?".into(), |v| group_thousands(v.round() as u64));
    let pair = move |a: &'static str, b: &'static str| {
        move |f: &Fields| format!("{} / {}", ms(f.num(a)), ms(f.num(b)))
    };
    println!();
    println!(
        "RTSP readers, median of {} run(s), {} s window after ramp-up (≤ {} readers/s, ≥ {GOP_SECS} s) \
         and {} s settling; {}; {}",
        opts.reps,
        opts.window,
        opts.ramp_rate,
        opts.settle,
        machine(),
        today_utc()
    );
    println!(
        "server pinned to CPU {}, load tool and ffmpeg publisher to CPU {}; niceness {}; clip {CLIP_NAME}",
        setup.server_cpu,
        setup.client_cpu,
        opts.nice.map_or("inherited".to_string(), |n| n.to_string())
    );
    println!(
        "topology {}: {}; kernel receive measured on CPU {} (client → server) and CPU {} \
         (server → client)",
        setup.net.topology().name(),
        setup.net.describe(),
        setup.receive_cpus.0,
        setup.receive_cpus.1
    );
    println!();
    println!(
        "| transport | readers N | server CPU (cores): tidewater | gst-rtsp-server | ratio \
         | CPU per reader (millicores): tidewater | gst-rtsp-server | within 1 s of live: tidewater \
         | gst-rtsp-server | first keyframe byte p50 / p99 (ms): tidewater | gst-rtsp-server \
         | added latency p50 / p99 (ms): tidewater |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &(t, n) in plan {
        let ratio = match (results.get(&(tw, t, n)), results.get(&(gst, t, n))) {
            (Some(a), Some(b)) => match (a.num("server_cpu"), b.num("server_cpu")) {
                (Some(a), Some(b)) if b > 0.0 => format!("**{:.2}×**", a / b),
                _ => "?".into(),
            },
            _ => "—".into(),
        };
        println!(
            "| {} | {} | {} | {} | {ratio} | {} | {} | {} | {} | {} | {} | {} |",
            t.name(),
            group_thousands(n as u64),
            cell((tw, t, n), &cores),
            cell((gst, t, n), &cores),
            cell((tw, t, n), &per_reader(n)),
            cell((gst, t, n), &per_reader(n)),
            cell((tw, t, n), &within),
            cell((gst, t, n), &within),
            cell((tw, t, n), &pair("kf_p50_ms", "kf_p99_ms")),
            cell((gst, t, n), &pair("kf_p50_ms", "kf_p99_ms")),
            cell((tw, t, n), &|f: &Fields| format!(
                "{} / {}",
                signed(f.num("lat_p50_ms")),
                signed(f.num("lat_p99_ms"))
            )),
        );
    }
    let core = setup.server_cpu;
    let opt = |v: Option<f64>| v.map_or("?".into(), |c| format!("{c:.3}"));
    println!();
    println!(
        "| transport | readers N | server | server CPU (min–max of runs) | other work on CPU {core} \
         | load tool CPU | Mbit/s delivered | failed / ended early | lag p50 / p99 (ms) \
         | load average at start |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut notes = Vec::new();
    for &(t, n) in plan {
        for &s in &opts.servers {
            let Some(f) = results.get(&(s, t, n)) else {
                if let Some(why) = failures.get(&(s, t, n)) {
                    notes.push(format!(
                        "{} ({} N = {n}): failed: {why}",
                        s.name(),
                        t.name()
                    ));
                }
                continue;
            };
            println!(
                "| {} | {} | {} | {} ({}–{}, {} runs) | {} | {} | {} | {} / {} | {} / {} | {} |",
                t.name(),
                group_thousands(n as u64),
                s.name(),
                cores(f),
                f.text("cpu_min"),
                f.text("cpu_max"),
                f.text("runs"),
                opt(other_work(f, core)),
                f.text("load_cpu"),
                f.text("mbps"),
                f.text("failed"),
                f.text("ended"),
                ms(f.num("lag_p50_ms")),
                ms(f.num("lag_p99_ms")),
                f.text("loadavg"),
            );
            if let Some(o) = other_work(f, core).filter(|&o| o > OTHER_WORK) {
                notes.push(format!(
                    "{} ({} N = {n}): CPU {core} also ran {o:.3} cores of other work during the \
                     window: the server competed for its CPU",
                    s.name(),
                    t.name()
                ));
            }
            if f.num("load_cpu").is_some_and(|c| c > LOAD_TOOL_BUSY) {
                notes.push(format!(
                    "{} ({} N = {n}): the load tool used {} cores; delivery and lag figures may \
                     be the tool's limit",
                    s.name(),
                    t.name(),
                    f.text("load_cpu")
                ));
            }
        }
    }
    if !notes.is_empty() {
        println!();
        for note in notes {
            println!("- {note}");
        }
    }
}
