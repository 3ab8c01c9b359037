//! Stable twin of the `rtp_depacketize` fuzz target
//! (`tidewater_rtsp::fuzzing::depacketize` on random packet streams), and
//! the round trip of the RTP payload formats: what a packetizer makes, the
//! depacketizer gives back unchanged at any payload size (save parameter
//! sets repeated after a slice, which go ahead of the first), and losing any
//! one packet of a picture drops that picture rather than delivering a
//! damaged one.

use bytes::Bytes;
use proptest::prelude::*;
use tidewater_media::rtp::aac::{AacDepacketizer, AuHeaderLayout, packetize_aac};
use tidewater_media::rtp::h264::{H264Depacketizer, packetize_h264};
use tidewater_media::rtp::h265::{H265Depacketizer, packetize_h265};
use tidewater_media::rtp::{Payload, ReorderBuffer, RtpPacket};
use tidewater_rtsp::fuzzing::depacketize;

fn packet(seq: u16, ts: u32, p: &Payload) -> RtpPacket {
    RtpPacket {
        marker: p.marker,
        payload_type: 96,
        sequence: seq,
        timestamp: ts,
        ssrc: 1,
        payload: p.data.clone(),
    }
}

/// The access unit the depacketizer gives for `nals`: parameter sets
/// (`is_parameter_set`) that come after a slice (`is_slice`) go ahead of
/// the first slice, and one already present is dropped (a payloader's
/// repeat before each slice of a picture).
fn expected_unit(
    nals: &[Vec<u8>],
    is_parameter_set: impl Fn(&[u8]) -> bool,
    is_slice: impl Fn(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let mut unit: Vec<Vec<u8>> = Vec::new();
    for nal in nals {
        match unit.iter().position(|n| is_slice(n)) {
            Some(first) if is_parameter_set(nal) => {
                if !unit.contains(nal) {
                    unit.insert(first, nal.clone());
                }
            }
            _ => unit.push(nal.clone()),
        }
    }
    unit
}

fn h264_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

fn h265_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| (b >> 1) & 0x3f)
}

fn nal() -> impl Strategy<Value = Vec<u8>> {
    (1u8..24, proptest::collection::vec(any::<u8>(), 0..3000)).prop_map(|(t, mut body)| {
        body.insert(0, t);
        body
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_packet_streams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        depacketize(&data);
    }

    #[test]
    fn h264_round_trips_at_any_payload_size(
        nals in proptest::collection::vec(nal(), 1..6),
        max in 16usize..1500,
        seq in any::<u16>(),
        ts in any::<u32>(),
    ) {
        // The first unit is an IDR so that the depacketizer starts.
        let mut nals = nals;
        nals[0][0] = 0x65;
        let mut payloads = Vec::new();
        packetize_h264(nals.iter().map(|n| &n[..]), max, &mut payloads);
        prop_assert!(payloads.iter().all(|p| p.data.len() <= max.max(16)));
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            d.push(&packet(seq.wrapping_add(i as u16), ts, p), &mut out).expect("valid");
        }
        prop_assert_eq!(out.len(), 1);
        let got: Vec<Vec<u8>> = out[0].nals.iter().map(|n| n.to_vec()).collect();
        let want = expected_unit(&nals, |n| matches!(h264_type(n), 7 | 8), |n| matches!(h264_type(n), 1..=5));
        prop_assert_eq!(got, want);
        prop_assert_eq!(out[0].timestamp, ts);
    }

    #[test]
    fn h265_round_trips_at_any_payload_size(
        nals in proptest::collection::vec((0u8..48, proptest::collection::vec(any::<u8>(), 1..3000)), 1..6),
        max in 16usize..1500,
        seq in any::<u16>(),
    ) {
        // Two-byte headers; the first unit an IDR (type 19) so that the depacketizer starts.
        let mut nals: Vec<Vec<u8>> = nals
            .into_iter()
            .map(|(t, body)| [vec![t << 1, 1], body].concat())
            .collect();
        nals[0][0] = 19 << 1;
        let mut payloads = Vec::new();
        packetize_h265(nals.iter().map(|n| &n[..]), max, &mut payloads);
        prop_assert!(payloads.iter().all(|p| p.data.len() <= max.max(16)));
        let mut d = H265Depacketizer::new();
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            d.push(&packet(seq.wrapping_add(i as u16), 7, p), &mut out).expect("valid");
        }
        prop_assert_eq!(out.len(), 1);
        let got: Vec<Vec<u8>> = out[0].nals.iter().map(|n| n.to_vec()).collect();
        let want = expected_unit(&nals, |n| matches!(h265_type(n), 32..=34), |n| h265_type(n) < 32);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn a_lost_packet_never_yields_a_damaged_picture(
        body in proptest::collection::vec(any::<u8>(), 100..3000),
        max in 16usize..200,
        lost in any::<usize>(),
    ) {
        let mut idr = body;
        idr.insert(0, 0x65);
        let mut payloads = Vec::new();
        packetize_h264([&idr[..]], max, &mut payloads);
        let lost = lost % payloads.len();
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            if i != lost {
                d.push(&packet(i as u16, 0, p), &mut out).expect("valid");
            }
        }
        // The next picture ends whatever was gathered.
        d.push(&packet(payloads.len() as u16, 3000, &Payload { marker: true, data: Bytes::from_static(&[0x41, 1]) }), &mut out).expect("valid");
        prop_assert!(out.is_empty(), "{} units", out.len());
    }

    #[test]
    fn the_reorder_buffer_restores_order_and_never_repeats(
        start in any::<u16>(),
        swaps in proptest::collection::vec(any::<bool>(), 100),
        dups in proptest::collection::vec(0usize..200, 0..10),
    ) {
        // 200 packets, neighbours swapped pairwise, some sent twice.
        let mut order: Vec<u16> = (0..200u16).collect();
        for (k, swap) in swaps.iter().enumerate() {
            if *swap {
                order.swap(2 * k, 2 * k + 1);
            }
        }
        for d in dups {
            let seq = order[d];
            order.insert(d, seq);
        }
        let first = order[0];
        let mut r = ReorderBuffer::default();
        let mut out = Vec::new();
        for seq in &order {
            let p = Payload { marker: false, data: Bytes::new() };
            r.push(packet(start.wrapping_add(*seq), 0, &p), &mut out);
        }
        r.flush(&mut out);
        let got: Vec<u16> = out.iter().map(|p| p.sequence.wrapping_sub(start)).collect();
        // Everything from the first packet on, in order, once; only a packet
        // that was due before the very first one is lost.
        prop_assert_eq!(got, (first..200).collect::<Vec<u16>>());
    }

    #[test]
    fn aac_round_trips(units in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..2000), 1..10)) {
        let mut d = AacDepacketizer::new(AuHeaderLayout::AAC_HBR);
        let mut out = Vec::new();
        for (i, u) in units.iter().enumerate() {
            let p = packetize_aac(u).expect("fits");
            d.push(&packet(i as u16, i as u32 * 1024, &p), &mut out).expect("valid");
        }
        let got: Vec<(u32, Vec<u8>)> = out.into_iter().map(|(t, b)| (t, b.to_vec())).collect();
        let want: Vec<(u32, Vec<u8>)> = units.into_iter().enumerate().map(|(i, u)| (i as u32 * 1024, u)).collect();
        prop_assert_eq!(got, want);
    }
}
