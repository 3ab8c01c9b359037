//! The PES packet header.
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

/// What a PES header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PesHeader {
    pub(crate) pts: Option<u64>,
    pub(crate) dts: Option<u64>,
    /// PES_packet_length: bytes after the length field (0 = unbounded).
    pub(crate) packet_len: usize,
    /// Where the elementary stream data starts.
    pub(crate) data_offset: usize,
}

fn timestamp(&[b0, b1, b2, b3, b4]: &[u8; 5]) -> u64 {
    (u64::from((b0 >> 1) & 7) << 30)
        | (u64::from(b1) << 22)
        | (u64::from(b2 >> 1) << 15)
        | (u64::from(b3) << 7)
        | u64::from(b4 >> 1)
}

/// Reads the PES header at the start of `data`.
pub(crate) fn parse(data: &[u8]) -> Result<PesHeader, &'static str> {
    let &[h0, h1, h2, _stream_id, h4, h5, h6, h7, h8] = data
        .first_chunk::<9>()
        .ok_or("PES header split across packets")?;
    if [h0, h1, h2] != [0, 0, 1] {
        return Err("no PES start code");
    }
    let packet_len = usize::from(u16::from_be_bytes([h4, h5]));
    if h6 & 0xc0 != 0x80 {
        return Err("PES without the optional header");
    }
    let flags = h7 >> 6;
    let data_offset = 9 + usize::from(h8);
    let ts = data
        .get(9..data_offset)
        .ok_or("PES header longer than the packet")?;
    let (pts, dts) = match flags {
        2 => (Some(timestamp(ts.first_chunk().ok_or("short PTS")?)), None),
        3 => (
            Some(timestamp(ts.first_chunk().ok_or("short PTS")?)),
            Some(timestamp(
                ts.get(5..)
                    .and_then(|r| r.first_chunk())
                    .ok_or("short DTS")?,
            )),
        ),
        _ => (None, None),
    };
    if packet_len != 0 && packet_len + 6 < data_offset {
        return Err("PES_packet_length shorter than its header");
    }
    Ok(PesHeader {
        pts,
        dts,
        packet_len,
        data_offset,
    })
}
