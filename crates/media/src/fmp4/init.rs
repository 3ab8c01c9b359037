//! The init segment: `ftyp` + `moov` with one `trak` and one `trex` per track.

use bytes::{Bytes, BytesMut};
use mp4_atom::{
    Dinf, Dref, Encode, Ftyp, Hdlr, Mdhd, Mdia, Minf, Moov, Mvex, Mvhd, Smhd, Stbl, Stco, Stsd,
    Tkhd, Trak, Trex, Url, Vmhd,
};
use tidewater_core::{Codec, MediaKind, TrackInfo, rescale};

use super::sample_entry::sample_entry;
use crate::{Error, Result};

/// The timescale of `info`'s track in fMP4: 90 kHz for video, the sample
/// rate for audio (48 kHz for Opus), so audio durations are whole sample
/// counts (1024 per AAC frame, 960 per 20 ms Opus packet).
pub fn timescale_for(info: &TrackInfo) -> u32 {
    match (info.kind(), info.codec) {
        (MediaKind::Video, _) => 90_000,
        (MediaKind::Audio, Codec::Opus) => 48_000,
        (MediaKind::Audio, _) => match info.audio.map(|a| a.sample_rate) {
            Some(rate) if rate > 0 => rate,
            _ => info.timescale.max(1),
        },
    }
}

/// A timestamp of `info`'s track (in the catalog's timescale) in the fMP4
/// timescale of [`timescale_for`], rounded to the nearest tick.
pub fn to_track_time(ts: i64, info: &TrackInfo) -> i64 {
    rescale(ts, info.timescale, timescale_for(info))
}

/// An init segment (`ftyp` + `moov` with `mvex`) for `tracks`, in order.
///
/// Each track's `track_ID` is its [`TrackId`](tidewater_core::TrackId),
/// which must be non-zero; its media timescale is [`timescale_for`].
/// Fails when a track's codec has no fMP4 mapping or its decoder
/// configuration is missing or malformed.
pub fn init_segment(tracks: &[&TrackInfo]) -> Result<Bytes> {
    if tracks.is_empty() {
        return Err(Error::Malformed {
            format: "fMP4",
            what: "an init segment needs at least one track".into(),
        });
    }
    let mut traks = Vec::with_capacity(tracks.len());
    let mut trex = Vec::with_capacity(tracks.len());
    for info in tracks {
        if info.id.0 == 0 {
            return Err(Error::Malformed {
                format: "fMP4",
                what: "track id 0 is not a valid track_ID".into(),
            });
        }
        traks.push(trak(info)?);
        trex.push(Trex {
            track_id: info.id.0,
            default_sample_description_index: 1,
            ..Default::default()
        });
    }
    let next_track_id = tracks.iter().map(|t| t.id.0).max().unwrap_or(0) + 1;

    let ftyp = Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![b"iso6".into(), b"cmfc".into(), b"mp41".into()],
    };
    let moov = Moov {
        mvhd: Mvhd {
            timescale: 1000,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id,
            ..Default::default()
        },
        mvex: Some(Mvex { mehd: None, trex }),
        trak: traks,
        ..Default::default()
    };

    let mut buf = BytesMut::with_capacity(1024);
    ftyp.encode(&mut buf).map_err(encode_error)?;
    moov.encode(&mut buf).map_err(encode_error)?;
    Ok(buf.freeze())
}

fn trak(info: &TrackInfo) -> Result<Trak> {
    let video = info.kind() == MediaKind::Video;
    let params = info.video.unwrap_or_default();
    let tkhd = Tkhd {
        track_id: info.id.0,
        enabled: true,
        in_movie: true,
        // Audio tracks of one file form alternate group 1 (one plays at a time).
        alternate_group: u16::from(!video),
        volume: if video { 0.into() } else { 1.into() },
        width: if video {
            u16::try_from(params.width).unwrap_or(u16::MAX).into()
        } else {
            0.into()
        },
        height: if video {
            u16::try_from(params.height).unwrap_or(u16::MAX).into()
        } else {
            0.into()
        },
        ..Default::default()
    };
    let hdlr = if video {
        Hdlr {
            handler: b"vide".into(),
            name: "VideoHandler".into(),
        }
    } else {
        Hdlr {
            handler: b"soun".into(),
            name: "SoundHandler".into(),
        }
    };
    let minf = Minf {
        vmhd: video.then(Vmhd::default),
        smhd: (!video).then(Smhd::default),
        dinf: Dinf {
            dref: Dref {
                entries: vec![
                    Url {
                        location: String::new(),
                    }
                    .into(),
                ],
            },
        },
        stbl: Stbl {
            stsd: Stsd {
                codecs: vec![sample_entry(info)?],
            },
            stco: Some(Stco::default()),
            ..Default::default()
        },
        ..Default::default()
    };
    Ok(Trak {
        tkhd,
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: timescale_for(info),
                language: "und".into(),
                ..Default::default()
            },
            hdlr,
            minf,
        },
        ..Default::default()
    })
}

pub(super) fn encode_error(e: mp4_atom::Error) -> Error {
    Error::Malformed {
        format: "fMP4",
        what: format!("encoding: {e}"),
    }
}
