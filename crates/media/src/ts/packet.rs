//! One 188-byte TS packet's header and adaptation field, read without copying.
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

/// The parts of a TS packet the demuxer uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Packet<'a> {
    pub(crate) pid: u16,
    pub(crate) error: bool,
    pub(crate) start: bool,
    pub(crate) scrambled: bool,
    pub(crate) cc: u8,
    pub(crate) has_payload: bool,
    pub(crate) discontinuity: bool,
    pub(crate) random_access: bool,
    /// PCR base (90 kHz), when this packet carries one.
    pub(crate) pcr: Option<u64>,
    pub(crate) payload: &'a [u8],
}

/// Reads one packet (`p` is 188 bytes starting with the sync byte).
pub(crate) fn parse(p: &[u8]) -> Result<Packet<'_>, &'static str> {
    let [0x47, b1, b2, b3, rest @ ..] = p else {
        return Err("no sync byte");
    };
    let afc = (b3 >> 4) & 3;
    if afc == 0 {
        return Err("reserved adaptation_field_control 0");
    }
    let mut pkt = Packet {
        pid: (u16::from(b1 & 0x1f) << 8) | u16::from(*b2),
        error: b1 & 0x80 != 0,
        start: b1 & 0x40 != 0,
        scrambled: b3 >> 6 != 0,
        cc: b3 & 0xf,
        has_payload: afc & 1 == 1,
        discontinuity: false,
        random_access: false,
        pcr: None,
        payload: &[],
    };
    let mut body = rest;
    if afc & 2 == 2 {
        let (&len, after) = body.split_first().ok_or("truncated packet")?;
        let len = usize::from(len);
        let af = after
            .get(..len)
            .ok_or("adaptation field longer than the packet")?;
        if pkt.has_payload && len > 182 {
            return Err("adaptation field leaves no room for the payload");
        }
        if let Some(&flags) = af.first() {
            pkt.discontinuity = flags & 0x80 != 0;
            pkt.random_access = flags & 0x40 != 0;
            if flags & 0x10 != 0 {
                let &[b0, b1, b2, b3, b4, _] = af
                    .get(1..)
                    .and_then(|r| r.first_chunk::<6>())
                    .ok_or("PCR flag without a PCR")?;
                pkt.pcr = Some(
                    (u64::from(b0) << 25)
                        | (u64::from(b1) << 17)
                        | (u64::from(b2) << 9)
                        | (u64::from(b3) << 1)
                        | u64::from(b4 >> 7),
                );
            }
        }
        body = after
            .get(len..)
            .ok_or("adaptation field longer than the packet")?;
    }
    if pkt.has_payload {
        pkt.payload = body;
    }
    Ok(pkt)
}
