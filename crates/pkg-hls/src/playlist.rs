//! A live media playlist's state (segments, parts, init segments, sequence
//! numbers) and its rendering. Sans-IO: the packager appends, the HTTP side
//! reads.
//!
//! Playlists are written by this small typed writer rather than through
//! `m3u8-rs`: `m3u8-rs` 6 has no `EXT-X-PART`, `EXT-X-PRELOAD-HINT`,
//! `EXT-X-SERVER-CONTROL` or `EXT-X-PART-INF`, does not write playlist-level
//! unknown tags, cannot place tags after the last segment (where the parts of
//! the segment in progress and the preload hint go), and formats `EXTINF`
//! through a process-wide precision setting. Every playlist written here is
//! parsed back with `m3u8-rs` in the tests and checked by `validate` (the
//! `validate` feature).

use std::collections::VecDeque;
use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};

/// Which kind of playlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// Classic HLS: MPEG-TS segments.
    Ts,
    /// LL-HLS: fMP4 segments made of parts.
    Fmp4,
}

impl Flavour {
    /// The route prefix (`hls` or `llhls`).
    pub fn prefix(self) -> &'static str {
        match self {
            Flavour::Ts => "hls",
            Flavour::Fmp4 => "llhls",
        }
    }

    fn segment_ext(self) -> &'static str {
        match self {
            Flavour::Ts => "ts",
            Flavour::Fmp4 => "m4s",
        }
    }
}

/// A complete partial segment.
#[derive(Clone, Debug)]
pub struct Part {
    /// Seconds.
    pub duration: f64,
    /// Starts with a keyframe.
    pub independent: bool,
    /// `moof` + `mdat`.
    pub data: Bytes,
}

/// A complete segment.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    /// Seconds.
    pub duration: f64,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// The init segment it uses (fMP4).
    pub map: Option<u32>,
    /// The whole segment.
    pub data: Bytes,
    /// Its parts (fMP4), slices of `data`.
    pub parts: Vec<Part>,
}

#[derive(Clone, Debug)]
struct Open {
    msn: u64,
    discontinuity: bool,
    map: Option<u32>,
    parts: Vec<Part>,
    /// TS: the segment's bytes so far.
    ts: BytesMut,
}

/// Where the playlist stands: the segment in progress and how many of its
/// parts are complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// The media sequence number of the segment in progress.
    pub msn: u64,
    /// Parts of it that are complete.
    pub parts: u64,
}

/// What a segment, part or init request finds.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// Here it is.
    Ready(Bytes),
    /// Not yet complete but next in line: wait for it.
    Pending,
    /// Gone from the window, never existed, or too far ahead.
    Missing,
}

/// One live media playlist.
#[derive(Clone, Debug)]
pub struct PlaylistState {
    flavour: Flavour,
    window: usize,
    /// A token in every URI, unique to this packager, so a restarted
    /// packager never serves different bytes under a URI a cache has seen.
    epoch: String,
    target_duration: Option<u32>,
    /// Declared `PART-TARGET`, seconds (fMP4).
    part_target: f64,
    segments: VecDeque<Segment>,
    open: Option<Open>,
    next_msn: u64,
    discontinuity_sequence: u64,
    /// Init segments by id, the newest last; ids of segments in the window.
    maps: Vec<(u32, Bytes)>,
    next_map: u32,
    pending_discontinuity: bool,
    ended: bool,
    /// Bumped on every change.
    version: u64,
    bytes: usize,
    /// Peak segment bit rate (bits per second) seen, for `BANDWIDTH`.
    peak_bitrate: u64,
}

impl PlaylistState {
    /// An empty playlist. `part_target` is the declared `PART-TARGET` in
    /// seconds (ignored for TS).
    pub fn new(
        flavour: Flavour,
        window: usize,
        part_target: f64,
        epoch: impl Into<String>,
    ) -> Self {
        PlaylistState {
            flavour,
            window: window.max(1),
            epoch: epoch.into(),
            target_duration: None,
            part_target,
            segments: VecDeque::new(),
            open: None,
            next_msn: 0,
            discontinuity_sequence: 0,
            maps: Vec::new(),
            next_map: 0,
            pending_discontinuity: false,
            ended: false,
            version: 0,
            bytes: 0,
            peak_bitrate: 0,
        }
    }

    /// The flavour.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// Bumped on every change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Set once the first segment is complete; fixed afterwards.
    pub fn target_duration(&self) -> Option<u32> {
        self.target_duration
    }

    /// Whether a playlist can be served (a segment is complete).
    pub fn ready(&self) -> bool {
        self.target_duration.is_some() && !self.segments.is_empty()
    }

    /// Whether the stream ended (`EXT-X-ENDLIST`).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Bytes of media held (segments and the one in progress).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The highest segment bit rate seen, bits per second.
    pub fn peak_bitrate(&self) -> u64 {
        self.peak_bitrate
    }

