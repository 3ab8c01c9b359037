//! RTMP viewers: the `tidewater` server against nginx-rtmp, side by side in
//! one run.
//!
//! For each viewer count N and each server: start the server pinned to CPU 0
//! (nginx-rtmp from Debian's `nginx` + `libnginx-mod-rtmp` with a generated
//! config, one process; or `target/release/tidewater` with its RTMP listener
//! set from the environment), feed it one stream with an ffmpeg
//! copy-publisher (`-re -stream_loop -1 -c copy -f flv`) of a pre-encoded
//! clip, and run the `rtmp-load` tool (N play sessions from one thread) pinned
//! to CPU 1 next to the publisher. The load tool ramps the viewers up, lets
//! them settle, then measures a window: the server's CPU (utime + stime of the
//! server process and its descendants, all threads), Mbit/s delivered to the
//! viewers, how many stayed within 1 s of live, and connect → first keyframe
//! byte (p50/p99). Every run gets a fresh server process and a fresh
//! publisher; each server and N is run `--reps` times (3), the servers
//! alternating which goes first, and the run with the median server CPU is
//! reported (with the range over all runs). The server's CPU is also checked
//! for other work during the window (its busy time in `/proc/stat` beyond the
//! server's own and its kernel threads'); a run shared with other work is
//! flagged in the notes.
//!
//! ```text
//! cargo xtask bench rtmp [OPTIONS]
//! cargo bench -p tidewater-bench --bench rtmp -- [OPTIONS]
//!
//!   --quick                  smoke run: 20 and 100 viewers, 4 s window
//!   --sizes 200,1000,2000    viewer counts (default 200,1000,2000)
//!   --only nginx|tidewater   one server only
//!   --topology veth          servers in a network namespace of their own (CPU 0), the
//!                            load tool in another (CPU 1), joined by a veth pair with RPS:
//!                            each side's kernel receive work on its own CPU (default
//!                            loopback); the publisher runs next to the server; needs root
//!   --window 15              seconds measured after ramp-up and settling
//!   --settle 6               seconds between the last viewer's connect and the window
//!                            (above the clip's 4 s GOP, so every nginx viewer has its
//!                            first keyframe before the window)
//!   --ramp-rate 400          viewers connected per second at most (the ramp lasts at
//!                            least one GOP, 4 s, so connects spread over the GOP)
//!   --read-interval-ms 100   the load tool's read tick after a viewer's first keyframe
//!   --reps 3                 runs of every server and N (servers alternating which goes
//!                            first); the run with the median server CPU is reported
//!   --tidewater-bin PATH     measure this binary (configured the same way, from the
//!                            environment) instead of building `tidewater-server`
//!   --nice -10               run servers, publisher and load tool at this niceness, and
//!                            this session's autogroup too (restored at the end; plain
//!                            nice does nothing against other sessions' builds, see
//!                            tidewater_bench::sched): start the bench under `setsid`
//!                            so that the autogroup is its own
//!   --server-cpus 0,1        pin every server to these CPUs (a taskset list; default
//!                            the one server CPU, 0); the load tool and publisher stay
//!                            on CPU 1, sharing it with the server when the list has it
//!   --both-cpus              "Both CPUs": also run tidewater free to use CPUs 0 and 1
//!                            (load tool and publisher still on CPU 1) in the same run,
//!                            and report its CPU per viewer against the one-core run's
//!   --auth                   the cost of authorization on the join path: tidewater
//!                            only, twice per N and rep: with no `[auth]`, and with
//!                            `[[auth.users]]` (see below)
//!   --auth-per-viewer        with --auth, a third configuration: one user per viewer
//!                            (every join verifies an argon2id hash)
//! ```
//!
//! With `--auth`, the `[[auth.users]]` configuration (a file given with
//! `--config`) has a publisher `pub` with a plain password and `publish`
//! permission on `live/*`, and a reader `viewer` with `read` permission and an
//! argon2id `password_hash` made once per run by `tidewater hash-password`
//! (whose time, pinned to the server's CPU, is reported as the cost of one
//! argon2id computation). The publisher sends `?user=pub&pass=…` and every
//! viewer `?user=viewer&pass=…` on its stream name. The authorizer remembers
//! a verified password for a minute, so with one shared `viewer` only the
//! first joins run argon2; `--auth-per-viewer` gives each viewer its own user
//! (`viewer0` … `viewerN`, the same hash), so every join runs it. The report
//! gives, per configuration, connect → first keyframe byte p50 / p99 / max,
//! the server's CPU-seconds over the joins (ramp and settling) and its CPU
//! in the window.
//!
//! The clip (30 s of testsrc2 + sine, 1280×720 at 30 fps, H.264 Main with
//! filler to a constant 1.9 Mbit/s, AAC 96 kbit/s, a keyframe every 4 s) is
//! generated once into `target/bench-media/`. Everything listens on and
//! connects to 127.0.0.1 only. Every process started here is stopped on the
//! way out, on errors too. The table is printed whatever happened, and the
//! run exits non-zero when a selected server is missing, does not start or
//! does not listen, or when any viewer failed or its stream ended before the
//! window did.

use std::collections::HashMap;
use std::env;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use tidewater_bench::harness::{
    Fields, Guard, TempDir, free_port, have, niced, nofile_limit, pinned, pinned_to, tail_of,
};
use tidewater_bench::topology::{Net, Topology};
use tidewater_bench::{group_thousands, machine, today_utc};

/// The load tool, built by cargo next to this bench.
const LOAD_TOOL: &str = env!("CARGO_BIN_EXE_rtmp-load");
/// Application and stream name every server is published and played on.
const APP: &str = "live";
const STREAM: &str = "bench";
/// The clip, generated once (its name records what it is).
const CLIP_NAME: &str = "rtmp-testsrc2-720p30-h264-1900k-aac96k-gop4s-30s.mp4";
/// The clip's keyframe interval. Viewers connect spread over at least this
/// long, so their connects fall evenly over the GOP: a server without a GOP
/// cache then shows its real first-keyframe distribution (uniform over the
/// GOP), not the phase at which a burst of connects happened to land.
const GOP_SECS: f64 = 4.0;
/// How long a server may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Open files wanted for the server and the load tool (capped at the hard limit).
const WANT_NOFILE: u64 = 65_536;
/// Load tool CPU (cores) above which the report warns that the client side
/// may be the bottleneck.
const LOAD_TOOL_BUSY: f64 = 0.8;
/// Other work on the server's CPU (cores) above which a run is flagged.
const OTHER_WORK: f64 = 0.1;
/// Debian's nginx-rtmp module, where packages put it.
const NGINX_MODULE_PATHS: &[&str] = &[
    "/usr/lib/nginx/modules/ngx_rtmp_module.so",
    "/usr/lib64/nginx/modules/ngx_rtmp_module.so",
    "/usr/share/nginx/modules/ngx_rtmp_module.so",
];

