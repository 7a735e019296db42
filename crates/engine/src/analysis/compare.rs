//! Two runs compared, A (older, the reference) against B: which task occurrences newly
//! fail, were fixed, still fail, still pass, were added or removed, whose result or
//! message changed, whose duration grew beyond a threshold, and which global parameters
//! differ.
//!
//! Occurrences are matched by kind, group, task and DUT (lane). When each run has one
//! DUT and they differ (a baseline on another DUT of the model), the DUT is left out of
//! the match. A task that occurs more than once under one key is matched in order.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use crate::store::{RunRecord, StoredTaskState, TaskRecord};

/// A duration regression unless asked otherwise: B took 20% longer than A.
pub const DEFAULT_DURATION_THRESHOLD: f64 = 0.2;
/// Durations under this many seconds in both runs are never regressions (noise).
const MIN_REGRESSION_S: f64 = 0.5;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
#[ts(export)]
pub struct CompareOptions {
    /// A duration regression is B over A by more than this share (0.2 = 20%); 0 means
    /// 0.2.
    pub duration_threshold: f64,
}

/// One matched (or unmatched) occurrence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct TaskDiff {
    pub task: String,
    pub group: Option<String>,
    pub lane: Option<String>,
    #[ts(type = "number | null")]
    pub a_task_id: Option<i64>,
    #[ts(type = "number | null")]
    pub b_task_id: Option<i64>,
    pub a_result: Option<String>,
    pub b_result: Option<String>,
    pub a_message: Option<String>,
    pub b_message: Option<String>,
    pub a_run_time: Option<f64>,
    pub b_run_time: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ParamDiff {
    pub key: String,
    #[ts(type = "unknown")]
    pub a: Option<Value>,
    #[ts(type = "unknown")]
    pub b: Option<Value>,
}

/// The comparison of run A (reference) with run B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct RunCompare {
    pub a: String,
    pub b: String,
    /// Passed (or not run) in A, failed in B.
    pub new_failures: Vec<TaskDiff>,
    /// Failed in A, passed in B.
    pub fixed: Vec<TaskDiff>,
    pub still_failing: Vec<TaskDiff>,
    pub still_passing: Vec<TaskDiff>,
    /// In B only.
    pub added: Vec<TaskDiff>,
    /// In A only.
    pub removed: Vec<TaskDiff>,
    /// Both done, with another result name.
    pub result_changes: Vec<TaskDiff>,
    /// Same result, another message.
    pub message_changes: Vec<TaskDiff>,
    /// B took longer than A by more than the threshold.
    pub duration_regressions: Vec<TaskDiff>,
    pub duration_threshold: f64,
    pub param_differences: Vec<ParamDiff>,
}

type Key = (String, Option<String>, String, Option<String>, usize);

fn keyed(tasks: &[TaskRecord], with_lane: bool) -> BTreeMap<Key, &TaskRecord> {
    let mut seen: BTreeMap<(String, Option<String>, String, Option<String>), usize> =
        BTreeMap::new();
    let mut out = BTreeMap::new();
    for t in tasks {
        let lane = if with_lane { t.lane.clone() } else { None };
        let base = (
            t.kind.as_str().to_string(),
            t.group.clone(),
            t.task.clone(),
            lane,
        );
        let n = seen.entry(base.clone()).or_default();
        out.insert((base.0, base.1, base.2, base.3, *n), t);
        *n += 1;
    }
    out
}

fn lanes(tasks: &[TaskRecord]) -> BTreeSet<Option<String>> {
    tasks.iter().map(|t| t.lane.clone()).collect()
}

/// Compare run `a` (the reference) with run `b`.
pub fn compare_runs(
    a: &RunRecord,
    a_tasks: &[TaskRecord],
    b: &RunRecord,
    b_tasks: &[TaskRecord],
    opts: &CompareOptions,
) -> RunCompare {
    let threshold = if opts.duration_threshold > 0.0 && opts.duration_threshold.is_finite() {
        opts.duration_threshold
    } else {
        DEFAULT_DURATION_THRESHOLD
    };
    let (la, lb) = (lanes(a_tasks), lanes(b_tasks));
    let with_lane = !(la.len() <= 1 && lb.len() <= 1 && la != lb);
    let ka = keyed(a_tasks, with_lane);
    let kb = keyed(b_tasks, with_lane);
    let mut out = RunCompare {
        a: a.id.clone(),
        b: b.id.clone(),
        new_failures: vec![],
        fixed: vec![],
        still_failing: vec![],
        still_passing: vec![],
        added: vec![],
        removed: vec![],
        result_changes: vec![],
        message_changes: vec![],
        duration_regressions: vec![],
        duration_threshold: threshold,
        param_differences: vec![],
    };
    let diff = |ta: Option<&TaskRecord>, tb: Option<&TaskRecord>| {
        let t = tb.or(ta).expect("one side");
        TaskDiff {
            task: t.task.clone(),
            group: t.group.clone(),
            lane: t.lane.clone(),
            a_task_id: ta.map(|t| t.id),
            b_task_id: tb.map(|t| t.id),
            a_result: ta.and_then(|t| t.result.clone()),
            b_result: tb.and_then(|t| t.result.clone()),
            a_message: ta.and_then(|t| t.message.clone()),
            b_message: tb.and_then(|t| t.message.clone()),
            a_run_time: ta.and_then(|t| t.run_time),
            b_run_time: tb.and_then(|t| t.run_time),
        }
    };
    let failed = |t: &TaskRecord| t.failure == Some(true);
    let done = |t: &TaskRecord| t.state == StoredTaskState::Done;
    for (k, ta) in &ka {
        let Some(tb) = kb.get(k) else {
            out.removed.push(diff(Some(ta), None));
            continue;
        };
        let d = diff(Some(ta), Some(tb));
        match (failed(ta), failed(tb)) {
            (false, true) => out.new_failures.push(d.clone()),
            (true, false) if done(tb) => out.fixed.push(d.clone()),
            (true, true) => out.still_failing.push(d.clone()),
            (false, false) if done(ta) && done(tb) => out.still_passing.push(d.clone()),
            _ => {}
        }
        if done(ta) && done(tb) {
            if ta.result != tb.result {
                out.result_changes.push(d.clone());
            } else if ta.message.as_deref().unwrap_or("") != tb.message.as_deref().unwrap_or("") {
                out.message_changes.push(d.clone());
            }
        }
        if let (Some(x), Some(y)) = (ta.run_time, tb.run_time) {
            if y > x * (1.0 + threshold) && y.max(x) >= MIN_REGRESSION_S {
                out.duration_regressions.push(d);
            }
        }
    }
    for (k, tb) in &kb {
        if !ka.contains_key(k) {
            out.added.push(diff(None, Some(tb)));
        }
    }
    let (pa, pb) = (a.params.as_object(), b.params.as_object());
    let keys: BTreeSet<&String> = pa
        .iter()
        .flat_map(|m| m.keys())
        .chain(pb.iter().flat_map(|m| m.keys()))
        .collect();
    for key in keys {
        let va = pa.and_then(|m| m.get(key)).cloned();
        let vb = pb.and_then(|m| m.get(key)).cloned();
        if va != vb {
            out.param_differences.push(ParamDiff {
                key: key.clone(),
                a: va,
                b: vb,
            });
        }
    }
    out
}
