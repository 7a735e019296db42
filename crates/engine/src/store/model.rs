//! What the store keeps, as types every backend shares: runs, planned task occurrences,
//! their results and sub-results, the run listing's query, recovery's report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use crate::clock::EpochMs;
use crate::measure::Measurement;
pub use crate::model::{DutTarget, TaskKind};
use crate::outcome::{RunStatus, RunVerdict};
use crate::store::MeasurementRecord;
use testbay_core::reserve::ReservationView;

/// Longest [`RunQuery::text`]. Matching one text against a task message takes time
/// proportional to both lengths inside one SQLite step, which the read limit cannot
/// stop; with this bound a step stays short.
pub const MAX_SEARCH_CHARS: usize = 200;

/// A run as launched: what [`super::Store::insert_run`] is given, and the part of a
/// [`RunRecord`] fixed at launch (with its status and reason, which change later).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct NewRun {
    pub id: String,
    pub pack_name: String,
    pub pack_version: String,
    pub content_hash: String,
    pub pack_dir: String,
    pub snapshot_dir: Option<String>,
    pub groups: Vec<String>,
    pub duts: Vec<DutTarget>,
    pub ats: Option<String>,
    /// Effective global parameters (pack defaults plus overrides).
    #[ts(type = "Record<string, unknown>")]
    pub params: Value,
    pub resource_mode: String,
    pub coverage_mode: String,
    pub status: RunStatus,
    pub reason: Option<String>,
    pub created_ms: EpochMs,
    pub est_run_time: f64,
}

/// One planned task occurrence, inserted at launch.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTaskRow {
    pub seq: u32,
    /// DUT name; `None` until assigned (split coverage).
    pub lane: Option<String>,
    pub task: String,
    pub kind: TaskKind,
    pub group: Option<String>,
    pub description: String,
    pub est_task_time: f64,
}

/// Everything known when a task occurrence is done.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFinish {
    pub lane: Option<String>,
    pub result: String,
    pub failure: bool,
    pub message: String,
    pub metadata: Option<Value>,
    pub raw_result: Option<String>,
    pub run_time: Option<f64>,
    pub run_time_delta: Option<f64>,
    pub started_ms: Option<EpochMs>,
    pub finished_ms: EpochMs,
    pub setup_ms: Option<i64>,
    pub main_ms: Option<i64>,
    pub teardown_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub log_truncated: bool,
    pub sub_results: Vec<NewSubResult>,
    /// The result file's own measurements, judged already (stored with their verdict).
    pub measurements: Vec<Measurement>,
    /// Sections the task's phases reported (`exec::reporter`), phase by phase.
    pub sections: Vec<SectionRecord>,
    /// The occurrence's files; `None` fields keep what [`super::Store::task_phase_started`]
    /// recorded.
    pub paths: TaskPaths,
    /// Every attempt of a task that may be retried (`max_retries` above 0), the last one
    /// included; empty for a task that runs once.
    pub attempts: Vec<AttemptRecord>,
    /// The task passed only on a retry.
    pub flaky: bool,
}

/// One attempt of a task with `max_retries`: its own result, times and files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct AttemptRecord {
    /// 1 for the first attempt.
    pub attempt: u32,
    pub result: String,
    pub failure: bool,
    pub message: String,
    pub started_ms: Option<EpochMs>,
    pub finished_ms: EpochMs,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub paths: TaskPaths,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewSubResult {
    pub name: String,
    pub description: String,
    pub result: String,
    pub failure: bool,
    pub message: String,
    pub metadata: Option<Value>,
    pub measurements: Vec<Measurement>,
}

/// Files of one task occurrence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct TaskPaths {
    pub task_dir: Option<String>,
    pub setup_log: Option<String>,
    pub main_log: Option<String>,
    pub teardown_log: Option<String>,
    pub artifacts_dir: Option<String>,
}

/// A stored run: the run as launched (its status and reason as they are now), when it
/// started and ended, and its tallies; one flat object on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct RunRecord {
    /// The run as launched, its status and reason as they are now.
    #[serde(flatten)]
    #[ts(flatten)]
    pub launch: NewRun,
    pub started_ms: Option<EpochMs>,
    pub finished_ms: Option<EpochMs>,
    pub counts: RunCounts,
    /// What the run came to (see [`RunVerdict::of`]); none while it is going.
    #[serde(default)]
    pub verdict: Option<RunVerdict>,
}

/// A stored run reads as its launch record: `record.status` is `record.launch.status`.
impl std::ops::Deref for RunRecord {
    type Target = NewRun;
    fn deref(&self) -> &NewRun {
        &self.launch
    }
}

/// Per-run tallies, for listings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct RunCounts {
    pub total: u32,
    pub done: u32,
    /// Done with a result outside the run's `valid_result`, `Aborted` not included; in
    /// an `errored` run, also every task whose result the store lacks (the run went to
    /// its end, so each one had a result, and a lost result is a failure).
    pub failures: u32,
    /// Done as `Aborted` (a stop, a dead console): not run to their end, not failed.
    #[serde(default)]
    pub aborted: u32,
    /// Count per result name.
    pub by_result: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct SubResultRecord {
    pub name: String,
    pub description: String,
    pub result: String,
    pub failure: bool,
    pub message: String,
    #[ts(type = "Record<string, unknown> | null")]
    pub metadata: Option<Value>,
    /// Its measurements with their verdicts.
    #[serde(default)]
    pub measurements: Vec<MeasurementRecord>,
}

