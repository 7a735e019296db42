//! When recurring schedules fire: StormTest's schedule types as a spec (`spec`) and the
//! calendar that turns a spec into firing instants (`calendar`).
//!
//! Pure: no I/O, no clock. Every function takes the time it reasons about (`EpochMs`), so
//! tests drive it with virtual time. Wall-clock rules (02:00 daily stays 02:00 local across
//! daylight-saving changes) are computed in the spec's IANA zone with `chrono-tz`.
//!
//! This module knows nothing of the run queue, the store or the API: the scheduler that
//! fires runs, records firings and calls [`Schedule::catch_up`] after a restart is built on
//! top of it.
//!
//! Rules, in one place:
//! - **Firing instants.** `oneoff` fires once at `start`; `daily` at `start`'s time of day
//!   every `repeat_rate` calendar days from `start`'s date (no "same date every year" rule: a
//!   start on Feb 29 with `repeat_rate: 365` fires on Feb 28 the next year); `weekly`,
//!   `weekdays` (Mon–Fri) and `weekends` (Sat, Sun) at that time of day on their days, from
//!   `start`'s date on; `loop` back to back: its next firing is due as soon as the previous
//!   run has ended (the `after` passed to [`Schedule::next_firing`]).
//! - **Local times.** A time of day that does not exist on a date (spring-forward gap) fires
//!   at the first instant after the gap; one that exists twice (fall-back) fires once, at
//!   the earlier instant.
//! - **End.** `end` (a local date and time; a firing exactly at the end still fires) or
//!   `repeat_count` (runs that fired, counted by the caller as `fired_so_far`), never both.
//! - **Window** (StormTest's start/end time of a schedule day): no firing starts outside it.
//!   A firing with an instant of its own (`oneoff`, `daily`, `weekly`, `weekdays`,
//!   `weekends`) that falls outside — only possible when a gap shifts it — is skipped, as
//!   StormTest does not start a job after the day's end time; one without (`loop`'s next
//!   run, a catch-up run) waits for the window's next opening. A spec whose time of day is
//!   outside its own window is refused, since it would never fire.
//! - **Catch-up** after the console was down: the firings missed since the last one are
//!   counted, then run once (`catch_up: once`, at once or when the window next opens) or
//!   skipped (`skip`). A `loop` misses nothing: it resumes when the console is back. The
//!   catch-up run stands for firings due before the end, so it runs even when the end has
//!   passed since; the caller counts it as a run that fired.

mod calendar;
mod spec;

pub use calendar::{CatchUpAction, CatchUpReport};
pub use spec::{
    CatchUp, DayName, DaySet, Recurrence, Schedule, ScheduleSpec, ScheduleType, SpecError,
    TimeWindow, MAX_DATE_OFFSET_MS, MAX_REPEAT_COUNT, MAX_REPEAT_RATE,
};
