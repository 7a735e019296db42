//! What a run tells the world: launch requests in, [`RunEvent`]s out, [`RunView`] on demand.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ts_rs::TS;

use crate::clock::EpochMs;
use crate::outcome::{Phase, RunStatus, RunVerdict};
use crate::pack::{CoverageMode, ResourceMode};
use crate::plan::DutTarget;
use crate::store::TaskKind;

/// Start a run of a pack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
#[ts(export)]
pub struct LaunchRequest {
    /// Pack folder; the run executes from a snapshot taken at launch.
    pub pack_dir: String,
    /// Groups in order; empty runs every group of the pack.
    pub groups: Vec<String>,
    pub ats: Option<String>,
    /// One lane per DUT; empty runs one lane named `local` without a DUT.
    pub duts: Vec<DutTarget>,
    /// Overrides of the pack's global parameters.
    #[ts(type = "Record<string, unknown>")]
    pub params: Map<String, Value>,
    /// Overrides `params.resource_mode` when set.
    pub resource_mode: Option<ResourceMode>,
    /// Overrides `params.coverage_mode` when set.
    pub coverage_mode: Option<CoverageMode>,
    /// Only these tests of the chosen groups (with the groups' setups and teardowns and
    /// the global ones); none runs every test.
    #[ts(optional)]
    pub tests: Option<Vec<String>>,
}

/// State of one task occurrence, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "state", rename_all = "snake_case")]
#[ts(export)]
pub enum TaskState {
    /// In its queue; `reason` says what it waits for.
    Queued { reason: String },
    /// In the delay queue: resources busy.
    Waiting { reason: String },
    Running {
        phase: Phase,
        /// What the task waits for while it runs: `waiting for the operator: <message>`
        /// while one of its prompts is open.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        waiting: Option<String>,
    },
    Done {
        result: String,
        message: String,
        failure: bool,
        /// Passed only on a retry (`max_retries`).
        #[serde(default)]
        flaky: bool,
    },
}

/// Something that happened in a run. Every event carries `seq`, its number among the
/// run's events (1, 2, 3, ...; they may arrive slightly out of order): a client that
/// loaded a [`RunView`] drops the events numbered up to the view's `seq` (the view has
/// them) and applies the later ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
#[ts(export)]
pub enum RunEvent {
    RunStatus {
        run_id: String,
        #[ts(type = "number")]
        seq: u64,
        status: RunStatus,
        reason: Option<String>,
        /// What the run came to, once it is over.
        #[serde(default)]
        verdict: Option<RunVerdict>,
        ts: EpochMs,
    },
    TaskState {
        run_id: String,
        #[ts(type = "number")]
        seq: u64,
        /// Occurrence number within the run (plan order).
        item: u32,
        task: String,
        kind: TaskKind,
        group: Option<String>,
        lane: Option<String>,
        state: TaskState,
        ts: EpochMs,
    },
    /// A line of task output (rate-limited; the log file has every line).
    Log {
        run_id: String,
        #[ts(type = "number")]
        seq: u64,
        item: u32,
        task: String,
        lane: String,
        phase: Phase,
        /// Lines of one read of the task's output, in order.
        lines: Vec<String>,
        ts: EpochMs,
    },
    /// Lines of a task's output not shown live.
    LogDropped {
        run_id: String,
        #[ts(type = "number")]
        seq: u64,
        item: u32,
        task: String,
        lane: String,
        phase: Phase,
        count: u32,
        ts: EpochMs,
    },
    Progress {
        run_id: String,
        #[ts(type = "number")]
        seq: u64,
        progress: Progress,
        ts: EpochMs,
    },
    /// A section a task reported started or stopped (`section.result` is set once it
    /// stopped). Ids are per phase; `details` and `extra` are left out (the stored run
    /// has them).
    Section {
        run_id: String,
        #[ts(type = "number")]
        seq: u64,
        item: u32,
        task: String,
        lane: String,
        phase: Phase,
        section: Box<crate::reporter::Section>,
        ts: EpochMs,
    },
    /// A task asks the operator; answer it with `answer_prompt`.
    Prompt {
        run_id: String,
        #[ts(type = "number")]
        seq: u64,
        item: u32,
        task: String,
        lane: String,
        prompt: Box<crate::exec::prompts::PromptView>,
        ts: EpochMs,
    },
    /// A prompt was answered or timed out; it waits no more.
    PromptAnswered {
        run_id: String,
        #[ts(type = "number")]
        seq: u64,
        item: u32,
        task: String,
        lane: String,
        #[ts(type = "number")]
        id: u64,
        answer: crate::reporter::PromptAnswer,
        ts: EpochMs,
    },
    /// A measurement a task reported, in the section `section` (or on the task).
    Measurement {
        run_id: String,
        #[ts(type = "number")]
        seq: u64,
        item: u32,
        task: String,
        lane: String,
        phase: Phase,
        section: Option<u32>,
        measurement: Box<crate::measure::Measurement>,
        /// Within its limits; `None` when only logged.
        passed: Option<bool>,
        ts: EpochMs,
    },
}

