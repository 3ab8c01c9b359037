//! Which track an output that needs AAC announces in place of a stream's
//! Opus audio, and the frames a converted buffer becomes: the selection
//! every such output (RTMP players and pushes, HTTP-FLV, SRT, HTTP-TS,
//! TS-HLS) shares, so that they all agree on what is converted.

use bytes::Bytes;
use tidewater_core::{Catalog, Codec, Frame, TrackInfo, rescale};

use crate::pipeline::{OUTPUT_RATE, output_track};
use crate::shared::packets;

/// The AAC track `track` goes out as when it is the catalog's (first)
/// audio track and Opus; `None` for any other track. The AAC track keeps
/// the Opus track's id and clock (its timescale), so the converted frames
/// ([`aac_frames`]) slot in where the Opus ones were.
pub fn aac_in_place_of_opus(catalog: &Catalog, track: &TrackInfo) -> Option<TrackInfo> {
    aac_for(track, catalog.audio().is_some_and(|a| a.id == track.id))
}

/// [`aac_in_place_of_opus`] for a track that is (or not) its catalog's
/// first audio track.
fn aac_for(track: &TrackInfo, first_audio: bool) -> Option<TrackInfo> {
    if track.codec != Codec::Opus || !first_audio {
        return None;
    }
    let mut out = output_track(track, Codec::Aac)?;
    out.timescale = track.timescale;
    Some(out)
}

/// The AAC frames of a buffer [`AudioOutput::convert`](crate::AudioOutput::convert)
/// made from the Opus frame `opus`: frames of the same track, on its clock.
pub fn aac_frames<'a>(
    buffer: &'a Bytes,
    opus: &Frame,
    catalog: &Catalog,
) -> impl Iterator<Item = Frame> + 'a {
    let track = opus.track;
    let timescale = catalog.track(track).map_or(1000, |t| t.timescale);
    packets(buffer).map(move |p| {
        let pts = rescale(p.pts, OUTPUT_RATE, timescale);
        Frame::audio(track, Codec::Aac, pts, p.data)
    })
}

#[cfg(test)]
mod tests {
    use tidewater_core::TrackId;

    use super::*;

    #[test]
    fn only_the_first_opus_audio_track_is_replaced_on_its_own_clock() {
        let opus = TrackInfo::audio(TrackId(2), Codec::Opus, 48_000, 2).with_timescale(1000);
        let aac = aac_for(&opus, true).expect("replaced");
        assert_eq!(
            (aac.id, aac.codec, aac.timescale),
            (opus.id, Codec::Aac, 1000)
        );
        assert!(aac.config.is_some(), "announces its AudioSpecificConfig");
        assert_eq!(aac_for(&opus, false), None, "a second audio track");
        let video = TrackInfo::video(TrackId(1), Codec::H264, 640, 480);
        assert_eq!(aac_for(&video, true), None);
        let source = TrackInfo::audio(TrackId(2), Codec::Aac, 44_100, 2);
        assert_eq!(aac_for(&source, true), None, "AAC stays as it is");
    }
}
