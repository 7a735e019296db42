//! `prereq_tasks`, looked up in the same lane (and among the shared tests in `split`
//! coverage). A prereq that is still to run in the current or an earlier stage is waited
//! for; one that failed, was skipped, or will not run before is reason for Blocked. Items
//! that wait for each other (a prereq cycle) are Blocked once nothing else can move.

use super::{ItemId, ItemState, Plan};
use crate::outcome::{ABORTED, BLOCKED, SKIPPED};

pub(super) enum Prereq {
    Ok,
    Wait,
    Blocked(String),
}

impl Plan {
    pub(super) fn prereq_check(&self, id: ItemId, lane: usize) -> Prereq {
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
    pub(super) fn break_deadlock(&mut self) {
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
}
