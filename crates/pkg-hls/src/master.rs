//! The multivariant playlist: one variant, described from the stream.

use std::fmt::Write as _;

use tidewater_media::rfc6381::codec_string;

use crate::normalize::TrackSet;

/// What the variant's attributes are computed from.
#[derive(Clone, Debug)]
pub struct VariantInfo<'a> {
    /// The packaged tracks.
    pub tracks: &'a TrackSet,
    /// Peak segment bit rate measured, bits per second (0: unknown).
    pub peak_bitrate: u64,
    /// Measured video frame interval in 90 kHz ticks (0: unknown).
    pub frame_interval90: i64,
    /// `EXT-X-VERSION` of the media playlist.
    pub version: u32,
}

/// `#EXTM3U` with one `EXT-X-STREAM-INF` pointing at `index.m3u8`:
/// `BANDWIDTH` (the measured peak segment bit rate, else the catalog's
/// nominal rates plus 10 %), `CODECS` (RFC 6381, from the decoder
/// configurations; left out when one track's cannot be said),
/// `RESOLUTION` and `FRAME-RATE` (the catalog's, else measured).
pub fn render(v: &VariantInfo<'_>) -> String {
    let nominal: u64 = v
        .tracks
        .tracks()
        .iter()
        .filter_map(|t| t.bitrate)
        .map(u64::from)
        .sum();
    let bandwidth = match v.peak_bitrate {
        0 => (nominal + nominal / 10).max(1),
        peak => peak,
    };
    let mut attrs = format!("BANDWIDTH={bandwidth}");
    let codecs: Option<Vec<String>> = v.tracks.tracks().iter().map(|t| codec_string(t)).collect();
    if let Some(codecs) = codecs {
        let _ = write!(attrs, ",CODECS=\"{}\"", codecs.join(","));
    }
    if let Some(video) = v.tracks.video.as_ref().and_then(|t| t.video) {
        if video.width > 0 && video.height > 0 {
            let _ = write!(attrs, ",RESOLUTION={}x{}", video.width, video.height);
        }
        let rate = match video.frame_rate {
            Some((n, d)) if n > 0 && d > 0 => Some(f64::from(n) / f64::from(d)),
            _ if v.frame_interval90 > 0 => Some(90_000.0 / v.frame_interval90 as f64),
            _ => None,
        };
        if let Some(rate) = rate {
            let _ = write!(attrs, ",FRAME-RATE={rate:.3}");
        }
    }
    format!(
        "#EXTM3U\n#EXT-X-VERSION:{}\n#EXT-X-STREAM-INF:{attrs}\nindex.m3u8\n",
        v.version
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim_tests::track_set;

    #[test]
    fn variant_from_the_stream_parses_with_m3u8_rs() {
        let tracks = track_set(true, true);
        let text = render(&VariantInfo {
            tracks: &tracks,
            peak_bitrate: 2_500_000,
            frame_interval90: 3000,
            version: 6,
        });
        let parsed = m3u8_rs::parse_master_playlist_res(text.as_bytes()).expect("parses");
        let v = &parsed.variants[0];
        assert_eq!(v.uri, "index.m3u8");
        assert_eq!(v.bandwidth, 2_500_000);
        assert_eq!(v.codecs.as_deref(), Some("avc1.64001f,mp4a.40.2"));
        let res = v.resolution.expect("resolution");
        assert_eq!((res.width, res.height), (1280, 720));
        assert_eq!(v.frame_rate, Some(30.0));
    }

    #[test]
    fn audio_only_without_measurements() {
        let tracks = track_set(false, true);
        let text = render(&VariantInfo {
            tracks: &tracks,
            peak_bitrate: 0,
            frame_interval90: 0,
            version: 3,
        });
        let parsed = m3u8_rs::parse_master_playlist_res(text.as_bytes()).expect("parses");
        let v = &parsed.variants[0];
        assert_eq!(v.codecs.as_deref(), Some("mp4a.40.2"));
        assert!(v.resolution.is_none() && v.frame_rate.is_none());
        assert_eq!(v.bandwidth, 1);
    }
}
