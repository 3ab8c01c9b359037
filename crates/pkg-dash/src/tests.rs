//! The packager and MPD writer on synthetic frames, every MPD parsed back
//! with an XML parser and checked structurally: required attributes, codecs,
//! timeline continuity, and every announced segment present in the store.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tidewater_core::{AudioParams, Codec, Frame, TrackId, TrackInfo, VideoParams};

use crate::mpd::{self, MpdOptions};
use crate::packager::{Packager, PackagerConfig};

const AVCC: &str = "0164001fffe1001a6764001facd9405005bb0110000003001000000303c0f183196001000668ebe3cb22c0fdf8f800";

fn hex(s: &str) -> Bytes {
    tidewater_tests::hex_bytes(s).into()
}

fn video_track() -> TrackInfo {
    let mut t = TrackInfo::video(TrackId(1), Codec::H264, 1280, 720)
        .with_timescale(1_000)
        .with_config(hex(AVCC));
    t.video = Some(VideoParams {
        width: 1280,
        height: 720,
        frame_rate: Some((25, 1)),
    });
    t
}

fn audio_track() -> TrackInfo {
    let mut t = TrackInfo::audio(TrackId(2), Codec::Aac, 44_100, 2)
        .with_timescale(1_000)
        .with_config(Bytes::from_static(&[0x12, 0x10]));
    t.audio = Some(AudioParams {
        sample_rate: 44_100,
        channels: 2,
    });
    t
}

fn base() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_000_000)
}

fn opts() -> MpdOptions {
    MpdOptions {
        time_url: "http://127.0.0.1:8888/dash/time".into(),
        latency_target: Duration::from_millis(1500),
        token: None,
    }
}

/// RTMP-like frames: 25 fps video (a keyframe every `gop` frames) and
/// 44.1 kHz AAC, millisecond times truncated as encoders send them, in
/// time order from `from_ms` for `seconds`.
fn frames(from_ms: i64, seconds: i64, gop: i64, video: bool, audio: bool) -> Vec<Frame> {
    let mut out = Vec::new();
    let end = from_ms + seconds * 1_000;
    let mut v = 0i64;
    let mut a = 0i64;
    loop {
        let vt = from_ms + v * 40;
        let at = from_ms + a * 1024 * 1_000 / 44_100;
        if (!video || vt >= end) && (!audio || at >= end) {
            break;
        }
        if video && (vt <= at || !audio || at >= end) && vt < end {
            let key = v % gop == 0;
            let nal: &'static [u8] = if key {
                &[0, 0, 0, 3, 0x65, 0x88, 0x80]
            } else {
                &[0, 0, 0, 3, 0x41, 0x9a, 0x00]
            };
            out.push(Frame::video(
                TrackId(1),
                Codec::H264,
                vt,
                vt + 80,
                key,
                Bytes::from_static(nal),
            ));
            v += 1;
        } else {
            out.push(Frame::audio(
                TrackId(2),
                Codec::Aac,
                at,
                Bytes::from_static(&[0x21, 0x10, 0x04, 0x60]),
            ));
            a += 1;
        }
    }
    out
}

fn wall(ms: i64) -> SystemTime {
    base() + Duration::from_millis(ms as u64)
}

/// What the checker found in one MPD.
#[derive(Debug, Default)]
struct Checked {
    periods: Vec<CheckedPeriod>,
}

type CheckedRep = (String, u64, Vec<(u64, u64, u64)>);

#[derive(Debug, Default)]
struct CheckedPeriod {
    id: String,
    start_ms: u64,
    /// Per representation: (id, timescale, [(number, t, d)]).
    reps: Vec<CheckedRep>,
}

fn attr<'a>(n: roxmltree::Node<'a, 'a>, name: &str) -> &'a str {
    n.attribute(name)
        .unwrap_or_else(|| panic!("<{}> lacks @{name}", n.tag_name().name()))
}

