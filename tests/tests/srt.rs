//! SRT and HTTP-TS through the `tidewater` binary against ffmpeg 5.1 and
//! srt-live-transmit (libsrt 1.5), and across protocols (SRT in, RTMP and
//! HTTP-TS out; RTMP in, SRT out): what the clients decoded, not just that
//! they ran.

use std::time::Duration;

use tidewater_tests::srt::{ffmpeg_publish_ts, ffmpeg_srt_url, slt_publish, slt_read};
use tidewater_tests::tools::count_frames;
use tidewater_tests::{
    FrameCrc, ServerCommand, TempDir, catalog_codecs, ffmpeg_framecrc, ffmpeg_publish,
    loopback_config, spawn_framecrc, wait_live,
};

const LIVE_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(40);

/// Decoded video and audio frame counts of a framecrc, checking codecs and timestamps.
fn decoded(name: &str, crc: &FrameCrc) -> (usize, usize) {
    assert_eq!(crc.codecs.len(), 2, "{name}: {:?}", crc.codecs);
    let video = crc.codecs.iter().position(|c| c == "rawvideo");
    let audio = crc.codecs.iter().position(|c| c.starts_with("pcm_"));
    let (Some(v), Some(a)) = (video, audio) else {
        panic!("{name}: decoded video and audio expected: {:?}", crc.codecs)
    };
    assert!(crc.monotonic(), "{name}: timestamps go backwards");
    (crc.stream(v as u32).len(), crc.stream(a as u32).len())
}

#[test]
fn ffmpeg_publishes_over_srt_and_reads_over_srt_rtmp_and_http_ts() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp, srt) = (server.http_addr(), server.rtmp_addr(), server.srt_addr());
    let _publisher = ffmpeg_publish_ts(&ffmpeg_srt_url(srt, "publish:live/s1"), 8, 50, "libx264");
    let live = wait_live(http, "live/s1", LIVE_TIMEOUT);
    assert_eq!(live["protocol"], "srt");
    assert_eq!(catalog_codecs(&live), vec!["H264", "Aac"]);

    let urls = [
        ("srt", ffmpeg_srt_url(srt, "read:live/s1")),
        ("rtmp", format!("rtmp://{rtmp}/live/s1")),
        ("http-ts", format!("http://{http}/ts/live/s1.ts")),
    ];
    let readers: Vec<_> = urls
        .into_iter()
        .map(|(name, url)| (name, spawn_framecrc(url, &[], READ_TIMEOUT)))
        .collect();
    for (name, reader) in readers {
        let (crc, ended) = reader.join().expect("reader");
        assert!(ended, "{name}: the reader ends when the publisher stops");
        let (video, audio) = decoded(name, &crc);
        // Joined about a second in, at the cached GOP (2 s): most of 8 s at 25 fps.
        assert!(video >= 125, "{name}: only {video} video frames decoded");
        assert!(
            video <= 200,
            "{name}: {video} video frames from an 8 s clip"
        );
        assert!(audio >= 150, "{name}: only {audio} audio frames decoded");
    }
}

#[test]
fn rtmp_in_srt_out() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp, srt) = (server.http_addr(), server.rtmp_addr(), server.srt_addr());
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/r1"), 8, 50);
    wait_live(http, "live/r1", LIVE_TIMEOUT);
    let (crc, ended) = ffmpeg_framecrc(&ffmpeg_srt_url(srt, "read:live/r1"), &[], READ_TIMEOUT);
    assert!(ended, "the SRT reader ends when the RTMP publisher stops");
    let (video, audio) = decoded("srt", &crc);
    assert!(video >= 125, "only {video} video frames decoded");
    assert!(audio >= 150, "only {audio} audio frames decoded");
}

