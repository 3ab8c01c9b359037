//! Stable twin of the `whip_signal` fuzz target: the signalling entry point
//! ([`tidewater_whip::fuzzing::signalling`]) over random bytes, real
//! offers (WHIP and WHEP) and real trickle fragments with lines dropped,
//! repeated, cut or replaced. Never a panic; unedited inputs are answered
//! or read.

mod support;

use proptest::prelude::*;
use str0m::media::Direction;
use tidewater_whip::fuzzing::{Outcome, signalling};

use support::sdp_edits::{Edit, apply_edits, edit, offer};

const FRAGMENT: &str = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
    m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
    a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\n\
    a=candidate:2 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active\r\n\
    a=candidate:3 1 udp 2122194687 abc.local 61765 typ host\r\n\
    a=end-of-candidates\r\n";

/// The three real inputs, with their selector byte.
fn real(which: usize) -> Vec<u8> {
    let (selector, text) = match which % 3 {
        0 => (0u8, offer(Direction::SendOnly)),
        1 => (2u8, offer(Direction::RecvOnly)),
        _ => (1u8, FRAGMENT.to_owned()),
    };
    let mut data = vec![selector];
    data.extend_from_slice(text.as_bytes());
    data
}

#[test]
fn real_inputs_are_answered_or_read() {
    assert_eq!(signalling(&real(0)), Outcome::Answered);
    assert_eq!(signalling(&real(1)), Outcome::Answered);
    assert_eq!(signalling(&real(2)), Outcome::Trickled(2));
    // An offer of video codecs the server does not take and no Opus is
    // refused (406 on the route), not answered without media.
    let mut unknown = vec![0u8];
    let text = offer(Direction::SendOnly)
        .replace("H264", "X264")
        .replace("VP8", "XP8")
        .replace("opus", "xpus");
    unknown.extend_from_slice(text.as_bytes());
    assert_eq!(signalling(&unknown), Outcome::Refused);
    // The same offer with VP8 kept is answered with VP8 alone.
    let mut vp8 = vec![0u8];
    let text = offer(Direction::SendOnly)
        .replace("H264", "X264")
        .replace("opus", "xpus");
    vp8.extend_from_slice(text.as_bytes());
    assert_eq!(signalling(&vp8), Outcome::Answered);
}

fn edited(which: usize, edits: Vec<Edit>) -> Vec<u8> {
    let data = real(which);
    let text = String::from_utf8_lossy(&data[1..]).into_owned();
    let mut out = vec![data[0]];
    out.extend_from_slice(apply_edits(&text, edits).as_bytes());
    out
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        (any::<usize>(), proptest::collection::vec(edit(), 1..6))
            .prop_map(|(which, edits)| edited(which, edits)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_signalling_input_is_answered_read_or_refused(data in input()) {
        // The entry point asserts its own invariants; it must not panic.
        let _ = signalling(&data);
    }
}
