//! A source with a track retina does not depacketize (Opus): retina still
//! speaks RTSP (`DESCRIBE`, `SETUP`, `PLAY`, credentials, keep-alives,
//! TCP or UDP) and hands over the RTP packets as they came; the
//! server's own depacketizers, those of the RTSP publish path
//! ([`Ingest`]), make every track's frames and the catalog. Retina's
//! demuxed path refuses to start when any set-up track lacks its
//! depacketizer, so such a source goes through here as a whole.
// Reads network input: no indexing, unwrap, expect or panic that a peer
// could reach (issue 18); where an invariant proves one safe, an allow says which.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use retina::client::{PacketItem, Playing, Session};
use tidewater_core::PublishSession;
use tracing::{debug, warn};

use super::attempt::{Ended, Failed, Stopped, failed, next_item};
use super::spec::{PullOptions, PullSpec};
use crate::ingest::{Ingest, IngestOutput};
use crate::sdp::SdpTrack;

/// Publishes the packets of `session`, whose set-up streams are the
/// `tracks` this crate depacketizes (in the source's `m=` order, as retina
/// numbers its streams), until the source fails or `stop` resolves.
pub(super) async fn publish(
    spec: &PullSpec,
    options: &PullOptions,
    session: Session<Playing>,
    tracks: &[SdpTrack],
    mut publish: PublishSession,
    mut stop: Pin<&mut impl Future<Output = ()>>,
) -> Result<Stopped, Failed> {
    let mut ingest = Ingest::new(tracks);
    let mut anchored = vec![false; tracks.len()];
    let mut out = Vec::new();
    let mut bad_packets = 0u64;
    let closed = publish.closed();
    tokio::pin!(closed);
    tokio::pin!(session);
    loop {
        let item =
            match next_item(&mut session, &mut stop, &mut closed, options.stall_timeout).await {
                Ok(item) => item,
                Err(Ended::Stop) => {
                    publish.finish().await;
                    return Ok(Stopped::Asked);
                }
                Err(Ended::Failed(f)) => return Err(f),
            };
        let packet = match item {
            // Sender reports are not used: the tracks are aligned by
            // `RTP-Info`, as on retina's own path.
            PacketItem::Rtcp(_) => continue,
            PacketItem::Rtp(packet) => packet,
            _ => continue,
        };
        let index = packet.stream_id();
        if let Some(anchored) = anchored.get_mut(index)
            && !*anchored
        {
            *anchored = true;
            let t = packet.timestamp();
            debug!(stream = %spec.key, track = index, rtp_info = t.start(), first = t.timestamp(), "pull: a track's first packet");
            ingest.push_rtcp(index, &rtp_info_report(t.start()));
        }
        let raw = Bytes::copy_from_slice(packet.raw());
        if let Err(e) = ingest.push(index, &raw, &mut out) {
            bad_packets += 1;
            if bad_packets == 1 || bad_packets.is_power_of_two() {
                warn!(stream = %spec.key, "pull: {bad_packets} RTP packets refused so far, the last: {e}");
            }
        }
        for output in out.drain(..) {
            match output {
                IngestOutput::Catalog(infos) => {
                    publish
                        .set_catalog(infos)
                        .map_err(|e| failed(true, format!("catalog: {e}")))?;
                }
                IngestOutput::Frame(frame) => publish
                    .publish(frame)
                    .map_err(|e| failed(true, format!("publish: {e}")))?,
            }
        }
    }
}

/// An RTCP sender report saying that RTP time `start` of a track is the
/// stream's origin. `RTP-Info` gives each track's RTP time at the same
/// instant (the `PLAY` range's start; retina takes the first packet's when
/// it is missing); handing the depacketizers one such report per track,
/// all at one wall-clock time, before the track's first packet puts the
/// tracks on one timeline exactly as sender reports would (see
/// [`Ingest`]'s timestamps), each starting at [`crate::ingest::TIMELINE_START`].
fn rtp_info_report(start: u32) -> Vec<u8> {
    let mut report = Vec::with_capacity(28);
    // V=2, no padding, no report blocks; PT 200 (SR); length 6 words; SSRC 0.
    report.extend_from_slice(&[0x80, 200, 0, 6, 0, 0, 0, 0]);
    // NTP time 1.0 s for every track: only differences count.
    report.extend_from_slice(&(1u64 << 32).to_be_bytes());
    report.extend_from_slice(&start.to_be_bytes());
    // Packet and octet counts.
    report.extend_from_slice(&[0; 8]);
    report
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on what they did not expect"
)]
mod tests {
    use super::*;
    use tidewater_core::Codec;
    use tidewater_media::rtp::write_header;

    #[test]
    fn tracks_start_where_rtp_info_puts_them() {
        let sdp = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 OPUS/48000/2\r\na=fmtp:97 sprop-stereo=0\r\n\
m=audio 0 RTP/AVP 98\r\na=rtpmap:98 OPUS/48000/2\r\n";
        let tracks = crate::sdp::parse(sdp.as_bytes()).expect("sdp");
        let mut ingest = Ingest::new(&tracks);
        let mut out = Vec::new();
        // RTP-Info: track 0 at 1000, track 1 at 4_294_967_000 (about to
        // wrap). Track 0's first packet comes 960 ticks (20 ms) in, track
        // 1's 1920 ticks in, after the wrap.
        for (index, pt, start, ts) in [(0, 97, 1000u32, 1960u32), (1, 98, 4_294_967_000, 1624)] {
            ingest.push_rtcp(index, &rtp_info_report(start));
            let mut packet = bytes::BytesMut::new();
            write_header(&mut packet, true, pt, 1, ts, 7);
            packet.extend_from_slice(&[0xfc, 1, 2]);
            ingest
                .push(index, &packet.freeze(), &mut out)
                .expect("valid");
        }
        let IngestOutput::Catalog(infos) = &out[0] else {
            panic!("catalog first: {out:?}")
        };
        assert_eq!(infos[0].codec, Codec::Opus);
        assert_eq!(infos[0].audio.map(|a| a.channels), Some(1));
        assert_eq!(infos[1].audio.map(|a| a.channels), Some(2));
        let pts: Vec<i64> = out
            .iter()
            .filter_map(|o| match o {
                IngestOutput::Frame(f) => Some(f.pts),
                IngestOutput::Catalog(_) => None,
            })
            .collect();
        assert_eq!(pts, [480_000 + 960, 480_000 + 1920]);
    }
}
