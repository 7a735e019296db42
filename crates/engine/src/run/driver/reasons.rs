//! Why queued tasks wait, as the driver tells subscribers: each lane's stage, the tasks
//! waiting for a prereq, and the reason a stalled run gives.

use super::Driver;
use crate::plan::ItemState;
use crate::run::{RunEvent, TaskState};

/// The queued reasons a driver has told: each lane's stage, and the tasks waiting for a
/// prereq with the reason last told for each.
pub(super) struct Reasons {
    stages: Vec<usize>,
    watch: Vec<(usize, String)>,
}

/// A reason `Plan::wait_reason` gives a task whose prereqs have not ended.
fn is_prereq_wait(reason: &str) -> bool {
    reason.starts_with("waiting for prereq")
}

impl Driver {
    /// Tell subscribers the new reason of queued tasks whose reason changed: the tasks of
    /// the stage a lane moved to (they wait for something else than before: prereqs,
    /// `process_limit`, ...), and tasks that waited for a prereq that has ended since.
    /// Tasks of later stages keep their reason (it names their own stage, see
    /// `Plan::wait_reason`), so each task is announced once per stage move and once when
    /// its prereqs are done.
    pub(super) fn announce_reasons(&self, r: &mut Reasons) {
        let events: Vec<RunEvent> = {
            let s = self.lock();
            let now = self.inner.clock.now_ms();
            let listening = self.inner.events.has_listeners();
            let mut ids: Vec<usize> = Vec::new();
            for (lane, seen) in r.stages.iter_mut().enumerate() {
                let stage = s.plan.lane_stage(lane);
                if stage == *seen {
                    continue;
                }
                *seen = stage;
                ids.extend(
                    s.plan
                        .current_stage_items(lane)
                        .iter()
                        .filter(|&&id| matches!(s.plan.state(id), ItemState::Pending)),
                );
            }
            // A split test stage lists its shared tasks on every lane.
            ids.sort_unstable();
            ids.dedup();
            let mut out: Vec<(usize, String)> = ids
                .into_iter()
                .map(|id| (id, s.plan.wait_reason(id, now).unwrap_or_default()))
                .collect();
            // Prereq waits that ended: the task waits for something else now, or starts.
            r.watch.retain_mut(|(id, reason)| {
                if out.iter().any(|(o, _)| o == id) {
                    return false;
                }
                if !matches!(s.plan.state(*id), ItemState::Pending) {
                    return false;
                }
                let now_reason = s.plan.wait_reason(*id, now).unwrap_or_default();
                if now_reason == *reason {
                    return true;
                }
                out.push((*id, now_reason.clone()));
                *reason = now_reason;
                is_prereq_wait(reason)
            });
            for (id, reason) in &out {
                if is_prereq_wait(reason) && !r.watch.iter().any(|(w, _)| w == id) {
                    r.watch.push((*id, reason.clone()));
                }
            }
            if !listening || out.is_empty() {
                return;
            }
            out.into_iter()
                .map(|(id, reason)| {
                    let it = s.plan.item(id);
                    RunEvent::TaskState {
                        run_id: self.ctx.run_id.clone(),
                        seq: self.ctx.seq.next(),
                        item: id as u32,
                        task: it.task.clone(),
                        kind: it.kind,
                        group: it.group.clone(),
                        lane: it.lane.map(|l| s.plan.lane_name(l).to_string()),
                        state: TaskState::Queued { reason },
                        ts: now,
                    }
                })
                .collect()
        };
        for ev in events {
            self.emit(ev);
        }
    }

    /// What [`Self::announce_reasons`] starts from: the lanes at their first stage, and
    /// the tasks of that stage waiting for a prereq.
    pub(super) fn reasons_at_start(&self) -> Reasons {
        let s = self.lock();
        let now = self.inner.clock.now_ms();
        let lanes = s.plan.lane_count();
        let mut watch: Vec<(usize, String)> = Vec::new();
        for lane in 0..lanes {
            for &id in s.plan.current_stage_items(lane) {
                if watch.iter().any(|(w, _)| *w == id)
                    || !matches!(s.plan.state(id), ItemState::Pending)
                {
                    continue;
                }
                let reason = s.plan.wait_reason(id, now).unwrap_or_default();
                if is_prereq_wait(&reason) {
                    watch.push((id, reason));
                }
            }
        }
        Reasons {
            stages: (0..lanes).map(|l| s.plan.lane_stage(l)).collect(),
            watch,
        }
    }

    pub(super) fn stall_reason(&self) -> String {
        let s = self.lock();
        let now = self.inner.clock.now_ms();
        let waiting: Vec<String> = s
            .plan
            .items()
            .iter()
            .filter(|it| matches!(s.plan.state(it.id), ItemState::Delayed { .. }))
            .take(3)
            .map(|it| {
                format!(
                    "{}: {}",
                    it.task,
                    s.plan.wait_reason(it.id, now).unwrap_or_default()
                )
            })
            .collect();
        format!("waiting for resources ({})", waiting.join("; "))
    }
}
