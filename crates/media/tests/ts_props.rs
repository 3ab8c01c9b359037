//! Stable twin of the `ts_demux` fuzz target: the demuxer on random bytes,
//! on random splits of a valid stream, and on a valid stream with packets
//! dropped, duplicated or damaged, never panics, stays bounded, and never
//! emits a frame that differs from one that was sent; a live input cut
//! anywhere ends (`end_live`) without a cut frame.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tidewater_core::{Codec, Frame, TrackInfo};
use tidewater_media::codec;
use tidewater_media::fuzzing::ts_demux;
use tidewater_media::ts::{AUDIO_TRACK, DemuxEvent, TsDemuxer, TsMuxer, VIDEO_TRACK};

const SPS: [u8; 25] = [
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
];
const PPS: [u8; 4] = [0x68, 0xeb, 0xe3, 0xcb];

/// 40 pictures (GOP 10) and AAC, muxed; and the frames as the demuxer gives them back.
fn stream() -> (Vec<u8>, Vec<Frame>) {
    let tracks = vec![
        TrackInfo::video(VIDEO_TRACK, Codec::H264, 320, 240)
            .with_config(codec::build_avcc(&[&SPS], &[&PPS]).expect("avcC")),
        TrackInfo::audio(AUDIO_TRACK, Codec::Aac, 48_000, 2)
            .with_timescale(90_000)
            .with_config(Bytes::from_static(&[0x11, 0x90])),
    ];
    let mut mux = TsMuxer::new(&tracks).expect("muxer");
    let mut out = BytesMut::new();
    let mut expect = Vec::new();
    for i in 0..40usize {
        if i % 10 == 0 {
            mux.write_psi(&mut out);
        }
        let key = i % 10 == 0;
        let mut nal = vec![if key { 0x65 } else { 0x41 }];
        nal.extend((0..(200 + i * 53)).map(|j| ((i + j) % 250) as u8 | 1));
        let dts = i as i64 * 3600;
        let v = Frame::video(
            VIDEO_TRACK,
            Codec::H264,
            dts,
            dts,
            key,
            codec::to_length_prefixed([&nal[..]]),
        );
        mux.write_frame(&v, &mut out).expect("video");
        let mut back = v.clone();
        if key {
            back.payload = codec::to_length_prefixed([&SPS[..], &PPS, &nal]);
        }
        expect.push(back);
        let a = Frame::audio(
            AUDIO_TRACK,
            Codec::Aac,
            dts,
            Bytes::from(vec![i as u8; 100 + i]),
        );
        mux.write_frame(&a, &mut out).expect("audio");
        expect.push(a);
    }
    (out.to_vec(), expect)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = ts_demux(&data);
    }

    #[test]
    fn random_ts_packets_never_panic(
        step in any::<u8>(),
        packets in proptest::collection::vec(
            (any::<u16>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 184)), 0..40)
    ) {
        let mut data = vec![step];
        for (pid, flags, body) in packets {
            // A sync byte, then a header whose PID favours the PSI and the muxer's PIDs.
            let pid = [0, 0x1000, 0x100, 0x101, pid & 0x1fff][usize::from(flags % 5)];
            data.extend_from_slice(&[0x47, (flags & 0xe0) | (pid >> 8) as u8, pid as u8, flags]);
            data.extend_from_slice(&body);
        }
        let _ = ts_demux(&data);
    }

    #[test]
    fn any_split_gives_the_same_frames(step in 1usize..2000) {
        let (data, expect) = stream();
        let mut with_step = vec![0u8];
        with_step.extend_from_slice(&data);
        prop_assert!(ts_demux(&with_step).is_ok());
        let mut d = TsDemuxer::new();
        for c in data.chunks(step) {
            d.push(c).expect("valid");
        }
        d.flush();
        let mut got = Vec::new();
        while let Some(ev) = d.poll() {
            if let DemuxEvent::Frame(f) = ev {
                got.push(f);
            }
        }
        prop_assert_eq!(got, expect);
    }

    #[test]
    fn lost_duplicated_or_damaged_packets_never_yield_a_corrupt_frame(
        edits in proptest::collection::vec((0usize..10_000, 0u8..3), 1..6)
    ) {
        let (data, expect) = stream();
        let mut packets: Vec<Vec<u8>> = data.chunks(188).map(<[u8]>::to_vec).collect();
        for (at, kind) in edits {
            let i = at % packets.len();
            // Never the first PAT/PMT: a stream that never had tables is an error by design.
            if i < 2 { continue; }
            match kind {
                0 => { packets.remove(i); }
                1 => { let p = packets[i].clone(); packets.insert(i, p); }
                _ => packets[i][1] |= 0x80, // transport_error_indicator
            }
        }
        let mut d = TsDemuxer::new();
        d.push(&packets.concat()).expect("still a transport stream");
        d.flush();
        while let Some(ev) = d.poll() {
            if let DemuxEvent::Frame(f) = ev {
                prop_assert!(expect.contains(&f), "a frame that was never sent: {:?}", f);
            }
        }
    }

    #[test]
    fn a_live_input_cut_anywhere_ends_without_a_cut_frame(cut in 3usize..10_000) {
        let (data, expect) = stream();
        let mut packets: Vec<Vec<u8>> = data.chunks(188).map(<[u8]>::to_vec).collect();
        // As ffmpeg muxes video: PES_packet_length 0, so only the next PES ends one.
        for p in &mut packets {
            let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
            if pid == 0x100 && p[1] & 0x40 != 0 {
                let start = 4 + if p[3] & 0x20 != 0 { 1 + usize::from(p[4]) } else { 0 };
                p[start + 4] = 0;
                p[start + 5] = 0;
            }
        }
        packets.truncate(cut % packets.len() + 1);
        let mut d = TsDemuxer::new();
        d.push(&packets.concat()).expect("a transport stream");
        d.end_live();
        while let Some(ev) = d.poll() {
            if let DemuxEvent::Frame(f) = ev {
                prop_assert!(expect.contains(&f), "a cut frame: {:?}", f.dts);
            }
        }
    }
}
