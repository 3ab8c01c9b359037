//! A client (ffmpeg decoding to framecrc, usually) run on a thread of its
//! own until it exits or a deadline passes, remembering *when* it exited:
//! for tests about how long a reader takes to see an end, and what it
//! decoded until then.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{ChildGuard, FrameCrc};

/// What a reader decoded and how it ended.
#[derive(Debug)]
pub struct TimedReading {
    /// The name it was started with.
    pub name: String,
    /// Its framecrc output, parsed.
    pub crc: FrameCrc,
    /// When it exited by itself; `None`: still running at the deadline (killed).
    pub exited_at: Option<Instant>,
    /// Its exit status, when it exited by itself.
    pub status: Option<ExitStatus>,
    /// What it printed on standard error (the last 4 KiB).
    pub stderr: String,
}

impl TimedReading {
    /// The number of frames of the first stream whose codec is `codec`
    /// (`rawvideo` for decoded pictures); 0 if there is none.
    pub fn frames_of(&self, codec: &str) -> usize {
        self.crc
            .codecs
            .iter()
            .position(|c| c == codec)
            .map_or(0, |i| self.crc.stream(i as u32).len())
    }
}

/// Starts `cmd` (its standard output is framecrc text) on a thread; it is
/// killed at `deadline` if it has not exited by then.
pub fn spawn_timed(name: &str, mut cmd: Command, deadline: Instant) -> JoinHandle<TimedReading> {
    let name = name.to_string();
    std::thread::spawn(move || {
        let mut child = ChildGuard(
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e}")),
        );
        let mut stdout = child.0.stdout.take().expect("piped stdout");
        let mut stderr = child.0.stderr.take().expect("piped stderr");
        let text = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let cut = text.len().saturating_sub(4096);
            let cut = (cut..text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            text.split_off(cut)
        });
        let mut exited_at = None;
        let mut status = None;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.0.try_wait() {
                exited_at = Some(Instant::now());
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(child);
        TimedReading {
            name,
            crc: FrameCrc::parse(&text.join().unwrap_or_default()),
            exited_at,
            status,
            stderr: errors.join().unwrap_or_default(),
        }
    })
}
