//! The schedule calendar on virtual time: wall-clock firings across daylight-saving
//! changes, Feb 29, ends, repeat counts, windows, weekly days, catch-up and the spec's
//! validation messages. Expected instants are written in UTC.

use chrono::{LocalResult, TimeZone};
use chrono_tz::Tz;
use proptest::prelude::*;
use testbay_core::clock::EpochMs;
use testbay_core::schedule::{
    CatchUp, CatchUpAction, DayName, Schedule, ScheduleSpec, ScheduleType, TimeWindow,
};
use testbay_core::timefmt::parse_utc;

/// `2026-03-29 01:00` (UTC) in ms.
fn utc(s: &str) -> EpochMs {
    parse_utc(s).unwrap_or_else(|| panic!("bad test time {s}"))
}

fn spec(kind: ScheduleType, start: &str, zone: &str) -> ScheduleSpec {
    ScheduleSpec {
        kind,
        start: start.into(),
        end: None,
        repeat_count: None,
        repeat_rate: None,
        days: Vec::new(),
        time_zone: zone.into(),
        window: None,
        catch_up: CatchUp::Once,
    }
}

fn window(from: &str, to: &str) -> Option<TimeWindow> {
    Some(TimeWindow {
        from: from.into(),
        to: to.into(),
    })
}

/// Validated against a "now" at its start.
fn valid(s: &ScheduleSpec) -> Schedule {
    let start = s.compile().unwrap().start_ms();
    s.validate(start).unwrap()
}

/// The first `n` firings from the start, as the scheduler would ask for them.
fn firings(s: &Schedule, n: usize) -> Vec<EpochMs> {
    s.upcoming(s.start_ms() - 1, 0, n)
}

fn all(list: &[&str]) -> Vec<EpochMs> {
    list.iter().map(|s| utc(s)).collect()
}

/// The validation error's `key: message`.
fn error(s: &ScheduleSpec) -> String {
    s.validate(utc("2026-06-01 00:00"))
        .expect_err("the spec should be refused")
        .to_string()
}

#[test]
fn daily_0200_stays_0200_across_paris_spring_forward() {
    // Paris goes from 02:00 CET to 03:00 CEST on 2026-03-29 (01:00Z): 02:00 does not
    // exist that day and fires at the first instant after the gap.
    let s = valid(&spec(
        ScheduleType::Daily,
        "2026-03-27T02:00",
        "Europe/Paris",
    ));
    assert_eq!(
        firings(&s, 4),
        all(&[
            "2026-03-27 01:00",
            "2026-03-28 01:00",
            "2026-03-29 01:00",
            "2026-03-30 00:00",
        ])
    );
    // Any minute inside the gap fires at its end.
    let s = valid(&spec(
        ScheduleType::Daily,
        "2026-03-28T02:37",
        "Europe/Paris",
    ));
    assert_eq!(
        firings(&s, 3),
        all(&["2026-03-28 01:37", "2026-03-29 01:00", "2026-03-30 00:37"])
    );
}

#[test]
fn daily_fires_once_at_the_earlier_instant_across_paris_fall_back() {
    // 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00Z): 02:30 happens twice.
    let s = valid(&spec(
        ScheduleType::Daily,
        "2026-10-24T02:30",
        "Europe/Paris",
    ));
    assert_eq!(
        firings(&s, 3),
        all(&["2026-10-24 00:30", "2026-10-25 00:30", "2026-10-26 01:30"])
    );
    // Asked just after the first 02:30, the second 02:30 is not a firing.
    assert_eq!(
        s.next_firing(utc("2026-10-25 00:30"), 2),
        Some(utc("2026-10-26 01:30"))
    );
}

