//! End to end through the kernel: a clip made by ffmpeg (H.264 with
//! B-frames + AAC, in FLV so its frames come with RTMP's 1 kHz times) is
//! published into an engine, the recorder writes it, ffprobe reads it back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::Value;
use tidewater_core::{
    AppSpec, CancellationToken, Codec, Engine, Frame, Request, StreamKey, StreamPolicy, TrackId,
    TrackInfo,
};

use crate::index::{self, Segment};
use crate::{Library, PathRule, RecordConfig, Recorder};

fn temp_dir(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "tidewater-record-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn run(tool: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} (install ffmpeg): {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A clip: `secs` seconds of 25 fps H.264 (GOP 1 s, B-frames) and 48 kHz AAC, in FLV.
fn clip(dir: &Path, secs: u32) -> PathBuf {
    let path = dir.join("clip.flv");
    let t = secs.to_string();
    run(
        "ffmpeg",
        &[
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            &t,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "25",
            "-bf",
            "2",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-f",
            "flv",
            path.to_str().expect("utf-8 path"),
        ],
    );
    path
}

/// The frames of an FLV file: (catalog, frames in file order).
fn read_flv(path: &Path) -> (Vec<TrackInfo>, Vec<Frame>) {
    let data = std::fs::read(path).expect("clip");
    let mut at = 9 + 4;
    let (mut avcc, mut asc) = (None, None);
    let mut frames = Vec::new();
    while at + 11 <= data.len() {
        let kind = data[at];
        let size = usize::from(data[at + 1]) << 16
            | usize::from(data[at + 2]) << 8
            | usize::from(data[at + 3]);
        let ts = (i64::from(data[at + 7]) << 24)
            | i64::from(data[at + 4]) << 16
            | i64::from(data[at + 5]) << 8
            | i64::from(data[at + 6]);
        let body = &data[at + 11..at + 11 + size];
        at += 11 + size + 4;
        match kind {
            9 if body.len() > 5 => {
                let cts = ((i32::from(body[2]) << 24
                    | i32::from(body[3]) << 16
                    | i32::from(body[4]) << 8)
                    >> 8) as i64;
                let payload = Bytes::copy_from_slice(&body[5..]);
                match body[1] {
                    0 => avcc = Some(payload),
                    1 => frames.push(Frame::video(
                        TrackId(1),
                        Codec::H264,
                        ts,
                        ts + cts,
                        body[0] >> 4 == 1,
                        payload,
                    )),
                    _ => {}
                }
            }
            8 if body.len() > 2 => {
                let payload = Bytes::copy_from_slice(&body[2..]);
                match body[1] {
                    0 => asc = Some(payload),
                    _ => frames.push(Frame::audio(TrackId(2), Codec::Aac, ts, payload)),
                }
            }
            _ => {}
        }
    }
    let tracks = vec![
        TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
            .with_config(avcc.expect("avcC"))
            .with_timescale(1000),
        TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 1)
            .with_config(asc.expect("ASC"))
            .with_timescale(1000),
    ];
    (tracks, frames)
}

fn engine() -> Engine {
    let policy = StreamPolicy {
        follow_grace: Duration::from_millis(200),
        ..StreamPolicy::default()
    };
    Engine::builder()
        .default_app(AppSpec {
            policy,
            ..AppSpec::default()
        })
        .build()
        .expect("engine")
}

fn config(dir: &Path) -> RecordConfig {
    RecordConfig {
        dir: dir.to_path_buf(),
        paths: vec![PathRule::new("live/*")],
        segment: Duration::from_secs(2),
        ..RecordConfig::default()
    }
}

