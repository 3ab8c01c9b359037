//! What the in-process server logged, captured for the tests' assertions
//! on refusals (each test binary is one process with one subscriber).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Everything the server logged, for the assertions on refusals.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    /// All of it.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log")).into_owned()
    }

    /// The lines that contain every one of `words`.
    pub fn lines_with(&self, words: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .map(str::to_string)
            .collect()
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        // Also to the test's output, shown when it fails.
        print!("{}", String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide log and the panics seen (each test binary is one process).
pub fn capture() -> (Log, Arc<Mutex<Vec<String>>>) {
    static CAPTURE: OnceLock<(Log, Arc<Mutex<Vec<String>>>)> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let log = Log::default();
            let writer = log.clone();
            tracing_subscriber::fmt()
                .with_env_filter("info")
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .init();
            let panics = Arc::new(Mutex::new(Vec::new()));
            let seen = Arc::clone(&panics);
            let default = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                seen.lock().expect("panics").push(info.to_string());
                default(info);
            }));
            (log, panics)
        })
        .clone()
}
