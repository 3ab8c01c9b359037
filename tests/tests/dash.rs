//! DASH through the `tidewater` binary: ffmpeg publishes RTMP, and ffmpeg's
//! DASH demuxer and dash.js in headless Chromium (low-latency mode) play
//! the MPD. The tests check what the clients got: decoded frames,
//! codecs, audio, monotonic timestamps, `currentTime` advancing and the
//! latency dash.js measures.

use std::net::SocketAddr;
use std::time::Duration;

use tidewater_tests::browser::{Player, PlayerRun, play_in_chromium};
use tidewater_tests::{
    ServerCommand, curl_command, ffmpeg_framecrc, ffmpeg_publish, http_get, loopback_config,
    try_http_get, wait_live,
};

const LIVE_TIMEOUT: Duration = Duration::from_secs(15);

fn dash_server(extra: &str) -> (tidewater_tests::ServerProcess, SocketAddr, SocketAddr) {
    let config = format!("{}{extra}", loopback_config());
    let mut server = ServerCommand::with_config(&config).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    (server, http, rtmp)
}

/// The response headers of a GET, lower-cased.
fn response_headers(url: &str) -> String {
    let out = curl_command()
        .args(["-sS", "-D", "-", "-o", "/dev/null", url])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).to_lowercase()
}

#[test]
fn ffmpeg_plays_the_mpd_with_video_and_audio_decoded() {
    let (_server, http, rtmp) = dash_server("");
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/dash1"), 40, 50);
    wait_live(http, "live/dash1", LIVE_TIMEOUT);

    let mpd_url = format!("http://{http}/dash/live/dash1/manifest.mpd");
    let mpd = http_get(&mpd_url);
    assert_eq!(mpd.status, 200, "{}", mpd.body);
    assert_eq!(mpd.content_type, "application/dash+xml");
    let headers = response_headers(&mpd_url);
    for needle in ["access-control-allow-origin: *", "cache-control: no-cache"] {
        assert!(headers.contains(needle), "no {needle} in\n{headers}");
    }
    for needle in [
        "type=\"dynamic\"",
        "codecs=\"avc1.",
        "codecs=\"mp4a.40.2\"",
        "width=\"320\"",
        "height=\"240\"",
        "frameRate=\"25\"",
        "audioSamplingRate=\"44100\"",
        "<SegmentTimeline>",
        &format!("value=\"http://{http}/dash/time\""),
    ] {
        assert!(mpd.body.contains(needle), "no {needle} in\n{}", mpd.body);
    }
    let time = http_get(&format!("http://{http}/dash/time"));
    assert_eq!(time.status, 200);
    assert!(
        time.body.len() == 24 && time.body.ends_with('Z') && time.body.starts_with("20"),
        "{}",
        time.body
    );

    // ffmpeg's DASH demuxer decodes 10 s of the live stream.
    let (crc, _) = ffmpeg_framecrc(&mpd_url, &["-t", "10"], Duration::from_secs(60));
    assert_eq!(crc.codecs.len(), 2, "{:?}", crc.codecs);
    let video = crc
        .codecs
        .iter()
        .position(|c| c == "rawvideo")
        .expect("decoded video") as u32;
    let audio = crc
        .codecs
        .iter()
        .position(|c| c.starts_with("pcm_"))
        .expect("decoded audio") as u32;
    let frames = crc.stream(video).len();
    assert!(
        (240..=260).contains(&frames),
        "{frames} video frames for 10 s at 25 fps"
    );
    let audio_frames = crc.stream(audio).len();
    // 10 s of 44.1 kHz AAC is 430.7 frames of 1024 samples.
    assert!(
        (420..=440).contains(&audio_frames),
        "{audio_frames} audio frames for 10 s"
    );
    assert!(crc.monotonic(), "timestamps go backwards");
}

#[test]
fn bad_paths_and_streams_that_are_not_live() {
    let (_server, http, _) = dash_server("");
    for (path, status) in [
        ("/dash/live/nobody/manifest.mpd", 404),
        ("/dash/live/nobody/p1-v1-init.mp4", 404),
        ("/dash/live/nobody/p1-v1-t0.m4s", 404),
        ("/dash/live/nobody/garbage.txt", 404),
        ("/dash/live/a/b/manifest.mpd", 404),
        ("/dash/live/..%2F..%2Fetc/manifest.mpd", 400),
        ("/dash/live/%01/manifest.mpd", 400),
    ] {
        let r = try_http_get(&format!("http://{http}{path}")).expect("the server answers");
        assert_eq!(r.status, status, "{path}: {}", r.body);
    }
}

#[test]
fn dashjs_low_latency_sits_under_two_seconds_behind_live() {
    let (_server, http, rtmp) = dash_server("[dash]\nlow_latency = true\n");
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/dash3"), 45, 50);
    wait_live(http, "live/dash3", LIVE_TIMEOUT);
    let mpd_url = format!("http://{http}/dash/live/dash3/manifest.mpd");
    let mpd = http_get(&mpd_url);
    for needle in [
        "availabilityTimeComplete=\"false\"",
        "availabilityTimeOffset=\"2\"",
        "<ServiceDescription",
        "$Number$",
    ] {
        assert!(mpd.body.contains(needle), "no {needle} in\n{}", mpd.body);
    }
    let run = PlayerRun::new(Player::DashJs, mpd_url, Duration::from_secs(24)).low_latency();
    let report = play_in_chromium(&run);
    assert!(report.errors.is_empty(), "{}", report.summary());
    assert!(report.progressed() > 12.0, "{}", report.summary());
    assert!(report.monotonic(), "{}", report.summary());
    let latency = report
        .settled_latency()
        .expect("dash.js reports its latency");
    assert!(latency < 2.0, "latency {latency:.2}s\n{}", report.summary());
    eprintln!("dash.js latency (low-latency mode): {latency:.2}s");
}