fn parse_duration_ms(s: &str) -> u64 {
    let secs = s
        .strip_prefix("PT")
        .and_then(|s| s.strip_suffix('S'))
        .unwrap_or_else(|| panic!("unsupported duration {s}"));
    (secs.parse::<f64>().expect("seconds") * 1000.0).round() as u64
}

/// Parses the MPD and checks it against the packager it came from.
fn check(xml: &str, packager: &Packager) -> Checked {
    let doc = roxmltree::Document::parse(xml).expect("the MPD is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "MPD");
    assert_eq!(
        root.tag_name().namespace(),
        Some("urn:mpeg:dash:schema:mpd:2011")
    );
    assert_eq!(attr(root, "type"), "dynamic");
    for a in [
        "availabilityStartTime",
        "publishTime",
        "profiles",
        "maxSegmentDuration",
    ] {
        assert!(!attr(root, a).is_empty());
    }
    for a in [
        "minimumUpdatePeriod",
        "timeShiftBufferDepth",
        "suggestedPresentationDelay",
        "minBufferTime",
    ] {
        parse_duration_ms(attr(root, a));
    }
    let ll = packager.config().low_latency;
    let utc: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("UTCTiming"))
        .collect();
    assert_eq!(utc.len(), 1);
    assert_eq!(
        attr(utc[0], "schemeIdUri"),
        "urn:mpeg:dash:utc:http-iso:2014"
    );
    assert!(attr(utc[0], "value").ends_with("/dash/time"));
    let service = root
        .children()
        .find(|n| n.has_tag_name("ServiceDescription"));
    assert_eq!(
        service.is_some(),
        ll,
        "ServiceDescription only in low-latency mode"
    );
    if let Some(s) = service {
        let lat = s
            .children()
            .find(|n| n.has_tag_name("Latency"))
            .expect("Latency");
        assert!(attr(lat, "target").parse::<u64>().expect("ms") > 0);
    }

    let mut out = Checked::default();
    let mut prev_end_ms: Option<u64> = None;
    for period in root.children().filter(|n| n.has_tag_name("Period")) {
        let id = attr(period, "id").to_string();
        let start_ms = parse_duration_ms(attr(period, "start"));
        if let Some(end) = prev_end_ms {
            assert!(
                start_ms >= end,
                "period {id} starts before the previous one ends"
            );
        }
        prev_end_ms = period
            .attribute("duration")
            .map(|d| start_ms + parse_duration_ms(d));
        let pid: u32 = id.parse().expect("numeric period id");
        let store = packager.period(pid).expect("announced period in the store");
        let mut cp = CheckedPeriod {
            id: id.clone(),
            start_ms,
            reps: Vec::new(),
        };
        for set in period
            .children()
            .filter(|n| n.has_tag_name("AdaptationSet"))
        {
            let kind = attr(set, "contentType");
            let mime = attr(set, "mimeType");
            assert_eq!(mime, format!("{kind}/mp4"));
            for rep in set.children().filter(|n| n.has_tag_name("Representation")) {
                let rid = attr(rep, "id").to_string();
                let codecs = attr(rep, "codecs");
                assert!(attr(rep, "bandwidth").parse::<u64>().expect("bandwidth") > 0);
                let track = store.track(&rid).expect("representation in the store");
                match kind {
                    "video" => {
                        assert!(codecs.starts_with("avc1.") || codecs.starts_with("hvc1."));
                        assert!(attr(rep, "width").parse::<u32>().expect("width") > 0);
                        assert!(attr(rep, "height").parse::<u32>().expect("height") > 0);
                        assert!(!attr(rep, "frameRate").is_empty());
                    }
                    "audio" => {
                        assert!(codecs.starts_with("mp4a.40.") || codecs == "opus");
                        assert!(attr(rep, "audioSamplingRate").parse::<u32>().expect("rate") > 0);
                        assert!(
                            rep.children()
                                .any(|n| n.has_tag_name("AudioChannelConfiguration"))
                        );
                    }
                    other => panic!("contentType {other}"),
                }
                let events: Vec<_> = rep
                    .children()
                    .filter(|n| n.has_tag_name("InbandEventStream"))
                    .collect();
                let first = store.tracks.first().is_some_and(|t| t.rep_id == rid);
                assert_eq!(events.len(), usize::from(first), "{rid}: MPD update events");
                if let Some(e) = events.first() {
                    assert_eq!(attr(*e, "schemeIdUri"), "urn:mpeg:dash:event:2012");
                    assert_eq!(attr(*e, "value"), "1");
                }
                let tpl = rep
                    .children()
                    .find(|n| n.has_tag_name("SegmentTemplate"))
                    .expect("SegmentTemplate");
                let timescale: u64 = attr(tpl, "timescale").parse().expect("timescale");
                assert_eq!(timescale, u64::from(track.timescale));
                assert_eq!(
                    attr(tpl, "initialization"),
                    format!("p{id}-$RepresentationID$-init.mp4")
                );
                let naming = if ll { "$Number$" } else { "t$Time$" };
                assert_eq!(
                    attr(tpl, "media"),
                    format!("p{id}-$RepresentationID$-{naming}.m4s")
                );
                let mut segs = Vec::new();
                if ll {
                    let d: u64 = attr(tpl, "duration").parse().expect("duration");
                    assert_eq!(d, timescale * 2);
                    assert_eq!(attr(tpl, "availabilityTimeComplete"), "false");
                    assert!(
                        attr(tpl, "availabilityTimeOffset")
                            .parse::<f64>()
                            .expect("ato")
                            > 0.0
                    );
                    assert_eq!(attr(tpl, "startNumber"), "1");
                    assert!(tpl.children().all(|n| !n.has_tag_name("SegmentTimeline")));
                    // Every stored segment sits on its nominal grid cell
                    // (audio follows video's cut: never before its cell).
                    for s in &track.segments {
                        let nominal = (s.number - 1) * d;
                        assert!(
                            s.start + d / 4 >= nominal
                                && (kind == "audio" || s.start < nominal + d),
                            "segment {} starts at {} off its cell {nominal}",
                            s.number,
                            s.start
                        );
                    }
                } else {
                    let timeline = tpl
                        .children()
                        .find(|n| n.has_tag_name("SegmentTimeline"))
                        .expect("SegmentTimeline");
                    assert!(tpl.attribute("startNumber").is_none());
                    let mut next_t: Option<u64> = None;
                    for s in timeline.children().filter(|n| n.has_tag_name("S")) {
                        let t = match s.attribute("t") {
                            Some(t) => t.parse().expect("t"),
                            None => next_t.expect("the first S has @t"),
                        };
                        if let Some(n) = next_t {
                            assert_eq!(t, n, "timeline continuity in {rid}");
                        }
                        let d: u64 = attr(s, "d").parse().expect("d");
                        assert!(d > 0);
                        let r: u64 = s.attribute("r").map_or(0, |r| r.parse().expect("r"));
                        let mut tt = t;
                        for _ in 0..=r {
                            let seg = track
                                .segments
                                .iter()
                                .find(|s| s.start == tt)
                                .unwrap_or_else(|| {
                                    panic!("{rid} segment at {tt} not in the store")
                                });
                            assert!(seg.is_complete());
                            assert_eq!(seg.duration, Some(d));
                            assert!(!seg.chunks.is_empty());
                            segs.push((seg.number, tt, d));
                            tt += d;
                        }
                        next_t = Some(tt);
                    }
                    assert!(!segs.is_empty(), "an empty timeline for {rid}");
                }
                cp.reps.push((rid, timescale, segs));
            }
        }
        out.periods.push(cp);
    }
    assert!(!out.periods.is_empty());
    out
}

