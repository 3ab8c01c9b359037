//! One connection to a source: `DESCRIBE`, `SETUP` of the tracks the
//! kernel carries, `PLAY`, then frames into a publish until the source
//! goes away, stalls, or the pull is told to stop.
// Reads network input: no indexing, unwrap, expect or panic that a peer
// could reach (issue 18); where an invariant proves one safe, an allow says which.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use retina::client::{
    Credentials, InitialTimestampPolicy, PlayOptions, Session, SessionOptions, SetupOptions,
    TcpTransportOptions, Transport, UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat};
use tidewater_core::{Codec, Frame, IngestContext, PublishSession, Request, TrackId, TrackInfo};
use tracing::{info, warn};

use super::raw;
use super::spec::{PullOptions, PullSpec};
use super::tracks::{DecodeTimes, Wanted, canonical_video, reorder_depth, track_info, wanted};
use crate::sdp::SdpTrack;

/// The protocol name a pull publishes under (API, logs, metrics).
pub const PROTOCOL: &str = "rtsp-pull";

/// Where each stream's timestamps start, in seconds: retina counts from
/// the `PLAY` answer's `RTP-Info` (or the first packet), and a little room
/// keeps a first frame with a slightly earlier time from going negative.
const TIMELINE_START_SECS: i64 = 10;

/// How an attempt ended without the source failing.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The pull was told to stop (shutdown, or no reader left).
    Asked,
}

/// The transport of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// Interleaved on TCP.
    Tcp,
    /// RTP/RTCP over UDP.
    Udp,
}

impl Wire {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Wire::Tcp => "tcp",
            Wire::Udp => "udp",
        }
    }

    fn transport(self) -> Transport {
        match self {
            Wire::Tcp => Transport::Tcp(TcpTransportOptions::default()),
            Wire::Udp => Transport::Udp(UdpTransportOptions::default()),
        }
    }
}

/// A failure: where it happened and why (shown in the API).
#[derive(Debug)]
pub struct Failed {
    /// Whether `PLAY` had been answered (media flowed or was about to).
    pub played: bool,
    /// What went wrong.
    pub reason: String,
}

pub(super) fn failed(played: bool, reason: impl std::fmt::Display) -> Failed {
    Failed {
        played,
        reason: reason.to_string(),
    }
}

/// Why a pull's wait for the source's next item ended without one.
pub(super) enum Ended {
    /// The pull was told to stop: the caller finishes its publish.
    Stop,
    /// The publish ended, the source failed, closed or went silent.
    Failed(Failed),
}

/// The source's next item, or why there is none: `stop` resolved, the
/// publish ended (`closed`), the source failed or closed, or nothing came
/// within `stall` (one wait for both of a pull's paths, retina's demuxed
/// frames and raw RTP).
pub(super) async fn next_item<T, E: std::fmt::Display>(
    source: &mut (impl futures::Stream<Item = Result<T, E>> + Unpin),
    stop: &mut (impl Future<Output = ()> + Unpin),
    closed: &mut (impl Future<Output = tidewater_core::EndReason> + Unpin),
    stall: Duration,
) -> Result<T, Ended> {
    let item = tokio::select! {
        () = stop => return Err(Ended::Stop),
        reason = closed => {
            return Err(Ended::Failed(failed(true, format!("the publish ended: {reason:?}"))));
        }
        item = tokio::time::timeout(stall, source.next()) => item,
    };
    match item {
        Err(_) => Err(Ended::Failed(failed(
            true,
            format!("no media for {stall:?}"),
        ))),
        Ok(None) => Err(Ended::Failed(failed(true, "the source closed the session"))),
        Ok(Some(Err(e))) => Err(Ended::Failed(failed(true, e))),
        Ok(Some(Ok(item))) => Ok(item),
    }
}

/// One stream of the source that was set up.
struct Pulled {
    /// Retina's stream index.
    index: usize,
    codec: Codec,
    info: Option<TrackInfo>,
    /// Decode times, for a video track.
    dts: Option<DecodeTimes>,
}

impl Pulled {
    /// Takes a new track info, and its reorder depth for a video track.
    fn learn(&mut self, info: Option<TrackInfo>, clock_rate: u32) {
        if let Some(i) = &info
            && i.video.is_some()
        {
            let depth = reorder_depth(i);
            match &mut self.dts {
                Some(d) => d.set_depth(depth),
                None => self.dts = Some(DecodeTimes::new(depth, clock_rate)),
            }
        }
        self.info = info;
    }
}

