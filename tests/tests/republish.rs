//! Viewers across a republish, through the `tidewater` binary: an ffmpeg
//! reader on each of RTMP, HTTP-FLV, SRT and HTTP-TS plays on when the
//! publisher stops and comes back a second later (an encoder's network blip)
//! or is taken over, decoding frames of the new publish with timestamps that
//! keep rising, and ends on its own once the stream really ends (the follow
//! grace, shortened here, after the last publish).

use std::io::Read;
use std::net::SocketAddr;
use std::process::Stdio;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tidewater_tests::srt::ffmpeg_srt_url;
use tidewater_tests::{
    ChildGuard, FrameCrc, ServerCommand, ffmpeg_framecrc_command, ffmpeg_publish, wait_live,
};

const LIVE_TIMEOUT: Duration = Duration::from_secs(15);
/// The stream's grace for a republish (`[defaults] follow_grace_ms`).
const GRACE: Duration = Duration::from_secs(3);
/// How long after the grace a reader may take to notice the end and exit
/// (the server's closing words, SRT's linger, ffmpeg's own shutdown).
const END_BOUND: Duration = Duration::from_secs(5);
/// The clip's frame rate and GOP (frames).
const FPS: usize = 25;
const GOP: u32 = 25;

fn config(duplicate: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[defaults]\nfollow_grace_ms = {}\nduplicate = \"{duplicate}\"\n",
        GRACE.as_millis()
    )
}

/// What a reader decoded, and when it exited by itself (`None`: it was
/// still running at the deadline and was killed).
struct Reading {
    name: &'static str,
    crc: FrameCrc,
    exited_at: Option<Instant>,
}

