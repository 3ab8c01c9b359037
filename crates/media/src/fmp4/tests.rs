//! Round trips through mp4-atom's decoder: what we write parses back as written.

use bytes::Bytes;
use mp4_atom::{Any, Decode, Ftyp, Mdat, Moof, Moov};
use tidewater_core::{AudioParams, Codec, TrackId, TrackInfo};

use super::*;
use crate::Error;

/// A real avcC (x264, High profile 3.1, 1280x720).
const AVCC: &[u8] = &[
    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50,
    0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83,
    0x19, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8, 0x00,
];

fn video() -> TrackInfo {
    TrackInfo::video(TrackId(1), Codec::H264, 1280, 720).with_config(Bytes::from_static(AVCC))
}

fn aac() -> TrackInfo {
    // AAC-LC, 44.1 kHz, stereo.
    TrackInfo::audio(TrackId(2), Codec::Aac, 44_100, 2)
        .with_config(Bytes::from_static(&[0x12, 0x10]))
}

fn sample(
    dts: u64,
    duration: u32,
    cts_offset: i32,
    keyframe: bool,
    fill: u8,
    len: usize,
) -> Sample {
    Sample {
        dts,
        duration,
        cts_offset,
        keyframe,
        data: Bytes::from(vec![fill; len]),
    }
}

#[test]
fn timescales() {
    assert_eq!(timescale_for(&video()), 90_000);
    assert_eq!(timescale_for(&aac()), 44_100);
    let opus = TrackInfo::audio(TrackId(3), Codec::Opus, 44_100, 2);
    assert_eq!(timescale_for(&opus), 48_000);
    // RTMP: 1 kHz catalog timescale; 40 ms -> 3600 ticks at 90 kHz.
    let rtmp_video = video().with_timescale(1000);
    assert_eq!(to_track_time(40, &rtmp_video), 3600);
    let no_rate = TrackInfo {
        audio: Some(AudioParams {
            sample_rate: 0,
            channels: 2,
        }),
        ..aac().with_timescale(48_000)
    };
    assert_eq!(timescale_for(&no_rate), 48_000);
}

