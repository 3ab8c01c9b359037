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
//! [`Whip::qos`](crate::Whip::qos), or per stream ([`StreamLinks`],
//! [`Whip::qos_by_stream`](crate::Whip::qos_by_stream): what `/metrics`
//! shows). RTX packets are not in str0m's statistics: the worker counts
//! them as they leave, by the viewer's RTX SSRC ([`LinkQos::sent`]).
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
    /// RTX packets (retransmissions answering NACKs) the server sent this
    /// peer, counted by the worker as they leave ([`LinkQos::sent`]).
    pub rtx_packets: u64,
    /// The SSRC of the peer's RTX stream, once known.
    pub rtx_ssrc: Option<u32>,
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

    /// Counts a datagram sent to the peer: an RTX packet when its SSRC
    /// (SRTP leaves the RTP header in the clear) is the peer's RTX SSRC.
    pub fn sent(&mut self, datagram: &[u8]) {
        let Some(rtx) = self.rtx_ssrc else {
            return;
        };
        // RFC 7983: 128..=191 is RTP or RTCP; RTCP's packet types 200..=207
        // (RFC 5761) sit where RTP has the marker bit and payload type 72..=79.
        let rtp = datagram.first().is_some_and(|b| (128..=191).contains(b))
            && datagram.get(1).is_some_and(|b| !(200..=207).contains(b));
        if rtp
            && datagram
                .get(8..12)
                .and_then(|s| <[u8; 4]>::try_from(s).ok())
                .is_some_and(|s| u32::from_be_bytes(s) == rtx)
        {
            self.rtx_packets += 1;
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

/// One stream's WebRTC figures: its sessions' [`LinkQos`] summed (the
/// counters) or at their worst (loss, round trip), for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamLinks {
    /// The stream (`app/stream`).
    pub stream: String,
    /// Open WHEP sessions (viewers).
    pub viewers: u64,
    /// Open WHIP sessions (publishers).
    pub publishers: u64,
    /// NACKs, PLIs and FIRs the stream's peers sent, RTX packets sent to
    /// them: the open sessions' counts plus those of the sessions of the
    /// stream that ended while any other stayed open (the sums start again
    /// from zero once a stream has no WebRTC session left).
    pub nacks: u64,
    /// See [`StreamLinks::nacks`].
    pub plis: u64,
    /// See [`StreamLinks::nacks`].
    pub firs: u64,
    /// See [`StreamLinks::nacks`].
    pub rtx_packets: u64,
    /// The highest loss (0.0–1.0) among the open sessions' receiver
    /// reports, or TWCC feedback where a session has no report.
    pub max_loss: Option<f32>,
    /// The longest round trip (ms) among the open sessions, the same way.
    pub max_rtt_ms: Option<f64>,
}

/// The counters of a stream's sessions that ended.
#[derive(Debug, Clone, Copy, Default)]
struct Ended {
    nacks: u64,
    plis: u64,
    firs: u64,
    rtx_packets: u64,
}

/// Every session's last [`LinkQos`], by session id.
#[derive(Debug, Default)]
pub struct QosBoard {
    sessions: Mutex<HashMap<String, LinkQos>>,
    /// Per stream: what its ended sessions counted (see [`StreamLinks`]).
    ended: Mutex<HashMap<String, Ended>>,
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

    /// Forgets a session that ended, its counters kept in its stream's
    /// sums while the stream has other sessions; `last` are its final
    /// figures (newer than the board's, which are published every
    /// [`STATS_INTERVAL`]).
    pub fn remove(&self, session: &str, last: Option<&LinkQos>) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let gone = sessions.remove(session);
        let Some(gone) = last.or(gone.as_ref()) else {
            return;
        };
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.values().any(|q| q.stream == gone.stream) {
            let e = ended.entry(gone.stream.clone()).or_default();
            e.nacks += gone.nacks;
            e.plis += gone.plis;
            e.firs += gone.firs;
            e.rtx_packets += gone.rtx_packets;
        } else {
            ended.remove(&gone.stream);
        }
    }

    /// Each stream's figures (streams with an open session), sorted by
    /// stream.
    pub fn streams(&self) -> Vec<StreamLinks> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: HashMap<&str, StreamLinks> = HashMap::new();
        for q in sessions.values() {
            let s = out.entry(q.stream.as_str()).or_insert_with(|| {
                let e = ended.get(&q.stream).copied().unwrap_or_default();
                StreamLinks {
                    stream: q.stream.clone(),
                    nacks: e.nacks,
                    plis: e.plis,
                    firs: e.firs,
                    rtx_packets: e.rtx_packets,
                    ..StreamLinks::default()
                }
            });
            if q.role == "whip" {
                s.publishers += 1;
            } else {
                s.viewers += 1;
            }
            s.nacks += q.nacks;
            s.plis += q.plis;
            s.firs += q.firs;
            s.rtx_packets += q.rtx_packets;
            if let Some(loss) = q.rr_loss.or(q.twcc_loss) {
                s.max_loss = Some(s.max_loss.map_or(loss, |m| m.max(loss)));
            }
            if let Some(rtt) = q.rr_rtt_ms.or(q.twcc_rtt_ms) {
                s.max_rtt_ms = Some(s.max_rtt_ms.map_or(rtt, |m| m.max(rtt)));
            }
        }
        let mut out: Vec<StreamLinks> = out.into_values().collect();
        out.sort_by(|a, b| a.stream.cmp(&b.stream));
        out
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
        board.remove("a", None);
        assert_eq!(board.snapshot().len(), 1);
    }

    /// A stream's sums take in its ended sessions while it has open ones,
    /// and start again once it has none.
    #[test]
    fn stream_sums_keep_ended_sessions_while_the_stream_has_others() {
        let board = QosBoard::default();
        let mut a = LinkQos::new("a", "whep", "live/x");
        a.nacks = 4;
        a.rtx_packets = 6;
        a.rr_rtt_ms = Some(20.0);
        let mut b = LinkQos::new("b", "whep", "live/x");
        b.plis = 1;
        b.twcc_rtt_ms = Some(35.0);
        b.twcc_loss = Some(0.25);
        board.set(&a);
        board.set(&b);
        board.set(&LinkQos::new("c", "whip", "live/y"));
        let all = board.streams();
        assert_eq!(all.len(), 2);
        let x = &all[0];
        assert_eq!((x.viewers, x.publishers), (2, 0));
        assert_eq!((x.nacks, x.plis, x.rtx_packets), (4, 1, 6));
        assert_eq!((x.max_rtt_ms, x.max_loss), (Some(35.0), Some(0.25)));
        assert_eq!((all[1].viewers, all[1].publishers), (0, 1));
        // "a" ends with newer figures than the board had.
        a.nacks = 5;
        board.remove("a", Some(&a));
        let x = &board.streams()[0];
        assert_eq!((x.viewers, x.nacks, x.rtx_packets), (1, 5, 6));
        // The last session of the stream: nothing is kept for it.
        board.remove("b", None);
        assert!(board.streams().iter().all(|s| s.stream != "live/x"));
        board.set(&LinkQos::new("d", "whep", "live/x"));
        assert_eq!(board.streams()[0].nacks, 0);
    }

    /// Only RTP on the RTX SSRC counts as RTX.
    #[test]
    fn rtx_packets_are_counted_by_their_ssrc() {
        let mut q = LinkQos::new("a", "whep", "live/x");
        let rtp = |ssrc: u32, second: u8| {
            let mut d = vec![0x80, second, 0, 1, 0, 0, 0, 0];
            d.extend_from_slice(&ssrc.to_be_bytes());
            d.extend_from_slice(&[0; 20]);
            d
        };
        q.sent(&rtp(7, 97));
        assert_eq!(q.rtx_packets, 0);
        q.rtx_ssrc = Some(7);
        q.sent(&rtp(7, 97));
        q.sent(&rtp(8, 96));
        // An RTCP packet (type 200) naming the same SSRC, and a STUN one.
        q.sent(&rtp(7, 200));
        q.sent(&[0, 1, 0, 0]);
        q.sent(&[]);
        assert_eq!(q.rtx_packets, 1);
    }

    #[test]
    fn only_statistics_and_remb_events_are_taken() {
        let mut q = LinkQos::new("a", "whep", "live/x");
        assert!(!q.observe(&Event::Connected));
        assert_eq!(q.reports, 0);
    }
}
