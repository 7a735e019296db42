//! The schedule spec as users write it (API, CLI, UI form) and its validation into a
//! [`Schedule`] the calendar computes with.
//!
//! The spec is flat, like StormTest's `createSchedule` and the CLI's flags: a `type` and
//! the fields that type takes. Validation names the field of every problem and the allowed
//! range, and turns strings into typed values once (zone, local times, window).

use std::fmt;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use chrono_tz::{Tz, TZ_VARIANTS};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::calendar::resolve_local;
use crate::clock::EpochMs;
use crate::diag::did_you_mean;

/// `repeat_rate` (daily): every 1 to 366 days.
pub const MAX_REPEAT_RATE: u32 = 366;
/// `repeat_count`: 1 to 100,000 firings.
pub const MAX_REPEAT_COUNT: u32 = 100_000;
/// `start` and `end`: within 10 years (3,653 days) of now, either way (as operator holds).
pub const MAX_DATE_OFFSET_MS: EpochMs = 3_653 * 86_400_000;

/// StormTest's schedule types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleType {
    /// Once, at `start`.
    OneOff,
    /// Every `repeat_rate` days at `start`'s time of day.
    Daily,
    /// On the named `days` at `start`'s time of day.
    Weekly,
    /// Monday to Friday at `start`'s time of day.
    Weekdays,
    /// Saturday and Sunday at `start`'s time of day.
    Weekends,
    /// Back to back: each run as soon as the previous one has ended.
    Loop,
}

impl ScheduleType {
    /// The name users write (`oneoff`, `daily`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleType::OneOff => "oneoff",
            ScheduleType::Daily => "daily",
            ScheduleType::Weekly => "weekly",
            ScheduleType::Weekdays => "weekdays",
            ScheduleType::Weekends => "weekends",
            ScheduleType::Loop => "loop",
        }
    }
}

impl fmt::Display for ScheduleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A day of the week, as `weekly`'s `days` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DayName {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl DayName {
    fn weekday(self) -> Weekday {
        match self {
            DayName::Mon => Weekday::Mon,
            DayName::Tue => Weekday::Tue,
            DayName::Wed => Weekday::Wed,
            DayName::Thu => Weekday::Thu,
            DayName::Fri => Weekday::Fri,
            DayName::Sat => Weekday::Sat,
            DayName::Sun => Weekday::Sun,
        }
    }
}

/// What happens to firings missed while the console was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// One run stands for all of them, as soon as the console is back (inside the window).
    #[default]
    Once,
    /// None of them runs; the schedule goes on with its next firing.
    Skip,
}

/// A daily time window, local time in the schedule's zone: no firing starts outside
/// `[from, to)`. `to` before `from` crosses midnight (`22:00`–`06:00`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    /// Opening time, `HH:MM`.
    #[schemars(regex(pattern = r"^[0-9]{2}:[0-9]{2}$"))]
    pub from: String,
    /// Closing time, `HH:MM`; not equal to `from`.
    #[schemars(regex(pattern = r"^[0-9]{2}:[0-9]{2}$"))]
    pub to: String,
}

/// When a schedule fires. The schedule (pack, groups, DUTs, ...) carries one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// StormTest's schedule type: `oneoff`, `daily`, `weekly`, `weekdays`, `weekends`, `loop`.
    #[serde(rename = "type")]
    pub kind: ScheduleType,
    /// The first firing (`loop`: the first run), local date and time in `time_zone`:
    /// `YYYY-MM-DDTHH:MM[:SS]`; its time of day is the daily firing time. Within 10 years
    /// of now.
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2})?$"))]
    pub start: String,
    /// No firing after this local date and time (one exactly at it still fires). Not with
    /// `repeat_count`. Neither: the schedule has no end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2})?$"))]
    pub end: Option<String>,
    /// How many runs the schedule fires, 1 to 100,000. Not with `end`, not for `oneoff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = "crate::schedule::MAX_REPEAT_COUNT"))]
    pub repeat_count: Option<u32>,
    /// `daily` only: every how many days, 1 to 366 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = "crate::schedule::MAX_REPEAT_RATE"))]
    pub repeat_rate: Option<u32>,
    /// `weekly` only, and required there: the days it fires on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<DayName>,
    /// IANA time zone of `start`, `end` and `window` (`Europe/Paris`, `UTC`).
    pub time_zone: String,
    /// The daily time window outside which no firing starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<TimeWindow>,
    /// Firings missed while the console was down: run `once` (default) or `skip` them.
    #[serde(default)]
    pub catch_up: CatchUp,
}

/// A problem with a schedule spec: the field (`start`, `window.to`, ...) and what is wrong,
/// with the allowed values. The API answers it as an invalid request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SpecError {
    pub key: String,
    pub message: String,
}

impl SpecError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        SpecError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The days a schedule fires on, as a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DaySet(u8);

impl DaySet {
    pub const WEEKDAYS: DaySet = DaySet(0b001_1111);
    pub const WEEKENDS: DaySet = DaySet(0b110_0000);

