//! Stable twin of the `srt_screen` fuzz target: the datagram screen never
//! panics, srt-protocol 0.4.4's packet parser does not panic on anything
//! the screen lets through, and a refusal's answer reads back in
//! srt-protocol as a rejection with the screen's code.

use proptest::prelude::*;
use srt_protocol::packet::{ControlTypes, Packet, ShakeType};
use tidewater_ingest_srt::screen::{self, Verdict};

/// What the listener does with a datagram: the screen, then (if it passes)
/// srt-protocol's parser, over IPv4 and IPv6 sockets.
fn check(datagram: &[u8]) -> Result<(), TestCaseError> {
    match screen::screen(datagram) {
        Verdict::Pass => {
            let _ = Packet::parse(&mut &datagram[..], false);
            let _ = Packet::parse(&mut &datagram[..], true);
        }
        Verdict::Drop(_) => {}
        Verdict::Refuse(r) => {
            let answer = screen::rejection(&r.handshake, r.code, 7);
            prop_assert_eq!(screen::screen(&answer), Verdict::Pass);
            let parsed = Packet::parse(&mut &answer[..], false).expect("the rejection parses");
            let Packet::Control(c) = parsed else {
                return Err(TestCaseError::fail("the rejection is not a control packet"));
            };
            prop_assert_eq!(c.dest_sockid.0, r.handshake.socket_id);
            let ControlTypes::Handshake(hs) = c.control_type else {
                return Err(TestCaseError::fail("the rejection is not a handshake"));
            };
            let ShakeType::Rejection(reason) = hs.shake_type else {
                return Err(TestCaseError::fail("the rejection is not a rejection"));
            };
            prop_assert_eq!(i32::from(reason), r.code);
        }
    }
    Ok(())
}

/// An SRT string as 32-bit little-endian words.
fn words(s: &[u8]) -> Vec<u8> {
    let mut b = s.to_vec();
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
    b.chunks(4).flat_map(|w| w.iter().rev().copied()).collect()
}

/// Key material as libsrt sends it (`salt` and `key` in bytes, `keys` 1 to 3).
fn key_material(salt: usize, key: usize, keys: u8) -> Vec<u8> {
    let mut km = vec![0x12, 0x20, 0x29, keys, 0, 0, 0, 0, 2, 0, 2, 0, 0, 0];
    km.push((salt / 4) as u8);
    km.push((key / 4) as u8);
    let n = salt + key * (keys.count_ones() as usize) + 8;
    km.extend((0..n).map(|i| i as u8));
    km
}

/// One extension's content: well formed for its type, or noise.
fn content(ty: u16) -> impl Strategy<Value = Vec<u8>> {
    let noise = proptest::collection::vec(any::<u8>(), 0..40);
    let formed: BoxedStrategy<Vec<u8>> = match ty {
        1 | 2 => Just(vec![0, 1, 5, 1, 0, 0, 0, 0xBF, 0, 120, 0, 120]).boxed(),
        3 | 4 => (
            prop_oneof![Just(0usize), Just(16), Just(8)],
            prop_oneof![Just(16usize), Just(24), Just(32), Just(20)],
            1u8..4,
        )
            .prop_map(|(s, k, n)| key_material(s, k, n))
            .boxed(),
        5..=7 => "[a-z:/,=#!]{0,24}"
            .prop_map(|s| words(s.as_bytes()))
            .boxed(),
        8 => proptest::collection::vec(any::<u8>(), 0..8).boxed(),
        _ => proptest::collection::vec(any::<u8>(), 0..12).boxed(),
    };
    prop_oneof![3 => formed, 1 => noise]
}

/// An extension: type, content, and a declared length in words that is
/// usually the content's.
fn extension() -> impl Strategy<Value = Vec<u8>> {
    (0u16..10)
        .prop_flat_map(|ty| {
            (
                Just(ty),
                content(ty),
                prop_oneof![4 => Just(None), 1 => (0u16..20).prop_map(Some)],
            )
        })
        .prop_map(|(ty, content, declared)| {
            let words = declared.unwrap_or((content.len() / 4) as u16);
            let mut e = ty.to_be_bytes().to_vec();
            e.extend_from_slice(&words.to_be_bytes());
            e.extend_from_slice(&content);
            e
        })
}