#[test]
fn daily_across_new_york_spring_forward_and_fall_back() {
    // 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00Z).
    let s = valid(&spec(
        ScheduleType::Daily,
        "2026-03-07T02:15",
        "America/New_York",
    ));
    assert_eq!(
        firings(&s, 3),
        all(&["2026-03-07 07:15", "2026-03-08 07:00", "2026-03-09 06:15"])
    );
    // 2026-11-01: 02:00 EDT goes back to 01:00 EST (06:00Z): 01:30 happens twice.
    let s = valid(&spec(
        ScheduleType::Daily,
        "2026-10-31T01:30",
        "America/New_York",
    ));
    assert_eq!(
        firings(&s, 3),
        all(&["2026-10-31 05:30", "2026-11-01 05:30", "2026-11-02 06:30"])
    );
}

#[test]
fn feb_29_in_daily_and_weekly_rules() {
    let s = valid(&spec(ScheduleType::Daily, "2028-02-28T10:00", "UTC"));
    assert_eq!(
        firings(&s, 3),
        all(&["2028-02-28 10:00", "2028-02-29 10:00", "2028-03-01 10:00"])
    );
    // Counted in days: 365 days after Feb 29 is Feb 28, 366 is Mar 1.
    let mut every_365 = spec(ScheduleType::Daily, "2028-02-29T10:00", "UTC");
    every_365.repeat_rate = Some(365);
    assert_eq!(
        firings(&valid(&every_365), 3),
        all(&["2028-02-29 10:00", "2029-02-28 10:00", "2030-02-28 10:00"])
    );
    let mut every_366 = every_365.clone();
    every_366.repeat_rate = Some(366);
    assert_eq!(
        firings(&valid(&every_366), 2),
        all(&["2028-02-29 10:00", "2029-03-01 10:00"])
    );
    // Every 2 days across the leap day.
    let mut every_2 = spec(ScheduleType::Daily, "2028-02-27T10:00", "UTC");
    every_2.repeat_rate = Some(2);
    assert_eq!(
        firings(&valid(&every_2), 3),
        all(&["2028-02-27 10:00", "2028-02-29 10:00", "2028-03-02 10:00"])
    );
    // 2028-02-29 is a Tuesday.
    let mut tuesdays = spec(ScheduleType::Weekly, "2028-02-22T10:00", "UTC");
    tuesdays.days = vec![DayName::Tue];
    assert_eq!(
        firings(&valid(&tuesdays), 3),
        all(&["2028-02-22 10:00", "2028-02-29 10:00", "2028-03-07 10:00"])
    );
}

#[test]
fn an_end_date_is_honoured_and_inclusive() {
    let mut s = spec(ScheduleType::Daily, "2026-06-01T09:00", "UTC");
    s.end = Some("2026-06-03T09:00".into());
    let sched = valid(&s);
    assert_eq!(
        firings(&sched, 10),
        all(&["2026-06-01 09:00", "2026-06-02 09:00", "2026-06-03 09:00"])
    );
    assert_eq!(sched.next_firing(utc("2026-06-03 09:00"), 3), None);
    s.end = Some("2026-06-03T08:59".into());
    assert_eq!(firings(&valid(&s), 10).len(), 2);
    // A loop until its end: back to back, none after the end.
    let mut lp = spec(ScheduleType::Loop, "2026-06-01T09:00", "UTC");
    lp.end = Some("2026-06-01T10:00".into());
    let lp = valid(&lp);
    assert_eq!(
        lp.next_firing(utc("2026-06-01 09:59"), 5),
        Some(utc("2026-06-01 09:59") + 1)
    );
    assert_eq!(lp.next_firing(utc("2026-06-01 10:00"), 6), None);
}

#[test]
fn a_repeat_count_is_honoured() {
    let mut s = spec(ScheduleType::Weekdays, "2026-06-04T07:00", "Europe/Paris");
    s.repeat_count = Some(3);
    let sched = valid(&s);
    // Thu, Fri, Mon.
    assert_eq!(
        firings(&sched, 10),
        all(&["2026-06-04 05:00", "2026-06-05 05:00", "2026-06-08 05:00"])
    );
    assert_eq!(sched.next_firing(utc("2026-06-08 05:00"), 3), None);
    // The count is of runs that fired: with two fired, one is left, whenever asked.
    assert_eq!(
        sched.next_firing(utc("2026-07-01 00:00"), 2),
        Some(utc("2026-07-01 05:00"))
    );
    // A loop of 3: each run due as the previous one ends, none after the third.
    let mut lp = spec(ScheduleType::Loop, "2026-06-01T09:00", "UTC");
    lp.repeat_count = Some(3);
    let lp = valid(&lp);
    let first = lp.next_firing(lp.start_ms() - 1, 0).unwrap();
    assert_eq!(first, utc("2026-06-01 09:00"));
    let second = lp.next_firing(first + 60_000, 1).unwrap();
    assert_eq!(second, first + 60_001);
    assert!(lp.next_firing(second + 60_000, 2).is_some());
    assert_eq!(lp.next_firing(second + 120_000, 3), None);
}

