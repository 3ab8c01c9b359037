//! A checker for live media playlists: RFC 8216 and the LL-HLS rules of
//! draft-pantos-hls-rfc8216bis, on one playlist ([`check`]) and across the
//! successive updates a client sees ([`Tracker`]).
//!
//! Used by the unit tests on every playlist update and by the end-to-end
//! tests on what the server serves. Every playlist is also parsed with
//! `m3u8-rs`, and the segments it finds must be the ones checked here.
//!
//! ```
//! use tidewater_pkg_hls::validate;
//!
//! let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
//!             #EXTINF:2.0,\nseg-a-0.ts\n";
//! let summary = validate::check(text).expect("valid");
//! assert_eq!(summary.segments.len(), 1);
//! assert!(validate::check("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:2.0,\nx.ts\n").is_err());
//! ```

use std::collections::HashMap;

/// A segment as listed.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedSegment {
    /// Media sequence number.
    pub msn: u64,
    /// `EXTINF` seconds.
    pub duration: f64,
    /// URI.
    pub uri: String,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// Its listed parts (LL-HLS).
    pub parts: Vec<ListedPart>,
}

/// A part as listed.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedPart {
    /// `DURATION` seconds.
    pub duration: f64,
    /// URI.
    pub uri: String,
    /// `INDEPENDENT=YES`.
    pub independent: bool,
}

