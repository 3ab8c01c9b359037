//! Per-session link figures read from each peer's RTCP feedback: what
//! transport-wide congestion control feedback (TWCC) says of the packets
//! the server sent (loss, round trip), the receiver's REMB estimate when it
//! sends one, and the receiver reports' loss and round trip, with the
//! NACK, PLI and FIR counts.
//!
//! str0m reads the feedback; its statistics events (every
//! [`STATS_INTERVAL`], asked for in [`negotiate`](crate::negotiate)) and
//! REMB events are folded here ([`LinkQos::observe`]) by the media worker,
//! which publishes each session's figures on the [`QosBoard`] of
//! [`MediaStats`](crate::MediaStats) (a lock taken once per session per
//! interval, never on the media path). Read them with
//! [`Whip::qos`](crate::Whip::qos).
//!
//! TWCC needs no bandwidth estimator to be read: str0m keeps the register
//! of what it sent with transport-wide sequence numbers and applies each
//! feedback report to it. Its send-side bandwidth estimate (str0m's BWE,
//! which also paces and probes) is off, so `bwe_bps` stays empty.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use str0m::Event;
use str0m::bwe::BweKind;

/// How often str0m reports each peer's statistics.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// What the feedback of one session's peer says of its link.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkQos {
    /// The session's id (the last part of its `Location`).
    pub session: String,
    /// The same session's id in the API's sessions list
    /// (`/api/v1/sessions`): its kernel publish or (a viewer's first)
    /// subscription.
    pub kernel_session: Option<u64>,
    /// `whip` (a publisher) or `whep` (a viewer).
    pub role: &'static str,
    /// The stream (`app/stream`).
    pub stream: String,
    /// Statistics reports folded in so far.
    pub reports: u64,
    /// Fraction of the packets sent in the last second that TWCC feedback
    /// reported lost (0.0–1.0).
    pub twcc_loss: Option<f32>,
    /// Round trip measured from TWCC feedback, in milliseconds.
    pub twcc_rtt_ms: Option<f64>,
    /// Fraction of the received packets lost, from our own TWCC register
    /// of what the peer sent (publishers).
    pub ingress_loss: Option<f32>,
    /// The receiver's last REMB (receiver-estimated maximum bitrate), bit/s.
    pub remb_bps: Option<u64>,
    /// The send-side bandwidth estimate, bit/s (str0m's BWE; not enabled).
    pub bwe_bps: Option<u64>,
    /// Loss of the video the server sends, from the receiver reports (0.0–1.0).
    pub rr_loss: Option<f32>,
    /// Round trip of the video the server sends, from the receiver
    /// reports, in milliseconds.
    pub rr_rtt_ms: Option<f64>,
    /// NACKs, PLIs and FIRs the peer sent for the media the server sends.
    pub nacks: u64,
    /// See [`LinkQos::nacks`].
    pub plis: u64,
    /// See [`LinkQos::nacks`].
    pub firs: u64,
    /// Bytes the server sent this peer (media).
    pub bytes_sent: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl LinkQos {
    /// A session's figures before any feedback.
    pub fn new(session: &str, role: &'static str, stream: &str) -> Self {
        LinkQos {
            session: session.to_owned(),
            role,
            stream: stream.to_owned(),
            ..LinkQos::default()
        }
    }

    /// Folds in `event` when it is a statistics or REMB event; whether it
    /// was one (the caller then has nothing else to do with it).
    pub fn observe(&mut self, event: &Event) -> bool {
        match event {
            Event::PeerStats(s) => {
                self.reports += 1;
                self.twcc_loss = s.egress_loss_fraction;
                self.twcc_rtt_ms = s.rtt.map(ms);
                self.ingress_loss = s.ingress_loss_fraction;
                self.bwe_bps = s.bwe_tx.map(|b| b.as_u64());
                self.bytes_sent = s.bytes_tx;
            }
            // Per media line: the video's figures are the ones that say
            // most (audio has no NACK, PLI or FIR); the sums of the lines.
            Event::MediaEgressStats(m) => {
                if m.rtt.is_some() {
                    self.rr_rtt_ms = m.rtt.map(ms);
                }
                if m.loss.is_some() {
                    self.rr_loss = m.loss;
                }
                self.nacks = self.nacks.max(m.nacks);
                self.plis = self.plis.max(m.plis);
                self.firs = self.firs.max(m.firs);
            }
            Event::EgressBitrateEstimate(BweKind::Remb { estimate, .. }) => {
                self.remb_bps = Some(estimate.as_u64());
            }
            Event::EgressBitrateEstimate(_) | Event::MediaIngressStats(_) => {}
            _ => return false,
        }
        true
    }
}

/// Every session's last [`LinkQos`], by session id.
#[derive(Debug, Default)]
pub struct QosBoard {
    sessions: Mutex<HashMap<String, LinkQos>>,
}

impl QosBoard {
    /// Records `qos` as its session's figures.
    pub fn set(&self, qos: &LinkQos) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get_mut(&qos.session) {
            Some(old) => old.clone_from(qos),
            None => {
                sessions.insert(qos.session.clone(), qos.clone());
            }
        }
    }

    /// Forgets a session that ended.
    pub fn remove(&self, session: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(session);
    }

    /// Every open session's figures, sorted by session id.
    pub fn snapshot(&self) -> Vec<LinkQos> {
        let mut out: Vec<LinkQos> = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        out.sort_by(|a, b| a.session.cmp(&b.session));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_keeps_one_entry_per_open_session() {
        let board = QosBoard::default();
        let mut a = LinkQos::new("a", "whep", "live/x");
        board.set(&a);
        a.nacks = 3;
        board.set(&a);
        board.set(&LinkQos::new("b", "whip", "live/x"));
        let all = board.snapshot();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].nacks, 3);
        board.remove("a");
        assert_eq!(board.snapshot().len(), 1);
    }

    #[test]
    fn only_statistics_and_remb_events_are_taken() {
        let mut q = LinkQos::new("a", "whep", "live/x");
        assert!(!q.observe(&Event::Connected));
        assert_eq!(q.reports, 0);
    }
}