#[test]
fn a_window_crossing_midnight_holds_back_a_loop_until_it_opens() {
    let mut s = spec(ScheduleType::Loop, "2026-06-01T23:00", "Europe/Paris");
    s.window = window("22:00", "06:00");
    let lp = valid(&s);
    // Paris is UTC+2 in June: the window is 20:00Z to 04:00Z.
    assert_eq!(
        lp.next_firing(lp.start_ms() - 1, 0),
        Some(utc("2026-06-01 21:00"))
    );
    // A run ending after midnight, inside the window: the next one at once.
    assert_eq!(
        lp.next_firing(utc("2026-06-02 01:30"), 1),
        Some(utc("2026-06-02 01:30") + 1)
    );
    // One ending at 06:00 local: the window is closed until 22:00.
    assert_eq!(
        lp.next_firing(utc("2026-06-02 04:00") - 1, 2),
        Some(utc("2026-06-02 20:00"))
    );
    assert!(!lp.window_allows(utc("2026-06-02 12:00")));
    assert!(lp.window_allows(utc("2026-06-02 03:59")));
    // A loop whose start is outside its window waits for the opening.
    let mut early = spec(ScheduleType::Loop, "2026-06-01T12:00", "Europe/Paris");
    early.window = window("22:00", "06:00");
    let early = valid(&early);
    assert_eq!(
        early.next_firing(early.start_ms() - 1, 0),
        Some(utc("2026-06-01 20:00"))
    );
    // A window opening inside a spring-forward gap opens at the gap's end: 02:30 does not
    // exist on 2026-03-29 in Paris, 03:00 CEST (01:00Z) is the opening.
    let mut gap = spec(ScheduleType::Loop, "2026-03-28T12:00", "Europe/Paris");
    gap.window = window("02:30", "05:00");
    let gap = valid(&gap);
    assert_eq!(
        gap.next_firing(gap.start_ms() - 1, 0),
        Some(utc("2026-03-29 01:00"))
    );
    assert_eq!(
        gap.window_opening(utc("2026-03-29 03:00")),
        Some(utc("2026-03-30 00:30"))
    );
}

#[test]
fn a_window_crossing_midnight_keeps_daily_firings_and_skips_one_a_gap_pushes_out() {
    let mut s = spec(ScheduleType::Daily, "2026-06-01T23:30", "Europe/Paris");
    s.window = window("22:00", "06:00");
    assert_eq!(
        firings(&valid(&s), 2),
        all(&["2026-06-01 21:30", "2026-06-02 21:30"])
    );
    // 02:30 inside 02:00–03:00, but on 2026-03-29 it does not exist and the first instant
    // after the gap (03:00) is outside: that day's firing is skipped.
    let mut s = spec(ScheduleType::Daily, "2026-03-28T02:30", "Europe/Paris");
    s.window = window("02:00", "03:00");
    assert_eq!(
        firings(&valid(&s), 2),
        all(&["2026-03-28 01:30", "2026-03-30 00:30"])
    );
}

#[test]
fn weekly_on_monday_and_wednesday() {
    // 2026-06-01 is a Monday; the start, Thursday the 4th, is not a named day.
    let mut s = spec(ScheduleType::Weekly, "2026-06-04T08:00", "UTC");
    s.days = vec![DayName::Wed, DayName::Mon];
    assert_eq!(
        firings(&valid(&s), 4),
        all(&[
            "2026-06-08 08:00",
            "2026-06-10 08:00",
            "2026-06-15 08:00",
            "2026-06-17 08:00",
        ])
    );
}

