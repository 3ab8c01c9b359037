//! PAT and PMT sections: assembled across packets, CRC-checked, read.
//!
//! Our own reader rather than mpeg2ts's: its PMT reader rejects a whole
//! table over one stream type it does not list (SCTE-35 0x86, many private
//! types), and its packet reader cannot be fed packet by packet without an
//! `io::Read` source, so a sans-IO demuxer that must survive one bad table
//! reads the sections itself.

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
        if self.data.len() < 3 {
            return Ok(None);
        }
        if self.data[0] == 0xff {
            // Stuffing only.
            self.active = false;
            return Ok(None);
        }
        let total = 3 + ((usize::from(self.data[1] & 0x0f) << 8) | usize::from(self.data[2]));
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
    if section.len() < 12 {
        return Err("section too short");
    }
    if section[0] != table_id {
        return Err("unexpected table_id");
    }
    if section[1] & 0x80 == 0 {
        return Err("section_syntax_indicator 0");
    }
    let (body, crc) = section.split_at(section.len() - 4);
    if crc32(body).to_be_bytes() != crc {
        return Err("CRC mismatch");
    }
    let ext = u16::from_be_bytes([section[3], section[4]]);
    let version = (section[5] >> 1) & 0x1f;
    Ok((ext, version, &body[8..]))
}

/// The PMT PID of the first program of a PAT.
pub(crate) fn parse_pat(section: &[u8]) -> Result<u16, &'static str> {
    let (_, _, body) = table(section, 0)?;
    body.chunks_exact(4)
        .find(|e| u16::from_be_bytes([e[0], e[1]]) != 0)
        .map(|e| u16::from_be_bytes([e[2] & 0x1f, e[3]]))
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
    let head = body.get(..4).ok_or("PMT too short")?;
    let pcr_pid = u16::from_be_bytes([head[0] & 0x1f, head[1]]);
    let info_len = usize::from(u16::from_be_bytes([head[2] & 0x0f, head[3]]));
    let mut rest = body
        .get(4 + info_len..)
        .ok_or("program_info_length past the section")?;
    let mut streams = Vec::new();
    while !rest.is_empty() {
        let h = rest.get(..5).ok_or("truncated PMT stream entry")?;
        let es_len = usize::from(u16::from_be_bytes([h[3] & 0x0f, h[4]]));
        let mut desc = rest
            .get(5..5 + es_len)
            .ok_or("ES_info_length past the section")?;
        let mut descriptors = Vec::new();
        while let [tag, len, tail @ ..] = desc {
            let data = tail
                .get(..usize::from(*len))
                .ok_or("descriptor past its loop")?;
            descriptors.push((*tag, data.to_vec()));
            desc = &tail[usize::from(*len)..];
        }
        streams.push(PmtStream {
            stream_type: h[0],
            pid: u16::from_be_bytes([h[1] & 0x1f, h[2]]),
            descriptors,
        });
        rest = &rest[5 + es_len..];
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
