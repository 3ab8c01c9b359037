//! The bench's RTMP publisher: plays an FLV clip in real time into the
//! server and stamps when each video frame was written, so that viewers
//! can tell how long a frame took from its publish to their socket.
//!
//! The server turns an RTMP timestamp of `t` ms into the RTP time `90 t`
//! (the clip starts at 0 and the publisher never rebases), so a viewer
//! finds the publish instant of an RTP packet from its timestamp alone
//! ([`Stamps::sent`]); the header is sent in the clear in SRTP, so even a
//! viewer that does not decrypt the payload can read it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tidewater_bench::rtmp::{Amf, amf_write, write_message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The chunk size announced and used for media.
const CHUNK_SIZE: usize = 4096;
/// The message stream `createStream` gives a connection's first stream.
const STREAM_ID: u32 = 1;
/// Publish instants kept: one slot per millisecond of stream time.
const SLOTS: usize = 30 * 60 * 1000;

/// One FLV tag of the clip.
struct Tag {
    kind: u8,
    time: u32,
    body: Vec<u8>,
}

/// Publish instants by stream time (ms), written by the publisher and read
/// by every viewer without a lock.
pub struct Stamps {
    base: Instant,
    /// Nanoseconds after `base` + 1 (0: not published).
    slots: Vec<AtomicU64>,
}

impl Stamps {
    pub fn new() -> Stamps {
        Stamps {
            base: Instant::now(),
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn set(&self, ms: u32, at: Instant) {
        if let Some(slot) = self.slots.get(ms as usize) {
            let ns = at.saturating_duration_since(self.base).as_nanos() as u64;
            slot.store(ns + 1, Ordering::Relaxed);
        }
    }

    /// When the video frame of RTP time `rtp` (90 kHz) was written.
    pub fn sent(&self, rtp: u32) -> Option<Instant> {
        if !rtp.is_multiple_of(90) {
            return None;
        }
        let ns = self.slots.get((rtp / 90) as usize)?.load(Ordering::Relaxed);
        (ns > 0).then(|| self.base + Duration::from_nanos(ns - 1))
    }
}

/// The clip's tags (audio, video; the script tag is left out).
fn read_flv(path: &Path) -> Result<Vec<Tag>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut at = 13; // header (9) + the first previous-tag-size (4)
    let mut tags = Vec::new();
    while let Some(head) = data.get(at..at + 11) {
        let size = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
        let time = u32::from_be_bytes([head[7], head[4], head[5], head[6]]);
        let body = data
            .get(at + 11..at + 11 + size)
            .ok_or("a truncated FLV tag")?;
        if matches!(head[0], 8 | 9) {
            tags.push(Tag {
                kind: head[0],
                time,
                body: body.to_vec(),
            });
        }
        at += 11 + size + 4;
    }
    Ok(tags)
}

fn command(out: &mut Vec<u8>, csid: u8, stream: u32, values: &[Amf]) {
    let mut body = Vec::new();
    for v in values {
        amf_write(&mut body, v);
    }
    write_message(out, csid, 0, 20, stream, &body, CHUNK_SIZE);
}

/// Connects, publishes `live/bench` and plays `clip` in a loop in real time
/// (each loop's times follow the last), stamping every video frame; returns
/// only on an error. `video_bytes` counts the video tag bytes written.
pub async fn run(
    rtmp: std::net::SocketAddr,
    clip: &Path,
    stamps: &Stamps,
    video_bytes: &AtomicU64,
) -> Result<(), String> {
    let tags = read_flv(clip)?;
    let duration = tags.iter().map(|t| t.time).max().unwrap_or(0) + 33;
    let mut s = TcpStream::connect(rtmp).await.map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    // Plain handshake: C0 C1, then C2 echoing S1.
    let mut c0c1 = vec![3u8];
    c0c1.extend((0..1536u32).map(|i| if i < 8 { 0 } else { (i * 7) as u8 }));
    s.write_all(&c0c1).await.map_err(|e| e.to_string())?;
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    s.read_exact(&mut s0s1s2)
        .await
        .map_err(|e| format!("RTMP handshake: {e}"))?;
    let mut out = s0s1s2.get(1..1537).unwrap_or_default().to_vec();
    write_message(
        &mut out,
        2,
        0,
        1,
        0,
        &(CHUNK_SIZE as u32).to_be_bytes(),
        128,
    );
    // Everything after the set-chunk-size uses the new size.
    let s_ = |v: &str| Amf::Str(v.to_owned());
    command(
        &mut out,
        3,
        0,
        &[
            s_("connect"),
            Amf::Number(1.0),
            Amf::Object(vec![
                ("app".into(), s_("live")),
                ("type".into(), s_("nonprivate")),
                ("tcUrl".into(), s_(&format!("rtmp://{rtmp}/live"))),
            ]),
        ],
    );
    command(
        &mut out,
        3,
        0,
        &[s_("createStream"), Amf::Number(2.0), Amf::Null],
    );
    let mut publish = Vec::new();
    for v in [
        s_("publish"),
        Amf::Number(3.0),
        Amf::Null,
        s_("bench"),
        s_("live"),
    ] {
        amf_write(&mut publish, &v);
    }
    let mut rest = Vec::new();
    write_message(&mut rest, 8, 0, 20, STREAM_ID, &publish, CHUNK_SIZE);
    s.write_all(&out).await.map_err(|e| e.to_string())?;
    s.write_all(&rest).await.map_err(|e| e.to_string())?;
    // Wait for the publish to start; then keep draining what the server says.
    let (mut read, mut write) = s.into_split();
    let mut seen = Vec::new();
    let started = Instant::now();
    while !contains(&seen, b"NetStream.Publish.Start") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), read.read(&mut buf))
            .await
            .map_err(|_| "no NetStream.Publish.Start in 5 s")?
            .map_err(|e| e.to_string())?;
        if n == 0 || started.elapsed() > Duration::from_secs(5) {
            return Err("the server closed the RTMP publish".into());
        }
        seen.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let t0 = tokio::time::Instant::now();
    for round in 0u32.. {
        let offset = round * duration;
        for tag in &tags {
            let is_config = tag.body.get(1) == Some(&0);
            if round > 0 && is_config {
                continue;
            }
            let time = tag.time + offset;
            tokio::time::sleep_until(t0 + Duration::from_millis(u64::from(time))).await;
            let mut msg = Vec::with_capacity(tag.body.len() + 64);
            let csid = if tag.kind == 9 { 6 } else { 4 };
            write_message(
                &mut msg, csid, time, tag.kind, STREAM_ID, &tag.body, CHUNK_SIZE,
            );
            write.write_all(&msg).await.map_err(|e| e.to_string())?;
            if tag.kind == 9 && !is_config {
                stamps.set(time, Instant::now());
                video_bytes.fetch_add(tag.body.len() as u64, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