/// Publishes `frames` as one publish of `key`, at about twenty times real
/// time (a clip pushed at once would overrun the kernel's ring, and the
/// recorder, like any slow reader, would be skipped).
async fn publish(engine: &Engine, key: &StreamKey, tracks: &[TrackInfo], frames: &[Frame]) {
    let mut p = engine
        .open_publish(Request::new(key.clone(), "test"))
        .await
        .expect("publish");
    p.set_catalog(tracks.to_vec()).expect("catalog");
    for f in frames {
        p.publish(f.clone()).expect("frame");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    p.finish().await;
}

/// Waits (polling, bounded) until `key` was recorded and nothing is being
/// recorded any more.
async fn until_idle(lib: &Library, key: &StreamKey) {
    for _ in 0..600 {
        if lib.status().is_empty() && !index::read_index(&lib.dir(key)).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("recording did not stop: {:?}", lib.status());
}

/// ffprobe's view of a file: per stream (codec, frames), every packet's
/// (stream index, pts, dts) in file order, and the duration.
type Probe = (Vec<(String, u64)>, Vec<(u64, f64, f64)>, f64);

fn probe(path: &Path) -> Probe {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames:format=duration:packet=stream_index,pts_time,dts_time",
            "-of",
            "json",
            path.to_str().expect("utf-8"),
        ],
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let streams = v["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            (
                s["codec_name"].as_str().unwrap_or_default().to_string(),
                s["nb_read_frames"]
                    .as_str()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            )
        })
        .collect();
    let packets = v["packets"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let f = |k: &str| {
                        p[k].as_str()
                            .and_then(|x| x.parse().ok())
                            .unwrap_or(f64::NAN)
                    };
                    (
                        p["stream_index"].as_u64().unwrap_or(99),
                        f("pts_time"),
                        f("dts_time"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let duration = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    (streams, packets, duration)
}

fn assert_monotonic(packets: &[(u64, f64, f64)]) {
    for stream in [0, 1] {
        let dts: Vec<f64> = packets
            .iter()
            .filter(|p| p.0 == stream)
            .map(|p| p.2)
            .collect();
        assert!(!dts.is_empty(), "stream {stream} has packets");
        assert!(
            dts.windows(2).all(|w| w[1] > w[0]),
            "stream {stream} dts increase: {dts:?}"
        );
    }
}

/// Records one publish of a 5 s clip: files of about 2 s, each starting on
/// a keyframe; together they hold every video frame; ffprobe decodes each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_is_recorded_in_segments_that_ffprobe_decodes() {
    let dir = temp_dir("publish");
    let (tracks, frames) = read_flv(&clip(&dir, 5));
    let videos = frames.iter().filter(|f| f.track == TrackId(1)).count() as u64;
    let engine = engine();
    let root = dir.join("rec");
    let recorder = Recorder::new(engine.context(), config(&root)).expect("recorder");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(recorder.clone().run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let key = StreamKey::parse("live/cam1").expect("key");
    publish(&engine, &key, &tracks, &frames).await;
    until_idle(recorder.library(), &key).await;

    let segments = index::read_index(&root.join("live/cam1"));
    assert_eq!(recorder.stats().snapshot().keyframe_drops, 0);
    assert!(segments.len() >= 2, "several files: {segments:?}");
    let mut decoded = 0;
    for s in &segments {
        assert_eq!(s.codecs, ["h264", "aac"]);
        assert!(s.fragments[0].key, "a file starts on a keyframe");
        let (streams, packets, _) = probe(&root.join("live/cam1").join(&s.file));
        assert_eq!(
            streams.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
            ["h264", "aac"]
        );
        assert_monotonic(&packets);
        // Sound and picture start together (the first picture is presented
        // a composition delay after its decode time: B-frames).
        let first = |i: u64| {
            packets
                .iter()
                .filter(|p| p.0 == i)
                .map(|p| p.1)
                .fold(f64::INFINITY, f64::min)
        };
        assert!(
            (first(0) - first(1)).abs() <= 0.04,
            "{}: video {} audio {}",
            s.file,
            first(0),
            first(1)
        );
        decoded += streams[0].1;
    }
    assert_eq!(decoded, videos, "every published video frame decodes");
    let spans = recorder.library().spans(&key);
    assert_eq!(spans.len(), 1, "{spans:?}");
    // 125 frames at 25 fps: 5 s, within a frame.
    assert!((spans[0].duration_ms - 5000).abs() <= 40, "{spans:?}");

    // The index is rebuilt from the files when lost.
    std::fs::remove_file(root.join("live/cam1").join(index::INDEX_FILE)).expect("rm");
    assert_eq!(
        index::rebuild(&root.join("live/cam1"), None).expect("rebuild"),
        segments
    );

    // One MP4 of the whole range: the files continue each other.
    let plan = recorder
        .library()
        .range(&key, spans[0].start_ms, spans[0].duration_ms)
        .expect("a range");
    assert_eq!(plan.cut, None);
    let out = dir.join("range.mp4");
    let mut bytes = Vec::new();
    for p in &plan.pieces {
        let data = std::fs::read(&p.path).expect("read");
        bytes.extend_from_slice(&data[p.offset as usize..(p.offset + p.len) as usize]);
    }
    std::fs::write(&out, bytes).expect("write");
    let (streams, packets, duration) = probe(&out);
    assert_eq!(streams[0], ("h264".to_string(), videos));
    assert_monotonic(&packets);
    assert!((duration - 5.0).abs() < 0.1, "{duration}");

    shutdown.cancel();
    task.await.expect("recorder task");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A republish within the grace starts a new file; the playlist says
/// discontinuity there, and a range download ends at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republish_starts_a_new_file_and_a_discontinuity() {
    let dir = temp_dir("republish");
    let (tracks, frames) = read_flv(&clip(&dir, 2));
    let engine = engine();
    let root = dir.join("rec");
    let recorder = Recorder::new(
        engine.context(),
        RecordConfig {
            segment: Duration::from_secs(60),
            ..config(&root)
        },
    )
    .expect("recorder");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(recorder.clone().run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let key = StreamKey::parse("live/again").expect("key");
    publish(&engine, &key, &tracks, &frames).await;
    publish(&engine, &key, &tracks, &frames).await;
    until_idle(recorder.library(), &key).await;
    let segments = recorder.library().segments(&key);
    assert_eq!(segments.len(), 2, "{segments:?}");
    assert_eq!(segments[1].base_ms, 0, "a new publish timeline");
    let start = segments[0].start_ms;
    let end = segments[1].end_ms();
    let playlist = recorder
        .library()
        .playlist(&key, start, end - start + 1000, |f| f.to_string())
        .expect("playlist");
    assert_eq!(
        playlist.matches("#EXT-X-DISCONTINUITY").count(),
        1,
        "{playlist}"
    );
    assert_eq!(playlist.matches("#EXT-X-MAP").count(), 2, "{playlist}");
    let plan = recorder
        .library()
        .range(&key, start, end - start)
        .expect("range");
    assert_eq!(plan.cut, Some(crate::Cut::Discontinuity));
    shutdown.cancel();
    task.await.expect("recorder task");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A new decoder configuration mid-publish starts a new file on the same
/// timeline: a range across it ends there and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_across_a_config_change_ends_there() {
    let dir = temp_dir("config-change");
    let (tracks, frames) = read_flv(&clip(&dir, 4));
    let engine = engine();
    let root = dir.join("rec");
    let recorder = Recorder::new(
        engine.context(),
        RecordConfig {
            segment: Duration::from_secs(60),
            ..config(&root)
        },
    )
    .expect("recorder");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(recorder.clone().run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let key = StreamKey::parse("live/change").expect("key");
    let mut p = engine
        .open_publish(Request::new(key.clone(), "test"))
        .await
        .expect("publish");
    p.set_catalog(tracks.clone()).expect("catalog");
    // From 2 s on, the stream is announced at another size and without
    // its audio (so the index's codecs differ too).
    let changed: Vec<TrackInfo> = tracks
        .iter()
        .filter(|t| t.video.is_some())
        .map(|t| {
            let mut t = t.clone();
            if let Some(v) = t.video.as_mut() {
                v.width = 640;
                v.height = 480;
            }
            t
        })
        .collect();
    let mut announced = false;
    for f in &frames {
        if !announced && f.dts >= 2000 && f.track == TrackId(1) && f.is_keyframe() {
            p.set_catalog(changed.clone()).expect("catalog");
            announced = true;
        }
        if announced && f.track != TrackId(1) {
            continue;
        }
        p.publish(f.clone()).expect("frame");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    p.finish().await;
    until_idle(recorder.library(), &key).await;
    let segments = recorder.library().segments(&key);
    assert_eq!(segments.len(), 2, "{segments:?}");
    assert!(segments[1].base_ms > 0, "the same timeline: {segments:?}");
    let start = segments[0].start_ms;
    let plan = recorder
        .library()
        .range(&key, start, 10_000)
        .expect("range");
    assert_eq!(plan.cut, Some(crate::Cut::ConfigChange));
    assert!(
        (plan.duration_ms - segments[0].duration_ms()).abs() <= 40,
        "{plan:?}"
    );
    shutdown.cancel();
    task.await.expect("recorder task");
    let _ = std::fs::remove_dir_all(&dir);
}

/// kill -9 mid-fragment: the file ends in a partial box. The next start
/// cuts it off; ffprobe reads every complete fragment, cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_repaired_on_start() {
    let dir = temp_dir("repair");
    let (tracks, frames) = read_flv(&clip(&dir, 3));
    let engine = engine();
    let root = dir.join("rec");
    let cfg = RecordConfig {
        segment: Duration::from_secs(60),
        ..config(&root)
    };
    let recorder = Recorder::new(engine.context(), cfg.clone()).expect("recorder");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(recorder.clone().run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let key = StreamKey::parse("live/torn").expect("key");
    publish(&engine, &key, &tracks, &frames).await;
    until_idle(recorder.library(), &key).await;
    shutdown.cancel();
    task.await.expect("recorder task");

    let sdir = root.join("live/torn");
    let segments: Vec<Segment> = index::read_index(&sdir);
    assert_eq!(segments.len(), 1);
    let seg = &segments[0];
    assert!(seg.fragments.len() >= 3, "{seg:?}");
    // Torn: the last fragment is half written, and the index never heard
    // of the file (it is appended when a file closes).
    let last = seg.fragments[seg.fragments.len() - 1];
    let path = sdir.join(&seg.file);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    f.set_len(last.offset + last.len / 2).expect("truncate");
    drop(f);
    std::fs::remove_file(sdir.join(index::INDEX_FILE)).expect("rm index");

    // The next start repairs before recording.
    let again = Recorder::new(engine.context(), cfg).expect("recorder");
    again.repair_all();
    let repaired = index::read_index(&sdir);
    assert_eq!(repaired.len(), 1);
    assert_eq!(
        repaired[0].fragments,
        seg.fragments[..seg.fragments.len() - 1]
    );
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), last.offset);

    // Clean for ffprobe (no complaint), and the complete fragments' frames.
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (streams, packets, duration) = probe(&path);
    assert_monotonic(&packets);
    let expected_ms = repaired[0].duration_ms();
    assert!(
        (duration * 1000.0 - expected_ms as f64).abs() < 100.0,
        "{duration} vs {expected_ms}"
    );
    assert_eq!(
        streams[0].1 as usize,
        packets.iter().filter(|p| p.0 == 0).count()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Retention deletes segments that ended before its horizon, never the
/// newest ones; a size cap deletes the oldest.
#[test]
fn retention_deletes_old_segments_and_caps_size() {
    let dir = temp_dir("retention");
    let sdir = dir.join("live/old");
    std::fs::create_dir_all(&sdir).expect("dir");
    let now = SystemTime::now();
    let now_ms = crate::time::unix_ms(now);
    let day = 86_400_000;
    let mut segments = Vec::new();
    for (i, age_days) in [9, 8, 1, 0].into_iter().enumerate() {
        let start = now_ms - age_days * day - 60_000 + i as i64;
        let name = crate::time::file_name(start);
        std::fs::write(sdir.join(&name), vec![0u8; 1000]).expect("write");
        segments.push(Segment {
            file: name,
            start_ms: start,
            base_ms: 0,
            init_len: 100,
            codecs: vec!["h264".into()],
            fragments: vec![index::Fragment {
                offset: 100,
                len: 900,
                t_ms: 0,
                duration_ms: 60_000,
                key: true,
            }],
        });
    }
    index::write_index(&sdir, &segments).expect("index");
    let engine = engine();
    let cfg = RecordConfig {
        dir: dir.clone(),
        paths: vec![PathRule::new("live/*")],
        retention: crate::parse_duration("7d"),
        ..RecordConfig::default()
    };
    let recorder = Recorder::new(engine.context(), cfg.clone()).expect("recorder");
    assert_eq!(recorder.sweep(now), 2);
    let left: Vec<String> = index::read_index(&sdir)
        .into_iter()
        .map(|s| s.file)
        .collect();
    assert_eq!(left, [segments[2].file.clone(), segments[3].file.clone()]);
    assert!(!sdir.join(&segments[0].file).exists());

    let capped = Recorder::new(
        engine.context(),
        RecordConfig {
            paths: vec![PathRule {
                max_bytes: Some(1500),
                ..PathRule::new("live/old")
            }],
            ..cfg
        },
    )
    .expect("recorder");
    assert_eq!(capped.sweep(now), 1);
    let left: Vec<String> = index::read_index(&sdir)
        .into_iter()
        .map(|s| s.file)
        .collect();
    assert_eq!(left, [segments[3].file.clone()]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without a keyframe nothing is written; fragments close at keyframes and
/// after the part target; files at the first keyframe after the segment.
#[test]
fn muxer_cuts_parts_and_files() {
    use crate::mux::{Muxer, Output, Targets};
    let avcc = Bytes::from_static(&[
        1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xee,
    ]);
    let video = TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
        .with_config(avcc)
        .with_timescale(1000);
    let mut m = Muxer::new(Targets {
        part90: 90_000,
        segment90: 4 * 90_000,
    });
    let mut out = Vec::new();
    m.tracks(&[video], &mut out).expect("tracks");
    let payload = Bytes::from_static(&[0, 0, 0, 1, 0x41]);
    // 10 fps, keyframe every 2 s, starting with two non-keyframes.
    for i in 0..62i64 {
        let key = i >= 2 && (i - 2) % 20 == 0;
        m.frame(
            &Frame::video(
                TrackId(1),
                Codec::H264,
                i * 100,
                i * 100,
                key,
                payload.clone(),
            ),
            1_000_000 + i * 100,
            &mut out,
        );
    }
    m.end(&mut out);
    let opens: Vec<i64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Open(s) => Some(s.base_ms),
            _ => None,
        })
        .collect();
    // Files at 0 s and 4 s (the first keyframe after 4 s); the clip has 6 s.
    assert_eq!(opens, [0, 4000]);
    let frags: Vec<(i64, i64, bool)> = out
        .iter()
        .filter_map(|o| match o {
            Output::Fragment(f) => Some((f.t_ms, f.duration_ms, f.keyframe)),
            _ => None,
        })
        .collect();
    assert_eq!(
        frags,
        [
            (0, 1000, true),
            (1000, 1000, false),
            (2000, 1000, true),
            (3000, 1000, false),
            (0, 1000, true),
            (1000, 1000, false)
        ]
    );
    assert_eq!(out.iter().filter(|o| matches!(o, Output::Close)).count(), 2);
    assert_eq!(
        m.dropped(),
        0,
        "frames before the first keyframe are not drops"
    );
}

/// Publishes `frames` on `key` with one viewer; the frames it got.
async fn publish_and_view(
    engine: &Engine,
    key: &StreamKey,
    tracks: &[TrackInfo],
    frames: &[Frame],
) -> usize {
    let mut p = engine
        .open_publish(Request::new(key.clone(), "test"))
        .await
        .expect("publish");
    p.set_catalog(tracks.to_vec()).expect("catalog");
    let mut sub = engine
        .subscribe(Request::new(key.clone(), "test-viewer"))
        .await
        .expect("subscribe");
    let viewer = tokio::spawn(async move {
        let mut n = 0;
        while let Ok(ev) = sub.recv().await {
            if let tidewater_core::Event::Frame(_) = ev {
                n += 1;
            }
        }
        n
    });
    for f in frames {
        p.publish(f.clone()).expect("frame");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    p.finish().await;
    viewer.await.expect("viewer")
}

/// A disk that refuses writes (here the stream's directory cannot be made)
/// stops the recording of that stream, counted; the stream's viewers get
/// every frame regardless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_disk_stops_recording_not_the_stream() {
    let dir = temp_dir("fail");
    let (tracks, frames) = read_flv(&clip(&dir, 2));
    let engine = engine();
    let root = dir.join("rec");
    std::fs::create_dir_all(root.join("live")).expect("dir");
    // Where the stream's directory should be, a file.
    std::fs::write(root.join("live/full"), b"not a directory").expect("write");
    let recorder = Recorder::new(engine.context(), config(&root)).expect("recorder");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(recorder.clone().run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let key = StreamKey::parse("live/full").expect("key");
    let seen = publish_and_view(&engine, &key, &tracks, &frames).await;
    // The same publish where nothing records: the viewer gets the same.
    let unrecorded = StreamKey::parse("other/full").expect("key");
    let baseline = publish_and_view(&engine, &unrecorded, &tracks, &frames).await;
    assert!(baseline > 100, "{baseline}");
    assert_eq!(
        seen, baseline,
        "the recorded stream's viewer got every frame"
    );
    for _ in 0..200 {
        if recorder.stats().snapshot().disk_errors > 0 && recorder.library().status().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(recorder.stats().snapshot().disk_errors, 1);
    assert_eq!(recorder.stats().snapshot().fragments, 0);
    // The API's view: off, with the error and the counter.
    let state = recorder.status_of(&key).expect("a recorded path");
    assert!(!state.recording, "{state:?}");
    assert_eq!(state.disk_errors, 1, "{state:?}");
    assert!(state.error.is_some(), "{state:?}");
    assert_eq!(recorder.status_of(&unrecorded), None, "no rule records it");
    shutdown.cancel();
    task.await.expect("recorder task");
    let _ = std::fs::remove_dir_all(&dir);
}

/// When the writer cannot take more, what is pending is dropped and the
/// next file starts at the next keyframe, off the old timeline's end (so
/// playback sees the gap).
#[test]
fn muxer_drops_to_the_next_keyframe() {
    use crate::mux::{Muxer, Output, Targets};
    let avcc = Bytes::from_static(&[
        1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xee,
    ]);
    let video = TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
        .with_config(avcc)
        .with_timescale(1000);
    let mut m = Muxer::new(Targets {
        part90: 90_000,
        segment90: 60 * 90_000,
    });
    let mut out = Vec::new();
    m.tracks(&[video], &mut out).expect("tracks");
    let payload = Bytes::from_static(&[0, 0, 0, 1, 0x41]);
    let frame = |i: i64| {
        Frame::video(
            TrackId(1),
            Codec::H264,
            i * 100,
            i * 100,
            i % 10 == 0,
            payload.clone(),
        )
    };
    for i in 0..5 {
        m.frame(&frame(i), i * 100, &mut out);
    }
    m.abandon();
    out.clear();
    for i in 5..25 {
        m.frame(&frame(i), i * 100, &mut out);
    }
    m.end(&mut out);
    let opens: Vec<i64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Open(s) => Some(s.base_ms),
            _ => None,
        })
        .collect();
    assert_eq!(opens, [1000], "resumes at the keyframe at 1 s");
    assert_eq!(
        m.dropped(),
        1 + 5,
        "the abandon and the five frames before the keyframe"
    );
}

/// The file being written is never repaired, indexed or deleted by a sweep,
/// however old it is and whatever its tail looks like mid-write.
#[test]
fn the_file_being_written_is_left_alone() {
    let dir = temp_dir("writing");
    let key = StreamKey::parse("live/busy").expect("key");
    let engine = engine();
    let recorder = Recorder::new(
        engine.context(),
        RecordConfig {
            dir: dir.clone(),
            paths: vec![PathRule::new("live/*")],
            retention: crate::parse_duration("1s"),
            ..RecordConfig::default()
        },
    )
    .expect("recorder");
    let lib = recorder.library();
    let sdir = lib.dir(&key);
    std::fs::create_dir_all(&sdir).expect("dir");
    let name = crate::time::file_name(1_000_000);
    // An init segment, a fragment and half of the next one: a scan would
    // cut the half off, under the writer's feet.
    use tidewater_media::fmp4::{self, Sample, TrackRun};
    let avcc = Bytes::from_static(&[
        1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xee,
    ]);
    let video = TrackInfo::video(TrackId(1), Codec::H264, 320, 240).with_config(avcc);
    let samples = [Sample {
        dts: 0,
        duration: 3600,
        cts_offset: 0,
        keyframe: true,
        data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
    }];
    let runs = [TrackRun {
        track: TrackId(1),
        samples: &samples,
    }];
    let mut data = fmp4::init_segment(&[&video]).expect("init").to_vec();
    let frag = fmp4::fragment(1, &runs).expect("fragment");
    data.extend_from_slice(&frag);
    data.extend_from_slice(&frag[..frag.len() / 2]);
    std::fs::write(sdir.join(&name), &data).expect("write");
    let shared = lib.register(&key);
    shared.set_current(Some(Segment {
        file: name.clone(),
        start_ms: 1_000_000,
        base_ms: 0,
        init_len: 24,
        codecs: vec![],
        fragments: vec![],
    }));
    assert_eq!(recorder.sweep(SystemTime::now()), 0);
    assert!(lib.rebuild(&key).expect("rebuild").is_empty());
    assert_eq!(std::fs::read(sdir.join(&name)).expect("still there"), data);
    lib.unregister(&key, &shared);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An audio-only stream: audio drives the cuts; ffprobe decodes every frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audio_only_stream_is_recorded() {
    let dir = temp_dir("audio");
    let (tracks, frames) = read_flv(&clip(&dir, 3));
    let audio: Vec<Frame> = frames
        .into_iter()
        .filter(|f| f.track == TrackId(2))
        .collect();
    let engine = engine();
    let root = dir.join("rec");
    let recorder = Recorder::new(engine.context(), config(&root)).expect("recorder");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(recorder.clone().run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let key = StreamKey::parse("live/radio").expect("key");
    publish(&engine, &key, &tracks[1..], &audio).await;
    until_idle(recorder.library(), &key).await;
    let segments = recorder.library().segments(&key);
    assert!(segments.len() >= 2, "a new file after 2 s: {segments:?}");
    let mut decoded = 0;
    for s in &segments {
        assert_eq!(s.codecs, ["aac"]);
        let (streams, packets, _) = probe(&root.join("live/radio").join(&s.file));
        assert_eq!(streams.len(), 1);
        let dts: Vec<f64> = packets.iter().map(|p| p.2).collect();
        assert!(dts.windows(2).all(|w| w[1] > w[0]), "{dts:?}");
        decoded += streams[0].1;
    }
    // Every published frame (the first one of the publish starts the timeline).
    assert_eq!(decoded, audio.len() as u64);
    let span = recorder.library().spans(&key);
    assert_eq!(span.len(), 1, "{span:?}");
    shutdown.cancel();
    task.await.expect("recorder task");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Unmounts on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A real full disk: a 64 KiB tmpfs. Recording stops with a counted error
/// when it fills, the viewer of the stream gets every frame, and what was
/// written is indexed up to its last complete fragment and probes cleanly.
/// Needs root (to mount), as CI runs; elsewhere it says so and returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_recording_not_the_stream() {
    let uid = Command::new("id").arg("-u").output().expect("id runs");
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!(
            "a_full_disk_stops_recording_not_the_stream: not root, cannot mount a tmpfs; not run"
        );
        return;
    }
    let dir = temp_dir("tmpfs");
    let (tracks, frames) = read_flv(&clip(&dir, 4));
    let root = dir.join("small");
    std::fs::create_dir_all(&root).expect("dir");
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&root)
        .status()
        .expect("mount runs");
    assert!(status.success(), "mount a tmpfs (as root)");
    let _mounted = Tmpfs(root.clone());
    let engine = engine();
    let recorder = Recorder::new(
        engine.context(),
        RecordConfig {
            segment: Duration::from_secs(60),
            ..config(&root)
        },
    )
    .expect("recorder");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(recorder.clone().run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let key = StreamKey::parse("live/big").expect("key");
    let seen = publish_and_view(&engine, &key, &tracks, &frames).await;
    let baseline = publish_and_view(
        &engine,
        &StreamKey::parse("other/big").expect("key"),
        &tracks,
        &frames,
    )
    .await;
    assert_eq!(seen, baseline, "the viewer got every frame");
    for _ in 0..200 {
        if recorder.library().status().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let stats = recorder.stats().snapshot();
    assert_eq!(stats.disk_errors, 1, "{stats:?}");
    let segments = index::read_index(&root.join("live/big"));
    assert_eq!(segments.len(), 1, "{segments:?}");
    let s = &segments[0];
    assert!(!s.fragments.is_empty());
    let path = root.join("live/big").join(&s.file);
    assert_eq!(std::fs::metadata(&path).expect("file").len(), s.bytes());
    let (streams, packets, _) = probe(&path);
    assert_monotonic(&packets);
    assert!(streams[0].1 > 0);
    shutdown.cancel();
    task.await.expect("recorder task");
    drop(_mounted);
    let _ = std::fs::remove_dir_all(&dir);
}