/// State of a stored task occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum StoredTaskState {
    Pending,
    Running,
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct TaskRecord {
    #[ts(type = "number")]
    pub id: i64,
    pub run_id: String,
    pub seq: u32,
    pub lane: Option<String>,
    pub task: String,
    pub kind: TaskKind,
    pub group: Option<String>,
    pub description: String,
    pub state: StoredTaskState,
    pub result: Option<String>,
    pub failure: Option<bool>,
    pub message: Option<String>,
    #[ts(type = "Record<string, unknown> | null")]
    pub metadata: Option<Value>,
    pub raw_result: Option<String>,
    /// kissats Reporting timing, seconds.
    pub est_task_time: f64,
    pub run_time: Option<f64>,
    pub run_time_delta: Option<f64>,
    pub started_ms: Option<EpochMs>,
    pub finished_ms: Option<EpochMs>,
    pub setup_ms: Option<i64>,
    pub main_ms: Option<i64>,
    pub teardown_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Phase running now (while `state` is running).
    pub phase: Option<String>,
    pub paths: TaskPaths,
    pub log_truncated: bool,
    pub pgid: Option<i32>,
    pub sub_results: Vec<SubResultRecord>,
    /// Passed only on a retry (`max_retries`): its earlier attempts failed.
    pub flaky: bool,
    /// Every attempt of a task that may be retried, in order, the last one (whose result
    /// is the task's) included; empty for a task that runs once.
    pub attempts: Vec<AttemptRecord>,
    /// The task's own measurements (its sub-results' are in `sub_results`).
    #[serde(default)]
    pub measurements: Vec<MeasurementRecord>,
    /// Sections its phases reported, setup's first, each phase's in the order they
    /// started (`section.parent` is an id within the same phase).
    pub sections: Vec<SectionRecord>,
}

/// One section a task phase reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct SectionRecord {
    /// `setup`, `main` or `teardown`.
    pub phase: String,
    pub section: crate::reporter::Section,
}

/// Sort key of the run listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum RunSort {
    #[default]
    Created,
    Pack,
    Status,
    Duration,
    Failures,
}

/// Filters, sort and page of the run listing. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
#[ts(export)]
pub struct RunQuery {
    pub pack: Option<String>,
    pub group: Option<String>,
    /// DUT name; `*` matches any characters (`stb-0*`).
    pub dut: Option<String>,
    pub ats: Option<String>,
    pub status: Option<RunStatus>,
    /// Runs with at least one task with this result.
    pub result: Option<String>,
    /// Runs with at least one failure, and every `errored` run (a failure whatever its
    /// stored results say).
    pub failed_only: bool,
    pub from_ms: Option<EpochMs>,
    pub to_ms: Option<EpochMs>,
    /// Substring of the run id, pack name, reason, a DUT name, a task name or a task
    /// message; at most 200 characters (`MAX_SEARCH_CHARS`).
    pub text: Option<String>,
    pub sort: RunSort,
    /// Ascending instead of the default descending.
    pub ascending: bool,
    pub offset: u32,
    /// 0 means 50.
    pub limit: u32,
    /// Keyset paging: the runs after this one (the id of the last run of the previous
    /// page) in the listing's order, found from the index whatever the depth; `offset`
    /// then skips from there. Only with `sort` `created`; a run since removed gives an
    /// empty page.
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl RunQuery {
    /// The run `after` names, when paging after it is allowed: keyset paging follows the
    /// order of creation only. Both backends check it here.
    pub fn keyset_after(&self) -> crate::store::Result<Option<&str>> {
        match &self.after {
            None => Ok(None),
            Some(_) if self.sort != RunSort::Created => {
                Err(crate::store::StoreError::InvalidQuery {
                    key: "after",
                    message: "paging after a run goes with sort=created only".into(),
                })
            }
            Some(after) => Ok(Some(after)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct RunPage {
    /// Runs matching the filters, all pages.
    pub total: u32,
    pub runs: Vec<RunRecord>,
}

/// What recovery of interrupted runs did ([`super::Store::mark_interrupted`], and the
/// leftover processes `run::recover_interrupted` killed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct RecoveryReport {
    pub interrupted_runs: Vec<String>,
    pub aborted_tasks: u32,
    /// Leftover task processes killed.
    pub killed_processes: u32,
}

/// One stored book event: what happened to which reservation, and its window then. The
/// reservation's details are in `reservations` while it lives and in `reservation_history`
/// after it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: u64,
    pub ts: EpochMs,
    pub kind: String,
    pub reason: Option<String>,
    pub reservation_id: u64,
    pub resource: String,
    pub start: EpochMs,
    pub end: EpochMs,
    pub expires: EpochMs,
}

/// What a restarted book needs: the stored live reservations (some may have expired
/// meanwhile; the book drops those), the next id and the next event sequence number.
#[derive(Debug, Clone, Default)]
pub struct SavedBook {
    pub live: Vec<ReservationView>,
    pub next_id: u64,
    pub next_seq: u64,
}