#[test]
fn weekdays_skip_the_weekend_and_weekends_skip_the_week() {
    // Friday 2026-06-05.
    let s = valid(&spec(ScheduleType::Weekdays, "2026-06-05T07:00", "UTC"));
    assert_eq!(
        firings(&s, 2),
        all(&["2026-06-05 07:00", "2026-06-08 07:00"])
    );
    // Asked on Saturday: Monday.
    assert_eq!(
        s.next_firing(utc("2026-06-06 12:00"), 1),
        Some(utc("2026-06-08 07:00"))
    );
    let s = valid(&spec(ScheduleType::Weekends, "2026-06-05T07:00", "UTC"));
    assert_eq!(
        firings(&s, 3),
        all(&["2026-06-06 07:00", "2026-06-07 07:00", "2026-06-13 07:00"])
    );
}

#[test]
fn a_oneoff_fires_once() {
    let s = valid(&spec(
        ScheduleType::OneOff,
        "2026-06-05T07:00",
        "Asia/Tokyo",
    ));
    assert_eq!(firings(&s, 5), all(&["2026-06-04 22:00"]));
    assert_eq!(s.next_firing(s.start_ms() - 1, 1), None);
    assert_eq!(s.next_firing(s.start_ms(), 0), None);
}

#[test]
fn catch_up_once_runs_one_and_skip_runs_none() {
    let mut s = spec(ScheduleType::Daily, "2026-06-01T02:00", "UTC");
    let last = utc("2026-06-01 02:00");
    let now = utc("2026-06-04 10:00");
    let once = valid(&s).catch_up(last, now, 1);
    assert_eq!(once.missed, 3);
    assert_eq!(once.first_missed, Some(utc("2026-06-02 02:00")));
    assert_eq!(once.last_missed, Some(utc("2026-06-04 02:00")));
    assert_eq!(once.action, CatchUpAction::RunNow { at: now });
    assert_eq!(once.run_at(), Some(now));
    assert_eq!(once.to_string(), "missed 3 firings, ran once at start");
    // The regular firings go on after the catch-up.
    assert_eq!(valid(&s).next_firing(now, 2), Some(utc("2026-06-05 02:00")));

    s.catch_up = CatchUp::Skip;
    let skip = valid(&s).catch_up(last, now, 1);
    assert_eq!((skip.missed, skip.action), (3, CatchUpAction::Skipped));
    assert_eq!(skip.run_at(), None);
    assert_eq!(
        skip.to_string(),
        "missed 3 firings, skipped (catch_up: skip)"
    );

    // Nothing missed: a restart before the next firing.
    let none = valid(&s).catch_up(last, utc("2026-06-02 01:59"), 1);
    assert_eq!((none.missed, none.action), (0, CatchUpAction::Nothing));
    // A firing due exactly now is not missed: it fires as usual.
    let due = valid(&s).catch_up(last, utc("2026-06-02 02:00"), 1);
    assert_eq!(due.missed, 0);

    // With the window closed, the one run waits for the opening...
    s.catch_up = CatchUp::Once;
    s.window = window("01:00", "05:00");
    let later = valid(&s).catch_up(last, now, 1);
    assert_eq!(
        later.action,
        CatchUpAction::RunWhenWindowOpens {
            at: utc("2026-06-05 01:00")
        }
    );
    assert_eq!(
        later.to_string(),
        "missed 3 firings, runs once when the window opens at 2026-06-05 01:00:00Z"
    );
    // ... and when the next regular firing comes at that opening, it stands in for them.
    s.window = window("02:00", "05:00");
    let merged = valid(&s).catch_up(last, now, 1);
    assert_eq!(
        merged.action,
        CatchUpAction::NextFiringStandsIn {
            at: utc("2026-06-05 02:00")
        }
    );
    assert_eq!(merged.run_at(), None);
}

