//! Entry points shared by the fuzz target (`fuzz/fuzz_targets/whip_signal.rs`)
//! and its stable property-test twin (`tests/signal_props.rs`). Not a
//! stable API.

use std::net::SocketAddr;
use std::time::Instant;

use crate::negotiate::{self, Role};
use crate::trickle;

/// What [`signalling`] did with its input (for the twin's assertions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An offer answered; the answer parses back as SDP.
    Answered,
    /// A trickle fragment read; how many candidates it gave.
    Trickled(usize),
    /// Refused with a reason, as the HTTP side would answer `4xx`.
    Refused,
}

/// Feeds `data` to what a WHIP/WHEP client's body reaches: the first
/// byte's low bit picks a `POST` offer (answered as a WHIP publish, or a
/// WHEP play when bit 1 is set, exactly as the routes do) or a `PATCH`
/// trickle fragment (bit 0 set); the rest is the body.
///
/// Never panics. Asserts that an answer parses back as SDP and that a
/// fragment gives at most [`trickle::MAX_CANDIDATES`] candidates.
pub fn signalling(data: &[u8]) -> Outcome {
    let Some((&first, body)) = data.split_first() else {
        return Outcome::Refused;
    };
    if first & 1 == 1 {
        let Ok(text) = std::str::from_utf8(body) else {
            return Outcome::Refused;
        };
        return match trickle::parse_fragment(text) {
            Ok(f) => {
                assert!(f.candidates.len() + f.unresolved <= trickle::MAX_CANDIDATES);
                Outcome::Trickled(f.candidates.len())
            }
            Err(_) => Outcome::Refused,
        };
    }
    let role = if first & 2 == 0 {
        Role::Publish
    } else {
        Role::Play
    };
    let Ok(offer) = negotiate::parse_offer(body) else {
        return Outcome::Refused;
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], 8189));
    let candidates: Vec<str0m::Candidate> =
        str0m::Candidate::host(addr, "udp").into_iter().collect();
    match negotiate::answer(offer, role, &candidates, Instant::now()) {
        Ok(n) => {
            assert!(
                str0m::change::SdpAnswer::from_sdp_string(&n.answer).is_ok(),
                "an answer that does not parse: {}",
                n.answer
            );
            Outcome::Answered
        }
        Err(_) => Outcome::Refused,
    }
}