impl RunEvent {
    pub fn run_id(&self) -> &str {
        match self {
            RunEvent::RunStatus { run_id, .. }
            | RunEvent::TaskState { run_id, .. }
            | RunEvent::Log { run_id, .. }
            | RunEvent::LogDropped { run_id, .. }
            | RunEvent::Progress { run_id, .. }
            | RunEvent::Section { run_id, .. }
            | RunEvent::Prompt { run_id, .. }
            | RunEvent::PromptAnswered { run_id, .. }
            | RunEvent::Measurement { run_id, .. } => run_id,
        }
    }

    /// The run's number of this event (see [`Seq`]).
    pub fn seq(&self) -> u64 {
        match self {
            RunEvent::RunStatus { seq, .. }
            | RunEvent::TaskState { seq, .. }
            | RunEvent::Log { seq, .. }
            | RunEvent::LogDropped { seq, .. }
            | RunEvent::Progress { seq, .. }
            | RunEvent::Section { seq, .. }
            | RunEvent::Prompt { seq, .. }
            | RunEvent::PromptAnswered { seq, .. }
            | RunEvent::Measurement { seq, .. } => *seq,
        }
    }
}

/// A run's event counter. Events are numbered from 1 in the order their numbers are taken,
/// and a number is taken only once the change its event reports is in the run's live
/// state; [`RunView::seq`] is the last number taken when the view was built (under the
/// same lock as the state). So an event numbered up to a view's `seq` is in that view, and
/// a later one is news to it. Events are numbered only when they are built, that is when
/// someone listens. Relaxed atomics suffice: the state's lock orders a view after every
/// change whose number it reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seq(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Seq {
    /// The next event's number.
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    /// The last number taken (0: none yet).
    pub fn last(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Progress {
    pub done: u32,
    pub total: u32,
    /// Done with a failing result, `Aborted` not included.
    pub failures: u32,
    /// Done as `Aborted` (a stop): not run to their end, not failed.
    #[serde(default)]
    pub aborted: u32,
    /// Time from the start to now, or to the run's end once it is over.
    pub elapsed_ms: i64,
    /// Estimated time to the end, from `est_task_time` of what is left.
    pub eta_ms: Option<i64>,
}

/// One task occurrence in a live run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct TaskView {
    pub item: u32,
    /// Row id in the store.
    #[ts(type = "number")]
    pub task_id: i64,
    pub task: String,
    pub kind: TaskKind,
    pub group: Option<String>,
    pub lane: Option<String>,
    pub state: TaskState,
    pub est_task_time: f64,
    pub started_ms: Option<EpochMs>,
    pub finished_ms: Option<EpochMs>,
}

/// One lane (DUT) of a live run: its queues in plan order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct LaneView {
    pub name: String,
    pub dut: Option<DutTarget>,
    pub setup: Vec<TaskView>,
    pub test: Vec<TaskView>,
    pub teardown: Vec<TaskView>,
    /// Tasks waiting for busy resources.
    pub delay: Vec<TaskView>,
    pub progress: Progress,
}

