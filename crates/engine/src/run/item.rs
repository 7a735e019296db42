//! Execute one task occurrence: setup → main → teardown phases (kissats `run_task`), store
//! the outcome, tell the driver. A task with `max_retries` whose result is a failure runs
//! again (not after a stop), each attempt in its own folder with its own logs; every
//! attempt is stored, the result is the last attempt's, and one that passed only on a
//! retry is flaky.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::clock::{Clock, EpochMs};
use crate::exec::{self, ExecLimits, Exit, LiveLog, PhaseOutcome, StopSignal};
use crate::judge;
use crate::model::StopLevel;
use crate::outcome::{Phase, ABORTED, ERRORED, FAILED, TIMEOUT};
use crate::pack::{GlobalParams, TaskDef};
use crate::plan::DutTarget;
use crate::store::{
    AttemptRecord, NewSubResult, SectionRecord, Store, TaskFinish, TaskKind, TaskPaths,
};

use super::broker::Holding;
use super::events::{RunEvent, TaskState};
use super::runner::{relative_to, PhaseCall, PhaseJob, PhaseRunner};
use super::taskfiles::{log_name, open_params_file, ParamsFile, PARAMS_FILE};

/// What the driver needs to know when an occurrence is done.
#[derive(Debug)]
pub(crate) struct ItemDone {
    pub item: usize,
    pub result: String,
    pub message: String,
    /// Passed only on a retry (`max_retries`).
    pub flaky: bool,
    pub holdings: Vec<Holding>,
    pub finished_ms: EpochMs,
    /// Set when the occurrence's task ended without storing a result (it panicked): the
    /// driver stores this one, on this lane.
    pub unwritten: Option<String>,
}

/// What an occurrence's task and the driver share.
#[derive(Debug, Default)]
pub(crate) struct Occurrence {
    /// Taken by whoever settles the occurrence first: its task, with the phases' result,
    /// or the driver giving up on a task that does not end (a stop at once whose phase
    /// never reports back). The other one stores nothing.
    settled: AtomicBool,
}

impl Occurrence {
    /// Whether the caller settles the occurrence (nobody did before).
    pub fn settle(&self) -> bool {
        !self.settled.swap(true, Ordering::AcqRel)
    }

    /// Whether someone settled the occurrence already (the driver gave up on it).
    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }
}

/// Settles an occurrence whose task ended without doing so (a panic), as Errored.
struct SettleOnDrop {
    occ: Arc<Occurrence>,
    item: usize,
    lane: String,
    holdings: Vec<Holding>,
    clock: Arc<dyn Clock>,
    done: mpsc::UnboundedSender<ItemDone>,
}

impl Drop for SettleOnDrop {
    fn drop(&mut self) {
        if !self.occ.settle() {
            return;
        }
        let message = if std::thread::panicking() {
            "the console's task running this occurrence failed (a panic; see the console's log)"
        } else {
            "the console's task running this occurrence ended without a result"
        };
        tracing::error!(item = self.item, lane = %self.lane, message, "occurrence ended unsettled");
        let _ = self.done.send(ItemDone {
            item: self.item,
            result: ERRORED.into(),
            message: message.into(),
            flaky: false,
            holdings: std::mem::take(&mut self.holdings),
            finished_ms: self.clock.now_ms(),
            unwritten: Some(self.lane.clone()),
        });
    }
}

/// Run an occurrence on its own task. Should the task end without settling it (a panic),
/// the driver still hears of it, as Errored. The handle lets the driver give up on it.
pub(crate) fn spawn_item(
    ctx: Arc<RunCtx>,
    job: ItemJob,
    done: mpsc::UnboundedSender<ItemDone>,
    writing: ResultWrite,
) -> tokio::task::AbortHandle {
    let guard = SettleOnDrop {
        occ: job.occ.clone(),
        item: job.item,
        lane: job.lane.clone(),
        holdings: job.holdings.clone(),
        clock: ctx.clock.clone(),
        done: done.clone(),
    };
    tokio::spawn(async move {
        let _guard = guard;
        execute_item(ctx, job, done, writing).await;
    })
    .abort_handle()
}

