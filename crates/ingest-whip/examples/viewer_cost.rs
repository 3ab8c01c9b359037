//! What one WebRTC viewer costs the server in str0m: N server-side `Rtc`s
//! (ICE-lite, RTP mode, as a WHEP egress would run them) each connected in
//! memory to a client `Rtc`, then fed the same 2 Mbit/s H.264 stream's RTP
//! payloads (packetized once, shared) for a stretch of virtual time; every
//! datagram the servers emit (SRTP-protected) is produced and dropped. The
//! time spent on one thread over the media duration is the share of a core
//! per viewer.
//!
//! `cargo run --release -p tidewater-whip --example viewer_cost -- 100 10`
//! (viewers, seconds of media). A third argument `unnackable` writes the
//! payloads without `nackable`, so str0m keeps no RTX history for them:
//! the growth of resident memory over the media of a run with and one
//! without gives what the per-viewer send buffer costs (see the crate docs, "WHEP playback").

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// The process's resident memory (bytes), from `/proc/self/statm` (Linux;
/// 0 elsewhere): the example allocates nothing else while the media runs,
/// so its growth is what the state machines keep.
fn resident() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

struct Pair {
    server: Rtc,
    client: Rtc,
    mid: Mid,
    pt: str0m::media::Pt,
    connected: bool,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// Drains `rtc`; returns the datagrams it sends and whether it connected.
fn drain(rtc: &mut Rtc, out: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>, keep: bool) -> bool {
    let mut counted = (0, 0);
    drain_counting(rtc, out, keep, &mut counted)
}

/// [`drain`], counting datagrams and bytes sent instead of keeping them when `keep` is false.
fn drain_counting(
    rtc: &mut Rtc,
    out: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    keep: bool,
    counted: &mut (u64, u64),
) -> bool {
    let mut connected = false;
    loop {
        match rtc.poll_output().expect("output") {
            Output::Timeout(_) => return connected,
            Output::Transmit(t) => {
                if keep {
                    out.push((t.source, t.destination, t.contents.to_vec()));
                } else {
                    counted.0 += 1;
                    counted.1 += t.contents.len() as u64;
                }
            }
            Output::Event(Event::Connected) => connected = true,
            Output::Event(_) => {}
        }
    }
}

fn pair(i: usize, now: Instant) -> Pair {
    let server_addr = addr("10.0.0.1:8189");
    let client_addr: SocketAddr = SocketAddr::new(addr("10.0.1.1:1").ip(), 10_000 + i as u16);
    let mut client = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_h264(true)
        .build(now);
    client.add_local_candidate(Candidate::host(client_addr, "udp").expect("candidate"));
    let mut api = client.sdp_api();
    let mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    let mut server = Rtc::builder()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_h264(true)
        .build(now);
    server.add_local_candidate(Candidate::host(server_addr, "udp").expect("candidate"));
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).expect("offer");
    let answer = server.sdp_api().accept_offer(offer).expect("answer");
    client
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("accept");
    let pt = {
        let remote = server.media(mid).expect("media").remote_pts().to_vec();
        let config = server.codec_config();
        *remote
            .iter()
            .find(|pt| {
                config
                    .find(|p| p.pt() == **pt)
                    .is_some_and(|p| p.spec().codec == Codec::H264)
            })
            .expect("H.264")
    };
    Pair {
        server,
        client,
        mid,
        pt,
        connected: false,
    }
}

/// Runs ICE and DTLS in memory until both ends are connected.
fn connect(p: &mut Pair, mut now: Instant) -> Instant {
    let mut to_server = Vec::new();
    let mut to_client = Vec::new();
    let mut client_up = false;
    for _ in 0..2000 {
        client_up |= drain(&mut p.client, &mut to_server, true);
        p.connected |= drain(&mut p.server, &mut to_client, true);
        if p.connected && client_up {
            return now;
        }
        for (src, dst, data) in to_server.drain(..) {
            let r = Receive::new(Protocol::Udp, src, dst, &data).expect("datagram");
            p.server
                .handle_input(Input::Receive(now, r))
                .expect("server input");
            p.connected |= drain(&mut p.server, &mut to_client, true);
        }
        for (src, dst, data) in to_client.drain(..) {
            let r = Receive::new(Protocol::Udp, src, dst, &data).expect("datagram");
            p.client
                .handle_input(Input::Receive(now, r))
                .expect("client input");
            client_up |= drain(&mut p.client, &mut to_server, true);
        }
        now += Duration::from_millis(5);
        p.client.handle_input(Input::Timeout(now)).expect("timeout");
        p.server.handle_input(Input::Timeout(now)).expect("timeout");
    }
    panic!("no connection in memory");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let viewers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let seconds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let nackable = args.next().as_deref() != Some("unnackable");
    let mut now = Instant::now();
    let mut pairs: Vec<Pair> = (0..viewers).map(|i| pair(i, now)).collect();
    for p in &mut pairs {
        now = connect(p, now);
    }
    // 2 Mbit/s at 30 fps: 8 333 bytes a frame, in 1 200-byte payloads,
    // packetized once and shared by every viewer.
    let frame_bytes: usize = 2_000_000 / 8 / 30;
    let payloads: Vec<Arc<[u8]>> = (0..frame_bytes.div_ceil(1200))
        .map(|i| Arc::from(vec![(i % 251) as u8; 1200.min(frame_bytes - i * 1200)]))
        .collect();
    let before = resident();
    let frames = 30 * seconds;
    let mut sink = Vec::new();
    let mut counted = (0u64, 0u64);
    let started = Instant::now();
    let mut seq = 0u64;
    for frame in 0..frames {
        now += Duration::from_micros(33_333);
        let time = frame * 3000;
        for p in &mut pairs {
            for (i, payload) in payloads.iter().enumerate() {
                let write = RtpWrite::new(
                    p.pt,
                    SeqNo::from(seq + i as u64),
                    time,
                    now,
                    Arc::clone(payload),
                )
                .marker(i + 1 == payloads.len())
                .nackable(nackable);
                if let Some(tx) = p.server.direct_api().stream_tx_by_mid(p.mid, None) {
                    tx.write_rtp(write);
                }
                drain_counting(&mut p.server, &mut sink, false, &mut counted);
            }
            p.server.handle_input(Input::Timeout(now)).expect("timeout");
            drain_counting(&mut p.server, &mut sink, false, &mut counted);
        }
        seq += payloads.len() as u64;
    }
    let spent = started.elapsed();
    let grown = resident().saturating_sub(before);
    let (datagrams, bytes) = counted;
    let per_viewer = spent.as_secs_f64() / f64::from(seconds) / viewers as f64;
    println!(
        "str0m {viewers} viewers, {seconds} s of 2 Mbit/s H.264 (virtual time): {:.3} s on one thread; \
         {:.4} % of a core per viewer, {:.0} viewers per core; {datagrams} datagrams ({:.1} Mbit/s out)",
        spent.as_secs_f64(),
        per_viewer * 100.0,
        1.0 / per_viewer,
        bytes as f64 * 8.0 / f64::from(seconds) / 1e6,
    );
    println!(
        "one entry of str0m's RTX history holds a str0m::rtp::RtpPacket of {} bytes \
         (its payload an Arc shared by every viewer)",
        std::mem::size_of::<str0m::rtp::RtpPacket>()
    );
    println!(
        "resident memory grown over the media ({}): {:.1} MB, {:.1} KB per viewer",
        if nackable {
            "nackable: str0m keeps its RTX history"
        } else {
            "not nackable: no RTX history"
        },
        grown as f64 / 1e6,
        grown as f64 / viewers as f64 / 1e3,
    );
}