    /// The complete segments in the window.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    /// The segment in progress and its complete parts.
    pub fn position(&self) -> Position {
        match &self.open {
            Some(o) => Position {
                msn: o.msn,
                parts: o.parts.len() as u64,
            },
            None => Position {
                msn: self.next_msn,
                parts: 0,
            },
        }
    }

    /// The media sequence number of the first segment listed.
    pub fn media_sequence(&self) -> u64 {
        self.segments.front().map_or(self.next_msn, |s| s.msn)
    }

    /// Fixes the target duration (once; later calls are ignored).
    pub fn set_target_duration(&mut self, seconds: u32) {
        if self.target_duration.is_none() {
            self.target_duration = Some(seconds.max(1));
            self.version += 1;
        }
    }

    /// A new init segment for the segments that follow; returns its id.
    /// An identical one is reused.
    pub fn set_init(&mut self, init: Bytes) -> u32 {
        if let Some((id, bytes)) = self.maps.last()
            && *bytes == init
        {
            return *id;
        }
        let id = self.next_map;
        self.next_map += 1;
        self.bytes += init.len();
        self.maps.push((id, init));
        self.version += 1;
        id
    }

    /// The next segment follows a discontinuity (a republish, new tracks).
    pub fn mark_discontinuity(&mut self) {
        self.pending_discontinuity = true;
    }

    /// Opens the next segment.
    pub fn begin_segment(&mut self) {
        if self.open.is_some() {
            return;
        }
        let discontinuity = std::mem::take(&mut self.pending_discontinuity) && self.next_msn > 0;
        self.open = Some(Open {
            msn: self.next_msn,
            discontinuity,
            map: self.maps.last().map(|m| m.0),
            parts: Vec::new(),
            ts: BytesMut::new(),
        });
        self.next_msn += 1;
        self.version += 1;
    }

    /// Appends TS bytes to the segment in progress.
    pub fn append_ts(&mut self, bytes: &[u8]) {
        if let Some(open) = &mut self.open {
            open.ts.extend_from_slice(bytes);
            self.bytes += bytes.len();
        }
    }

    /// Adds a complete part to the segment in progress.
    pub fn add_part(&mut self, part: Part) {
        if let Some(open) = &mut self.open {
            self.bytes += part.data.len();
            open.parts.push(part);
            self.version += 1;
        }
    }

    /// Closes the segment in progress with its duration (seconds).
    pub fn end_segment(&mut self, duration: f64) {
        let Some(open) = self.open.take() else {
            return;
        };
        let (data, parts) = match self.flavour {
            Flavour::Ts => (open.ts.freeze(), Vec::new()),
            Flavour::Fmp4 => {
                let total: usize = open.parts.iter().map(|p| p.data.len()).sum();
                let mut data = BytesMut::with_capacity(total);
                for p in &open.parts {
                    data.extend_from_slice(&p.data);
                }
                let data = data.freeze();
                // The parts become slices of the segment: held once.
                let mut at = 0;
                let parts = open
                    .parts
                    .into_iter()
                    .map(|p| {
                        let len = p.data.len();
                        let part = Part {
                            data: data.slice(at..at + len),
                            ..p
                        };
                        at += len;
                        part
                    })
                    .collect();
                (data, parts)
            }
        };
        if data.is_empty() {
            // Nothing was packaged (a stream that stopped at once): drop it.
            self.next_msn = open.msn;
            self.version += 1;
            return;
        }
        if duration > 0.0 {
            let rate = (data.len() as f64 * 8.0 / duration) as u64;
            self.peak_bitrate = self.peak_bitrate.max(rate);
        }
        self.segments.push_back(Segment {
            msn: open.msn,
            duration,
            discontinuity: open.discontinuity,
            map: open.map,
            data,
            parts,
        });
        while self.segments.len() > self.window {
            if let Some(old) = self.segments.pop_front() {
                if old.discontinuity {
                    self.discontinuity_sequence += 1;
                }
                self.bytes -= old.data.len();
            }
        }
        self.drop_unused_maps();
        self.version += 1;
    }

    /// The stream ended: no more segments (`EXT-X-ENDLIST`).
    pub fn end(&mut self) {
        if let Some(open) = &self.open
            && open.parts.is_empty()
            && open.ts.is_empty()
        {
            self.next_msn = open.msn;
            self.open = None;
        }
        self.ended = true;
        self.version += 1;
    }

    fn drop_unused_maps(&mut self) {
        let oldest = self
            .segments
            .front()
            .and_then(|s| s.map)
            .or(self.open.as_ref().and_then(|o| o.map));
        if let Some(oldest) = oldest {
            let before = self.maps.len();
            let mut freed = 0;
            self.maps.retain(|(id, b)| {
                let keep = *id >= oldest;
                if !keep {
                    freed += b.len();
                }
                keep
            });
            if self.maps.len() != before {
                self.bytes -= freed;
            }
        }
    }

