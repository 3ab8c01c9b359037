use bytes::{Bytes, BytesMut};
use tidewater_core::{Codec, Frame, FrameFlags, TimestampWrap, TrackId, TrackInfo};

use super::*;
use crate::codec;

const SPS: [u8; 25] = [
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
];
const PPS: [u8; 4] = [0x68, 0xeb, 0xe3, 0xcb];
const ASC: [u8; 2] = [0x11, 0x90];

fn tracks() -> Vec<TrackInfo> {
    vec![
        TrackInfo::video(VIDEO_TRACK, Codec::H264, 320, 240)
            .with_config(codec::build_avcc(&[&SPS], &[&PPS]).expect("avcC")),
        TrackInfo::audio(AUDIO_TRACK, Codec::Aac, 48_000, 2)
            .with_timescale(90_000)
            .with_config(Bytes::from_static(&ASC)),
    ]
}

/// A picture of `size` bytes: an IDR or a non-IDR slice, length-prefixed.
fn picture(i: usize, size: usize, key: bool) -> Bytes {
    let mut nal = vec![if key { 0x65 } else { 0x41 }];
    nal.extend((0..size).map(|j| ((i * 7 + j) % 251) as u8 | 1));
    codec::to_length_prefixed([&nal[..]])
}

/// 2 s of 25 fps video (GOP 25) with 48 kHz AAC interleaved, muxed.
fn muxed() -> (BytesMut, Vec<Frame>) {
    let mut mux = TsMuxer::new(&tracks()).expect("muxer");
    let mut out = BytesMut::new();
    let mut frames = Vec::new();
    mux.write_psi(&mut out);
    let mut audio_pts = 0i64;
    for i in 0..50 {
        let dts = i as i64 * 3600;
        let key = i % 25 == 0;
        let v = Frame::video(
            VIDEO_TRACK,
            Codec::H264,
            dts,
            dts + 7200,
            key,
            picture(i, 100 + i * 97, key),
        );
        mux.write_frame(&v, &mut out).expect("video");
        frames.push(v);
        while audio_pts <= dts {
            let a = Frame::audio(
                AUDIO_TRACK,
                Codec::Aac,
                audio_pts,
                Bytes::from(vec![0x21; 200]),
            );
            mux.write_frame(&a, &mut out).expect("audio");
            frames.push(a);
            audio_pts += 1920;
        }
        if i % 10 == 9 {
            mux.write_psi(&mut out);
        }
    }
    (out, frames)
}

fn demux_all(data: &[u8], chunk: usize) -> (Vec<Vec<TrackInfo>>, Vec<Frame>) {
    let mut d = TsDemuxer::new();
    for c in data.chunks(chunk.max(1)) {
        d.push(c).expect("demuxes");
    }
    d.flush();
    let (mut t, mut f) = (Vec::new(), Vec::new());
    while let Some(ev) = d.poll() {
        match ev {
            DemuxEvent::Tracks(x) => t.push(x),
            DemuxEvent::Frame(x) => f.push(x),
        }
    }
    (t, f)
}

/// The canonical video payload the demuxer makes: the keyframes carry their parameter sets in band.
fn with_param_sets(f: &Frame) -> Bytes {
    if f.is_keyframe() && f.codec == Codec::H264 {
        let mut nals: Vec<&[u8]> = vec![&SPS, &PPS];
        nals.extend(codec::length_prefixed_nals(&f.payload, 4).expect("nals"));
        codec::to_length_prefixed(nals)
    } else {
        f.payload.clone()
    }
}

#[test]
fn mux_output_is_whole_packets_with_continuous_counters() {
    let (out, _) = muxed();
    assert_eq!(out.len() % PACKET_SIZE, 0);
    let mut last = std::collections::HashMap::new();
    for p in out.chunks(PACKET_SIZE) {
        assert_eq!(p[0], 0x47);
        let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
        let cc = p[3] & 0xf;
        if let Some(prev) = last.insert(pid, cc) {
            assert_eq!((prev + 1) & 0xf, cc, "pid {pid:#x}");
        }
    }
    assert!(
        last.contains_key(&VIDEO_PID)
            && last.contains_key(&AUDIO_PID)
            && last.contains_key(&PMT_PID)
    );
}