/// What a valid playlist says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// `EXT-X-TARGETDURATION`.
    pub target_duration: u64,
    /// `EXT-X-MEDIA-SEQUENCE`.
    pub media_sequence: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`.
    pub discontinuity_sequence: u64,
    /// Complete segments.
    pub segments: Vec<ListedSegment>,
    /// Parts of the segment in progress (after the last complete one).
    pub trailing_parts: Vec<ListedPart>,
    /// `PART-TARGET`, if LL-HLS.
    pub part_target: Option<f64>,
    /// `PART-HOLD-BACK`, if given.
    pub part_hold_back: Option<f64>,
    /// The `EXT-X-PRELOAD-HINT` URI.
    pub preload_hint: Option<String>,
    /// `EXT-X-MAP` URIs in order.
    pub maps: Vec<String>,
    /// `EXT-X-ENDLIST`.
    pub ended: bool,
}

fn attrs(list: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = list;
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((v, n)) => (v.to_owned(), n.strip_prefix(',').unwrap_or(n)),
                None => (quoted.to_owned(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v.to_owned(), n),
                None => (after.to_owned(), ""),
            }
        };
        out.insert(key.trim().to_owned(), value);
        rest = next;
    }
    out
}

fn num(v: Option<&String>, what: &str) -> Result<f64, String> {
    v.ok_or_else(|| format!("{what} missing"))?
        .parse::<f64>()
        .map_err(|e| format!("{what}: {e}"))
}

/// Rounds half up, as RFC 8216 §4.3.3.1 compares `EXTINF` with the target.
fn rounded(d: f64) -> u64 {
    (d + 0.5).floor() as u64
}

/// Checks one media playlist; returns what it lists.
pub fn check(text: &str) -> Result<Summary, String> {
    let mut lines = text.lines();
    if lines.next() != Some("#EXTM3U") {
        return Err("first line is not #EXTM3U".into());
    }
    let mut s = Summary::default();
    let mut target: Option<u64> = None;
    let mut seen_media_sequence = false;
    let mut version: Option<u64> = None;
    let mut server_control: Option<HashMap<String, String>> = None;
    let mut pending_inf: Option<f64> = None;
    let mut pending_disc = false;
    let mut pending_parts: Vec<ListedPart> = Vec::new();
    let mut any_segment = false;
    for line in lines {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if s.ended {
            return Err(format!("`{line}` after EXT-X-ENDLIST"));
        }
        if s.preload_hint.is_some() {
            return Err(format!("`{line}` after EXT-X-PRELOAD-HINT"));
        }
        if let Some(v) = line.strip_prefix("#EXT-X-VERSION:") {
            version = Some(v.parse().map_err(|_| "bad EXT-X-VERSION")?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            if target.is_some() {
                return Err("two EXT-X-TARGETDURATION".into());
            }
            target = Some(v.parse().map_err(|_| "bad EXT-X-TARGETDURATION")?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            if any_segment {
                return Err("EXT-X-MEDIA-SEQUENCE after a segment".into());
            }
            seen_media_sequence = true;
            s.media_sequence = v.parse().map_err(|_| "bad EXT-X-MEDIA-SEQUENCE")?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            if any_segment {
                return Err("EXT-X-DISCONTINUITY-SEQUENCE after a segment".into());
            }
            s.discontinuity_sequence = v.parse().map_err(|_| "bad EXT-X-DISCONTINUITY-SEQUENCE")?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            server_control = Some(attrs(v));
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
            s.part_target = Some(num(attrs(v).get("PART-TARGET"), "PART-TARGET")?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
            let a = attrs(v);
            s.maps
                .push(a.get("URI").cloned().ok_or("EXT-X-MAP without URI")?);
        } else if line == "#EXT-X-DISCONTINUITY" {
            pending_disc = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            let a = attrs(v);
            pending_parts.push(ListedPart {
                duration: num(a.get("DURATION"), "EXT-X-PART DURATION")?,
                uri: a.get("URI").cloned().ok_or("EXT-X-PART without URI")?,
                independent: a.get("INDEPENDENT").is_some_and(|v| v == "YES"),
            });
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            let a = attrs(v);
            if a.get("TYPE").map(String::as_str) != Some("PART") {
                return Err("EXT-X-PRELOAD-HINT is not TYPE=PART".into());
            }
            s.preload_hint = Some(
                a.get("URI")
                    .cloned()
                    .ok_or("EXT-X-PRELOAD-HINT without URI")?,
            );
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let d = v.split(',').next().unwrap_or_default();
            pending_inf = Some(d.parse().map_err(|_| format!("bad EXTINF `{v}`"))?);
        } else if line == "#EXT-X-ENDLIST" {
            s.ended = true;
        } else if line.starts_with('#') {
            // Other tags and comments are allowed.
        } else {
            let duration = pending_inf
                .take()
                .ok_or_else(|| format!("URI `{line}` without EXTINF"))?;
            if s.maps.is_empty() && s.part_target.is_some() {
                return Err("fMP4 segment before any EXT-X-MAP".into());
            }
            let msn = s.media_sequence + s.segments.len() as u64;
            s.segments.push(ListedSegment {
                msn,
                duration,
                uri: line.to_owned(),
                discontinuity: std::mem::take(&mut pending_disc),
                parts: std::mem::take(&mut pending_parts),
            });
            any_segment = true;
        }
    }
    if pending_inf.is_some() {
        return Err("EXTINF without a URI".into());
    }
    s.trailing_parts = pending_parts;
    s.part_hold_back = server_control
        .as_ref()
        .and_then(|sc| sc.get("PART-HOLD-BACK"))
        .and_then(|v| v.parse().ok());
    let td = target.ok_or("no EXT-X-TARGETDURATION")?;
    s.target_duration = td;
    if !seen_media_sequence && !s.segments.is_empty() {
        // Allowed (defaults to 0) but we always write it.
        return Err("no EXT-X-MEDIA-SEQUENCE".into());
    }
    for seg in &s.segments {
        if rounded(seg.duration) > td {
            return Err(format!(
                "segment {} lasts {:.3} s, rounds above the target duration {td}",
                seg.msn, seg.duration
            ));
        }
    }
    if let Some(pt) = s.part_target {
        check_ll(&s, pt, td, version, server_control.as_ref())?;
    } else if !s.trailing_parts.is_empty() || s.segments.iter().any(|x| !x.parts.is_empty()) {
        return Err("EXT-X-PART without EXT-X-PART-INF".into());
    }
    check_with_m3u8_rs(text, &s)?;
    Ok(s)
}

fn check_ll(
    s: &Summary,
    pt: f64,
    td: u64,
    version: Option<u64>,
    server_control: Option<&HashMap<String, String>>,
) -> Result<(), String> {
    const EPS: f64 = 1e-6;
    if version.unwrap_or(1) < 6 {
        return Err("EXT-X-MAP needs EXT-X-VERSION 6 or more".into());
    }
    let sc = server_control.ok_or("LL-HLS playlist without EXT-X-SERVER-CONTROL")?;
    if sc.get("CAN-BLOCK-RELOAD").map(String::as_str) != Some("YES") {
        return Err("EXT-X-SERVER-CONTROL lacks CAN-BLOCK-RELOAD=YES".into());
    }
    let phb = num(sc.get("PART-HOLD-BACK"), "PART-HOLD-BACK")?;
    if phb + EPS < 2.0 * pt {
        return Err(format!("PART-HOLD-BACK {phb} under twice PART-TARGET {pt}"));
    }
    if !s.ended && s.preload_hint.is_none() {
        return Err("live LL-HLS playlist without EXT-X-PRELOAD-HINT".into());
    }
    let groups = s
        .segments
        .iter()
        .map(|x| (&x.parts, Some(x.duration)))
        .chain(std::iter::once((&s.trailing_parts, None)));
    for (parts, segment_duration) in groups {
        for (i, p) in parts.iter().enumerate() {
            if p.duration > pt + EPS {
                return Err(format!(
                    "part {} lasts {} s, over PART-TARGET {pt}",
                    p.uri, p.duration
                ));
            }
            let last_of_complete = segment_duration.is_some() && i + 1 == parts.len();
            if p.duration + EPS < 0.85 * pt && !p.independent && !last_of_complete {
                return Err(format!(
                    "part {} lasts {} s, under 85 % of PART-TARGET",
                    p.uri, p.duration
                ));
            }
        }
        if let Some(d) = segment_duration
            && !parts.is_empty()
        {
            let sum: f64 = parts.iter().map(|p| p.duration).sum();
            if (sum - d).abs() > 0.002 {
                return Err(format!("parts add up to {sum:.4} s, segment says {d:.4} s"));
            }
        }
    }
    // Parts are listed for the recent segments only, all of them.
    let mut from_end = 0.0;
    let mut seen_without = false;
    for seg in s.segments.iter().rev() {
        if seg.parts.is_empty() {
            seen_without = true;
        } else if seen_without {
            return Err(format!(
                "segment {} lists parts but a later one does not",
                seg.msn
            ));
        } else if from_end > 3.0 * td as f64 + EPS {
            return Err(format!(
                "segment {} lists parts more than 3 target durations from the end",
                seg.msn
            ));
        }
        from_end += seg.duration;
    }
    if let Some(hint) = &s.preload_hint {
        let listed = s
            .segments
            .iter()
            .flat_map(|x| x.parts.iter())
            .chain(s.trailing_parts.iter())
            .any(|p| &p.uri == hint);
        if listed {
            return Err(format!("the preload hint {hint} is an already listed part"));
        }
    }
    Ok(())
}

fn check_with_m3u8_rs(text: &str, s: &Summary) -> Result<(), String> {
    let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .map_err(|e| format!("m3u8-rs cannot parse it: {e:?}"))?;
    if parsed.target_duration != s.target_duration {
        return Err("m3u8-rs reads another target duration".into());
    }
    if parsed.media_sequence != s.media_sequence
        || parsed.discontinuity_sequence != s.discontinuity_sequence
    {
        return Err("m3u8-rs reads other sequence numbers".into());
    }
    let listed: Vec<(&str, bool)> = parsed
        .segments
        .iter()
        .filter(|x| !x.uri.is_empty())
        .map(|x| (x.uri.as_str(), x.discontinuity))
        .collect();
    let ours: Vec<(&str, bool)> = s
        .segments
        .iter()
        .map(|x| (x.uri.as_str(), x.discontinuity))
        .collect();
    if listed != ours {
        return Err(format!("m3u8-rs lists {listed:?}, we list {ours:?}"));
    }
    for (p, o) in parsed.segments.iter().zip(&s.segments) {
        if (f64::from(p.duration) - o.duration).abs() > 0.001 {
            return Err(format!("m3u8-rs reads {} s for {}", p.duration, o.uri));
        }
    }
    if parsed.end_list != s.ended {
        return Err("m3u8-rs disagrees on EXT-X-ENDLIST".into());
    }
    Ok(())
}

/// Checks successive updates of one live playlist: the target duration
/// never changes, the media sequence only counts up, segments are only
/// removed from the front and appended at the end, unchanged in between,
/// and the discontinuity sequence counts the discontinuities removed.
#[derive(Debug, Default)]
pub struct Tracker {
    last: Option<Summary>,
    updates: usize,
}

impl Tracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Updates checked so far.
    pub fn updates(&self) -> usize {
        self.updates
    }

    /// Checks `text` alone and against the previous update.
    pub fn update(&mut self, text: &str) -> Result<Summary, String> {
        let s = check(text)?;
        if let Some(prev) = &self.last {
            compare(prev, &s)?;
        }
        self.updates += 1;
        self.last = Some(s.clone());
        Ok(s)
    }
}

fn compare(prev: &Summary, s: &Summary) -> Result<(), String> {
    if prev.target_duration != s.target_duration {
        return Err(format!(
            "target duration changed from {} to {}",
            prev.target_duration, s.target_duration
        ));
    }
    if s.media_sequence < prev.media_sequence {
        return Err("media sequence went back".into());
    }
    let removed = usize::try_from(s.media_sequence - prev.media_sequence).unwrap_or(usize::MAX);
    let removed_disc = prev
        .segments
        .iter()
        .take(removed)
        .filter(|x| x.discontinuity)
        .count() as u64;
    if removed > prev.segments.len() {
        // Everything was replaced: allowed, but nothing to compare.
        return Ok(());
    }
    if s.discontinuity_sequence != prev.discontinuity_sequence + removed_disc {
        return Err(format!(
            "discontinuity sequence {} after removing {removed_disc} discontinuities from {}",
            s.discontinuity_sequence, prev.discontinuity_sequence
        ));
    }
    for (old, new) in prev.segments.iter().skip(removed).zip(&s.segments) {
        if old.msn != new.msn || old.uri != new.uri || old.discontinuity != new.discontinuity {
            return Err(format!("segment {} changed: {old:?} -> {new:?}", old.msn));
        }
        if (old.duration - new.duration).abs() > 1e-9 {
            return Err(format!("segment {} changed its duration", old.msn));
        }
    }
    if s.segments.len() + removed < prev.segments.len() {
        return Err("segments disappeared from the end".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.630\n\
#EXT-X-PART-INF:PART-TARGET=0.210\n#EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n\
#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.0,\ns4.m4s\n\
#EXT-X-PART:DURATION=0.2,URI=\"p5.0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.2,URI=\"p5.1.m4s\"\n\
#EXT-X-PART:DURATION=0.1,URI=\"p5.2.m4s\"\n#EXTINF:0.5,\ns5.m4s\n\
#EXT-X-PART:DURATION=0.2,URI=\"p6.0.m4s\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p6.1.m4s\"\n";

    #[test]
    fn a_good_ll_playlist() {
        let s = check(LL).expect("valid");
        assert_eq!((s.media_sequence, s.discontinuity_sequence), (4, 1));
        assert_eq!(s.segments[1].parts.len(), 3);
        assert_eq!(s.trailing_parts.len(), 1);
        assert_eq!(s.part_hold_back, Some(0.63));
        assert_eq!(s.preload_hint.as_deref(), Some("p6.1.m4s"));
    }

    #[test]
    fn each_rule_is_checked() {
        let cases = [
            ("#EXTINF:2.0,", "#EXTINF:2.6,"),
            ("DURATION=0.2,URI=\"p5.1", "DURATION=0.25,URI=\"p5.1"),
            ("DURATION=0.2,URI=\"p5.1", "DURATION=0.1,URI=\"p5.1"),
            ("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p6.1.m4s\"\n", ""),
            ("URI=\"p6.1.m4s\"", "URI=\"p6.0.m4s\""),
            ("CAN-BLOCK-RELOAD=YES,", ""),
            ("PART-HOLD-BACK=0.630", "PART-HOLD-BACK=0.3"),
            ("#EXT-X-VERSION:6", "#EXT-X-VERSION:3"),
            ("#EXT-X-MAP:URI=\"init.mp4\"\n", ""),
            ("#EXTINF:0.5,", "#EXTINF:0.6,"),
            ("#EXTM3U\n", ""),
            ("s5.m4s\n", ""),
        ];
        for (from, to) in cases {
            assert!(LL.contains(from), "{from}");
            let bad = LL.replacen(from, to, 1);
            assert!(
                check(&bad).is_err(),
                "accepted with {from:?} -> {to:?}:\n{bad}"
            );
        }
    }

    #[test]
    fn updates_are_checked_against_each_other() {
        let ts = |seq: u64, dseq: u64, td: u32, segs: &[(&str, f64, bool)]| {
            let mut t = format!(
                "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{td}\n#EXT-X-MEDIA-SEQUENCE:{seq}\n#EXT-X-DISCONTINUITY-SEQUENCE:{dseq}\n"
            );
            for (uri, d, disc) in segs {
                if *disc {
                    t.push_str("#EXT-X-DISCONTINUITY\n");
                }
                t.push_str(&format!("#EXTINF:{d},\n{uri}\n"));
            }
            t
        };
        let first = ts(
            0,
            0,
            2,
            &[("a", 2.0, false), ("b", 2.0, true), ("c", 2.0, false)],
        );
        let good = [
            ts(
                1,
                0,
                2,
                &[("b", 2.0, true), ("c", 2.0, false), ("d", 2.0, false)],
            ),
            ts(2, 1, 2, &[("c", 2.0, false), ("d", 2.0, false)]),
        ];
        let mut t = Tracker::new();
        t.update(&first).expect("first");
        for g in &good {
            t.update(g).expect("good update");
        }
        let bad = [
            ts(
                0,
                0,
                3,
                &[("a", 2.0, false), ("b", 2.0, true), ("c", 2.0, false)],
            ),
            ts(1, 1, 2, &[("b", 2.0, true), ("c", 2.0, false)]),
            ts(1, 0, 2, &[("b", 2.0, false), ("c", 2.0, false)]),
            ts(1, 0, 2, &[("b", 2.0, true), ("x", 2.0, false)]),
            ts(1, 0, 2, &[("b", 2.0, true), ("c", 1.5, false)]),
            ts(1, 0, 2, &[("b", 2.0, true)]),
        ];
        for b in &bad {
            let mut t = Tracker::new();
            t.update(&first).expect("first");
            assert!(t.update(b).is_err(), "accepted:\n{b}");
        }
    }
}