/// Credentials of the `--auth` runs (loopback only, throwaway).
const PUBLISHER_USER: &str = "pub";
const PUBLISHER_PASS: &str = "bench-publish-secret";
const VIEWER_USER: &str = "viewer";
const VIEWER_PASS: &str = "bench-viewer-secret";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Server {
    Tidewater,
    /// tidewater with `[[auth.users]]`: one `viewer` user shared by every viewer.
    TidewaterUsers,
    /// tidewater with `[[auth.users]]`: one user per viewer.
    TidewaterUserPerViewer,
    /// tidewater free to use both CPUs (`--both-cpus`).
    TidewaterBothCpus,
    Nginx,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Tidewater => "tidewater",
            Server::TidewaterUsers => "tidewater+users",
            Server::TidewaterUserPerViewer => "tidewater+user-per-viewer",
            Server::TidewaterBothCpus => "tidewater-2cpus",
            Server::Nginx => "nginx-rtmp",
        }
    }

    fn is_tidewater(self) -> bool {
        self != Server::Nginx
    }

    /// Whether this configuration has `[[auth.users]]`.
    fn has_users(self) -> bool {
        matches!(
            self,
            Server::TidewaterUsers | Server::TidewaterUserPerViewer
        )
    }
}

#[derive(Clone, Debug)]
struct Options {
    sizes: Vec<usize>,
    servers: Vec<Server>,
    window: f64,
    settle: f64,
    ramp_rate: f64,
    read_interval_ms: u64,
    /// Runs of every (server, N); the median is reported.
    reps: usize,
    /// A tidewater binary to measure instead of building `tidewater-server`.
    tidewater_bin: Option<PathBuf>,
    /// `--auth`: tidewater without and with `[[auth.users]]`.
    auth: bool,
    /// Loopback, or a veth pair between two namespaces.
    topology: Topology,
    /// `--nice`: niceness of every process started, and of this session's autogroup.
    nice: Option<i32>,
    /// `--server-cpus`: a taskset CPU list for every server instead of the one server CPU.
    server_cpus: Option<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Options {
            sizes: if quick {
                vec![20, 100]
            } else {
                vec![200, 1_000, 2_000]
            },
            servers: vec![Server::Tidewater, Server::Nginx],
            window: if quick { 4.0 } else { 15.0 },
            settle: 6.0,
            ramp_rate: 400.0,
            read_interval_ms: 100,
            reps: if quick { 1 } else { 3 },
            tidewater_bin: None,
            auth: false,
            topology: Topology::Loopback,
            nice: None,
            server_cpus: None,
        };
        let mut both_cpus = false;
        let mut per_viewer = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{arg} needs a value"))
            };
            let num = |s: String| -> Result<f64, String> {
                s.replace('_', "")
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .ok_or_else(|| format!("{arg}: not a positive number: {s}"))
            };
            match arg.as_str() {
                // `cargo bench` passes `--bench` to every harness-less bench.
                "--bench" | "--quick" => {}
                "--sizes" => {
                    o.sizes = value()?
                        .split(',')
                        .map(|s| {
                            s.trim()
                                .replace('_', "")
                                .parse::<usize>()
                                .ok()
                                .filter(|&n| n > 0)
                                .ok_or_else(|| format!("--sizes: not a viewer count: {s}"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                "--only" => {
                    o.servers = vec![match value()?.as_str() {
                        "tidewater" => Server::Tidewater,
                        "nginx" | "nginx-rtmp" => Server::Nginx,
                        other => return Err(format!("--only {other:?}: nginx or tidewater")),
                    }];
                }
                "--window" => o.window = num(value()?)?,
                "--settle" => o.settle = num(value()?)?,
                "--ramp-rate" => o.ramp_rate = num(value()?)?,
                "--read-interval-ms" => o.read_interval_ms = num(value()?)? as u64,
                "--tidewater-bin" => o.tidewater_bin = Some(PathBuf::from(value()?)),
                "--auth" => o.auth = true,
                "--topology" => o.topology = Topology::parse(&value()?)?,
                "--auth-per-viewer" => per_viewer = true,
                "--both-cpus" => both_cpus = true,
                "--server-cpus" => {
                    let list = value()?;
                    let ok = !list.is_empty()
                        && list
                            .split(',')
                            .all(|p| p.split('-').all(|c| c.parse::<usize>().is_ok()));
                    if !ok {
                        return Err(format!("--server-cpus {list:?}: a CPU list such as 0,1"));
                    }
                    o.server_cpus = Some(list);
                }
                "--nice" => {
                    o.nice = Some(
                        value()?
                            .parse::<i32>()
                            .ok()
                            .filter(|n| (-20..=19).contains(n))
                            .ok_or("--nice wants -20 to 19")?,
                    )
                }
                "--reps" => {
                    o.reps = value()?
                        .parse()
                        .ok()
                        .filter(|&r: &usize| r > 0)
                        .ok_or_else(|| "--reps wants a positive whole number".to_string())?
                }
                "-h" | "--help" => return Err(usage().into()),
                other => return Err(format!("unknown argument {other:?}\n{}", usage())),
            }
        }
        if o.sizes.is_empty() {
            return Err("--sizes needs at least one viewer count".into());
        }
        if per_viewer && !o.auth {
            return Err("--auth-per-viewer goes with --auth".into());
        }
        if both_cpus && (o.auth || o.server_cpus.is_some()) {
            return Err("--both-cpus goes without --auth and --server-cpus".into());
        }
        if both_cpus {
            // Next to tidewater on one CPU, in the same run.
            let at = o.servers.iter().position(|&s| s == Server::Tidewater);
            if let Some(at) = at {
                o.servers.insert(at + 1, Server::TidewaterBothCpus);
            } else {
                return Err("--both-cpus needs tidewater among the servers".into());
            }
        }
        if o.auth {
            // The anchor is tidewater without `[auth]`, in the same run.
            o.servers = vec![Server::Tidewater, Server::TidewaterUsers];
            if per_viewer {
                o.servers.push(Server::TidewaterUserPerViewer);
            }
        }
        Ok(o)
    }
}

fn usage() -> &'static str {
    "usage: rtmp [--quick] [--sizes 200,1000,2000] [--only nginx|tidewater] [--window 15] \
     [--settle 6] [--ramp-rate 400] [--read-interval-ms 100] [--reps 3] [--tidewater-bin PATH] \
     [--auth [--auth-per-viewer]] [--topology loopback|veth] [--nice -10] \
     [--server-cpus 0,1] [--both-cpus]"
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rtmp bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtmp bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where things are.
#[derive(Debug)]
struct Paths {
    workspace: PathBuf,
    target: PathBuf,
}

impl Paths {
    fn locate() -> Result<Self, String> {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .ok_or("the bench crate must live two levels below the workspace root")?
            .to_path_buf();
        // `target/<profile>/rtmp-load` → `target`.
        let target = Path::new(LOAD_TOOL)
            .ancestors()
            .nth(2)
            .ok_or("cannot tell the target directory from the load tool's path")?
            .to_path_buf();
        Ok(Self { workspace, target })
    }
}

/// How each run starts its processes.
#[derive(Debug)]
struct Setup {
    clip: PathBuf,
    nofile: u64,
    server_cpu: usize,
    /// The taskset CPU list servers run on (`--server-cpus`, else `server_cpu`).
    server_cpus: String,
    /// `--nice`.
    nice: Option<i32>,
    client_cpu: usize,
    nginx: Result<Nginx, String>,
    tidewater: Result<PathBuf, String>,
    /// Where servers listen and the load tool connects from.
    net: Net,
    /// Which CPU ran the kernel receive of client → server and server →
    /// client traffic, measured at start-up.
    receive_cpus: (usize, usize),
    /// `--auth`: the viewer's argon2id hash, and the fastest of the
    /// `tidewater hash-password` runs that made it (ms, process start included).
    viewer_hash: Option<Result<(String, f64), String>>,
}

#[derive(Debug, Clone)]
struct Nginx {
    binary: PathBuf,
    module: PathBuf,
}

fn run(opts: &Options) -> Result<(), String> {
    // `nice` alone only orders processes within their session's autogroup,
    // and the scheduler shares a busy CPU between autogroups: the session's
    // own niceness (inherited by every process started here, put back at
    // the end) is what wins CPU from builds in other sessions.
    let _autogroup = opts.nice.map(tidewater_bench::sched::AutogroupNice::set);
    let paths = Paths::locate()?;
    let wants_nginx = opts.servers.contains(&Server::Nginx);
    let wants_tidewater = opts.servers.iter().any(|s| s.is_tidewater());
    ensure_tools(wants_nginx)?;
    let clip = ensure_clip(&paths)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("rtmp bench: warning: one CPU only; server and load share it");
    }
    let (server_cpu, client_cpu) = (0, 1 % cpus);
    let server_cpus = opts
        .server_cpus
        .clone()
        .unwrap_or_else(|| server_cpu.to_string());
    let (net, receive_cpus) = Net::checked(opts.topology, server_cpu, client_cpu)?;
    let setup = Setup {
        clip,
        nofile: nofile_limit(WANT_NOFILE),
        server_cpu,
        server_cpus,
        nice: opts.nice,
        client_cpu,
        net,
        receive_cpus,
        nginx: if wants_nginx {
            find_nginx()
        } else {
            Err("not selected".into())
        },
        tidewater: if !wants_tidewater {
            Err("not selected".into())
        } else if let Some(bin) = &opts.tidewater_bin {
            if bin.is_file() {
                Ok(bin.clone())
            } else {
                Err(format!("no binary at {}", bin.display()))
            }
        } else {
            build_tidewater(&paths)
        },
        viewer_hash: None,
    };
    let setup = Setup {
        viewer_hash: match (&setup.tidewater, opts.auth) {
            (Ok(bin), true) => Some(hash_viewer_password(bin, setup.server_cpu)),
            (Err(e), true) => Some(Err(e.clone())),
            _ => None,
        },
        ..setup
    };
    if let Some(Ok((_, ms))) = &setup.viewer_hash {
        eprintln!("rtmp bench: argon2id hash of the viewer's password: {ms:.1} ms");
    }
    if let Err(e) = &setup.nginx
        && wants_nginx
    {
        eprintln!("rtmp bench: nginx-rtmp not available: {e}");
    }
    if let Err(e) = &setup.tidewater
        && wants_tidewater
    {
        eprintln!("rtmp bench: tidewater not available: {e}");
    }
    eprintln!(
        "rtmp bench: clip {}, open-file limit {}, server on CPU {}, load tool and publisher on CPU {}",
        setup.clip.display(),
        setup.nofile,
        setup.server_cpus,
        setup.client_cpu
    );
    eprintln!(
        "rtmp bench: topology {}: {}; kernel receive measured on CPU {} (client → server) and \
         CPU {} (server → client)",
        setup.net.topology().name(),
        setup.net.describe(),
        setup.receive_cpus.0,
        setup.receive_cpus.1
    );

    // Every (server, N) runs `reps` times, servers alternating which goes
    // first; the run with the median server CPU represents it.
    let mut runs: HashMap<(Server, usize), Vec<Fields>> = HashMap::new();
    let mut failures: HashMap<(Server, usize), String> = HashMap::new();
    let mut failed = 0;
    let mut unavailable: HashMap<Server, String> = HashMap::new();
    for (i, &n) in opts.sizes.iter().enumerate() {
        for rep in 0..opts.reps {
            let mut order = opts.servers.clone();
            if (i + rep) % 2 == 1 {
                order.reverse();
            }
            for server in order {
                if unavailable.contains_key(&server) {
                    continue;
                }
                eprintln!(
                    "\nrtmp bench: {} with {n} viewers (run {}/{})",
                    server.name(),
                    rep + 1,
                    opts.reps
                );
                match run_one(&setup, opts, server, n) {
                    Ok(fields) => runs.entry((server, n)).or_default().push(fields),
                    Err(RunError::Unavailable(why)) => {
                        eprintln!("rtmp bench: {} not available: {why}", server.name());
                        unavailable.insert(server, why);
                    }
                    Err(RunError::Failed(why)) => {
                        eprintln!(
                            "rtmp bench: {} with {n} viewers failed: {why}",
                            server.name()
                        );
                        failed += 1;
                        failures.entry((server, n)).or_insert(why);
                    }
                }
            }
        }
    }
    let mut results: HashMap<(Server, usize), Result<Fields, RunError>> = HashMap::new();
    for &server in &opts.servers {
        for &n in &opts.sizes {
            let result = if let Some(list) = runs.get_mut(&(server, n)) {
                Ok(representative(list))
            } else if let Some(why) = failures.get(&(server, n)) {
                Err(RunError::Failed(why.clone()))
            } else if let Some(why) = unavailable.get(&server) {
                Err(RunError::Unavailable(why.clone()))
            } else {
                continue;
            };
            results.insert((server, n), result);
        }
    }
    if opts.auth {
        report_auth(opts, &setup, &results);
    } else {
        report(opts, &setup, &results);
    }
    // A failed run, or a selected server that could not be measured (the
    // nginx-rtmp anchor or tidewater itself), fails the benchmark: a table
    // with a hole in it is not a result.
    if failed > 0 {
        return Err(format!("{failed} run(s) failed (see above)"));
    }
    if let Some(why) = unavailable.get(&Server::Nginx) {
        return Err(format!("the nginx-rtmp anchor is not available: {why}"));
    }
    if let Some((server, why)) = opts
        .servers
        .iter()
        .find_map(|s| unavailable.get(s).map(|why| (s, why)))
    {
        return Err(format!("{} is not available: {why}", server.name()));
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum RunError {
    /// The server cannot be measured at all (missing, no RTMP support).
    Unavailable(String),
    /// This run failed.
    Failed(String),
}

/// One server, one viewer count: fresh server, fresh publisher, one load run.
fn run_one(setup: &Setup, opts: &Options, server: Server, n: usize) -> Result<Fields, RunError> {
    let tmp = TempDir::new("rtmp", &format!("{}-{n}", server.name())).map_err(RunError::Failed)?;
    let port = free_port().map_err(RunError::Failed)?;
    let mut server_proc = match server {
        Server::Nginx => {
            let nginx = setup
                .nginx
                .as_ref()
                .map_err(|e| RunError::Unavailable(e.clone()))?;
            start_nginx(nginx, setup, &tmp.0, port).map_err(RunError::Unavailable)?
        }
        tidewater => {
            let bin = setup
                .tidewater
                .as_ref()
                .map_err(|e| RunError::Unavailable(e.clone()))?;
            let config = match tidewater.has_users() {
                true => Some(write_auth_config(setup, &tmp.0, n, tidewater)?),
                false => None,
            };
            // A binary that is there but does not start is a failure, not
            // a missing server.
            // `--both-cpus`: the server CPU and the load tool's.
            let both = format!("{},{}", setup.server_cpu, setup.client_cpu);
            let cpus = match tidewater {
                Server::TidewaterBothCpus => both.as_str(),
                _ => setup.server_cpus.as_str(),
            };
            start_tidewater(bin, setup, &tmp.0, port, config.as_deref(), cpus)
                .map_err(RunError::Failed)?
        }
    };
    setup
        .net
        .wait_listening(port, LISTEN_TIMEOUT, || server_proc.alive())
        .map_err(|e| {
            RunError::Failed(format!("{}: {e}{}", server.name(), server_proc.log_tail()))
        })?;
    // The publisher runs next to the server (from 127.0.0.1, where
    // tidewater takes an anonymous publish); viewers at the server's address.
    let url = format!("rtmp://127.0.0.1:{port}/{APP}/{STREAM}");
    let view = format!("rtmp://{}:{port}/{APP}/{STREAM}", setup.net.server_ip());
    let (publish_url, play_url) = match server {
        Server::TidewaterUsers | Server::TidewaterUserPerViewer => {
            let viewer = match server {
                Server::TidewaterUserPerViewer => format!("{VIEWER_USER}{{i}}"),
                _ => VIEWER_USER.to_string(),
            };
            (
                format!("{url}?user={PUBLISHER_USER}&pass={PUBLISHER_PASS}"),
                format!("{view}?user={viewer}&pass={VIEWER_PASS}"),
            )
        }
        _ => (url, view),
    };
    let mut publisher = start_publisher(setup, &tmp.0, &publish_url).map_err(RunError::Failed)?;

    let load_log = tmp.0.join("rtmp-load.out");
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields = run_load(setup, opts, &play_url, n, server_proc.pid(), &load_log).map(|mut f| {
        // The 1-minute load average as the load tool started: other work.
        let one = loadavg.split_whitespace().next().unwrap_or("?");
        f.0.insert("loadavg".into(), one.to_string());
        f
    });
    // Both must have lasted the whole run for the figures to count.
    let publisher_alive = publisher.alive();
    let server_alive = server_proc.alive();
    drop(publisher);
    drop(server_proc);
    let fields = fields.map_err(RunError::Failed)?;
    // Every viewer must have played through the window: one that failed to
    // connect or play, or whose stream ended early, fails the run.
    let (failed, ended) = (fields.num("failed"), fields.num("ended"));
    if failed != Some(0.0) || ended != Some(0.0) {
        return Err(RunError::Failed(format!(
            "viewers failed: {}, ended early: {} (of {n}){}",
            fields.text("failed"),
            fields.text("ended"),
            tail_of(&load_log)
        )));
    }
    if !server_alive {
        return Err(RunError::Failed(format!(
            "{} exited during the run{}",
            server.name(),
            tail_of(&tmp.0.join("server.log"))
        )));
    }
    if !publisher_alive {
        return Err(RunError::Failed(format!(
            "the publisher exited during the run{}",
            tail_of(&tmp.0.join("publisher.log"))
        )));
    }
    Ok(fields)
}

/// The run with the median server CPU, with the spread of all runs added
/// (`runs`, `cpu_min`, `cpu_max`).
fn representative(list: &mut [Fields]) -> Fields {
    list.sort_by(|a, b| {
        let cpu = |f: &Fields| f.num("server_cpu").unwrap_or(f64::NAN);
        cpu(a).total_cmp(&cpu(b))
    });
    let cpus: Vec<f64> = list.iter().filter_map(|f| f.num("server_cpu")).collect();
    let mut chosen = list[list.len() / 2].clone();
    let spread = |v: Option<&f64>| v.map_or("na".to_string(), |c| format!("{c:.3}"));
    chosen.0.insert("runs".into(), list.len().to_string());
    chosen.0.insert("cpu_min".into(), spread(cpus.first()));
    chosen.0.insert("cpu_max".into(), spread(cpus.last()));
    chosen
}

fn run_load(
    setup: &Setup,
    opts: &Options,
    url: &str,
    n: usize,
    server_pid: u32,
    log: &Path,
) -> Result<Fields, String> {
    let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let ramp_rate = opts.ramp_rate.min(n as f64 / GOP_SECS);
    let mut cmd = setup.net.client(niced(
        setup.nice,
        pinned(setup.client_cpu, Some(setup.nofile), LOAD_TOOL),
    ));
    cmd.args(["--url", url])
        .args(["--viewers", &n.to_string()])
        .args(["--ramp-rate", &ramp_rate.to_string()])
        .args(["--settle", &opts.settle.to_string()])
        .args(["--window", &opts.window.to_string()])
        .args(["--read-interval-ms", &opts.read_interval_ms.to_string()])
        .args(["--server-pid", &server_pid.to_string()])
        .args(["--wait-live", "20"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::inherit());
    let mut child = Guard::spawn("rtmp-load", &mut cmd)?;
    let budget =
        Duration::from_secs_f64(20.0 + n as f64 / ramp_rate + opts.settle + opts.window + 60.0);
    let status = child.wait_timeout(budget)?;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let Some(status) = status else {
        return Err(format!("the load tool did not finish within {budget:?}"));
    };
    if !status.success() {
        return Err(format!("the load tool failed ({status})"));
    }
    text.lines()
        .find_map(Fields::parse)
        .ok_or_else(|| "the load tool printed no RESULT line".to_string())
}

// ---------------------------------------------------------------------------
// servers and publisher

fn start_nginx(nginx: &Nginx, setup: &Setup, dir: &Path, port: u16) -> Result<Guard, String> {
    let conf = dir.join("nginx.conf");
    // One process (no master): it is the worker, so its CPU is the server's.
    // Logs at `warn`, like the tidewater run.
    let text = format!(
        "load_module {module};\n\
         daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         worker_rlimit_nofile {nofile};\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log warn;\n\
         events {{ worker_connections {conns}; }}\n\
         rtmp {{\n\
         \x20 server {{\n\
         \x20   listen {listen}:{port};\n\
         \x20   application {APP} {{ live on; }}\n\
         \x20 }}\n\
         }}\n",
        module = nginx.module.display(),
        listen = setup.net.listen_ip(),
        nofile = setup.nofile,
        conns = (setup.nofile / 2).clamp(1024, 32_768),
        dir = dir.display(),
    );
    std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
    let log = File::create(dir.join("server.log")).map_err(|e| format!("server log: {e}"))?;
    let mut cmd = setup.net.server(niced(
        setup.nice,
        pinned_to(&setup.server_cpus, None, &nginx.binary),
    ));
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    Guard::spawn("nginx", &mut cmd).map(|g| g.with_log(dir.join("server.log")))
}

/// The `--auth` configuration file: the publisher, and the viewer (or one
/// user per viewer, `viewer0` … `viewerN`, N for the load tool's probe).
fn write_auth_config(
    setup: &Setup,
    dir: &Path,
    n: usize,
    server: Server,
) -> Result<PathBuf, RunError> {
    let hash = match &setup.viewer_hash {
        Some(Ok((hash, _))) => hash,
        Some(Err(e)) => return Err(RunError::Unavailable(format!("no viewer hash: {e}"))),
        None => return Err(RunError::Failed("no viewer hash made".into())),
    };
    let mut text = format!(
        "[[auth.users]]\n\
         user = \"{PUBLISHER_USER}\"\n\
         password = \"{PUBLISHER_PASS}\"\n\
         permissions = [{{ action = \"publish\", path = \"{APP}/*\" }}]\n"
    );
    let viewers: Vec<String> = match server {
        Server::TidewaterUserPerViewer => (0..=n).map(|i| format!("{VIEWER_USER}{i}")).collect(),
        _ => vec![VIEWER_USER.to_string()],
    };
    for user in viewers {
        text.push_str(&format!(
            "\n[[auth.users]]\n\
             user = \"{user}\"\n\
             password_hash = '{hash}'\n\
             permissions = [{{ action = \"read\", path = \"{APP}/*\" }}]\n"
        ));
    }
    let path = dir.join("tidewater.toml");
    std::fs::write(&path, text)
        .map_err(|e| RunError::Failed(format!("{}: {e}", path.display())))?;
    Ok(path)
}

/// The viewer's argon2id hash by `tidewater hash-password`, run three times
/// pinned to the server's CPU: the hash and the fastest run's time (ms,
/// process start included): what one argon2id verification costs the server.
fn hash_viewer_password(bin: &Path, cpu: usize) -> Result<(String, f64), String> {
    let mut best = f64::INFINITY;
    let mut hash = String::new();
    for _ in 0..3 {
        let started = Instant::now();
        let out = pinned(cpu, None, bin)
            .args(["hash-password", "--password", VIEWER_PASS])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("tidewater hash-password: {e}"))?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if !out.status.success() {
            return Err(format!(
                "tidewater hash-password failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !text.starts_with("$argon2id$") || text.contains('\'') {
            return Err(format!("tidewater hash-password printed {text:?}"));
        }
        best = best.min(ms);
        if hash.is_empty() {
            hash = text;
        }
    }
    Ok((hash, best))
}

fn start_tidewater(
    bin: &Path,
    setup: &Setup,
    dir: &Path,
    port: u16,
    config: Option<&Path>,
    cpus: &str,
) -> Result<Guard, String> {
    let log = File::create(dir.join("server.log")).map_err(|e| format!("server log: {e}"))?;
    let mut cmd = setup
        .net
        .server(niced(setup.nice, pinned_to(cpus, Some(setup.nofile), bin)));
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.env(
        "TIDEWATER_RTMP__LISTEN",
        format!("{}:{port}", setup.net.listen_ip()),
    )
    .env("TIDEWATER_HTTP__LISTEN", "127.0.0.1:0")
    .env("TIDEWATER_SRT__LISTEN", "127.0.0.1:0")
    .env("TIDEWATER_RTSP__LISTEN", "127.0.0.1:0")
    .env("TIDEWATER_RTSP__UDP_RTP_PORT", "0")
    .env("TIDEWATER_RTSP__UDP_RTCP_PORT", "0")
    .env("TIDEWATER_WEBRTC__UDP_LISTEN", "127.0.0.1:0")
    .env("TIDEWATER_LOG__LEVEL", "warn")
    // Every viewer comes from 127.0.0.1: the per-address limit (2 000 by
    // default for loopback) would refuse the largest runs' last viewers.
    .env("TIDEWATER_RTMP__MAX_CONNECTIONS_PER_LOOPBACK_IP", "100000")
    // Across the veth pair every viewer comes from the client side's one
    // address: the same reason.
    .env("TIDEWATER_RTMP__MAX_CONNECTIONS_PER_IP", "100000")
    .current_dir(dir)
    .stdin(Stdio::null())
    .stdout(log.try_clone().map_err(|e| e.to_string())?)
    .stderr(log);
    Guard::spawn("tidewater", &mut cmd).map(|g| g.with_log(dir.join("server.log")))
}

fn start_publisher(setup: &Setup, dir: &Path, url: &str) -> Result<Guard, String> {
    let log = File::create(dir.join("publisher.log")).map_err(|e| format!("publisher log: {e}"))?;
    let mut cmd = setup
        .net
        .server(niced(setup.nice, pinned(setup.client_cpu, None, "ffmpeg")));
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
        .args(["-re", "-stream_loop", "-1", "-i"])
        .arg(&setup.clip)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    Guard::spawn("ffmpeg publisher", &mut cmd)
}

// ---------------------------------------------------------------------------
// tools, clip, binaries

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Installs missing Debian packages when root with apt-get; else names them.
fn ensure_tools(nginx: bool) -> Result<(), String> {
    let mut missing: Vec<&str> = Vec::new();
    if !have("ffmpeg") {
        missing.push("ffmpeg");
    }
    if !have("taskset") || !have("prlimit") {
        missing.push("util-linux");
    }
    if nginx {
        if !have("nginx") && !Path::new("/usr/sbin/nginx").is_file() {
            missing.push("nginx");
        }
        if !NGINX_MODULE_PATHS.iter().any(|p| Path::new(p).is_file()) {
            missing.push("libnginx-mod-rtmp");
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() || !have("apt-get") {
        // ffmpeg and util-linux are needed by every run; nginx only by its column.
        if missing.iter().any(|p| *p == "ffmpeg" || *p == "util-linux") {
            return Err(format!(
                "missing tools; install these Debian packages: {list}"
            ));
        }
        return Ok(());
    }
    eprintln!("rtmp bench: installing {list}");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(missing.iter().copied());
    // Try the package lists as they are first; refresh them only if needed.
    let installed = apt(&install) || (apt(&["update"]) && apt(&install));
    if !installed {
        return Err(format!("apt-get could not install: {list}"));
    }
    Ok(())
}

fn find_nginx() -> Result<Nginx, String> {
    let binary = if Path::new("/usr/sbin/nginx").is_file() {
        PathBuf::from("/usr/sbin/nginx")
    } else if have("nginx") {
        PathBuf::from("nginx")
    } else {
        return Err("no nginx binary (Debian package `nginx`)".into());
    };
    let module = NGINX_MODULE_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("no ngx_rtmp_module.so (Debian package `libnginx-mod-rtmp`)")?;
    Ok(Nginx { binary, module })
}

/// Generates the clip once; later runs reuse it.
fn ensure_clip(paths: &Paths) -> Result<PathBuf, String> {
    let dir = paths.target.join("bench-media");
    let clip = dir.join(CLIP_NAME);
    if clip.is_file() {
        return Ok(clip);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let partial = dir.join(format!("{CLIP_NAME}.partial.mp4"));
    eprintln!("rtmp bench: generating {}", clip.display());
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "30"])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ])
        .args(["-profile:v", "main"])
        .args(["-b:v", "1900k", "-minrate", "1900k", "-maxrate", "1900k"])
        .args(["-bufsize", "1900k"])
        .args([
            "-x264-params",
            "nal-hrd=cbr:keyint=120:min-keyint=120:scenecut=0",
        ])
        .args(["-c:a", "aac", "-b:a", "96k", "-ac", "2"])
        .args(["-movflags", "+faststart"])
        .arg(&partial)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("ffmpeg: {e}"))?;
    if !status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(format!("ffmpeg could not generate the clip ({status})"));
    }
    std::fs::rename(&partial, &clip).map_err(|e| format!("{}: {e}", clip.display()))?;
    Ok(clip)
}

/// `cargo build --release -p tidewater-server` into this target directory.
fn build_tidewater(paths: &Paths) -> Result<PathBuf, String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    eprintln!("rtmp bench: building the tidewater server (release)");
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "tidewater-server"])
        .env("CARGO_TARGET_DIR", &paths.target)
        .current_dir(&paths.workspace)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`cargo build --release -p tidewater-server` failed ({status})"
        ));
    }
    let bin = paths.target.join("release").join("tidewater");
    if !bin.is_file() {
        return Err(format!("no binary at {}", bin.display()));
    }
    Ok(bin)
}

