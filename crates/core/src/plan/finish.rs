//! An item's end and the stops that follow. `stop_suite_on_fail`: when such a task fails,
//! every setup and test of that lane that has not started becomes Skipped; the teardowns of
//! the groups it entered and the global teardown still run. In `split` coverage the suite
//! is shared, so every lane stops. The operator's first stop does the same with Aborted;
//! [`Plan::abort_pending`] (a second stop) ends even the teardowns not started.

use super::{ItemId, ItemState, Plan};
use crate::model::TaskKind;
use crate::outcome::{ABORTED, SKIPPED};
use crate::pack::CoverageMode;

impl Plan {
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
}
