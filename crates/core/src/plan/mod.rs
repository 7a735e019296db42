//! Turn a launch into per-lane queues and decide, step by step, what may start next.
//!
//! The plan is a pure state machine: no processes, no I/O, time passed in. `run` drives it:
//! ask [`Plan::next_starts`] what may start now, tell it when an item finished
//! ([`Plan::finish`]) or its resources are busy ([`Plan::resource_busy`]), and drain the
//! results the plan itself assigned (Skipped, Blocked, ...) with [`Plan::drain_settled`].
//!
//! Lifecycle per lane (one lane per DUT), after kissats: global setup, then for each chosen
//! group its setup, tests and teardown, then global teardown. The parts: `build` (a launch
//! into stages and items), `targets` (`valid_duts` / `valid_ats`), `lanes` (each lane
//! walking its stages, what starts next, why an item waits), `prereq` (`prereq_tasks`),
//! `delay` (the delay queue for busy resources), `finish` (an item's end,
//! `stop_suite_on_fail`, the operator's stop). This file holds the types and the plan's
//! state.

use std::collections::{HashMap, HashSet};

use crate::clock::EpochMs;
pub use crate::model::{DutTarget, TaskKind};
use crate::pack::{GlobalParams, LoadedPack, TaskDef};

mod build;
mod delay;
mod finish;
mod lanes;
mod prereq;
mod targets;

use delay::DelayMem;
pub use targets::pattern_matches;

/// Lane name used when a run targets no DUT.
pub const LOCAL_LANE: &str = "local";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("group `{group}` is not in pack {pack}; groups: {known}")]
    UnknownGroup {
        group: String,
        pack: String,
        known: String,
    },
    #[error("task `{task}` named in {place} has no tasks/{task}.yaml")]
    UnknownTask { task: String, place: String },
    #[error("DUT `{0}` is named twice")]
    DuplicateDut(String),
    #[error("missing run parameters: {}", .0.iter().map(|(t, k)| format!("task {t} needs {}", k.join(", "))).collect::<Vec<_>>().join("; "))]
    MissingParamKeys(Vec<(String, Vec<String>)>),
}

/// Index of an item in [`Plan::items`].
pub type ItemId = usize;

/// One planned task occurrence.
#[derive(Debug, Clone)]
pub struct PlanItem {
    pub id: ItemId,
    pub task: String,
    pub kind: TaskKind,
    /// `None` for global setup/teardown.
    pub group: Option<String>,
    /// Lane fixed at plan time; `None` for a shared test in `split` coverage (the lane that
    /// takes it is in its state).
    pub lane: Option<usize>,
    pub def: TaskDef,
    /// Stage index (same in every lane: all lanes have the same stage list).
    pub stage: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ItemState {
    Pending,
    /// In the delay queue: resources busy until `until`.
    Delayed {
        until: EpochMs,
        reason: String,
        retries: u32,
        first_busy: EpochMs,
    },
    Running {
        lane: usize,
    },
    Done {
        result: String,
        message: String,
        failure: bool,
        lane: Option<usize>,
    },
}

/// A decision to start an item on a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub item: ItemId,
    pub lane: usize,
}

