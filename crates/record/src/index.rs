//! The on-disk layout of one stream's recordings: its segment files, what
//! each holds ([`Segment`]), the index file listing them, and the scan that
//! rebuilds (and repairs) a file's entry.
//!
//! `{dir}/{app}/{stream}/index.jsonl` has one JSON line per finished
//! segment. A segment file that it does not list (the one being written
//! when the process died, or an index deleted by hand) is scanned box by
//! box: a tail that is not a complete `moof` + `mdat` is cut off, and the
//! entry is appended.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use mp4_atom::{Codec as Mp4Codec, Decode, Moof, Moov};
use serde::{Deserialize, Serialize};

/// The index file's name in a stream's directory.
pub const INDEX_FILE: &str = "index.jsonl";

/// Largest `moov` or `moof` read whole (a fragment's `moof` is a few KiB).
const MAX_HEADER_BOX: u64 = 16 << 20;

/// One fragment of a segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragment {
    /// Offset of its `moof` in the file.
    pub offset: u64,
    /// Bytes of `moof` + `mdat`.
    pub len: u64,
    /// Start relative to the segment's start (ms).
    pub t_ms: i64,
    /// Duration (ms).
    pub duration_ms: i64,
    /// Starts on a keyframe.
    pub key: bool,
}

/// One segment file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Its file name in the stream's directory.
    pub file: String,
    /// Wall-clock start (Unix ms).
    pub start_ms: i64,
    /// Start on its publish's timeline (ms; 0 for a publish's first file).
    pub base_ms: i64,
    /// Bytes of the init segment (`ftyp` + `moov`) at offset 0.
    pub init_len: u64,
    /// Codecs, video first.
    pub codecs: Vec<String>,
    /// Its fragments, in order.
    pub fragments: Vec<Fragment>,
}

impl Segment {
    /// Duration in ms (the end of its last fragment).
    pub fn duration_ms(&self) -> i64 {
        self.fragments.last().map_or(0, |f| f.t_ms + f.duration_ms)
    }

    /// Wall-clock end (Unix ms).
    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.duration_ms()
    }

    /// Size of the file's complete part.
    pub fn bytes(&self) -> u64 {
        self.fragments
            .last()
            .map_or(self.init_len, |f| f.offset + f.len)
    }
}

/// Reads the index of the stream directory `dir` (empty when missing);
/// unreadable lines are skipped.
pub fn read_index(dir: &Path) -> Vec<Segment> {
    let Ok(file) = File::open(dir.join(INDEX_FILE)) else {
        return Vec::new();
    };
    let mut segments: Vec<Segment> = BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect();
    // One entry per file: the last one written wins.
    let mut seen = std::collections::HashSet::new();
    segments.reverse();
    segments.retain(|s: &Segment| seen.insert(s.file.clone()));
    segments.reverse();
    segments
}

/// Appends `segment` to the index of `dir`.
pub fn append_index(dir: &Path, segment: &Segment) -> io::Result<()> {
    let mut line = serde_json::to_string(segment).map_err(io::Error::other)?;
    line.push('\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(INDEX_FILE))?;
    f.write_all(line.as_bytes())
}

/// Replaces the index of `dir` with `segments` (written aside, then renamed).
pub fn write_index(dir: &Path, segments: &[Segment]) -> io::Result<()> {
    let tmp = dir.join(format!("{INDEX_FILE}.tmp"));
    let mut text = String::new();
    for s in segments {
        text.push_str(&serde_json::to_string(s).map_err(io::Error::other)?);
        text.push('\n');
    }
    fs::write(&tmp, text)?;
    fs::rename(&tmp, dir.join(INDEX_FILE))
}

/// The segment files of a stream directory (by name, which sorts by time).
pub fn segment_files(dir: &Path) -> Vec<(String, i64)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(String, i64)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|name| crate::time::parse_file_name(&name).map(|t| (name, t)))
        .collect();
    v.sort();
    v
}

