//! The soak's WebRTC peers: a WHIP publisher looping an H.264 clip and
//! short WHEP readers, both str0m clients on blocking loopback sockets
//! (str0m is sans-IO; a thread per peer is enough at this scale).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::Mid;
use str0m::media::{Direction, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// The clip's frame rate; the publisher paces its frames by it.
const FPS: u64 = 25;
/// RTP ticks (90 kHz) per frame.
const TICKS_PER_FRAME: u64 = 90_000 / FPS;
/// How long a WHEP reader may wait for its first video packet.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest datagram read.
const MTU: usize = 2048;

/// Encodes the WHIP publisher's clip: the soak clip's picture as Annex B
/// H.264 in constrained baseline (what every WebRTC peer offers; no
/// B-frames, so RTP time is decode time), parameter sets before every
/// keyframe and an access unit delimiter before every picture, which is
/// where the publisher cuts frames.
pub(super) fn make_whip_clip(out: &Path) -> Result<()> {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-t", "10", "-pix_fmt", "yuv420p", "-c:v", "libx264"])
        .args(["-profile:v", "baseline", "-preset", "veryfast"])
        .args(["-g", "25", "-keyint_min", "25", "-sc_threshold", "0"])
        .args(["-x264-params", "repeat-headers=1:aud=1", "-f", "h264"])
        .arg(out)
        .status()
        .context("could not run ffmpeg (install ffmpeg 5.1)")?;
    if !status.success() {
        bail!("ffmpeg could not encode the WHIP clip ({status})");
    }
    Ok(())
}

/// Splits an Annex B stream into access units at its delimiters (NAL type
/// 9), each returned without its delimiter, start codes kept.
fn access_units(data: &[u8]) -> Vec<Vec<u8>> {
    // (start of the start code, start of the NAL) for each NAL unit.
    let mut nals = Vec::new();
    let mut i = 0;
    while let Some(w) = data.get(i..i + 3) {
        if w == [0, 0, 1] {
            let code = if i > 0 && data.get(i - 1) == Some(&0) {
                i - 1
            } else {
                i
            };
            nals.push((code, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units: Vec<Vec<u8>> = Vec::new();
    for (n, (code, start)) in nals.iter().enumerate() {
        let end = nals.get(n + 1).map_or(data.len(), |(next, _)| *next);
        let Some(nal) = data.get(*code..end) else {
            continue;
        };
        match data.get(*start).map(|b| b & 0x1f) {
            Some(9) => units.push(Vec::new()),
            Some(_) => match units.last_mut() {
                Some(unit) => unit.extend_from_slice(nal),
                None => units.push(nal.to_vec()),
            },
            None => {}
        }
    }
    units.retain(|u| !u.is_empty());
    units
}

/// One HTTP/1.1 exchange with `Connection: close`: status, `Location`, body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, Option<String>, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)
        .with_context(|| format!("{method} {path}: reading the answer"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{method} {path}: no HTTP answer"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{method} {path}: no status in {head:?}"))?;
    let location = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("location")
            .then(|| value.trim().to_owned())
    });
    Ok((status, location, body.to_owned()))
}

/// A str0m peer on its own loopback UDP socket, after its offer was answered.
struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    http: SocketAddr,
    /// The offered video media.
    mid: Mid,
    /// The session's resource (`Location`), deleted when the peer ends.
    resource: Option<String>,
}

impl Peer {
    /// Offers one video media in `dir` at `path` and applies the answer.
    fn connect(http: SocketAddr, path: &str, dir: Direction, rtp_mode: bool) -> Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0").context("binding a UDP socket")?;
        let local = socket.local_addr()?;
        let mut rtc = Rtc::builder()
            .set_rtp_mode(rtp_mode)
            .clear_codecs()
            .enable_h264(true)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").context("a host candidate")?);
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Video, dir, None, None, None);
        let (offer, pending) = api.apply().context("str0m made no offer")?;
        let (status, resource, answer) = http_post(http, path, &offer.to_sdp_string())?;
        if status != 201 {
            bail!("POST {path}: {status} {}", answer.trim());
        }
        let answer = SdpAnswer::from_sdp_string(&answer).context("the server's SDP answer")?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .context("accepting the answer")?;
        Ok(Self {
            rtc,
            socket,
            local,
            http,
            mid,
            resource,
        })
    }

    /// Sends what str0m has to send; its events go to `on_event`; the
    /// time it next wants to be woken.
    fn drain(&mut self, on_event: &mut dyn FnMut(Event)) -> Result<Instant> {
        loop {
            match self.rtc.poll_output().context("str0m")? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Output::Event(e) => on_event(e),
            }
        }
    }

    /// Waits for a datagram until `until` and feeds it (or the timeout) to str0m.
    fn wait(&mut self, until: Instant, buf: &mut [u8]) -> Result<()> {
        let left = until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        self.socket.set_read_timeout(Some(left))?;
        match self.socket.recv_from(buf) {
            Ok((n, source)) => {
                let data = buf.get(..n).unwrap_or_default();
                if let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, data) {
                    self.rtc
                        .handle_input(Input::Receive(Instant::now(), receive))
                        .context("str0m input")?;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                self.rtc
                    .handle_input(Input::Timeout(Instant::now()))
                    .context("str0m timeout")?;
            }
            Err(e) => return Err(e).context("UDP receive"),
        }
        Ok(())
    }
}

