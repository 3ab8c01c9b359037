//! Stable twin of the `sdp` fuzz target: the same entry point
//! (`tidewater_rtsp::fuzzing::sdp`) on random bytes and on the SDPs ffmpeg
//! 5.1 announces (`-f rtsp`: H.264 + AAC, H.265 + Opus) damaged line by line
//! and byte by byte. It must never panic; the real ones must parse to the
//! codecs and parameter sets they carry.

use proptest::prelude::*;
use tidewater_core::Codec;
use tidewater_rtsp::fuzzing::sdp;

const H264_AAC: &str = include_str!("data/ffmpeg-h264-aac.sdp");
const H265_OPUS: &str = include_str!("data/ffmpeg-h265-opus.sdp");

/// Lines an SDP has, to mix into damaged ones.
const PIECES: &[&str] = &[
    "m=video 0 RTP/AVP 96",
    "m=audio 0 RTP/AVP",
    "m=application 0 RTP/AVP x",
    "a=rtpmap:96 H264/0",
    "a=rtpmap:96 H265/90000/999",
    "a=rtpmap:97 MPEG4-GENERIC/48000/2",
    "a=fmtp:97 mode=AAC-hbr;sizelength=99;config=zz",
    "a=fmtp:96 sprop-parameter-sets=,,,;packetization-mode=2",
    "a=fmtp:96 sprop-vps=!!;sprop-sps=QgE=;sprop-pps=",
    "a=control:",
    "a=control:rtsp://h/../../x",
    "b=AS:-1",
    "c=IN IP6 ::1",
    "x",
    "=",
    "",
];

#[test]
fn the_real_ones_parse() {
    let tracks = tidewater_rtsp::sdp::parse(H264_AAC.as_bytes()).expect("H.264 + AAC");
    let codecs: Vec<_> = tracks.iter().map(|t| t.codec()).collect();
    assert_eq!(codecs, [Some(Codec::H264), Some(Codec::Aac)]);
    assert_eq!(tracks[0].sprop_parameter_sets().len(), 2);
    assert!(tracks[1].config().is_some());
    let tracks = tidewater_rtsp::sdp::parse(H265_OPUS.as_bytes()).expect("H.265 + Opus");
    let codecs: Vec<_> = tracks.iter().map(|t| t.codec()).collect();
    assert_eq!(codecs, [Some(Codec::H265), Some(Codec::Opus)]);
    assert_eq!(tracks[0].sprop("sprop-sps").len(), 1);
    sdp(H264_AAC.as_bytes());
    sdp(H265_OPUS.as_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        sdp(&data);
    }

    #[test]
    fn real_ones_damaged_by_line(
        which in any::<bool>(),
        edits in proptest::collection::vec(
            (any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..6),
    ) {
        let text = if which { H264_AAC } else { H265_OPUS };
        let mut lines: Vec<&str> = text.split("\r\n").collect();
        for (line, piece) in edits {
            let i = line.index(lines.len());
            lines[i] = *piece.get(PIECES);
        }
        sdp(lines.join("\r\n").as_bytes());
    }

    #[test]
    fn real_ones_damaged_by_byte(
        which in any::<bool>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut data = if which { H264_AAC } else { H265_OPUS }.as_bytes().to_vec();
        for (at, byte) in edits {
            let i = at.index(data.len());
            data[i] = byte;
        }
        sdp(&data);
    }
}
