//! The pack author's contract as Rust types. These types are the one source of truth:
//! `schemas/*.schema.json` are generated from them (see `schema`), and a test fails when
//! the committed files drift. Defaults mirror kissats' Cerberus schemas.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ts_rs::TS;

use crate::measure::Measurement;
use crate::outcome::default_valid_result;

/// kissats resource run modes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema, TS,
)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum ResourceMode {
    /// Reserve everything every task needs for the estimated run time before starting.
    #[default]
    All,
    /// Reserve per task; each task holds its own set.
    PerTaskSeparate,
    /// Reserve per task; resources common to consecutive tasks are held once.
    PerTaskCombine,
    /// As `all`, after the pack's `scheduler` program ordered the queue.
    CustomAll,
    /// As `per_task_separate`, after the pack's `scheduler` program ordered the queue.
    CustomSeparate,
    /// As `per_task_combine`, after the pack's `scheduler` program ordered the queue.
    CustomCombine,
}

/// How tests are spread over several DUTs (StormTest coverage modes).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema, TS,
)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum CoverageMode {
    /// Every DUT runs the whole list in order.
    #[default]
    Dut,
    /// Every DUT runs every test; a free DUT takes the least-run test first.
    Test,
    /// Each test runs once, on whichever DUT is free.
    Split,
}

/// Global parameters (kissats "Global Parameters"): `params:` in pack.yaml, overridable at
/// launch. Keys not listed here are passed through to the tasks in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(default)]
#[ts(export)]
pub struct GlobalParams {
    /// Results that count as a non-failure; any other string is a failure.
    pub valid_result: Vec<String>,
    /// How many `process_safe` tasks may run side by side on one DUT: 1 to 1,024.
    #[schemars(range(min = 1, max = "crate::bounds::MAX_PROCESS_LIMIT"))]
    pub process_limit: u32,
    /// How resources are reserved for a run (kissats resource run modes).
    pub resource_mode: ResourceMode,
    /// How tests are spread over several DUTs.
    pub coverage_mode: CoverageMode,
    /// Ignore `prereq_tasks` entirely.
    pub ignore_prereq: bool,
    /// Any other key: passed to every task in its params file.
    #[serde(flatten)]
    #[ts(skip)]
    pub extra: Map<String, Value>,
}

impl Default for GlobalParams {
    fn default() -> Self {
        Self {
            valid_result: default_valid_result(),
            process_limit: 5,
            resource_mode: ResourceMode::All,
            coverage_mode: CoverageMode::Dut,
            ignore_prereq: false,
            extra: Map::new(),
        }
    }
}

/// One test group of a pack.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema, TS)]
#[serde(default, deny_unknown_fields)]
#[ts(export)]
pub struct GroupDef {
    /// What the group is for, shown in the console.
    pub description: String,
    /// The group's tests, in order.
    pub tests: Vec<String>,
    /// Group setup tasks, run before the group's tests.
    pub setup: Vec<String>,
    /// Group teardown tasks, run after the group's tests.
    pub teardown: Vec<String>,
}

/// `pack.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct PackDef {
    /// Pack name: letters, digits, `_`, `-` and `.`.
    pub name: String,
    /// Pack version, stored with every run.
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// Global parameters: defaults of every run, overridable at launch.
    #[serde(default)]
    pub params: GlobalParams,
    /// Global setup tasks, in order.
    #[serde(default)]
    pub setup: Vec<String>,
    /// Global teardown tasks, in order.
    #[serde(default)]
    pub teardown: Vec<String>,
    /// Test groups by name.
    #[serde(default)]
    #[ts(as = "std::collections::HashMap<String, GroupDef>")]
    pub groups: IndexMap<String, GroupDef>,
    /// Ordering program for the `custom_*` resource modes: argv relative to the pack
    /// folder. It reads the queue as JSON on stdin and writes the task names in order.
    #[serde(default)]
    pub scheduler: Option<Vec<String>>,
}