impl RunCtx {
    /// Note a failed store write of this run (logged too).
    pub fn store_failed(&self, what: &str, task: Option<&str>, error: &dyn std::fmt::Display) {
        tracing::error!(run_id = %self.run_id, task, error = %error, "could not store {what}");
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .storage
            .store_failed(error);
    }
}

/// Why an occurrence could not be attempted; its result is Errored with this message.
struct NotRun {
    message: String,
    /// The run's folder could not take the task's files (no space, no permission).
    files: bool,
}

/// Held by an occurrence until its result is written; the driver waits for every one to
/// be dropped (its channel to close) before it ends the run.
pub(crate) type ResultWrite = mpsc::Sender<()>;

/// Everything shared by the occurrences of one run.
pub(crate) struct RunCtx {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub events: super::events::EventOut,
    /// The run's event numbers (see [`super::events::Seq`]).
    pub seq: super::events::Seq,
    pub params: GlobalParams,
    pub params_json: Value,
    pub ats: Option<String>,
    pub limits: ExecLimits,
    /// Stop level of the run (`None` while it is not stopped).
    pub stop: watch::Receiver<Option<StopLevel>>,
    /// The run's live state; phases record which phase runs.
    pub live: Arc<std::sync::Mutex<super::LiveRun>>,
    /// The run's reporter socket; `None` when it could not be bound (phases then run
    /// without `TESTBAY_REPORTER`).
    pub reporter: Option<Arc<exec::reporter::Reporter>>,
    /// Where the run's phases run: here, or on its rack's agent.
    pub runner: Arc<dyn PhaseRunner>,
    /// The run's pack snapshot (`runs/<id>/pack`) and its content hash.
    pub pack_dir: PathBuf,
    pub snapshot_hash: String,
}

pub(crate) struct ItemJob {
    pub item: usize,
    pub task_id: i64,
    pub def: TaskDef,
    pub kind: TaskKind,
    pub group: Option<String>,
    /// Folder the task's argv is relative to.
    pub task_dir: PathBuf,
    pub lane: String,
    pub dut: Option<DutTarget>,
    /// Folder name of this occurrence under `runs/<id>/<lane>/`.
    pub dir_name: String,
    pub holdings: Vec<Holding>,
    pub occ: Arc<Occurrence>,
}

/// Longest time a finished task's result waits for its commit.
const COMMIT_WITHIN: Duration = Duration::from_millis(5);

fn stopped(ctx: &RunCtx, at: StopLevel) -> bool {
    ctx.stop.borrow().is_some_and(|l| l >= at)
}

fn is_failure(params: &GlobalParams, result: &str) -> bool {
    !params.valid_result.iter().any(|v| v == result)
}