fn run(packager: &mut Packager, frames: &[Frame], offset_ms: i64, check_every: usize) -> Checked {
    let mut last = Checked::default();
    for (i, f) in frames.iter().enumerate() {
        packager
            .on_frame(f, wall(f.dts + offset_ms))
            .expect("packaged");
        if check_every > 0
            && i % check_every == 0
            && let Some(xml) = mpd::write(packager, wall(f.dts + offset_ms), &opts())
        {
            last = check(&xml, packager);
        }
    }
    let xml = mpd::write(packager, SystemTime::now(), &opts()).expect("an MPD");
    let _ = last;
    check(&xml, packager)
}

#[test]
fn timeline_mode_checks_out_on_every_update() {
    let mut p = Packager::new(PackagerConfig::default());
    p.on_tracks(&[video_track(), audio_track()]);
    let checked = run(&mut p, &frames(5_000, 30, 50, true, true), 0, 1);
    assert_eq!(checked.periods.len(), 1);
    let period = &checked.periods[0];
    assert_eq!(period.start_ms, 0);
    let (vid, vts, vsegs) = &period.reps[0];
    assert_eq!((vid.as_str(), *vts), ("v1", 90_000));
    // A 6-segment window of exact 2 s video segments.
    assert_eq!(vsegs.len(), 6);
    assert!(vsegs.iter().all(|s| s.2 == 180_000));
    let (aid, ats, asegs) = &period.reps[1];
    assert_eq!((aid.as_str(), *ats), ("a2", 44_100));
    // Audio segments are whole frames, starting within a frame of video's.
    for (n, t, d) in asegs {
        assert_eq!(t % 1024, 0, "audio segment {n}");
        assert_eq!(d % 1024, 0);
        let video = vsegs
            .iter()
            .find(|s| s.0 == *n)
            .map(|s| s.1 as f64 / 90_000.0);
        if let Some(v) = video {
            let a = *t as f64 / 44_100.0;
            assert!(
                a >= v && a - v < 1024.0 / 44_100.0 + 1e-9,
                "audio {a} video {v}"
            );
        }
    }
}