    fn of(days: &[DayName]) -> Self {
        DaySet(
            days.iter()
                .fold(0, |m, d| m | 1 << d.weekday().num_days_from_monday()),
        )
    }

    pub fn contains(self, day: Weekday) -> bool {
        self.0 & 1 << day.num_days_from_monday() != 0
    }
}

/// How a validated schedule recurs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recurrence {
    OneOff,
    Daily { repeat_rate: u32 },
    Weekly { days: DaySet },
    Weekdays,
    Weekends,
    Loop,
}

/// A validated schedule spec: the calendar's input (see `calendar` for its methods).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub(super) recurrence: Recurrence,
    pub(super) start: NaiveDateTime,
    pub(super) start_ms: EpochMs,
    pub(super) end_ms: Option<EpochMs>,
    pub(super) repeat_count: Option<u32>,
    pub(super) tz: Tz,
    pub(super) window: Option<(NaiveTime, NaiveTime)>,
    pub(super) catch_up: CatchUp,
}

impl Schedule {
    pub fn recurrence(&self) -> Recurrence {
        self.recurrence
    }
    pub fn time_zone(&self) -> Tz {
        self.tz
    }
    /// The first firing's local date and time.
    pub fn start_local(&self) -> NaiveDateTime {
        self.start
    }
    /// The first firing's instant.
    pub fn start_ms(&self) -> EpochMs {
        self.start_ms
    }
    /// The end's instant, if the spec gives one.
    pub fn end_ms(&self) -> Option<EpochMs> {
        self.end_ms
    }
    pub fn repeat_count(&self) -> Option<u32> {
        self.repeat_count
    }
    pub fn catch_up_policy(&self) -> CatchUp {
        self.catch_up
    }
    /// The window's opening and closing local times.
    pub fn window(&self) -> Option<(NaiveTime, NaiveTime)> {
        self.window
    }
}

impl ScheduleSpec {
    /// Validate a spec a user gives now: [`ScheduleSpec::compile`] plus `start` and `end`
    /// within [`MAX_DATE_OFFSET_MS`] of `now`.
    pub fn validate(&self, now: EpochMs) -> Result<Schedule, SpecError> {
        let schedule = self.compile()?;
        let near = |key: &str, ms: EpochMs, text: &str| {
            if ms.abs_diff(now) > MAX_DATE_OFFSET_MS.unsigned_abs() {
                Err(SpecError::new(
                    key,
                    format!(
                        "`{text}` is more than 10 years from now; dates within 10 years (3,653 days) either way"
                    ),
                ))
            } else {
                Ok(())
            }
        };
        near("start", schedule.start_ms, &self.start)?;
        if let (Some(end), Some(text)) = (schedule.end_ms, &self.end) {
            near("end", end, text)?;
        }
        Ok(schedule)
    }

    /// Every check that does not depend on the date today (a stored spec stays valid as
    /// time passes). The first problem found, naming its field.
    pub fn compile(&self) -> Result<Schedule, SpecError> {
        let tz = parse_zone(&self.time_zone)?;
        let start = parse_local("start", &self.start)?;
        let start_ms = resolve_local(tz, start).ok_or_else(|| {
            SpecError::new(
                "start",
                format!("`{}` is outside the zone's calendar", self.start),
            )
        })?;
        let kind = self.kind;

        if self.repeat_rate.is_some() && kind != ScheduleType::Daily {
            return Err(SpecError::new(
                "repeat_rate",
                format!("only a daily schedule takes `repeat_rate` (this one is {kind})"),
            ));
        }
        let repeat_rate = self.repeat_rate.unwrap_or(1);
        if !(1..=MAX_REPEAT_RATE).contains(&repeat_rate) {
            return Err(SpecError::new(
                "repeat_rate",
                format!("{repeat_rate} is out of range; every 1 to {MAX_REPEAT_RATE} days"),
            ));
        }
        if !self.days.is_empty() && kind != ScheduleType::Weekly {
            return Err(SpecError::new(
                "days",
                format!(
                    "only a weekly schedule takes `days` (this one is {kind}; weekdays and weekends have theirs)"
                ),
            ));
        }
        if self.days.is_empty() && kind == ScheduleType::Weekly {
            return Err(SpecError::new(
                "days",
                "a weekly schedule names its days: mon, tue, wed, thu, fri, sat, sun",
            ));
        }

        if self.end.is_some() && self.repeat_count.is_some() {
            return Err(SpecError::new(
                "repeat_count",
                "give `end` or `repeat_count`, not both",
            ));
        }
        if let Some(count) = self.repeat_count {
            if kind == ScheduleType::OneOff {
                return Err(SpecError::new(
                    "repeat_count",
                    "a oneoff schedule fires once; it takes no `repeat_count`",
                ));
            }
            if !(1..=MAX_REPEAT_COUNT).contains(&count) {
                return Err(SpecError::new(
                    "repeat_count",
                    format!("{count} is out of range; 1 to {MAX_REPEAT_COUNT} firings"),
                ));
            }
        }
        let end_ms = match &self.end {
            None => None,
            Some(text) => {
                let end = parse_local("end", text)?;
                let ms = resolve_local(tz, end).ok_or_else(|| {
                    SpecError::new("end", format!("`{text}` is outside the zone's calendar"))
                })?;
                if ms <= start_ms {
                    return Err(SpecError::new(
                        "end",
                        format!("`{text}` is not after start `{}`", self.start),
                    ));
                }
                Some(ms)
            }
        };

        let window = match &self.window {
            None => None,
            Some(w) => {
                let from = parse_clock("window.from", &w.from)?;
                let to = parse_clock("window.to", &w.to)?;
                if from == to {
                    return Err(SpecError::new(
                        "window",
                        format!(
                            "`from` and `to` are both {}; a window needs a length (to before from crosses midnight)",
                            w.from
                        ),
                    ));
                }
                Some((from, to))
            }
        };
        // A firing with a fixed time of day outside the window would never run.
        if let Some((from, to)) = window {
            if kind != ScheduleType::Loop && !in_window(from, to, start.time()) {
                return Err(SpecError::new(
                    "window",
                    format!(
                        "start's time of day {} is outside the window {}–{}, so the schedule would never fire",
                        start.time().format("%H:%M"),
                        from.format("%H:%M"),
                        to.format("%H:%M")
                    ),
                ));
            }
        }

        let recurrence = match kind {
            ScheduleType::OneOff => Recurrence::OneOff,
            ScheduleType::Daily => Recurrence::Daily { repeat_rate },
            ScheduleType::Weekly => Recurrence::Weekly {
                days: DaySet::of(&self.days),
            },
            ScheduleType::Weekdays => Recurrence::Weekdays,
            ScheduleType::Weekends => Recurrence::Weekends,
            ScheduleType::Loop => Recurrence::Loop,
        };
        Ok(Schedule {
            recurrence,
            start,
            start_ms,
            end_ms,
            repeat_count: self.repeat_count,
            tz,
            window,
            catch_up: self.catch_up,
        })
    }
}

