//! The run state machine: drives [`crate::plan`], the [`ResourceBroker`] and
//! [`crate::exec`], stores every result and emits [`RunEvent`]s.
//!
//! A launch snapshots the pack folder into `runs/<id>/pack/` and runs from there, so
//! editing a pack never disturbs a running run.
//!
//! Stopping is in two steps. The first [`RunManager::stop`] is graceful: running setups
//! and tests are terminated (their process groups get SIGTERM, SIGKILL after the grace
//! period) and become Aborted with every setup and test that had not started, while the
//! teardowns of the groups each lane entered and the global teardown still run (and a
//! terminated task's own teardown phase, if it has `always_teardown`), so DUTs are left
//! clean. A second stop ends everything at once: teardowns included, nothing more starts.
//! Either way the run ends `stopped`. A phase that still has not reported back
//! [`stop_grace`] after a stop at once (its process left its process group, cannot be
//! killed, or its task died) is given up on: its task becomes Aborted, every process still
//! carrying the run's id is killed, and the run ends, so its reservations end with it. An
//! occurrence whose task panics is Errored at once (`item::spawn_item`).
//!
//! A task the broker finds busy waits in the plan's delay queue until the time the broker
//! named, or until the broker wakes it because something it waits for freed
//! ([`ResourceBroker::wakes`]); then it is retried at once.
//!
//! A run whose record is not whole ends `errored` instead of `completed` or `stopped`:
//! the store refused a write of it, a commit took its results with it (counted at the end
//! against the plan), or a task's folder or files could not be made (`storage::StorageTrouble`).
//!
//! Drivers and phases run as tokio tasks: processes are forked from runtime worker
//! threads, which live as long as the runtime (see `exec` on pdeathsig).
//!
//! Here: [`RunManager`] and the live state it keeps per run. `launch` starts a run (the
//! plan, the store rows, the broker's `begin_run`), `snapshot` copies the pack it runs
//! from, `driver` is the loop that drives one run to its end, `item` one occurrence's
//! phases, `view` builds the [`RunView`] and progress figures from the live state,
//! `recover` settles the runs a dead console left, `order` runs a pack's `scheduler`.

pub mod broker;
mod driver;
pub mod events;
pub mod execute;
mod item;
mod launch;
mod placement;
pub mod order;
mod prepare;
mod recover;
pub mod runner;
mod snapshot;
mod storage;
mod taskfiles;
mod view;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};

use crate::clock::{Clock, EpochMs};
use crate::exec::ExecLimits;
use crate::model::StopLevel;
use crate::outcome::RunStatus;
use crate::pack::PackErrors;
use crate::plan::Plan;
use crate::store::{Store, StoreError};

pub use broker::{AlwaysGrant, Grant, Holding, LostLeases, ResourceBroker, TaskNeeds, Wakes};
pub use events::PROGRESS_EVERY;
pub use events::{LaneView, LaunchRequest, Progress, RunEvent, RunView, TaskState, TaskView};
pub use launch::{new_run_id, SCHEDULER_TIMEOUT};
pub use placement::{LaneRunners, RackBusy};
pub use prepare::remove_unused_folders;
pub use recover::recover_interrupted;
pub use runner::{AgentDirectory, LocalRunner, PhaseJob, PhaseRunner, RunnerHealth};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Pack(#[from] PackErrors),
    /// The run is stored with status `could_not_start` and this reason.
    #[error("run {run_id} could not start: {reason}")]
    CouldNotStart { run_id: String, reason: String },
    #[error("cannot snapshot pack {dir} into {to}: {source}")]
    Snapshot {
        dir: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("run {0} is not running")]
    NotRunning(String),
}

/// Launches runs and keeps their live state.
#[derive(Clone)]
pub struct RunManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    data_dir: PathBuf,
    broker: Arc<dyn ResourceBroker>,
    clock: Arc<dyn Clock>,
    events: events::EventOut,
    limits: ExecLimits,
    live: Mutex<HashMap<String, LiveHandle>>,
    /// Operator prompts of every run's tasks.
    prompts: Arc<crate::exec::prompts::Prompts>,
    /// The console's rack agents, once set ([`RunManager::set_agents`]).
    agents: std::sync::OnceLock<Arc<dyn AgentDirectory>>,
}

struct LiveHandle {
    state: Arc<Mutex<LiveRun>>,
    /// Task occurrences of the run, for [`FINISHED_ITEMS_KEPT`].
    items: usize,
    /// Stop level: 0 running, 1 graceful stop, 2 stop at once.
    stop: watch::Sender<Option<StopLevel>>,
    finished: watch::Receiver<Option<RunStatus>>,
}

