//! The MPD writer: a dynamic MPD of the packager's periods, static once
//! the stream ended.
//!
//! Default mode: `SegmentTemplate` with a `SegmentTimeline` of the complete
//! segments in the window (exact durations in the track timescale, runs of
//! equal durations folded with `@r`), named by `$Time$`. Not `$Number$`:
//! ffmpeg's DASH demuxer (5.1) confuses a segment's number with its index
//! in the current timeline when it reloads a sliding window, and jumps
//! back; names by time mean the same thing to every client.
//!
//! Low-latency mode: `SegmentTemplate@duration` (the target) with
//! `$Number$` on the target grid from the period start, `availabilityTimeOffset`
//! equal to the target (a segment is announced from its first chunk) and
//! `availabilityTimeComplete="false"`, and a `ServiceDescription` latency
//! target. See the crate docs for why.
//!
//! In both modes `timeShiftBufferDepth` is the configured window, or the
//! presentation's age while it is younger ([`time_shift_depth`]).
//!
//! Once the stream ended ([`Packager::finish`]) the MPD is static:
//! `type="static"` with `mediaPresentationDuration` (the end of the last
//! period), no update period, clock or latency target, and every period
//! as a `SegmentTimeline` of its (now complete) segments named by
//! `$Time$`, in either mode: a player that reloads it learns the stream is
//! over and plays to its end.
//!
//! With a read token ([`MpdOptions::token`]) the templates' `initialization`
//! and `media` and a `Location` (the MPD's own URL, relative) carry
//! `?token=…`: players resolve segment URLs against the MPD's URL without
//! its query, and reload the MPD from its `Location`. `UTCTiming` never
//! does (the time endpoint is not guarded).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tidewater_core::MediaKind;

use crate::packager::{Packager, Period, Track};
use crate::timefmt::{duration, iso8601};

/// What the MPD says beyond the packager's state.
#[derive(Clone, Debug)]
pub struct MpdOptions {
    /// Absolute URL of the time endpoint (`UTCTiming`).
    pub time_url: String,
    /// Latency target announced in low-latency mode.
    pub latency_target: Duration,
    /// The read token the player's URLs carry as `?token=…`, already
    /// URL-safe (percent-encoded where needed); `None`: plain URLs.
    pub token: Option<String>,
}

impl MpdOptions {
    /// `?token=…` (XML-escaped), or nothing.
    fn query(&self) -> String {
        self.token
            .as_deref()
            .map(|t| escape(&format!("?token={}", t.replace('$', "%24"))))
            .unwrap_or_default()
    }
}