#[test]
fn round_trip_through_the_demuxer() {
    let (out, sent) = muxed();
    for chunk in [out.len(), 1316, 188, 7] {
        let (tracks_seen, got) = demux_all(&out, chunk);
        assert_eq!(tracks_seen.len(), 1, "one catalog");
        let t = &tracks_seen[0];
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].codec, Codec::H264);
        assert_eq!(t[0].video.map(|v| (v.width, v.height)), Some((320, 240)));
        assert_eq!(t[0].wrap, TimestampWrap::MPEG_TS);
        assert_eq!(t[0].timescale, 90_000);
        assert_eq!(t[1].config.as_deref(), Some(&ASC[..]));
        assert_eq!(got.len(), sent.len(), "chunk {chunk}");
        for (g, s) in got.iter().zip(&sent) {
            assert_eq!(
                (g.track, g.pts, g.dts, g.is_keyframe()),
                (s.track, s.pts, s.dts, s.is_keyframe())
            );
            assert_eq!(g.payload, with_param_sets(s));
        }
    }
}

#[test]
fn a_live_input_cut_mid_frame_ends_without_the_cut_frame() {
    let (mut out, sent) = muxed();
    // As ffmpeg muxes video: PES_packet_length 0, the PES ends where the next begins.
    for p in out.chunks_mut(188) {
        let video = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]) == VIDEO_PID;
        if video && p[1] & 0x40 != 0 {
            let start = 4 + if p[3] & 0x20 != 0 {
                1 + usize::from(p[4])
            } else {
                0
            };
            assert_eq!(p[start..start + 3], [0, 0, 1], "a PES header");
            p[start + 4..start + 6].fill(0);
        }
    }
    let last_video = sent
        .iter()
        .rposition(|f| f.track == VIDEO_TRACK)
        .expect("video");
    // The sender's last packets never left it: the stream stops before the
    // last picture's last 3 TS packets.
    let pid = |p: &[u8]| u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
    let last = out
        .chunks(188)
        .rposition(|p| pid(p) == VIDEO_PID)
        .expect("a video packet");
    let cut = &out[..(last - 2) * 188];
    let mut d = TsDemuxer::new();
    d.push(cut).expect("demuxes");
    d.end_live();
    let mut got = Vec::new();
    while let Some(ev) = d.poll() {
        if let DemuxEvent::Frame(f) = ev {
            got.push(f);
        }
    }
    let video: Vec<_> = got.iter().filter(|f| f.track == VIDEO_TRACK).collect();
    assert_eq!(
        video.len(),
        49,
        "the cut last picture is dropped, the rest kept"
    );
    for (g, s) in video
        .iter()
        .zip(sent.iter().filter(|f| f.track == VIDEO_TRACK))
    {
        assert_eq!(g.payload, with_param_sets(s), "every kept picture is whole");
    }
    assert!(
        sent[last_video].payload.len() > 3 * 188,
        "the cut falls inside it"
    );
    assert_eq!(d.stats().unterminated_at_end, 1);

    // `flush`, for a whole file, would have emitted the cut picture.
    let mut d = TsDemuxer::new();
    d.push(cut).expect("demuxes");
    d.flush();
    let mut n = 0;
    while let Some(ev) = d.poll() {
        n += matches!(ev, DemuxEvent::Frame(f) if f.track == VIDEO_TRACK) as usize;
    }
    assert_eq!(n, 50);
}

#[test]
fn a_lost_packet_drops_video_to_the_next_keyframe() {
    let (out, sent) = muxed();
    // Remove one video packet in the middle of the first GOP.
    let mut seen = 0;
    let mut cut = BytesMut::new();
    for p in out.chunks(PACKET_SIZE) {
        let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
        if pid == VIDEO_PID {
            seen += 1;
            if seen == 20 {
                continue;
            }
        }
        cut.extend_from_slice(p);
    }
    let (_, got) = demux_all(&cut, 1316);
    let sent_video: Vec<&Frame> = sent.iter().filter(|f| f.track == VIDEO_TRACK).collect();
    let got_video: Vec<&Frame> = got.iter().filter(|f| f.track == VIDEO_TRACK).collect();
    // Every video frame emitted is intact, and the second GOP arrived whole.
    for g in &got_video {
        let s = sent_video
            .iter()
            .find(|s| s.dts == g.dts)
            .expect("a sent frame");
        assert_eq!(g.payload, with_param_sets(s));
    }
    assert!(got_video.len() < sent_video.len());
    let gop2: Vec<_> = got_video.iter().filter(|f| f.dts >= 25 * 3600).collect();
    assert_eq!(gop2.len(), 25);
    assert!(
        got_video.iter().any(|f| f.dts < 25 * 3600),
        "frames before the loss survive"
    );
    // Audio is independent of the video loss.
    assert_eq!(
        got.iter().filter(|f| f.track == AUDIO_TRACK).count(),
        sent.iter().filter(|f| f.track == AUDIO_TRACK).count()
    );
}