async fn execute_item(
    ctx: Arc<RunCtx>,
    job: ItemJob,
    done: mpsc::UnboundedSender<ItemDone>,
    writing: ResultWrite,
) {
    let occ_started_ms = ctx.clock.now_ms();
    let occ_dir = ctx.run_dir.join(&job.lane).join(&job.dir_name);
    let retries = job.def.max_retries.min(crate::bounds::MAX_TASK_RETRIES);
    let mut attempts = Vec::new();
    let mut attempt = 1u32;
    let (result, message, mut finish) = loop {
        let (result, message, finish) = attempt_once(&ctx, &job, &occ_dir, attempt).await;
        if retries == 0 {
            break (result, message, finish);
        }
        attempts.push(AttemptRecord {
            attempt,
            result: finish.result.clone(),
            failure: finish.failure,
            message: finish.message.clone(),
            started_ms: finish.started_ms,
            finished_ms: finish.finished_ms,
            exit_code: finish.exit_code,
            signal: finish.signal,
            paths: finish.paths.clone(),
        });
        // A stop ends the retries, and so does an occurrence the run gave up on.
        let stop_at = if job.kind == TaskKind::Teardown {
            StopLevel::AtOnce
        } else {
            StopLevel::Graceful
        };
        if !finish.failure || attempt > retries || stopped(&ctx, stop_at) || job.occ.is_settled() {
            break (result, message, finish);
        }
        tracing::info!(run_id = %ctx.run_id, task = %job.def.name, attempt, result = %result, "task failed; retrying (max_retries)");
        attempt += 1;
    };
    if !job.occ.settle() {
        tracing::warn!(run_id = %ctx.run_id, task = %job.def.name, "the run gave up on this task before it ended; its result is not stored");
        return;
    }
    // The occurrence spans every attempt; its result is the last attempt's.
    finish.started_ms = Some(occ_started_ms);
    finish.flaky = !finish.failure && attempts.len() > 1;
    finish.attempts = attempts;
    let flaky = finish.flaky;
    let finished_ms = finish.finished_ms;
    // The driver announces the result once the run's live state has it.
    let _ = done.send(ItemDone {
        item: job.item,
        result,
        message,
        flaky,
        holdings: job.holdings,
        finished_ms,
        unwritten: None,
    });
    // The driver starts the next task first; this result is written while that task's
    // process runs instead of before it starts. The driver waits for `writing` to end
    // before the run ends.
    tokio::task::yield_now().await;
    if let Err(e) = ctx.store.finish_task(job.task_id, &finish) {
        ctx.store_failed("task result", Some(&job.def.name), &e);
    }
    commit_soon(&ctx);
    drop(writing);
}

/// One attempt of the occurrence: its phases in the occurrence's folder (the first
/// attempt) or in `attempt-N/` inside it (a retry, with its own logs and artifacts).
async fn attempt_once(
    ctx: &Arc<RunCtx>,
    job: &ItemJob,
    occ_dir: &std::path::Path,
    attempt: u32,
) -> (String, String, TaskFinish) {
    let started_ms = ctx.clock.now_ms();
    let dir = if attempt <= 1 {
        occ_dir.to_path_buf()
    } else {
        occ_dir.join(format!("attempt-{attempt}"))
    };
    let artifacts = dir.join("artifacts");
    let paths = TaskPaths {
        task_dir: Some(dir.display().to_string()),
        setup_log: job
            .def
            .setup
            .as_ref()
            .map(|_| dir.join(log_name(Phase::Setup)).display().to_string()),
        main_log: Some(dir.join(log_name(Phase::Main)).display().to_string()),
        teardown_log: job
            .def
            .teardown
            .as_ref()
            .map(|_| dir.join(log_name(Phase::Teardown)).display().to_string()),
        artifacts_dir: Some(artifacts.display().to_string()),
    };
    let outcome = run_phases(ctx, job, &dir, &artifacts, &paths).await;
    let finished_ms = ctx.clock.now_ms();
    match outcome {
        Ok(o) => o.into_finish(&ctx.params, job, started_ms, finished_ms, paths),
        Err(NotRun {
            message: msg,
            files,
        }) => {
            if files {
                tracing::error!(run_id = %ctx.run_id, task = %job.def.name, error = %msg, "cannot prepare task");
                ctx.live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .storage
                    .files_failed(&msg);
            }
            (
                ERRORED.to_string(),
                msg.clone(),
                TaskFinish {
                    lane: Some(job.lane.clone()),
                    result: ERRORED.into(),
                    failure: is_failure(&ctx.params, ERRORED),
                    message: msg,
                    started_ms: Some(started_ms),
                    finished_ms,
                    ..Default::default()
                },
            )
        }
    }
}

/// Have what the store holds uncommitted committed within [`COMMIT_WITHIN`] (see
/// `Store::finish_task`): one timer at a time for the whole store, not one per task. A
/// failed commit is this run's trouble (other runs' results in it are found missing when
/// those runs end).
fn commit_soon(ctx: &Arc<RunCtx>) {
    if !ctx.store.promise_commit() {
        return;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(COMMIT_WITHIN).await;
        if let Err(e) = ctx.store.commit_now() {
            ctx.store_failed("task results (commit)", None, &e);
        }
    });
}

