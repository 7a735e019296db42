//! UTC calendar times: formatting for messages, listings, reports and run ids, and parsing
//! what operators type.
//!
//! The calendar is `chrono`'s; the engine's time stays [`EpochMs`] (what clocks, the store
//! and the reservation book compare and add), converted to a `chrono` date only at these
//! edges. Everything here is UTC; the scheduler's time zones and calendars (weekdays,
//! daylight saving) will come from `chrono-tz` on the same types. Kept by hand:
//! [`parse_duration_ms`], the compact `1h30m` spelling operators type, which `chrono`
//! (durations without a parser) does not read.

use chrono::{DateTime, NaiveDate, NaiveTime, Timelike, Utc};

use crate::clock::EpochMs;

/// The UTC time of `ms`; `None` beyond the years `chrono` holds (±262,000), which no
/// clock reaches.
fn utc(ms: EpochMs) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// `ms` in `pattern` (a `chrono` format), or as a plain count of milliseconds when it is
/// beyond the calendar.
fn fmt_with(ms: EpochMs, pattern: &str) -> String {
    match utc(ms) {
        Some(t) => t.format(pattern).to_string(),
        None => format!("{ms} ms since the epoch"),
    }
}

/// `2026-11-21 19:55:00Z` for an epoch-ms time.
pub fn fmt_ms(ms: EpochMs) -> String {
    fmt_with(ms, "%Y-%m-%d %H:%M:%SZ")
}

/// `2026-11-21T19:55:00.123Z` (ISO 8601, milliseconds), for reports and exports.
pub fn format_utc(ms: EpochMs) -> String {
    fmt_with(ms, "%Y-%m-%dT%H:%M:%S%.3fZ")
}

/// `20261121-195500`: a time as it appears in run ids (sorts as it reads).
pub fn fmt_compact(ms: EpochMs) -> String {
    fmt_with(ms, "%Y%m%d-%H%M%S")
}

/// Parse `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS][Z]` or `YYYY-MM-DDTHH:MM[:SS][Z]` (UTC) to
/// epoch ms; a date alone is its midnight. A day the month lacks (`2026-02-30`) is no date.
pub fn parse_utc(s: &str) -> Option<EpochMs> {
    let s = s.trim();
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time)),
        None => (s, None),
    };
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let time = match time {
        None => NaiveTime::MIN,
        Some(t) => NaiveTime::parse_from_str(t, "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
            .ok()
            // `chrono` reads second 60 as a leap second; an operator means no such time.
            .filter(|t| t.nanosecond() < 1_000_000_000)?,
    };
    Some(date.and_time(time).and_utc().timestamp_millis())
}

/// Parse a duration such as `30m`, `2h`, `90s`, `1h30m`, `500ms` or a bare number of
/// seconds, to milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<i64>() {
        return secs.checked_mul(1000);
    }
    let mut total = 0i64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(factor)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_dates() {
        let t = parse_utc("2026-11-21T19:55:00Z").unwrap();
        assert_eq!(fmt_ms(t), "2026-11-21 19:55:00Z");
        assert_eq!(parse_utc("1970-01-01 00:00"), Some(0));
        assert_eq!(parse_utc("2026-13-01 00:00"), None);
        assert_eq!(parse_utc("1970-01-02"), Some(86_400_000));
        assert_eq!(format_utc(1_795_290_900_123), "2026-11-21T19:55:00.123Z");
        assert_eq!(parse_utc("2026-11-21 19:55:07"), Some(1_795_290_907_000));
        assert_eq!(parse_utc(" 2026-11-21T19:55Z "), Some(1_795_290_900_000));
        assert_eq!(parse_utc("2026-02-30"), None);
        assert_eq!(parse_utc("2026-11-21 19:55:60"), None);
        assert_eq!(parse_utc("2026-11-21 24:00"), None);
        assert_eq!(parse_utc("21/11/2026"), None);
    }

    #[test]
    fn formats_times_before_the_epoch_and_beyond_the_calendar() {
        assert_eq!(fmt_ms(-1), "1969-12-31 23:59:59Z");
        assert_eq!(format_utc(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(fmt_compact(1_795_290_900_999), "20261121-195500");
        assert_eq!(fmt_ms(i64::MAX), format!("{} ms since the epoch", i64::MAX));
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration_ms("30m"), Some(1_800_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("90"), Some(90_000));
        assert_eq!(parse_duration_ms("5x"), None);
    }
}