#[test]
fn timestamps_are_masked_to_33_bits() {
    let mut mux = TsMuxer::new(&tracks()[1..]).expect("muxer");
    let mut out = BytesMut::new();
    mux.write_psi(&mut out);
    let near = (1i64 << 33) - 1920;
    for i in 0..3 {
        let f = Frame::audio(
            AUDIO_TRACK,
            Codec::Aac,
            near + i * 1920,
            Bytes::from_static(&[1, 2, 3]),
        );
        mux.write_frame(&f, &mut out).expect("frame");
    }
    let (_, got) = demux_all(&out, 188);
    let pts: Vec<i64> = got.iter().map(|f| f.pts).collect();
    assert_eq!(pts, vec![near, 0, 1920]);
    assert_eq!(mux.pcr_pid(), AUDIO_PID);
}

#[test]
fn a_pcr_discontinuity_flags_the_next_frames() {
    let mut mux = TsMuxer::new(&tracks()[1..]).expect("muxer");
    let mut out = BytesMut::new();
    mux.write_psi(&mut out);
    for pts in [0, 1920, 9_000_000, 9_001_920] {
        let f = Frame::audio(AUDIO_TRACK, Codec::Aac, pts, Bytes::from_static(&[1, 2, 3]));
        mux.write_frame(&f, &mut out).expect("frame");
    }
    let (_, got) = demux_all(&out, 188);
    let flags: Vec<bool> = got
        .iter()
        .map(|f| f.flags.contains(FrameFlags::DISCONTINUITY))
        .collect();
    assert_eq!(flags, vec![false, false, true, false]);
}

#[test]
fn garbage_and_bad_psi_are_errors() {
    let mut d = TsDemuxer::new();
    let err = d.push(&[0x55; 4000]).expect_err("not TS");
    assert!(err.to_string().contains("sync"), "{err}");

    // A PAT with a broken CRC before any good PMT.
    let (out, _) = muxed();
    let mut bad = out[..PACKET_SIZE * 4].to_vec();
    bad[PACKET_SIZE - 1] ^= 0xff; // the PAT's CRC (mpeg2ts stuffs before the section)
    let mut d = TsDemuxer::new();
    let err = d.push(&bad).expect_err("bad PAT");
    assert!(err.to_string().contains("PAT"), "{err}");

    // A PMT with no stream we carry.
    let mut mux = TsMuxer::new(&tracks()).expect("muxer");
    let mut psi = BytesMut::new();
    mux.write_psi(&mut psi);
    let mut pmt = psi[PACKET_SIZE..].to_vec();
    // stream_type bytes of both entries -> 0x02 (MPEG-2 video), CRC recomputed.
    // After the header, the stuffing adaptation field and the pointer field.
    let section_start = 4 + 1 + usize::from(pmt[4]) + 1;
    let len = 3
        + ((usize::from(pmt[section_start + 1] & 0xf) << 8) | usize::from(pmt[section_start + 2]));
    let body = section_start + 12;
    pmt[body] = 0x02;
    pmt[body + 5] = 0x02;
    let crc = psi::crc32(&pmt[section_start..section_start + len - 4]);
    pmt[section_start + len - 4..section_start + len].copy_from_slice(&crc.to_be_bytes());
    let mut d = TsDemuxer::new();
    d.push(&psi[..PACKET_SIZE]).expect("PAT");
    let err = d.push(&pmt).expect_err("no stream");
    assert!(err.to_string().contains("no H.264"), "{err}");
}

