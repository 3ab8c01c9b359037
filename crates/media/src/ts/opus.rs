//! Opus in MPEG-TS as ffmpeg reads and writes it: each access unit is
//! preceded by a control header, and the channel count rides in the PMT's
//! DVB extension descriptor. The kernel's config for Opus is an `OpusHead`
//! (RFC 7845).
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

/// Writes the control header of one access unit of `len` bytes (no trims, no extension).
pub(crate) fn write_control_header(len: usize, out: &mut BytesMut) {
    out.put_slice(&[0x7f, 0xe0]);
    let mut n = len;
    while n >= 255 {
        out.put_u8(0xff);
        n -= 255;
    }
    out.put_u8(n as u8);
}

/// Splits a PES payload into Opus access units (control headers removed).
/// `None` if a control header is malformed or an access unit overruns.
pub(crate) fn split_access_units(mut data: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let &[h0, h1] = data.first_chunk::<2>()?;
        if h0 != 0x7f || h1 & 0xe0 != 0xe0 {
            return None;
        }
        let (trim_start, trim_end, ext) = (h1 & 0x10 != 0, h1 & 0x08 != 0, h1 & 0x04 != 0);
        let mut pos = 2;
        let mut len = 0usize;
        loop {
            let b = *data.get(pos)?;
            pos += 1;
            len += usize::from(b);
            if b != 0xff {
                break;
            }
        }
        pos += 2 * usize::from(trim_start) + 2 * usize::from(trim_end);
        if ext {
            let l = *data.get(pos)?;
            pos += 1 + usize::from(l);
        }
        let end = pos.checked_add(len)?;
        out.push(data.get(pos..end)?);
        data = data.get(end..)?;
    }
    Some(out)
}

/// Samples at 48 kHz of one Opus packet, from its TOC byte: the one reader,
/// [`crate::audio_clock::opus_packet_samples`] (`None` for a malformed packet).
pub(crate) use crate::audio_clock::opus_packet_samples as packet_samples;

/// An `OpusHead` for `channels` (mapping family 0 for 1–2 channels, pre-skip
/// 312 as libopus encoders use).
pub(crate) fn opus_head(channels: u8) -> Bytes {
    let mut h = BytesMut::with_capacity(19);
    h.put_slice(b"OpusHead");
    h.put_u8(1);
    h.put_u8(channels);
    h.put_u16_le(312);
    h.put_u32_le(48_000);
    h.put_i16_le(0);
    h.put_u8(0);
    h.freeze()
}

/// The channel count of an `OpusHead` (or a `dOps` body).
pub(crate) fn channels_of_config(config: &[u8]) -> Option<u8> {
    if config.starts_with(b"OpusHead") {
        config.get(9).copied()
    } else {
        config.get(1).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_header_round_trip() {
        let mut out = BytesMut::new();
        let a = vec![1u8; 300];
        write_control_header(a.len(), &mut out);
        out.put_slice(&a);
        write_control_header(3, &mut out);
        out.put_slice(&[0xfc, 1, 2]);
        let aus = split_access_units(&out).expect("splits");
        assert_eq!(aus, vec![&a[..], &[0xfc, 1, 2][..]]);
        assert_eq!(packet_samples(&[0xfc]), Some(960));
        assert_eq!(split_access_units(&[0x7f, 0xe0, 9, 1]), None);
        assert_eq!(channels_of_config(&opus_head(2)), Some(2));
    }
}
