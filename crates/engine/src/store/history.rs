//! What the store answers about results across runs: stored measurements with their
//! verdicts, one task's history, one measurement's history, yield per DUT model, and a
//! pack's recent results (what flaky detection reads).

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::clock::EpochMs;
use crate::measure::{Comparison, Measurement};
use crate::outcome::RunStatus;
use crate::store::{StoredTaskState, TaskKind};

/// Most entries one history answer holds.
pub const MAX_HISTORY: u32 = 1000;
/// Entries of a history answer unless asked otherwise.
pub const DEFAULT_HISTORY: u32 = 100;

/// `limit` as a history query takes it: 0 means [`DEFAULT_HISTORY`], at most
/// [`MAX_HISTORY`].
pub fn history_limit(limit: u32) -> u32 {
    if limit == 0 {
        DEFAULT_HISTORY
    } else {
        limit.min(MAX_HISTORY)
    }
}

/// A stored measurement with its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct MeasurementRecord {
    pub name: String,
    pub value: f64,
    pub units: Option<String>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// The comparison that applied (given, or chosen from the limits).
    pub comparison: Comparison,
    /// Within its limits; `null` when only logged (`LOG`).
    pub passed: Option<bool>,
}

impl MeasurementRecord {
    /// A measurement as judged now (one that cannot be judged is out of limits).
    pub fn judged(m: &Measurement) -> Self {
        Self {
            name: m.name.clone(),
            value: m.value,
            units: m.units.clone(),
            low: m.low,
            high: m.high,
            comparison: m.effective_comparison(),
            passed: m.passed(),
        }
    }
}

/// Which task's history: pack and task name, optionally one DUT model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
#[ts(export)]
pub struct TaskHistoryQuery {
    pub pack: String,
    pub task: String,
    pub dut_model: Option<String>,
    /// Newest occurrences; 0 means 100, at most 1,000.
    pub limit: u32,
}

/// One occurrence of a task in a stored run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct TaskHistoryEntry {
    pub run_id: String,
    pub run_created_ms: EpochMs,
    pub run_status: RunStatus,
    #[ts(type = "number")]
    pub task_id: i64,
    pub task: String,
    pub seq: u32,
    /// DUT name.
    pub lane: Option<String>,
    pub dut_model: Option<String>,
    pub group: Option<String>,
    pub kind: TaskKind,
    pub state: StoredTaskState,
    pub result: Option<String>,
    pub failure: Option<bool>,
    pub message: Option<String>,
    pub est_task_time: f64,
    pub run_time: Option<f64>,
    pub started_ms: Option<EpochMs>,
    /// Passed only on a retry (`max_retries`).
    #[serde(default)]
    pub flaky: bool,
}

/// Which measurement's history: pack, task, sub-result (none: the task's own) and name,
/// optionally one DUT model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
#[ts(export)]
pub struct MeasurementQuery {
    pub pack: String,
    pub task: String,
    pub sub_result: Option<String>,
    pub name: String,
    pub dut_model: Option<String>,
    /// Newest values; 0 means 100, at most 1,000.
    pub limit: u32,
}

/// One stored value of a measurement, newest first in an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct MeasurementPoint {
    pub run_id: String,
    pub run_created_ms: EpochMs,
    #[ts(type = "number")]
    pub task_id: i64,
    pub lane: Option<String>,
    pub dut_model: Option<String>,
    pub measurement: MeasurementRecord,
}

/// Yield of a pack on one DUT model: of the runs with measurements there, how many had
/// every measurement within its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct YieldRow {
    pub pack: String,
    /// `null`: tasks that ran without a DUT model.
    pub dut_model: Option<String>,
    pub runs: u32,
    pub passed_runs: u32,
    /// passed_runs / runs.
    pub yield_rate: f64,
}

/// A run pinned as its pack's baseline on one DUT model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Baseline {
    pub pack: String,
    /// `null`: runs without a DUT model.
    pub dut_model: Option<String>,
    pub run_id: String,
    pub pinned_ms: EpochMs,
}
