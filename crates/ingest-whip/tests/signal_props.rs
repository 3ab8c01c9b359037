//! Stable twin of the `whip_signal` fuzz target: the signalling entry point
//! ([`tidewater_whip::fuzzing::signalling`]) over random bytes, real
//! offers (WHIP and WHEP) and real trickle fragments with lines dropped,
//! repeated, cut or replaced. Never a panic; unedited inputs are answered
//! or read.

use std::time::Instant;

use proptest::prelude::*;
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};
use tidewater_whip::fuzzing::{Outcome, signalling};

/// A client's offer: send-only for WHIP, receive-only for WHEP.
fn offer(direction: Direction) -> String {
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(Instant::now());
    rtc.add_local_candidate(
        Candidate::host("127.0.0.1:9".parse().expect("addr"), "udp").expect("candidate"),
    );
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, direction, None, None, None);
    api.add_media(MediaKind::Audio, direction, None, None, None);
    api.apply().expect("offer").0.to_sdp_string()
}

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

#[derive(Debug, Clone)]
enum Edit {
    Drop(usize),
    Repeat(usize),
    Cut(usize),
    Replace(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Drop),
        any::<usize>().prop_map(Edit::Repeat),
        any::<usize>().prop_map(Edit::Cut),
        (any::<usize>(), "[ -~]{0,40}").prop_map(|(i, s)| Edit::Replace(i, s)),
    ]
}

fn edited(which: usize, edits: Vec<Edit>) -> Vec<u8> {
    let data = real(which);
    let text = String::from_utf8_lossy(&data[1..]).into_owned();
    let mut lines: Vec<String> = text.split("\r\n").map(str::to_owned).collect();
    for e in edits {
        let n = lines.len().max(1);
        match e {
            Edit::Drop(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Edit::Repeat(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::Cut(i) if !lines.is_empty() => {
                let l = &mut lines[i % n];
                let mut at = i % (l.len() + 1);
                while !l.is_char_boundary(at) {
                    at -= 1;
                }
                l.truncate(at);
            }
            Edit::Replace(i, s) if !lines.is_empty() => lines[i % n] = s,
            _ => {}
        }
    }
    let mut out = vec![data[0]];
    out.extend_from_slice(lines.join("\r\n").as_bytes());
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
