//! Fragments: one `moof` (`mfhd`, and per track `traf` with `tfhd`, `tfdt`,
//! `trun`) followed by one `mdat` holding every run's samples in order.
// Reads network or file input: no indexing, unwrap, expect or panic
// outside tests (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

use bytes::{BufMut, Bytes, BytesMut};
use mp4_atom::{Encode, Mfhd, Moof, Tfdt, Tfhd, Traf, Trun, TrunEntry, TrunSamples};
use tidewater_core::TrackId;

use super::init::encode_error;
use crate::{Error, Result};

/// `sample_flags` of a sync sample: `sample_depends_on` = 2 (depends on no other).
const SYNC: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: `sample_depends_on` = 1, `sample_is_non_sync_sample`.
const NON_SYNC: u32 = 0x0101_0000;

/// One sample of a fragment, timestamps in the track's fMP4 timescale
/// ([`timescale_for`](super::timescale_for)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Decode time.
    pub dts: u64,
    /// Time to the next sample's decode time.
    pub duration: u32,
    /// Presentation time minus decode time (positive with B-frames).
    pub cts_offset: i32,
    /// A sync sample (IDR/IRAP picture; every audio frame).
    pub keyframe: bool,
    /// The access unit in the kernel's canonical form.
    pub data: Bytes,
}

/// The samples of one track in a fragment. Its `tfdt` base media decode
/// time is `samples[0].dts`; the samples are taken as contiguous (each one's
/// decode time is the previous one's plus its duration).
#[derive(Clone, Copy, Debug)]
pub struct TrackRun<'a> {
    /// The track (its `track_ID` in the init segment).
    pub track: TrackId,
    /// Its samples, in decode order; an empty run is left out of the fragment.
    pub samples: &'a [Sample],
}

/// One `moof` + `mdat` with a `traf` per non-empty run, in the order given.
///
/// `sequence` is the `mfhd` sequence number (start at 1, increase by one per
/// fragment of the same track set). Fails when every run is empty or the
/// data does not fit a 32-bit `mdat`.
pub fn fragment(sequence: u32, runs: &[TrackRun<'_>]) -> Result<Bytes> {
    let runs: Vec<&TrackRun<'_>> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    if runs.is_empty() {
        return Err(Error::Malformed {
            format: "fMP4",
            what: "a fragment needs at least one sample".into(),
        });
    }

    let mut data_len: usize = 0;
    let mut moof = Moof {
        mfhd: Mfhd {
            sequence_number: sequence,
        },
        traf: Vec::with_capacity(runs.len()),
    };
    for run in &runs {
        moof.traf.push(traf(run));
        data_len += run.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    let mdat_len = u32::try_from(data_len + 8).map_err(|_| Error::Unsupported {
        format: "fMP4",
        what: format!("{data_len} bytes in one mdat"),
    })?;

    // The moof's size does not depend on the offsets' values (each is an
    // i32 field that is always present), so measure once, then fill them in.
    let mut scratch = BytesMut::new();
    moof.encode(&mut scratch).map_err(encode_error)?;
    let moof_len = scratch.len();
    let mut offset = moof_len + 8;
    for (traf, run) in moof.traf.iter_mut().zip(&runs) {
        let trun = traf.trun.first_mut();
        if let Some(trun) = trun {
            trun.data_offset = Some(i32::try_from(offset).map_err(|_| Error::Unsupported {
                format: "fMP4",
                what: "fragment larger than 2 GiB".into(),
            })?);
        }
        offset += run.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }

    let mut out = BytesMut::with_capacity(moof_len + 8 + data_len);
    moof.encode(&mut out).map_err(encode_error)?;
    debug_assert_eq!(out.len(), moof_len);
    out.put_u32(mdat_len);
    out.put_slice(b"mdat");
    for run in &runs {
        for s in run.samples {
            out.put_slice(&s.data);
        }
    }
    Ok(out.freeze())
}

fn flags(s: &Sample) -> u32 {
    if s.keyframe { SYNC } else { NON_SYNC }
}

fn traf(run: &TrackRun<'_>) -> Traf {
    let samples = run.samples;
    // The usual run is a keyframe followed by non-keyframes (or all sync
    // audio): the rest's flags go in tfhd, the first's in first_sample_flags,
    // so a sample costs 8-12 bytes of trun instead of 16.
    let rest_flags = samples.get(1).map(flags);
    let uniform_rest = rest_flags.is_some_and(|f| samples.iter().skip(1).all(|s| flags(s) == f));
    let first_flags = samples.first().map(flags);
    let default_flags = if uniform_rest { rest_flags } else { None };
    let with_cts = samples.iter().any(|s| s.cts_offset != 0);

    let entries: Vec<TrunEntry> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| TrunEntry {
            duration: Some(s.duration),
            size: Some(u32::try_from(s.data.len()).unwrap_or(u32::MAX)),
            flags: match (i, default_flags) {
                (0, Some(d)) if first_flags == Some(d) => None,
                (0, _) => Some(flags(s)),
                (_, Some(_)) => None,
                (_, None) => Some(flags(s)),
            },
            cts: with_cts.then_some(i64::from(s.cts_offset)),
        })
        .collect();

    Traf {
        tfhd: Tfhd {
            track_id: run.track.0,
            default_sample_flags: default_flags,
            default_base_is_moof: true,
            ..Default::default()
        },
        tfdt: Some(Tfdt {
            base_media_decode_time: samples.first().map_or(0, |s| s.dts),
        }),
        trun: vec![Trun {
            data_offset: Some(0),
            samples: TrunSamples::Explicit(entries),
        }],
        ..Default::default()
    }
}
