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

pub mod access;
mod agents;
mod artifacts;
mod console;
mod error;
pub mod files;
pub mod frames;
mod handover;
mod health;
mod history;
mod holds;
pub mod lab_view;
mod local;
mod logs;
mod packs;
pub mod past;
pub mod paths;
pub mod queue;
mod relaunch;
pub mod relay;
pub mod retention;
mod triage;
mod results;
pub mod schedules;
mod runs;
mod webhooks;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ts_rs::TS;

// The engine's types a request, an answer or an event carries, named here so a
// transport finds everything the API speaks in one place.
pub use crate::analysis::{CompareOptions, FlakyQuery, FlakyTask, RunCompare};
pub use crate::clock::EpochMs;
pub use crate::lab::Dut;
pub use crate::lab::HealthCheck;
pub use crate::outcome::{Phase, RunStatus, RunVerdict};
pub use crate::pack::view::{LibraryInfo, PackDetail, PackSummary};
pub use crate::pack::{CoverageMode, ResourceMode};
pub use crate::report::ReportFormat;
pub use crate::reserve::{
    BookEvent, Holder, ResId, ReservationMode, ReservationStatus, ReservationView, ResourceHolds,
};
pub use crate::run::{LaneView, Progress, RunEvent, RunView, TaskState, TaskView};
pub use crate::store::{
    AttemptRecord, Baseline, DeliveryStatus, DutHealth, Health, HealthChange, MeasurementPoint,
    MeasurementQuery, MeasurementRecord, TaskHistoryEntry, TaskHistoryQuery, Webhook,
    WebhookDelivery, WebhookEvent, YieldRow,
};
pub use crate::store::{
    RecoveryReport, RunCounts, RunPage, RunQuery, RunRecord, RunSort, StoredTaskState,
    SubResultRecord, TaskKind, TaskRecord,
};

pub use crate::store::{AuditEntry, AuditQuery, Role, User};
pub use access::{authorize, Caller, CallerView};
pub use artifacts::{ArtifactEntry, TaskDetail};
pub use console::{Console, EventReceiver, Reply, EVENT_CAPACITY};
pub use error::{ApiError, ErrorCode};
pub use files::FileContent;
pub use lab_view::{LabView, RackView, Reservations, ResourceView, SlotState, SlotView};
pub use local::{BookUse, ConsoleOptions, LocalConsole};
pub use logs::LogChunk;
pub use past::PastReservation;
pub use paths::ConsolePaths;
pub use queue::{Move, Priority, QueueChange, QueueChangeKind, QueueView, QueuedRunView};
pub use retention::{DataUsage, PruneReport, RunKeep};
pub use schedules::{FiringView, ScheduleDef, ScheduleDetail, ScheduleView};
pub use testbay_core::settings::RetentionPolicy;
pub use testbay_core::triage::TriageRule;
pub use triage::{CategoryCount, TriageRules, TriageSummary, TriagedFailure};