/// Live state of one run, shared by its driver and [`RunManager::view`].
struct LiveRun {
    run_id: String,
    pack_name: String,
    pack_version: String,
    status: RunStatus,
    reason: Option<String>,
    started_ms: EpochMs,
    /// When the run ended (its final status was set).
    ended_ms: Option<EpochMs>,
    plan: Plan,
    task_ids: Vec<i64>,
    started: Vec<Option<EpochMs>>,
    finished: Vec<Option<EpochMs>>,
    phase: Vec<Option<crate::outcome::Phase>>,
    /// Per item, the operator prompt its running phase waits on (see
    /// [`view::operator_wait`]).
    operator: Vec<Option<String>>,
    /// Per item that reported sections, each section as it stands now (details and extra
    /// data left out, as the live events carry them), phase by phase: what a screen
    /// opened mid-task starts from ([`RunManager::task_sections`]).
    sections: HashMap<usize, Vec<crate::store::SectionRecord>>,
    /// Occurrences that passed only on a retry (`max_retries`).
    flaky: Vec<bool>,
    /// Writes of this run that failed (the run then ends `errored`).
    storage: storage::StorageTrouble,
    /// The run's event numbers; read under this state's lock for [`RunView::seq`].
    seq: events::Seq,
}

/// Capacity of the event channel; slow subscribers lose the oldest events (and are told
/// so by tokio's `Lagged`), the console's memory stays bounded. Bursts come from the plan
/// settling many items at once (a stop aborts every queued task, one event each): this
/// holds such a burst of a run of several thousand tasks. Steady volume is paced at the
/// source (progress, `log_dropped`, rate-limited log lines).
pub const EVENT_CAPACITY: usize = 4096;

/// Finished runs whose live state is kept (see [`RunManager::view`]), newest first.
pub const MAX_LIVE_RUNS: usize = 64;

/// Task occurrences of the finished runs whose live state is kept, newest first: a run
/// that ends past this budget is forgotten as it ends, so the memory of a large run goes
/// with it (its results are in the store).
pub const FINISHED_ITEMS_KEPT: usize = 2_000;

/// Slack on top of the time a phase takes to end after a stop at once (see [`stop_grace`]).
pub const STOP_SLACK: std::time::Duration = std::time::Duration::from_secs(1);

/// How long after a stop at once the run waits for its phases to report back before it
/// gives up on them: the SIGTERM→SIGKILL grace and the output drain `exec` allows a phase,
/// plus [`STOP_SLACK`]. A phase that has not ended by then never will on its own.
pub fn stop_grace(limits: &ExecLimits) -> std::time::Duration {
    limits
        .kill_grace
        .saturating_add(limits.drain_timeout)
        .saturating_add(STOP_SLACK)
}

impl RunManager {
    pub fn new(
        store: Arc<dyn Store>,
        data_dir: &Path,
        broker: Arc<dyn ResourceBroker>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::with_limits(store, data_dir, broker, clock, ExecLimits::default())
    }