/// The MPD at `now`, or `None` before the packager has anything to announce.
pub fn write(packager: &Packager, now: SystemTime, opts: &MpdOptions) -> Option<String> {
    let ast = packager.availability_start()?;
    if !packager.ready() {
        return None;
    }
    let config = packager.config();
    let target = config.target;
    let ll = numbered(packager);
    let window = target * u32::try_from(config.window.max(1)).unwrap_or(u32::MAX);
    let max_segment = packager
        .periods()
        .iter()
        .flat_map(|p| p.tracks.iter())
        .flat_map(|t| {
            t.segments
                .iter()
                .filter_map(|s| s.duration)
                .map(|d| Duration::from_micros(d * 1_000_000 / u64::from(t.timescale)))
        })
        .max()
        .unwrap_or(target)
        .max(target);
    let (update, delay) = if ll {
        (Duration::from_secs(2), opts.latency_target)
    } else {
        ((target / 2).max(Duration::from_millis(500)), target * 2)
    };
    let (ast, shift) = if ll {
        clock_origin(ast, delay)
    } else {
        (ast, Duration::ZERO)
    };
    let depth = time_shift_depth(window, ast, now);

    let mut x = String::with_capacity(2048);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    if packager.ended() {
        let end = packager
            .periods()
            .back()
            .map_or(Duration::ZERO, |p| p.start + p.duration.unwrap_or_default());
        let _ = writeln!(
            x,
            "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
             profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" type=\"static\" \
             mediaPresentationDuration=\"{}\" minBufferTime=\"{}\" maxSegmentDuration=\"{}\">",
            duration(end),
            duration(target),
            duration(max_segment),
        );
    } else {
        let _ = writeln!(
            x,
            "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
             profiles=\"urn:mpeg:dash:profile:isoff-live:2011{}\" type=\"dynamic\" \
             availabilityStartTime=\"{}\" publishTime=\"{}\" minimumUpdatePeriod=\"{}\" \
             timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"{}\" minBufferTime=\"{}\" \
             maxSegmentDuration=\"{}\">",
            if ll {
                ",http://www.dashif.org/guidelines/low-latency-live-v5"
            } else {
                ""
            },
            iso8601(ast),
            iso8601(now),
            duration(update),
            duration(depth),
            duration(delay),
            duration(if ll {
                Duration::from_millis(500)
            } else {
                target
            }),
            duration(max_segment),
        );
    }
    let query = opts.query();
    if !query.is_empty() {
        let _ = writeln!(x, "  <Location>manifest.mpd{query}</Location>");
    }
    if ll {
        let t = opts.latency_target.as_millis();
        let _ = write!(
            x,
            "  <ServiceDescription id=\"0\">\n    <Latency target=\"{t}\" min=\"{}\" max=\"{}\"/>\n    \
             <PlaybackRate min=\"0.96\" max=\"1.04\"/>\n  </ServiceDescription>\n",
            t / 2,
            t * 2
        );
    }
    // A static MPD's periods start from the presentation's origin.
    let shift = if packager.ended() {
        Duration::ZERO
    } else {
        shift
    };
    for period in packager.periods() {
        write_period(&mut x, packager, period, shift, &query);
    }
    if !packager.ended() {
        let _ = writeln!(
            x,
            "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=\"{}\"/>",
            escape(&opts.time_url)
        );
    }
    x.push_str("</MPD>\n");
    Some(x)
}

/// How far past `delay` behind the live edge a first MPD waits for its
/// earliest period to have started (see [`start_wait`]).
pub const START_MARGIN: Duration = Duration::from_millis(250);

/// How long a player's MPD waits, at `now`, before it can be answered
/// (zero: now).
///
/// In low-latency mode dash.js starts `delay` (the latency target) behind
/// the live edge, but never before the window's start; a player asking
/// within `delay` of a stream's start is put at the first period's very
/// start, where its seek is a no-op (the media element already reports the
/// start of the seekable range as its `currentTime`) and Chromium never
/// starts the pipeline: the player stalls there, buffering, until something
/// else seeks. So the MPD is held until the live edge is `delay` and a
/// margin past the start of the earliest period it lists. Timeline mode
/// has its own wait (two complete segments).
pub fn start_wait(packager: &Packager, now: SystemTime, delay: Duration) -> Duration {
    if !packager.config().low_latency {
        return Duration::ZERO;
    }
    let (Some(ast), Some(first)) = (
        packager.availability_start(),
        packager.periods().iter().find(|p| p.has_segments()),
    ) else {
        return Duration::ZERO;
    };
    let startable = ast + first.start + delay + START_MARGIN;
    startable.duration_since(now).unwrap_or(Duration::ZERO)
}

/// The `availabilityStartTime` written in low-latency mode, and how much
/// earlier it is than the packager's (every `Period@start` is that much
/// later, so every segment's availability is the same instant).
///
/// It is the packager's origin (millisecond precision, as written) rounded
/// down to a whole second, less the whole seconds of the suggested
/// presentation delay. ffmpeg's DASH demuxer (5.1) computes the `$Number$`
/// of the live segment as `startNumber + (now_s - ast_s - spd_s) / d`, with
/// each term truncated to whole seconds in unsigned arithmetic and with
/// `Period@start` ignored: from a fractional origin it computes a segment
/// behind the live one (and reads it again and again, repeating frames) or,
/// within the delay after the origin, wraps around to a number that never
/// exists. From this origin its number is never behind the live segment
/// (at most the next one, which the server holds until it starts).
fn clock_origin(ast: SystemTime, delay: Duration) -> (SystemTime, Duration) {
    let since = ast.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let ms = Duration::from_millis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    let origin = Duration::from_secs(since.as_secs().saturating_sub(delay.as_secs()));
    (UNIX_EPOCH + origin, ms.saturating_sub(origin))
}