/// What [`scan`] found.
#[derive(Debug)]
pub struct Scanned {
    /// The segment's entry (its complete fragments).
    pub segment: Segment,
    /// Bytes past the last complete fragment (a partial box, cut off when
    /// repairing).
    pub trailing: u64,
}

fn read_header(f: &mut File, at: u64, file_len: u64) -> io::Result<Option<(u64, [u8; 4], u64)>> {
    // Sizes come from the file: a 64-bit `largesize` near u64::MAX must not overflow.
    if at.saturating_add(8) > file_len {
        return Ok(None);
    }
    f.seek(SeekFrom::Start(at))?;
    let mut h = [0u8; 8];
    f.read_exact(&mut h)?;
    let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let kind = [h[4], h[5], h[6], h[7]];
    let (size, header) = match size32 {
        1 => {
            if at.saturating_add(16) > file_len {
                return Ok(None);
            }
            let mut l = [0u8; 8];
            f.read_exact(&mut l)?;
            (u64::from_be_bytes(l), 16)
        }
        // Extends to the end of the file: never complete while written.
        0 => return Ok(None),
        n => (u64::from(n), 8),
    };
    if size < header {
        return Ok(None);
    }
    Ok(Some((size, kind, header)))
}

fn read_box(f: &mut File, at: u64, size: u64) -> io::Result<Vec<u8>> {
    if size > MAX_HEADER_BOX {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "box too large"));
    }
    f.seek(SeekFrom::Start(at))?;
    let mut buf = vec![0u8; usize::try_from(size).map_err(io::Error::other)?];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads the segment file `path` box by box: its init segment, then each
/// complete `moof` + `mdat`; stops at the first box that is incomplete or
/// not a fragment. `start_ms` is the wall-clock start its name says.
pub fn scan(path: &Path, start_ms: i64) -> io::Result<Scanned> {
    let mut f = File::open(path)?;
    let file_len = f.metadata()?.len();
    let file = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    // ftyp, then moov.
    let (ftyp_size, kind, _) =
        read_header(&mut f, 0, file_len)?.ok_or_else(|| invalid("no ftyp"))?;
    if &kind != b"ftyp" {
        return Err(invalid("not an fMP4 file"));
    }
    let (moov_size, kind, _) =
        read_header(&mut f, ftyp_size, file_len)?.ok_or_else(|| invalid("no moov"))?;
    if &kind != b"moov" || ftyp_size.saturating_add(moov_size) > file_len {
        return Err(invalid("no complete moov"));
    }
    let moov_bytes = read_box(&mut f, ftyp_size, moov_size)?;
    let moov = Moov::decode(&mut &moov_bytes[..]).map_err(invalid)?;
    let init_len = ftyp_size + moov_size;
    let tracks: Vec<(u32, u32)> = moov
        .trak
        .iter()
        .map(|t| (t.tkhd.track_id, t.mdia.mdhd.timescale.max(1)))
        .collect();
    let codecs = moov
        .trak
        .iter()
        .map(|t| {
            t.mdia
                .minf
                .stbl
                .stsd
                .codecs
                .first()
                .map_or("unknown", codec_name)
                .to_string()
        })
        .collect();
    let (driving, timescale) = tracks.first().copied().ok_or_else(|| invalid("no track"))?;

    let mut fragments = Vec::new();
    let mut first: Option<u64> = None;
    let mut at = init_len;
    while let Some((size, kind, _)) = read_header(&mut f, at, file_len)? {
        if &kind != b"moof" || at.saturating_add(size) > file_len {
            break;
        }
        let Ok(moof_bytes) = read_box(&mut f, at, size) else {
            break;
        };
        let Ok(moof) = Moof::decode(&mut &moof_bytes[..]) else {
            break;
        };
        let Some((mdat_size, mkind, _)) = read_header(&mut f, at + size, file_len)? else {
            break;
        };
        if &mkind != b"mdat" || (at + size).saturating_add(mdat_size) > file_len {
            break;
        }
        let Some(traf) = moof.traf.iter().find(|t| t.tfhd.track_id == driving) else {
            break;
        };
        let tfdt = traf.tfdt.as_ref().map_or(0, |t| t.base_media_decode_time);
        let base = *first.get_or_insert(tfdt);
        let mut ticks: u64 = 0;
        let mut key = None;
        for trun in &traf.trun {
            for (i, s) in trun.samples.iter().enumerate() {
                ticks += u64::from(
                    s.duration
                        .or(traf.tfhd.default_sample_duration)
                        .unwrap_or(0),
                );
                if i == 0 && key.is_none() {
                    let flags = s.flags.or(traf.tfhd.default_sample_flags).unwrap_or(0);
                    key = Some(flags & 0x0001_0000 == 0);
                }
            }
        }
        let ms = |t: u64| {
            i64::try_from(t.saturating_mul(1000) / u64::from(timescale)).unwrap_or(i64::MAX)
        };
        fragments.push(Fragment {
            offset: at,
            len: size + mdat_size,
            t_ms: ms(tfdt.saturating_sub(base)),
            duration_ms: ms(ticks),
            key: key.unwrap_or(false),
        });
        at += size + mdat_size;
    }
    let base_ms = first.map_or(0, |t| {
        i64::try_from(t.saturating_mul(1000) / u64::from(timescale)).unwrap_or(0)
    });
    Ok(Scanned {
        segment: Segment {
            file,
            start_ms,
            base_ms,
            init_len,
            codecs,
            fragments,
        },
        trailing: file_len - at,
    })
}