    /// The init segment `id`.
    pub fn init(&self, id: u32) -> Option<Bytes> {
        self.maps.iter().find(|m| m.0 == id).map(|m| m.1.clone())
    }

    /// Segment `msn`.
    pub fn segment(&self, msn: u64) -> Lookup {
        if let Some(s) = self.segments.iter().find(|s| s.msn == msn) {
            return Lookup::Ready(s.data.clone());
        }
        match &self.open {
            Some(o) if o.msn == msn && !self.ended => Lookup::Pending,
            _ => Lookup::Missing,
        }
    }

    /// Part `index` of segment `msn`: ready, the next one to come (a client
    /// following the preload hint), or missing.
    pub fn part(&self, msn: u64, index: u64) -> Lookup {
        let index_usize = usize::try_from(index).unwrap_or(usize::MAX);
        if let Some(s) = self.segments.iter().find(|s| s.msn == msn) {
            return match s.parts.get(index_usize) {
                Some(p) => Lookup::Ready(p.data.clone()),
                None => Lookup::Missing,
            };
        }
        if self.ended {
            return Lookup::Missing;
        }
        let pos = self.position();
        match &self.open {
            Some(o) if o.msn == msn => match o.parts.get(index_usize) {
                Some(p) => Lookup::Ready(p.data.clone()),
                None if index == pos.parts => Lookup::Pending,
                None => Lookup::Missing,
            },
            // The hint of the first part of a segment not opened yet.
            None if msn == self.next_msn && index == 0 => Lookup::Pending,
            _ => Lookup::Missing,
        }
    }

    /// Whether a blocking reload for `_HLS_msn=msn` (and `_HLS_part=part`)
    /// can be answered: the playlist holds that segment (complete), or that
    /// part of the segment in progress.
    pub fn satisfies(&self, msn: u64, part: Option<u64>) -> bool {
        if self.ended {
            return true;
        }
        let pos = self.position();
        match part {
            None => msn < pos.msn,
            Some(p) => msn < pos.msn || (msn == pos.msn && p < pos.parts),
        }
    }

    fn uri_segment(&self, msn: u64) -> String {
        format!("seg-{}-{msn}.{}", self.epoch, self.flavour.segment_ext())
    }

    fn uri_part(&self, msn: u64, index: usize) -> String {
        format!("part-{}-{msn}.{index}.m4s", self.epoch)
    }

    fn uri_init(&self, id: u32) -> String {
        format!("init-{}-{id}.mp4", self.epoch)
    }

    /// The URI token of this packager.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The media playlist, or `None` before the first segment is complete.
    pub fn render(&self) -> Option<String> {
        let td = self.target_duration?;
        if self.segments.is_empty() {
            return None;
        }
        let ll = self.flavour == Flavour::Fmp4;
        let mut out = String::with_capacity(256 + 64 * self.segments.len());
        out.push_str("#EXTM3U\n");
        let _ = writeln!(out, "#EXT-X-VERSION:{}", if ll { 6 } else { 3 });
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{td}");
        if ll {
            let _ = writeln!(
                out,
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}",
                self.part_target * 3.0
            );
            let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={:.3}", self.part_target);
        }
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence());
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            self.discontinuity_sequence
        );
        // Parts are listed for the segments within three target durations
        // of the live edge (and the one in progress).
        let mut parts_from = u64::MAX;
        let mut tail = 0.0;
        for s in self.segments.iter().rev() {
            tail += s.duration;
            if tail > f64::from(td) * 3.0 {
                break;
            }
            parts_from = s.msn;
        }
        let mut map = None;
        for s in &self.segments {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if ll && s.map != map {
                if let Some(id) = s.map {
                    let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", self.uri_init(id));
                }
                map = s.map;
            }
            if ll && s.msn >= parts_from {
                self.write_parts(&mut out, s.msn, &s.parts);
            }
            let _ = writeln!(out, "#EXTINF:{:.5},", s.duration);
            out.push_str(&self.uri_segment(s.msn));
            out.push('\n');
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
            return Some(out);
        }
        if ll {
            let next = match &self.open {
                Some(o) => {
                    if o.discontinuity && !o.parts.is_empty() {
                        out.push_str("#EXT-X-DISCONTINUITY\n");
                    }
                    if o.map != map
                        && !o.parts.is_empty()
                        && let Some(id) = o.map
                    {
                        let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", self.uri_init(id));
                    }
                    self.write_parts(&mut out, o.msn, &o.parts);
                    (o.msn, o.parts.len())
                }
                None => (self.next_msn, 0),
            };
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
                self.uri_part(next.0, next.1)
            );
        }
        Some(out)
    }

    fn write_parts(&self, out: &mut String, msn: u64, parts: &[Part]) {
        for (i, p) in parts.iter().enumerate() {
            let _ = write!(
                out,
                "#EXT-X-PART:DURATION={:.5},URI=\"{}\"",
                p.duration,
                self.uri_part(msn, i)
            );
            if p.independent {
                out.push_str(",INDEPENDENT=YES");
            }
            out.push('\n');
        }
    }
}

