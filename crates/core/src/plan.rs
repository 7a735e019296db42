//! Turn a launch into per-lane queues and decide, step by step, what may start next.
//!
//! The plan is a pure state machine: no processes, no I/O, time passed in. `run` drives it:
//! ask [`Plan::next_starts`] what may start now, tell it when an item finished
//! ([`Plan::finish`]) or its resources are busy ([`Plan::resource_busy`]), and drain the
//! results the plan itself assigned (Skipped, Blocked, ...) with [`Plan::drain_settled`].
//!
//! Lifecycle per lane (one lane per DUT), after kissats: global setup, then for each chosen
//! group its setup, tests and teardown, then global teardown. Setup and teardown lists run
//! one task at a time, in order. A group's tests run in priority order (lower first), or
//! in the order the pack's `scheduler` chose (`custom_*` resource modes);
//! `process_safe` tests run side by side up to `process_limit`, any other test runs alone.
//! A test never overtakes an earlier one that is waiting for the lane, but tests waiting
//! for a prereq or in the delay queue (busy resources) are passed by.
//!
//! `stop_suite_on_fail`: when such a task fails, every setup and test of that lane that has
//! not started becomes Skipped; the teardowns of the groups it entered and the global
//! teardown still run. In `split` coverage the suite is shared, so every lane stops.
//!
//! The delay queue (kissats): a task whose resources are busy waits until the time the
//! broker said they are booked until, and is retried then; the broker may wake it earlier
//! ([`Plan::wake`]) when something it waits for frees. `max_resource_retry` counts the
//! times it found its resources still busy at or after the time it was told, the first
//! busy answer included; a retry on such an early wake that finds them busy again does
//! not count (the resource was never promised by then). `max_resource_wait` bounds the
//! wait from the first busy answer to the time the latest answer names.
//!
//! `prereq_tasks` are looked up in the same lane (and among the shared tests in `split`
//! coverage). A prereq that is still to run in the current or an earlier stage is waited
//! for; one that failed, was skipped, or will not run before is reason for Blocked.

use std::collections::{HashMap, HashSet};

use crate::clock::EpochMs;
pub use crate::model::{DutTarget, TaskKind};
use crate::outcome::{ABORTED, BLOCKED, ERRORED, SKIPPED};
use crate::pack::{CoverageMode, GlobalParams, LoadedPack, TaskDef};

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