/// Scans `path` and cuts off a partial tail (see [`scan`]); returns its
/// entry and the bytes cut.
pub fn repair(path: &Path, start_ms: i64) -> io::Result<Scanned> {
    let scanned = scan(path, start_ms)?;
    if scanned.trailing > 0 {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(scanned.segment.bytes())?;
        f.sync_all()?;
    }
    Ok(scanned)
}

fn codec_name(c: &Mp4Codec) -> &'static str {
    match c {
        Mp4Codec::Avc1(_) | Mp4Codec::Avc3(_) => "h264",
        Mp4Codec::Hev1(_) | Mp4Codec::Hvc1(_) => "h265",
        Mp4Codec::Av01(_) => "av1",
        Mp4Codec::Mp4a(_) => "aac",
        Mp4Codec::Opus(_) => "opus",
        _ => "other",
    }
}

/// Repairs and indexes a stream directory on start: every segment file
/// missing from the index is scanned (its partial tail cut off) and
/// appended; entries whose file is gone are dropped. Files that are not
/// fMP4 at all are left alone (logged). `writing` names a file being
/// written, which is neither scanned nor touched.
pub fn rebuild(dir: &Path, writing: Option<&str>) -> io::Result<Vec<Segment>> {
    let mut segments = read_index(dir);
    let before = segments.len();
    let files = segment_files(dir);
    // Sets, not scans: a month of 60 s segments is 43 200 of each.
    let on_disk: std::collections::HashSet<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
    segments.retain(|s| on_disk.contains(s.file.as_str()));
    let mut changed = segments.len() != before;
    let indexed: std::collections::HashSet<String> =
        segments.iter().map(|s| s.file.clone()).collect();
    for (name, start_ms) in &files {
        if indexed.contains(name) || writing == Some(name.as_str()) {
            continue;
        }
        let path = dir.join(name);
        match repair(&path, *start_ms) {
            Ok(scanned) => {
                if scanned.trailing > 0 {
                    tracing::warn!(
                        "record: {}: cut {} bytes of an unfinished fragment",
                        path.display(),
                        scanned.trailing
                    );
                }
                segments.push(scanned.segment);
                changed = true;
            }
            Err(e) => tracing::warn!("record: {}: not indexed: {e}", path.display()),
        }
    }
    segments.sort_by(|a, b| a.start_ms.cmp(&b.start_ms).then(a.file.cmp(&b.file)));
    if changed {
        write_index(dir, &segments)?;
    }
    Ok(segments)
}

/// The directory of a stream's recordings.
pub fn stream_dir(root: &Path, key: &tidewater_core::StreamKey) -> PathBuf {
    root.join(key.app()).join(key.stream())
}