/// Live state of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct RunView {
    pub run_id: String,
    /// Number of the run's last event this view includes (see [`RunEvent`]).
    #[ts(type = "number")]
    pub seq: u64,
    pub pack_name: String,
    pub pack_version: String,
    pub status: RunStatus,
    pub reason: Option<String>,
    pub started_ms: EpochMs,
    /// When the run ended, once it is over.
    pub ended_ms: Option<EpochMs>,
    /// What the run came to, once it is over (see [`RunVerdict::of`]).
    pub verdict: Option<RunVerdict>,
    pub lanes: Vec<LaneView>,
    /// Tests shared by all lanes not yet taken by one (`split` coverage).
    pub shared: Vec<TaskView>,
    pub progress: Progress,
}

/// A hook that gets every run event as it is sent (see [`EventOut`]).
pub type EventHook = Box<dyn Fn(&RunEvent) + Send + Sync>;

/// Where a run's events go: the run manager's channel ([`super::RunManager::subscribe`])
/// and, once the console has set one, a hook called in the sender's own thread. The
/// console's stream is fed through the hook: a task in between, reading the channel, can
/// fall behind a burst when the machine is busy, and every event it misses costs each
/// screen a reload.
#[derive(Clone)]
pub(crate) struct EventOut {
    tx: tokio::sync::broadcast::Sender<RunEvent>,
    hook: std::sync::Arc<std::sync::OnceLock<EventHook>>,
}

impl EventOut {
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: tokio::sync::broadcast::channel(capacity).0,
            hook: Default::default(),
        }
    }

    pub fn send(&self, ev: RunEvent) {
        if let Some(hook) = self.hook.get() {
            hook(&ev);
        }
        let _ = self.tx.send(ev);
    }

    /// Send the event `make` builds, if anyone gets events (else it is not built).
    pub fn send_with(&self, make: impl FnOnce() -> RunEvent) {
        if self.has_listeners() {
            self.send(make());
        }
    }

    /// Whether anyone gets the events (building one can then be skipped).
    pub fn has_listeners(&self) -> bool {
        self.hook.get().is_some() || self.tx.receiver_count() > 0
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RunEvent> {
        self.tx.subscribe()
    }

    /// Set the hook; only the first call counts.
    pub fn set_hook(&self, hook: EventHook) -> bool {
        self.hook.set(hook).is_ok()
    }
}

/// Least time between two `progress` events of one run: a 2,000-task run finishes tasks
/// far faster than anyone reads figures, and every event goes to every subscriber.
pub const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Holds `progress` events of one run to one per [`PROGRESS_EVERY`]; one held back is
/// sent when that time is up (wall time: this paces traffic, not the plan).
#[derive(Default)]
pub(super) struct ProgressThrottle {
    sent: Option<tokio::time::Instant>,
    held: bool,
}

impl ProgressThrottle {
    /// Whether a progress event may go now (then it counts as sent); otherwise it is
    /// held back for [`ProgressThrottle::due`].
    pub(super) fn may_send(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if self.sent.is_some_and(|t| now < t + PROGRESS_EVERY) {
            self.held = true;
            return false;
        }
        self.sent = Some(now);
        self.held = false;
        true
    }

    pub(super) fn held_back(&self) -> bool {
        self.held
    }

    /// When the held-back event may go (the driver loops and calls `may_send` again).
    pub(super) async fn due(&self) {
        if let Some(t) = self.sent {
            tokio::time::sleep_until(t + PROGRESS_EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn ev(n: u32) -> RunEvent {
        RunEvent::Progress {
            run_id: "r".into(),
            seq: n.into(),
            progress: Progress {
                done: n,
                ..Default::default()
            },
            ts: 0,
        }
    }

    /// A burst far beyond the channel's capacity: a subscriber that did not read lags,
    /// the hook gets every event, in order.
    #[test]
    fn the_hook_gets_a_burst_that_outruns_the_channel() {
        let out = EventOut::new(16);
        let mut slow = out.subscribe();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        assert!(out.set_hook(Box::new(move |e| {
            if let RunEvent::Progress { progress, .. } = e {
                g.lock().unwrap().push(progress.done);
            }
        })));
        assert!(
            !out.set_hook(Box::new(|_| {})),
            "only the first hook counts"
        );
        for n in 0..10_000 {
            out.send(ev(n));
        }
        assert_eq!(*got.lock().unwrap(), (0..10_000).collect::<Vec<u32>>());
        assert!(matches!(
            slow.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_))
        ));
    }
}