impl Drop for Peer {
    // Ends the session on the server the way a player does, so the soak
    // churns the whole lifecycle, not the ICE timeout.
    fn drop(&mut self) {
        if let Some(resource) = self.resource.take() {
            let _ = http(self.http, "DELETE", &resource, "");
        }
    }
}

fn http_post(addr: SocketAddr, path: &str, body: &str) -> Result<(u16, Option<String>, String)> {
    http(addr, "POST", path, body)
}

/// The WHIP publisher's thread, stopped when dropped.
pub(super) struct WhipPublisher {
    stop: Arc<AtomicBool>,
    /// Why the publisher ended, once it has.
    ended: Arc<Mutex<Option<String>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl WhipPublisher {
    /// Publishes `clip` (Annex B, see [`make_whip_clip`]) at `key` in a
    /// loop, in real time.
    pub(super) fn start(http: SocketAddr, key: &str, clip: &Path) -> Result<Self> {
        let data = std::fs::read(clip).with_context(|| format!("reading {}", clip.display()))?;
        let units = access_units(&data);
        if units.is_empty() {
            bail!("no access unit in {}", clip.display());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(Mutex::new(None));
        let path = format!("/whip/{key}");
        let peer = Peer::connect(http, &path, Direction::SendOnly, false)?;
        let thread = {
            let (stop, ended) = (Arc::clone(&stop), Arc::clone(&ended));
            thread::spawn(move || {
                let why = match publish(peer, &units, &stop) {
                    Ok(()) => "stopped".to_owned(),
                    Err(e) => format!("{e:#}"),
                };
                if let Ok(mut e) = ended.lock() {
                    *e = Some(why);
                }
            })
        };
        Ok(Self {
            stop,
            ended,
            thread: Some(thread),
        })
    }

    /// Why the publisher ended, if it has.
    pub(super) fn ended(&self) -> Option<String> {
        self.ended.lock().ok().and_then(|e| e.clone())
    }
}

impl Drop for WhipPublisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The publisher's loop: frames written at their time once connected.
fn publish(mut peer: Peer, units: &[Vec<u8>], stop: &AtomicBool) -> Result<()> {
    let mut buf = vec![0u8; MTU];
    let frame = Duration::from_micros(1_000_000 / FPS);
    let started = Instant::now();
    let mut connected: Option<Instant> = None;
    let mid = peer.mid;
    let mut sent: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut now_connected = false;
        let wake = peer.drain(&mut |e| {
            if matches!(e, Event::Connected) {
                now_connected = true;
            }
        })?;
        if now_connected && connected.is_none() {
            connected = Some(Instant::now());
        }
        if connected.is_none() && started.elapsed() > JOIN_TIMEOUT {
            bail!("WHIP publisher not connected within {JOIN_TIMEOUT:?}");
        }
        if !peer.rtc.is_alive() {
            bail!("the WHIP publisher's connection closed");
        }
        let mut next_frame = None;
        if let Some(t0) = connected {
            let due = t0 + frame * u32::try_from(sent).unwrap_or(u32::MAX);
            if Instant::now() >= due {
                let unit = units
                    .get((sent % units.len() as u64) as usize)
                    .context("a frame of the clip")?;
                let writer = peer.rtc.writer(mid).context("no writer for the video")?;
                let pt = writer
                    .payload_params()
                    .find(|p| p.spec().codec == Codec::H264)
                    .map(|p| p.pt())
                    .context("the answer has no H.264")?;
                writer
                    .write(
                        pt,
                        due,
                        MediaTime::from_90khz(sent * TICKS_PER_FRAME),
                        unit.as_slice(),
                    )
                    .context("writing a frame")?;
                sent += 1;
                continue;
            }
            next_frame = Some(due);
        }
        let until = next_frame.map_or(wake, |f| f.min(wake));
        peer.wait(until, &mut buf)?;
    }
    Ok(())
}

/// One WHEP reader of `key`: four seconds of video RTP from the first
/// packet, then the session is deleted; checked like the ffmpeg readers.
pub(super) fn read_whep(
    http: SocketAddr,
    key: &str,
    seconds: u32,
    min_frames: usize,
) -> Result<()> {
    let mut peer = Peer::connect(http, &format!("/whep/{key}"), Direction::RecvOnly, true)?;
    let mut buf = vec![0u8; MTU];
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    // (extended sequence number, RTP timestamp) of every media packet.
    let mut packets: Vec<(u64, u32)> = Vec::new();
    loop {
        let wake = peer.drain(&mut |e| {
            if let Event::RtpPacket(p) = e
                && !p.payload.is_empty()
            {
                packets.push((*p.seq_no, p.header.timestamp));
            }
        })?;
        let now = Instant::now();
        if first.is_none() && !packets.is_empty() {
            first = Some(now);
        }
        match first {
            Some(t) if now.duration_since(t) >= Duration::from_secs(u64::from(seconds)) => break,
            None if started.elapsed() > JOIN_TIMEOUT => {
                bail!("no video RTP within {JOIN_TIMEOUT:?} of the POST")
            }
            _ => {}
        }
        if !peer.rtc.is_alive() {
            bail!("the WHEP connection closed");
        }
        peer.wait(wake.min(now + Duration::from_millis(100)), &mut buf)?;
    }
    drop(peer);
    check_rtp(&mut packets, min_frames)
}

/// No packet missing between the first and the last, frames' RTP times
/// rising in sequence order by no more than one and a half frames.
fn check_rtp(packets: &mut Vec<(u64, u32)>, min_frames: usize) -> Result<()> {
    packets.sort_unstable();
    // Retransmissions repeat a sequence number; one copy counts.
    packets.dedup_by_key(|p| p.0);
    let mut frames = 0usize;
    let mut last: Option<(u64, u32)> = None;
    for &(seq, ts) in packets.iter() {
        if let Some((prev_seq, prev_ts)) = last {
            if seq != prev_seq + 1 {
                bail!(
                    "{} RTP packet(s) missing after sequence number {prev_seq}",
                    seq - prev_seq - 1
                );
            }
            let step = i64::from(ts.wrapping_sub(prev_ts) as i32);
            if step < 0 {
                bail!("RTP time went back: {prev_ts} -> {ts}");
            }
            if step > (TICKS_PER_FRAME * 3 / 2) as i64 {
                bail!(
                    "a gap of {} ms between two video frames: frames lost",
                    step / 90
                );
            }
            if step > 0 {
                frames += 1;
            }
        } else {
            frames = 1;
        }
        last = Some((seq, ts));
    }
    if frames < min_frames {
        bail!("{frames} video frames over WHEP (at least {min_frames} expected)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_units_are_cut_at_delimiters() {
        let stream = [
            &[0, 0, 0, 1, 9, 0xf0][..],
            &[0, 0, 0, 1, 0x67, 1, 2],
            &[0, 0, 1, 0x65, 3],
            &[0, 0, 0, 1, 9, 0xf0],
            &[0, 0, 1, 0x41, 4, 5],
        ]
        .concat();
        let units = access_units(&stream);
        assert_eq!(
            units,
            vec![
                vec![0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x65, 3],
                vec![0, 0, 1, 0x41, 4, 5]
            ]
        );
    }

    #[test]
    fn a_missing_packet_or_frame_fails_the_whep_reader() {
        // Two packets a frame, 100 frames.
        let whole: Vec<(u64, u32)> = (0..200u64)
            .map(|i| (i, (i / 2 * TICKS_PER_FRAME) as u32))
            .collect();
        assert!(check_rtp(&mut whole.clone(), 75).is_ok());
        let mut lost = whole.clone();
        lost.remove(50);
        assert!(check_rtp(&mut lost, 75).is_err());
        let skipped: Vec<(u64, u32)> = (0..200u64)
            .map(|i| (i, ((i / 2 + u64::from(i >= 100)) * TICKS_PER_FRAME) as u32))
            .collect();
        assert!(check_rtp(&mut skipped.clone(), 75).is_err());
        assert!(check_rtp(&mut whole[..100].to_vec(), 75).is_err());
    }
}
