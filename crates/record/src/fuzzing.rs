//! Entry points shared by the fuzz targets (`fuzz/`) and their stable
//! property-test twins. Not a stable API.
#![allow(
    clippy::indexing_slicing,
    clippy::expect_used,
    reason = "the fuzz entry point's own harness: a failed scratch write must stop the run, and the split is bounded by min(len)"
)]

use std::fs;
use std::path::PathBuf;

use crate::index;

/// The segment file's name in the fuzzed directory (a start time the
/// directory scan accepts).
pub const SEGMENT: &str = "2026-01-01T00-00-00-000Z.mp4";

/// The start-up repair of a stream directory after a crash, on `data`: the
/// first byte's low 7 bits say how many of the following bytes are written
/// as the index file (`index.jsonl`, when its high bit is set), the rest is
/// a segment file the index may or may not list. The directory is rebuilt
/// as on start ([`index::rebuild`]): a listed file is left as it is, an
/// unlisted one is scanned box by box and its partial tail cut off.
///
/// Never panics. A file that was not indexed before and is afterwards ends
/// exactly at its last complete fragment (scanning it again finds nothing
/// to cut and the same entry); one that is no fMP4 is left untouched; a
/// second rebuild changes nothing.
pub fn repair(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let root = scratch_dir();
    let dir = root.join("live").join("cam");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("a scratch directory");
    let (index_text, file) = match first & 0x80 {
        0 => (None, rest),
        _ => {
            let n = usize::from(first & 0x7f).min(rest.len());
            (Some(&rest[..n]), &rest[n..])
        }
    };
    if let Some(text) = index_text {
        fs::write(dir.join(index::INDEX_FILE), text).expect("index written");
    }
    let path = dir.join(SEGMENT);
    fs::write(&path, file).expect("segment written");
    let listed_before = index::read_index(&dir).iter().any(|s| s.file == SEGMENT);

    let Ok(segments) = index::rebuild(&dir, None) else {
        return;
    };
    let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let entry = segments.iter().find(|s| s.file == SEGMENT);
    match entry {
        Some(s) if !listed_before => {
            assert_eq!(
                len,
                s.bytes(),
                "the repaired file does not end at its last fragment"
            );
            assert!(len <= file.len() as u64);
            let mut at = s.init_len;
            for f in &s.fragments {
                assert_eq!(f.offset, at, "fragments not back to back");
                at += f.len;
            }
            let again = index::scan(&path, s.start_ms).expect("a repaired file scans");
            assert_eq!(again.trailing, 0, "a repaired file has a tail to cut");
            assert_eq!(&again.segment, s, "a repaired file scans differently");
        }
        Some(_) => assert_eq!(len, file.len() as u64, "a listed file was changed"),
        None => assert_eq!(len, file.len() as u64, "a file not indexed was changed"),
    }
    let twice = index::rebuild(&dir, None).expect("a second rebuild");
    assert_eq!(twice, segments, "a second rebuild changed the index");
    let _ = fs::remove_dir_all(&root);
}

/// A directory of this process and thread: fuzzers and test harnesses run
/// inputs on several threads.
fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "tidewater-record-fuzz-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ))
}
