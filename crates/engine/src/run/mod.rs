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
//! against the plan), or a task's folder or files could not be made (`item::StorageTrouble`).
//!
//! Drivers and phases run as tokio tasks: processes are forked from runtime worker
//! threads, which live as long as the runtime (see `exec` on pdeathsig).

pub mod broker;
pub mod events;
mod item;
pub mod order;
mod prepare;
mod recover;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch};

use crate::clock::{Clock, EpochMs};
use crate::exec::ExecLimits;
use crate::outcome::{RunStatus, ABORTED, ERRORED};
use crate::pack::{self, LoadedPack, PackErrors, ResourceMode};
use crate::plan::{BusyOutcome, ItemState, Plan, PlanInput};
use crate::store::{NewRun, NewTaskRow, Store, StoreError, TaskFinish, TaskKind};

pub use broker::{AlwaysGrant, Grant, Holding, ResourceBroker, TaskNeeds, Wakes};
pub use events::{LaneView, LaunchRequest, Progress, RunEvent, RunView, TaskState, TaskView};
use item::{spawn_item, ItemDone, ItemJob, Occurrence, RunCtx};
pub use prepare::remove_unused_folders;
pub use recover::recover_interrupted;

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
}

struct LiveHandle {
    state: Arc<Mutex<LiveRun>>,
    /// Task occurrences of the run, for [`FINISHED_ITEMS_KEPT`].
    items: usize,
    /// Stop level: 0 running, 1 graceful stop, 2 stop at once.
    stop: watch::Sender<u8>,
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
    plan: Plan,
    task_ids: Vec<i64>,
    started: Vec<Option<EpochMs>>,
    finished: Vec<Option<EpochMs>>,
    phase: Vec<Option<crate::outcome::Phase>>,
    /// Writes of this run that failed (the run then ends `errored`).
    storage: item::StorageTrouble,
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
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
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

