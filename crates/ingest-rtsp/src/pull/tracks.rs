//! Retina's streams and frames in the kernel's terms: track infos with
//! their decoder configuration, and payloads in canonical form.
// Reads network input: no indexing, unwrap, expect or panic that a peer
// could reach (issue 18); where an invariant proves one safe, an allow says which.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use bytes::{BufMut, Bytes, BytesMut};
use retina::codec::{ParametersRef, VideoParametersCodec};
use tidewater_core::{Codec, TrackId, TrackInfo};
use tidewater_media::codec::parse_avcc;
use tidewater_media::rtp::dts::{DtsDeriver, h264_reorder_depth};

/// What a source's stream becomes, decided from the SDP before `SETUP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// Set up and published with this codec.
    Codec(Codec),
    /// Not set up: the reason, for the log line.
    Skipped(&'static str),
}

/// Whether a stream of `media` with RTP `encoding` (as the SDP names it)
/// is pulled. Retina depacketizes H.264, H.265 and AAC (`mpeg4-generic`)
/// into the kernel's forms; Opus it does not depacketize, so a source with
/// an Opus track goes through our own depacketizers (see `raw`); G.711,
/// MJPEG and the rest the kernel does not carry.
pub fn wanted(media: &str, encoding: &str) -> Wanted {
    match (media, encoding.to_ascii_lowercase().as_str()) {
        ("video", "h264") => Wanted::Codec(Codec::H264),
        ("video", "h265") => Wanted::Codec(Codec::H265),
        ("audio", "mpeg4-generic") => Wanted::Codec(Codec::Aac),
        ("audio", "opus") => Wanted::Codec(Codec::Opus),
        ("video", _) | ("audio", _) => Wanted::Skipped("a codec the server does not carry"),
        _ => Wanted::Skipped("not audio or video"),
    }
}

/// The track info of a stream whose parameters are known.
pub fn track_info(id: TrackId, params: &ParametersRef<'_>, clock_rate: u32) -> Option<TrackInfo> {
    match params {
        ParametersRef::Video(v) => {
            let codec = match v.codec_params() {
                VideoParametersCodec::H264 { .. } => Codec::H264,
                VideoParametersCodec::H265 { .. } => Codec::H265,
                _ => return None,
            };
            let (w, h) = v.pixel_dimensions();
            Some(
                TrackInfo::video(id, codec, w, h)
                    .with_timescale(clock_rate.max(1))
                    .with_config(Bytes::copy_from_slice(v.extra_data())),
            )
        }
        ParametersRef::Audio(a) => {
            // Only AAC is set up; its extra data is the AudioSpecificConfig.
            if !a.rfc6381_codec().is_some_and(|c| c.starts_with("mp4a.40")) {
                return None;
            }
            let channels = u8::try_from(a.channels().get()).unwrap_or(u8::MAX);
            Some(
                TrackInfo::audio(id, Codec::Aac, a.clock_rate(), channels)
                    .with_timescale(a.clock_rate().max(1))
                    .with_config(Bytes::copy_from_slice(a.extra_data())),
            )
        }
        _ => None,
    }
}

/// The reorder depth a video track's configuration states: for H.264 the
/// first SPS of its `avcC` (`None`, learned from the pictures, when it does
/// not say, and for H.265).
pub fn reorder_depth(info: &TrackInfo) -> Option<usize> {
    if info.codec != Codec::H264 {
        return None;
    }
    let avcc = parse_avcc(info.config.as_deref()?)?;
    h264_reorder_depth(avcc.sps.first()?)
}

/// Decode times of one pulled video track, derived from its presentation
/// times as the publish path derives them (see
/// [`DtsDeriver`]): retina hands out presentation times only, which a
/// camera with B-frames sends out of order.
#[derive(Clone, Debug)]
pub struct DecodeTimes {
    deriver: DtsDeriver,
}

impl DecodeTimes {
    /// For a track of `clock_rate` with a reorder depth (`None`: learned).
    pub fn new(depth: Option<usize>, clock_rate: u32) -> Self {
        Self {
            deriver: DtsDeriver::new(depth, (clock_rate / 30).max(1)),
        }
    }

    /// A new configuration's depth (a new SPS); the timeline carries on.
    pub fn set_depth(&mut self, depth: Option<usize>) {
        self.deriver.set_depth(depth);
    }

    /// The decode time of the next picture in decode order, whose
    /// presentation time is `pts` (extended, in the track's clock).
    pub fn next(&mut self, pts: i64) -> i64 {
        // The deriver works on 32-bit RTP time and answers with a value
        // whose distance below the 32-bit time is the decode offset.
        let raw = pts as u32;
        let offset = i64::from(raw) - self.deriver.next(raw);
        pts - offset.max(0)
    }
}