/// What happened to an item whose resources were busy.
#[derive(Debug, Clone, PartialEq)]
pub enum BusyOutcome {
    /// Back in the queue, eligible again at `until`.
    Delayed { until: EpochMs },
    /// `max_resource_retry` or `max_resource_wait` exhausted: the item is done, Errored.
    GaveUp { message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stage {
    kind: TaskKind,
    /// Index into `groups`; `None` for global setup/teardown.
    group: Option<usize>,
}

#[derive(Debug, Clone)]
struct LaneState {
    dut: Option<DutTarget>,
    name: String,
    stage: usize,
    /// Set when the lane's suite stopped: the result and message its setups and tests
    /// that have not started get (Skipped by `stop_suite_on_fail`, Aborted by the
    /// operator). Teardowns still run.
    stop_why: Option<(&'static str, String)>,
    /// Groups whose setup stage this lane entered.
    entered: HashSet<usize>,
    running: Vec<ItemId>,
}

/// Input of [`Plan::build`].
pub struct PlanInput<'a> {
    pub pack: &'a LoadedPack,
    /// Groups to run, in order; empty means every group of the pack.
    pub groups: Vec<String>,
    pub duts: Vec<DutTarget>,
    pub ats: Option<String>,
    pub params: GlobalParams,
    /// Test order per group chosen by the pack's `scheduler` (`custom_*` resource modes),
    /// used instead of the priority sort. Tests of a group it leaves out follow in
    /// priority order.
    pub test_order: Option<HashMap<String, Vec<String>>>,
}

pub struct Plan {
    items: Vec<PlanItem>,
    states: Vec<ItemState>,
    stages: Vec<Stage>,
    /// Items of each stage, per lane (split test stages list the shared items in every lane).
    stage_items: Vec<Vec<Vec<ItemId>>>,
    /// Per stage and lane, how many leading `stage_items` are known to be done. Done is
    /// final, so this only grows; scans start here, which keeps each step of a long stage
    /// O(1) amortised instead of O(stage size).
    done_prefix: Vec<Vec<usize>>,
    groups: Vec<String>,
    lanes: Vec<LaneState>,
    params: GlobalParams,
    ats: Option<String>,
    /// Items done by the plan itself (Skipped, Blocked, gave up, Aborted) not yet drained.
    settled: Vec<ItemId>,
    /// Times each (group, task) test has been started, for `test` coverage.
    run_counts: HashMap<(Option<usize>, String), u32>,
    /// Per item that has been in the delay queue: what its busy answers add up to.
    delay_mem: HashMap<ItemId, DelayMem>,
    /// Occurrences of each task, for prereq lookups.
    by_task: HashMap<String, Vec<ItemId>>,
}

impl Plan {
    pub fn items(&self) -> &[PlanItem] {
        &self.items
    }
    pub fn item(&self, id: ItemId) -> &PlanItem {
        &self.items[id]
    }
    pub fn state(&self, id: ItemId) -> &ItemState {
        &self.states[id]
    }
    pub fn params(&self) -> &GlobalParams {
        &self.params
    }
    pub fn lane_count(&self) -> usize {
        self.lanes.len()
    }
    pub fn lane_name(&self, lane: usize) -> &str {
        &self.lanes[lane].name
    }
    pub fn lane_dut(&self, lane: usize) -> Option<&DutTarget> {
        self.lanes[lane].dut.as_ref()
    }
    pub fn ats(&self) -> Option<&str> {
        self.ats.as_deref()
    }
    pub fn groups(&self) -> &[String] {
        &self.groups
    }
    /// Items currently running on `lane`.
    pub fn running_on(&self, lane: usize) -> &[ItemId] {
        &self.lanes[lane].running
    }
    /// Index of the stage `lane` is at; it grows as the lane finishes stages (equal to the
    /// number of stages once the lane is through).
    pub fn lane_stage(&self, lane: usize) -> usize {
        self.lanes[lane].stage
    }
    /// Items of the stage `lane` is at, in plan order (a split test stage lists its
    /// shared items on every lane).
    pub fn current_stage_items(&self, lane: usize) -> &[ItemId] {
        self.stage_items
            .get(self.lanes[lane].stage)
            .map_or(&[][..], |per_lane| &per_lane[lane])
    }

    /// "global setup", "group g1 tests", "group g1 teardown", ...
    fn stage_name(&self, si: usize) -> String {
        let s = self.stages[si];
        let kind = match s.kind {
            TaskKind::Test => "tests",
            k => k.as_str(),
        };
        match s.group {
            Some(g) => format!("group {} {kind}", self.groups[g]),
            None => format!("global {kind}"),
        }
    }

    /// Whether `result` counts as a failure in this run.
    pub fn is_failure(&self, result: &str) -> bool {
        !self.params.valid_result.iter().any(|v| v == result)
    }

    pub fn is_done(&self) -> bool {
        self.states
            .iter()
            .all(|s| matches!(s, ItemState::Done { .. }))
    }

    /// (done, total).
    pub fn progress(&self) -> (usize, usize) {
        let done = self
            .states
            .iter()
            .filter(|s| matches!(s, ItemState::Done { .. }))
            .count();
        (done, self.states.len())
    }

    /// Earliest time a delayed item becomes eligible again.
    pub fn next_wake(&self) -> Option<EpochMs> {
        self.states
            .iter()
            .filter_map(|s| match s {
                ItemState::Delayed { until, .. } => Some(*until),
                _ => None,
            })
            .min()
    }

    /// Items the plan finished by itself since the last call (Skipped, Blocked, Errored
    /// after resource give-up, Aborted), in the order it decided them.
    pub fn drain_settled(&mut self) -> Vec<ItemId> {
        std::mem::take(&mut self.settled)
    }

    fn settle(&mut self, id: ItemId, result: &str, message: String, lane: Option<usize>) {
        if matches!(self.states[id], ItemState::Done { .. }) {
            return;
        }
        let failure = self.is_failure(result);
        self.states[id] = ItemState::Done {
            result: result.into(),
            message,
            failure,
            lane,
        };
        self.settled.push(id);
    }
}

impl LaneState {
    fn new(dut: Option<DutTarget>, name: String) -> Self {
        Self {
            dut,
            name,
            stage: 0,
            stop_why: None,
            entered: HashSet::new(),
            running: Vec::new(),
        }
    }

    fn dut_label(&self) -> String {
        match &self.dut {
            Some(d) => match &d.model {
                Some(m) => format!("{} ({m})", d.name),
                None => d.name.clone(),
            },
            None => self.name.clone(),
        }
    }
}
