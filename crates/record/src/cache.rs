//! What playback reads of a stream's directory, kept between requests: the
//! parsed index and the list of segment files.
//!
//! A month of 60 s segments is 43 200 index lines (tens of MB of JSON) and
//! as many files: parsing or listing them at every request would make each
//! `list` or range take seconds. The index is append-only between rebuilds
//! (which replace it by a rename, so a new inode), so a cached index is
//! brought up to date by parsing only the lines appended since; the file
//! list is read again only when the directory's modification time changes
//! (a file created or deleted).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::index::{self, INDEX_FILE, Segment};

/// A stream's index as parsed, with what identifies the file it came from.
#[derive(Debug, Default)]
pub(crate) struct CachedIndex {
    /// Identity of the index file (inode on Unix) and bytes consumed (up to
    /// the last complete line).
    identity: u64,
    consumed: u64,
    /// The segments, one per file (the last line written for a file wins),
    /// in the order first listed.
    pub(crate) segments: Arc<Vec<Segment>>,
    /// Their file names.
    pub(crate) names: Arc<HashSet<String>>,
}

/// A stream directory's segment files, with the directory's modification
/// time when listed.
#[derive(Debug, Default)]
pub(crate) struct CachedDir {
    modified: Option<SystemTime>,
    pub(crate) files: Arc<Vec<(String, i64)>>,
}

#[cfg(unix)]
fn identity(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.ino()
}

#[cfg(not(unix))]
fn identity(meta: &fs::Metadata) -> u64 {
    // Without inodes: the creation time stands in (a rename-replace
    // makes a new file).
    meta.created()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Brings `cached` up to date with the index of `dir` (call under the
/// stream's index lock).
pub(crate) fn refresh_index(dir: &Path, cached: &mut CachedIndex) {
    let path = dir.join(INDEX_FILE);
    let Ok(mut file) = File::open(&path) else {
        *cached = CachedIndex::default();
        return;
    };
    let Ok(meta) = file.metadata() else {
        return;
    };
    let (id, len) = (identity(&meta), meta.len());
    if id == cached.identity && len == cached.consumed {
        return;
    }
    let appended = id == cached.identity && len > cached.consumed;
    if !appended {
        *cached = CachedIndex {
            identity: id,
            ..CachedIndex::default()
        };
    }
    if file.seek(SeekFrom::Start(cached.consumed)).is_err() {
        return;
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return;
    }
    // A line being appended right now is not complete: it is read next time.
    let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
        return;
    };
    let mut segments = std::mem::take(&mut cached.segments);
    let list = Arc::make_mut(&mut segments);
    let mut names = std::mem::take(&mut cached.names);
    let set = Arc::make_mut(&mut names);
    let mut at: HashMap<String, usize> = HashMap::new();
    let text = String::from_utf8_lossy(bytes.get(..end).unwrap_or_default());
    for line in text.lines() {
        let Ok(s) = serde_json::from_str::<Segment>(line) else {
            continue;
        };
        if set.contains(&s.file) {
            // Rare (a segment indexed again): the last line written wins.
            let i = match at.get(&s.file) {
                Some(i) => *i,
                None => {
                    let Some(i) = list.iter().position(|x| x.file == s.file) else {
                        continue;
                    };
                    at.insert(s.file.clone(), i);
                    i
                }
            };
            if let Some(slot) = list.get_mut(i) {
                *slot = s;
            }
        } else {
            set.insert(s.file.clone());
            list.push(s);
        }
    }
    cached.consumed += end as u64 + 1;
    cached.segments = segments;
    cached.names = names;
}

/// Sets `cached` to `segments`, just read from (or written as) the index of
/// `dir` (call under the stream's index lock).
pub(crate) fn prime(dir: &Path, cached: &mut CachedIndex, segments: Arc<Vec<Segment>>) {
    let Ok(meta) = fs::metadata(dir.join(INDEX_FILE)) else {
        *cached = CachedIndex::default();
        return;
    };
    *cached = CachedIndex {
        identity: identity(&meta),
        consumed: meta.len(),
        names: Arc::new(segments.iter().map(|s| s.file.clone()).collect()),
        segments,
    };
}

/// Brings `cached` up to date with the segment files of `dir`.
pub(crate) fn refresh_dir(dir: &Path, cached: &mut CachedDir) {
    let modified = fs::metadata(dir).and_then(|m| m.modified()).ok();
    if modified.is_some() && modified == cached.modified {
        return;
    }
    cached.files = Arc::new(index::segment_files(dir));
    cached.modified = modified;
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::index::{Fragment, write_index};

    fn segment(i: i64) -> Segment {
        Segment {
            file: crate::time::file_name(1_000_000 + i * 60_000),
            start_ms: 1_000_000 + i * 60_000,
            base_ms: i * 60_000,
            init_len: 100,
            codecs: vec!["h264".into()],
            fragments: vec![Fragment {
                offset: 100,
                len: 10,
                t_ms: 0,
                duration_ms: 60_000,
                key: true,
            }],
        }
    }

    #[test]
    fn appended_lines_are_read_and_a_rewrite_reloads() {
        let dir = std::env::temp_dir().join(format!(
            "tidewater-record-cache-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        fs::create_dir_all(&dir).expect("dir");
        write_index(&dir, &[segment(0), segment(1)]).expect("index");
        let mut c = CachedIndex::default();
        refresh_index(&dir, &mut c);
        assert_eq!(c.segments.len(), 2);
        // An appended line, and half of the next one (being written).
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(dir.join(INDEX_FILE))
            .expect("open");
        let line = serde_json::to_string(&segment(2)).expect("json");
        writeln!(f, "{line}").expect("append");
        f.write_all(&line.as_bytes()[..20]).expect("append");
        refresh_index(&dir, &mut c);
        assert_eq!(c.segments.len(), 3);
        assert!(c.names.contains(&segment(2).file));
        // A segment indexed again: the last line wins, in its place.
        let mut again = segment(1);
        again.fragments[0].duration_ms = 30_000;
        let rest = &serde_json::to_string(&segment(3)).expect("json");
        let tail = format!(
            "{}\n{}\n{rest}\n",
            &line[20..],
            serde_json::to_string(&again).expect("json")
        );
        f.write_all(tail.as_bytes()).expect("append");
        refresh_index(&dir, &mut c);
        assert_eq!(c.segments.len(), 4, "{:?}", c.segments);
        assert_eq!(c.segments[1], again);
        // Rewritten (a rebuild renames a new file in): read again whole.
        write_index(&dir, &[segment(5)]).expect("index");
        refresh_index(&dir, &mut c);
        assert_eq!(*c.segments, vec![segment(5)]);
        assert_eq!(c.names.len(), 1);
        let _ = fs::remove_dir_all(&dir);
    }
}
