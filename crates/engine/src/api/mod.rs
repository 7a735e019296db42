//! The one command list of the console, and the console itself. Every transport (the
//! CLI, axum in `crates/server`, Tauri in `src-tauri`) holds a [`Console`] and only calls
//! [`Console::dispatch`], [`Console::subscribe`] and [`Console::shutdown`];
//! [`LocalConsole`] is the engine in this process behind it.
//!
//! Wire format (TypeScript types are generated into `ui/src/lib/api/generated/`):
//! - a request is `{"cmd": "<name>", ...fields}` ([`Request`]);
//! - its answer is `{"cmd": "<name>", "data": ...}` ([`Response`], same `cmd` as the
//!   request) or an [`ApiError`] `{"code", "message", "diagnostics"}`;
//! - an event is `{"kind": "<name>", "data": ...}` ([`Event`]). After `resync` the client
//!   has missed events and must reload what it shows.

mod artifacts;
mod console;
mod error;
pub mod files;
pub mod frames;
mod holds;
pub mod lab_view;
mod local;
mod logs;
mod packs;
pub mod paths;
mod results;
mod runs;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ts_rs::TS;

// The engine's types a request, an answer or an event carries, named here so a
// transport finds everything the API speaks in one place.
pub use crate::clock::EpochMs;
pub use crate::lab::Dut;
pub use crate::outcome::{Phase, RunStatus};
pub use crate::pack::view::{PackDetail, PackSummary};
pub use crate::pack::{CoverageMode, ResourceMode};
pub use crate::report::ReportFormat;
pub use crate::reserve::{
    BookEvent, Holder, ResId, ReservationMode, ReservationStatus, ReservationView, ResourceHolds,
};
pub use crate::run::{LaneView, Progress, RunEvent, RunView, TaskState, TaskView};
pub use crate::store::{
    RecoveryReport, RunCounts, RunPage, RunQuery, RunRecord, RunSort, StoredTaskState,
    SubResultRecord, TaskKind, TaskRecord,
};

pub use artifacts::{ArtifactEntry, TaskDetail};
pub use console::{Console, EventReceiver, Reply, EVENT_CAPACITY};
pub use error::{ApiError, ErrorCode};
pub use files::FileContent;
pub use lab_view::{LabView, RackView, Reservations, ResourceView, SlotState, SlotView};
pub use local::{BookUse, ConsoleOptions, LocalConsole};
pub use logs::LogChunk;
pub use paths::ConsolePaths;

/// Every command a client can send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "cmd", rename_all = "snake_case")]
#[serde(deny_unknown_fields)] // separate: ts-rs ignores an attribute it cannot read whole
pub enum Request {
    /// Version and the paths this console works on.
    Info,
    /// The pack library: every pack folder, broken ones with their diagnostics.
    ListPacks,
    /// One pack by name: groups, tasks, parameters, resources.
    GetPack { name: String },
    /// Validate and start a run; answers with its id once it is stored.
    Launch(LaunchSpec),
    /// Stop a running run: running tasks are terminated, the rest become Aborted.
    StopRun { run_id: String },
    /// Live state of every run going now.
    ActiveRuns,
    /// Live state of one run (lanes, queues, every task's state, progress).
    RunView { run_id: String },
    /// Bytes of a task's log from `offset` (at most `max_bytes`, default 64 KiB), cut at
    /// a line end; poll again from `next_offset` to follow it.
    ReadLog {
        run_id: String,
        #[ts(type = "number")]
        task_id: i64,
        phase: Phase,
        #[ts(type = "number")]
        offset: u64,
        #[serde(default)]
        max_bytes: Option<u32>,
    },
    /// A whole file of a run (log or artifact), `path` relative to the run's folder
    /// `<data_dir>/runs/<run_id>/`; nothing outside it, at most 16 MiB (`too_large`).
    ReadFile { run_id: String, path: String },
    /// Stored runs: filters, sort and paging done here, not in the client.
    ListRuns(RunQuery),
    /// A stored run with its task occurrences and their sub-results, in plan order: from
    /// `offset` (default 0), at most `limit` (default and most: 10,000, the most a run
    /// holds) and 16 MiB of them; `next_offset` says where the next page starts.
    GetRun {
        run_id: String,
        #[serde(default)]
        #[ts(optional)]
        offset: Option<u32>,
        #[serde(default)]
        #[ts(optional)]
        limit: Option<u32>,
    },
    /// A stored run as a file: JUnit XML, results.yaml or JSON.
    Export {
        run_id: String,
        format: ReportFormat,
    },
    /// The lab: racks and their slots' state, DUTs, resources.
    GetLab,
    /// DUTs matching StormTest-style terms (`Model==TP-*  Manufacturer==Acme`, space
    /// separated); with `pack`, only DUTs some task of the pack may run on; with `ats`,
    /// only DUTs in that rack.
    SearchDuts {
        query: String,
        #[serde(default)]
        pack: Option<String>,
        #[serde(default)]
        ats: Option<String>,
    },
    /// Who holds, is booked for, or waits for every DUT and resource.
    Reservations,
    /// An operator's hold on a DUT or resource for `duration_s` seconds (more than 0, at
    /// most 30 days) from `from_ms` (default now; within 10 years of now); with
    /// `next_available`, the next free window instead of failing.
    Hold {
        resource: String,
        by: String,
        duration_s: f64,
        #[serde(default)]
        from_ms: Option<EpochMs>,
        #[serde(default)]
        next_available: bool,
    },
    /// End a reservation or hold.
    Release { id: ResId },
    /// The prompts running tasks wait on an operator's answer to.
    ListPrompts,
    /// Answer a prompt: one of its choices, or text matching its pattern. `by` says who
    /// answered (the task gets it with the answer).
    AnswerPrompt {
        #[ts(type = "number")]
        id: u64,
        answer: String,
        #[serde(default)]
        by: Option<String>,
    },
}

