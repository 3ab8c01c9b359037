//! RTMP and HTTP-FLV through the `tidewater` binary, with ffmpeg publishing
//! and ffmpeg/ffprobe reading: what they decoded, not just that they ran.

use std::process::Command;
use std::time::{Duration, Instant};

use tidewater_tests::{
    ServerCommand, catalog_codecs, ffmpeg_publish, loopback_config, spawn_framecrc, wait_live,
};

const LIVE_TIMEOUT: Duration = Duration::from_secs(15);

#[test]
fn ffmpeg_publish_is_decoded_back_over_rtmp_and_http_flv_and_ends_with_the_publisher() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/e2e"), 8, 50);
    let live = wait_live(http, "live/e2e", LIVE_TIMEOUT);
    assert_eq!(live["protocol"], "rtmp");
    assert_eq!(catalog_codecs(&live), vec!["H264", "Aac"]);

    // Two readers in parallel, one per protocol, decoding until the stream ends.
    let rtmp_url = format!("rtmp://{rtmp}/live/e2e");
    let flv_url = format!("http://{http}/flv/live/e2e.flv");
    let over_rtmp = spawn_framecrc(rtmp_url, &[], Duration::from_secs(30));
    let over_flv = spawn_framecrc(flv_url, &[], Duration::from_secs(30));
    for (name, reader) in [("rtmp", over_rtmp), ("http-flv", over_flv)] {
        // The reader must end, cleanly, when the publisher stops.
        let crc = reader.join().expect("reader");
        assert_eq!(crc.codecs.len(), 2, "{name}: {:?}", crc.codecs);
        assert!(
            crc.codecs.iter().any(|c| c == "rawvideo"),
            "{name}: decoded video: {:?}",
            crc.codecs
        );
        assert!(
            crc.codecs.iter().any(|c| c.starts_with("pcm_")),
            "{name}: decoded audio: {:?}",
            crc.codecs
        );
        let video = crc
            .codecs
            .iter()
            .position(|c| c == "rawvideo")
            .expect("video") as u32;
        let frames = crc.stream(video).len();
        // It joined about a second in, at the cached GOP (2 s GOP): most of 8 s at 25 fps.
        assert!(frames >= 125, "{name}: only {frames} video frames decoded");
        assert!(
            frames <= 200,
            "{name}: {frames} video frames from an 8 s clip"
        );
        assert!(crc.monotonic(), "{name}: timestamps go backwards");
    }
    assert!(
        try_gone(http, "live/e2e"),
        "the stream is gone from the API after the publisher stopped"
    );
}

fn try_gone(http: std::net::SocketAddr, key: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(r) = tidewater_tests::try_http_get(&format!("http://{http}/api/v1/streams/{key}"))
            && r.status == 404
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn two_viewers_in_parallel_receive_the_same_packets() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/pair"), 6, 25);
    wait_live(http, "live/pair", LIVE_TIMEOUT);
    let url = format!("rtmp://{rtmp}/live/pair");
    let readers: Vec<_> = (0..2)
        .map(|_| spawn_framecrc(url.clone(), &["-c", "copy"], Duration::from_secs(30)))
        .collect();
    // Both end, cleanly, with the stream (or the reader threads panic).
    let results: Vec<_> = readers
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();
    let (a, b) = (&results[0], &results[1]);
    assert!(
        a.lines.len() > 100 && b.lines.len() > 100,
        "{} and {} packets",
        a.lines.len(),
        b.lines.len()
    );
    // Whichever joined later, from its first packet on the two are identical.
    let (early, late) = if a.lines.len() >= b.lines.len() {
        (a, b)
    } else {
        (b, a)
    };
    let first = &late.lines[0];
    let start = early
        .lines
        .iter()
        .position(|l| l.crc == first.crc && l.size == first.size)
        .expect("the later viewer's first packet is among the earlier viewer's");
    assert_eq!(
        &early.lines[start..],
        &late.lines[..],
        "lossless and in the same order"
    );
}

#[test]
fn a_late_joiner_starts_at_once_from_the_cached_gop() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    // A 10 s GOP: without a GOP cache a viewer joining 3 s in would wait ~7 s.
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/late"), 14, 250);
    wait_live(http, "live/late", LIVE_TIMEOUT);
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=dts_time,flags",
        ])
        .args(["-read_intervals", "%+#5", "-of", "csv=p=0"])
        .arg(format!("rtmp://{rtmp}/live/late"))
        .output()
        .expect("run ffprobe");
    let waited = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let packets: Vec<(f64, String)> = text
        .lines()
        .filter_map(|l| {
            let (dts, flags) = l.split_once(',')?;
            Some((dts.parse().ok()?, flags.to_string()))
        })
        .collect();
    assert!(
        packets.len() >= 5,
        "ffprobe read {packets:?} (stderr {})",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        packets[0].1.starts_with('K'),
        "the first video packet is a keyframe: {packets:?}"
    );
    assert!(
        packets[0].0 < 1.0,
        "it is the cached GOP's keyframe (t≈0), not the next one at 10 s: {packets:?}"
    );
    // ffprobe's own probing takes a moment; the next keyframe was ≥ 6 s away.
    assert!(
        waited < Duration::from_secs(6),
        "first packets after {waited:?}"
    );
}

#[test]
fn a_second_publisher_of_a_live_stream_is_refused_and_the_first_continues() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let _first = ffmpeg_publish(&format!("rtmp://{rtmp}/live/taken"), 10, 50);
    let before = wait_live(http, "live/taken", LIVE_TIMEOUT);
    let mut second = ffmpeg_publish(&format!("rtmp://{rtmp}/live/taken"), 5, 50);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = second.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the second publisher was not refused"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !status.success(),
        "ffmpeg must fail to publish to a taken stream"
    );
    let after = wait_live(http, "live/taken", LIVE_TIMEOUT);
    assert_eq!(
        after["generation"], before["generation"],
        "the first publish is untouched"
    );
    let log = server.wait_for_line("rtmp request refused", Duration::from_secs(5));
    let log = log.unwrap_or_else(|| panic!("a log line says why: {}", server.output()));
    assert!(
        log.contains("live/taken") && log.contains("already being published"),
        "{log}"
    );
}