#[test]
fn no_drift_over_an_hour() {
    let mut p = Packager::new(PackagerConfig::default());
    p.on_tracks(&[video_track(), audio_track()]);
    let checked = run(&mut p, &frames(0, 3_600, 50, true, true), 0, 0);
    let period = &checked.periods[0];
    let (_, _, vsegs) = &period.reps[0];
    let last = vsegs.last().expect("segments");
    // Segment n starts exactly at (n - 1) * 2 s after an hour.
    assert_eq!(last.0, 1_799);
    assert_eq!(last.1, (last.0 - 1) * 180_000);
    let (_, _, asegs) = &period.reps[1];
    let a = asegs.last().expect("audio segments");
    let video_start = (a.0 - 1) as f64 * 2.0;
    let audio_start = a.1 as f64 / 44_100.0;
    assert!(
        audio_start >= video_start && audio_start - video_start < 0.024,
        "audio {audio_start} video {video_start}"
    );
}

#[test]
fn low_latency_mode_numbers_segments_on_the_grid() {
    let mut p = Packager::new(PackagerConfig {
        low_latency: true,
        ..PackagerConfig::default()
    });
    p.on_tracks(&[video_track(), audio_track()]);
    // A 1 s GOP: every second keyframe starts a segment.
    let fr = frames(1_000, 9, 25, true, true);
    let mut seen_in_progress = false;
    for f in &fr {
        p.on_frame(f, wall(f.dts)).expect("packaged");
        let xml = mpd::write(&p, wall(f.dts), &opts()).expect("LL MPD once a segment started");
        check(&xml, &p);
        let v = p.periods()[0].track("v1").expect("video");
        let cur = v.segments.back().expect("a segment");
        if !cur.is_complete() && cur.chunks.len() > 3 {
            seen_in_progress = true;
        }
    }
    assert!(seen_in_progress);
    let v = p.periods()[0].track("v1").expect("video");
    let numbers: Vec<u64> = v.segments.iter().map(|s| s.number).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
}