/// An extension whose declared length runs past what srt-protocol reads of
/// it (a handshake request, key material), the rest holding another
/// extension: srt-protocol reads that one too.
fn smuggling() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(1u16), Just(3)],
        extension(),
        proptest::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(ty, inner, pad)| {
            let mut content = if ty == 1 {
                vec![0, 1, 5, 1, 0, 0, 0, 0xBF, 0, 120, 0, 120]
            } else {
                key_material(16, 16, 1)
            };
            content.extend(inner);
            content.extend(pad);
            while !content.len().is_multiple_of(4) {
                content.push(0);
            }
            let mut e = ty.to_be_bytes().to_vec();
            e.extend_from_slice(&((content.len() / 4) as u16).to_be_bytes());
            e.extend(content);
            e
        })
}

/// A handshake: header, CIF, extensions, trailing bytes.
fn handshake() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(5u32), Just(4), any::<u32>()],
        prop_oneof![
            Just(-1i32),
            Just(1),
            Just(0),
            Just(-2),
            Just(1004),
            any::<i32>()
        ],
        any::<u32>(),
        proptest::collection::vec(
            prop_oneof![4 => extension().boxed(), 1 => smuggling().boxed()],
            0..5,
        ),
        proptest::collection::vec(any::<u8>(), 0..6),
    )
        .prop_map(|(version, kind, flags, extensions, trailing)| {
            let mut d = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            for w in [version, flags, 1, 1500, 8192, kind as u32, 99, 1234] {
                d.extend_from_slice(&w.to_be_bytes());
            }
            d.extend_from_slice(&[127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            d.extend(extensions.concat());
            d.extend(trailing);
            d
        })
}

/// An SRT control packet (type 0x7FFF) with a message type and a short body.
fn srt_control() -> impl Strategy<Value = Vec<u8>> {
    (0u16..10, proptest::collection::vec(any::<u8>(), 0..20)).prop_map(|(ty, body)| {
        let mut d = vec![0xFF, 0xFF];
        d.extend_from_slice(&ty.to_be_bytes());
        d.extend_from_slice(&[0; 12]);
        d.extend(body);
        d
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn any_bytes(d in proptest::collection::vec(any::<u8>(), 0..200)) {
        check(&d)?;
    }

    #[test]
    fn handshakes(d in handshake()) {
        check(&d)?;
    }

    #[test]
    fn srt_control_packets(d in srt_control()) {
        check(&d)?;
    }

    #[test]
    fn handshakes_cut_or_flipped(d in handshake(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
        let mut d = d;
        let at = flip.0.index(d.len());
        d[at] ^= flip.1;
        let end = cut.index(d.len() + 1);
        check(&d[..end])?;
    }
}

/// A conclusion libsrt 1.5 sends (handshake request, key material, stream
/// id) passes; with its file-mode congestion extension it is refused.
#[test]
fn libsrt_conclusions() {
    let mut d = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    for w in [5u32, 0x0002_0007, 1, 1500, 8192, -1i32 as u32, 99, 1234] {
        d.extend_from_slice(&w.to_be_bytes());
    }
    d.extend_from_slice(&[127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let ext = |d: &mut Vec<u8>, ty: u16, c: &[u8]| {
        d.extend_from_slice(&ty.to_be_bytes());
        d.extend_from_slice(&((c.len() / 4) as u16).to_be_bytes());
        d.extend_from_slice(c);
    };
    ext(&mut d, 1, &[0, 1, 5, 1, 0, 0, 0, 0xBF, 0, 120, 0, 120]);
    ext(&mut d, 3, &key_material(16, 16, 1));
    ext(&mut d, 5, &words(b"read:live/a"));
    assert_eq!(screen::screen(&d), Verdict::Pass);
    assert!(Packet::parse(&mut &d[..], false).is_ok());
    ext(&mut d, 6, &words(b"file"));
    match screen::screen(&d) {
        Verdict::Refuse(r) => {
            assert_eq!(r.code, screen::REJ_CONGESTION);
            assert_eq!(r.handshake.stream_id.as_deref(), Some("read:live/a"));
        }
        v => panic!("{v:?}"),
    }
}
