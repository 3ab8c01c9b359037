//! Which video codecs the MPEG-TS outputs carry, so that a reader of a
//! stream they cannot carry is refused with the reason rather than served
//! sound without picture.

use tidewater_core::{Codec, MediaKind, TrackInfo};

/// Why a stream cannot be read as MPEG-TS (SRT, HTTP-TS, TS-HLS): its video
/// is neither H.264 nor H.265 (VP8, VP9 and AV1 from a WHIP publish have
/// no TS mapping in this server).
pub fn ts_uncarried_video(tracks: &[TrackInfo]) -> Option<String> {
    let video = tracks.iter().find(|t| t.kind() == MediaKind::Video)?;
    (!matches!(video.codec, Codec::H264 | Codec::H265)).then(|| {
        format!(
            "the stream's video is {}, which MPEG-TS cannot carry: play it over LL-HLS or DASH",
            video.codec.name()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::TrackId;

    #[test]
    fn only_h264_and_h265_video_go_as_ts() {
        let of = |codec| vec![TrackInfo::video(TrackId(1), codec, 640, 360)];
        assert_eq!(ts_uncarried_video(&of(Codec::H264)), None);
        assert_eq!(ts_uncarried_video(&of(Codec::H265)), None);
        for codec in [Codec::Vp8, Codec::Vp9, Codec::Av1] {
            let why = ts_uncarried_video(&of(codec)).expect("refused");
            assert!(why.contains(codec.name()), "{why}");
        }
        let audio = vec![TrackInfo::audio(TrackId(1), Codec::Opus, 48_000, 2)];
        assert_eq!(ts_uncarried_video(&audio), None);
    }
}