#[test]
fn republish_starts_a_new_period() {
    let mut p = Packager::new(PackagerConfig::default());
    p.on_tracks(&[video_track(), audio_track()]);
    run(&mut p, &frames(0, 7, 50, true, true), 0, 7);
    p.on_discontinuity();
    // The new publish restarts its clock at 0, ten seconds later.
    p.on_tracks(&[video_track(), audio_track()]);
    let checked = run(&mut p, &frames(0, 7, 50, true, true), 10_000, 7);
    assert_eq!(checked.periods.len(), 2);
    assert_eq!(checked.periods[0].id, "1");
    assert_eq!(checked.periods[1].id, "2");
    assert_eq!(checked.periods[1].start_ms, 10_000);
    // The new period's timeline starts at 0 again.
    assert_eq!(checked.periods[1].reps[0].2[0].1, 0);
}

#[test]
fn a_new_decoder_configuration_starts_a_new_period() {
    let mut p = Packager::new(PackagerConfig::default());
    p.on_tracks(&[video_track(), audio_track()]);
    run(&mut p, &frames(0, 7, 50, true, true), 0, 0);
    // The same catalog again changes nothing.
    p.on_tracks(&[video_track(), audio_track()]);
    assert_eq!(p.periods().len(), 1);
    // A new resolution (a new catalog version) mid-stream, timestamps going on.
    let mut bigger = video_track();
    bigger.video = bigger.video.map(|v| VideoParams {
        width: 1920,
        height: 1080,
        ..v
    });
    p.on_tracks(&[bigger, audio_track()]);
    let checked = run(&mut p, &frames(8_000, 7, 50, true, true), 0, 0);
    assert_eq!(checked.periods.len(), 2);
    let first = p.period(1).expect("period 1");
    assert!(first.duration.is_some());
    assert!(
        first
            .tracks
            .iter()
            .all(|t| t.segments.iter().all(|s| s.is_complete()))
    );
    let second = p.period(2).expect("period 2");
    assert_eq!(second.tracks[0].info.video.map(|v| v.width), Some(1920));
    assert!(checked.periods[1].start_ms >= 7_000);
}

#[test]
fn audio_only_and_video_only() {
    let mut p = Packager::new(PackagerConfig::default());
    p.on_tracks(&[audio_track()]);
    let checked = run(&mut p, &frames(0, 9, 50, false, true), 0, 5);
    let (id, _, segs) = &checked.periods[0].reps[0];
    assert_eq!(id, "a2");
    assert!(segs.len() >= 3);

    let mut p = Packager::new(PackagerConfig::default());
    p.on_tracks(&[video_track()]);
    let checked = run(&mut p, &frames(0, 9, 50, true, false), 0, 5);
    assert_eq!(checked.periods[0].reps.len(), 1);
    assert_eq!(checked.periods[0].reps[0].2.len(), 4);
}

#[test]
fn nothing_is_announced_before_a_keyframe() {
    let mut p = Packager::new(PackagerConfig::default());
    p.on_tracks(&[video_track(), audio_track()]);
    let fr = frames(0, 3, 50, true, true);
    // Drop the first keyframe: nothing may start until the next one.
    for f in fr.iter().skip(1).filter(|f| f.dts < 1_900) {
        p.on_frame(f, wall(f.dts)).expect("packaged");
    }
    assert!(p.periods().is_empty());
    assert!(mpd::write(&p, wall(2_000), &opts()).is_none());
}

