//! The packers driven by synthetic streams, every playlist update checked by
//! the validator and parsed by m3u8-rs.

use std::sync::Arc;

use bytes::Bytes;
use tidewater_core::{Codec, MediaKind, TrackId, TrackInfo};

use crate::ll::LlPacker;
use crate::normalize::{TrackSet, Unit};
use crate::playlist::{Flavour, Lookup, PlaylistState};
use crate::segmenter::{HZ, Targets};
use crate::validate::Tracker;

/// A real avcC (x264, High 3.1, 1280x720).
pub(crate) const AVCC: &[u8] = &[
    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50,
    0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83,
    0x19, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8, 0x00,
];

pub(crate) fn track_set(video: bool, audio: bool) -> Arc<TrackSet> {
    Arc::new(TrackSet {
        video: video.then(|| {
            TrackInfo::video(TrackId(1), Codec::H264, 1280, 720)
                .with_config(Bytes::from_static(AVCC))
        }),
        audio: audio.then(|| {
            TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2)
                .with_config(Bytes::from_static(&[0x11, 0x90]))
        }),
    })
}

fn targets() -> Targets {
    Targets {
        segment: 2 * HZ,
        part: Some(18_900),
        max_segment: 10 * HZ,
    }
}

/// Interleaved units: video at `fps` with a keyframe every `gop` frames
/// (millisecond jitter like RTMP), AAC at 48 kHz; `seconds` long from `start` (90 kHz).
pub(crate) fn units(
    fps: f64,
    gop: usize,
    seconds: f64,
    start: i64,
    video: bool,
    audio: bool,
) -> Vec<Unit> {
    let audio_unit = |a: i64| {
        let at = start * 48_000 / 90_000 + a * 1024;
        Unit {
            track: TrackId(2),
            kind: MediaKind::Audio,
            driving: !video,
            dts: at,
            pts: at,
            t90: at * 90_000 / 48_000,
            duration: Some(1024),
            keyframe: true,
            payload: Bytes::from(vec![0xaa; 20]),
        }
    };
    let mut out = Vec::new();
    if !video {
        let frames = (seconds * 48_000.0 / 1024.0) as i64;
        return (0..frames).map(audio_unit).collect();
    }
    let frames = (seconds * fps) as usize;
    let mut a = 0i64;
    for i in 0..frames {
        let t = start + ((i as f64 * 1000.0 / fps).round() as i64) * 90;
        out.push(Unit {
            track: TrackId(1),
            kind: MediaKind::Video,
            driving: true,
            dts: t,
            pts: t + 2 * 3000,
            t90: t,
            duration: None,
            keyframe: i % gop == 0,
            payload: Bytes::from(vec![i as u8; 100 + i % 7]),
        });
        // Audio frames up to this video time, interleaved after it.
        while audio && audio_unit(a).t90 <= t {
            out.push(audio_unit(a));
            a += 1;
        }
    }
    out
}

fn run_ll(units_: &[Unit], pl: &mut PlaylistState, p: &mut LlPacker, tracker: &mut Tracker) {
    let mut version = pl.version();
    for u in units_ {
        p.unit(u.clone(), pl).expect("unit");
        if pl.version() != version {
            version = pl.version();
            if let Some(text) = pl.render() {
                tracker
                    .update(&text)
                    .unwrap_or_else(|e| panic!("{e}\n{text}"));
            }
        }
    }
}