    /// Start a run. Returns its id once it is stored and its driver started. Problems found
    /// before any task starts (unknown group, missing `req_param_keys`, bad parameter)
    /// store the run as `could_not_start` and return [`RunError::CouldNotStart`].
    /// Must be called within a tokio runtime.
    pub fn launch(&self, req: LaunchRequest) -> Result<String, RunError> {
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        let run_id = new_run_id(now);
        let run_dir = self.run_dir(&run_id);
        let snapshot = run_dir.join("pack");
        let src = PathBuf::from(&req.pack_dir);
        // Copy first, then load the copy: what is checked is exactly what runs. A broken
        // pack is reported against its own files and leaves no run folder behind.
        let hash = match snapshot_pack(&src, &snapshot) {
            Ok(h) => h,
            Err(source) => {
                let _ = std::fs::remove_dir_all(&run_dir);
                if !src.is_dir() {
                    // Not a pack folder at all: let the loader say so, naming the path given.
                    pack::load(&src)?;
                }
                return Err(RunError::Snapshot {
                    dir: src.clone(),
                    to: snapshot.clone(),
                    source,
                });
            }
        };
        let loaded = match pack::load_with_hash(&snapshot, Some(hash)) {
            Ok(p) => p,
            Err(mut e) => {
                let _ = std::fs::remove_dir_all(&run_dir);
                let root = src.canonicalize().unwrap_or_else(|_| src.clone());
                e.dir = src.clone();
                for d in &mut e.diagnostics {
                    if let Ok(rel) = d.file.strip_prefix(&snapshot) {
                        d.file = root.join(rel);
                    }
                }
                return Err(e.into());
            }
        };
        let mut overrides = req.params.clone();
        if let Some(m) = req.resource_mode {
            overrides.insert(
                "resource_mode".into(),
                serde_json::to_value(m).expect("enum"),
            );
        }
        if let Some(m) = req.coverage_mode {
            overrides.insert(
                "coverage_mode".into(),
                serde_json::to_value(m).expect("enum"),
            );
        }
        let params = crate::params::effective_params(&loaded.def.params, &overrides);
        let plan = params.map_err(param_errors).and_then(|params| {
            let test_order = custom_test_order(&loaded, &req.groups, params.resource_mode)?;
            Plan::build(PlanInput {
                pack: &loaded,
                groups: req.groups.clone(),
                duts: req.duts.clone(),
                ats: req.ats.clone(),
                params,
                test_order,
            })
            .map_err(|e| e.to_string())
        });
        let params_json = match &plan {
            Ok(p) => serde_json::to_value(p.params()).unwrap_or(Value::Null),
            Err(_) => {
                let mut m = serde_json::to_value(&loaded.def.params)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default();
                m.extend(overrides.clone());
                Value::Object(m)
            }
        };
        let mut new_run = NewRun {
            id: run_id.clone(),
            pack_name: loaded.def.name.clone(),
            pack_version: loaded.def.version.clone(),
            content_hash: loaded.content_hash.clone(),
            pack_dir: src
                .canonicalize()
                .unwrap_or(src.clone())
                .display()
                .to_string(),
            snapshot_dir: Some(snapshot.display().to_string()),
            groups: req.groups.clone(),
            duts: req.duts.clone(),
            ats: req.ats.clone(),
            params: params_json.clone(),
            resource_mode: mode_str(params_json.get("resource_mode")),
            coverage_mode: mode_str(params_json.get("coverage_mode")),
            status: RunStatus::Queued,
            reason: None,
            created_ms: now,
            est_run_time: 0.0,
        };
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                return Err(self.could_not_start(new_run, &e));
            }
        };
        if new_run.groups.is_empty() {
            new_run.groups = plan.groups().to_vec();
        }
        new_run.est_run_time = estimate_total(&plan);
        let rows: Vec<NewTaskRow> = plan
            .items()
            .iter()
            .map(|it| NewTaskRow {
                seq: it.id as u32,
                lane: it.lane.map(|l| plan.lane_name(l).to_string()),
                task: it.task.clone(),
                kind: it.kind,
                group: it.group.clone(),
                description: it.def.description.clone(),
                est_task_time: it.def.est_task_time,
            })
            .collect();
        // Resource mode `all` and friends reserve up front.
        let needs: Vec<TaskNeeds<'_>> = plan
            .items()
            .iter()
            .filter(|it| !matches!(plan.state(it.id), ItemState::Done { .. }))
            .map(|it| {
                let lane = it.lane.unwrap_or(0);
                TaskNeeds::from_def(
                    &run_id,
                    it.id,
                    &it.def,
                    plan.lane_name(lane),
                    plan.lane_dut(lane),
                    plan.ats(),
                    now,
                )
            })
            .collect();
        let begin = inner
            .broker
            .begin_run(&run_id, plan.params().resource_mode, &needs);
        drop(needs);
        if let Err(reason) = begin {
            return Err(self.could_not_start(new_run, &format!("resources: {reason}")));
        }
        let task_ids = match inner.store.insert_run(&new_run, &rows) {
            Ok(ids) => ids,
            Err(e) => {
                inner.broker.end_run(&run_id);
                return Err(e.into());
            }
        };

        let n = plan.items().len();
        let seq = events::Seq::default();
        let state = Arc::new(Mutex::new(LiveRun {
            run_id: run_id.clone(),
            pack_name: loaded.def.name.clone(),
            pack_version: loaded.def.version.clone(),
            status: RunStatus::Queued,
            reason: None,
            started_ms: now,
            plan,
            task_ids,
            started: vec![None; n],
            finished: vec![None; n],
            phase: vec![None; n],
            storage: Default::default(),
            seq: seq.clone(),
        }));
        let (stop_tx, stop_rx) = watch::channel(0u8);
        let (fin_tx, fin_rx) = watch::channel(None);
        let mut live = inner.live.lock().unwrap_or_else(|p| p.into_inner());
        live.insert(
            run_id.clone(),
            LiveHandle {
                state: state.clone(),
                items: n,
                stop: stop_tx,
                finished: fin_rx,
            },
        );
        drop(live);
        let ctx = Arc::new(RunCtx {
            run_id: run_id.clone(),
            run_dir,
            store: inner.store.clone(),
            clock: inner.clock.clone(),
            events: inner.events.clone(),
            seq,
            params: state.lock().expect("fresh").plan.params().clone(),
            params_json,
            ats: req.ats.clone(),
            limits: inner.limits.clone(),
            stop: stop_rx.clone(),
            live: state.clone(),
        });
        let driver = Driver {
            inner: inner.clone(),
            ctx,
            state,
            pack: loaded,
            stop: stop_rx,
            dir_names: HashMap::new(),
            prep: prepare::Preparer::start(),
            occurrences: HashMap::new(),
        };
        let manager = inner.clone();
        tokio::spawn(async move {
            let status = driver.drive().await;
            let _ = fin_tx.send(Some(status));
            manager.forget_finished();
        });
        Ok(run_id)
    }

    fn could_not_start(&self, mut run: NewRun, reason: &str) -> RunError {
        let inner = &self.inner;
        run.status = RunStatus::CouldNotStart;
        run.reason = Some(reason.to_string());
        let id = run.id.clone();
        if let Err(e) = inner.store.insert_run(&run, &[]) {
            return RunError::Store(e);
        }
        let now = inner.clock.now_ms();
        let _ = inner
            .store
            .set_run_status(&id, RunStatus::CouldNotStart, Some(reason), now);
        inner.events.send(RunEvent::RunStatus {
            run_id: id.clone(),
            // Its first and only event.
            seq: 1,
            status: RunStatus::CouldNotStart,
            reason: Some(reason.into()),
            ts: now,
        });
        tracing::warn!(run_id = %id, reason, "run could not start");
        RunError::CouldNotStart {
            run_id: id,
            reason: reason.into(),
        }
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
            .send_modify(|level| *level = (*level + 1).min(item::STOP_AT_ONCE));
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
        Some(build_view(&s, now))
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

/// Every problem of the launch parameters in one line, each naming its key.
fn param_errors(errors: Vec<crate::params::ParamError>) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn mode_str(v: Option<&Value>) -> String {
    v.and_then(|v| v.as_str()).unwrap_or("").to_string()
}

struct Driver {
    inner: Arc<Inner>,
    ctx: Arc<RunCtx>,
    state: Arc<Mutex<LiveRun>>,
    pack: LoadedPack,
    stop: watch::Receiver<u8>,
    /// Folder names taken per lane.
    dir_names: HashMap<String, HashSet<String>>,
    /// Makes the folders of upcoming items while others run.
    prep: Option<prepare::Preparer>,
    /// Occurrences started and not yet done, with their tasks.
    occurrences: HashMap<usize, (Arc<Occurrence>, tokio::task::AbortHandle)>,
}

/// The folder name an occurrence of `task` gets on a lane whose names `taken` are in use:
/// the task's name, else `task-2`, `task-3`, ...
fn free_dir_name(taken: Option<&HashSet<String>>, task: &str) -> String {
    let mut name = task.to_string();
    let mut n = 2;
    while taken.is_some_and(|t| t.contains(&name)) {
        name = format!("{task}-{n}");
        n += 1;
    }
    name
}

/// Items per lane whose folders are prepared ahead: twice a batch, so the thread stays
/// a batch ahead of each lane.
const PREPARE_AHEAD: usize = 2 * prepare::SEND_BATCH;

impl Driver {
    fn lock(&self) -> std::sync::MutexGuard<'_, LiveRun> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, ev: RunEvent) {
        self.inner.events.send(ev);
    }

    fn set_status(&self, status: RunStatus, reason: Option<String>) {
        self.set_status_with(status, reason, || {});
    }

    /// Record the status, run `before_event` (e.g. write files that should exist when the
    /// event arrives), then announce it.
    fn set_status_with(
        &self,
        status: RunStatus,
        reason: Option<String>,
        before_event: impl FnOnce(),
    ) {
        let now = self.inner.clock.now_ms();
        {
            let mut s = self.lock();
            s.status = status;
            s.reason = reason.clone();
        }
        if let Err(e) =
            self.inner
                .store
                .set_run_status(&self.ctx.run_id, status, reason.as_deref(), now)
        {
            self.ctx.store_failed("run status", None, &e);
        }
        before_event();
        self.emit(RunEvent::RunStatus {
            run_id: self.ctx.run_id.clone(),
            seq: self.ctx.seq.next(),
            status,
            reason,
            ts: now,
        });
    }

    async fn drive(mut self) -> RunStatus {
        let run_id = self.ctx.run_id.clone();
        tracing::info!(run_id = %run_id, "run started");
        self.set_status(RunStatus::Running, None);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<ItemDone>();
        // Closes when every started occurrence has written its result.
        let (writing_tx, mut writing_rx) = mpsc::channel::<()>(1);
        let mut running = 0usize;
        // Stop level seen so far (see `item::STOP_*`).
        let mut stop_level = 0u8;
        let mut progress = ProgressThrottle::default();
        let mut lane_stages = vec![0; self.lock().plan.lane_count()];
        // Tasks found busy are retried when the broker says what they wait for freed.
        let mut wakes = self.inner.broker.wakes(&run_id);
        // After a stop at once: when to give up on phases that have not reported back.
        let mut give_up_at: Option<tokio::time::Instant> = None;
        let mut gave_up = 0usize;
        loop {
            let stopping = stop_level >= item::STOP_AT_ONCE;
            if !stopping {
                // After a graceful stop, this starts the teardowns still due.
                let before = running;
                self.schedule((&done_tx, &writing_tx), &mut running);
                if running > before {
                    // Let the new occurrences start their processes before the rest of
                    // this step (and the last one's result write) is done.
                    tokio::task::yield_now().await;
                }
                self.prepare_ahead();
            } else {
                self.persist_settled();
            }
            self.announce_stage_changes(&mut lane_stages);
            let (finished, wake) = {
                let s = self.lock();
                (s.plan.is_done(), s.plan.next_wake())
            };
            if progress.may_send() {
                self.emit_progress();
            }
            if finished && running == 0 {
                break;
            }
            // Nothing running, only tasks waiting for resources: the run is stalled
            // (StormTest's status) until one of them can start.
            let status = self.lock().status;
            if stop_level == 0 && running == 0 && wake.is_some() && status == RunStatus::Running {
                let reason = self.stall_reason();
                self.set_status(RunStatus::Stalled, Some(reason));
            } else if running > 0 && status == RunStatus::Stalled {
                self.set_status(RunStatus::Running, None);
            }
            let sleep = async {
                match wake {
                    Some(t) if !stopping => {
                        let ms = (t - self.inner.clock.now_ms()).max(0) as u64;
                        tokio::time::sleep(std::time::Duration::from_millis(ms)).await
                    }
                    _ => std::future::pending().await,
                }
            };
            let woken = async {
                match wakes.as_mut() {
                    Some(rx) if !stopping => rx.recv().await,
                    _ => std::future::pending().await,
                }
            };
            let give_up = async {
                match give_up_at {
                    Some(t) if running > 0 => tokio::time::sleep_until(t).await,
                    _ => std::future::pending().await,
                }
            };
            let mut stop_rx = self.stop.clone();
            tokio::select! {
                d = done_rx.recv() => {
                    let Some(d) = d else { break };
                    running -= 1;
                    self.item_done(d);
                }
                _ = sleep => {}
                item = woken => match item {
                    Some(item) => {
                        let now = self.inner.clock.now_ms();
                        let mut s = self.lock();
                        s.plan.wake(item, now);
                        while let Some(item) = wakes.as_mut().and_then(|rx| rx.try_recv().ok()) {
                            s.plan.wake(item, now);
                        }
                    }
                    None => wakes = None,
                },
                _ = give_up => {
                    give_up_at = None;
                    gave_up += self.give_up_stuck(&mut running);
                }
                _ = progress.due(), if progress.held_back() => {}
                level = stop_rx.wait_for(|v| *v > stop_level), if !stopping => {
                    stop_level = level.map(|l| *l).unwrap_or(item::STOP_AT_ONCE);
                    if stop_level >= item::STOP_AT_ONCE {
                        tracing::info!(run_id = %run_id, "stopping run at once");
                        self.lock().plan.abort_pending("run stopped at once by the operator");
                        give_up_at = Some(
                            tokio::time::Instant::now() + stop_grace(&self.inner.limits),
                        );
                    } else {
                        tracing::info!(run_id = %run_id, "stopping run; teardowns still run");
                        self.lock().plan.stop("run stopped by the operator");
                        if self.lock().status == RunStatus::Stalled {
                            self.set_status(RunStatus::Running, None);
                        }
                    }
                }
            }
        }
        drop(writing_tx);
        if gave_up == 0 {
            let _ = writing_rx.recv().await;
        } else if tokio::time::timeout(STOP_SLACK, writing_rx.recv())
            .await
            .is_err()
        {
            // A task given up on that does not even yield to be cancelled.
            tracing::warn!(run_id = %run_id, "not waiting any longer for tasks given up on");
        }
        if let Some(p) = self.prep.take() {
            p.finish();
        }
        // The last figures go out whatever the throttle says.
        self.emit_progress();
        self.inner.broker.end_run(&run_id);
        let stopped = match stop_level {
            0 => None,
            1 => Some("stopped by the operator; teardowns ran"),
            _ => Some("stopped at once by the operator"),
        };
        let lost = self.unstored_results();
        let trouble = self.lock().storage.reason(lost);
        let (status, reason) = match (trouble, stopped) {
            (Some(t), Some(s)) => (RunStatus::Errored, Some(format!("{s}; {t}"))),
            (Some(t), None) => (RunStatus::Errored, Some(t)),
            (None, Some(s)) => (RunStatus::Stopped, Some(s.to_string())),
            (None, None) => (RunStatus::Completed, None),
        };
        if status == RunStatus::Errored {
            tracing::error!(run_id = %run_id, reason = reason.as_deref().unwrap_or(""), "run errored");
        }
        // results.yaml exists by the time the final status is announced.
        self.set_status_with(status, reason, || self.write_results_yaml());
        tracing::info!(run_id = %run_id, status = status.as_str(), "run ended");
        status
    }

    /// Commit what waits, then count the results the plan has that the store does not:
    /// a commit that failed earlier (no space left) may have taken results with it.
    fn unstored_results(&self) -> u32 {
        let store = &self.inner.store;
        if let Err(e) = store.commit_now() {
            self.ctx.store_failed("task results (commit)", None, &e);
        }
        let stored = match store.get_run(&self.ctx.run_id) {
            Ok(run) => run.counts.by_result,
            Err(e) => {
                self.ctx
                    .store_failed("results (reading them back)", None, &e);
                Default::default()
            }
        };
        let s = self.lock();
        let mut want: HashMap<&str, u32> = HashMap::new();
        for it in s.plan.items() {
            if let ItemState::Done { result, .. } = s.plan.state(it.id) {
                *want.entry(result.as_str()).or_default() += 1;
            }
        }
        want.into_iter()
            .map(|(r, n)| n.saturating_sub(stored.get(r).copied().unwrap_or(0)))
            .sum()
    }

    /// Lanes that moved to a later stage: the tasks of the stage they are at now, still
    /// queued, wait for something else than before (prereqs, `process_limit`, ...). Tell
    /// subscribers their new reason; tasks of later stages keep theirs (it names their own
    /// stage, see `Plan::wait_reason`), so each task is announced once per stage move.
    fn announce_stage_changes(&self, seen: &mut [usize]) {
        let events: Vec<RunEvent> = {
            let s = self.lock();
            let now = self.inner.clock.now_ms();
            let listening = self.inner.events.has_listeners();
            let mut ids: Vec<usize> = Vec::new();
            for (lane, seen) in seen.iter_mut().enumerate() {
                let stage = s.plan.lane_stage(lane);
                if stage == *seen {
                    continue;
                }
                *seen = stage;
                if !listening {
                    continue;
                }
                ids.extend(
                    s.plan
                        .current_stage_items(lane)
                        .iter()
                        .filter(|&&id| matches!(s.plan.state(id), ItemState::Pending)),
                );
            }
            if ids.is_empty() {
                return;
            }
            // A split test stage lists its shared tasks on every lane.
            ids.sort_unstable();
            ids.dedup();
            ids.into_iter()
                .map(|id| {
                    let it = s.plan.item(id);
                    RunEvent::TaskState {
                        run_id: self.ctx.run_id.clone(),
                        seq: self.ctx.seq.next(),
                        item: id as u32,
                        task: it.task.clone(),
                        kind: it.kind,
                        group: it.group.clone(),
                        lane: it.lane.map(|l| s.plan.lane_name(l).to_string()),
                        state: TaskState::Queued {
                            reason: s.plan.wait_reason(id, now).unwrap_or_default(),
                        },
                        ts: now,
                    }
                })
                .collect()
        };
        for ev in events {
            self.emit(ev);
        }
    }

    fn stall_reason(&self) -> String {
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

    /// `runs/<id>/results.yaml`, as pyATS leaves one beside its logs. Best effort: the
    /// store has everything, `testbay export` renders it again.
    fn write_results_yaml(&self) {
        let store = &self.inner.store;
        let run_id = &self.ctx.run_id;
        match (store.get_run(run_id), store.run_tasks(run_id)) {
            (Ok(run), Ok(tasks)) => {
                let path = self.ctx.run_dir.join("results.yaml");
                if let Err(e) = std::fs::write(&path, crate::report::results_yaml(&run, &tasks)) {
                    tracing::warn!(run_id = %run_id, error = %e, "could not write results.yaml");
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(run_id = %run_id, error = %e, "could not read the run back for results.yaml")
            }
        }
    }

    /// Start what the plan allows; handle broker answers; persist plan-made results.
    fn schedule(
        &mut self,
        (done_tx, writing): (&mpsc::UnboundedSender<ItemDone>, &item::ResultWrite),
        running: &mut usize,
    ) {
        loop {
            let now = self.inner.clock.now_ms();
            let starts = self.lock().plan.next_starts(now);
            self.persist_settled();
            if starts.is_empty() {
                return;
            }
            let mut again = false;
            for st in starts {
                let (grant, job) = {
                    let s = self.lock();
                    let it = s.plan.item(st.item);
                    let lane = s.plan.lane_name(st.lane).to_string();
                    let needs = TaskNeeds::from_def(
                        &self.ctx.run_id,
                        st.item,
                        &it.def,
                        &lane,
                        s.plan.lane_dut(st.lane),
                        s.plan.ats(),
                        now,
                    );
                    let grant = self.inner.broker.acquire(&needs);
                    let job = ItemJob {
                        item: st.item,
                        task_id: s.task_ids[st.item],
                        def: it.def.clone(),
                        kind: it.kind,
                        group: it.group.clone(),
                        task_dir: self
                            .pack
                            .tasks
                            .get(&it.task)
                            .map(|t| t.dir.clone())
                            .unwrap_or_else(|| self.pack.dir.clone()),
                        lane,
                        dut: s.plan.lane_dut(st.lane).cloned(),
                        dir_name: String::new(),
                        holdings: Vec::new(),
                        occ: Arc::new(Occurrence::default()),
                    };
                    (grant, job)
                };
                match grant {
                    Grant::Granted(holdings) => {
                        let mut job = job;
                        job.holdings = holdings;
                        job.dir_name = self.dir_name(&job.lane, &job.def.name);
                        if let Some(prep) = &mut self.prep {
                            prep.started(self.ctx.run_dir.join(&job.lane).join(&job.dir_name));
                        }
                        {
                            let mut s = self.lock();
                            s.started[st.item] = Some(now);
                        }
                        *running += 1;
                        let (item, occ) = (job.item, job.occ.clone());
                        let task =
                            spawn_item(self.ctx.clone(), job, done_tx.clone(), writing.clone());
                        self.occurrences.insert(item, (occ, task));
                    }
                    Grant::Busy { until, reason } => {
                        let waiting = {
                            let mut s = self.lock();
                            match s.plan.resource_busy(st.item, now, until, &reason) {
                                BusyOutcome::Delayed { .. } => s.plan.wait_reason(st.item, now),
                                BusyOutcome::GaveUp { .. } => None,
                            }
                        };
                        match waiting {
                            Some(reason) => {
                                self.emit_task(st.item, TaskState::Waiting { reason });
                            }
                            None => again = true,
                        }
                    }
                    Grant::Unavailable(reason) => {
                        let msg = format!("resources unavailable: {reason}");
                        self.lock().plan.finish(st.item, ERRORED, &msg);
                        self.store_engine_result(st.item, ERRORED, &msg, Some(job.lane.clone()));
                        again = true;
                    }
                }
            }
            if !again {
                // Newly started items cannot unblock anything until they finish.
                return;
            }
        }
    }

    /// Ask the preparer for the folders of the items each lane will most likely start
    /// next, under the names they will most likely get.
    fn prepare_ahead(&mut self) {
        let Some(mut prep) = self.prep.take() else {
            return;
        };
        {
            let mut s = self.lock();
            for lane in 0..s.plan.lane_count() {
                for id in s.plan.upcoming(lane, PREPARE_AHEAD) {
                    prep.want(id, || {
                        let lane_name = s.plan.lane_name(lane);
                        let def = &s.plan.item(id).def;
                        let name = free_dir_name(self.dir_names.get(lane_name), &def.name);
                        (
                            self.ctx.run_dir.join(lane_name).join(name),
                            item::log_names(def),
                        )
                    });
                }
            }
        }
        prep.send_pending();
        self.prep = Some(prep);
    }

    fn dir_name(&mut self, lane: &str, task: &str) -> String {
        let taken = self.dir_names.entry(lane.to_string()).or_default();
        let name = free_dir_name(Some(taken), task);
        taken.insert(name.clone());
        name
    }

    fn item_done(&mut self, d: ItemDone) {
        self.occurrences.remove(&d.item);
        let holdings = d.holdings;
        self.inner
            .broker
            .release(&self.ctx.run_id, d.item, &holdings);
        let failure = {
            let mut s = self.lock();
            s.finished[d.item] = Some(d.finished_ms);
            s.plan.finish(d.item, &d.result, &d.message)
        };
        if let Some(lane) = d.unwritten {
            // Its task could not store it (it panicked): stored and announced here.
            self.store_engine_result(d.item, &d.result, &d.message, Some(lane));
        } else if self.ctx.events.has_listeners() {
            // Announced here, once the live state has it, not by the occurrence's own task:
            // a view built in between would otherwise be numbered past an event it lacks.
            let (result, message) = (d.result, d.message);
            self.emit_task(
                d.item,
                TaskState::Done {
                    result,
                    message,
                    failure,
                },
            );
        }
    }

    /// After a stop at once, [`stop_grace`] has passed and some phases have not reported
    /// back: give up on those occurrences. Each becomes Aborted and its task is cancelled;
    /// every process still carrying the run's `TESTBAY_RUN_ID` is killed (a phase that
    /// left its process group escaped the group's SIGKILL). A direct child killed so stays
    /// a zombie until the console exits: its task, which would have reaped it, is gone.
    /// Returns how many occurrences were given up on.
    fn give_up_stuck(&mut self, running: &mut usize) -> usize {
        let grace = stop_grace(&self.inner.limits);
        let message = format!(
            "run stopped at once by the operator; this task had not ended {}s later, so the console gave up on it",
            grace.as_secs_f64()
        );
        let mut items: Vec<usize> = self.occurrences.keys().copied().collect();
        items.sort_unstable();
        let mut n = 0;
        for item in items {
            let (occ, task) = &self.occurrences[&item];
            if !occ.settle() {
                // It is ending by itself right now; its result is on its way.
                continue;
            }
            task.abort();
            self.occurrences.remove(&item);
            *running -= 1;
            self.inner.broker.release(&self.ctx.run_id, item, &[]);
            let lane = {
                let mut s = self.lock();
                let lane = match s.plan.state(item) {
                    ItemState::Running { lane } => Some(s.plan.lane_name(*lane).to_string()),
                    _ => None,
                };
                s.plan.finish(item, ABORTED, &message);
                lane
            };
            self.store_engine_result(item, ABORTED, &message, lane);
            n += 1;
        }
        if n > 0 {
            let killed =
                crate::exec::reap::kill_run_leftovers(std::slice::from_ref(&self.ctx.run_id));
            tracing::warn!(run_id = %self.ctx.run_id, given_up = n, killed, "gave up on tasks that did not end after a stop at once");
        }
        n
    }

    /// Store and announce results the plan assigned itself (Skipped, Blocked, ...).
    fn persist_settled(&self) {
        let (rows, events) = {
            let mut s = self.lock();
            let settled = s.plan.drain_settled();
            if settled.is_empty() {
                return;
            }
            let now = self.inner.clock.now_ms();
            let mut rows = Vec::new();
            let mut events = Vec::new();
            for id in settled {
                if let ItemState::Done {
                    result,
                    message,
                    failure,
                    lane,
                } = s.plan.state(id).clone()
                {
                    let lane_name = lane.map(|l| s.plan.lane_name(l).to_string());
                    rows.push((
                        s.task_ids[id],
                        TaskFinish {
                            lane: lane_name.clone(),
                            result: result.clone(),
                            failure,
                            message: message.clone(),
                            finished_ms: now,
                            ..Default::default()
                        },
                    ));
                    s.finished[id] = Some(now);
                    let it = s.plan.item(id);
                    events.push(RunEvent::TaskState {
                        run_id: self.ctx.run_id.clone(),
                        seq: self.ctx.seq.next(),
                        item: id as u32,
                        task: it.task.clone(),
                        kind: it.kind,
                        group: it.group.clone(),
                        lane: lane_name,
                        state: TaskState::Done {
                            result,
                            message,
                            failure,
                        },
                        ts: now,
                    });
                }
            }
            (rows, events)
        };
        if let Err(e) = self.inner.store.finish_tasks(&rows) {
            self.ctx.store_failed("results", None, &e);
        }
        for ev in events {
            self.emit(ev);
        }
    }

    fn store_engine_result(&self, item: usize, result: &str, message: &str, lane: Option<String>) {
        let now = self.inner.clock.now_ms();
        let (task_id, failure) = {
            let mut s = self.lock();
            s.finished[item] = Some(now);
            (s.task_ids[item], s.plan.is_failure(result))
        };
        let f = TaskFinish {
            lane,
            result: result.into(),
            failure,
            message: message.into(),
            finished_ms: now,
            ..Default::default()
        };
        if let Err(e) = self.inner.store.finish_task(task_id, &f) {
            self.ctx.store_failed("result", None, &e);
        }
        self.emit_task(
            item,
            TaskState::Done {
                result: result.into(),
                message: message.into(),
                failure,
            },
        );
    }

    fn emit_task(&self, item: usize, state: TaskState) {
        let ev = {
            let s = self.lock();
            let it = s.plan.item(item);
            let lane = match s.plan.state(item) {
                ItemState::Running { lane } => Some(*lane),
                ItemState::Done { lane, .. } => *lane,
                _ => it.lane,
            };
            RunEvent::TaskState {
                run_id: self.ctx.run_id.clone(),
                seq: self.ctx.seq.next(),
                item: item as u32,
                task: it.task.clone(),
                kind: it.kind,
                group: it.group.clone(),
                lane: lane.map(|l| s.plan.lane_name(l).to_string()),
                state,
                ts: self.inner.clock.now_ms(),
            }
        };
        self.emit(ev);
    }

    fn emit_progress(&self) {
        if !self.inner.events.has_listeners() {
            return;
        }
        let now = self.inner.clock.now_ms();
        let progress = {
            let s = self.lock();
            progress_of(&s, None, now)
        };
        self.emit(RunEvent::Progress {
            run_id: self.ctx.run_id.clone(),
            seq: self.ctx.seq.next(),
            progress,
            ts: now,
        });
    }
}

/// How long the pack's `scheduler` may take to order the queue.
pub const SCHEDULER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// In the `custom_*` resource modes, the test order per group the pack's `scheduler`
/// program chose (see [`order`]); `None` in the other modes, and when a
/// group is unknown (the plan then says so).
fn custom_test_order(
    pack: &LoadedPack,
    groups: &[String],
    mode: ResourceMode,
) -> Result<Option<HashMap<String, Vec<String>>>, String> {
    if !matches!(
        mode,
        ResourceMode::CustomAll | ResourceMode::CustomSeparate | ResourceMode::CustomCombine
    ) || groups.iter().any(|g| !pack.def.groups.contains_key(g))
    {
        return Ok(None);
    }
    let queue = order::queue(pack, groups);
    order::custom_order(pack, mode, &queue, SCHEDULER_TIMEOUT)
        .map(Some)
        .map_err(|e| format!("ordering the queue: {e}"))
}

/// Least time between two `progress` events of one run: a 2,000-task run finishes tasks
/// far faster than anyone reads figures, and every event goes to every subscriber.
pub const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Holds `progress` events of one run to one per [`PROGRESS_EVERY`]; one held back is
/// sent when that time is up (wall time: this paces traffic, not the plan).
#[derive(Default)]
struct ProgressThrottle {
    sent: Option<tokio::time::Instant>,
    held: bool,
}

impl ProgressThrottle {
    /// Whether a progress event may go now (then it counts as sent); otherwise it is
    /// held back for [`ProgressThrottle::due`].
    fn may_send(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if self.sent.is_some_and(|t| now < t + PROGRESS_EVERY) {
            self.held = true;
            return false;
        }
        self.sent = Some(now);
        self.held = false;
        true
    }

    fn held_back(&self) -> bool {
        self.held
    }

    /// When the held-back event may go (the driver loops and calls `may_send` again).
    async fn due(&self) {
        if let Some(t) = self.sent {
            tokio::time::sleep_until(t + PROGRESS_EVERY).await;
        }
    }
}

/// Estimated seconds of the whole run: the longest lane (shared tests spread evenly).
fn estimate_total(plan: &Plan) -> f64 {
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
fn progress_of(s: &LiveRun, lane: Option<usize>, now: EpochMs) -> Progress {
    let plan = &s.plan;
    let lanes = plan.lane_count().max(1);
    let mut done = 0u32;
    let mut total = 0u32;
    let mut failures = 0u32;
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
            ItemState::Done { failure, .. } => {
                done += 1;
                if *failure {
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
        elapsed_ms: now - s.started_ms,
        eta_ms: (!finished).then_some((eta_s * 1000.0) as i64),
    }
}

fn build_view(s: &LiveRun, now: EpochMs) -> RunView {
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
        lanes,
        shared,
        progress: progress_of(s, None, now),
    }
}

/// Copy the pack's files (those its content hash covers) into `to`; the content hash of
/// what was copied.
fn snapshot_pack(src: &Path, to: &Path) -> std::io::Result<String> {
    let root = src.canonicalize()?;
    std::fs::create_dir_all(to)?;
    let mut made: HashSet<PathBuf> = HashSet::new();
    let mut hash = pack::hash::ContentHash::default();
    let mut total = 0;
    for rel in pack::hash::pack_files(&root)? {
        let dst = to.join(&rel);
        if let Some(parent) = dst.parent() {
            if !made.contains(parent) {
                std::fs::create_dir_all(parent)?;
                made.insert(parent.to_path_buf());
            }
        }
        // Within the pack's size bound, copied and hashed piece by piece.
        let (from, len) = pack::hash::open_file(&root, &rel, &mut total)?;
        let permissions = from.metadata()?.permissions();
        let mut copy = std::fs::File::create(&dst)?;
        hash.add_reader(&rel, len, from, |piece| {
            std::io::Write::write_all(&mut copy, piece)
        })?;
        // Programs stay programs.
        copy.set_permissions(permissions)?;
    }
    Ok(hash.finish())
}

pub fn new_run_id(now: EpochMs) -> String {
    let rand = uuid::Uuid::new_v4().as_u128() as u16;
    format!("r{}-{rand:04x}", crate::timefmt::fmt_compact(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_format() {
        // 2026-11-21 19:55:00 UTC
        let id = new_run_id(1_795_290_900_000);
        assert!(id.starts_with("r20261121-195500-"), "{id}");
        assert_eq!(id.len(), "r20261121-195500-3f9a".len());
    }
}
