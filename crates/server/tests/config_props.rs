//! Stable twin of the `config` fuzz target: the same entry point
//! (`tidewater_server::fuzzing::config`) on random text, on the shipped example
//! file damaged line by line, and on random `TIDEWATER_…` variables. It
//! must never panic; what loads validates, and every error is one line.

use proptest::prelude::*;
use tidewater_server::fuzzing::config;

const EXAMPLE: &str = include_str!("../tidewater.toml");

/// Keys and values a config file has, to mix into damaged lines.
const PIECES: &[&str] = &[
    "[http]",
    "[rtmp]",
    "[srt]",
    "[hls]",
    "[dash]",
    "[rtsp]",
    "[record]",
    "[auth]",
    "[apps.live]",
    "[apps.live.streams.cam]",
    "[[auth.users]]",
    "listen = \"127.0.0.1:0\"",
    "gop_frames = 0",
    "ring_frames = 18446744073709551615",
    "max_publishers = -1",
    "push = [\"rtmp://\"]",
    "latency_ms = 1e308",
    "enabled = true",
    "= 1",
    "x.y.z = {}",
    "\"\u{0}\" = 1",
    "dir = \"\"",
];

#[test]
fn the_example_loads() {
    assert!(tidewater_server::Config::from_toml_str(EXAMPLE).is_ok());
    config(EXAMPLE.as_bytes());
    config(b"[http]\nlisten = 5\n");
    config(b"\0HTTP__LISTEN=nowhere\nAPPS__LIVE__MAX_PUBLISHERS=3\nLOG__LEVEL=debug\n");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_text(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        config(&data);
    }

    #[test]
    fn the_example_damaged(
        edits in proptest::collection::vec(
            (any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..6),
    ) {
        let mut lines: Vec<&str> = EXAMPLE.lines().collect();
        for (line, piece) in edits {
            let i = line.index(lines.len());
            lines[i] = *piece.get(PIECES);
        }
        config(lines.join("\n").as_bytes());
    }

    #[test]
    fn random_variables(
        vars in proptest::collection::vec(
            ("[A-Z_]{0,12}(__[A-Z_]{1,10}){0,3}", "[ -~]{0,24}"), 0..5),
    ) {
        let mut data = vec![0u8];
        for (name, value) in vars {
            data.extend_from_slice(format!("{name}={value}\n").as_bytes());
        }
        config(&data);
    }
}
