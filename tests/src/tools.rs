//! Running command-line clients to completion: ffmpeg making clips and
//! ffprobe reading what a test wrote. Shared by the end-to-end tests and the
//! crates' integration tests (a dev-dependency there), so each client is
//! driven, and its failure reported, one way.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `tool` with `args` to completion; panics with its standard error
/// unless it starts and exits successfully.
pub fn run_tool<I, S>(tool: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(tool);
    cmd.args(args);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} (install ffmpeg 5.1): {e}"));
    assert!(
        out.status.success(),
        "{tool} {:?}: {}",
        cmd.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs ffmpeg quietly (`-hide_banner -loglevel error -y`, overwriting its
/// output) with `args`; panics unless it succeeds.
pub fn ffmpeg(args: &[&str]) {
    run_tool(
        "ffmpeg",
        ["-hide_banner", "-loglevel", "error", "-y"]
            .iter()
            .chain(args),
    );
}

/// Runs `ffprobe -v error` with `args` on `file`; panics unless it succeeds
/// without a complaint on its standard error. Returns its standard output.
pub fn ffprobe_clean(args: &[&str], file: &Path) -> String {
    let mut all: Vec<&OsStr> = vec!["-v".as_ref(), "error".as_ref()];
    all.extend(args.iter().map(OsStr::new));
    all.push(file.as_os_str());
    let out = run_tool("ffprobe", all);
    assert!(
        out.stderr.is_empty(),
        "ffprobe complained: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("ffprobe writes utf-8")
}

/// ffprobe's count of decoded frames per stream of a file: `(codec, frames)`,
/// one entry per codec in the order ffprobe lists them. Panics unless
/// ffprobe succeeds without a complaint and every line it prints is a count.
pub fn count_frames(path: &Path) -> Vec<(String, u64)> {
    let mut args: Vec<&OsStr> = [
        "-v",
        "error",
        "-count_frames",
        "-show_entries",
        "stream=codec_name,nb_read_frames",
        "-of",
        "csv=p=0",
    ]
    .iter()
    .map(OsStr::new)
    .collect();
    args.push(path.as_os_str());
    let out = run_tool("ffprobe", args);
    assert!(
        out.stderr.is_empty(),
        "ffprobe -count_frames {} complained: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut streams: Vec<(String, u64)> = Vec::new();
    // A TS's streams are listed twice: under the program and on their own.
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.trim().is_empty() {
            continue;
        }
        // Every line is `codec,frames`: anything else (a stream ffprobe could
        // not count, `N/A`) fails rather than being left out of the counts.
        let (codec, n) = line
            .split_once(',')
            .and_then(|(c, n)| Some((c, n.trim().parse::<u64>().ok()?)))
            .unwrap_or_else(|| {
                panic!(
                    "ffprobe -count_frames {}: not `codec,frames`: {line:?}",
                    path.display()
                )
            });
        if !streams.iter().any(|(c, _)| c == codec) {
            streams.push((codec.to_string(), n));
        }
    }
    streams
}

/// ffprobe's decoded frames of a file, in the order it prints them:
/// `(media type, pts)` of each frame that has a pts.
pub fn frame_pts(path: &Path) -> Vec<(String, i64)> {
    let mut args: Vec<&OsStr> = [
        "-v",
        "error",
        "-show_entries",
        "frame=media_type,pts",
        "-of",
        "csv=p=0",
    ]
    .iter()
    .map(OsStr::new)
    .collect();
    args.push(path.as_os_str());
    let out = run_tool("ffprobe", args);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // The first frame's line may carry a trailing side-data field.
            let mut f = l.split(',');
            let (k, p) = (f.next()?, f.next()?);
            Some((k.to_owned(), p.trim().parse().ok()?))
        })
        .collect()
}

/// Encodes `seconds` of a generated clip to MPEG-TS at `out`: the lavfi
/// picture `picture` (e.g. `testsrc=size=320x240:rate=25`) in 4:2:0 with the
/// encoder `vcodec` (`libx264` or `libx265`) and a keyframe every `gop`
/// frames (for x265 exactly, without scene cuts), `options` added to the
/// video encoder's (e.g. `-bf 2`, `-preset ultrafast`); and a 440 Hz sine at
/// 48 kHz in AAC.
pub fn encode_ts(
    out: &Path,
    picture: &str,
    seconds: u32,
    vcodec: &str,
    gop: u32,
    options: &[&str],
) {
    let (seconds, gop_frames) = (seconds.to_string(), gop.to_string());
    let x265 = format!("log-level=none:keyint={gop}:min-keyint={gop}:scenecut=0");
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        picture,
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &seconds,
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        vcodec,
        "-g",
        &gop_frames,
    ];
    args.extend(options);
    if vcodec == "libx265" {
        args.extend(["-x265-params", &x265]);
    }
    args.extend([
        "-c:a",
        "aac",
        "-f",
        "mpegts",
        out.to_str().expect("utf-8 path"),
    ]);
    ffmpeg(&args);
}

/// Encodes `seconds` of the generated picture (testsrc 320x240 at `fps`) to
/// a raw Annex B elementary stream at `out`: H.265 (x265) when `h265`, else
/// H.264 (x264), with access unit delimiters, no B-frames and a keyframe
/// every `gop` frames.
pub fn encode_annexb(out: &Path, h265: bool, fps: u32, seconds: u32, gop: u32) {
    let src = format!("testsrc=size=320x240:rate={fps}");
    let seconds = seconds.to_string();
    let (gop, x265) = (
        gop.to_string(),
        format!("bframes=0:keyint={gop}:aud=1:log-level=error"),
    );
    let codec: &[&str] = if h265 {
        &["-c:v", "libx265", "-x265-params", &x265]
    } else {
        &[
            "-c:v",
            "libx264",
            "-bf",
            "0",
            "-g",
            &gop,
            "-x264-params",
            "aud=1",
        ]
    };
    let format = if h265 { "hevc" } else { "h264" };
    let out = out.to_str().expect("utf-8 path");
    let head = ["-f", "lavfi", "-i", &src, "-t", &seconds];
    let tail = ["-pix_fmt", "yuv420p", "-f", format, out];
    ffmpeg(&[&head[..], codec, &tail[..]].concat());
}

/// Encodes `seconds` of a 440 Hz sine, stereo at 48 kHz, to AAC in ADTS at `out`.
pub fn encode_adts(out: &Path, seconds: u32) {
    encode_sine(out, seconds, "aac", "adts");
}

/// Encodes `seconds` of a 440 Hz sine, stereo at 48 kHz, with the encoder
/// `codec` into the container `format` at `out`.
pub fn encode_sine(out: &Path, seconds: u32, codec: &str, format: &str) {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &seconds.to_string(),
        "-ac",
        "2",
        "-c:a",
        codec,
        "-f",
        format,
        out.to_str().expect("utf-8 path"),
    ]);
}