/// What the launch form sends: the pack by name, DUTs by name. At most 100 groups, 256
/// DUTs and 256 parameter overrides (64 KiB as JSON), expanding to at most 10,000 task
/// occurrences (`bounds`); more is refused as `too_large`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
pub struct LaunchSpec {
    pub pack: String,
    /// Groups in order; empty runs every group.
    pub groups: Vec<String>,
    /// The ATS (rack) of the run: with a lab, a rack holding every DUT; none takes the
    /// rack the DUTs sit in.
    pub ats: Option<String>,
    /// One lane per DUT; empty runs one lane without a DUT. `NAME`, or `NAME:MODEL` to
    /// name its model; with a lab file, a DUT of the lab (its model from the lab unless
    /// named), without one any name.
    pub duts: Vec<String>,
    /// Overrides of the pack's global parameters.
    #[ts(type = "Record<string, unknown>")]
    pub params: Map<String, Value>,
    pub resource_mode: Option<ResourceMode>,
    pub coverage_mode: Option<CoverageMode>,
}

/// The answer to a [`Request`], tagged with the request's `cmd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "cmd", content = "data", rename_all = "snake_case")]
pub enum Response {
    Info(ConsoleInfo),
    ListPacks(Vec<PackSummary>),
    GetPack(Box<PackDetail>),
    Launch {
        run_id: String,
        /// DUTs (first) and lab resources the run uses without reserving them: the
        /// console has no lab file, or reserves nothing (`testbay run --no-reserve`).
        #[serde(default)]
        unreserved: Vec<String>,
    },
    StopRun {
        run_id: String,
    },
    ActiveRuns(Vec<RunView>),
    RunView(Box<RunView>),
    ReadLog(LogChunk),
    ReadFile(FileContent),
    ListRuns(RunPage),
    GetRun(Box<RunDetail>),
    Export(ExportFile),
    GetLab(Box<LabView>),
    SearchDuts(Vec<Dut>),
    Reservations(Reservations),
    Hold(ReservationView),
    Release {
        id: ResId,
    },
    ListPrompts(Vec<crate::exec::prompts::PromptView>),
    AnswerPrompt(crate::exec::prompts::PromptView),
}

/// A report to save: the client offers it as a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ExportFile {
    pub filename: String,
    pub mime: String,
    pub content: String,
}

/// A stored run and a page of its task occurrences in plan order, with their artifact
/// files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct RunDetail {
    pub run: RunRecord,
    pub tasks: Vec<TaskDetail>,
    /// Task occurrences of the run, all pages.
    pub tasks_total: u32,
    /// Index of `tasks[0]` among them.
    pub tasks_offset: u32,
    /// Where the next page starts; none after the last.
    pub next_offset: Option<u32>,
    /// Live state while the run is going.
    pub live: Option<RunView>,
}

/// Everything that changes by itself, pushed to every subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// This subscriber fell behind and `missed` events were dropped: reload.
    Resync {
        #[ts(type = "number")]
        missed: u64,
    },
    /// A run's status, a task's state, a log line, progress.
    Run(RunEvent),
    /// Pack folders were reloaded, added or removed on disk: list the packs again.
    PacksChanged { dirs: Vec<String> },
    /// A change in the reservation book (requested, claimed, released, expired, ...).
    Book(BookEvent),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ConsoleInfo {
    pub version: String,
    pub data_dir: String,
    pub pack_roots: Vec<String>,
    pub lab_file: Option<String>,
}

/// Parse a request from JSON; a bad one becomes an `invalid_request` error naming what
/// is wrong (unknown `cmd`, missing or mistyped field) and where.
pub fn parse_request(json: &[u8]) -> Result<Request, ApiError> {
    serde_json::from_slice(json).map_err(|e| ApiError::invalid(format!("bad request: {e}")))
}
