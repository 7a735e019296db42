//! The calendar: a validated [`Schedule`]'s firing instants, the window, and what a
//! restart missed. The rules are in the module doc of `schedule`.

use std::fmt;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Timelike,
};
use chrono_tz::{GapInfo, Tz};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::spec::{in_window, CatchUp, DaySet, Recurrence, Schedule};
use crate::clock::EpochMs;

/// Candidate dates looked at for one firing before giving up. A date is passed over only
/// when its firing is not after `after` (at most the two first) or a gap shifted it out of
/// the window (one day in a few months), so this bound is never reached by a valid spec.
const MAX_CANDIDATES: usize = 1_000;

/// Missed firings one catch-up lists at most (10 years of a daily schedule fit).
const MAX_MISSED: usize = 10_000;

/// The instant a local date and time names in `tz`: the earlier of two when the time
/// exists twice (fall-back), the first instant after the gap when it does not exist
/// (spring-forward). `None` only outside the range chrono represents.
pub(super) fn resolve_local(tz: Tz, local: NaiveDateTime) -> Option<EpochMs> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.timestamp_millis()),
        LocalResult::Ambiguous(a, b) => Some(a.timestamp_millis().min(b.timestamp_millis())),
        LocalResult::None => first_after_gap(tz, local),
    }
}

fn first_after_gap(tz: Tz, local: NaiveDateTime) -> Option<EpochMs> {
    if let Some(end) = GapInfo::new(&local, &tz).and_then(|gap| gap.end) {
        return Some(end.timestamp_millis());
    }
    // The zone's table has no end for this gap: the first local minute that exists.
    let mut t = local.with_second(0)?.with_nanosecond(0)?;
    for _ in 0..2 * 24 * 60 {
        t = t.checked_add_signed(TimeDelta::minutes(1))?;
        match tz.from_local_datetime(&t) {
            LocalResult::Single(x) => return Some(x.timestamp_millis()),
            LocalResult::Ambiguous(a, b) => {
                return Some(a.timestamp_millis().min(b.timestamp_millis()))
            }
            LocalResult::None => {}
        }
    }
    None
}

/// The local date and time of an instant in `tz`.
fn local_of(tz: Tz, ms: EpochMs) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_millis(ms).map(|utc| utc.with_timezone(&tz).naive_local())
}

impl Schedule {
    /// The first firing strictly after `after`, given that `fired_so_far` runs have fired
    /// (the repeat count's measure). For `loop`, `after` is when the previous run ended (or
    /// when the loop resumes): its next run is due right after it. `None`: the schedule has
    /// ended.
    pub fn next_firing(&self, after: EpochMs, fired_so_far: u32) -> Option<EpochMs> {
        if self.repeat_count.is_some_and(|count| fired_so_far >= count) {
            return None;
        }
        let after = after.max(self.start_ms.saturating_sub(1));
        let next = match self.recurrence {
            Recurrence::OneOff => {
                (fired_so_far == 0 && self.start_ms > after && self.window_allows(self.start_ms))
                    .then_some(self.start_ms)
            }
            Recurrence::Loop => self.window_opening(after.saturating_add(1)),
            _ => self.next_dated(after),
        }?;
        self.end_ms.is_none_or(|end| next <= end).then_some(next)
    }

    /// Up to `n` firings after `after`, for a calendar strip. A `loop` shows only its next
    /// run: the ones after depend on when runs end.
    pub fn upcoming(&self, after: EpochMs, fired_so_far: u32, n: usize) -> Vec<EpochMs> {
        let n = if self.recurrence == Recurrence::Loop {
            n.min(1)
        } else {
            n
        };
        let mut out = Vec::with_capacity(n.min(64));
        let (mut after, mut fired) = (after, fired_so_far);
        while out.len() < n {
            let Some(t) = self.next_firing(after, fired) else {
                break;
            };
            out.push(t);
            after = t;
            fired = fired.saturating_add(1);
        }
        out
    }

    /// The firings due after `since` (the last firing recorded, or when the schedule was
    /// saved or resumed) and strictly before `now` that did not run, at most as many as the
    /// repeat count leaves. Empty for a `loop`: it has no firing times to miss.
    pub fn missed_firings(&self, since: EpochMs, now: EpochMs, fired_so_far: u32) -> Vec<EpochMs> {
        if self.recurrence == Recurrence::Loop {
            return Vec::new();
        }
        let mut out = Vec::new();
        let (mut after, mut fired) = (since, fired_so_far);
        while out.len() < MAX_MISSED {
            match self.next_firing(after, fired) {
                Some(t) if t < now => {
                    out.push(t);
                    after = t;
                    fired = fired.saturating_add(1);
                }
                _ => break,
            }
        }
        out
    }

    /// What the console does, back at `now`, about the firings it missed since `since`
    /// (see [`Schedule::missed_firings`]), as the schedule's history records it. The one
    /// catch-up run (`catch_up: once`) starts at once, or at the window's next opening;
    /// when the next regular firing is due at that very instant it stands in for them.
    pub fn catch_up(&self, since: EpochMs, now: EpochMs, fired_so_far: u32) -> CatchUpReport {
        let missed = self.missed_firings(since, now, fired_so_far);
        let action = match (missed.is_empty(), self.catch_up) {
            (true, _) => CatchUpAction::Nothing,
            (false, CatchUp::Skip) => CatchUpAction::Skipped,
            (false, CatchUp::Once) => match self.window_opening(now) {
                None => CatchUpAction::Skipped,
                Some(at) if self.next_firing(now.saturating_sub(1), fired_so_far) == Some(at) => {
                    CatchUpAction::NextFiringStandsIn { at }
                }
                Some(at) if at == now => CatchUpAction::RunNow { at },
                Some(at) => CatchUpAction::RunWhenWindowOpens { at },
            },
        };
        CatchUpReport {
            missed: u32::try_from(missed.len()).unwrap_or(u32::MAX),
            first_missed: missed.first().copied(),
            last_missed: missed.last().copied(),
            action,
        }
    }

