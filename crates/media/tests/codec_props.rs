//! Stable twin of the `codec_record` fuzz target: the same entry point
//! (`tidewater_media::fuzzing::codec_record`) on random records and on
//! damaged real ones (an x264 `avcC`, an x265 `hvcC`, AAC and Opus
//! configurations, ADTS headers). It must never panic, and records built
//! again from what parses must parse to the same contents.

use proptest::prelude::*;
use tidewater_media::codec;
use tidewater_media::fuzzing::codec_record;

const SPS: [u8; 25] = [
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
];
const PPS: [u8; 4] = [0x68, 0xeb, 0xe3, 0xcb];

/// The `hvcC` x265 wrote for a 320x240 Main stream (`ffmpeg -c:v libx265`,
/// MP4), its VPS, SPS and PPS arrays (the SEI array left out).
const HVCC: &[u8] = &[
    0x01, 0x04, 0x08, 0x00, 0x00, 0x00, 0x9e, 0x08, 0x00, 0x00, 0x00, 0x00, 0x3c, 0xf0, 0x00, 0xfc,
    0xff, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03, 0xa0, 0x00, 0x01, 0x00, 0x17, 0x40, 0x01, 0x0c, 0x01,
    0xff, 0xff, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08, 0x00, 0x00, 0x03, 0x00, 0x00, 0x3c,
    0x95, 0x98, 0x09, 0xa1, 0x00, 0x01, 0x00, 0x2b, 0x42, 0x01, 0x01, 0x04, 0x08, 0x00, 0x00, 0x03,
    0x00, 0x9e, 0x08, 0x00, 0x00, 0x03, 0x00, 0x00, 0x3c, 0x90, 0x01, 0x41, 0x01, 0xe2, 0xcb, 0x2b,
    0x34, 0x92, 0x65, 0x78, 0x0b, 0x70, 0x20, 0x20, 0x00, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00,
    0x00, 0x06, 0x42, 0xa2, 0x00, 0x01, 0x00, 0x08, 0x44, 0x01, 0xc1, 0x72, 0x86, 0x0c, 0x46, 0x24,
];

const OPUS_HEAD: &[u8] = b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00";

fn real_records() -> Vec<Vec<u8>> {
    let avcc = codec::build_avcc(&[&SPS], &[&PPS]).expect("avcC");
    vec![
        [&[0u8][..], &avcc].concat(),
        [&[1u8][..], HVCC].concat(),
        vec![2, 0x12, 0x10],
        vec![2, 0x13, 0x90, 0x56, 0xe5, 0xa5, 0x48, 0x00],
        vec![3, 0xff, 0xf1, 0x50, 0x80, 0x2e, 0x7f, 0xfc],
        [&[4u8][..], OPUS_HEAD].concat(),
        [&[5u8][..], &SPS].concat(),
    ]
}

#[test]
fn real_records_parse_and_round_trip() {
    let avcc = codec::build_avcc(&[&SPS], &[&PPS]).expect("avcC");
    assert_eq!(
        codec::parse_avcc(&avcc).expect("avcC").size,
        Some((320, 240))
    );
    let hvcc = codec::parse_hvcc(HVCC).expect("hvcC");
    assert_eq!((hvcc.vps.len(), hvcc.sps.len(), hvcc.pps.len()), (1, 1, 1));
    assert_eq!(hvcc.size, Some((320, 240)));
    assert_eq!(codec::parse_asc(&[0x12, 0x10]), Some((44_100, 2)));
    assert!(codec::AdtsHeader::parse(&[0xff, 0xf1, 0x50, 0x80, 0x2e, 0x7f, 0xfc]).is_some());
    for r in real_records() {
        codec_record(&r);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_records(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        codec_record(&data);
    }

    #[test]
    fn real_records_damaged(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let records = real_records();
        let mut data = which.get(&records).clone();
        for (at, byte) in edits {
            let i = 1 + at.index(data.len() - 1);
            data[i] = byte;
        }
        codec_record(&data);
        data.truncate(1 + cut.index(data.len()));
        codec_record(&data);
    }
}