    pub fn with_limits(
        store: Arc<dyn Store>,
        data_dir: &Path,
        broker: Arc<dyn ResourceBroker>,
        clock: Arc<dyn Clock>,
        limits: ExecLimits,
    ) -> Self {
        let events = events::EventOut::new(EVENT_CAPACITY);
        // Tasks run in their snapshot's folder: every path they are given is absolute.
        let data_dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        Self {
            inner: Arc::new(Inner {
                store,
                data_dir,
                broker,
                clock,
                events,
                limits,
                live: Mutex::new(HashMap::new()),
                prompts: Arc::default(),
                agents: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Send the phases of runs on racks that have an agent to it (only the first call
    /// counts).
    pub fn set_agents(&self, agents: Arc<dyn AgentDirectory>) {
        let _ = self.inner.agents.set(agents);
    }

    /// Whether `req` must wait for the agents of racks it runs on (each above its CPU
    /// threshold): the reasons, and when every such rack has an agent taken again.
    pub fn agents_busy(&self, req: &LaunchRequest) -> Option<RackBusy> {
        let agents = self.inner.agents.get()?;
        let busy: Vec<RackBusy> = placement::launch_racks(req)
            .into_iter()
            .filter_map(|r| agents.busy(r))
            .collect();
        Some(RackBusy {
            until_ms: busy.iter().map(|b| b.until_ms).max()?,
            reason: busy
                .into_iter()
                .map(|b| b.reason)
                .collect::<Vec<_>>()
                .join("; "),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The prompts tasks are waiting on an operator's answer to.
    pub fn prompts(&self) -> &Arc<crate::exec::prompts::Prompts> {
        &self.inner.prompts
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.inner.events.subscribe()
    }

    /// Call `hook` with every run event, in the thread that sends it, before subscribers
    /// get it (the console feeds its own stream this way). Only the first hook counts.
    pub fn forward_to(&self, hook: events::EventHook) -> bool {
        self.inner.events.set_hook(hook)
    }

    /// Folder of a run's snapshot, logs and artifacts.
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.inner.data_dir.join("runs").join(run_id)
    }

    /// Ids of runs this manager is driving now.
    pub fn active_runs(&self) -> Vec<String> {
        let live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<String> = live
            .iter()
            .filter(|(_, h)| h.finished.borrow().is_none())
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Stop a run. The first call stops gracefully (setups and tests end, teardowns run);
    /// a second call stops everything at once. See the module docs.
    pub fn stop(&self, run_id: &str) -> Result<(), RunError> {
        let live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        // A run whose final status is out (event sent) is over, even if its driver is
        // still writing results.yaml.
        let h = live
            .get(run_id)
            .filter(|h| {
                h.finished.borrow().is_none()
                    && !h
                        .state
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .status
                        .is_finished()
            })
            .ok_or_else(|| RunError::NotRunning(run_id.into()))?;
        h.stop
            .send_modify(|level| *level = Some(StopLevel::after(*level)));
        Ok(())
    }

    /// Wait until a run this manager drives has ended; returns its final status.
    pub async fn wait(&self, run_id: &str) -> Result<RunStatus, RunError> {
        let mut rx = {
            let live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
            match live.get(run_id) {
                Some(h) => h.finished.clone(),
                None => {
                    return Ok(self.inner.store.get_run(run_id)?.status);
                }
            }
        };
        let status = rx
            .wait_for(|s| s.is_some())
            .await
            .map(|s| s.expect("checked"))
            .unwrap_or(RunStatus::Interrupted);
        Ok(status)
    }

    /// Live state of a run this manager drives, or drove recently (finished runs past
    /// [`MAX_LIVE_RUNS`] or [`FINISHED_ITEMS_KEPT`] are forgotten; the store has their
    /// results).
    pub fn view(&self, run_id: &str) -> Option<RunView> {
        let state = {
            let live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
            live.get(run_id)?.state.clone()
        };
        let now = self.inner.clock.now_ms();
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        Some(view::build_view(&s, now))
    }

    /// The sections one task occurrence of a run this manager drives has reported so
    /// far, phase by phase (empty when it reported none); `None` for a run it does not
    /// know (the store has a finished run's sections).
    pub fn task_sections(
        &self,
        run_id: &str,
        item: usize,
    ) -> Option<Vec<crate::store::SectionRecord>> {
        let state = {
            let live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
            live.get(run_id)?.state.clone()
        };
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        Some(s.sections.get(&item).cloned().unwrap_or_default())
    }

    /// Forget finished runs' live state (their results stay in the store).
    pub fn prune_finished(&self) {
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, h| h.finished.borrow().is_none());
    }
}

impl Inner {
    /// Keep the live state of at most [`MAX_LIVE_RUNS`] finished runs and
    /// [`FINISHED_ITEMS_KEPT`] of their task occurrences, the newest (by run id, which
    /// starts with the launch time) first; forget the rest.
    fn forget_finished(&self) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut finished: Vec<(String, usize)> = live
            .iter()
            .filter(|(_, h)| h.finished.borrow().is_some())
            .map(|(id, h)| (id.clone(), h.items))
            .collect();
        finished.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        let (mut runs, mut items, mut dropped) = (0usize, 0usize, 0usize);
        for (id, n) in finished {
            if runs < MAX_LIVE_RUNS && items.saturating_add(n) <= FINISHED_ITEMS_KEPT {
                runs += 1;
                items += n;
            } else {
                live.remove(&id);
                dropped = dropped.saturating_add(n);
            }
        }
        drop(live);
        if dropped >= FINISHED_ITEMS_KEPT {
            return_freed_memory();
        }
    }
}

/// Hand memory freed by a forgotten run back to the system. glibc keeps freed memory in
/// its arenas: after a stopped 10,000-task run the console stayed 30 MiB above its idle
/// size without this, 5 MiB with it.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}