/// `MPD@timeShiftBufferDepth` at `now`: the configured `window`, but never
/// more than the presentation's age, `now` less the `availabilityStartTime`
/// written (`ast`), in whole seconds rounded down; it grows to `window` as
/// the stream ages.
///
/// A client can never reach further back than the stream began, so the
/// smaller value promises nothing that is not served; the time before the
/// first `Period@start` (the low-latency origin's whole-second shift) holds
/// no period and so announces no segment. Why it matters: ffmpeg's DASH
/// demuxer (5.1) computes the oldest segment number of a `$Number$`
/// template as `startNumber + ((now_s - ast_s) - depth_s) / d` in unsigned
/// arithmetic with every term truncated to whole seconds, and reads the MPD
/// only once. With the configured depth deeper than the stream's age that
/// wraps round, every segment looks too old to it, and each request goes
/// back to its clock's live segment: when the publisher's frames reach the
/// server ahead of the clock anchor (an encoder whose first second arrived
/// late), that is the segment it just read, fetched again and again. Whole
/// seconds rounded down keep `now_s - ast_s - depth_s` at or above zero for
/// any later `now` on the client's clock. The age is counted from the
/// written origin, not from the first segment, because in low-latency mode
/// that origin is the whole seconds of the suggested presentation delay
/// earlier (see `clock_origin`): the depth is then never below them (unless
/// the window is), so ffmpeg's oldest number is never past its live one and
/// it never goes back; counted from the first segment, a reader joining in
/// a stream's first second would get a depth of 0 and go back again.
pub fn time_shift_depth(window: Duration, ast: SystemTime, now: SystemTime) -> Duration {
    let age = now.duration_since(ast).unwrap_or(Duration::ZERO);
    window.min(Duration::from_secs(age.as_secs()))
}

fn write_period(
    x: &mut String,
    packager: &Packager,
    period: &Period,
    shift: Duration,
    query: &str,
) {
    let ll = numbered(packager);
    // A period is listed once every track has something a client can fetch
    // (an ended one as long as any track has: the others are left out).
    let listed = if ll {
        period.has_segments()
    } else {
        period.has_complete_segments()
            || (period.duration.is_some()
                && period
                    .tracks
                    .iter()
                    .any(|t| t.segments.iter().any(|s| s.is_complete())))
    };
    if !listed {
        return;
    }
    let _ = write!(
        x,
        "  <Period id=\"{}\" start=\"{}\"",
        period.id,
        duration(period.start + shift)
    );
    if let Some(d) = period.duration {
        let _ = write!(x, " duration=\"{}\"", duration(d));
    }
    x.push_str(">\n");
    for (i, track) in period.tracks.iter().enumerate() {
        if ll || track.segments.iter().any(|s| s.is_complete()) {
            write_adaptation_set(x, packager, period, track, i + 1, query);
        }
    }
    x.push_str("  </Period>\n");
}