#[test]
fn a_gop_without_end_closes_the_period_instead_of_growing() {
    let mut p = Packager::new(PackagerConfig::default());
    p.on_tracks(&[video_track()]);
    // One keyframe, then 30 s of frames without another, then a keyframe.
    let mut fr = frames(0, 30, 10_000, true, false);
    fr.extend(frames(30_000, 5, 50, true, false));
    for f in &fr {
        p.on_frame(f, wall(f.dts)).expect("packaged");
    }
    let periods = p.periods();
    assert_eq!(periods.len(), 2);
    let first = &periods[0].tracks[0].segments;
    assert_eq!(first.len(), 1);
    // Closed at 20 s (ten targets), not 30.
    assert!(first[0].duration.is_some_and(|d| d <= 20 * 90_000 + 3_600));
    assert_eq!(
        periods[1].tracks[0].segments.front().map(|s| s.start),
        Some(0)
    );
    let xml = mpd::write(&p, wall(35_000), &opts()).expect("MPD");
    check(&xml, &p);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever frames arrive (keyframes anywhere, times jumping either
        /// way, unknown tracks, republishes), the packager never panics and
        /// every MPD it writes checks out.
        #[test]
        fn arbitrary_frames(
            steps in prop::collection::vec(
                (0u8..4, -3_000i64..3_000, any::<bool>(), 0u8..40),
                1..300,
            ),
            ll in any::<bool>(),
        ) {
            let mut p = Packager::new(PackagerConfig { low_latency: ll, ..PackagerConfig::default() });
            p.on_tracks(&[video_track(), audio_track()]);
            let mut t = 0i64;
            for (what, step, key, extra) in steps {
                t = (t + step).max(0);
                let frame = match what {
                    0 => Frame::video(TrackId(1), Codec::H264, t, t + i64::from(extra), key, Bytes::from_static(&[0, 0, 0, 1, 0x65])),
                    1 => Frame::audio(TrackId(2), Codec::Aac, t, Bytes::from_static(&[1, 2])),
                    2 => Frame::audio(TrackId(9), Codec::Aac, t, Bytes::new()),
                    _ => {
                        if extra == 0 {
                            p.on_discontinuity();
                            p.on_tracks(&[video_track(), audio_track()]);
                        }
                        continue;
                    }
                };
                p.on_frame(&frame, wall(t)).expect("packaged");
                if let Some(xml) = mpd::write(&p, wall(t), &opts()) {
                    check(&xml, &p);
                }
            }
        }
    }
}

#[test]
fn a_token_goes_in_every_url_but_the_time_endpoint() {
    for ll in [false, true] {
        let mut p = Packager::new(PackagerConfig {
            low_latency: ll,
            ..PackagerConfig::default()
        });
        p.on_tracks(&[video_track(), audio_track()]);
        for f in &frames(0, 7, 50, true, true) {
            p.on_frame(f, wall(f.dts)).expect("packaged");
        }
        let with = MpdOptions {
            token: Some("tw1.a-b_c~d$e".into()),
            ..opts()
        };
        let xml = mpd::write(&p, wall(7_000), &with).expect("an MPD");
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let root = doc.root_element();
        // `$` would start a template identifier: it is percent-encoded.
        let query = "?token=tw1.a-b_c~d%24e";
        let location: Vec<_> = root
            .children()
            .filter(|n| n.has_tag_name("Location"))
            .map(|n| n.text().unwrap_or_default())
            .collect();
        assert_eq!(location, [format!("manifest.mpd{query}")]);
        // Location comes before the periods (the MPD schema's order).
        let names: Vec<_> = root
            .children()
            .filter(|n| n.is_element())
            .map(|n| n.tag_name().name())
            .collect();
        assert!(
            names.iter().position(|n| *n == "Location") < names.iter().position(|n| *n == "Period")
        );
        let naming = if ll { "$Number$" } else { "t$Time$" };
        let mut templates = 0;
        for t in root
            .descendants()
            .filter(|n| n.has_tag_name("SegmentTemplate"))
        {
            let init = t.attribute("initialization").expect("initialization");
            let media = t.attribute("media").expect("media");
            assert!(init.ends_with(&format!("-init.mp4{query}")), "{init}");
            assert!(media.ends_with(&format!("-{naming}.m4s{query}")), "{media}");
            templates += 1;
        }
        assert_eq!(templates, 2);
        let utc = root
            .children()
            .find(|n| n.has_tag_name("UTCTiming"))
            .and_then(|n| n.attribute("value"))
            .expect("UTCTiming");
        assert_eq!(utc, "http://127.0.0.1:8888/dash/time");
        // Without a token: plain URLs, no Location.
        let plain = mpd::write(&p, wall(7_000), &opts()).expect("an MPD");
        assert!(!plain.contains("token") && !plain.contains("<Location"));
        check(&plain, &p);
    }
}