#[test]
fn a_stream_joined_mid_way_starts_at_a_keyframe_after_the_tables() {
    let (out, _) = muxed();
    // Skip the first 30 packets (PSI and part of the first GOP): the next PSI is after frame 9.
    let (tracks_seen, got) = demux_all(&out[PACKET_SIZE * 30..], 1316);
    assert_eq!(tracks_seen.len(), 1);
    let first_video = got.iter().find(|f| f.track == VIDEO_TRACK).expect("video");
    assert!(first_video.is_keyframe());
    assert_eq!(first_video.dts, 25 * 3600);
}

#[test]
fn opus_round_trips() {
    let t = TrackInfo::audio(AUDIO_TRACK, Codec::Opus, 48_000, 2).with_timescale(48_000);
    let mut mux = TsMuxer::new(&[t]).expect("muxer");
    let mut out = BytesMut::new();
    mux.write_psi(&mut out);
    for i in 0..4 {
        let f = Frame::audio(
            AUDIO_TRACK,
            Codec::Opus,
            i * 960,
            Bytes::from(vec![0xfc, i as u8, 3]),
        );
        mux.write_frame(&f, &mut out).expect("frame");
    }
    let (tracks_seen, got) = demux_all(&out, 188);
    assert_eq!(tracks_seen[0][0].codec, Codec::Opus);
    assert_eq!(tracks_seen[0][0].audio.map(|a| a.channels), Some(2));
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].pts, 3 * 1800);
    assert_eq!(got[2].payload.as_ref(), &[0xfc, 2, 3]);
}

#[test]
fn a_new_sps_is_a_new_catalog() {
    let mut mux = TsMuxer::new(&tracks()[..1]).expect("muxer");
    let mut out = BytesMut::new();
    mux.write_psi(&mut out);
    let key = Frame::video(VIDEO_TRACK, Codec::H264, 0, 0, true, picture(0, 50, true));
    mux.write_frame(&key, &mut out).expect("frame");
    // Same stream, a second keyframe carrying a different (1280x720) SPS in band.
    let sps720 = [
        0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x24, 0x80,
    ];
    let mut nals: Vec<&[u8]> = vec![&sps720, &PPS];
    let pic = picture(1, 50, true);
    nals.extend(codec::length_prefixed_nals(&pic, 4).expect("nals"));
    let f = Frame::video(
        VIDEO_TRACK,
        Codec::H264,
        3600,
        3600,
        true,
        codec::to_length_prefixed(nals),
    );
    mux.write_frame(&f, &mut out).expect("frame");
    let (tracks_seen, got) = demux_all(&out, 188);
    assert_eq!(got.len(), 2);
    assert_eq!(tracks_seen.len(), 2);
    assert_eq!(
        tracks_seen[1][0].video.map(|v| (v.width, v.height)),
        Some((1280, 720))
    );
}