/// A token as it goes into a URI: characters outside RFC 3986's
/// unreserved set (`A-Z a-z 0-9 - . _ ~`) percent-encoded. Signed read
/// tokens are made of unreserved characters only, so they go in unchanged.
pub fn encode_token(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    for b in token.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `uri` with `token=` added to its query (`?token=…`, or `&token=…` when it
/// already has one). `token` must be encoded ([`encode_token`]).
pub fn uri_with_token(uri: &str, token: &str) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}token={token}")
}

/// A playlist (media or multivariant) with `token` added to every URI it
/// carries: the URI lines (segments, variants) and every `URI="…"`
/// attribute of a tag (`EXT-X-MAP`, `EXT-X-PART`, `EXT-X-PRELOAD-HINT`,
/// `EXT-X-RENDITION-REPORT`, `EXT-X-MEDIA`, …). `token` must be encoded
/// ([`encode_token`]); the playlist itself is rendered once and cached
/// without tokens, and this runs per request on the cached text.
pub fn with_token(playlist: &str, token: &str) -> String {
    let mut out = String::with_capacity(playlist.len() + 64 * (token.len() + 7));
    for line in playlist.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let eol = &line[body.len()..];
        if body.trim().is_empty() {
            out.push_str(line);
            continue;
        }
        if !body.starts_with('#') {
            out.push_str(&uri_with_token(body, token));
            out.push_str(eol);
            continue;
        }
        // Attributes: `URI="` right after the tag's colon or a comma.
        let mut rest = body;
        while let Some(at) = rest.find("URI=\"") {
            let attr_start = at
                .checked_sub(1)
                .and_then(|i| rest.as_bytes().get(i))
                .is_some_and(|b| matches!(b, b':' | b','));
            let value_from = at + 5;
            let Some(len) = rest[value_from..].find('"') else {
                break;
            };
            let value_to = value_from + len;
            out.push_str(&rest[..value_from]);
            if attr_start {
                out.push_str(&uri_with_token(&rest[value_from..value_to], token));
            } else {
                out.push_str(&rest[value_from..value_to]);
            }
            out.push('"');
            rest = &rest[value_to + 1..];
        }
        out.push_str(rest);
        out.push_str(eol);
    }
    out
}

/// A request path's file name, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileName {
    /// `index.m3u8`
    Media,
    /// `master.m3u8`
    Master,
    /// `seg-{epoch}-{msn}.ts|m4s`
    Segment {
        /// The packager's token.
        epoch: String,
        /// Media sequence number.
        msn: u64,
    },
    /// `part-{epoch}-{msn}.{index}.m4s`
    Part {
        /// The packager's token.
        epoch: String,
        /// Media sequence number.
        msn: u64,
        /// Part index.
        index: u64,
    },
    /// `init-{epoch}-{id}.mp4`
    Init {
        /// The packager's token.
        epoch: String,
        /// Init segment id.
        id: u32,
    },
}

impl FileName {
    /// Parses a file name of `flavour`'s routes; `None` for anything else.
    pub fn parse(flavour: Flavour, name: &str) -> Option<FileName> {
        match name {
            "index.m3u8" => return Some(FileName::Media),
            "master.m3u8" => return Some(FileName::Master),
            _ => {}
        }
        let (stem, ext) = name.rsplit_once('.')?;
        let (kind, rest) = stem.split_once('-')?;
        let (epoch, num) = rest.rsplit_once('-')?;
        if epoch.is_empty() || epoch.len() > 16 || !epoch.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return None;
        }
        let epoch = epoch.to_owned();
        match (kind, ext, flavour) {
            ("seg", "ts", Flavour::Ts) | ("seg", "m4s", Flavour::Fmp4) => Some(FileName::Segment {
                epoch,
                msn: number(num)?,
            }),
            ("init", "mp4", Flavour::Fmp4) => Some(FileName::Init {
                epoch,
                id: u32::try_from(number(num)?).ok()?,
            }),
            ("part", "m4s", Flavour::Fmp4) => {
                let (msn, index) = num.split_once('.')?;
                Some(FileName::Part {
                    epoch,
                    msn: number(msn)?,
                    index: number(index)?,
                })
            }
            _ => None,
        }
    }
}

/// A decimal number of at most 19 digits (no sign, no leading `+`).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