// ---------------------------------------------------------------------------
// process and directory guards

// ---------------------------------------------------------------------------
// report

/// Busy time on the server's CPU beyond the server's own CPU time (which
/// includes the softirq work run in its context) and that CPU's kernel
/// threads (`ksoftirqd` taking over the server's softirqs when there are
/// many, TCP timers), in cores: other processes. More than a little means
/// the run was disturbed.
fn other_work(f: &Fields, core: usize) -> Option<f64> {
    let kthreads = f.nth("cpu_kthreads", core).unwrap_or(0.0);
    match (f.nth("cpu_busy", core), f.num("server_cpu")) {
        (Some(busy), Some(own)) => Some((busy - own - kthreads).max(0.0)),
        _ => None,
    }
}

/// The `--auth` report: per N, tidewater without and with `[[auth.users]]`.
fn report_auth(
    opts: &Options,
    setup: &Setup,
    results: &HashMap<(Server, usize), Result<Fields, RunError>>,
) {
    let core = setup.server_cpu;
    let ms = |v: Option<f64>| v.map_or("?".into(), |v| group_thousands(v.round() as u64));
    let cores = |v: Option<f64>| v.map_or("?".into(), |c| format!("{c:.3}"));
    println!();
    println!(
        "RTMP join path with and without authorization, median of {} run(s) by server CPU, \
         {} s window after ramp-up (≤ {} viewers/s, ≥ {GOP_SECS} s) and {} s settling; {}; {}",
        opts.reps,
        opts.window,
        opts.ramp_rate,
        opts.settle,
        machine(),
        today_utc()
    );
    match &setup.viewer_hash {
        Some(Ok((_, ms))) => println!(
            "argon2id (tidewater hash-password, the server's parameters) on CPU {core}: \
             {ms:.1} ms per hash, process start included (fastest of 3)"
        ),
        Some(Err(e)) => println!("no viewer hash: {e}"),
        None => {}
    }
    println!();
    println!(
        "| viewers N | configuration | first keyframe byte p50 / p99 / max (ms) \
         | viewers with a keyframe | within 1 s of live | server CPU over the joins (CPU-s) \
         | server CPU in the window (cores) | other work on CPU {core} | load average at start \
         | failed / ended early |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &opts.sizes {
        for &s in &opts.servers {
            let config = match s {
                Server::Tidewater => "no [auth]".to_string(),
                Server::TidewaterUsers => format!("[[auth.users]], one `{VIEWER_USER}`"),
                Server::TidewaterUserPerViewer => "[[auth.users]], a user per viewer".to_string(),
                Server::Nginx | Server::TidewaterBothCpus => s.name().to_string(),
            };
            match results.get(&(s, n)) {
                Some(Ok(f)) => println!(
                    "| {} | {config} | {} / {} / {} | {} / {} | {} | {} (over {} s) | {} ({}–{}, {} runs) | {} | {} | {} / {} |",
                    group_thousands(n as u64),
                    ms(f.num("kf_p50_ms")),
                    ms(f.num("kf_p99_ms")),
                    ms(f.num("kf_max_ms")),
                    f.text("keyframe"),
                    f.text("viewers"),
                    f.text("within"),
                    f.text("ramp_server_cpu_s"),
                    f.text("ramp_settle_s"),
                    cores(f.num("server_cpu")),
                    f.text("cpu_min"),
                    f.text("cpu_max"),
                    f.text("runs"),
                    cores(other_work(f, core)),
                    f.text("loadavg"),
                    f.text("failed"),
                    f.text("ended"),
                ),
                Some(Err(RunError::Unavailable(why))) => {
                    println!("| {n} | {config} | not available: {why} |||||||")
                }
                Some(Err(RunError::Failed(why))) => {
                    println!("| {n} | {config} | failed: {why} |||||||")
                }
                None => {}
            }
        }
    }
    let mut notes = Vec::new();
    for &n in &opts.sizes {
        for &s in &opts.servers {
            if let Some(Ok(f)) = results.get(&(s, n)) {
                if let Some(o) = other_work(f, core).filter(|&o| o > OTHER_WORK) {
                    notes.push(format!(
                        "{} (N = {n}): CPU {core} also ran {o:.3} cores of other work during the \
                         window; the figures are from a shared machine",
                        s.name()
                    ));
                }
                if f.num("keyframe") < f.num("viewers") {
                    notes.push(format!(
                        "{} (N = {n}): only {} of {} viewers had a keyframe by the end; the \
                         percentiles are over those",
                        s.name(),
                        f.text("keyframe"),
                        f.text("viewers")
                    ));
                }
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

fn report(
    opts: &Options,
    setup: &Setup,
    results: &HashMap<(Server, usize), Result<Fields, RunError>>,
) {
    let (tw, ng) = (Server::Tidewater, Server::Nginx);
    let get = |s: Server, n: usize| results.get(&(s, n));
    let cell = |s: Server, n: usize, f: &dyn Fn(&Fields) -> String| match get(s, n) {
        Some(Ok(fields)) => f(fields),
        Some(Err(RunError::Unavailable(_))) => "not available".to_string(),
        Some(Err(RunError::Failed(_))) => "failed".to_string(),
        None => "—".to_string(),
    };
    let cpu = |f: &Fields| {
        f.num("server_cpu")
            .map_or("?".into(), |c| format!("{c:.3}"))
    };
    let mbps = |f: &Fields| {
        f.num("mbps")
            .map_or("?".into(), |m| group_thousands(m.round() as u64))
    };
    let within = |f: &Fields| format!("{} / {}", f.text("within"), f.text("viewers"));
    let ms = |v: Option<f64>| v.map_or("?".into(), |v| group_thousands(v.round() as u64));
    let keyframe = |f: &Fields| format!("{} / {}", ms(f.num("kf_p50_ms")), ms(f.num("kf_p99_ms")));

    println!();
    println!(
        "RTMP viewers, median of {} run(s), {} s window after ramp-up (≤ {} viewers/s, ≥ {GOP_SECS} s) \
         and {} s settling; {}; {}",
        opts.reps,
        opts.window,
        opts.ramp_rate,
        opts.settle,
        machine(),
        today_utc()
    );
    println!(
        "server pinned to CPU {}, load tool and ffmpeg publisher to CPU {}; clip {}{}",
        setup.server_cpus,
        setup.client_cpu,
        setup
            .clip
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        match setup.nice {
            Some(n) => format!("; niceness {n} (processes and this session's autogroup)"),
            None => String::new(),
        }
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
        "| viewers N | server CPU (cores): {tw} | {ng} | ratio ({tw} / {ng}) \
         | delivered Mbit/s: {tw} | {ng} | within 1 s of live: {tw} | {ng} \
         | first keyframe byte p50 / p99 (ms): {tw} | {ng} |",
        tw = tw.name(),
        ng = ng.name()
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &opts.sizes {
        let ratio = match (get(tw, n), get(ng, n)) {
            (Some(Ok(a)), Some(Ok(b))) => match (a.num("server_cpu"), b.num("server_cpu")) {
                (Some(a), Some(b)) if b > 0.0 => format!("**{:.2}×**", a / b),
                _ => "?".into(),
            },
            _ => "—".into(),
        };
        println!(
            "| {} | {} | {} | {ratio} | {} | {} | {} | {} | {} | {} |",
            group_thousands(n as u64),
            cell(tw, n, &cpu),
            cell(ng, n, &cpu),
            cell(tw, n, &mbps),
            cell(ng, n, &mbps),
            cell(tw, n, &within),
            cell(ng, n, &within),
            cell(tw, n, &keyframe),
            cell(ng, n, &keyframe),
        );
    }
    let core = setup.server_cpu;
    let softirq = move |f: &Fields| f.nth("cpu_softirq", core);
    let other = move |f: &Fields| other_work(f, core);
    let cores = |v: Option<f64>| v.map_or("?".into(), |c| format!("{c:.3}"));
    // The whole machine: both CPUs' busy time (server, load tool, publisher,
    // kernel). Load tool and publisher do the same work for both servers, so
    // the difference is the servers', wherever the kernel booked it (a server
    // without TCP_NODELAY has part of its sending done in the reader's
    // acknowledgement processing, on the other CPU).
    let machine = |f: &Fields| -> Option<f64> {
        let list = f.0.get("cpu_busy")?;
        list.split(',')
            .map(|c| c.parse::<f64>().ok())
            .sum::<Option<f64>>()
    };
    println!();
    println!(
        "| viewers N | whole machine busy, both CPUs (cores): {tw} | {ng} | difference ({tw} − {ng}) |",
        tw = tw.name(),
        ng = ng.name()
    );
    println!("|---:|---:|---:|---:|");
    for &n in &opts.sizes {
        let diff = match (get(tw, n), get(ng, n)) {
            (Some(Ok(a)), Some(Ok(b))) => match (machine(a), machine(b)) {
                (Some(a), Some(b)) => format!("{:+.3}", a - b),
                _ => "?".into(),
            },
            _ => "—".into(),
        };
        println!(
            "| {} | {} | {} | {diff} |",
            group_thousands(n as u64),
            cell(tw, n, &|f| cores(machine(f))),
            cell(ng, n, &|f| cores(machine(f))),
        );
    }
    println!();
    println!(
        "| viewers N | server | server CPU (min–max of runs) | softirq on CPU {core} \
         | CPU {core} kernel threads | other work on CPU {core} \
         | load tool CPU (cores) | failed / ended early | lag p50 / p99 (ms) | first keyframe max (ms) \
         | load average at start |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &opts.sizes {
        for &s in &opts.servers {
            if let Some(Ok(f)) = get(s, n) {
                println!(
                    "| {} | {} | {} ({}–{}, {} runs) | {} | {} | {} | {} | {} / {} | {} / {} | {} | {} |",
                    group_thousands(n as u64),
                    s.name(),
                    cores(f.num("server_cpu")),
                    f.text("cpu_min"),
                    f.text("cpu_max"),
                    f.text("runs"),
                    cores(softirq(f)),
                    cores(f.nth("cpu_kthreads", core)),
                    cores(other(f)),
                    f.text("load_cpu"),
                    f.text("failed"),
                    f.text("ended"),
                    ms(f.num("lag_p50_ms")),
                    ms(f.num("lag_p99_ms")),
                    ms(f.num("kf_max_ms")),
                    f.text("loadavg"),
                );
            }
        }
    }
    let mut notes: Vec<String> = Vec::new();
    for &n in &opts.sizes {
        for &s in &opts.servers {
            if let Some(Ok(f)) = get(s, n) {
                if let Some(o) = other(f).filter(|&o| o > OTHER_WORK) {
                    notes.push(format!(
                        "{} (N = {n}): CPU {core} also ran {o:.3} cores of other work during the \
                         reported run's window; the server competed for its CPU (measure on a \
                         quiet machine)",
                        s.name()
                    ));
                }
                if f.num("load_cpu").is_some_and(|c| c > LOAD_TOOL_BUSY) {
                    notes.push(format!(
                        "{} (N = {n}): the load tool used {} cores; its CPU, shared with the \
                         publisher, may have limited delivery and lag figures",
                        s.name(),
                        f.text("load_cpu")
                    ));
                }
            }
        }
    }
    for &s in &opts.servers {
        let mut seen = Vec::new();
        for &n in &opts.sizes {
            let (what, why) = match get(s, n) {
                Some(Err(RunError::Unavailable(why))) => ("not available", why),
                Some(Err(RunError::Failed(why))) => ("failed", why),
                _ => continue,
            };
            if !seen.contains(why) {
                seen.push(why.clone());
                notes.push(format!("{} (N = {n}): {what}: {why}", s.name()));
            }
        }
    }
    report_both_cpus(opts, setup, results);
    if !notes.is_empty() {
        println!();
        for note in notes {
            println!("- {note}");
        }
    }
}

/// `--both-cpus`: tidewater's CPU per viewer free to use both CPUs against
/// pinned to one, from the same run (issue: "Both CPUs", within 10 %).
fn report_both_cpus(
    opts: &Options,
    setup: &Setup,
    results: &HashMap<(Server, usize), Result<Fields, RunError>>,
) {
    if !opts.servers.contains(&Server::TidewaterBothCpus) {
        return;
    }
    let per_viewer = |s: Server, n: usize| match results.get(&(s, n)) {
        Some(Ok(f)) => f.num("server_cpu").map(|c| c * 1e6 / n as f64),
        _ => None,
    };
    let us = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.0}"));
    println!();
    println!(
        "| viewers N | tidewater CPU per viewer (µs/s): on CPU {} | on CPUs {},{} (load tool \
         and publisher share CPU {}) | ratio (two / one) |",
        setup.server_cpu, setup.server_cpu, setup.client_cpu, setup.client_cpu
    );
    println!("|---:|---:|---:|---:|");
    for &n in &opts.sizes {
        let one = per_viewer(Server::Tidewater, n);
        let two = per_viewer(Server::TidewaterBothCpus, n);
        let ratio = match (one, two) {
            (Some(a), Some(b)) if a > 0.0 => format!("**{:.2}×**", b / a),
            _ => "—".into(),
        };
        println!(
            "| {} | {} | {} | {ratio} |",
            group_thousands(n as u64),
            us(one),
            us(two)
        );
    }
}
