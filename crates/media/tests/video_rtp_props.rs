//! Stable twin of the `rtp_video` fuzz target
//! (`tidewater_media::fuzzing::rtp_video_frames` on random packet streams),
//! and the round trip of the VP8, VP9 and AV1 payload formats: what the
//! packetizer makes, the depacketizer gives back unchanged at any payload
//! size, and losing any one packet of a frame drops that frame and the
//! inter frame after it rather than delivering a damaged one.

use bytes::Bytes;
use proptest::prelude::*;
use tidewater_media::fuzzing::rtp_video_frames;
use tidewater_media::rtp::RtpPacket;
use tidewater_media::rtp::av1::{Av1Depacketizer, packetize_av1, sized_obu};
use tidewater_media::rtp::frames::{FrameDepacketizer, PayloadFormat, VideoFrame};
use tidewater_media::rtp::vp8::{Vp8Depacketizer, packetize_vp8};
use tidewater_media::rtp::vp9::{Vp9Depacketizer, packetize_vp9};

/// A VP9 keyframe header (profile 0, 640 × 360) before `body`.
fn vp9_keyframe(body: &[u8]) -> Vec<u8> {
    let mut f = vec![0x82, 0x49, 0x83, 0x42, 0x00, 0x27, 0xf0, 0x16, 0x70];
    f.extend_from_slice(body);
    f
}

/// A packetizer of the crate: frame, payload size, payloads out.
type Packetize = fn(&[u8], usize, &mut Vec<(bool, Bytes)>);

/// Pushes `frames` (timestamps 3000 apart) packetized at `max`, leaving out
/// packet `lose` (counted over the whole stream) when given.
fn run<F: PayloadFormat>(
    d: &mut FrameDepacketizer<F>,
    frames: &[Vec<u8>],
    packetize: Packetize,
    max: usize,
    seq: u16,
    lose: Option<usize>,
) -> Vec<VideoFrame> {
    let mut out = Vec::new();
    let mut n = 0usize;
    for (i, frame) in frames.iter().enumerate() {
        let mut payloads = Vec::new();
        packetize(frame, max, &mut payloads);
        for (marker, payload) in payloads {
            if lose != Some(n) {
                let p = RtpPacket {
                    marker,
                    payload_type: 96,
                    sequence: seq.wrapping_add(n as u16),
                    timestamp: 3000 * i as u32,
                    ssrc: 1,
                    payload,
                };
                let _ = d.push(&p, &mut out);
            }
            n += 1;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_packet_streams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        rtp_video_frames(&data);
    }

    #[test]
    fn vp8_round_trips_and_a_loss_drops_until_a_keyframe(
        body in proptest::collection::vec(any::<u8>(), 1..3000),
        max in 2usize..1500,
        seq in any::<u16>(),
        lose in any::<prop::sample::Index>(),
    ) {
        // A keyframe (P bit 0), an inter frame (P bit 1), a keyframe.
        let key = [&[0x10][..], &body].concat();
        let inter = [&[0x11][..], &body].concat();
        let frames = vec![key.clone(), inter.clone(), key.clone()];
        let got = run(&mut Vp8Depacketizer::new(), &frames, packetize_vp8, max, seq, None);
        let got: Vec<Vec<u8>> = got.iter().map(|f| f.data.to_vec()).collect();
        prop_assert_eq!(&got, &frames);
        // Lose one packet of the first two frames: the damaged frame and
        // the inter frame depending on it are not delivered.
        let mut count = Vec::new();
        packetize_vp8(&key, max, &mut count);
        let first_two = 2 * count.len();
        let lost = lose.index(first_two);
        let got = run(&mut Vp8Depacketizer::new(), &frames, packetize_vp8, max, seq, Some(lost));
        prop_assert!(got.iter().all(|f| f.data[..] == key[..] && f.keyframe));
        prop_assert_eq!(got.last().map(|f| f.timestamp), Some(6000));
    }

    #[test]
    fn vp9_round_trips_at_any_payload_size(
        body in proptest::collection::vec(any::<u8>(), 1..3000),
        max in 2usize..1500,
        seq in any::<u16>(),
    ) {
        let key = vp9_keyframe(&body);
        let inter = [&[0x86][..], &body].concat();
        let frames = vec![inter.clone(), key.clone(), inter.clone()];
        let got = run(&mut Vp9Depacketizer::new(), &frames, packetize_vp9, max, seq, None);
        let got: Vec<(Vec<u8>, bool)> = got.iter().map(|f| (f.data.to_vec(), f.keyframe)).collect();
        // The leading inter frame waits for a keyframe.
        prop_assert_eq!(got, vec![(key, true), (inter, false)]);
    }

    #[test]
    fn av1_round_trips_at_any_payload_size(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 1..4),
        max in 2usize..1500,
        seq in any::<u16>(),
    ) {
        // A keyframe temporal unit: a sequence header (any payload: the
        // depacketizer does not parse it) and frames; key frame bits first.
        let mut key = sized_obu(1, &[0, 0, 0]);
        let mut inter = Vec::new();
        for body in &bodies {
            key.extend(sized_obu(6, &[&[0x10][..], body].concat()));
            inter.extend(sized_obu(6, &[&[0x20][..], body].concat()));
        }
        let frames = vec![key.clone(), inter.clone()];
        let got = run(&mut Av1Depacketizer::new(), &frames, packetize_av1, max, seq, None);
        let got: Vec<(Vec<u8>, bool)> = got.iter().map(|f| (f.data.to_vec(), f.keyframe)).collect();
        prop_assert_eq!(got, vec![(key, true), (inter, false)]);
    }
}