#[test]
fn catch_up_counts_no_more_than_the_repeat_count_leaves_and_a_loop_misses_nothing() {
    let mut s = spec(ScheduleType::Daily, "2026-06-01T02:00", "UTC");
    s.repeat_count = Some(3);
    let r = valid(&s).catch_up(utc("2026-06-01 02:00"), utc("2026-06-10 00:00"), 1);
    assert_eq!(r.missed, 2);
    assert_eq!(r.to_string(), "missed 2 firings, ran once at start");
    let r = valid(&s).catch_up(utc("2026-06-01 02:00"), utc("2026-06-02 03:00"), 1);
    assert_eq!(r.to_string(), "missed 1 firing, ran once at start");

    let lp = valid(&spec(ScheduleType::Loop, "2026-06-01T02:00", "UTC"));
    let r = lp.catch_up(utc("2026-06-01 03:00"), utc("2026-06-05 00:00"), 4);
    assert_eq!((r.missed, r.action), (0, CatchUpAction::Nothing));
    // It resumes at once.
    assert_eq!(
        lp.next_firing(utc("2026-06-05 00:00"), 4),
        Some(utc("2026-06-05 00:00") + 1)
    );
}

#[test]
fn the_catch_up_report_is_stored_as_json() {
    let s = valid(&spec(ScheduleType::Daily, "2026-06-01T02:00", "UTC"));
    let r = s.catch_up(utc("2026-06-01 02:00"), utc("2026-06-03 10:00"), 1);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["missed"], 2);
    assert_eq!(json["action"]["kind"], "run_now");
    let back: testbay_core::schedule::CatchUpReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);
}

#[test]
fn the_spec_reads_from_json_with_lowercase_names() {
    let s: ScheduleSpec = serde_json::from_value(serde_json::json!({
        "type": "weekly",
        "start": "2026-06-01T22:30",
        "days": ["mon", "wed"],
        "time_zone": "Europe/Paris",
        "window": {"from": "22:00", "to": "06:00"},
        "repeat_count": 10,
        "catch_up": "skip"
    }))
    .unwrap();
    assert_eq!(s.kind, ScheduleType::Weekly);
    assert_eq!(s.catch_up, CatchUp::Skip);
    valid(&s);
    let oneoff: ScheduleSpec = serde_json::from_value(serde_json::json!({
        "type": "oneoff", "start": "2026-06-01 22:30", "time_zone": "UTC"
    }))
    .unwrap();
    assert_eq!(
        (oneoff.kind, oneoff.catch_up),
        (ScheduleType::OneOff, CatchUp::Once)
    );
    let typo = serde_json::from_value::<ScheduleSpec>(serde_json::json!({
        "type": "daily", "start": "2026-06-01T22:30", "time_zone": "UTC", "repeat_cont": 3
    }));
    assert!(typo.unwrap_err().to_string().contains("repeat_cont"));
}

