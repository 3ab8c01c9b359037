//! Segment file names, as the MPD's templates make them and the routes
//! parse them back.

use crate::packager::{Segment, Track};

/// A segment file name: `p{period}-{rep}-init.mp4`, `p{period}-{rep}-{number}.m4s`
/// or `p{period}-{rep}-t{time}.m4s`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FileName<'a> {
    Init {
        period: u32,
        rep: &'a str,
    },
    Media {
        period: u32,
        rep: &'a str,
        at: SegmentId,
    },
}

/// How a media segment is named: by `$Number$` or by `$Time$`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SegmentId {
    Number(u64),
    Time(u64),
}

pub(crate) fn parse_file(name: &str) -> Option<FileName<'_>> {
    let rest = name.strip_prefix('p')?;
    let (period, rest) = rest.split_once('-')?;
    let period: u32 = period.parse().ok()?;
    let (rep, tail) = rest.split_once('-')?;
    if rep.is_empty() || rep.len() > 16 || !rep.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    if tail == "init.mp4" {
        return Some(FileName::Init { period, rep });
    }
    let id = tail.strip_suffix(".m4s")?;
    let at = match id.strip_prefix('t') {
        Some(t) => SegmentId::Time(digits(t)?),
        None => SegmentId::Number(digits(id)?),
    };
    Some(FileName::Media { period, rep, at })
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The segment a name designates, if still in the window.
pub(crate) fn find(track: &Track, at: SegmentId) -> Option<&Segment> {
    match at {
        SegmentId::Number(n) => track.segment(n),
        SegmentId::Time(t) => track.segments.iter().find(|s| s.start == t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(
            parse_file("p1-v1-init.mp4"),
            Some(FileName::Init {
                period: 1,
                rep: "v1"
            })
        );
        assert_eq!(
            parse_file("p12-a2-345.m4s"),
            Some(FileName::Media {
                period: 12,
                rep: "a2",
                at: SegmentId::Number(345)
            })
        );
        assert_eq!(
            parse_file("p1-v1-t180000.m4s"),
            Some(FileName::Media {
                period: 1,
                rep: "v1",
                at: SegmentId::Time(180_000)
            })
        );
        for bad in [
            "",
            "p",
            "p1",
            "p1-",
            "p1-v1",
            "px-v1-init.mp4",
            "p1--init.mp4",
            "p1-v1-1.mp4",
            "p1-v1--1.m4s",
            "p1-v/1-1.m4s",
            "q1-v1-1.m4s",
            "p99999999999-v1-1.m4s",
            "p1-v1-99999999999999999999999.m4s",
            "p1-v1-t.m4s",
            "p1-v1-+5.m4s",
            "p1-v1-t+5.m4s",
        ] {
            assert_eq!(parse_file(bad), None, "{bad}");
        }
    }
}