    /// Whether a firing may start at `t` (inside the window, or no window).
    pub fn window_allows(&self, t: EpochMs) -> bool {
        match self.window {
            None => true,
            Some((from, to)) => local_of(self.tz, t).is_some_and(|l| in_window(from, to, l.time())),
        }
    }

    /// The first instant at or after `t` inside the window: `t` itself when there is no
    /// window or it is open.
    pub fn window_opening(&self, t: EpochMs) -> Option<EpochMs> {
        let Some((from, to)) = self.window else {
            return Some(t);
        };
        let local = local_of(self.tz, t)?;
        if in_window(from, to, local.time()) {
            return Some(t);
        }
        let mut date = if local.time() < from {
            local.date()
        } else {
            local.date().succ_opt()?
        };
        // A gap at the opening time can push one day's opening out of the window.
        for _ in 0..4 {
            let open = resolve_local(self.tz, date.and_time(from))?;
            if open >= t && self.window_allows(open) {
                return Some(open);
            }
            date = date.succ_opt()?;
        }
        None
    }

    /// The next firing of a dated recurrence (daily, weekly, weekdays, weekends) after
    /// `after` (which is at least `start_ms - 1`), end not checked.
    fn next_dated(&self, after: EpochMs) -> Option<EpochMs> {
        let start_date = self.start.date();
        let time = self.start.time();
        // A gap may push a firing past midnight, so the day before `after`'s date counts.
        let from = local_of(self.tz, after)?.date().pred_opt()?.max(start_date);
        let mut date = self.first_date_from(from)?;
        for _ in 0..MAX_CANDIDATES {
            let t = resolve_local(self.tz, date.and_time(time))?;
            if self.end_ms.is_some_and(|end| t > end) {
                return None;
            }
            if t > after && self.window_allows(t) {
                return Some(t);
            }
            date = self.first_date_from(date.succ_opt()?)?;
        }
        None
    }

    /// The first firing date on or after `date` (which is not before the start date).
    fn first_date_from(&self, date: NaiveDate) -> Option<NaiveDate> {
        let days = match self.recurrence {
            Recurrence::Daily { repeat_rate } => {
                let rate = i64::from(repeat_rate.max(1));
                let offset = (date - self.start.date()).num_days();
                let steps = offset.div_euclid(rate) + i64::from(offset.rem_euclid(rate) != 0);
                return self
                    .start
                    .date()
                    .checked_add_signed(TimeDelta::try_days(steps.checked_mul(rate)?)?);
            }
            Recurrence::Weekly { days } => days,
            Recurrence::Weekdays => DaySet::WEEKDAYS,
            Recurrence::Weekends => DaySet::WEEKENDS,
            Recurrence::OneOff | Recurrence::Loop => return None,
        };
        let mut d = date;
        for _ in 0..7 {
            if days.contains(d.weekday()) {
                return Some(d);
            }
            d = d.succ_opt()?;
        }
        None
    }
}

/// What a restart did about missed firings: data the schedule's history stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CatchUpReport {
    /// How many firings were missed.
    pub missed: u32,
    pub first_missed: Option<EpochMs>,
    pub last_missed: Option<EpochMs>,
    pub action: CatchUpAction,
}

/// The catch-up decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CatchUpAction {
    /// Nothing was missed.
    Nothing,
    /// `catch_up: once`: one run now.
    RunNow { at: EpochMs },
    /// `catch_up: once`, but the window is closed: one run when it opens.
    RunWhenWindowOpens { at: EpochMs },
    /// `catch_up: once`, and the next regular firing is due when the run could start: that
    /// firing stands in for the missed ones.
    NextFiringStandsIn { at: EpochMs },
    /// `catch_up: skip`: none of them runs.
    Skipped,
}

impl CatchUpReport {
    /// When the one catch-up run starts, if there is one besides the regular firings.
    pub fn run_at(&self) -> Option<EpochMs> {
        match self.action {
            CatchUpAction::RunNow { at } | CatchUpAction::RunWhenWindowOpens { at } => Some(at),
            _ => None,
        }
    }
}

/// `missed 3 firings, ran once at start`: the line the history shows.
impl fmt::Display for CatchUpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.missed;
        let firings = if n == 1 { "firing" } else { "firings" };
        match self.action {
            CatchUpAction::Nothing => write!(f, "no firing missed"),
            CatchUpAction::RunNow { .. } => write!(f, "missed {n} {firings}, ran once at start"),
            CatchUpAction::RunWhenWindowOpens { at } => write!(
                f,
                "missed {n} {firings}, runs once when the window opens at {}",
                utc(at)
            ),
            CatchUpAction::NextFiringStandsIn { at } => write!(
                f,
                "missed {n} {firings}, the next firing at {} runs in their place",
                utc(at)
            ),
            CatchUpAction::Skipped => write!(f, "missed {n} {firings}, skipped (catch_up: skip)"),
        }
    }
}

/// `2026-03-29 01:00:00Z`.
fn utc(ms: EpochMs) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}
