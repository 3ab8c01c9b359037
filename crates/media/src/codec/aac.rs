//! AAC: the AudioSpecificConfig and the ADTS header.
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

use bytes::{BufMut, BytesMut};

use super::bits::Bits;

/// Sampling frequencies by index (ISO 14496-3 Table 1.18).
const RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// The sampling frequency index of a rate, if it has one.
pub fn aac_rate_index(sample_rate: u32) -> Option<u8> {
    RATES
        .iter()
        .position(|&r| r == sample_rate)
        .map(|i| i as u8)
}

/// What an AudioSpecificConfig says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// Audio object type (2 = AAC-LC, 5 = SBR, 29 = PS, …).
    pub object_type: u8,
    /// Samples per second.
    pub sample_rate: u32,
    /// `channelConfiguration` (0 = in a program config element, 7 = 7.1).
    pub channel_config: u8,
}

impl AudioSpecificConfig {
    /// Parses the head of an AudioSpecificConfig.
    pub fn parse(asc: &[u8]) -> Option<Self> {
        let mut r = Bits::new(asc);
        let mut object_type = r.bits(5)?;
        if object_type == 31 {
            object_type = 32 + r.bits(6)?;
        }
        let index = r.bits(4)?;
        let sample_rate = if index == 15 {
            r.bits(24)?
        } else {
            *RATES.get(index as usize)?
        };
        let channel_config = r.bits(4)? as u8;
        Some(AudioSpecificConfig {
            object_type: object_type as u8,
            sample_rate,
            channel_config,
        })
    }

    /// Channel count (configuration 7 is 8 channels; 0 is reported as 0).
    pub fn channels(&self) -> u8 {
        match self.channel_config {
            7 => 8,
            c => c,
        }
    }

    /// The 2-byte AudioSpecificConfig of this object type, rate and channel
    /// configuration; `None` for a rate without an index or an object type above 30.
    pub fn to_bytes(&self) -> Option<[u8; 2]> {
        let index = u16::from(aac_rate_index(self.sample_rate)?);
        if self.object_type > 30 {
            return None;
        }
        let v: u16 = (u16::from(self.object_type) << 11)
            | (index << 7)
            | (u16::from(self.channel_config & 0xf) << 3);
        Some(v.to_be_bytes())
    }
}

/// Sample rate and channel count from an AAC AudioSpecificConfig.
pub fn parse_asc(asc: &[u8]) -> Option<(u32, u8)> {
    AudioSpecificConfig::parse(asc).map(|a| (a.sample_rate, a.channels()))
}

/// An AudioSpecificConfig for AAC-LC at this rate and channel count.
pub fn make_asc(sample_rate: u32, channels: u8) -> Option<[u8; 2]> {
    AudioSpecificConfig {
        object_type: 2,
        sample_rate,
        channel_config: if channels == 8 { 7 } else { channels },
    }
    .to_bytes()
}

/// One ADTS frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdtsHeader {
    /// Audio object type (`profile + 1`).
    pub object_type: u8,
    /// Sampling frequency index.
    pub rate_index: u8,
    /// Samples per second.
    pub sample_rate: u32,
    /// `channel_configuration`.
    pub channel_config: u8,
    /// Header length: 7, or 9 with a CRC.
    pub header_len: usize,
    /// Whole frame length, header included.
    pub frame_len: usize,
    /// Raw data blocks in the frame (1 to 4), each 1024 samples.
    pub blocks: u8,
}

impl AdtsHeader {
    /// Parses the ADTS header at the start of `data`; `None` if it is not
    /// one (no syncword, a reserved rate, a frame shorter than its header).
    pub fn parse(data: &[u8]) -> Option<AdtsHeader> {
        let h: &[u8; 7] = data.first_chunk()?;
        if h[0] != 0xff || h[1] & 0xf6 != 0xf0 {
            return None;
        }
        let protection_absent = h[1] & 1 == 1;
        let object_type = (h[2] >> 6) + 1;
        let rate_index = (h[2] >> 2) & 0xf;
        let sample_rate = *RATES.get(usize::from(rate_index))?;
        let channel_config = ((h[2] & 1) << 2) | (h[3] >> 6);
        let frame_len =
            (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        let header_len = if protection_absent { 7 } else { 9 };
        if frame_len < header_len {
            return None;
        }
        Some(AdtsHeader {
            object_type,
            rate_index,
            sample_rate,
            channel_config,
            header_len,
            frame_len,
            blocks: (h[6] & 3) + 1,
        })
    }

    /// The AudioSpecificConfig this header implies.
    pub fn config(&self) -> AudioSpecificConfig {
        AudioSpecificConfig {
            object_type: self.object_type,
            sample_rate: self.sample_rate,
            channel_config: self.channel_config,
        }
    }
}

/// Writes a 7-byte ADTS header (no CRC) for one raw AAC frame of
/// `payload_len` bytes; `None` if the config cannot be said in ADTS (object
/// type above 4, a rate without an index) or the frame is too long.
pub fn write_adts(asc: &AudioSpecificConfig, payload_len: usize, out: &mut BytesMut) -> Option<()> {
    let index = aac_rate_index(asc.sample_rate)?;
    // SBR/PS configs (HE-AAC) are signalled implicitly in ADTS: the base is LC.
    let profile = match asc.object_type {
        1..=4 => asc.object_type - 1,
        5 | 29 => 1,
        _ => return None,
    };
    let len = payload_len.checked_add(7).filter(|l| *l < (1 << 13))?;
    out.put_u8(0xff);
    out.put_u8(0xf1);
    out.put_u8((profile << 6) | (index << 2) | ((asc.channel_config >> 2) & 1));
    out.put_u8(((asc.channel_config & 3) << 6) | ((len >> 11) as u8 & 3));
    out.put_u8((len >> 3) as u8);
    out.put_u8((((len & 7) as u8) << 5) | 0x1f);
    out.put_u8(0xfc);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asc() {
        assert_eq!(parse_asc(&[0x12, 0x10]), Some((44100, 2)));
        assert_eq!(parse_asc(&[0x11, 0x90]), Some((48000, 2)));
        assert_eq!(make_asc(44100, 2), Some([0x12, 0x10]));
        assert_eq!(parse_asc(&[0x17]), None);
        assert_eq!(make_asc(44101, 2), None);
    }

    #[test]
    fn adts_round_trip() {
        let asc = AudioSpecificConfig::parse(&[0x11, 0x90]).expect("parses");
        let mut out = BytesMut::new();
        write_adts(&asc, 300, &mut out).expect("writes");
        assert_eq!(out.len(), 7);
        let h = AdtsHeader::parse(&out).expect("parses");
        assert_eq!(h.frame_len, 307);
        assert_eq!(h.header_len, 7);
        assert_eq!(h.config(), asc);
        assert_eq!(h.blocks, 1);
        assert_eq!(AdtsHeader::parse(&[0xff, 0xf1, 0, 0, 0, 0]), None);
        assert!(write_adts(&asc, 9000, &mut out).is_none());
    }
}
