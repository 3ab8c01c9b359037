//! A child process whose standard output and error lines arrive on a
//! channel, kept for failure messages: for helpers that report what they
//! did line by line (the aiortc viewer, the GStreamer WHIP publisher).

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::ChildGuard;

/// The running child and the lines it printed so far.
#[derive(Debug)]
pub struct ChildLines {
    _child: ChildGuard,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, in order.
    pub seen: Vec<String>,
}

impl ChildLines {
    /// Starts `cmd` with its output piped to the channel (one reader thread
    /// per pipe); panics if it cannot start.
    pub fn spawn(mut cmd: Command) -> ChildLines {
        let mut child = ChildGuard(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("{cmd:?}: {e}")),
        );
        let (tx, lines) = mpsc::channel();
        let out = child
            .0
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>);
        let err = child
            .0
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>);
        for pipe in [out, err].into_iter().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        ChildLines {
            _child: child,
            lines,
            seen: Vec::new(),
        }
    }

    /// What `matches` returns for the first line (seen before or arriving
    /// within `timeout`) it accepts.
    pub fn wait_for_match(
        &mut self,
        timeout: Duration,
        matches: impl Fn(&str) -> Option<String>,
    ) -> Option<String> {
        if let Some(found) = self.seen.iter().find_map(|l| matches(l)) {
            return Some(found);
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            let found = matches(&line);
            self.seen.push(line);
            if found.is_some() {
                return found;
            }
        }
        None
    }
}