fn write_adaptation_set(
    x: &mut String,
    packager: &Packager,
    period: &Period,
    track: &Track,
    id: usize,
    query: &str,
) {
    let config = packager.config();
    let video = track.info.kind() == MediaKind::Video;
    let (kind, mime) = if video {
        ("video", "video/mp4")
    } else {
        ("audio", "audio/mp4")
    };
    let _ = writeln!(
        x,
        "    <AdaptationSet id=\"{id}\" contentType=\"{kind}\" mimeType=\"{mime}\" \
         segmentAlignment=\"true\" startWithSAP=\"1\">"
    );
    let _ = write!(
        x,
        "      <Representation id=\"{}\" bandwidth=\"{}\"",
        track.rep_id,
        track.bandwidth()
    );
    if let Some(c) = &track.codecs {
        let _ = write!(x, " codecs=\"{}\"", escape(c));
    }
    if let Some(v) = track.info.video.filter(|v| v.width > 0 && v.height > 0) {
        let _ = write!(x, " width=\"{}\" height=\"{}\"", v.width, v.height);
    }
    if let Some((n, d)) = track.frame_rate() {
        if d == 1 {
            let _ = write!(x, " frameRate=\"{n}\"");
        } else {
            let _ = write!(x, " frameRate=\"{n}/{d}\"");
        }
    }
    if let Some(a) = track.info.audio.filter(|a| a.sample_rate > 0) {
        let _ = write!(x, " audioSamplingRate=\"{}\"", a.sample_rate);
    }
    x.push_str(">\n");
    if let Some(a) = track.info.audio.filter(|a| a.channels > 0) {
        let _ = writeln!(
            x,
            "        <AudioChannelConfiguration \
             schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{}\"/>",
            a.channels
        );
    }
    if period
        .tracks
        .first()
        .is_some_and(|t| t.rep_id == track.rep_id)
    {
        // Its segments carry an MPD update event (see the emsg module).
        let _ = writeln!(
            x,
            "        <InbandEventStream schemeIdUri=\"{}\" value=\"{}\"/>",
            crate::emsg::SCHEME,
            crate::emsg::VALUE
        );
    }
    let _ = write!(
        x,
        "        <SegmentTemplate timescale=\"{}\" initialization=\"p{p}-$RepresentationID$-init.mp4{query}\" \
         media=\"p{p}-$RepresentationID$-{}.m4s{query}\"",
        track.timescale,
        if numbered(packager) {
            "$Number$"
        } else {
            "t$Time$"
        },
        p = period.id
    );
    if numbered(packager) {
        let d = config.target.as_micros() * u128::from(track.timescale) / 1_000_000;
        let _ = writeln!(
            x,
            " duration=\"{d}\" startNumber=\"1\" availabilityTimeOffset=\"{}\" \
             availabilityTimeComplete=\"false\"/>",
            seconds(config.target)
        );
    } else {
        let complete: Vec<_> = track.segments.iter().filter(|s| s.is_complete()).collect();
        x.push_str(">\n");
        x.push_str("          <SegmentTimeline>\n");
        let mut i = 0;
        let mut expected: Option<u64> = None;
        while let Some(&s) = complete.get(i) {
            let d = s.duration.unwrap_or(0);
            let mut r = 0;
            while complete
                .get(i + r + 1)
                .is_some_and(|n| n.duration == Some(d) && n.start == s.start + d * (r as u64 + 1))
            {
                r += 1;
            }
            x.push_str("            <S");
            if expected != Some(s.start) {
                let _ = write!(x, " t=\"{}\"", s.start);
            }
            let _ = write!(x, " d=\"{d}\"");
            if r > 0 {
                let _ = write!(x, " r=\"{r}\"");
            }
            x.push_str("/>\n");
            expected = Some(s.start + d * (r as u64 + 1));
            i += r + 1;
        }
        x.push_str("          </SegmentTimeline>\n        </SegmentTemplate>\n");
    }
    x.push_str("      </Representation>\n    </AdaptationSet>\n");
}

/// Whether segments are announced by `$Number$` on the target grid (a live
/// low-latency MPD) rather than listed in a `SegmentTimeline` (timeline
/// mode, and every static MPD).
fn numbered(packager: &Packager) -> bool {
    packager.config().low_latency && !packager.ended()
}

/// Seconds with up to millisecond precision, for attributes of type double.
fn seconds(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1_000) {
        format!("{}", ms / 1_000)
    } else {
        format!("{}.{:03}", ms / 1_000, ms % 1_000)
    }
}

/// XML attribute escaping.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_low_latency_origin_is_whole_seconds_before_and_periods_shift_by_as_much() {
        let ast = UNIX_EPOCH + Duration::from_micros(1_000_000_123_456_789);
        // 1.5 s of suggested delay: one whole second less, rounded down.
        let (origin, shift) = clock_origin(ast, Duration::from_millis(1_500));
        assert_eq!(origin, UNIX_EPOCH + Duration::from_secs(1_000_000_122));
        assert_eq!(shift, Duration::from_millis(1_456));
        // The written origin plus the shift is the origin as written before
        // (millisecond precision).
        assert_eq!(
            iso8601(origin + shift),
            iso8601(UNIX_EPOCH + Duration::from_millis(1_000_000_123_456))
        );
        let (origin, shift) = clock_origin(ast, Duration::from_millis(800));
        assert_eq!(origin, UNIX_EPOCH + Duration::from_secs(1_000_000_123));
        assert_eq!(shift, Duration::from_millis(456));
    }
}