/// ffmpeg decoding `url` (every frame as it comes, no frame-rate
/// conversion) into framecrc, on a thread, killed at `deadline`.
fn spawn_reader(name: &'static str, url: String, deadline: Instant) -> JoinHandle<Reading> {
    std::thread::spawn(move || {
        let mut child = ChildGuard(
            ffmpeg_framecrc_command(&[], &url, &["-fps_mode", "passthrough"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run ffmpeg: {e}")),
        );
        let mut stdout = child.0.stdout.take().expect("piped stdout");
        let text = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let mut exited_at = None;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.0.try_wait() {
                exited_at = Some(Instant::now());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(child);
        Reading {
            name,
            crc: FrameCrc::parse(&text.join().unwrap_or_default()),
            exited_at,
        }
    })
}

/// One reader per output, started now.
fn readers(
    http: SocketAddr,
    rtmp: SocketAddr,
    srt: SocketAddr,
    key: &str,
) -> Vec<JoinHandle<Reading>> {
    let deadline = Instant::now() + Duration::from_secs(40);
    vec![
        spawn_reader("rtmp", format!("rtmp://{rtmp}/{key}"), deadline),
        spawn_reader("http-flv", format!("http://{http}/flv/{key}.flv"), deadline),
        spawn_reader("srt", ffmpeg_srt_url(srt, &format!("read:{key}")), deadline),
        spawn_reader("http-ts", format!("http://{http}/ts/{key}.ts"), deadline),
    ]
}

/// Checks a reader: more video frames than the first publish alone could
/// give it (so frames of the second were decoded), both tracks' decode
/// timestamps rising throughout, and an exit on its own within the grace
/// and a bound after the last publish ended, not before.
fn check(read: &Reading, first_publish_frames: usize, last_ended: Instant) {
    let name = read.name;
    let video = read
        .crc
        .codecs
        .iter()
        .position(|c| c == "rawvideo")
        .unwrap_or_else(|| panic!("{name}: no decoded video: {:?}", read.crc.codecs));
    assert!(
        read.crc.codecs.iter().any(|c| c.starts_with("pcm_")),
        "{name}: decoded audio: {:?}",
        read.crc.codecs
    );
    let frames = read.crc.stream(video as u32).len();
    assert!(
        frames >= first_publish_frames + FPS * 2,
        "{name}: {frames} video frames: not 2 s more than the {first_publish_frames} the first publish could give"
    );
    assert!(
        read.crc.monotonic(),
        "{name}: timestamps not rising: {:?}",
        read.crc
            .lines
            .windows(2)
            .filter(|w| w[0].stream == w[1].stream && w[1].dts <= w[0].dts)
            .take(5)
            .collect::<Vec<_>>()
    );
    let exited = read
        .exited_at
        .unwrap_or_else(|| panic!("{name}: still reading long after the stream ended"));
    let after = exited.saturating_duration_since(last_ended);
    assert!(
        exited > last_ended + GRACE - Duration::from_millis(500),
        "{name}: ended {after:?} after the last publish, before the grace ({GRACE:?})"
    );
    assert!(
        after <= GRACE + END_BOUND,
        "{name}: ended {after:?} after the last publish (grace {GRACE:?} + {END_BOUND:?})"
    );
}

/// Waits for a publisher to exit by itself; the time it did.
fn finished(publisher: &mut ChildGuard, within: Duration) -> Instant {
    assert!(
        publisher.wait_for(within).is_some(),
        "the publisher did not finish"
    );
    Instant::now()
}

#[test]
fn readers_play_on_when_the_publisher_comes_back_a_second_later() {
    let mut server = ServerCommand::with_config(&config("reject")).spawn();
    let (http, rtmp, srt) = (server.http_addr(), server.rtmp_addr(), server.srt_addr());
    let url = format!("rtmp://{rtmp}/live/blip");
    let mut first = ffmpeg_publish(&url, 6, GOP);
    wait_live(http, "live/blip", LIVE_TIMEOUT);
    let readers = readers(http, rtmp, srt, "live/blip");
    finished(&mut first, Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(1));
    let mut second = ffmpeg_publish(&url, 5, GOP);
    wait_live(http, "live/blip", LIVE_TIMEOUT);
    let last_ended = finished(&mut second, Duration::from_secs(15));
    for reader in readers {
        let read = reader.join().expect("reader");
        // Joined during the first publish's 6 s: at most its 6 s of frames.
        check(&read, 6 * FPS, last_ended);
    }
}

#[test]
fn readers_play_on_across_a_take_over() {
    let mut server = ServerCommand::with_config(&config("take_over")).spawn();
    let (http, rtmp, srt) = (server.http_addr(), server.rtmp_addr(), server.srt_addr());
    let url = format!("rtmp://{rtmp}/live/taken");
    let mut first = ffmpeg_publish(&url, 30, GOP);
    wait_live(http, "live/taken", LIVE_TIMEOUT);
    let started = Instant::now();
    let readers = readers(http, rtmp, srt, "live/taken");
    std::thread::sleep(Duration::from_secs(6));
    // A second encoder takes the stream over; the first is cut off.
    let mut second = ffmpeg_publish(&url, 5, GOP);
    assert!(
        first.wait_for(Duration::from_secs(10)).is_some(),
        "the first publisher is cut off by the take-over"
    );
    // The first publisher's exit is after its last frame: the readers got
    // at most this long of it, plus the cached GOP they joined with.
    let first_span = started.elapsed();
    let last_ended = finished(&mut second, Duration::from_secs(15));
    for reader in readers {
        let read = reader.join().expect("reader");
        check(
            &read,
            (first_span.as_secs_f64() * FPS as f64) as usize + GOP as usize,
            last_ended,
        );
    }
}

/// A viewer ends within the grace and a bound when nobody publishes again.
#[test]
fn readers_end_when_the_publisher_does_not_come_back() {
    let mut server = ServerCommand::with_config(&config("reject")).spawn();
    let (http, rtmp, srt) = (server.http_addr(), server.rtmp_addr(), server.srt_addr());
    let mut publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/gone"), 5, GOP);
    wait_live(http, "live/gone", LIVE_TIMEOUT);
    let readers = readers(http, rtmp, srt, "live/gone");
    let ended = finished(&mut publisher, Duration::from_secs(15));
    for reader in readers {
        let read = reader.join().expect("reader");
        let name = read.name;
        assert!(
            read.crc.codecs.iter().any(|c| c == "rawvideo"),
            "{name}: decoded video: {:?}",
            read.crc.codecs
        );
        let exited = read
            .exited_at
            .unwrap_or_else(|| panic!("{name}: still reading long after the stream ended"));
        let after = exited.saturating_duration_since(ended);
        assert!(
            after >= GRACE - Duration::from_millis(500) && after <= GRACE + END_BOUND,
            "{name}: ended {after:?} after the publish (grace {GRACE:?} + {END_BOUND:?})"
        );
    }
}
