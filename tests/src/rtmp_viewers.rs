//! Light in-process RTMP viewers that time every picture they receive, for
//! tests that need tens of players (ffmpeg processes would cost the 2-core
//! machine more than the server under test) or a player that misbehaves on
//! purpose (stops reading, reads a trickle).
//!
//! Each viewer speaks RTMP with the load tool's sans-IO play client
//! ([`tidewater_bench::rtmp::PlaySession`]) on a runtime of their own (one
//! worker thread), and records, per video picture, its arrival time and its
//! *offset*: arrival minus the message timestamp. The publisher sends in
//! real time (`ffmpeg -re`), so a viewer's smallest offset is where it was
//! closest to live and its lag at a picture is that picture's offset minus
//! the smallest (the load tool's definition, `crates/bench/src/bin/rtmp-load.rs`):
//! independent of how the server numbers a viewer's timestamps.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tidewater_bench::rtmp::{Media, Notice, PlaySession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Bytes one read takes at most (eager viewers).
const READ_BUF: usize = 64 * 1024;
/// Most pictures one viewer remembers (ten minutes at 25 fps): bounded.
const MAX_PICTURES: usize = 15_000;

/// How a viewer reads once it has its first picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Everything, as it comes.
    Eager,
    /// Nothing more, ever: its receive window fills and the server's writes
    /// to it block. The socket stays open.
    Stalled,
    /// At most `bytes` every `every`: slower than the stream.
    Trickle {
        /// Bytes per read.
        bytes: usize,
        /// Time between reads.
        every: Duration,
    },
}

/// What one viewer saw.
#[derive(Debug, Default, Clone)]
pub struct Record {
    /// Its local address (the `peer` the server's API shows for it).
    pub local: Option<SocketAddr>,
    /// Per video picture (not sequence headers): arrival in seconds since
    /// the pool started, and offset (arrival − timestamp) in seconds.
    pub pictures: Vec<(f64, f64)>,
    /// A keyframe with a picture arrived.
    pub keyframe: bool,
    /// When each keyframe arrived (pool seconds).
    pub keyframes: Vec<f64>,
    /// The server ended the stream (Stream EOF or an unpublish status).
    pub ended: bool,
    /// The connection closed (by the server: EOF or reset), seconds since the pool started.
    pub closed_at: Option<f64>,
    /// Why it failed, if it did (a protocol error, not a close).
    pub error: Option<String>,
}

impl Record {
    /// Lag in seconds over the pictures that arrived in `[from, to)` (pool
    /// seconds): the largest offset there minus the smallest offset this
    /// viewer ever had; `None` without pictures in the window.
    pub fn lag_in(&self, from: f64, to: f64) -> Option<f64> {
        let anchor = self
            .pictures
            .iter()
            .map(|&(_, o)| o)
            .min_by(f64::total_cmp)?;
        self.pictures
            .iter()
            .filter(|&&(t, _)| t >= from && t < to)
            .map(|&(_, o)| o - anchor)
            .max_by(f64::total_cmp)
    }

    /// Lag in seconds of each picture that arrived in `[from, to)` (its
    /// offset minus the smallest offset this viewer ever had).
    pub fn lags_in(&self, from: f64, to: f64) -> Vec<f64> {
        let Some(anchor) = self.pictures.iter().map(|&(_, o)| o).min_by(f64::total_cmp) else {
            return Vec::new();
        };
        self.pictures
            .iter()
            .filter(|&&(t, _)| t >= from && t < to)
            .map(|&(_, o)| o - anchor)
            .collect()
    }

    /// Pictures that arrived in `[from, to)`.
    pub fn pictures_in(&self, from: f64, to: f64) -> usize {
        self.pictures
            .iter()
            .filter(|&&(t, _)| t >= from && t < to)
            .count()
    }
}

/// Viewers of RTMP streams, reading on a runtime of their own; their
/// sockets close when the pool drops.
pub struct ViewerPool {
    runtime: tokio::runtime::Runtime,
    base: Instant,
    records: Vec<Arc<Mutex<Record>>>,
}

impl std::fmt::Debug for ViewerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerPool")
            .field("viewers", &self.records.len())
            .finish()
    }
}

impl Default for ViewerPool {
    fn default() -> Self {
        Self::new()
    }
}

