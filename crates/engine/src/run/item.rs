//! Execute one task occurrence: setup → main → teardown phases (kissats `run_task`), store
//! the outcome, tell the driver. A task with `max_retries` whose result is a failure runs
//! again (not after a stop), each attempt in its own folder with its own logs; every
//! attempt is stored, the result is the last attempt's, and one that passed only on a
//! retry is flaky.

mod finish;
mod phases;
mod report;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::clock::{Clock, EpochMs};
use crate::exec::{self, ExecLimits};
use crate::model::StopLevel;
use crate::outcome::{Phase, ERRORED};
use crate::pack::{GlobalParams, TaskDef};
use crate::plan::DutTarget;
use crate::store::{AttemptRecord, Store, TaskFinish, TaskKind, TaskPaths};

use super::broker::Holding;
use super::placement::LaneRunners;
use super::taskfiles::log_name;

use phases::run_phases;

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
    /// Where each lane's phases run: here, or on its DUT's rack's agent.
    pub runners: LaneRunners,
    /// The console's operator prompts (a rack agent's phases ask theirs there).
    pub prompts: Arc<exec::prompts::Prompts>,
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