#[test]
fn ll_hls_playlists_stay_valid_through_a_stream_and_a_republish() {
    let mut pl = PlaylistState::new(Flavour::Fmp4, 6, 0.21, "e1");
    let mut p = LlPacker::new(targets());
    let mut tracker = Tracker::new();
    p.tracks(track_set(true, true), &mut pl).expect("tracks");
    run_ll(
        &units(30.0, 60, 20.0, 900_000, true, true),
        &mut pl,
        &mut p,
        &mut tracker,
    );
    assert!(tracker.updates() > 80, "{}", tracker.updates());
    let text = pl.render().expect("playlist");
    let s = crate::validate::check(&text).expect("valid");
    assert_eq!(s.target_duration, 2);
    assert_eq!(s.segments.len(), 6);
    assert!(s.media_sequence >= 3);
    assert!(text.contains("PART-HOLD-BACK=0.630"), "{text}");
    assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.210"));
    // Parts of the recent segments and the one in progress; the first part
    // of each segment is independent.
    let last = s.segments.last().expect("segment");
    assert!(last.parts.len() >= 9, "{last:?}");
    assert!(last.parts[0].independent);
    assert!(!last.parts[1].independent);

    // Every listed segment and part is served; the hinted part is pending.
    for seg in &s.segments {
        assert!(matches!(pl.segment(seg.msn), Lookup::Ready(_)));
        for (i, _) in seg.parts.iter().enumerate() {
            assert!(matches!(pl.part(seg.msn, i as u64), Lookup::Ready(_)));
        }
    }
    let pos = pl.position();
    assert!(matches!(pl.part(pos.msn, pos.parts), Lookup::Pending));
    assert!(matches!(pl.part(pos.msn, pos.parts + 1), Lookup::Missing));
    assert!(matches!(pl.part(pos.msn + 5, 0), Lookup::Missing));
    assert!(pl.satisfies(pos.msn - 1, None));
    assert!(!pl.satisfies(pos.msn, None));
    assert!(!pl.satisfies(pos.msn, Some(pos.parts)));

    // A republish: discontinuity, timeline continues.
    p.discontinuity(&mut pl);
    let resume = 900_000 + 20 * HZ;
    run_ll(
        &units(25.0, 50, 10.0, resume, true, true),
        &mut pl,
        &mut p,
        &mut tracker,
    );
    let text = pl.render().expect("playlist");
    assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    // And the discontinuity leaves the window: the sequence counts it.
    run_ll(
        &units(25.0, 50, 14.0, resume + 10 * HZ, true, true),
        &mut pl,
        &mut p,
        &mut tracker,
    );
    let s = crate::validate::check(&pl.render().expect("playlist")).expect("valid");
    assert_eq!(s.discontinuity_sequence, 1);
    p.finish(&mut pl);
    let s = tracker
        .update(&pl.render().expect("playlist"))
        .expect("valid");
    assert!(s.ended && s.preload_hint.is_none());
    // What is held is exactly the window and its init segment: bounded.
    let held: usize =
        pl.segments().map(|x| x.data.len()).sum::<usize>() + pl.init(0).map_or(0, |b| b.len());
    assert_eq!(pl.bytes(), held);
    assert_eq!(pl.segments().count(), 6);
}

#[test]
fn ll_segments_are_decodable_fmp4_with_the_frames_in_order() {
    let mut pl = PlaylistState::new(Flavour::Fmp4, 6, 0.21, "e1");
    let mut p = LlPacker::new(targets());
    p.tracks(track_set(true, true), &mut pl).expect("tracks");
    let input = units(25.0, 50, 6.0, 900_000, true, true);
    let mut tracker = Tracker::new();
    run_ll(&input, &mut pl, &mut p, &mut tracker);
    p.finish(&mut pl);
    // Concatenate every segment and read the samples back.
    let mut video_dts = Vec::new();
    let mut audio = 0;
    for seg in pl.segments() {
        let mut buf = &seg.data[..];
        while !buf.is_empty() {
            let moof = <mp4_atom::Moof as mp4_atom::Decode>::decode(&mut buf).expect("moof");
            let _mdat = <mp4_atom::Mdat as mp4_atom::Decode>::decode(&mut buf).expect("mdat");
            for traf in &moof.traf {
                let base = traf.tfdt.as_ref().expect("tfdt").base_media_decode_time;
                let mut t = base;
                for e in traf.trun[0].samples.iter() {
                    if traf.tfhd.track_id == 1 {
                        video_dts.push(t as i64);
                    } else {
                        audio += 1;
                    }
                    t += u64::from(e.duration.expect("duration"));
                }
            }
        }
    }
    let want: Vec<i64> = input
        .iter()
        .filter(|u| u.kind == MediaKind::Video)
        .map(|u| u.dts)
        .collect();
    assert_eq!(
        video_dts, want,
        "every video frame once, in order, at its time"
    );
    let audio_in = input.iter().filter(|u| u.kind == MediaKind::Audio).count();
    assert_eq!(audio, audio_in);
}