/// Whether local time of day `t` is inside the window `[from, to)` (crossing midnight when
/// `to < from`).
pub(super) fn in_window(from: NaiveTime, to: NaiveTime, t: NaiveTime) -> bool {
    if from < to {
        from <= t && t < to
    } else {
        t >= from || t < to
    }
}

fn parse_zone(name: &str) -> Result<Tz, SpecError> {
    if let Ok(tz) = name.parse::<Tz>() {
        return Ok(tz);
    }
    let hint = zone_suggestion(name)
        .map(|z| format!(" (did you mean `{z}`?)"))
        .unwrap_or_default();
    Err(SpecError::new(
        "time_zone",
        format!(
            "unknown time zone `{name}`{hint}; give an IANA name such as `Europe/Paris` or `UTC`"
        ),
    ))
}

/// The zone whose name, or else whose city part, is closest to `name`, if close enough to
/// be a typo (`Europe/Pari`, `europe/paris`, `Paris`).
fn zone_suggestion(name: &str) -> Option<&'static str> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let zones = || TZ_VARIANTS.iter().map(|tz| tz.name());
    let city = |zone: &'static str| zone.rsplit('/').next().unwrap_or(zone);
    did_you_mean(name, zones()).or_else(|| {
        let found = did_you_mean(name, zones().map(city))?;
        zones().find(|zone| city(zone) == found)
    })
}

/// `YYYY-MM-DDTHH:MM[:SS]` (or a space for `T`), a local date and time.
fn parse_local(key: &str, text: &str) -> Result<NaiveDateTime, SpecError> {
    let bad = || {
        SpecError::new(
            key,
            format!(
                "`{text}` is not a local date and time; write YYYY-MM-DDTHH:MM (seconds optional) in time_zone, without an offset"
            ),
        )
    };
    let (date, time) = text.split_once(['T', ' ']).ok_or_else(bad)?;
    if !shaped(date, "dddd-dd-dd") {
        return Err(bad());
    }
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| bad())?;
    let time = if shaped(time, "dd:dd:dd") {
        NaiveTime::parse_from_str(time, "%H:%M:%S").map_err(|_| bad())?
    } else if shaped(time, "dd:dd") {
        NaiveTime::parse_from_str(time, "%H:%M").map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    Ok(date.and_time(time))
}

/// `HH:MM`, a local time of day.
fn parse_clock(key: &str, text: &str) -> Result<NaiveTime, SpecError> {
    let bad = || {
        SpecError::new(
            key,
            format!("`{text}` is not a time of day; write HH:MM, 00:00 to 23:59"),
        )
    };
    if !shaped(text, "dd:dd") {
        return Err(bad());
    }
    NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| bad())
}

/// Whether `text` has the shape of `pattern`, where `d` stands for an ASCII digit.
fn shaped(text: &str, pattern: &str) -> bool {
    text.len() == pattern.len()
        && text.bytes().zip(pattern.bytes()).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            _ => c == p,
        })
}