#[test]
fn an_ended_stream_has_a_static_mpd_listing_every_segment_to_its_end() {
    for low_latency in [true, false] {
        let mut p = Packager::new(PackagerConfig {
            low_latency,
            ..PackagerConfig::default()
        });
        p.on_tracks(&[video_track(), audio_track()]);
        // 9 s with a 1 s GOP: the last segment is in progress at the end.
        let fr = frames(1_000, 9, 25, true, true);
        for f in &fr {
            p.on_frame(f, wall(f.dts)).expect("packaged");
        }
        assert!(!p.ended());
        p.finish();
        assert!(p.ended());
        // Frames after the end change nothing.
        let changes = p.changes();
        let late = frames(10_000, 1, 25, true, true);
        p.on_frame(&late[0], wall(10_000)).expect("ignored");
        assert_eq!(p.changes(), changes);

        let xml = mpd::write(&p, wall(20_000), &opts()).expect("a static MPD");
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let root = doc.root_element();
        assert_eq!(attr(root, "type"), "static", "{xml}");
        for gone in [
            "availabilityStartTime",
            "minimumUpdatePeriod",
            "timeShiftBufferDepth",
            "suggestedPresentationDelay",
        ] {
            assert!(root.attribute(gone).is_none(), "{gone} in {xml}");
        }
        assert!(!xml.contains("UTCTiming") && !xml.contains("ServiceDescription"));
        let period = &p.periods()[0];
        let total = parse_duration_ms(attr(root, "mediaPresentationDuration"));
        let expected = period.start + period.duration.expect("the period ended");
        assert_eq!(total, expected.as_millis() as u64, "{xml}");
        // Every representation lists its segments by time, each one in the
        // store and complete, back to back up to the last one.
        let reps: Vec<_> = root
            .descendants()
            .filter(|n| n.has_tag_name("Representation"))
            .collect();
        assert_eq!(reps.len(), 2);
        for rep in reps {
            let track = period.track(attr(rep, "id")).expect("a track");
            let template = rep
                .descendants()
                .find(|n| n.has_tag_name("SegmentTemplate"))
                .expect("a template");
            assert!(attr(template, "media").ends_with("-t$Time$.m4s"), "{xml}");
            let mut t = None;
            let mut listed = Vec::new();
            for s in template.descendants().filter(|n| n.has_tag_name("S")) {
                let start: u64 = s
                    .attribute("t")
                    .map_or_else(|| t.expect("a first @t"), |v| v.parse().expect("@t"));
                let d: u64 = attr(s, "d").parse().expect("@d");
                let r: u64 = s.attribute("r").map_or(0, |v| v.parse().expect("@r"));
                for i in 0..=r {
                    listed.push((start + i * d, d));
                }
                t = Some(start + (r + 1) * d);
            }
            let stored: Vec<_> = track
                .segments
                .iter()
                .map(|s| (s.start, s.duration.expect("complete")))
                .collect();
            assert_eq!(listed, stored, "{xml}");
        }
    }
}

/// ffmpeg 5.1's DASH demuxer on a `$Number$` template (read once, every
/// term truncated to whole seconds): its oldest and its live segment
/// numbers at `client_now_s`, or `None` where its unsigned
/// `(now - availabilityStartTime) - timeShiftBufferDepth` would wrap round.
fn ffmpeg_oldest_and_live(
    client_now_s: u64,
    ast_s: u64,
    depth_s: u64,
    delay_s: u64,
    d_s: u64,
) -> Option<(u64, u64)> {
    let age = client_now_s.checked_sub(ast_s)?;
    let oldest = 1 + age.checked_sub(depth_s)? / d_s;
    let live = 1 + age.checked_sub(delay_s)? / d_s;
    Some((oldest, live))
}