#[test]
fn h265_over_srt_in_and_out() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, srt) = (server.http_addr(), server.srt_addr());
    let _publisher = ffmpeg_publish_ts(&ffmpeg_srt_url(srt, "publish:live/hevc"), 6, 25, "libx265");
    let live = wait_live(http, "live/hevc", LIVE_TIMEOUT);
    assert_eq!(live["catalog"]["tracks"][0]["codec"], "H265");
    let (crc, ended) = ffmpeg_framecrc(
        &ffmpeg_srt_url(srt, "read:live/hevc"),
        &["-c", "copy"],
        READ_TIMEOUT,
    );
    assert!(ended);
    assert_eq!(crc.codecs, vec!["hevc", "aac"]);
    assert!(
        crc.stream(0).len() >= 75,
        "{} HEVC packets",
        crc.stream(0).len()
    );
    assert!(crc.monotonic());
}

#[test]
fn srt_live_transmit_with_access_control_ids_and_passphrases() {
    let pass = "a-passphrase-for-tests";
    let config = format!(
        "{}[srt]\nlisten = \"127.0.0.1:0\"\n[[srt.encryption]]\npath = \"secure\"\npassphrase = \"{pass}\"\nkey_length = 16\n",
        loopback_config()
    );
    let mut server = ServerCommand::with_config(&config)
        .env("TIDEWATER_SRT__LISTEN", "127.0.0.1:0")
        .spawn();
    let (http, srt) = (server.http_addr(), server.srt_addr());
    let base = format!("srt://{srt}?latency=120");
    let with_pass = format!("&passphrase={pass}&pbkeylen=16");
    let _publisher = slt_publish(
        &format!("{base}&streamid=#!::r=secure/y,m=publish{with_pass}"),
        8,
    );
    let live = wait_live(http, "secure/y", LIVE_TIMEOUT);
    assert_eq!(live["protocol"], "srt");

    let dir = TempDir::new("srt-slt");
    let good = dir.path().join("good.ts");
    let wrong = dir.path().join("wrong.ts");
    let none = dir.path().join("none.ts");
    let urls = [
        (
            good.clone(),
            format!("{base}&streamid=#!::r=secure/y,m=request{with_pass}"),
        ),
        (
            wrong.clone(),
            format!(
                "{base}&streamid=#!::r=secure/y,m=request&passphrase=not-the-passphrase&pbkeylen=16"
            ),
        ),
        (
            none.clone(),
            format!("{base}&streamid=#!::r=secure/y,m=request"),
        ),
    ];
    let readers: Vec<_> = urls
        .into_iter()
        .map(|(out, url)| std::thread::spawn(move || slt_read(&url, &out, READ_TIMEOUT)))
        .collect();
    for r in readers {
        r.join().expect("reader");
    }
    let streams = count_frames(&good);
    let frames = |codec: &str| {
        streams
            .iter()
            .find(|(c, _)| c == codec)
            .map_or(0, |(_, n)| *n)
    };
    assert!(frames("h264") >= 100, "right passphrase: {streams:?}");
    assert!(frames("aac") >= 100, "right passphrase: {streams:?}");
    for refused in [&wrong, &none] {
        let len = std::fs::metadata(refused).map_or(0, |m| m.len());
        assert_eq!(len, 0, "{refused:?}: a refused reader gets nothing");
    }
    let log = server.output();
    assert!(
        log.contains("srt read handshake failed (a wrong or no passphrase)"),
        "the refusal is logged:\n{log}"
    );
}

#[test]
fn bad_stream_ids_are_refused_with_a_log_line() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let srt = server.srt_addr();
    for id in ["bogus", "publish:nokey", "read:live/not-live"] {
        let (crc, ended) = ffmpeg_framecrc(&ffmpeg_srt_url(srt, id), &[], Duration::from_secs(15));
        assert!(ended, "{id}: ffmpeg gives up");
        assert!(crc.lines.is_empty(), "{id}: nothing read");
    }
    let log = server.output();
    assert!(
        log.contains("srt connection refused: stream id \"bogus\""),
        "{log}"
    );
    assert!(log.contains("read live/not-live"), "{log}");
}
