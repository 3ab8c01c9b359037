//! Real signalling bodies edited line by line, for the property tests of
//! signalling (`offer_props`, `signal_props`): a client's offer, and its
//! lines dropped, repeated, cut (at a character boundary) or replaced with
//! printable text.

use std::time::Instant;

use proptest::prelude::*;
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};

/// A client's offer with H.264, VP8 and Opus, both lines `direction`
/// (send-only for WHIP, receive-only for WHEP). Its candidate,
/// 127.0.0.1:9, is never contacted.
pub fn offer(direction: Direction) -> String {
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

/// An edit of one line, chosen by its index modulo the number of lines.
#[derive(Debug, Clone)]
pub enum Edit {
    /// The line goes.
    Drop(usize),
    /// The line appears twice.
    Repeat(usize),
    /// The line is cut short.
    Cut(usize),
    /// The line becomes this text.
    Replace(usize, String),
}

/// Any edit.
pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Drop),
        any::<usize>().prop_map(Edit::Repeat),
        any::<usize>().prop_map(Edit::Cut),
        (any::<usize>(), "[ -~]{0,40}").prop_map(|(i, s)| Edit::Replace(i, s)),
    ]
}

/// `text`'s CRLF-separated lines with `edits` made in order, joined again.
pub fn apply_edits(text: &str, edits: Vec<Edit>) -> String {
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
    lines.join("\r\n")
}