#[test]
fn the_time_shift_buffer_is_never_deeper_than_the_stream_is_old() {
    // 6 segments of 2 s configured: 12 s, reached once the stream is that old.
    let window = Duration::from_secs(12);
    let ast = wall(1_300);
    for (age_ms, depth_s) in [
        (0, 0),
        (999, 0),
        (5_000, 5),
        (5_999, 5),
        (12_000, 12),
        (60_000, 12),
    ] {
        let now = ast + Duration::from_millis(age_ms);
        assert_eq!(
            mpd::time_shift_depth(window, ast, now),
            Duration::from_secs(depth_s),
            "at {age_ms} ms"
        );
    }
    // A clock behind the origin: nothing to reach.
    assert_eq!(
        mpd::time_shift_depth(window, ast, wall(1_000)),
        Duration::ZERO
    );
    // A window shorter than a second is kept as configured once reached.
    let short = Duration::from_millis(800);
    assert_eq!(mpd::time_shift_depth(short, ast, wall(9_000)), short);
}

#[test]
fn the_mpd_depth_at_ages_0_5_12_and_60_s_in_both_modes() {
    // The first keyframe at 1.3 s past a whole second of the wall clock.
    let first_ms = 1_300i64;
    let fr = frames(first_ms, 61, 50, true, true);
    for low_latency in [true, false] {
        let mut p = Packager::new(PackagerConfig {
            low_latency,
            ..PackagerConfig::default()
        });
        p.on_tracks(&[video_track(), audio_track()]);
        let mut next = fr.iter().peekable();
        // (stream age, depth in low-latency mode, in timeline mode): the
        // low-latency origin is the whole seconds of the 1.5 s delay (one)
        // before the first keyframe's whole second, 1.3 s before it.
        for (age_s, ll_depth, timeline_depth) in [
            (0u64, Some("PT1S"), None),
            (5, Some("PT6S"), Some("PT5S")),
            (12, Some("PT12S"), Some("PT12S")),
            (60, Some("PT12S"), Some("PT12S")),
        ] {
            let now_ms = first_ms + age_s as i64 * 1_000;
            while let Some(f) = next.next_if(|f| f.dts <= now_ms) {
                p.on_frame(f, wall(f.dts)).expect("packaged");
            }
            let now = wall(now_ms);
            let expected = if low_latency {
                ll_depth
            } else {
                timeline_depth
            };
            let Some(expected) = expected else {
                // A timeline waits for two complete segments.
                assert!(mpd::write(&p, now, &opts()).is_none());
                continue;
            };
            let xml = mpd::write(&p, now, &opts()).expect("an MPD");
            check(&xml, &p);
            let doc = roxmltree::Document::parse(&xml).expect("well-formed");
            let root = doc.root_element();
            assert_eq!(
                attr(root, "timeShiftBufferDepth"),
                expected,
                "at {age_s} s (low latency {low_latency})"
            );
            let (ast_s, origin) = if low_latency {
                (1_795_000_000, base())
            } else {
                (1_795_000_001, wall(first_ms))
            };
            assert_eq!(
                attr(root, "availabilityStartTime"),
                crate::timefmt::iso8601(origin)
            );
            if low_latency {
                // What ffmpeg computes from it, read now or later (it reads
                // the MPD once): no wrap, and its oldest segment never past
                // its live one, so it never goes back to a segment it read.
                let depth_s = parse_duration_ms(expected) / 1_000;
                let now_s = 1_795_000_000 + now_ms as u64 / 1_000;
                for later in [0, 1, 7, 100] {
                    let (oldest, live) =
                        ffmpeg_oldest_and_live(now_s + later, ast_s, depth_s, 1, 2)
                            .expect("no unsigned wrap");
                    assert!(oldest <= live, "at {age_s} s + {later} s");
                }
            }
        }
    }
}