/// Connects over `wire` and publishes until the source fails or `stop`
/// resolves; `on_live` runs once `PLAY` is answered and the publish is open.
pub async fn run(
    spec: &PullSpec,
    wire: Wire,
    options: &PullOptions,
    ctx: &IngestContext,
    stop: impl Future<Output = ()>,
    on_live: impl FnOnce(),
) -> Result<Stopped, Failed> {
    tokio::pin!(stop);
    let connect = connect(spec, wire);
    let (session, mut pulled, raw_tracks) = tokio::select! {
        () = &mut stop => return Ok(Stopped::Asked),
        r = tokio::time::timeout(options.connect_timeout, connect) => match r {
            Ok(r) => r?,
            Err(_) => return Err(failed(false, format!("no answer to DESCRIBE/SETUP/PLAY within {:?}", options.connect_timeout))),
        },
    };
    // Retina's demuxed path, unless a track needs our depacketizers.
    let (mut demuxed, raw_session) = match raw_tracks {
        Some(_) => (None, Some(session)),
        None => (
            Some(
                session
                    .demuxed()
                    .map_err(|e| failed(true, format!("cannot depacketize: {e}")))?,
            ),
            None,
        ),
    };
    let request = Request::new(spec.key.clone(), PROTOCOL)
        // The pull is the operator's own source, configured in `[[pull]]`:
        // an internal publish that the authorizer is not asked about (see
        // the module docs on [auth]). Shown from the server's side of
        // loopback.
        .peer(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .user(PROTOCOL)
        .internal();
    let mut publish = ctx
        .open_publish(request)
        .await
        .map_err(|e| failed(true, format!("the stream refused the publish: {e}")))?;
    publish.set_metadata("source", spec.shown_url());
    publish.set_metadata("transport", wire.as_str());
    info!(stream = %spec.key, source = %spec.shown_url(), transport = wire.as_str(), "pull: playing");
    on_live();
    let Some(mut demuxed) = demuxed.take() else {
        let (Some(session), Some(tracks)) = (raw_session, raw_tracks) else {
            return Err(failed(true, "no session"));
        };
        return raw::publish(spec, options, session, &tracks, publish, stop).await;
    };
    for p in &mut pulled {
        let id = track_id(p.index);
        let Some(stream) = demuxed.streams().get(p.index) else {
            continue;
        };
        let clock = stream.clock_rate_hz();
        let info = stream
            .parameters()
            .and_then(|params| track_info(id, &params, clock));
        p.learn(info, clock);
    }
    let mut catalog_set = set_catalog(&mut publish, &pulled, false)?;
    let closed = publish.closed();
    tokio::pin!(closed);
    let started = tokio::time::Instant::now();
    loop {
        let item =
            match next_item(&mut demuxed, &mut stop, &mut closed, options.stall_timeout).await {
                Ok(item) => item,
                Err(Ended::Stop) => {
                    publish.finish().await;
                    return Ok(Stopped::Asked);
                }
                Err(Ended::Failed(f)) => return Err(f),
            };
        let (index, frame) = match item {
            CodecItem::VideoFrame(f) => {
                let index = f.stream_id();
                let Some(p) = pulled.iter_mut().find(|p| p.index == index) else {
                    continue;
                };
                if f.has_new_parameters() {
                    let id = track_id(index);
                    let Some(stream) = demuxed.streams().get(index) else {
                        continue;
                    };
                    let clock = stream.clock_rate_hz();
                    let info = stream
                        .parameters()
                        .and_then(|params| track_info(id, &params, clock));
                    p.learn(info, clock);
                    catalog_set = set_catalog(&mut publish, &pulled, catalog_set)?;
                }
                let pts = timestamp(f.timestamp());
                let keyframe = f.is_random_access_point();
                let Some(p) = pulled.iter_mut().find(|p| p.index == index) else {
                    continue;
                };
                // Frames come in decode order with presentation times (RTP
                // time); a camera with B-frames needs its decode times
                // derived, as the publish path does.
                let dts = p.dts.as_mut().map_or(pts, |d| d.next(pts));
                let codec = p.codec;
                let Some(payload) = canonical_video(codec, f.into_data()) else {
                    warn!(stream = %spec.key, "pull: dropped a video frame with bad NAL lengths");
                    continue;
                };
                (
                    index,
                    Frame::video(track_id(index), codec, dts, pts, keyframe, payload),
                )
            }
            CodecItem::AudioFrame(f) => {
                let index = f.stream_id();
                let Some(p) = pulled.iter().find(|p| p.index == index) else {
                    continue;
                };
                let ts = timestamp(f.timestamp());
                let payload = bytes::Bytes::copy_from_slice(f.data());
                (index, Frame::audio(track_id(index), p.codec, ts, payload))
            }
            _ => continue,
        };
        if !catalog_set {
            // A stream whose parameters come in band only: wait for them a
            // while, then publish without it.
            if started.elapsed() < Duration::from_secs(3) {
                continue;
            }
            catalog_set = set_catalog(&mut publish, &pulled, true)?;
        }
        if !pulled.iter().any(|p| p.index == index && p.info.is_some()) {
            continue;
        }
        publish
            .publish(frame)
            .map_err(|e| failed(true, format!("publish: {e}")))?;
    }
}

/// Sets the catalog once every set-up stream's parameters are known (or,
/// with `partial`, once any is); returns whether a catalog is in force.
fn set_catalog(
    publish: &mut PublishSession,
    pulled: &[Pulled],
    partial: bool,
) -> Result<bool, Failed> {
    let known: Vec<TrackInfo> = pulled.iter().filter_map(|p| p.info.clone()).collect();
    if known.is_empty() || (!partial && known.len() < pulled.len()) {
        return Ok(false);
    }
    publish
        .set_catalog(known)
        .map_err(|e| failed(true, format!("catalog: {e}")))?;
    Ok(true)
}

fn track_id(index: usize) -> TrackId {
    TrackId(u32::try_from(index).unwrap_or(u32::MAX).saturating_add(1))
}

fn timestamp(t: retina::Timestamp) -> i64 {
    t.elapsed()
        .saturating_add(TIMELINE_START_SECS.saturating_mul(i64::from(t.clock_rate().get())))
}

/// A playing session, the streams set up for retina's depacketizers, and,
/// for a source that goes through ours instead ([`raw`]), its tracks.
type Connected = (
    Session<retina::client::Playing>,
    Vec<Pulled>,
    Option<Vec<SdpTrack>>,
);

/// `DESCRIBE`, `SETUP` of every stream the kernel carries, `PLAY`.
async fn connect(spec: &PullSpec, wire: Wire) -> Result<Connected, Failed> {
    let creds = spec.user.as_ref().map(|user| Credentials {
        username: user.clone(),
        password: spec.password.clone().unwrap_or_default(),
    });
    let options = SessionOptions::default()
        .creds(creds)
        .user_agent(format!("tidewater/{}", env!("CARGO_PKG_VERSION")));
    let mut session = Session::describe(spec.url.clone(), options)
        .await
        .map_err(|e| failed(false, format!("DESCRIBE: {e}")))?;
    let raw_tracks = raw_tracks(&session)?;
    let mut pulled = Vec::new();
    let choices: Vec<(usize, Wanted, String)> = session
        .streams()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                i,
                wanted(s.media(), s.encoding_name()),
                format!("{} {}", s.media(), s.encoding_name()),
            )
        })
        .collect();
    for (index, choice, what) in choices {
        match choice {
            Wanted::Skipped(why) => {
                info!(stream = %spec.key, "pull: track {index} ({what}) left out: {why}");
            }
            Wanted::Codec(_)
                if raw_tracks
                    .as_ref()
                    .is_some_and(|t| t.get(index).and_then(SdpTrack::codec).is_none()) =>
            {
                info!(stream = %spec.key, "pull: track {index} ({what}) left out: its SDP does not say enough to depacketize it");
            }
            Wanted::Codec(codec) => {
                session
                    .setup(
                        index,
                        SetupOptions::default()
                            .transport(wire.transport())
                            .frame_format(FrameFormat::MP4),
                    )
                    .await
                    .map_err(|e| failed(false, format!("SETUP over {}: {e}", wire.as_str())))?;
                pulled.push(Pulled {
                    index,
                    codec,
                    info: None,
                    dts: None,
                });
            }
        }
    }
    if pulled.is_empty() {
        return Err(failed(
            false,
            "the source has no H.264, H.265, AAC or Opus track",
        ));
    }
    let playing = session
        .play(PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive))
        .await
        .map_err(|e| failed(false, format!("PLAY: {e}")))?;
    // Tracks not set up stay out of the catalog our depacketizers make.
    let raw_tracks = raw_tracks.map(|mut tracks| {
        for (index, track) in tracks.iter_mut().enumerate() {
            if !pulled.iter().any(|p| p.index == index) {
                track.media = "not set up".into();
            }
        }
        tracks
    });
    Ok((playing, pulled, raw_tracks))
}

/// The source's tracks as our SDP reader sees them when a track it
/// carries is one retina does not depacketize (Opus); `None` otherwise.
fn raw_tracks(
    session: &Session<retina::client::Described>,
) -> Result<Option<Vec<SdpTrack>>, Failed> {
    let needs_ours = session
        .streams()
        .iter()
        .any(|s| wanted(s.media(), s.encoding_name()) == Wanted::Codec(Codec::Opus));
    if !needs_ours {
        return Ok(None);
    }
    let tracks =
        crate::sdp::parse(session.sdp()).map_err(|e| failed(false, format!("DESCRIBE: {e}")))?;
    // Retina numbers the `m=` sections as they come, as our reader does.
    let same = tracks.len() == session.streams().len()
        && tracks.iter().zip(session.streams()).all(|(t, s)| {
            t.media == s.media() && t.encoding.eq_ignore_ascii_case(s.encoding_name())
        });
    if !same {
        return Err(failed(
            false,
            "DESCRIBE: the description's media sections could not be matched to the client's",
        ));
    }
    Ok(Some(tracks))
}