#[test]
fn audio_only_and_video_only_streams() {
    for (video, audio) in [(false, true), (true, false)] {
        let mut pl = PlaylistState::new(Flavour::Fmp4, 6, 0.21, "e1");
        let mut p = LlPacker::new(targets());
        let mut tracker = Tracker::new();
        p.tracks(track_set(video, audio), &mut pl).expect("tracks");
        run_ll(
            &units(25.0, 50, 12.0, 900_000, video, audio),
            &mut pl,
            &mut p,
            &mut tracker,
        );
        let s = crate::validate::check(&pl.render().expect("playlist")).expect("valid");
        assert_eq!(s.target_duration, 2, "video {video} audio {audio}");
        assert!(s.segments.len() >= 4);
        assert!(
            s.segments
                .iter()
                .all(|x| x.parts.is_empty() || x.parts[0].independent)
        );
    }
}

#[test]
fn tokens_go_into_every_uri_and_leave_the_rest_alone() {
    use crate::playlist::{encode_token, uri_with_token, with_token};
    let mut pl = PlaylistState::new(Flavour::Fmp4, 6, 0.21, "e1");
    let mut p = LlPacker::new(targets());
    p.tracks(track_set(true, true), &mut pl).expect("tracks");
    let mut tracker = Tracker::new();
    let token = encode_token("tw1.a b&c\"d");
    assert_eq!(token, "tw1.a%20b%26c%22d");
    let mut version = pl.version();
    for u in units(30.0, 60, 12.0, 0, true, true) {
        p.unit(u, &mut pl).expect("unit");
        if pl.version() == version {
            continue;
        }
        version = pl.version();
        let Some(plain) = pl.render() else { continue };
        let tokenized = with_token(&plain, &token);
        // Still a valid playlist, and the same one but for the URIs.
        tracker
            .update(&tokenized)
            .unwrap_or_else(|e| panic!("{e}\n{tokenized}"));
        assert_eq!(tokenized.lines().count(), plain.lines().count());
        for (t, p) in tokenized.lines().zip(plain.lines()) {
            if t != p {
                assert_eq!(t.replace(&format!("?token={token}"), ""), p);
            }
        }
    }
    let text = with_token(&pl.render().expect("playlist"), &token);
    let s = crate::validate::check(&text).expect("valid");
    let mut uris: Vec<&str> = s.segments.iter().map(|x| x.uri.as_str()).collect();
    uris.extend(
        s.segments
            .iter()
            .flat_map(|x| &x.parts)
            .map(|x| x.uri.as_str()),
    );
    uris.extend(s.maps.iter().map(String::as_str));
    uris.extend(s.preload_hint.as_deref());
    assert!(uris.len() > 20, "{text}");
    for uri in uris {
        assert!(uri.ends_with(&format!("?token={token}")), "{uri}");
    }
    // A URI with a query of its own (a rendition report's) gets `&token=`.
    assert_eq!(
        uri_with_token("../b/index.m3u8?_HLS_msn=4", "t"),
        "../b/index.m3u8?_HLS_msn=4&token=t"
    );
    let report = "#EXTM3U\n#EXT-X-RENDITION-REPORT:URI=\"../b/index.m3u8?_HLS_msn=4\",LAST-MSN=4\n\
                  #EXT-X-KEY:METHOD=NONE,XURI=\"x\"\r\nseg.ts\r\n\n";
    assert_eq!(
        with_token(report, "t"),
        "#EXTM3U\n#EXT-X-RENDITION-REPORT:URI=\"../b/index.m3u8?_HLS_msn=4&token=t\",LAST-MSN=4\n\
         #EXT-X-KEY:METHOD=NONE,XURI=\"x\"\r\nseg.ts?token=t\r\n\n"
    );
    // The multivariant playlist: its variant URI.
    let master = crate::master::render(&crate::master::VariantInfo {
        tracks: &track_set(true, true),
        peak_bitrate: 1,
        frame_interval90: 0,
        version: 6,
    });
    let parsed =
        m3u8_rs::parse_master_playlist_res(with_token(&master, &token).as_bytes()).expect("parses");
    assert_eq!(parsed.variants[0].uri, format!("index.m3u8?token={token}"));
}
