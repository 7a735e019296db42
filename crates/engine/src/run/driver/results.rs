//! Results the driver stores itself (the plan's own Skipped, Blocked, ..., and engine
//! results), the check that every result reached the store, and `results.yaml`.

use std::collections::HashMap;

use super::Driver;
use crate::plan::ItemState;
use crate::run::{RunEvent, TaskState};
use crate::store::TaskFinish;

impl Driver {
    /// Commit what waits, then count the results the plan has that the store does not:
    /// a commit that failed earlier (no space left) may have taken results with it.
    pub(super) fn unstored_results(&self) -> u32 {
        let store = &self.inner.store;
        if let Err(e) = store.commit_now() {
            self.ctx.store_failed("task results (commit)", None, &e);
        }
        let stored = match store.get_run(&self.ctx.run_id) {
            Ok(run) => run.counts.by_result,
            Err(e) => {
                self.ctx
                    .store_failed("results (reading them back)", None, &e);
                Default::default()
            }
        };
        let s = self.lock();
        let mut want: HashMap<&str, u32> = HashMap::new();
        for it in s.plan.items() {
            if let ItemState::Done { result, .. } = s.plan.state(it.id) {
                *want.entry(result.as_str()).or_default() += 1;
            }
        }
        want.into_iter()
            .map(|(r, n)| n.saturating_sub(stored.get(r).copied().unwrap_or(0)))
            .sum()
    }

    /// `runs/<id>/results.yaml`, as pyATS leaves one beside its logs. Best effort: the
    /// store has everything, `testbay export` renders it again.
    pub(super) fn write_results_yaml(&self) {
        let store = &self.inner.store;
        let run_id = &self.ctx.run_id;
        match (store.get_run(run_id), store.run_tasks(run_id)) {
            (Ok(run), Ok(tasks)) => {
                let path = self.ctx.run_dir.join("results.yaml");
                if let Err(e) = std::fs::write(&path, crate::report::results_yaml(&run, &tasks)) {
                    tracing::warn!(run_id = %run_id, error = %e, "could not write results.yaml");
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(run_id = %run_id, error = %e, "could not read the run back for results.yaml")
            }
        }
    }

    /// Store and announce results the plan assigned itself (Skipped, Blocked, ...).
    pub(super) fn persist_settled(&self) {
        let (rows, events) = {
            let mut s = self.lock();
            let settled = s.plan.drain_settled();
            if settled.is_empty() {
                return;
            }
            let now = self.inner.clock.now_ms();
            let mut rows = Vec::new();
            let mut events = Vec::new();
            for id in settled {
                if let ItemState::Done {
                    result,
                    message,
                    failure,
                    lane,
                } = s.plan.state(id).clone()
                {
                    let lane_name = lane.map(|l| s.plan.lane_name(l).to_string());
                    rows.push((
                        s.task_ids[id],
                        TaskFinish {
                            lane: lane_name.clone(),
                            result: result.clone(),
                            failure,
                            message: message.clone(),
                            finished_ms: now,
                            ..Default::default()
                        },
                    ));
                    s.finished[id] = Some(now);
                    let it = s.plan.item(id);
                    events.push(RunEvent::TaskState {
                        run_id: self.ctx.run_id.clone(),
                        seq: self.ctx.seq.next(),
                        item: id as u32,
                        task: it.task.clone(),
                        kind: it.kind,
                        group: it.group.clone(),
                        lane: lane_name,
                        state: TaskState::Done {
                            result,
                            message,
                            failure,
                            flaky: false,
                        },
                        ts: now,
                    });
                }
            }
            (rows, events)
        };
        if let Err(e) = self.inner.store.finish_tasks(&rows) {
            self.ctx.store_failed("results", None, &e);
        }
        for ev in events {
            self.emit(ev);
        }
    }

    pub(super) fn store_engine_result(
        &self,
        item: usize,
        result: &str,
        message: &str,
        lane: Option<String>,
    ) {
        let now = self.inner.clock.now_ms();
        let (task_id, failure) = {
            let mut s = self.lock();
            s.finished[item] = Some(now);
            (s.task_ids[item], s.plan.is_failure(result))
        };
        let f = TaskFinish {
            lane,
            result: result.into(),
            failure,
            message: message.into(),
            finished_ms: now,
            ..Default::default()
        };
        if let Err(e) = self.inner.store.finish_task(task_id, &f) {
            self.ctx.store_failed("result", None, &e);
        }
        self.emit_task(
            item,
            TaskState::Done {
                result: result.into(),
                message: message.into(),
                failure,
                flaky: false,
            },
        );
    }
}
