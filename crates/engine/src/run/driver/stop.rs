//! A stop on request: taking the operator's stop level, and giving up on phases that do
//! not report back after a stop at once.

use super::Driver;
use crate::model::StopLevel;
use crate::outcome::{RunStatus, ABORTED};
use crate::plan::ItemState;
use crate::run::stop_grace;

impl Driver {
    /// Take the operator's stop `level` if it goes further than `stop_level`: a graceful
    /// stop aborts what has not started but lets teardowns run; a stop at once aborts
    /// everything pending and sets the time to give up on phases that do not report back.
    pub(super) fn apply_stop(
        &self,
        level: Option<StopLevel>,
        stop_level: &mut Option<StopLevel>,
        give_up_at: &mut Option<tokio::time::Instant>,
    ) {
        if level <= *stop_level {
            return;
        }
        *stop_level = level;
        let run_id = &self.ctx.run_id;
        if level == Some(StopLevel::AtOnce) {
            tracing::info!(run_id = %run_id, "stopping run at once");
            let why = match &self.lost {
                Some(lost) => format!("run interrupted: {lost}"),
                None => "run stopped at once by the operator".to_string(),
            };
            self.lock().plan.abort_pending(&why);
            *give_up_at = Some(tokio::time::Instant::now() + stop_grace(&self.inner.limits));
        } else {
            tracing::info!(run_id = %run_id, "stopping run; teardowns still run");
            self.lock().plan.stop("run stopped by the operator");
            if self.lock().status == RunStatus::Stalled {
                self.set_status(RunStatus::Running, None);
            }
        }
    }

    /// After a stop at once, [`stop_grace`] has passed and some phases have not reported
    /// back: give up on those occurrences. Each becomes Aborted and its task is cancelled;
    /// every process still carrying the run's `TESTBAY_RUN_ID` is killed (a phase that
    /// left its process group escaped the group's SIGKILL). A direct child killed so stays
    /// a zombie until the console exits: its task, which would have reaped it, is gone.
    /// Returns how many occurrences were given up on.
    pub(super) fn give_up_stuck(&mut self, running: &mut usize) -> usize {
        let grace = stop_grace(&self.inner.limits);
        let message = format!(
            "run stopped at once by the operator; this task had not ended {}s later, so the console gave up on it",
            grace.as_secs_f64()
        );
        let mut items: Vec<usize> = self.occurrences.keys().copied().collect();
        items.sort_unstable();
        let mut n = 0;
        for item in items {
            let (occ, task) = &self.occurrences[&item];
            if !occ.settle() {
                // It is ending by itself right now; its result is on its way.
                continue;
            }
            task.abort();
            self.occurrences.remove(&item);
            *running -= 1;
            self.inner.broker.release(&self.ctx.run_id, item, &[]);
            let lane = {
                let mut s = self.lock();
                let lane = match s.plan.state(item) {
                    ItemState::Running { lane } => Some(s.plan.lane_name(*lane).to_string()),
                    _ => None,
                };
                s.plan.finish(item, ABORTED, &message);
                lane
            };
            self.store_engine_result(item, ABORTED, &message, lane);
            n += 1;
        }
        if n > 0 {
            let killed =
                crate::exec::reap::kill_run_leftovers(std::slice::from_ref(&self.ctx.run_id));
            tracing::warn!(run_id = %self.ctx.run_id, given_up = n, killed, "gave up on tasks that did not end after a stop at once");
        }
        n
    }
}
