//! The screen every datagram passes before srt-protocol sees it.
//!
//! srt-protocol 0.4.4's packet parser panics on some well-framed packets
//! (`packet/control/mod.rs`, `packet/control/srt.rs`):
//!
//! - a handshake (other than an induction) with an extension it parses but
//!   does not implement: congestion control (type 6, which every libsrt
//!   caller in file mode sends: `transtype=file`), a packet filter that
//!   parses (7), a socket group (8), a "reject" extension (0);
//! - an empty string extension (stream id, congestion, filter: types 5 to 7)
//!   or a group extension shorter than 4 bytes, in a handshake or in an SRT
//!   control packet (type `0x7FFF`).
//!
//! [`screen`] reads just enough of a datagram to know that srt-protocol can
//! parse it: the control header, the handshake's fixed part (CIF), and the
//! HSv5 extensions, walked the way srt-protocol walks them. A handshake
//! passes only when each extension is one srt-protocol parses without
//! panicking (handshake request/response, key material, stream id) and is
//! exactly as long as what srt-protocol reads of it, so that both walks
//! stay in step; any other handshake is refused with libsrt's rejection
//! code for it ([`rejection`] makes the answer). Data packets and other
//! control packets pass after a look at two bytes.
//!
//! Sans-IO, no allocation for what passes, and no panic on any input (a
//! fuzz target, `fuzz/fuzz_targets/srt_screen.rs`, and its stable twin,
//! `tests/screen_props.rs`, check that, and that srt-protocol's parser does
//! not panic on what passes).

// This module reads what the network sends: no panics on it.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

/// libsrt's `SRT_REJ_ROGUE`: a handshake that is not well formed.
pub const REJ_ROGUE: i32 = 1004;
/// libsrt's `SRT_REJ_CONGESTION`: a congestion control the listener does not run.
pub const REJ_CONGESTION: i32 = 1013;
/// libsrt's `SRT_REJ_FILTER`: a packet filter the listener does not run.
pub const REJ_FILTER: i32 = 1014;
/// libsrt's `SRT_REJ_GROUP`: socket groups (bonding), which the listener does not run.
pub const REJ_GROUP: i32 = 1015;

/// The SRT header: 16 bytes before every packet's contents.
const HEADER: usize = 16;
/// The handshake's fixed part after the header.
const CIF: usize = 48;
/// The handshake control type.
const HANDSHAKE: u16 = 0x0000;
/// The SRT control type; its "reserved" field names the SRT message.
const SRT_CONTROL: u16 = 0x7FFF;
/// The congestion warning control type (srt-protocol 0.4.4 panics on it).
const CONGESTION_WARNING: u16 = 0x0004;
/// The peer error control type (srt-protocol 0.4.4 panics on it).
const PEER_ERROR: u16 = 0x0008;
/// The handshake type of an induction (no extensions are read in one).
const INDUCTION: i32 = 1;
/// The handshake type of a conclusion.
const CONCLUSION: i32 = -1;
/// `HaiCrypt` key material's signature ("HAI" in 5-bit letters).
const KM_SIGN: u16 = (8 << 10) | (1 << 5) | 9;
/// An answer to a handshake: header and CIF, no extensions.
pub const REJECTION_LEN: usize = HEADER + CIF;

/// What to do with one datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// srt-protocol can parse it (or refuses it as malformed without panicking).
    Pass,
    /// A handshake srt-protocol must not see: answer it with a rejection.
    Refuse(Refusal),
    /// Not a handshake, and srt-protocol's parser would panic on it.
    Drop(&'static str),
}

/// A refused handshake: what the caller sent and why it is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The caller's handshake.
    pub handshake: Handshake,
    /// libsrt's rejection code to answer with (`REJ_*`).
    pub code: i32,
    /// Why, for the log line.
    pub why: String,
}

/// The fixed part of a caller's handshake, and its stream id if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The handshake type: 1 induction, -1 conclusion, 0 wave-a-hand,
    /// -2 agreement, 1000 and up a rejection.
    pub kind: i32,
    /// The caller's socket id.
    pub socket_id: u32,
    /// The SYN cookie.
    pub cookie: i32,
    /// The caller's initial sequence number.
    pub init_seq: u32,
    /// Maximum transmission unit.
    pub mtu: u32,
    /// Flow window, in packets.
    pub flow_window: u32,
    /// The peer address field, as sent.
    pub peer_ip: [u8; 16],
    /// The stream id extension, decoded (lossy) when present.
    pub stream_id: Option<String>,
}