#[test]
fn init_parses_back() {
    let (v, a) = (video(), aac());
    let init = init_segment(&[&v, &a]).expect("init");
    let mut buf = &init[..];
    let ftyp = Ftyp::decode(&mut buf).expect("ftyp");
    assert_eq!(ftyp.major_brand, b"iso6".into());
    let moov = Moov::decode(&mut buf).expect("moov");
    assert!(buf.is_empty());

    let trex = &moov.mvex.as_ref().expect("mvex").trex;
    assert_eq!(trex.iter().map(|t| t.track_id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(moov.mvhd.next_track_id, 3);
    assert_eq!(moov.trak.len(), 2);

    let vt = &moov.trak[0];
    assert_eq!(vt.tkhd.track_id, 1);
    assert_eq!(vt.tkhd.width.integer(), 1280);
    assert_eq!(vt.mdia.mdhd.timescale, 90_000);
    assert_eq!(vt.mdia.hdlr.handler, b"vide".into());
    match &vt.mdia.minf.stbl.stsd.codecs[..] {
        [mp4_atom::Codec::Avc1(avc1)] => {
            assert_eq!(avc1.visual.width, 1280);
            assert_eq!(avc1.visual.data_reference_index, 1);
            assert_eq!(avc1.avcc.avc_profile_indication, 0x64);
            assert_eq!(avc1.avcc.sequence_parameter_sets.len(), 1);
            assert_eq!(avc1.avcc.picture_parameter_sets.len(), 1);
        }
        other => panic!("{other:?}"),
    }

    let at = &moov.trak[1];
    assert_eq!(at.mdia.mdhd.timescale, 44_100);
    assert_eq!(at.mdia.hdlr.handler, b"soun".into());
    match &at.mdia.minf.stbl.stsd.codecs[..] {
        [mp4_atom::Codec::Mp4a(mp4a)] => {
            assert_eq!(mp4a.audio.channel_count, 2);
            assert_eq!(mp4a.audio.sample_rate.integer(), 44_100);
            let dec = &mp4a.esds.es_desc.dec_config;
            assert_eq!(dec.object_type_indication, 0x40);
            let ds = dec.dec_specific.as_ref().expect("dec specific");
            assert_eq!((ds.profile, ds.freq_index, ds.chan_conf), (2, 4, 2));
            assert_eq!(ds.raw, [0x12, 0x10]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn opus_from_opus_head_and_default() {
    // OpusHead: version 1, 2 channels, pre-skip 312, 48 kHz, gain 0, family 0.
    let mut head = b"OpusHead".to_vec();
    head.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]);
    let with_head =
        TrackInfo::audio(TrackId(2), Codec::Opus, 48_000, 2).with_config(Bytes::from(head));
    let without = TrackInfo::audio(TrackId(2), Codec::Opus, 48_000, 1);
    for (info, channels, pre_skip) in [(with_head, 2, 312), (without, 1, 0)] {
        let init = init_segment(&[&info]).expect("init");
        let mut buf = &init[..];
        Ftyp::decode(&mut buf).expect("ftyp");
        let moov = Moov::decode(&mut buf).expect("moov");
        match &moov.trak[0].mdia.minf.stbl.stsd.codecs[..] {
            [mp4_atom::Codec::Opus(opus)] => {
                assert_eq!(opus.dops.output_channel_count, channels);
                assert_eq!(opus.dops.pre_skip, pre_skip);
                assert_eq!(opus.audio.sample_rate.integer(), 48_000);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn init_refusals() {
    let no_config = TrackInfo::video(TrackId(1), Codec::H264, 640, 360);
    assert!(matches!(
        init_segment(&[&no_config]),
        Err(Error::Malformed { .. })
    ));
    let bad_config = video().with_config(Bytes::from_static(&[2, 0x64]));
    assert!(matches!(
        init_segment(&[&bad_config]),
        Err(Error::Malformed { .. })
    ));
    // VP8 without its `vpcC` (made from the first keyframe).
    let vp8 = TrackInfo::video(TrackId(1), Codec::Vp8, 640, 360);
    assert!(matches!(
        init_segment(&[&vp8]),
        Err(Error::Malformed { .. })
    ));
    let vp9 =
        TrackInfo::video(TrackId(1), Codec::Vp9, 640, 360).with_config(Bytes::from_static(&[
            1, 0, 0, 0, 0, 21, 0x82, 2, 2, 6, 0, 0,
        ]));
    let init = init_segment(&[&vp9]).expect("a vp09 entry");
    assert!(init.windows(4).any(|w| w == b"vp09") && init.windows(4).any(|w| w == b"vpcC"));
    let zero = TrackInfo {
        id: TrackId(0),
        ..video()
    };
    assert!(init_segment(&[&zero]).is_err());
    assert!(init_segment(&[]).is_err());
    let short_asc = aac().with_config(Bytes::from_static(&[0x12]));
    assert!(init_segment(&[&short_asc]).is_err());
    let short_head = TrackInfo::audio(TrackId(2), Codec::Opus, 48_000, 2)
        .with_config(Bytes::from_static(b"OpusHead\x01\x06"));
    assert!(init_segment(&[&short_head]).is_err());
}

/// Decodes one fragment into its moof and mdat, and every sample's bytes as
/// located by the trun data offsets and sizes.
fn parse_fragment(frag: &[u8]) -> (Moof, Vec<Vec<Vec<u8>>>) {
    let mut buf = frag;
    let moof = Moof::decode(&mut buf).expect("moof");
    let mdat = Mdat::decode(&mut buf).expect("mdat");
    assert!(buf.is_empty());
    let mut total = 0;
    let mut per_track = Vec::new();
    for traf in &moof.traf {
        assert!(traf.tfhd.default_base_is_moof);
        let trun = &traf.trun[0];
        let mut at = usize::try_from(trun.data_offset.expect("data offset")).expect("offset");
        let mut samples = Vec::new();
        for e in trun.samples.iter() {
            let size = e.size.expect("size") as usize;
            samples.push(frag[at..at + size].to_vec());
            at += size;
            total += size;
        }
        per_track.push(samples);
    }
    assert_eq!(total, mdat.data.len());
    (moof, per_track)
}

#[test]
fn fragment_with_two_runs_parses_back() {
    let v = [
        sample(180_000, 3000, 6000, true, 0xa0, 100),
        sample(183_000, 3000, 0, false, 0xa1, 30),
        sample(186_000, 3000, 3000, false, 0xa2, 20),
    ];
    let a = [
        sample(88_200, 1024, 0, true, 0xb0, 7),
        sample(89_224, 1024, 0, true, 0xb1, 9),
    ];
    let frag = fragment(
        7,
        &[
            TrackRun {
                track: TrackId(1),
                samples: &v,
            },
            TrackRun {
                track: TrackId(2),
                samples: &[],
            },
            TrackRun {
                track: TrackId(2),
                samples: &a,
            },
        ],
    )
    .expect("fragment");
    let (moof, data) = parse_fragment(&frag);
    assert_eq!(moof.mfhd.sequence_number, 7);
    assert_eq!(moof.traf.len(), 2, "the empty run is left out");

    let vt = &moof.traf[0];
    assert_eq!(vt.tfhd.track_id, 1);
    assert_eq!(
        vt.tfdt.as_ref().expect("tfdt").base_media_decode_time,
        180_000
    );
    // Non-keyframe flags by default, the keyframe's as first-sample flags.
    assert_eq!(vt.tfhd.default_sample_flags, Some(0x0101_0000));
    let entries: Vec<_> = vt.trun[0].samples.iter().collect();
    assert_eq!(entries[0].flags, Some(0x0200_0000));
    assert_eq!(
        entries.iter().map(|e| e.cts).collect::<Vec<_>>(),
        [Some(6000), Some(0), Some(3000)]
    );
    assert_eq!(
        entries.iter().map(|e| e.duration).collect::<Vec<_>>(),
        [Some(3000); 3]
    );
    assert_eq!(
        data[0],
        v.iter().map(|s| s.data.to_vec()).collect::<Vec<_>>()
    );

    let at = &moof.traf[1];
    assert_eq!(at.tfhd.track_id, 2);
    assert_eq!(
        at.tfdt.as_ref().expect("tfdt").base_media_decode_time,
        88_200
    );
    assert_eq!(at.tfhd.default_sample_flags, Some(0x0200_0000));
    assert!(
        at.trun[0]
            .samples
            .iter()
            .all(|e| e.cts.is_none() && e.flags.is_none())
    );
    assert_eq!(
        data[1],
        a.iter().map(|s| s.data.to_vec()).collect::<Vec<_>>()
    );
}

#[test]
fn fragment_flag_layouts() {
    // A keyframe in the middle: per-sample flags.
    let mixed = [
        sample(0, 10, 0, false, 1, 1),
        sample(10, 10, 0, true, 2, 1),
        sample(20, 10, 0, false, 3, 1),
    ];
    // One sample alone.
    let single = [sample(0, 10, 0, false, 1, 1)];
    for (samples, want) in [
        (&mixed[..], vec![0x0101_0000, 0x0200_0000, 0x0101_0000]),
        (&single[..], vec![0x0101_0000]),
    ] {
        let frag = fragment(
            1,
            &[TrackRun {
                track: TrackId(1),
                samples,
            }],
        )
        .expect("fragment");
        let (moof, _) = parse_fragment(&frag);
        let traf = &moof.traf[0];
        let got: Vec<u32> = traf.trun[0]
            .samples
            .iter()
            .map(|e| e.flags.or(traf.tfhd.default_sample_flags).expect("flags"))
            .collect();
        assert_eq!(got, want);
    }
}

#[test]
fn empty_fragment_is_refused() {
    assert!(fragment(1, &[]).is_err());
    assert!(
        fragment(
            1,
            &[TrackRun {
                track: TrackId(1),
                samples: &[]
            }]
        )
        .is_err()
    );
}

#[test]
fn init_and_fragments_read_as_one_file() {
    let v = video();
    let mut file = init_segment(&[&v]).expect("init").to_vec();
    for seq in 1..=3u32 {
        let base = u64::from(seq - 1) * 6000;
        let s = [
            sample(base, 3000, 0, true, 1, 5),
            sample(base + 3000, 3000, 0, false, 2, 5),
        ];
        file.extend_from_slice(
            &fragment(
                seq,
                &[TrackRun {
                    track: TrackId(1),
                    samples: &s,
                }],
            )
            .expect("fragment"),
        );
    }
    let mut buf = &file[..];
    let mut kinds = Vec::new();
    while !buf.is_empty() {
        let atom = Any::decode(&mut buf).expect("atom");
        kinds.push(atom.kind().to_string());
    }
    assert_eq!(
        kinds,
        [
            "ftyp", "moov", "moof", "mdat", "moof", "mdat", "moof", "mdat"
        ]
    );
}