/// `tasks/<name>.yaml` (kissats "Task Parameters" plus the programs to run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct TaskDef {
    /// Task name; must equal the file name without `.yaml`.
    pub name: String,
    /// Short description of the task.
    #[serde(default)]
    pub description: String,
    /// argv of the main phase, relative to the task file's folder (kissats task_main).
    pub run: Vec<String>,
    /// argv of the optional setup phase (task_setup).
    #[serde(default)]
    pub setup: Option<Vec<String>>,
    /// argv of the optional teardown phase (task_teardown).
    #[serde(default)]
    pub teardown: Option<Vec<String>>,
    /// Run teardown even when setup or main failed.
    #[serde(default)]
    pub always_teardown: bool,
    /// If this task fails, what has not run becomes Skipped (teardowns still run).
    #[serde(default = "yes")]
    pub stop_suite_on_fail: bool,
    /// Lab resources this task holds alone while it runs.
    #[serde(default)]
    pub exclusive_resources: Vec<String>,
    /// Lab resources this task shares with other holders.
    #[serde(default)]
    pub shared_resources: Vec<String>,
    /// Configuration requested per resource; keys must name a resource of this task.
    #[serde(default)]
    #[ts(type = "Record<string, unknown>")]
    pub resource_configs: Map<String, Value>,
    /// If resources are busy, how many times to retry: 0 to 10,000.
    #[serde(default = "five")]
    #[schemars(range(max = "crate::bounds::MAX_RESOURCE_RETRY"))]
    pub max_resource_retry: u32,
    /// Longest wait for busy resources, in seconds (at most 30 days); none waits
    /// indefinitely.
    #[serde(default)]
    #[schemars(range(min = 0, max = "crate::bounds::MAX_RESOURCE_WAIT_S"))]
    pub max_resource_wait: Option<f64>,
    /// A task whose result is a failure runs again, up to this many more times: 0 to 10.
    /// Each attempt is stored with its own logs; the task's result is its last attempt's,
    /// and a task that passed only on a retry is marked `flaky`.
    #[serde(default)]
    #[schemars(range(max = "crate::bounds::MAX_TASK_RETRIES"))]
    pub max_retries: u32,
    /// May run beside other tasks on the same DUT.
    #[serde(default)]
    pub process_safe: bool,
    /// ATS names this task may run on; `any` or wildcards (`rack-*`).
    #[serde(default = "any")]
    pub valid_ats: Vec<String>,
    /// DUT names or models this task may run on; `any` or wildcards.
    #[serde(default = "any")]
    pub valid_duts: Vec<String>,
    /// Keys that must be present in the run's global parameters.
    #[serde(default)]
    pub req_param_keys: Vec<String>,
    /// Global parameters the task uses when they are present.
    #[serde(default)]
    pub optional_param_keys: Vec<String>,
    /// Tasks that must have run with a valid result before this one.
    #[serde(default)]
    pub prereq_tasks: Vec<String>,
    /// Estimated time in seconds, setup and teardown included: 0 to 7 days.
    #[serde(default = "hour")]
    #[schemars(range(min = 0, max = "crate::bounds::MAX_TASK_TIME_S"))]
    pub est_task_time: f64,
    /// easypy max_runtime: terminate the task after this many seconds (more than 0, at
    /// most 7 days); none runs without a limit.
    #[serde(default)]
    #[schemars(range(min = 0, max = "crate::bounds::MAX_TASK_TIME_S"))]
    pub max_runtime: Option<f64>,
    /// Lower runs first: -1,000,000 to 1,000,000.
    #[serde(default = "five_i")]
    #[schemars(range(
        min = "crate::bounds::MIN_PRIORITY",
        max = "crate::bounds::MAX_PRIORITY"
    ))]
    pub priority: i32,
    /// Free data for the task, passed in its params file.
    #[serde(default)]
    #[ts(type = "Record<string, unknown> | null")]
    pub extra_metadata: Option<Map<String, Value>>,
}

fn yes() -> bool {
    true
}
fn five() -> u32 {
    5
}
fn five_i() -> i32 {
    5
}
fn hour() -> f64 {
    3600.0
}
fn any() -> Vec<String> {
    vec!["any".into()]
}

/// One entry of a task's result file's `multi_result` (kissats Task Return).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct SubResult {
    /// Name of the sub-test, unique within the task.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Its result; any string not in `valid_result` is a failure.
    pub result: String,
    #[serde(default)]
    pub metadata: ResultMetadata,
    /// Numbers this sub-test measured, each judged against its limits; one out of limits
    /// fails the sub-result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
}

/// `metadata` of a result: `message` plus any other keys.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema, TS)]
#[ts(export)]
pub struct ResultMetadata {
    /// One line saying what happened, shown beside the result.
    #[serde(default)]
    pub message: String,
    #[serde(flatten)]
    #[ts(skip)]
    pub extra: Map<String, Value>,
}

/// The file a task may write at `TESTBAY_RESULT` (kissats Task Return).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct TaskReturn {
    /// The task's result; any string not in `valid_result` is a failure.
    pub result: String,
    #[serde(default)]
    pub metadata: ResultMetadata,
    /// Several results reported by one task, one per sub-test.
    #[serde(default)]
    pub multi_result: Option<Vec<SubResult>>,
    /// Numbers the task measured, each judged against its limits; one out of limits fails
    /// the task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
}

/// Timing block of a reported result (kissats Reporting schema `metadata`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema, TS)]
#[ts(export)]
pub struct ReportTiming {
    /// Seconds the task took, all phases.
    pub run_time: f64,
    pub est_task_time: f64,
    /// run_time - est_task_time.
    pub run_time_delta: f64,
}

/// One reported result (kissats Reporting schema): what the engine stores per task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[ts(export)]
pub struct Reporting {
    pub name: String,
    pub description: String,
    pub result: String,
    pub metadata: ReportTiming,
}