#[test]
fn muxer_rejects_what_it_cannot_carry() {
    assert!(TsMuxer::new(&[]).is_err());
    let av1 = TrackInfo::video(TrackId(1), Codec::Av1, 1, 1);
    assert!(TsMuxer::new(&[av1]).is_err());
    let mut mux = TsMuxer::new(&tracks()).expect("muxer");
    let mut out = BytesMut::new();
    let bad = Frame::video(
        VIDEO_TRACK,
        Codec::H264,
        0,
        0,
        true,
        Bytes::from_static(&[0, 0, 0, 9, 1]),
    );
    assert!(mux.write_frame(&bad, &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn a_pmt_stream_that_never_carries_anything_delays_the_catalog_two_seconds_at_most() {
    let mut mux = TsMuxer::new(&tracks()).expect("muxer");
    let mut out = BytesMut::new();
    mux.write_psi(&mut out);
    // Video only, though the PMT lists audio too: 4 s at 25 fps.
    for i in 0..100 {
        let dts = i as i64 * 3600;
        let key = i % 25 == 0;
        let v = Frame::video(VIDEO_TRACK, Codec::H264, dts, dts, key, picture(i, 80, key));
        mux.write_frame(&v, &mut out).expect("video");
    }
    let mut d = TsDemuxer::new();
    d.push(&out).expect("demuxes");
    let events: Vec<DemuxEvent> = std::iter::from_fn(|| d.poll()).collect();
    let DemuxEvent::Tracks(catalog) = &events[0] else {
        panic!("the catalog comes first: {:?}", events[0]);
    };
    assert_eq!(catalog.len(), 1, "announced without the silent audio track");
    assert_eq!(catalog[0].codec, Codec::H264);
    // Every frame is delivered, and the catalog did not wait for 512 frames:
    // it was made once 2 s of video were held (the 51st frame), all in order.
    let frames: Vec<&Frame> = events[1..]
        .iter()
        .map(|e| match e {
            DemuxEvent::Frame(f) => f,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(frames.len(), 100);
    assert!(frames.windows(2).all(|w| w[0].dts < w[1].dts));
    let mut d = TsDemuxer::new();
    let first_catalog_after = out
        .chunks(PACKET_SIZE)
        .position(|p| {
            d.push(p).expect("demuxes");
            std::iter::from_fn(|| d.poll()).any(|e| matches!(e, DemuxEvent::Tracks(_)))
        })
        .expect("a catalog");
    // 2 PSI packets, then one packet per frame: about 52 packets in.
    assert!(
        (50..=56).contains(&first_catalog_after),
        "{first_catalog_after}"
    );
}

#[test]
fn a_continuation_carries_counters_and_timestamps_on() {
    // The first publish: 2 s of muxed frames, the last video at 49 * 3600.
    let mut first = TsMuxer::new(&tracks()).expect("muxer");
    let mut out = BytesMut::new();
    first.write_psi(&mut out);
    for i in 0..50i64 {
        let v = Frame::video(
            VIDEO_TRACK,
            Codec::H264,
            i * 3600,
            i * 3600,
            i % 25 == 0,
            picture(i as usize, 300, i % 25 == 0),
        );
        first.write_frame(&v, &mut out).expect("video");
    }
    // The republish starts its timestamps at 0 again.
    let mut next = TsMuxer::continue_from(&first, &tracks()).expect("continued");
    next.write_psi(&mut out);
    for i in 0..25i64 {
        let v = Frame::video(
            VIDEO_TRACK,
            Codec::H264,
            i * 3600,
            i * 3600,
            i == 0,
            picture(i as usize, 300, i == 0),
        );
        next.write_frame(&v, &mut out).expect("video");
    }
    // One stream to a demuxer: counters continuous, timestamps rising by a
    // frame across the join, no discontinuity flagged.
    let mut last = std::collections::HashMap::new();
    for p in out.chunks(PACKET_SIZE) {
        let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
        let cc = p[3] & 0xf;
        if let Some(prev) = last.insert(pid, cc) {
            assert_eq!((prev + 1) & 0xf, cc, "pid {pid:#x}");
        }
    }
    let (tables, got) = demux_all(&out, 188);
    assert_eq!(tables.len(), 1, "the same tracks: one catalog");
    let dts: Vec<i64> = got.iter().map(|f| f.dts).collect();
    assert_eq!(dts, (0..75).map(|i| i * 3600).collect::<Vec<_>>());
    assert!(
        got.iter()
            .all(|f| !f.flags.contains(FrameFlags::DISCONTINUITY))
    );
}

#[test]
fn a_marked_discontinuity_flags_each_track_once() {
    let mut mux = TsMuxer::new(&tracks()).expect("muxer");
    mux.mark_discontinuity(3);
    let mut out = BytesMut::new();
    mux.write_psi(&mut out);
    for i in 0..3i64 {
        let v = Frame::video(
            VIDEO_TRACK,
            Codec::H264,
            i * 3600,
            i * 3600,
            i == 0,
            picture(i as usize, 300, i == 0),
        );
        mux.write_frame(&v, &mut out).expect("video");
        let a = Frame::audio(
            AUDIO_TRACK,
            Codec::Aac,
            i * 3600,
            Bytes::from(vec![0x21; 50]),
        );
        mux.write_frame(&a, &mut out).expect("audio");
    }
    // discontinuity_indicator: an adaptation field (bit 5 of byte 3) whose
    // flags byte has its top bit set.
    let flagged: Vec<u16> = out
        .chunks(PACKET_SIZE)
        .filter(|p| p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x80 != 0)
        .map(|p| u16::from_be_bytes([p[1] & 0x1f, p[2]]))
        .collect();
    assert_eq!(flagged, [VIDEO_PID, AUDIO_PID]);
}