#[test]
fn validation_names_the_field_and_the_allowed_range() {
    let base = spec(ScheduleType::Daily, "2026-06-01T02:00", "Europe/Paris");
    let with = |f: &dyn Fn(&mut ScheduleSpec)| {
        let mut s = base.clone();
        f(&mut s);
        error(&s)
    };
    assert_eq!(
        with(&|s| s.time_zone = "Europe/Pari".into()),
        "time_zone: unknown time zone `Europe/Pari` (did you mean `Europe/Paris`?); give an IANA name such as `Europe/Paris` or `UTC`"
    );
    assert!(with(&|s| s.time_zone = "america/new_york".into())
        .contains("did you mean `America/New_York`?"));
    assert!(with(&|s| s.time_zone = "Mars/Olympus".into())
        .starts_with("time_zone: unknown time zone `Mars/Olympus`; give"));
    assert_eq!(
        with(&|s| {
            s.end = Some("2026-07-01T00:00".into());
            s.repeat_count = Some(3);
        }),
        "repeat_count: give `end` or `repeat_count`, not both"
    );
    assert_eq!(
        with(&|s| s.repeat_rate = Some(0)),
        "repeat_rate: 0 is out of range; every 1 to 366 days"
    );
    assert_eq!(
        with(&|s| s.repeat_rate = Some(367)),
        "repeat_rate: 367 is out of range; every 1 to 366 days"
    );
    assert_eq!(
        with(&|s| s.repeat_count = Some(0)),
        "repeat_count: 0 is out of range; 1 to 100000 firings"
    );
    assert_eq!(
        with(&|s| s.repeat_count = Some(100_001)),
        "repeat_count: 100001 is out of range; 1 to 100000 firings"
    );
    assert_eq!(
        with(&|s| {
            s.kind = ScheduleType::Weekly;
            s.repeat_rate = Some(2);
            s.days = vec![DayName::Mon];
        }),
        "repeat_rate: only a daily schedule takes `repeat_rate` (this one is weekly)"
    );
    assert!(with(&|s| s.days = vec![DayName::Mon])
        .starts_with("days: only a weekly schedule takes `days`"));
    assert_eq!(
        with(&|s| s.kind = ScheduleType::Weekly),
        "days: a weekly schedule names its days: mon, tue, wed, thu, fri, sat, sun"
    );
    assert_eq!(
        with(&|s| {
            s.kind = ScheduleType::OneOff;
            s.repeat_count = Some(2);
        }),
        "repeat_count: a oneoff schedule fires once; it takes no `repeat_count`"
    );
    assert_eq!(
        with(&|s| s.start = "2026-6-1 2:00".into()),
        "start: `2026-6-1 2:00` is not a local date and time; write YYYY-MM-DDTHH:MM (seconds optional) in time_zone, without an offset"
    );
    assert!(with(&|s| s.start = "2026-06-01T02:00Z".into())
        .starts_with("start: `2026-06-01T02:00Z` is not"));
    assert!(with(&|s| s.start = "2027-02-29T02:00".into())
        .starts_with("start: `2027-02-29T02:00` is not"));
    assert!(with(&|s| s.end = Some("2026-06-01T25:00".into()))
        .starts_with("end: `2026-06-01T25:00` is not"));
    assert_eq!(
        with(&|s| s.end = Some("2026-06-01T02:00".into())),
        "end: `2026-06-01T02:00` is not after start `2026-06-01T02:00`"
    );
    assert_eq!(
        with(&|s| s.start = "2036-06-02T02:00".into()),
        "start: `2036-06-02T02:00` is more than 10 years from now; dates within 10 years (3,653 days) either way"
    );
    assert!(with(&|s| s.start = "2016-05-01T02:00".into())
        .starts_with("start: `2016-05-01T02:00` is more than 10 years"));
    assert!(with(&|s| s.end = Some("2037-01-01T00:00".into()))
        .starts_with("end: `2037-01-01T00:00` is more than 10 years"));
    assert_eq!(
        with(&|s| s.window = window("22:00", "22:00")),
        "window: `from` and `to` are both 22:00; a window needs a length (to before from crosses midnight)"
    );
    assert_eq!(
        with(&|s| s.window = window("24:00", "06:00")),
        "window.from: `24:00` is not a time of day; write HH:MM, 00:00 to 23:59"
    );
    assert!(with(&|s| s.window = window("22:00", "6"))
        .starts_with("window.to: `6` is not a time of day"));
    assert_eq!(
        with(&|s| s.window = window("08:00", "18:00")),
        "window: start's time of day 02:00 is outside the window 08:00–18:00, so the schedule would never fire"
    );
    // A stored spec stays valid as time passes: `compile` does not look at today.
    let mut old = base.clone();
    old.start = "2010-01-01T02:00".into();
    assert!(old.compile().is_ok());
}

/// Zones with the shapes of rule that matter: DST at 02:00 (Paris, New York), at
/// midnight (Santiago), a 30-minute DST (Lord Howe), none (Kolkata, UTC), +12:45 (Chatham).
const ZONES: [&str; 7] = [
    "Europe/Paris",
    "America/New_York",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "UTC",
    "Pacific/Chatham",
];

