//! Each lane walking its stages, and what may start next on it.
//!
//! Setup and teardown lists run one task at a time, in order. A group's tests run in
//! priority order (lower first), or in the order the pack's `scheduler` chose (`custom_*`
//! resource modes); in `test` coverage the least-run test goes first. `process_safe` tests
//! run side by side up to `process_limit`, any other test runs alone. A test never
//! overtakes an earlier one that is waiting for the lane, but tests waiting for a prereq or
//! in the delay queue (busy resources) are passed by.
//!
//! A lane whose suite stopped (`stop_suite_on_fail`, the operator) skips the setups and
//! tests of the stages it reaches; the teardowns of the groups it entered and the global
//! teardown still run. A shared test (`split` coverage) is skipped only when no lane can
//! take it any more. Scans start at each stage's done prefix, so a step of a long stage is
//! O(1) amortised.

use super::prereq::Prereq;
use super::{ItemId, ItemState, Plan, Start};
use crate::clock::EpochMs;
use crate::model::TaskKind;
use crate::outcome::{BLOCKED, SKIPPED};
use crate::pack::CoverageMode;

impl Plan {
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