impl Handshake {
    /// Whether this is a conclusion (the handshake that carries the
    /// extensions and expects an answer).
    pub fn is_conclusion(&self) -> bool {
        self.kind == CONCLUSION
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Screens one datagram as received from the network.
pub fn screen(datagram: &[u8]) -> Verdict {
    // Shorter than a header: srt-protocol refuses it. A clear top bit: data.
    let Some(&first) = datagram.first() else {
        return Verdict::Pass;
    };
    if datagram.len() < HEADER || first & 0x80 == 0 {
        return Verdict::Pass;
    }
    let (Some(word), Some(reserved)) = (be16(datagram, 0), be16(datagram, 2)) else {
        return Verdict::Pass;
    };
    let Some(body) = datagram.get(HEADER..) else {
        return Verdict::Pass;
    };
    match word & 0x7FFF {
        HANDSHAKE => screen_handshake(body),
        SRT_CONTROL => match reserved {
            // Stream id, congestion, filter: an empty string panics.
            5..=7 if body.is_empty() => Verdict::Drop("an empty SRT string message"),
            8 if body.len() < 4 => Verdict::Drop("a short SRT group message"),
            _ => Verdict::Pass,
        },
        // srt-protocol parses these but its connection answers them with
        // `todo!()`: a peer (or anyone spoofing its address) would end the
        // session with a panic. libsrt sends neither in a working session.
        CONGESTION_WARNING => Verdict::Drop("a congestion warning"),
        PEER_ERROR => Verdict::Drop("a peer error report"),
        _ => Verdict::Pass,
    }
}

fn screen_handshake(body: &[u8]) -> Verdict {
    // srt-protocol refuses (without panicking) what is too short or not
    // UDT version 4 or 5, and reads no extensions in version 4 or in an
    // induction.
    let (Some(version), Some(kind)) = (be32(body, 0), be32(body, 20)) else {
        return Verdict::Pass;
    };
    let kind = kind as i32;
    if body.len() < CIF || version != 5 || kind == INDUCTION {
        return Verdict::Pass;
    }
    let mut handshake = Handshake {
        kind,
        socket_id: be32(body, 24).unwrap_or_default(),
        cookie: be32(body, 28).unwrap_or_default() as i32,
        init_seq: be32(body, 8).unwrap_or_default(),
        mtu: be32(body, 12).unwrap_or_default(),
        flow_window: be32(body, 16).unwrap_or_default(),
        peer_ip: body
            .get(32..48)
            .and_then(|b| b.try_into().ok())
            .unwrap_or_default(),
        stream_id: None,
    };
    let mut problem: Option<(i32, String)> = None;
    let mut refuse = |code: i32, why: String| {
        problem.get_or_insert((code, why));
    };
    let Some(mut rest) = body.get(CIF..) else {
        return Verdict::Pass;
    };
    // srt-protocol reads an extension while more than 4 bytes remain.
    while rest.len() > 4 {
        let ty = be16(rest, 0).unwrap_or_default();
        let size = usize::from(be16(rest, 2).unwrap_or_default()) * 4;
        rest = rest.get(4..).unwrap_or_default();
        let Some(content) = rest.get(..size) else {
            refuse(
                REJ_ROGUE,
                format!("handshake extension {ty} runs past the packet"),
            );
            break;
        };
        rest = rest.get(size..).unwrap_or_default();
        // srt-protocol goes on from where its parser of the extension
        // stopped: each passing extension must be exactly that long.
        match ty {
            1 | 2 if size != 12 => refuse(
                REJ_ROGUE,
                format!("handshake extension of {size} bytes (12 expected)"),
            ),
            1 | 2 => {}
            3 | 4 => match key_material_len(content) {
                Some(n) if n == size => {}
                _ => refuse(REJ_ROGUE, "malformed key material".into()),
            },
            5 if size == 0 => refuse(REJ_ROGUE, "an empty stream id".into()),
            5 => match std::str::from_utf8(&unpad(content)) {
                Ok(id) => handshake.stream_id = Some(id.to_string()),
                Err(_) => refuse(REJ_ROGUE, "a stream id that is not UTF-8".into()),
            },
            6 => refuse(
                REJ_CONGESTION,
                format!(
                    "congestion control {:?} asked for (libsrt's file mode, transtype=file); only live mode is served",
                    String::from_utf8_lossy(&unpad(content))
                ),
            ),
            7 => refuse(
                REJ_FILTER,
                format!(
                    "packet filter {:?} asked for; none is served",
                    String::from_utf8_lossy(&unpad(content))
                ),
            ),
            8 => refuse(
                REJ_GROUP,
                "a socket group (bonding) asked for; groups are not served".into(),
            ),
            _ => refuse(REJ_ROGUE, format!("handshake extension of type {ty}")),
        }
    }
    match problem {
        None => Verdict::Pass,
        Some((code, why)) => Verdict::Refuse(Refusal {
            handshake,
            code,
            why,
        }),
    }
}

/// The length srt-protocol reads of a key material message, or `None` if it
/// refuses the message.
fn key_material_len(km: &[u8]) -> Option<usize> {
    let (&vers_pt, &flags) = (km.first()?, km.get(3)?);
    let well_formed = vers_pt & 0x80 == 0
        && vers_pt >> 4 == 1
        && matches!(vers_pt & 0x0F, 1 | 2)
        && be16(km, 1)? == KM_SIGN
        && *km.get(8)? <= 3 // cipher
        && *km.get(9)? == 0 // auth
        && *km.get(10)? == 2; // stream encapsulation: SRT
    let salt = usize::from(*km.get(14)?) * 4;
    let key = usize::from(*km.get(15)?) * 4;
    let keys = (flags & 0b11).count_ones() as usize;
    let len = HEADER + salt + key * keys + 8;
    (well_formed && matches!(key, 16 | 24 | 32) && km.len() >= len).then_some(len)
}

/// An SRT string: 32-bit little-endian words, the last padded with zeros.
fn unpad(words: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = words
        .chunks(4)
        .flat_map(|w| w.iter().rev().copied())
        .collect();
    for _ in 0..3 {
        if out.len() > 1 && out.last() == Some(&0) {
            out.pop();
        }
    }
    out
}

/// The answer to a refused handshake: a handshake of type `code` (a libsrt
/// rejection code), addressed to the caller's socket, from the listener's.
pub fn rejection(caller: &Handshake, code: i32, listener_socket_id: u32) -> [u8; REJECTION_LEN] {
    let mut out = [0u8; REJECTION_LEN];
    let mut put = |at: usize, v: u32| {
        // Every offset below is a constant within REJECTION_LEN.
        if let Some(field) = out.get_mut(at..at + 4) {
            field.copy_from_slice(&v.to_be_bytes());
        }
    };
    put(0, 0x8000_0000); // control, handshake
    put(12, caller.socket_id); // destination
    put(16, 5); // HSv5
    put(24, caller.init_seq);
    put(28, caller.mtu);
    put(32, caller.flow_window);
    put(36, code as u32);
    put(40, listener_socket_id);
    put(44, caller.cookie as u32);
    out[48..64].copy_from_slice(&caller.peer_ip);
    out
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]
mod tests {
    use super::*;

    /// A control packet of `kind` with `body` after the header.
    fn control(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut d = (0x8000 | kind).to_be_bytes().to_vec();
        d.extend_from_slice(&[0; 14]);
        d.extend_from_slice(body);
        d
    }

    #[test]
    fn congestion_warnings_and_peer_errors_never_reach_the_connection() {
        assert!(matches!(screen(&control(4, &[])), Verdict::Drop(_)));
        assert!(matches!(
            screen(&control(8, &[0, 0, 0, 1])),
            Verdict::Drop(_)
        ));
        // Keep-alives (1), ACKs (2), NAKs (3) and shutdowns (5) still pass.
        for kind in [1, 2, 3, 5] {
            assert_eq!(screen(&control(kind, &[0; 4])), Verdict::Pass, "{kind}");
        }
    }

    /// A caller's conclusion: header, CIF, then `extensions` (type, content).
    pub(crate) fn conclusion(extensions: &[(u16, &[u8])]) -> Vec<u8> {
        let mut d = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        for w in [
            5u32,
            0x0000_0005,
            77,
            1500,
            8192,
            CONCLUSION as u32,
            0xABCD,
            42,
        ] {
            d.extend_from_slice(&w.to_be_bytes());
        }
        d.extend_from_slice(&[127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        for (ty, content) in extensions {
            d.extend_from_slice(&ty.to_be_bytes());
            d.extend_from_slice(&((content.len() / 4) as u16).to_be_bytes());
            d.extend_from_slice(content);
        }
        d
    }

    fn words(s: &str) -> Vec<u8> {
        let mut b = s.as_bytes().to_vec();
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        b.chunks(4).flat_map(|w| w.iter().rev().copied()).collect()
    }

    const HSREQ: [u8; 12] = [0, 1, 5, 1, 0, 0, 0, 0xBF, 0, 120, 0, 120];

    #[test]
    fn a_libsrt_conclusion_passes() {
        let sid = words("read:live/a");
        assert_eq!(
            screen(&conclusion(&[(1, &HSREQ), (5, &sid)])),
            Verdict::Pass
        );
    }

    #[test]
    fn file_mode_is_refused_with_its_code_and_the_stream_id() {
        let (sid, cc) = (words("read:live/a"), words("file"));
        let Verdict::Refuse(r) = screen(&conclusion(&[(1, &HSREQ), (5, &sid), (6, &cc)])) else {
            panic!("refused")
        };
        assert_eq!(r.code, REJ_CONGESTION);
        assert!(r.why.contains("\"file\""), "{}", r.why);
        assert_eq!(r.handshake.stream_id.as_deref(), Some("read:live/a"));
        assert_eq!(r.handshake.socket_id, 0xABCD);
        assert!(r.handshake.is_conclusion());
    }

    #[test]
    fn extensions_srt_protocol_panics_on_are_refused() {
        let g = [1u8, 0, 0, 1];
        for (ext, code) in [
            ((0u16, &[][..]), REJ_ROGUE),
            ((5, &[][..]), REJ_ROGUE),
            ((6, &[][..]), REJ_CONGESTION),
            ((7, &words("a:b")[..]), REJ_FILTER),
            ((8, &[][..]), REJ_GROUP),
            ((8, &g[..]), REJ_GROUP),
            ((1, &[0u8; 16][..]), REJ_ROGUE),
        ] {
            // Followed by a stream id: srt-protocol reads no extension
            // header in the packet's last 4 bytes.
            let sid = words("read:live/a");
            match screen(&conclusion(&[ext, (5, &sid)])) {
                Verdict::Refuse(r) => assert_eq!(r.code, code, "{ext:?}"),
                v => panic!("{ext:?}: {v:?}"),
            }
        }
        // An empty extension as the last 4 bytes is not read.
        assert_eq!(screen(&conclusion(&[(1, &HSREQ), (6, &[])])), Verdict::Pass);
    }

    #[test]
    fn inductions_data_and_short_packets_pass() {
        assert_eq!(screen(&[]), Verdict::Pass);
        assert_eq!(screen(&[0x80; 15]), Verdict::Pass);
        assert_eq!(screen(&[0x00; 1316]), Verdict::Pass);
        let mut induction = conclusion(&[(6, &[])]);
        induction[36..40].copy_from_slice(&INDUCTION.to_be_bytes());
        assert_eq!(screen(&induction), Verdict::Pass);
    }

    #[test]
    fn empty_srt_strings_outside_handshakes_are_dropped() {
        let mut p = vec![0xFF, 0xFF, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(screen(&p), Verdict::Drop(_)));
        p[3] = 8;
        p.extend_from_slice(&[1, 2]);
        assert!(matches!(screen(&p), Verdict::Drop(_)));
        p.extend_from_slice(&[3, 4]);
        assert_eq!(screen(&p), Verdict::Pass);
    }

    #[test]
    fn the_rejection_names_the_callers_socket_and_the_code() {
        let hs = Handshake {
            kind: CONCLUSION,
            socket_id: 0x0102_0304,
            cookie: -7,
            init_seq: 9,
            mtu: 1500,
            flow_window: 8192,
            peer_ip: [1; 16],
            stream_id: None,
        };
        let r = rejection(&hs, REJ_CONGESTION, 0x0A0B_0C0D);
        assert_eq!(r[..4], [0x80, 0, 0, 0]);
        assert_eq!(r[12..16], [1, 2, 3, 4]);
        assert_eq!(be32(&r, 36), Some(1013));
        assert_eq!(be32(&r, 40), Some(0x0A0B_0C0D));
        assert_eq!(be32(&r, 44), Some(-7i32 as u32));
    }
}