impl ViewerPool {
    /// No viewers yet; the clock of their records starts now.
    pub fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the viewers' runtime: {e}"));
        ViewerPool {
            runtime,
            base: Instant::now(),
            records: Vec::new(),
        }
    }

    /// Seconds since the pool started (the clock of [`Record`]).
    pub fn now(&self) -> f64 {
        self.base.elapsed().as_secs_f64()
    }

    /// Starts a viewer of `rtmp://{addr}/{app}/{stream}` reading as `reading`;
    /// its index. A viewer that is not eager gets a small receive buffer
    /// (4 KiB asked), so its window fills after little data.
    pub fn add(&mut self, addr: SocketAddr, app: &str, stream: &str, reading: Reading) -> usize {
        let record = Arc::new(Mutex::new(Record::default()));
        self.records.push(record.clone());
        let session = PlaySession::new(&addr.to_string(), app, stream);
        let base = self.base;
        self.runtime.spawn(async move {
            let result = play(addr, session, reading, base, &record).await;
            let mut r = record.lock().unwrap_or_else(PoisonError::into_inner);
            r.closed_at = Some(base.elapsed().as_secs_f64());
            if let Err(e) = result {
                r.error = Some(e);
            }
        });
        self.records.len() - 1
    }

    /// A copy of viewer `index`'s record.
    pub fn record(&self, index: usize) -> Record {
        self.records[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Copies of the records of the viewers `indices`.
    pub fn records(&self, indices: impl IntoIterator<Item = usize>) -> Vec<Record> {
        indices.into_iter().map(|i| self.record(i)).collect()
    }

    /// Waits until every viewer in `indices` has its first keyframe; panics
    /// naming the ones that did not after `timeout`.
    pub fn wait_keyframes(&self, indices: std::ops::Range<usize>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let missing: Vec<(usize, Option<String>)> = indices
                .clone()
                .map(|i| (i, self.record(i)))
                .filter(|(_, r)| !r.keyframe)
                .map(|(i, r)| (i, r.error))
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} viewers without a keyframe after {timeout:?} (index, error): {:?}",
                missing.len(),
                missing.iter().take(5).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Nearest-rank percentile `q` (0 to 1) of `values`; `NaN` for none.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn connect(addr: SocketAddr, reading: Reading) -> Result<TcpStream, String> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {e}"))?;
    if reading != Reading::Eager {
        // Before connecting, so the window announced in the handshake is small.
        socket
            .set_recv_buffer_size(4096)
            .map_err(|e| format!("SO_RCVBUF: {e}"))?;
    }
    let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    Ok(stream)
}

async fn play(
    addr: SocketAddr,
    mut session: PlaySession,
    reading: Reading,
    base: Instant,
    record: &Mutex<Record>,
) -> Result<(), String> {
    let mut stream = connect(addr, reading).await?;
    record.lock().unwrap_or_else(PoisonError::into_inner).local = stream.local_addr().ok();
    let mut out = Vec::new();
    session.start(&mut out);
    let mut buf = vec![0u8; READ_BUF];
    let mut playing = false;
    loop {
        if !out.is_empty() {
            stream
                .write_all(&out)
                .await
                .map_err(|e| format!("write: {e}"))?;
            out.clear();
        }
        let limit = match reading {
            Reading::Eager => READ_BUF,
            Reading::Stalled if playing => {
                // Hold the connection open and never read again.
                std::future::pending::<()>().await;
                return Ok(());
            }
            Reading::Trickle { bytes, every } if playing => {
                tokio::time::sleep(every).await;
                bytes.clamp(1, READ_BUF)
            }
            _ => READ_BUF,
        };
        let n = match stream.read(&mut buf[..limit]).await {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            // A reset is how a server closes a viewer it gave up on.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(format!("read: {e}")),
        };
        let arrival = base.elapsed().as_secs_f64();
        let mut media = Vec::new();
        let mut ended = false;
        session
            .feed(
                &buf[..n],
                &mut out,
                &mut |m: Media| media.push(m),
                &mut |notice| {
                    if notice == Notice::StreamEnd {
                        ended = true;
                    }
                },
            )
            .map_err(|e| format!("rtmp: {e}"))?;
        let mut r = record.lock().unwrap_or_else(PoisonError::into_inner);
        r.ended |= ended;
        for m in media.iter().filter(|m| m.video && !m.config) {
            if m.keyframe {
                r.keyframe = true;
                if r.keyframes.len() < MAX_PICTURES {
                    r.keyframes.push(arrival);
                }
            }
            if r.keyframe && r.pictures.len() < MAX_PICTURES {
                r.pictures
                    .push((arrival, arrival - f64::from(m.timestamp) / 1000.0));
            }
        }
        playing = r.keyframe;
    }
}