/// Every command a client can send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "cmd", rename_all = "snake_case")]
#[serde(deny_unknown_fields)] // separate: ts-rs ignores an attribute it cannot read whole
pub enum Request {
    /// Version and the paths this console works on.
    Info,
    /// The pack library: every pack folder, broken ones with their diagnostics, then the
    /// versions of the lab's pack library the caller sees (each with `library`: owner,
    /// private, when pushed).
    ListPacks,
    /// One pack by name (a pack folder's; else a library version by `NAME`, its newest,
    /// `NAME@VERSION` or content hash): groups, tasks, parameters, resources.
    GetPack {
        name: String,
    },
    /// Validate and start a run; answers with its id once it is stored.
    Launch(LaunchSpec),
    /// Stop a running run: running tasks are terminated, the rest become Aborted.
    StopRun {
        run_id: String,
    },
    /// Live state of every run going now.
    ActiveRuns,
    /// Live state of one run (lanes, queues, every task's state, progress).
    RunView {
        run_id: String,
    },
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
    ReadFile {
        run_id: String,
        path: String,
    },
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
    /// A stored run as a file: JUnit XML, results.yaml or JSON. With
    /// `new_failures_since`, only the run's new failures against that run of the pack
    /// (its `compare_runs` `new_failures`).
    Export {
        run_id: String,
        format: ReportFormat,
        #[serde(default)]
        #[ts(optional)]
        new_failures_since: Option<String>,
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
        /// `shared`: one unit of a shared resource's capacity; default `exclusive` (all
        /// of it).
        #[serde(default)]
        #[ts(optional)]
        mode: Option<ReservationMode>,
        /// A requested configuration (kissats' `res_config`), overlaid on the
        /// resource's; at most 64 KiB as JSON.
        #[serde(default)]
        #[ts(optional, type = "unknown")]
        config: Option<Value>,
        /// A lease (1 s to 1 day): the hold lapses unless renewed (`renew_hold`) within
        /// it, so a script that dies frees what it held. None: the whole window.
        #[serde(default)]
        #[ts(optional)]
        lease_s: Option<f64>,
    },
    /// End a reservation or hold.
    Release {
        id: ResId,
    },
    /// The run queue: every queued run in the order they start, what each waits for,
    /// since when, and its estimated start.
    Queue,
    /// Move a queued run ahead of (`up`) or behind (`down`) its neighbour among the runs
    /// of its priority.
    MoveQueued {
        run_id: String,
        to: Move,
    },
    /// Give a queued run another priority.
    SetQueuedPriority {
        run_id: String,
        priority: Priority,
    },
    /// Take a run out of the queue; it is stored `stopped` with the reason.
    CancelQueued {
        run_id: String,
    },
    /// Store a new schedule (checked, naming the field); answers with its id.
    AddSchedule(ScheduleDef),
    /// Replace a schedule's definition; where its calendar stands is kept.
    UpdateSchedule {
        id: String,
        def: ScheduleDef,
    },
    /// Every schedule with its next firings and its runs.
    ListSchedules,
    /// One schedule with its history (every firing, catch-up and skip, with its run).
    GetSchedule {
        id: String,
    },
    PauseSchedule {
        id: String,
    },
    /// Resume: it fires from now on (what fell due while paused is not caught up).
    ResumeSchedule {
        id: String,
    },
    /// Delete a schedule (the runs it made stay).
    RemoveSchedule {
        id: String,
    },
    /// Every webhook (secrets are never shown).
    ListWebhooks,
    /// Add a webhook: an `http://` URL (at most 2,048 bytes), the events it wants (at
    /// least one), an optional shared secret (at most 256 bytes) signing each body
    /// (`X-Testbay-Signature: sha256=<hex HMAC-SHA256 of the body>`); at most 100.
    AddWebhook {
        url: String,
        events: Vec<WebhookEvent>,
        #[serde(default)]
        secret: Option<String>,
        #[serde(default = "yes")]
        enabled: bool,
    },
    /// Change a webhook: each field given replaces the stored one; `secret: ""` removes
    /// the secret.
    UpdateWebhook {
        #[ts(type = "number")]
        id: i64,
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        events: Option<Vec<WebhookEvent>>,
        #[serde(default)]
        secret: Option<String>,
        #[serde(default)]
        enabled: Option<bool>,
    },
    /// Remove a webhook and its deliveries.
    RemoveWebhook {
        #[ts(type = "number")]
        id: i64,
    },
    /// The newest deliveries (of one webhook, or of all), newest first: at most `limit`
    /// (default 50, at most 1,000).
    WebhookDeliveries {
        #[serde(default)]
        #[ts(type = "number | null")]
        webhook_id: Option<i64>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// A DUT's health, its health check from the lab file and its history (newest
    /// first, at most 100 changes).
    DutHealth {
        dut: String,
    },
    /// An operator puts a DUT back in good health, saying why (`note`, required).
    RestoreDut {
        dut: String,
        note: String,
    },
    /// Run the DUT's health check now (through the normal launch path); the run's id.
    CheckDut {
        dut: String,
    },
    /// Launch a stored run again: the same pack version (the run's snapshot), groups,
    /// ATS, DUTs, parameters and modes; refused as any launch would be now (an offline
    /// DUT, a book owned elsewhere). With `only_failed`, only the tests that failed (on
    /// any of its DUTs) and the tests they need as prereqs, on every DUT of the run.
    Relaunch {
        run_id: String,
        #[serde(default)]
        #[ts(optional)]
        only_failed: Option<bool>,
    },
    /// One task's occurrences across runs, newest first.
    TaskHistory(TaskHistoryQuery),
    /// One measurement's stored values across runs, newest first, with their limits.
    MeasurementHistory(MeasurementQuery),
    /// Share of runs whose measurements all passed, per DUT model, over the last
    /// `last_runs` runs of `pack` (0 means 100, at most 1,000).
    MeasurementYield {
        pack: String,
        #[serde(default)]
        last_runs: u32,
    },
    /// Tasks whose verdict flipped within their last N runs per DUT model.
    Flaky(FlakyQuery),
    /// Run `a` (the reference) compared with run `b` of the same pack.
    CompareRuns {
        a: String,
        b: String,
        #[serde(default)]
        #[ts(optional)]
        options: Option<CompareOptions>,
    },
    /// Pin a run as its pack's baseline on a DUT model (default: its first DUT's model),
    /// replacing the one pinned there.
    PinBaseline {
        run_id: String,
        #[serde(default)]
        #[ts(optional)]
        dut_model: Option<String>,
    },
    /// Unpin the baseline of a pack on a DUT model (none: runs without a model).
    UnpinBaseline {
        pack: String,
        #[serde(default)]
        #[ts(optional)]
        dut_model: Option<String>,
    },
    /// Pinned baselines, of one pack or of all.
    Baselines {
        #[serde(default)]
        #[ts(optional)]
        pack: Option<String>,
    },
    /// The prompts running tasks wait on an operator's answer to.
    ListPrompts,
    /// Answer a prompt: one of its choices, or text matching its pattern. `by` says who
    /// answered (the task gets it with the answer). `run_id`, the prompt's run: on a
    /// lab's servers, the answer goes to the server executing it (without it, to the
    /// server waiting on a prompt of this id when this one is not).
    AnswerPrompt {
        #[ts(type = "number")]
        id: u64,
        answer: String,
        #[serde(default)]
        by: Option<String>,
        #[serde(default)]
        #[ts(optional)]
        run_id: Option<String>,
    },
    /// Move the end of an operator's hold `duration_s` seconds later (more than 0; the
    /// hold at most 30 days long), if nothing else is booked there (`conflict`).
    ExtendHold {
        id: ResId,
        duration_s: f64,
    },
    /// Reservations of the lab's DUTs and resources that ended within the last `hours`
    /// (more than 0, at most 24), by start; at most 2,000, the newest kept.
    ReservationHistory {
        hours: f64,
    },
    /// The sections one task occurrence of a live run has reported so far, phase by
    /// phase: where a screen opened mid-task starts before the `section` events
    /// (`not_found` for a run this console does not drive; `get_run` has a finished
    /// run's).
    TaskSections {
        run_id: String,
        item: u32,
    },
    /// Who the console takes the caller for: the signed-in user and role (none for the
    /// single seat's own operator).
    WhoAmI,
    /// Every user, revoked ones included (never a token).
    ListUsers,
    /// Add a user (a name of 1 to 64 letters, digits, `.`, `_`, `-`, `@`); the answer
    /// holds its token, shown this once.
    AddUser {
        name: String,
        role: Role,
    },
    /// Revoke a user's token (by name or id): its next request is refused and its open
    /// event stream closed.
    RevokeUser {
        user: String,
    },
    /// Give a user (by name or id) another role.
    SetUserRole {
        user: String,
        role: Role,
    },
    /// The audit log: who changed what and when, newest first.
    Audit(AuditQuery),
    /// The known-issue rules of `<data_dir>/triage.yaml`, in precedence order.
    TriageRules,
    /// Add a known-issue rule at `position` (default: last, the lowest precedence); a
    /// name taken is `conflict`, a rule that does not compile `invalid_request` naming it.
    AddTriageRule {
        rule: TriageRule,
        #[serde(default)]
        #[ts(optional)]
        position: Option<u32>,
    },
    /// Remove the known-issue rule named `name`.
    RemoveTriageRule {
        name: String,
    },
    /// A stored run's failed tasks, each with the category, rule and issue of the first
    /// rule that matches it (none: not a known issue); rules apply to past runs too.
    RunTriage {
        run_id: String,
    },
    /// Failures per category over the last `last_runs` runs (0 means 50, at most 500) of
    /// `pack`, or of every pack.
    TriageSummary {
        #[serde(default)]
        #[ts(optional)]
        pack: Option<String>,
        #[serde(default)]
        last_runs: u32,
    },
    /// Remove the stored runs the retention policy (`settings.yaml` `retention`) removes,
    /// with their logs and artifacts, and give the space back; with `dry_run`, only say
    /// which and how many bytes. Never a running or queued run, a pinned baseline's run
    /// or a run marked keep.
    Prune {
        #[serde(default)]
        dry_run: bool,
    },
    /// The data directory's size: database, logs, artifacts; and the retention policy.
    DataUsage,
    /// Whether a stored run is marked keep.
    RunKeep {
        run_id: String,
    },
    /// Mark a stored run keep (pruning never removes it) or not.
    SetRunKeep {
        run_id: String,
        keep: bool,
    },
    /// Renew the lease of an operator's hold made with `lease_s`: it lapses a lease from
    /// now (never after its window ends); without a lease nothing changes.
    RenewHold {
        id: ResId,
    },
    /// Push a pack into the lab's pack library: `archive` holds its files as `testbay
    /// packs push` packs them (`pack::archive`, base64). Checked like any pack (refused
    /// `pack_broken` with its diagnostics, files named relative to the pack) and stored
    /// by content hash, the caller its owner; `private`: seen only by its owner and
    /// admins until published. A name and version are pushed once: the same content
    /// again changes nothing, other content is `conflict`.
    PushPack {
        archive: String,
        #[serde(default)]
        private: bool,
    },
    /// Make a private pack of the lab's library public: `NAME@VERSION`, or `NAME` for
    /// its newest version; its owner or an admin may.
    PublishPack {
        pack: String,
    },
    /// The rack agents: racks, host, last heartbeat, CPU, the phases they run, drained
    /// or not.
    Agents,
    /// Give a rack agent no new runs (it finishes those it has); `drain: false` takes it
    /// back.
    DrainAgent {
        name: String,
        #[serde(default = "yes")]
        drain: bool,
    },
    /// A rack agent fetches a run's pack snapshot by its content hash (agents only).
    AgentSnapshot {
        hash: String,
    },
}

fn yes() -> bool {
    true
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
    /// Launch on DUTs in `bad` health too (else refused with `dut_bad`).
    pub force: bool,
    /// Queue priority when its DUTs are busy (default `high`: an operator's launch).
    #[ts(optional)]
    pub priority: Option<Priority>,
    /// Seconds it may wait in the queue before it ends `could_not_start` (default: no
    /// limit; at most 30 days).
    #[ts(optional)]
    pub max_queue_time_s: Option<f64>,
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
        /// Its DUTs were busy: it waits in the run queue (status `queued`) and starts
        /// when they free.
        #[serde(default)]
        queued: bool,
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
    Queue(QueueView),
    MoveQueued(QueueView),
    SetQueuedPriority(QueueView),
    CancelQueued {
        run_id: String,
    },
    AddSchedule {
        id: String,
    },
    UpdateSchedule(ScheduleView),
    ListSchedules(Vec<ScheduleView>),
    GetSchedule(Box<ScheduleDetail>),
    PauseSchedule(ScheduleView),
    ResumeSchedule(ScheduleView),
    RemoveSchedule {
        id: String,
    },
    ListWebhooks(Vec<Webhook>),
    AddWebhook(Webhook),
    UpdateWebhook(Webhook),
    RemoveWebhook {
        #[ts(type = "number")]
        id: i64,
    },
    WebhookDeliveries(Vec<WebhookDelivery>),
    DutHealth(HealthReport),
    RestoreDut(HealthReport),
    CheckDut {
        run_id: String,
    },
    Relaunch {
        run_id: String,
        /// The run it repeats.
        from: String,
        #[serde(default)]
        unreserved: Vec<String>,
    },
    TaskHistory(Vec<TaskHistoryEntry>),
    MeasurementHistory(Vec<MeasurementPoint>),
    MeasurementYield(Vec<YieldRow>),
    Flaky(Vec<FlakyTask>),
    CompareRuns(Box<RunCompare>),
    PinBaseline(Baseline),
    UnpinBaseline {
        removed: bool,
    },
    Baselines(Vec<Baseline>),
    ListPrompts(Vec<crate::exec::prompts::PromptView>),
    AnswerPrompt(crate::exec::prompts::PromptView),
    ExtendHold(ReservationView),
    ReservationHistory(Vec<PastReservation>),
    TaskSections(Vec<crate::store::SectionRecord>),
    WhoAmI(CallerView),
    ListUsers(Vec<User>),
    AddUser {
        user: User,
        /// The user's token: shown this once, stored only as its SHA-256.
        token: String,
    },
    RevokeUser(User),
    SetUserRole(User),
    Audit(Vec<AuditEntry>),
    TriageRules(TriageRules),
    AddTriageRule(TriageRules),
    RemoveTriageRule(TriageRules),
    RunTriage(Vec<TriagedFailure>),
    TriageSummary(TriageSummary),
    Prune(PruneReport),
    DataUsage(DataUsage),
    RunKeep(RunKeep),
    SetRunKeep(RunKeep),
    RenewHold(ReservationView),
    PushPack(PushedPack),
    PublishPack(PackSummary),
    Agents(Vec<crate::agents::AgentView>),
    DrainAgent(crate::agents::AgentView),
    AgentSnapshot(crate::agents::wire::Snapshot),
}

/// A pack version pushed into the lab's pack library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct PushedPack {
    pub pack: PackSummary,
    /// This name and version were already there with this content: nothing changed.
    pub unchanged: bool,
}

/// A DUT's health now, its health check and its history (newest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct HealthReport {
    pub health: DutHealth,
    pub check: Option<HealthCheck>,
    /// A health run of the DUT is going.
    pub checking: bool,
    pub history: Vec<HealthChange>,
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
    /// Who launched it, from the audit log: a user's name, `local` for a single seat's
    /// operator; none for a run the console started itself (a schedule's, a queued
    /// health check's) or one older than the audit log.
    #[serde(default)]
    pub launched_by: Option<String>,
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
    /// Pack folders were reloaded, added or removed on disk, or a version of the lab's
    /// pack library was pushed or published (`NAME@VERSION` in `dirs`): list the packs
    /// again.
    PacksChanged { dirs: Vec<String> },
    /// A change in the reservation book (requested, claimed, released, expired, ...).
    Book(BookEvent),
    /// A run queued, started from the queue, moved, cancelled or given up on.
    Queue(QueueChange),
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
