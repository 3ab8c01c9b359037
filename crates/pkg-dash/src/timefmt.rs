//! ISO-8601 date-times and `xs:duration` values, as MPDs and `/dash/time`
//! write them (UTC, milliseconds), without a date-time dependency.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2026-11-21T22:04:05.123Z`: UTC with milliseconds. Times before 1970
/// are written as the epoch (never produced by a running server).
pub fn iso8601(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// The Gregorian date of a day count since 1970-01-01 (the proleptic
/// calendar's era arithmetic: 400-year eras of 146 097 days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `PT2.5S`: an `xs:duration` in seconds with up to millisecond precision.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1_000) {
        format!("PT{}S", ms / 1_000)
    } else {
        let s = format!("{}.{:03}", ms / 1_000, ms % 1_000);
        format!("PT{}S", s.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_298_645_123);
        assert_eq!(iso8601(t), "2026-11-21T22:04:05.123Z");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso8601(t), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_secs(2)), "PT2S");
        assert_eq!(duration(Duration::from_millis(1_500)), "PT1.5S");
        assert_eq!(duration(Duration::from_millis(20)), "PT0.02S");
    }
}
