//! Stored schedules (StormTest's scheduler): what to run (pack, groups, parameters, DUTs
//! or a DUT search resolved at each firing, coverage mode) and when
//! ([`crate::schedule::ScheduleSpec`], whose calendar is pure and lives in core).
//!
//! Schedules are stored (`schedules`), editable, can be paused; every firing is a line of
//! the schedule's history (`schedule_firings`: fired, caught up, skipped, failed) linked
//! to its run. The console that serves the data directory fires them (`scheduler`):
//! through the normal launch path into the run queue, at low priority, so they never
//! starve interactive launches and the dispatch threshold holds them back. It reads the
//! stored schedules every second, so a schedule another process adds
//! (`testbay schedule add`) is picked up at once.
//!
//! Firings missed while the console was down are caught up once or skipped per schedule
//! (`catch_up`), and the history says which ([`crate::schedule::CatchUpReport`]).

mod handlers;
pub(super) mod scheduler;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ts_rs::TS;

use crate::clock::EpochMs;
use crate::pack::CoverageMode;
use crate::schedule::ScheduleSpec;

/// What a schedule runs and when, as its owner writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct ScheduleDef {
    pub name: String,
    pub pack: String,
    /// Groups in order; empty runs every group.
    #[serde(default)]
    pub groups: Vec<String>,
    /// DUTs by name; with `dut_search`, none.
    #[serde(default)]
    pub duts: Vec<String>,
    /// StormTest DUT search terms (`ModelName==TP-*`), resolved at each firing: the run
    /// takes the first matching DUT nobody holds (else the first match).
    #[serde(default)]
    pub dut_search: Option<String>,
    #[serde(default)]
    #[ts(type = "Record<string, unknown>")]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub coverage_mode: Option<CoverageMode>,
    /// When it fires (`schemas/schedule.schema.json`).
    #[ts(type = "Record<string, unknown>")]
    pub when: ScheduleSpec,
}

/// A stored schedule as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ScheduleView {
    pub id: String,
    pub name: String,
    /// `oneoff`, `daily`, `weekly`, `weekdays`, `weekends` or `loop`.
    #[serde(rename = "type")]
    pub kind: String,
    pub paused: bool,
    pub def: ScheduleDef,
    /// The next firing, if any (none when paused or ended; a `loop` whose run is going
    /// fires when it ends).
    pub next_firing_ms: Option<EpochMs>,
    /// The next firings, for a calendar strip (at most 14).
    pub upcoming_ms: Vec<EpochMs>,
    /// Runs fired so far.
    pub fired: u32,
    /// The runs its firings made, oldest first (the newest 200).
    pub run_ids: Vec<String>,
}

/// One line of a schedule's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct FiringView {
    pub due_ms: Option<EpochMs>,
    pub at_ms: EpochMs,
    /// `fired`, `caught_up`, `skipped`, `missed`, `failed`.
    pub kind: String,
    pub run_id: Option<String>,
    pub note: Option<String>,
}

/// A schedule with its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ScheduleDetail {
    pub schedule: ScheduleView,
    /// The newest 200 lines, oldest first.
    pub history: Vec<FiringView>,
}