/// Outcomes of the phases that ran.
struct Phases {
    setup: Option<PhaseOutcome>,
    main: Option<PhaseOutcome>,
    teardown: Option<PhaseOutcome>,
}

impl Phases {
    fn into_finish(
        self,
        params: &GlobalParams,
        job: &ItemJob,
        started_ms: EpochMs,
        finished_ms: EpochMs,
        paths: TaskPaths,
    ) -> (String, String, TaskFinish) {
        // The files exist once a phase was attempted.
        let attempted = self.setup.is_some() || self.main.is_some() || self.teardown.is_some();
        let failed = |o: &PhaseOutcome| is_failure(params, &o.result);
        // Task result: a failed setup decides; then main; a failed teardown after a good
        // main decides too.
        let (mut result, mut message, mut exit) = match (&self.setup, &self.main) {
            (Some(s), _) if failed(s) => {
                (s.result.clone(), format!("setup: {}", s.message), s.exit)
            }
            (_, Some(m)) => (m.result.clone(), m.message.clone(), m.exit),
            // Stopped between phases or before the first one.
            _ => (
                ABORTED.to_string(),
                "run stopped before the task ran".to_string(),
                Exit::NotStarted,
            ),
        };
        if let Some(t) = &self.teardown {
            if failed(t) && !is_failure(params, &result) {
                result = t.result.clone();
                message = format!("teardown: {}", t.message);
                exit = t.exit;
            }
        }
        let main = self.main.as_ref();
        // The main phase's measurements: one out of limits fails the task (unless the
        // result file overrides it with a reason); the message names it either way.
        let measurements = main.map(|m| m.measurements.clone()).unwrap_or_default();
        if let Some(m) = main {
            let j = judge::judge(&m.measurements, &m.metadata);
            if j.fails() && !is_failure(params, &result) {
                result = FAILED.to_string();
            }
            message = j.message_with_note(&message);
        }
        let metadata = main
            .filter(|m| !m.metadata.is_empty())
            .map(|m| Value::Object(m.metadata.clone()));
        let raw_result = [&self.setup, &self.main, &self.teardown]
            .into_iter()
            .flatten()
            .find_map(|o| o.raw_result.clone());
        let sub_results = main
            .map(|m| {
                m.multi_result
                    .iter()
                    .map(|s| {
                        // A sub-result's measurements judge the sub-result alone.
                        let j = judge::judge(&s.measurements, &s.metadata.extra);
                        let result = if j.fails() && !is_failure(params, &s.result) {
                            FAILED.to_string()
                        } else {
                            s.result.clone()
                        };
                        NewSubResult {
                            name: s.name.clone(),
                            description: s.description.clone(),
                            failure: is_failure(params, &result),
                            result,
                            message: j.message_with_note(&s.metadata.message),
                            metadata: (!s.metadata.extra.is_empty())
                                .then(|| Value::Object(s.metadata.extra.clone())),
                            measurements: s.measurements.clone(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let dur = |o: &Option<PhaseOutcome>| o.as_ref().map(|o| o.finished_ms - o.started_ms);
        let run_time = (finished_ms - started_ms) as f64 / 1000.0;
        let truncated = [&self.setup, &self.main, &self.teardown]
            .into_iter()
            .flatten()
            .any(|o| o.log.truncated);
        let (exit_code, signal) = match exit {
            Exit::Code(c) => (Some(c), None),
            Exit::Signal(s) => (None, Some(s)),
            Exit::NotStarted => (None, None),
        };
        let finish = TaskFinish {
            lane: Some(job.lane.clone()),
            result: result.clone(),
            failure: is_failure(params, &result),
            message: message.clone(),
            metadata,
            raw_result,
            run_time: Some(run_time),
            run_time_delta: Some(run_time - job.def.est_task_time),
            started_ms: Some(started_ms),
            finished_ms,
            setup_ms: dur(&self.setup),
            main_ms: dur(&self.main),
            teardown_ms: dur(&self.teardown),
            exit_code,
            signal,
            log_truncated: truncated,
            sub_results,
            measurements,
            sections: [&self.setup, &self.main, &self.teardown]
                .into_iter()
                .flatten()
                .flat_map(|o| {
                    let phase = o.phase.as_str();
                    o.report.iter().flat_map(move |r| {
                        r.sections.iter().map(move |s| SectionRecord {
                            phase: phase.to_string(),
                            section: s.clone(),
                        })
                    })
                })
                .collect(),
            paths: if attempted {
                paths
            } else {
                TaskPaths::default()
            },
            ..Default::default()
        };
        (result, message, finish)
    }
}

async fn run_phases(
    ctx: &Arc<RunCtx>,
    job: &ItemJob,
    occ_dir: &std::path::Path,
    artifacts: &std::path::Path,
    paths: &TaskPaths,
) -> Result<Phases, NotRun> {
    let params_file = occ_dir.join(PARAMS_FILE);
    let params_doc = ParamsFile {
        run_id: &ctx.run_id,
        task: &job.def.name,
        kind: job.kind,
        group: job.group.as_deref(),
        lane: &job.lane,
        dut: job.dut.as_ref(),
        ats: ctx.ats.as_deref(),
        rack: job.dut.as_ref().and_then(|d| d.rack.as_deref()),
        slot: job.dut.as_ref().and_then(|d| d.slot),
        global_params: &ctx.params_json,
        task_params: &job.def,
        reservations: &job.holdings,
    };
    let params = serde_json::to_vec_pretty(&params_doc).expect("plain JSON");
    open_params_file(occ_dir, artifacts, &params_file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &params))
        .map_err(|e| NotRun {
            message: format!("cannot write {}: {e}", params_file.display()),
            files: true,
        })?;

    let mut phases = Phases {
        setup: None,
        main: None,
        teardown: None,
    };
    let ended_itself = |o: &PhaseOutcome| !matches!(o.result.as_str(), ERRORED | TIMEOUT | ABORTED);
    // A graceful stop ends setups and tests; teardown tasks (and a task's own teardown
    // phase) only end on a stop at once.
    let first_at = if job.kind == TaskKind::Teardown {
        StopLevel::AtOnce
    } else {
        StopLevel::Graceful
    };
    if let (Some(argv), false) = (&job.def.setup, stopped(ctx, first_at)) {
        let o = run_one(
            ctx,
            job,
            Phase::Setup,
            first_at,
            argv,
            occ_dir,
            artifacts,
            &params_file,
            paths,
        )
        .await?;
        phases.setup = Some(o);
    }
    let setup_ok = phases
        .setup
        .as_ref()
        .is_none_or(|s| !is_failure(&ctx.params, &s.result));
    if setup_ok && !stopped(ctx, first_at) {
        let o = run_one(
            ctx,
            job,
            Phase::Main,
            first_at,
            &job.def.run,
            occ_dir,
            artifacts,
            &params_file,
            paths,
        )
        .await?;
        phases.main = Some(o);
    } else if !setup_ok {
        tracing::info!(run_id = %ctx.run_id, task = %job.def.name, "setup failed; main phase not run");
    }
    if let Some(argv) = &job.def.teardown {
        let clean = setup_ok && phases.main.as_ref().is_some_and(ended_itself);
        if (clean || job.def.always_teardown) && !stopped(ctx, StopLevel::AtOnce) {
            let o = run_one(
                ctx,
                job,
                Phase::Teardown,
                StopLevel::AtOnce,
                argv,
                occ_dir,
                artifacts,
                &params_file,
                paths,
            )
            .await?;
            phases.teardown = Some(o);
        }
    }
    Ok(phases)
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    ctx: &Arc<RunCtx>,
    job: &ItemJob,
    phase: Phase,
    stop_at: StopLevel,
    argv: &[String],
    occ_dir: &std::path::Path,
    artifacts: &std::path::Path,
    params_file: &std::path::Path,
    paths: &TaskPaths,
) -> Result<PhaseOutcome, NotRun> {
    let result_name = match phase {
        Phase::Main => "result.json".to_string(),
        p => format!("{}.result.json", p.as_str()),
    };
    let here = ctx.runner.reports_here();
    let report = ctx.reporter.as_ref().filter(|_| here).map(|r| {
        let info = exec::reporter::PhaseInfo {
            task: job.def.name.clone(),
            lane: job.lane.clone(),
            item: job.item as u32,
            phase,
        };
        r.open_phase(info, artifacts, Some(report_sink(ctx, job, phase)))
    });
    let phase_job = PhaseJob {
        run_id: ctx.run_id.clone(),
        item: job.item as u32,
        task: job.def.name.clone(),
        lane: job.lane.clone(),
        phase,
        snapshot_hash: ctx.snapshot_hash.clone(),
        task_dir: relative_to(&job.task_dir, &ctx.pack_dir),
        argv: argv.to_vec(),
        dir: relative_to(occ_dir, &ctx.run_dir),
        log_file: log_name(phase),
        result_file: result_name,
        params: if here {
            None
        } else {
            // The runner is on another machine: it gets the file's content.
            std::fs::read_to_string(params_file).ok()
        },
        // Within `bounds::MAX_TASK_TIME_S` once loaded; clamped here too, as a float
        // beyond Duration's range would panic.
        max_runtime_ms: job.def.max_runtime.filter(|s| *s >= 0.0).and_then(|s| {
            Duration::try_from_secs_f64(s.min(f64::from(crate::bounds::MAX_TASK_TIME_S)))
                .ok()
                .map(|d| d.as_millis() as u64)
        }),
        kill_grace_ms: ctx.limits.kill_grace.as_millis() as u64,
    };
    let live = {
        let events = ctx.events.clone();
        let seq = ctx.seq.clone();
        let clock = ctx.clock.clone();
        let run_id = ctx.run_id.clone();
        let task = job.def.name.clone();
        let lane = job.lane.clone();
        let item = job.item as u32;
        Box::new(move |l: LiveLog| {
            if !events.has_listeners() {
                return;
            }
            let ts = clock.now_ms();
            let ev = match l {
                LiveLog::Lines(lines) => RunEvent::Log {
                    run_id: run_id.clone(),
                    seq: seq.next(),
                    item,
                    task: task.clone(),
                    lane: lane.clone(),
                    phase,
                    lines,
                    ts,
                },
                LiveLog::Dropped(n) => RunEvent::LogDropped {
                    run_id: run_id.clone(),
                    seq: seq.next(),
                    item,
                    task: task.clone(),
                    lane: lane.clone(),
                    phase,
                    count: n.min(u32::MAX as u64) as u32,
                    ts,
                },
            };
            events.send(ev);
        }) as exec::LiveSink
    };
    // The store hears of the start only if the phase still runs `COMMIT_WITHIN` later:
    // a shorter phase's start would be overwritten by its result before either is
    // committed, so nobody outside could see it anyway. (The result carries the paths.)
    let spawned = std::sync::OnceLock::<(u32, EpochMs)>::new();
    let on_spawn = |pid: u32| {
        let now = ctx.clock.now_ms();
        let _ = spawned.set((pid, now));
        {
            let mut live = ctx.live.lock().unwrap_or_else(|p| p.into_inner());
            live.phase[job.item] = Some(phase);
            live.operator[job.item] = None;
        }
        ctx.events.send_with(|| RunEvent::TaskState {
            run_id: ctx.run_id.clone(),
            seq: ctx.seq.next(),
            item: job.item as u32,
            task: job.def.name.clone(),
            kind: job.kind,
            group: job.group.clone(),
            lane: Some(job.lane.clone()),
            state: TaskState::Running {
                phase,
                waiting: None,
            },
            ts: now,
        });
    };
    let running = ctx.runner.run_phase(PhaseCall {
        job: phase_job,
        reporter: report.as_ref().map(|h| exec::ReporterEnv {
            socket: h.socket.clone(),
            token: h.token.clone(),
        }),
        live: Some(live),
        report: (!here).then(|| report_sink(ctx, job, phase)),
        stop: Some(StopSignal {
            level: ctx.stop.clone(),
            at: stop_at,
        }),
        on_spawn: Box::new(on_spawn),
    });
    tokio::pin!(running);
    let outcome = tokio::select! {
        biased;
        o = &mut running => o,
        _ = tokio::time::sleep(COMMIT_WITHIN) => {
            if let Some(&(pid, at)) = spawned.get() {
                if let Err(e) = ctx.store.task_phase_started(
                    job.task_id,
                    &job.lane,
                    phase.as_str(),
                    at,
                    Some(pid as i32),
                    paths,
                ) {
                    ctx.store_failed("running task", Some(&job.def.name), &e);
                }
            }
            running.await
        }
    };
    let mut outcome = outcome.map_err(|e| NotRun {
        files: matches!(e, exec::ExecError::LogFile { .. }),
        message: e.to_string(),
    })?;
    // A prompt still open when the phase ended waits no more.
    ctx.live.lock().unwrap_or_else(|p| p.into_inner()).operator[job.item] = None;
    if let Some(h) = report {
        let reason = format!("still open when the {} phase ended", phase.as_str());
        exec::apply_report(&mut outcome, h.finish(&reason, ctx.clock.now_ms()));
    }
    Ok(outcome)
}

/// Sends what a phase reports to the event stream as it happens.
fn report_sink(ctx: &Arc<RunCtx>, job: &ItemJob, phase: Phase) -> exec::reporter::ReportSink {
    let events = ctx.events.clone();
    let seq = ctx.seq.clone();
    let clock = ctx.clock.clone();
    let run_id = ctx.run_id.clone();
    let task = job.def.name.clone();
    let lane = job.lane.clone();
    let item = job.item as u32;
    let kind = job.kind;
    let group = job.group.clone();
    let live = ctx.live.clone();
    Box::new(move |event| {
        use crate::reporter::Change;
        use exec::reporter::ReportEvent;
        // The running task's wait reason follows its open prompt, listened to or not.
        let waiting = match event {
            ReportEvent::Asked(view) => Some(Some(view.message.clone())),
            ReportEvent::Answered(..) => Some(None),
            ReportEvent::Changed(..) => None,
        };
        if let Some(message) = waiting {
            let seq = {
                let mut l = live.lock().unwrap_or_else(|p| p.into_inner());
                l.operator[item as usize] = message.clone();
                events.has_listeners().then(|| seq.next())
            };
            if let Some(seq) = seq {
                events.send(RunEvent::TaskState {
                    run_id: run_id.clone(),
                    seq,
                    item,
                    task: task.clone(),
                    kind,
                    group: group.clone(),
                    lane: Some(lane.clone()),
                    state: TaskState::Running {
                        phase,
                        waiting: message.as_deref().map(super::view::operator_wait),
                    },
                    ts: clock.now_ms(),
                });
            }
        }
        if let ReportEvent::Changed(change, report) = event {
            keep_section(&live, item as usize, phase, change, report);
        }
        if !events.has_listeners() {
            return;
        }
        let ts = clock.now_ms();
        let (change, report) = match event {
            ReportEvent::Changed(c, r) => (c, r),
            ReportEvent::Asked(view) => {
                events.send(RunEvent::Prompt {
                    run_id: run_id.clone(),
                    seq: seq.next(),
                    item,
                    task: task.clone(),
                    lane: lane.clone(),
                    prompt: Box::new(view.clone()),
                    ts,
                });
                return;
            }
            ReportEvent::Answered(view, answer) => {
                events.send(RunEvent::PromptAnswered {
                    run_id: run_id.clone(),
                    seq: seq.next(),
                    item,
                    task: task.clone(),
                    lane: lane.clone(),
                    id: view.id,
                    answer: answer.clone(),
                    ts,
                });
                return;
            }
        };
        let ev = match change {
            Change::Started(id) | Change::Stopped(id) => {
                let Some(s) = report.sections.get(*id as usize) else {
                    return;
                };
                RunEvent::Section {
                    run_id: run_id.clone(),
                    seq: seq.next(),
                    item,
                    task: task.clone(),
                    lane: lane.clone(),
                    phase,
                    section: Box::new(crate::reporter::Section {
                        details: Vec::new(),
                        extra: Default::default(),
                        ..s.clone()
                    }),
                    ts,
                }
            }
            Change::Measured {
                section,
                measurement,
            } => RunEvent::Measurement {
                run_id: run_id.clone(),
                seq: seq.next(),
                item,
                task: task.clone(),
                lane: lane.clone(),
                phase,
                section: *section,
                passed: measurement.passed(),
                measurement: Box::new(measurement.clone()),
                ts,
            },
            Change::None | Change::Result => return,
        };
        events.send(ev);
    })
}

/// Keeps the section a change touched, as it stands now, in the run's live state.
fn keep_section(
    live: &std::sync::Mutex<super::LiveRun>,
    item: usize,
    phase: Phase,
    change: &crate::reporter::Change,
    report: &crate::reporter::PhaseReport,
) {
    use crate::reporter::Change;
    let id = match change {
        Change::Started(id) | Change::Stopped(id) => *id,
        Change::Measured {
            section: Some(id), ..
        } => *id,
        _ => return,
    };
    let Some(s) = report.sections.get(id as usize) else {
        return;
    };
    let section = crate::reporter::Section {
        details: Vec::new(),
        extra: Default::default(),
        ..s.clone()
    };
    let phase_name = phase.as_str();
    let mut l = live.lock().unwrap_or_else(|p| p.into_inner());
    let kept = l.sections.entry(item).or_default();
    match kept
        .iter_mut()
        .find(|k| k.phase == phase_name && k.section.id == id)
    {
        Some(k) => k.section = section,
        None => kept.push(SectionRecord {
            phase: phase_name.to_string(),
            section,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn guard(occ: &Arc<Occurrence>) -> (SettleOnDrop, mpsc::UnboundedReceiver<ItemDone>) {
        let (done, rx) = mpsc::unbounded_channel();
        let g = SettleOnDrop {
            occ: occ.clone(),
            item: 7,
            lane: "box-1".into(),
            holdings: Vec::new(),
            clock: Arc::new(ManualClock::new(1_000)),
            done,
        };
        (g, rx)
    }

    /// An occurrence's task that panics still reports its occurrence, as Errored and not
    /// stored (the driver stores it); one that was settled before reports nothing more.
    #[tokio::test]
    async fn a_task_that_dies_unsettled_reports_its_occurrence_errored() {
        let occ = Arc::new(Occurrence::default());
        let (g, mut rx) = guard(&occ);
        let task = tokio::spawn(async move {
            let _g = g;
            panic!("the phase's timer failed");
        });
        assert!(task.await.unwrap_err().is_panic());
        let d = rx.recv().await.expect("the driver hears of it");
        assert_eq!((d.item, d.result.as_str()), (7, ERRORED));
        assert!(d.message.contains("panic"), "{}", d.message);
        assert_eq!(d.unwritten.as_deref(), Some("box-1"));
        assert!(!occ.settle(), "settled once");

        let occ = Arc::new(Occurrence::default());
        let (g, mut rx) = guard(&occ);
        assert!(
            occ.settle(),
            "its own task (or the driver) settles it first"
        );
        drop(g);
        assert!(rx.recv().await.is_none(), "nothing more to say");
    }
}
