//! PAT and PMT sections: assembled across packets, CRC-checked, read.
//!
//! Our own reader rather than mpeg2ts's: its PMT reader rejects a whole
//! table over one stream type it does not list (SCTE-35 0x86, many private
//! types), and its packet reader cannot be fed packet by packet without an
//! `io::Read` source, so a sans-IO demuxer that must survive one bad table
//! reads the sections itself.
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

/// Longest PSI section (ISO 13818-1: section_length ≤ 1021).
const MAX_SECTION: usize = 1024;

/// Collects one section of one PID.
#[derive(Debug, Default)]
pub(crate) struct SectionBuffer {
    data: Vec<u8>,
    active: bool,
}

impl SectionBuffer {
    /// Feeds one packet's payload; returns a complete section when one ends here.
    pub(crate) fn push(
        &mut self,
        start: bool,
        payload: &[u8],
    ) -> Result<Option<Vec<u8>>, &'static str> {
        if start {
            let (&pointer, rest) = payload.split_first().ok_or("empty PSI payload")?;
            let section = rest
                .get(usize::from(pointer)..)
                .ok_or("pointer_field past the packet")?;
            self.data.clear();
            self.data.extend_from_slice(section);
            self.active = true;
        } else if self.active {
            self.data.extend_from_slice(payload);
        } else {
            return Ok(None);
        }
        let Some(&[table_id, len_hi, len_lo]) = self.data.first_chunk::<3>() else {
            return Ok(None);
        };
        if table_id == 0xff {
            // Stuffing only.
            self.active = false;
            return Ok(None);
        }
        let total = 3 + ((usize::from(len_hi & 0x0f) << 8) | usize::from(len_lo));
        if total > MAX_SECTION {
            self.active = false;
            return Err("section_length over 1021");
        }
        if self.data.len() < total {
            return Ok(None);
        }
        self.active = false;
        self.data.truncate(total);
        Ok(Some(std::mem::take(&mut self.data)))
    }
}

/// CRC-32/MPEG-2 of `data`.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The table of a section after its header and CRC are checked: (table_id
/// extension, version, body between the 8-byte header and the CRC).
fn table(section: &[u8], table_id: u8) -> Result<(u16, u8, &[u8]), &'static str> {
    let (Some(&[id, syntax, _, ext_hi, ext_lo, version, _, _]), Some((body, crc))) =
        (section.first_chunk::<8>(), section.split_last_chunk::<4>())
    else {
        return Err("section too short");
    };
    if section.len() < 12 {
        return Err("section too short");
    }
    if id != table_id {
        return Err("unexpected table_id");
    }
    if syntax & 0x80 == 0 {
        return Err("section_syntax_indicator 0");
    }
    if crc32(body).to_be_bytes() != *crc {
        return Err("CRC mismatch");
    }
    let ext = u16::from_be_bytes([ext_hi, ext_lo]);
    let version = (version >> 1) & 0x1f;
    Ok((ext, version, body.get(8..).unwrap_or_default()))
}

/// The PMT PID of the first program of a PAT.
pub(crate) fn parse_pat(section: &[u8]) -> Result<u16, &'static str> {
    let (_, _, body) = table(section, 0)?;
    body.chunks_exact(4)
        .filter_map(|e| e.first_chunk::<4>())
        .find(|&&[a, b, _, _]| u16::from_be_bytes([a, b]) != 0)
        .map(|&[_, _, c, d]| u16::from_be_bytes([c & 0x1f, d]))
        .ok_or("PAT without a program")
}

/// One elementary stream of a PMT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PmtStream {
    pub(crate) stream_type: u8,
    pub(crate) pid: u16,
    /// (tag, data) of each descriptor.
    pub(crate) descriptors: Vec<(u8, Vec<u8>)>,
}

/// A parsed PMT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pmt {
    pub(crate) version: u8,
    pub(crate) pcr_pid: u16,
    pub(crate) streams: Vec<PmtStream>,
}

/// Reads a PMT section.
pub(crate) fn parse_pmt(section: &[u8]) -> Result<Pmt, &'static str> {
    let (_, version, body) = table(section, 2)?;
    let &[h0, h1, h2, h3] = body.first_chunk::<4>().ok_or("PMT too short")?;
    let pcr_pid = u16::from_be_bytes([h0 & 0x1f, h1]);
    let info_len = usize::from(u16::from_be_bytes([h2 & 0x0f, h3]));
    let mut rest = body
        .get(4 + info_len..)
        .ok_or("program_info_length past the section")?;
    let mut streams = Vec::new();
    while !rest.is_empty() {
        let &[stream_type, pid_hi, pid_lo, len_hi, len_lo] = rest
            .first_chunk::<5>()
            .ok_or("truncated PMT stream entry")?;
        let es_len = usize::from(u16::from_be_bytes([len_hi & 0x0f, len_lo]));
        let mut desc = rest
            .get(5..5 + es_len)
            .ok_or("ES_info_length past the section")?;
        let mut descriptors = Vec::new();
        while let [tag, len, tail @ ..] = desc {
            let (data, next) = tail
                .split_at_checked(usize::from(*len))
                .ok_or("descriptor past its loop")?;
            descriptors.push((*tag, data.to_vec()));
            desc = next;
        }
        streams.push(PmtStream {
            stream_type,
            pid: u16::from_be_bytes([pid_hi & 0x1f, pid_lo]),
            descriptors,
        });
        rest = rest.get(5 + es_len..).unwrap_or_default();
        if streams.len() > 64 {
            return Err("more than 64 streams in a PMT");
        }
    }
    Ok(Pmt {
        version,
        pcr_pid,
        streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_known_pat() {
        // ffmpeg's PAT: program 1 -> PMT 0x1000.
        let pat = [
            0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00, 0x2a, 0xb1,
            0x04, 0xb2,
        ];
        assert_eq!(parse_pat(&pat), Ok(0x1000));
        let mut bad = pat;
        bad[9] = 2;
        assert_eq!(parse_pat(&bad), Err("CRC mismatch"));
    }
}