/// Whether `value` matches a `valid_duts`/`valid_ats` pattern: `any`, or a glob with `*`
/// and `?`, compared without regard to case.
pub fn pattern_matches(pattern: &str, value: &str) -> bool {
    if pattern.eq_ignore_ascii_case("any") {
        return true;
    }
    fn glob(p: &[char], v: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('*', rest)) => (0..=v.len()).any(|i| glob(rest, &v[i..])),
            Some(('?', rest)) => !v.is_empty() && glob(rest, &v[1..]),
            Some((c, rest)) => {
                !v.is_empty() && v[0].to_lowercase().eq(c.to_lowercase()) && glob(rest, &v[1..])
            }
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    glob(&p, &v)
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
    pub fn build(input: PlanInput<'_>) -> Result<Plan, PlanError> {
        let pack = input.pack;
        let params = input.params;
        let group_names: Vec<String> = if input.groups.is_empty() {
            pack.def.groups.keys().cloned().collect()
        } else {
            input.groups.clone()
        };
        for g in &group_names {
            if !pack.def.groups.contains_key(g) {
                return Err(PlanError::UnknownGroup {
                    group: g.clone(),
                    pack: pack.def.name.clone(),
                    known: pack
                        .def
                        .groups
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        let mut seen = HashSet::new();
        for d in &input.duts {
            if !seen.insert(d.name.clone()) {
                return Err(PlanError::DuplicateDut(d.name.clone()));
            }
        }
        let lanes: Vec<LaneState> = if input.duts.is_empty() {
            vec![LaneState::new(None, LOCAL_LANE.into())]
        } else {
            input
                .duts
                .iter()
                .map(|d| LaneState::new(Some(d.clone()), d.name.clone()))
                .collect()
        };

        // Stage list, shared by all lanes.
        let mut stages = vec![Stage {
            kind: TaskKind::Setup,
            group: None,
        }];
        let mut stage_tasks: Vec<Vec<String>> = vec![pack.def.setup.clone()];
        for (gi, g) in group_names.iter().enumerate() {
            let gd = &pack.def.groups[g];
            stages.push(Stage {
                kind: TaskKind::Setup,
                group: Some(gi),
            });
            stage_tasks.push(gd.setup.clone());
            stages.push(Stage {
                kind: TaskKind::Test,
                group: Some(gi),
            });
            let mut tests = gd.tests.clone();
            // Stable: equal priorities keep the group's order.
            tests.sort_by_key(|t| pack.tasks.get(t).map(|lt| lt.def.priority).unwrap_or(0));
            if let Some(order) = input.test_order.as_ref().and_then(|o| o.get(g)) {
                let mut rest = tests;
                tests = Vec::with_capacity(rest.len());
                for t in order {
                    if let Some(i) = rest.iter().position(|r| r == t) {
                        tests.push(rest.remove(i));
                    }
                }
                tests.extend(rest);
            }
            stage_tasks.push(tests);
            stages.push(Stage {
                kind: TaskKind::Teardown,
                group: Some(gi),
            });
            stage_tasks.push(gd.teardown.clone());
        }
        stages.push(Stage {
            kind: TaskKind::Teardown,
            group: None,
        });
        stage_tasks.push(pack.def.teardown.clone());

        // Every task must exist, and its required keys must be present.
        let mut missing: Vec<(String, Vec<String>)> = Vec::new();
        let mut checked = HashSet::new();
        let mut defs: Vec<&crate::pack::TaskDef> = Vec::new();
        for (si, tasks) in stage_tasks.iter().enumerate() {
            for t in tasks {
                let Some(lt) = pack.tasks.get(t) else {
                    let place = match stages[si].group {
                        Some(g) => format!("group {} {}", group_names[g], stages[si].kind.as_str()),
                        None => format!("global {}", stages[si].kind.as_str()),
                    };
                    return Err(PlanError::UnknownTask {
                        task: t.clone(),
                        place,
                    });
                };
                if checked.insert(t.clone()) {
                    defs.push(&lt.def);
                }
            }
        }
        // What tasks get as `global_params`, plus the run's targets.
        let mut given = crate::params::global_params_json(&params);
        if let Some(ats) = &input.ats {
            given.insert("ats".into(), ats.as_str().into());
        }
        if let Some(d) = input.duts.first() {
            given.insert("dut".into(), d.name.as_str().into());
        }
        for m in crate::params::missing_param_keys(&given, defs) {
            match missing.iter_mut().find(|(t, _)| *t == m.task) {
                Some((_, keys)) => keys.push(m.key),
                None => missing.push((m.task, vec![m.key])),
            }
        }
        if !missing.is_empty() {
            return Err(PlanError::MissingParamKeys(missing));
        }

        let split = params.coverage_mode == CoverageMode::Split;
        let mut items: Vec<PlanItem> = Vec::new();
        let mut stage_items: Vec<Vec<Vec<ItemId>>> =
            vec![vec![Vec::new(); lanes.len()]; stages.len()];
        for (si, tasks) in stage_tasks.iter().enumerate() {
            let shared = split && stages[si].kind == TaskKind::Test;
            let lane_list: Vec<Option<usize>> = if shared {
                vec![None]
            } else {
                (0..lanes.len()).map(Some).collect()
            };
            for lane in lane_list {
                for t in tasks {
                    let id = items.len();
                    items.push(PlanItem {
                        id,
                        task: t.clone(),
                        kind: stages[si].kind,
                        group: stages[si].group.map(|g| group_names[g].clone()),
                        lane,
                        def: pack.tasks[t].def.clone(),
                        stage: si,
                    });
                    match lane {
                        Some(l) => stage_items[si][l].push(id),
                        None => {
                            for per_lane in stage_items[si].iter_mut() {
                                per_lane.push(id);
                            }
                        }
                    }
                }
            }
        }
        // Lane-major order for fixed items keeps a lane's tasks together in listings; ids
        // are what the store uses as `seq`, so renumbering is not needed.
        let states = vec![ItemState::Pending; items.len()];
        let done_prefix = vec![vec![0; lanes.len()]; stages.len()];
        let mut plan = Plan {
            items,
            states,
            stages,
            stage_items,
            done_prefix,
            groups: group_names,
            lanes,
            params,
            ats: input.ats,
            settled: Vec::new(),
            run_counts: HashMap::new(),
            delay_mem: HashMap::new(),
            by_task: HashMap::new(),
        };
        for it in &plan.items {
            plan.by_task.entry(it.task.clone()).or_default().push(it.id);
        }
        plan.skip_invalid_targets();
        Ok(plan)
    }

    /// valid_ats / valid_duts: items not valid for their target become Skipped now.
    fn skip_invalid_targets(&mut self) {
        for id in 0..self.items.len() {
            let def = &self.items[id].def;
            if let Some(ats) = &self.ats {
                if !def.valid_ats.iter().any(|p| pattern_matches(p, ats)) {
                    let msg = format!(
                        "not valid for ATS {ats} (valid_ats: {})",
                        def.valid_ats.join(", ")
                    );
                    self.settle(id, SKIPPED, msg, None);
                    continue;
                }
            }
            let valid_lanes: Vec<usize> = match self.items[id].lane {
                Some(l) => vec![l],
                None => (0..self.lanes.len()).collect(),
            };
            if !valid_lanes.iter().any(|&l| self.valid_on(id, l)) {
                let dut_names: Vec<String> = valid_lanes
                    .iter()
                    .map(|&l| self.lanes[l].dut_label())
                    .collect();
                let msg = format!(
                    "not valid for DUT {} (valid_duts: {})",
                    dut_names.join(", "),
                    self.items[id].def.valid_duts.join(", ")
                );
                self.settle(id, SKIPPED, msg, self.items[id].lane);
            }
        }
    }

    fn valid_on(&self, id: ItemId, lane: usize) -> bool {
        let Some(dut) = &self.lanes[lane].dut else {
            return true;
        };
        self.items[id].def.valid_duts.iter().any(|p| {
            pattern_matches(p, &dut.name)
                || dut.model.as_deref().is_some_and(|m| pattern_matches(p, m))
        })
    }

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

    /// What may start now. Returned items are marked running on their lane; the caller
    /// must follow up with [`Plan::finish`] or [`Plan::resource_busy`] for each.
    pub fn next_starts(&mut self, now: EpochMs) -> Vec<Start> {
        let mut out = Vec::new();
        // Settling items (Blocked, Skipped) can unblock stage advances; loop to a fixpoint.
        loop {
            let mut progressed = false;
            for lane in 0..self.lanes.len() {
                progressed |= self.advance_lane(lane);
                progressed |= self.start_on_lane(lane, now, &mut out);
            }
            if !progressed {
                break;
            }
        }
        self.break_deadlock();
        out
    }

    /// Move `lane` past finished stages; returns whether anything changed.
    fn advance_lane(&mut self, lane: usize) -> bool {
        let mut changed = false;
        while self.lanes[lane].stage < self.stages.len() {
            let si = self.lanes[lane].stage;
            let stage = self.stages[si];
            if let Some((result, msg)) = self.lanes[lane].stop_why.clone() {
                if stage.kind != TaskKind::Teardown {
                    self.skip_stage_for_lane(lane, si, result, &msg);
                }
            }
            if stage.kind == TaskKind::Teardown {
                if let Some(g) = stage.group {
                    if !self.lanes[lane].entered.contains(&g) {
                        let msg = format!("group {} did not start on this lane", self.groups[g]);
                        self.skip_stage_for_lane(lane, si, SKIPPED, &msg);
                    }
                }
            }
            if stage.kind == TaskKind::Setup {
                if let Some(g) = stage.group {
                    if self.lanes[lane].stop_why.is_none() {
                        self.lanes[lane].entered.insert(g);
                    }
                }
            }
            if !self.stage_finished_for_lane(lane, si) {
                break;
            }
            self.lanes[lane].stage += 1;
            changed = true;
            // A lane leaving a split test stage may leave shared items nobody can take.
            if stage.kind == TaskKind::Test {
                self.skip_orphans(si);
            }
        }
        changed
    }

    /// Pending/delayed items of stage `si` that belong to `lane` get `result`.
    fn skip_stage_for_lane(&mut self, lane: usize, si: usize, result: &str, msg: &str) {
        let ids: Vec<ItemId> = self.stage_items[si][lane].clone();
        for id in ids {
            let mine = self.items[id].lane == Some(lane)
                || (self.items[id].lane.is_none() && self.valid_on(id, lane));
            if mine
                && matches!(
                    self.states[id],
                    ItemState::Pending | ItemState::Delayed { .. }
                )
            {
                // A shared item is only skipped when no other lane can still take it.
                if self.items[id].lane.is_none() && self.other_lane_can_take(id, lane) {
                    continue;
                }
                self.settle(id, result, msg.into(), self.items[id].lane);
            }
        }
    }

    fn other_lane_can_take(&self, id: ItemId, except: usize) -> bool {
        let si = self.items[id].stage;
        (0..self.lanes.len()).any(|l| {
            l != except
                && self.lanes[l].stop_why.is_none()
                && self.lanes[l].stage <= si
                && self.valid_on(id, l)
        })
    }

    /// Shared items of stage `si` that no lane can take any more become Skipped.
    fn skip_orphans(&mut self, si: usize) {
        let ids: Vec<ItemId> = self.stage_items[si].first().cloned().unwrap_or_default();
        for id in ids {
            if self.items[id].lane.is_some()
                || !matches!(
                    self.states[id],
                    ItemState::Pending | ItemState::Delayed { .. }
                )
            {
                continue;
            }
            let takers = (0..self.lanes.len()).any(|l| {
                self.lanes[l].stop_why.is_none()
                    && self.lanes[l].stage <= si
                    && self.valid_on(id, l)
            });
            if !takers {
                let (result, msg) = self
                    .lanes
                    .iter()
                    .find_map(|l| l.stop_why.clone())
                    .unwrap_or((SKIPPED, "no DUT left that this test is valid for".into()));
                self.settle(id, result, msg, None);
            }
        }
    }

    /// Index in `stage_items[si][lane]` of the first item not done (advancing the done
    /// prefix past items that finished since the last call).
    fn open_from(&mut self, si: usize, lane: usize) -> usize {
        let list = &self.stage_items[si][lane];
        let mut k = self.done_prefix[si][lane];
        while k < list.len() && matches!(self.states[list[k]], ItemState::Done { .. }) {
            k += 1;
        }
        self.done_prefix[si][lane] = k;
        k
    }

    fn stage_finished_for_lane(&mut self, lane: usize, si: usize) -> bool {
        let from = self.open_from(si, lane);
        self.stage_items[si][lane][from..]
            .iter()
            .all(|&id| match &self.states[id] {
                ItemState::Done { .. } => true,
                ItemState::Running { lane: l } => *l != lane,
                ItemState::Pending | ItemState::Delayed { .. } => {
                    // A shared item this lane cannot take does not hold it back.
                    self.items[id].lane.is_none() && !self.valid_on(id, lane)
                }
            })
    }

    /// Up to `k` pending items `lane` will most likely start next, in queue order: the
    /// rest of its current stage, then the stages after it. A guess (prereqs, stops and
    /// other lanes decide), used to prepare their folders ahead of time.
    pub fn upcoming(&mut self, lane: usize, k: usize) -> Vec<ItemId> {
        let mut out = Vec::new();
        for si in self.lanes[lane].stage..self.stages.len() {
            let from = self.open_from(si, lane);
            for &id in &self.stage_items[si][lane][from..] {
                if out.len() == k {
                    return out;
                }
                if matches!(self.states[id], ItemState::Pending)
                    && (self.items[id].lane == Some(lane) || self.valid_on(id, lane))
                {
                    out.push(id);
                }
            }
        }
        out
    }

    /// Whether `id` may be considered for `lane` now (pending, or delayed and due).
    fn is_candidate(&self, id: ItemId, lane: usize, now: EpochMs) -> bool {
        let ready = match &self.states[id] {
            ItemState::Pending => true,
            ItemState::Delayed { until, .. } => *until <= now,
            _ => false,
        };
        ready && (self.items[id].lane == Some(lane) || self.valid_on(id, lane))
    }

    /// Start what the lane's current stage allows.
    fn start_on_lane(&mut self, lane: usize, now: EpochMs, out: &mut Vec<Start>) -> bool {
        let si = self.lanes[lane].stage;
        if si >= self.stages.len() {
            return false;
        }
        let stage = self.stages[si];
        let from = self.open_from(si, lane);
        let mut progressed = false;
        if stage.kind != TaskKind::Test {
            // Setups and teardowns run one at a time, in strict order: only the first
            // unfinished item of the stage may go.
            if !self.lanes[lane].running.is_empty() {
                return false;
            }
            let Some(&first) = self.stage_items[si][lane].get(from) else {
                return false;
            };
            if !self.is_candidate(first, lane, now) {
                return false;
            }
            match self.prereq_check(first, lane) {
                Prereq::Ok => {
                    self.mark_running(first, lane, stage.group);
                    out.push(Start { item: first, lane });
                    progressed = true;
                }
                Prereq::Wait => {}
                Prereq::Blocked(msg) => {
                    self.settle(first, BLOCKED, msg, Some(lane));
                    progressed = true;
                }
            }
            return progressed;
        }
        // Queue order, or for `test` coverage the least-run test first (stable: queue
        // order breaks ties). The loop stops at the first item that does not fit, so in
        // queue order only the head of the stage is looked at.
        let by_coverage: Option<Vec<ItemId>> = (self.params.coverage_mode == CoverageMode::Test)
            .then(|| {
                let mut ids: Vec<ItemId> = self.stage_items[si][lane][from..]
                    .iter()
                    .copied()
                    .filter(|&id| self.is_candidate(id, lane, now))
                    .collect();
                ids.sort_by_key(|&id| {
                    self.run_counts
                        .get(&(stage.group, self.items[id].task.clone()))
                        .copied()
                        .unwrap_or(0)
                });
                ids
            });
        let count = by_coverage
            .as_ref()
            .map_or(self.stage_items[si][lane].len() - from, Vec::len);
        for k in 0..count {
            let id = match &by_coverage {
                Some(ids) => ids[k],
                None => self.stage_items[si][lane][from + k],
            };
            if !self.is_candidate(id, lane, now) {
                continue;
            }
            let running = &self.lanes[lane].running;
            if running.iter().any(|&r| !self.items[r].def.process_safe) {
                break;
            }
            match self.prereq_check(id, lane) {
                Prereq::Wait => continue,
                Prereq::Blocked(msg) => {
                    self.settle(id, BLOCKED, msg, self.items[id].lane.or(Some(lane)));
                    progressed = true;
                    continue;
                }
                Prereq::Ok => {}
            }
            let running = &self.lanes[lane].running;
            let fits = if self.items[id].def.process_safe {
                (running.len() as u32) < self.params.process_limit
            } else {
                running.is_empty()
            };
            if !fits {
                break;
            }
            self.mark_running(id, lane, stage.group);
            out.push(Start { item: id, lane });
            progressed = true;
        }
        progressed
    }

    fn mark_running(&mut self, id: ItemId, lane: usize, group: Option<usize>) {
        self.states[id] = ItemState::Running { lane };
        self.lanes[lane].running.push(id);
        *self
            .run_counts
            .entry((group, self.items[id].task.clone()))
            .or_default() += 1;
    }

    fn prereq_check(&self, id: ItemId, lane: usize) -> Prereq {
        if self.params.ignore_prereq {
            return Prereq::Ok;
        }
        let cur_stage = self.lanes[lane].stage;
        for p in &self.items[id].def.prereq_tasks {
            let occ: Vec<ItemId> = self
                .by_task
                .get(p)
                .map(|v| {
                    v.iter()
                        .copied()
                        .filter(|&o| {
                            o != id
                                && (self.items[o].lane == Some(lane)
                                    || self.items[o].lane.is_none())
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut satisfied = false;
            let mut pending_before = false;
            let mut failed: Option<String> = None;
            for &o in &occ {
                match &self.states[o] {
                    ItemState::Done {
                        result, failure, ..
                    } => {
                        if !*failure && !matches!(result.as_str(), SKIPPED | BLOCKED | ABORTED) {
                            satisfied = true;
                        } else {
                            failed = Some(result.clone());
                        }
                    }
                    _ => {
                        if self.items[o].stage <= cur_stage {
                            pending_before = true;
                        }
                    }
                }
            }
            if satisfied {
                continue;
            }
            if pending_before {
                return Prereq::Wait;
            }
            return Prereq::Blocked(match failed {
                Some(r) => format!("prereq {p} did not pass ({r})"),
                None if occ.is_empty() => format!("prereq {p} is not part of this run"),
                None => format!("prereq {p} had not run before this task"),
            });
        }
        Prereq::Ok
    }

    /// If nothing is running or delayed yet items are left, nothing will ever start them:
    /// a prereq cycle through the wait rule. Block them with the reason.
    fn break_deadlock(&mut self) {
        let busy = self
            .states
            .iter()
            .any(|s| matches!(s, ItemState::Running { .. } | ItemState::Delayed { .. }));
        if busy || self.is_done() {
            return;
        }
        let left: Vec<ItemId> = (0..self.items.len())
            .filter(|&i| matches!(self.states[i], ItemState::Pending))
            .collect();
        for id in left {
            let msg = format!(
                "waits for prereqs that wait for it ({})",
                self.items[id].def.prereq_tasks.join(", ")
            );
            self.settle(id, BLOCKED, msg, self.items[id].lane);
        }
    }

    /// A started item is done. `result` is the task's result; failure is judged against
    /// the run's `valid_result`. Returns whether it counts as a failure.
    pub fn finish(&mut self, id: ItemId, result: &str, message: &str) -> bool {
        let lane = match self.states[id] {
            ItemState::Running { lane } => Some(lane),
            _ => None,
        };
        if let Some(l) = lane {
            self.lanes[l].running.retain(|&r| r != id);
        }
        let failure = self.is_failure(result);
        self.states[id] = ItemState::Done {
            result: result.into(),
            message: message.into(),
            failure,
            lane,
        };
        let item = &self.items[id];
        if failure && item.def.stop_suite_on_fail && item.kind != TaskKind::Teardown {
            let why = (
                SKIPPED,
                format!("stop_suite_on_fail: {} ended {result}", item.task),
            );
            let lanes: Vec<usize> = if self.params.coverage_mode == CoverageMode::Split {
                (0..self.lanes.len()).collect()
            } else {
                lane.into_iter().collect()
            };
            for l in lanes {
                if self.lanes[l].stop_why.is_none() {
                    self.lanes[l].stop_why = Some(why.clone());
                }
            }
        }
        failure
    }

    /// The operator stopped the run: setups and tests that have not started become
    /// Aborted with `message`; teardowns of the groups each lane entered and the global
    /// teardown still run. [`Plan::abort_pending`] then ends even those.
    pub fn stop(&mut self, message: &str) {
        for l in &mut self.lanes {
            l.stop_why = Some((ABORTED, message.to_string()));
        }
        // Delayed setups/tests are settled at once (the lanes may not reach their stage).
        for id in 0..self.items.len() {
            if self.items[id].kind != TaskKind::Teardown
                && matches!(
                    self.states[id],
                    ItemState::Pending | ItemState::Delayed { .. }
                )
            {
                self.settle(id, ABORTED, message.into(), self.items[id].lane);
            }
        }
    }

    /// The broker said the started item's resources are busy until `until`. The item goes
    /// back to the delay queue, or is done (Errored) when its retries or wait are used up.
    pub fn resource_busy(
        &mut self,
        id: ItemId,
        now: EpochMs,
        until: EpochMs,
        reason: &str,
    ) -> BusyOutcome {
        let mem = self.delay_mem.get(&id).copied();
        let (retries, first_busy) = mem.map_or((0, now), |m| (m.retries, m.first_busy));
        if let ItemState::Running { lane } = self.states[id] {
            self.lanes[lane].running.retain(|&r| r != id);
        }
        let def = &self.items[id].def;
        // Woken before the time it was told, and still busy: not a retry (module docs).
        let early = mem.is_some_and(|m| now < m.promised);
        let retries = if early { retries } else { retries + 1 };
        let waited_s = (until.max(now) - first_busy) as f64 / 1000.0;
        if retries > def.max_resource_retry {
            let message = format!(
                "resources busy ({reason}); gave up after {} retries (max_resource_retry)",
                def.max_resource_retry
            );
            self.settle(id, ERRORED, message.clone(), None);
            return BusyOutcome::GaveUp { message };
        }
        if let Some(max) = def.max_resource_wait {
            if waited_s > max {
                let message = format!(
                    "resources busy ({reason}); would wait {waited_s:.0}s, more than max_resource_wait {max}s"
                );
                self.settle(id, ERRORED, message.clone(), None);
                return BusyOutcome::GaveUp { message };
            }
        }
        self.states[id] = ItemState::Delayed {
            until: until.max(now),
            reason: reason.into(),
            retries,
            first_busy,
        };
        self.delay_mem.insert(
            id,
            DelayMem {
                retries,
                first_busy,
                promised: until.max(now),
            },
        );
        BusyOutcome::Delayed {
            until: until.max(now),
        }
    }

    /// The broker says something a delayed item waits for may have freed: it may start
    /// again now. Its next busy answer, if any, does not count as a retry unless it comes
    /// at or after the time the last one named. Returns whether the item was waiting.
    pub fn wake(&mut self, id: ItemId, now: EpochMs) -> bool {
        match &mut self.states[id] {
            ItemState::Delayed { until, .. } => {
                *until = (*until).min(now);
                true
            }
            _ => false,
        }
    }

    /// Stop: every item not running and not done becomes Aborted. Running items are the
    /// caller's to end (and then [`Plan::finish`] them).
    pub fn abort_pending(&mut self, message: &str) {
        for id in 0..self.items.len() {
            if matches!(
                self.states[id],
                ItemState::Pending | ItemState::Delayed { .. }
            ) {
                self.settle(id, ABORTED, message.into(), self.items[id].lane);
            }
        }
    }

    /// Why a not-yet-started item waits, in words for the operator.
    pub fn wait_reason(&self, id: ItemId, now: EpochMs) -> Option<String> {
        match &self.states[id] {
            ItemState::Delayed { until, reason, .. } => Some(format!(
                "resources busy ({reason}); starts when they free, retry in {}s at the latest",
                ((until - now).max(0) + 999) / 1000
            )),
            ItemState::Pending => {
                let item = &self.items[id];
                let lanes: Vec<usize> = match item.lane {
                    Some(l) => vec![l],
                    None => (0..self.lanes.len())
                        .filter(|&l| self.valid_on(id, l))
                        .collect(),
                };
                let Some(&lane) = lanes.iter().min_by_key(|&&l| self.lanes[l].stage) else {
                    return Some("no valid DUT".into());
                };
                let ls = &self.lanes[lane];
                if item.stage > ls.stage {
                    // Names the item's own stage, not the lane's: this stays true until the
                    // lane gets there, when the driver announces the item's new reason.
                    return Some(format!(
                        "queued until {} reaches {}",
                        ls.name,
                        self.stage_name(item.stage)
                    ));
                }
                if let Prereq::Wait = self.prereq_check(id, lane) {
                    return Some(format!(
                        "waiting for prereq {}",
                        item.def.prereq_tasks.join(", ")
                    ));
                }
                if ls.running.iter().any(|&r| !self.items[r].def.process_safe) {
                    return Some(format!("{} runs a task that is not process_safe", ls.name));
                }
                if !ls.running.is_empty() {
                    return Some(if item.def.process_safe {
                        format!(
                            "process_limit {} reached on {}",
                            self.params.process_limit, ls.name
                        )
                    } else {
                        format!("not process_safe: waits for {} to be idle", ls.name)
                    });
                }
                Some("queued".into())
            }
            _ => None,
        }
    }
}

enum Prereq {
    Ok,
    Wait,
    Blocked(String),
}

/// An item's time in the delay queue.
#[derive(Debug, Clone, Copy)]
struct DelayMem {
    /// Busy answers that counted against `max_resource_retry`.
    retries: u32,
    first_busy: EpochMs,
    /// The time the last busy answer said the resources would be free.
    promised: EpochMs,
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

/// Whether a `req_param_keys` entry is present for this run.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("any", "x"));
        assert!(pattern_matches("stb-*", "STB-01"));
        assert!(pattern_matches("TP-?000", "tp-4000"));
        assert!(!pattern_matches("rtr-*", "stb-01"));
        assert!(pattern_matches("*", ""));
    }
}