/// A video access unit of 4-byte length-prefixed NAL units without its
/// access unit delimiters (the kernel's form has none), or `None` when the
/// lengths do not add up.
pub fn canonical_video(codec: Codec, data: Vec<u8>) -> Option<Bytes> {
    let is_aud = |nal: &[u8]| match (codec, nal.first()) {
        (Codec::H264, Some(b)) => b & 0x1f == 9,
        (Codec::H265, Some(b)) => (b >> 1) & 0x3f == 35,
        _ => false,
    };
    let mut nals = Vec::new();
    let mut rest = &data[..];
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > tail.len() {
            return None;
        }
        let (nal, tail) = tail.split_at(len);
        nals.push(nal);
        rest = tail;
    }
    if !nals.iter().any(|n| is_aud(n)) {
        return Some(Bytes::from(data));
    }
    let mut out = BytesMut::with_capacity(data.len());
    for nal in nals.into_iter().filter(|n| !n.is_empty() && !is_aud(n)) {
        out.put_u32(nal.len() as u32);
        out.put_slice(nal);
    }
    (!out.is_empty()).then(|| out.freeze())
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

    fn au(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&(n.len() as u32).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn access_unit_delimiters_are_dropped_and_the_rest_kept() {
        let with_aud = au(&[&[0x09, 0xf0], &[0x65, 1, 2, 3]]);
        assert_eq!(
            canonical_video(Codec::H264, with_aud).as_deref(),
            Some(&au(&[&[0x65, 1, 2, 3]])[..])
        );
        let hevc = au(&[&[35 << 1, 1, 0x50], &[19 << 1, 1, 9]]);
        assert_eq!(
            canonical_video(Codec::H265, hevc).as_deref(),
            Some(&au(&[&[19 << 1, 1, 9]])[..])
        );
        let plain = au(&[&[0x41, 7]]);
        assert_eq!(
            canonical_video(Codec::H264, plain.clone()).as_deref(),
            Some(&plain[..])
        );
    }

    #[test]
    fn decode_times_of_reordered_pictures_rise_and_never_pass_presentation() {
        // I P B B in decode order (presentation 0, 3, 1, 2 frames) at 90 kHz.
        let mut d = DecodeTimes::new(Some(1), 90_000);
        let pts = [0i64, 9_000, 3_000, 6_000, 18_000, 12_000, 15_000];
        let dts: Vec<i64> = pts.iter().map(|&p| d.next(p + 900_000)).collect();
        for (i, (&p, &t)) in pts.iter().zip(&dts).enumerate() {
            assert!(t <= p + 900_000, "picture {i}: dts {t} after pts {p}");
            if i > 0 {
                assert!(t > dts[i - 1], "picture {i}: dts {dts:?} not rising");
            }
        }
        // Without reordering decode time is presentation time.
        let mut plain = DecodeTimes::new(Some(0), 90_000);
        assert_eq!(plain.next(5_000_000_000), 5_000_000_000);
        assert_eq!(plain.next(5_000_003_000), 5_000_003_000);
    }

    #[test]
    fn the_depth_comes_from_the_first_sps() {
        // No avcC: nothing stated; H.265 never states one here.
        let info = TrackInfo::video(TrackId(1), Codec::H264, 0, 0);
        assert_eq!(reorder_depth(&info), None);
        let hevc = TrackInfo::video(TrackId(1), Codec::H265, 0, 0).with_config(Bytes::new());
        assert_eq!(reorder_depth(&hevc), None);
    }

    #[test]
    fn lengths_past_the_end_are_refused() {
        assert_eq!(canonical_video(Codec::H264, vec![0, 0, 0, 9, 0x65]), None);
        assert_eq!(canonical_video(Codec::H264, vec![0, 0]), None);
    }

    #[test]
    fn codecs_the_server_does_not_carry_are_skipped() {
        assert_eq!(wanted("video", "H264"), Wanted::Codec(Codec::H264));
        assert_eq!(wanted("audio", "MPEG4-GENERIC"), Wanted::Codec(Codec::Aac));
        assert_eq!(wanted("audio", "opus"), Wanted::Codec(Codec::Opus));
        assert!(matches!(wanted("audio", "PCMU"), Wanted::Skipped(_)));
        assert!(matches!(wanted("video", "JPEG"), Wanted::Skipped(_)));
        assert!(matches!(
            wanted("application", "vnd.onvif.metadata"),
            Wanted::Skipped(_)
        ));
    }
}
