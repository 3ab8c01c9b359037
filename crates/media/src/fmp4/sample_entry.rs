//! The `stsd` sample entry of a track, built from its catalog entry.
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

use mp4_atom::{
    Atom, Audio, Av01, Av1c, Avc1, Avcc, Dops, Hvc1, Hvcc, Mp4a, Opus, Visual, Vp08, Vp09, VpcC,
    esds,
};
use tidewater_core::{Codec, TrackInfo};

use crate::{Error, Result};

const FORMAT: &str = "fMP4";

/// The sample entry (`avc1`, `hvc1`, `av01`, `vp08`, `vp09`, `mp4a`,
/// `Opus`) of `info`.
pub(super) fn sample_entry(info: &TrackInfo) -> Result<mp4_atom::Codec> {
    match info.codec {
        Codec::H264 => {
            let avcc =
                Avcc::decode_body(&mut config(info, "avcC")?).map_err(|e| malformed("avcC", e))?;
            Ok(Avc1 {
                visual: visual(info),
                avcc,
                ..Default::default()
            }
            .into())
        }
        Codec::H265 => {
            let hvcc =
                Hvcc::decode_body(&mut config(info, "hvcC")?).map_err(|e| malformed("hvcC", e))?;
            Ok(Hvc1 {
                visual: visual(info),
                hvcc,
                ..Default::default()
            }
            .into())
        }
        Codec::Av1 => {
            let av1c =
                Av1c::decode_body(&mut config(info, "av1C")?).map_err(|e| malformed("av1C", e))?;
            Ok(Av01 {
                visual: visual(info),
                av1c,
                ..Default::default()
            }
            .into())
        }
        // The VP codec ISO-BMFF binding: the catalog keeps the `vpcC`
        // payload (version 1 and flags, then the record).
        Codec::Vp8 => Ok(Vp08 {
            visual: visual(info),
            vpcc: vpcc(info)?,
            ..Default::default()
        }
        .into()),
        Codec::Vp9 => Ok(Vp09 {
            visual: visual(info),
            vpcc: vpcc(info)?,
            ..Default::default()
        }
        .into()),
        Codec::Aac => {
            let asc = config(info, "AudioSpecificConfig")?;
            let Some(&[a0, a1]) = asc.first_chunk::<2>() else {
                return Err(Error::Malformed {
                    format: "AudioSpecificConfig",
                    what: format!("{} bytes, at least 2 needed", asc.len()),
                });
            };
            let object_type = a0 >> 3;
            let freq_index = ((a0 & 7) << 1) | (a1 >> 7);
            let chan_conf = (a1 >> 3) & 0xf;
            let bitrate = info.bitrate.unwrap_or(0);
            Ok(Mp4a {
                audio: audio(info, chan_conf),
                esds: mp4_atom::Esds {
                    es_desc: esds::EsDescriptor {
                        es_id: u16::try_from(info.id.0).unwrap_or(0),
                        dec_config: esds::DecoderConfig {
                            // ISO 14496-1 objectTypeIndication 0x40: MPEG-4 audio.
                            object_type_indication: 0x40,
                            // streamType 5: audio.
                            stream_type: 5,
                            max_bitrate: bitrate,
                            avg_bitrate: bitrate,
                            dec_specific: Some(esds::DecoderSpecific {
                                profile: object_type,
                                freq_index,
                                chan_conf,
                                raw: asc.to_vec(),
                            }),
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                },
                btrt: None,
                taic: None,
            }
            .into())
        }
        Codec::Opus => {
            let dops = match info.config.as_deref() {
                Some(c) if c.starts_with(b"OpusHead") => opus_head_to_dops(c)?,
                Some(mut c) => Dops::decode_body(&mut c).map_err(|e| malformed("dOps", e))?,
                None => Dops {
                    output_channel_count: info.audio.map_or(2, |a| a.channels.max(1)),
                    pre_skip: 0,
                    input_sample_rate: 48_000,
                    output_gain: 0,
                    channel_mapping: None,
                },
            };
            Ok(Opus {
                audio: audio(info, dops.output_channel_count),
                dops,
                btrt: None,
            }
            .into())
        }
        other => Err(Error::Unsupported {
            format: FORMAT,
            what: format!("codec {}", other.name()),
        }),
    }
}

fn config<'a>(info: &'a TrackInfo, what: &'static str) -> Result<&'a [u8]> {
    info.config.as_deref().ok_or_else(|| Error::Malformed {
        format: FORMAT,
        what: format!("track {} has no {what} in its catalog entry", info.id.0),
    })
}

fn vpcc(info: &TrackInfo) -> Result<VpcC> {
    VpcC::decode_body(&mut config(info, "vpcC")?).map_err(|e| malformed("vpcC", e))
}

fn malformed(format: &'static str, e: mp4_atom::Error) -> Error {
    Error::Malformed {
        format,
        what: e.to_string(),
    }
}

fn visual(info: &TrackInfo) -> Visual {
    let v = info.video.unwrap_or_default();
    Visual {
        data_reference_index: 1,
        width: clamp16(v.width),
        height: clamp16(v.height),
        ..Default::default()
    }
}

/// The audio sample entry fields; `config_channels` is what the decoder
/// configuration says (0: defined elsewhere), used when the catalog has no count.
fn audio(info: &TrackInfo, config_channels: u8) -> Audio {
    let params = info.audio.unwrap_or_default();
    let channels = match (params.channels, config_channels) {
        (0, 0) => 2,
        (0, c) => c,
        (c, _) => c,
    };
    let rate = match info.codec {
        // Opus sample entries always say 48 kHz (RFC 7845 and the Opus-in-ISOBMFF spec).
        Codec::Opus => 48_000,
        _ => params.sample_rate,
    };
    Audio {
        data_reference_index: 1,
        channel_count: u16::from(channels),
        sample_size: 16,
        // A 16.16 field: rates above 65535 Hz do not fit; 0 there, decoders use the config.
        sample_rate: u16::try_from(rate).unwrap_or(0).into(),
    }
}

fn clamp16(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// An `OpusHead` identification header (RFC 7845 §5.1, little-endian) as a
/// `dOps` box body (big-endian).
fn opus_head_to_dops(head: &[u8]) -> Result<Dops> {
    let bad = |what: &str| Error::Malformed {
        format: "OpusHead",
        what: what.to_owned(),
    };
    let (fixed, mapping) = head
        .split_first_chunk::<19>()
        .ok_or_else(|| bad("shorter than 19 bytes"))?;
    let channels = fixed[9];
    let family = fixed[18];
    let channel_mapping = if family == 0 {
        None
    } else {
        let (&[stream_count, coupled_count], table) = mapping
            .split_first_chunk::<2>()
            .ok_or_else(|| bad("channel mapping table cut short"))?;
        let table = table
            .get(..usize::from(channels))
            .ok_or_else(|| bad("channel mapping table cut short"))?;
        Some(mp4_atom::OpusChannelMapping {
            family,
            stream_count,
            coupled_count,
            channel_mapping: table.to_vec(),
        })
    };
    Ok(Dops {
        output_channel_count: channels,
        pre_skip: u16::from_le_bytes([fixed[10], fixed[11]]),
        input_sample_rate: u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]),
        output_gain: i16::from_le_bytes([fixed[16], fixed[17]]),
        channel_mapping,
    })
}
