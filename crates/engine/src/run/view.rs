//! The live view of a run ([`RunView`]) and its progress figures, built from the live
//! state under its lock.

use super::{LaneView, LiveRun, Progress, RunView, TaskState, TaskView};
use crate::clock::EpochMs;
use crate::outcome::{RunVerdict, ABORTED};
use crate::plan::{ItemState, Plan};
use crate::store::TaskKind;

/// Estimated seconds of the whole run: the longest lane (shared tests spread evenly).
pub(super) fn estimate_total(plan: &Plan) -> f64 {
    let lanes = plan.lane_count().max(1);
    let mut per_lane = vec![0.0f64; lanes];
    let mut shared = 0.0;
    for it in plan.items() {
        if matches!(plan.state(it.id), ItemState::Done { .. }) {
            continue;
        }
        match it.lane {
            Some(l) => per_lane[l] += it.def.est_task_time,
            None => shared += it.def.est_task_time,
        }
    }
    per_lane
        .iter()
        .map(|v| v + shared / lanes as f64)
        .fold(0.0, f64::max)
}

/// Progress of the run, or of one lane.
pub(super) fn progress_of(s: &LiveRun, lane: Option<usize>, now: EpochMs) -> Progress {
    let plan = &s.plan;
    let lanes = plan.lane_count().max(1);
    let mut done = 0u32;
    let mut total = 0u32;
    let mut failures = 0u32;
    let mut aborted = 0u32;
    let mut per_lane = vec![0.0f64; lanes];
    let mut shared = 0.0f64;
    for it in plan.items() {
        let st = plan.state(it.id);
        let on_lane = match st {
            ItemState::Running { lane } => Some(*lane),
            ItemState::Done { lane, .. } => *lane,
            _ => it.lane,
        };
        if let Some(l) = lane {
            if on_lane != Some(l) && !(on_lane.is_none() && it.lane.is_none()) {
                continue;
            }
        }
        total += 1;
        match st {
            ItemState::Done {
                failure, result, ..
            } => {
                done += 1;
                if result == ABORTED {
                    aborted += 1;
                } else if *failure {
                    failures += 1;
                }
            }
            ItemState::Running { lane } => {
                let elapsed = s.started[it.id]
                    .map(|t| (now - t) as f64 / 1000.0)
                    .unwrap_or(0.0);
                per_lane[*lane] += (it.def.est_task_time - elapsed).max(0.0);
            }
            _ => match it.lane {
                Some(l) => per_lane[l] += it.def.est_task_time,
                None => shared += it.def.est_task_time,
            },
        }
    }
    let eta_s = match lane {
        Some(l) => per_lane[l] + shared / lanes as f64,
        None => per_lane
            .iter()
            .map(|v| v + shared / lanes as f64)
            .fold(0.0, f64::max),
    };
    let finished = s.status.is_finished();
    Progress {
        done,
        total,
        failures,
        aborted,
        elapsed_ms: s.ended_ms.unwrap_or(now) - s.started_ms,
        eta_ms: (!finished).then_some((eta_s * 1000.0) as i64),
    }
}

/// What the run came to, once it is over (see [`RunVerdict::of`]).
pub(super) fn verdict_of(s: &LiveRun, now: EpochMs) -> Option<RunVerdict> {
    if !s.status.is_finished() {
        return None;
    }
    let p = progress_of(s, None, now);
    RunVerdict::of(s.status, p.failures, p.aborted)
}

/// The wait reason of a running task whose phase asked the operator `message`.
pub(crate) fn operator_wait(message: &str) -> String {
    format!("waiting for the operator: {message}")
}

pub(super) fn build_view(s: &LiveRun, now: EpochMs) -> RunView {
    let plan = &s.plan;
    let task_view = |id: usize| -> TaskView {
        let it = plan.item(id);
        let st = plan.state(id);
        let (lane, state) = match st {
            ItemState::Pending => (
                it.lane,
                TaskState::Queued {
                    reason: plan.wait_reason(id, now).unwrap_or_default(),
                },
            ),
            ItemState::Delayed { .. } => (
                it.lane,
                TaskState::Waiting {
                    reason: plan.wait_reason(id, now).unwrap_or_default(),
                },
            ),
            ItemState::Running { lane } => (
                Some(*lane),
                TaskState::Running {
                    phase: s.phase[id].unwrap_or(crate::outcome::Phase::Main),
                    waiting: s.operator[id].as_deref().map(operator_wait),
                },
            ),
            ItemState::Done {
                result,
                message,
                failure,
                lane,
            } => (
                *lane,
                TaskState::Done {
                    result: result.clone(),
                    message: message.clone(),
                    failure: *failure,
                    flaky: s.flaky[id],
                },
            ),
        };
        TaskView {
            item: id as u32,
            task_id: s.task_ids[id],
            task: it.task.clone(),
            kind: it.kind,
            group: it.group.clone(),
            lane: lane.map(|l| plan.lane_name(l).to_string()),
            state,
            est_task_time: it.def.est_task_time,
            started_ms: s.started[id],
            finished_ms: s.finished[id],
        }
    };
    let mut lanes: Vec<LaneView> = (0..plan.lane_count())
        .map(|l| LaneView {
            name: plan.lane_name(l).to_string(),
            dut: plan.lane_dut(l).cloned(),
            setup: Vec::new(),
            test: Vec::new(),
            teardown: Vec::new(),
            delay: Vec::new(),
            progress: progress_of(s, Some(l), now),
        })
        .collect();
    let mut shared = Vec::new();
    for it in plan.items() {
        let st = plan.state(it.id);
        let lane = match st {
            ItemState::Running { lane } => Some(*lane),
            ItemState::Done { lane, .. } => *lane,
            _ => it.lane,
        };
        let v = task_view(it.id);
        match lane {
            None => shared.push(v),
            Some(l) => {
                let lv = &mut lanes[l];
                if matches!(st, ItemState::Delayed { .. }) {
                    lv.delay.push(v);
                } else {
                    match it.kind {
                        TaskKind::Setup => lv.setup.push(v),
                        TaskKind::Test => lv.test.push(v),
                        TaskKind::Teardown => lv.teardown.push(v),
                    }
                }
            }
        }
    }
    RunView {
        run_id: s.run_id.clone(),
        seq: s.seq.last(),
        pack_name: s.pack_name.clone(),
        pack_version: s.pack_version.clone(),
        status: s.status,
        reason: s.reason.clone(),
        started_ms: s.started_ms,
        ended_ms: s.ended_ms,
        verdict: verdict_of(s, now),
        lanes,
        shared,
        progress: progress_of(s, None, now),
    }
}