const KINDS: [ScheduleType; 6] = [
    ScheduleType::OneOff,
    ScheduleType::Daily,
    ScheduleType::Weekly,
    ScheduleType::Weekdays,
    ScheduleType::Weekends,
    ScheduleType::Loop,
];

const DAYS: [DayName; 7] = [
    DayName::Mon,
    DayName::Tue,
    DayName::Wed,
    DayName::Thu,
    DayName::Fri,
    DayName::Sat,
    DayName::Sun,
];

fn hhmm(minute_of_day: u32) -> String {
    format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60)
}

#[derive(Debug, Clone)]
enum Ending {
    None,
    Count(u32),
    AfterDays(u32),
}

prop_compose! {
    fn arb_spec()(
        kind in proptest::sample::select(KINDS.to_vec()),
        zone in proptest::sample::select(ZONES.to_vec()),
        day in 0u32..1500,
        minute in 0u32..1440,
        rate in 1u32..=10,
        days in proptest::sample::subsequence(DAYS.to_vec(), 1..=7),
        win in proptest::option::of((0u32..1440, 1u32..1440)),
        ending in prop_oneof![
            Just(Ending::None),
            (1u32..40).prop_map(Ending::Count),
            (1u32..200).prop_map(Ending::AfterDays),
        ],
    ) -> ScheduleSpec {
        let date = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
            + chrono::TimeDelta::days(i64::from(day));
        // Dated types fire at a time of day inside their window (others are refused).
        let (minute, win) = match win {
            None => (minute, None),
            Some((from, len)) => {
                let inside = (from + minute % len) % 1440;
                let minute = if kind == ScheduleType::Loop { minute } else { inside };
                (minute, window(&hhmm(from), &hhmm((from + len) % 1440)))
            }
        };
        let mut s = spec(kind, &format!("{date}T{}", hhmm(minute)), zone);
        s.window = win;
        if kind == ScheduleType::Daily {
            s.repeat_rate = Some(rate);
        }
        if kind == ScheduleType::Weekly {
            s.days = days;
        }
        match ending {
            Ending::None => {}
            Ending::Count(n) if kind != ScheduleType::OneOff => s.repeat_count = Some(n),
            Ending::Count(_) => {}
            Ending::AfterDays(n) => {
                s.end = Some(format!(
                    "{}T{}",
                    date + chrono::TimeDelta::days(i64::from(n)),
                    hhmm(minute)
                ))
            }
        }
        s
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// next_firing is strictly increasing, inside the window, not after the end, within
    /// the repeat count, and (dated types) at the nominal local time unless a gap took it.
    #[test]
    fn next_firing_increases_inside_the_window_before_the_end(
        s in arb_spec(),
        lead in 0i64..3 * 86_400_000,
        runs in proptest::collection::vec(0i64..10 * 3_600_000, 40),
    ) {
        let sched = s.compile().unwrap();
        let tz: Tz = s.time_zone.parse().unwrap();
        let nominal = sched.start_local().time();
        let mut after = sched.start_ms() - 1 - lead;
        for (fired, run) in (0u32..).zip(runs) {
            let Some(t) = sched.next_firing(after, fired) else { break };
            prop_assert!(t > after, "{t} not after {after}");
            prop_assert!(sched.window_allows(t), "{t} outside the window");
            if let Some(end) = sched.end_ms() {
                prop_assert!(t <= end, "{t} after the end {end}");
            }
            if let Some(count) = sched.repeat_count() {
                prop_assert!(fired < count);
            }
            if s.kind != ScheduleType::Loop {
                let local = tz.timestamp_millis_opt(t).unwrap().naive_local();
                if local.time() != nominal {
                    // Only a nominal time that does not exist that day moves.
                    let day = local.date().pred_opt().unwrap();
                    let moved = [day, local.date()].iter().any(|d| {
                        matches!(tz.from_local_datetime(&d.and_time(nominal)), LocalResult::None)
                    });
                    prop_assert!(moved, "{t} is {local} local, not {nominal}");
                }
            }
            after = if s.kind == ScheduleType::Loop { t + run } else { t };
        }
    }
}
