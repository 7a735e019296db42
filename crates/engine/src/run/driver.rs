//! The loop that drives one run to its end: it starts what the plan lets start, asks the
//! broker, hears occurrences finish, stops on request, gives up on phases that never
//! report back, and sets the run's final status.

mod reasons;
mod results;
mod stop;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::events::ProgressThrottle;
use super::item::{self, spawn_item, ItemDone, ItemJob, Occurrence, RunCtx};
use super::runner::RunnerHealth;
use super::view::progress_of;
use super::{
    prepare, taskfiles, Grant, Inner, LiveRun, RunEvent, TaskNeeds, TaskState, STOP_SLACK,
};
use crate::model::StopLevel;
use crate::outcome::{RunStatus, ERRORED};
use crate::pack::LoadedPack;
use crate::plan::{BusyOutcome, ItemState};

pub(super) struct Driver {
    pub(super) inner: Arc<Inner>,
    pub(super) ctx: Arc<RunCtx>,
    pub(super) state: Arc<Mutex<LiveRun>>,
    pub(super) pack: LoadedPack,
    pub(super) stop: watch::Receiver<Option<StopLevel>>,
    /// Folder names taken per lane.
    pub(super) dir_names: HashMap<String, HashSet<String>>,
    /// Makes the folders of upcoming items while others run.
    pub(super) prep: Option<prepare::Preparer>,
    /// Occurrences started and not yet done, with their tasks.
    pub(super) occurrences: HashMap<usize, (Arc<Occurrence>, tokio::task::AbortHandle)>,
    /// Why the run's runner was lost (the run then ends `interrupted`).
    pub(super) lost: Option<String>,
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
        let verdict = {
            let mut s = self.lock();
            s.status = status;
            s.reason = reason.clone();
            if status.is_finished() {
                s.ended_ms.get_or_insert(now);
            }
            super::view::verdict_of(&s, now)
        };
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
            verdict,
            ts: now,
        });
    }

    pub(super) async fn drive(mut self) -> RunStatus {
        let run_id = self.ctx.run_id.clone();
        tracing::info!(run_id = %run_id, "run started");
        self.set_status(RunStatus::Running, None);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<ItemDone>();
        // Closes when every started occurrence has written its result.
        let (writing_tx, mut writing_rx) = mpsc::channel::<()>(1);
        let mut running = 0usize;
        // Stop level seen so far.
        let mut stop_level: Option<StopLevel> = None;
        let mut progress = ProgressThrottle::default();
        let mut reasons = self.reasons_at_start();
        // Tasks found busy are retried when the broker says what they wait for freed.
        let mut wakes = self.inner.broker.wakes(&run_id);
        // A claim lost in the database under the book ends the run interrupted.
        let mut lost_leases = self.inner.broker.lost_leases(&run_id);
        // After a stop at once: when to give up on phases that have not reported back.
        let mut give_up_at: Option<tokio::time::Instant> = None;
        let mut gave_up = 0usize;
        // Where the phases run (a rack agent) may stall or be lost.
        let mut health = self.ctx.runners.health();
        let mut runner_stalled = false;
        loop {
            // A stop the select below has not taken yet is applied before anything else:
            // its occurrences may already have ended because of it (they watch the stop
            // too), and a run they finish must still end `stopped`, its pending tasks
            // Aborted by the stop rather than settled as if nothing happened.
            let pending = *self.stop.borrow();
            self.apply_stop(pending, &mut stop_level, &mut give_up_at);
            let stopping = stop_level == Some(StopLevel::AtOnce);
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
            self.announce_reasons(&mut reasons);
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
            if runner_stalled {
                // Stays stalled until its runner is heard from again (or lost).
            } else if stop_level.is_none()
                && running == 0
                && wake.is_some()
                && status == RunStatus::Running
            {
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
            let runner_health = async {
                match health.as_mut() {
                    Some(rx) => match rx.changed().await {
                        Ok(()) => Some(rx.borrow_and_update().clone()),
                        Err(_) => None,
                    },
                    None => std::future::pending().await,
                }
            };
            let lease_lost = async {
                match lost_leases.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let mut stop_rx = self.stop.clone();
            tokio::select! {
                why = lease_lost => {
                    lost_leases = None;
                    if let Some(reason) = why.filter(|_| self.lost.is_none()) {
                        tracing::warn!(run_id = %run_id, reason = %reason, "run interrupted: it lost a claim");
                        self.lost = Some(reason);
                        self.apply_stop(Some(StopLevel::AtOnce), &mut stop_level, &mut give_up_at);
                    }
                },
                h = runner_health => match h {
                    None => health = None,
                    Some(RunnerHealth::Healthy) => {
                        if runner_stalled {
                            runner_stalled = false;
                            self.set_status(RunStatus::Running, None);
                        }
                    }
                    Some(RunnerHealth::Stalled(reason)) => {
                        if !runner_stalled && self.lost.is_none() {
                            runner_stalled = true;
                            tracing::warn!(run_id = %run_id, reason = %reason, "run stalled: its runner is silent");
                            self.set_status(RunStatus::Stalled, Some(reason));
                        }
                    }
                    Some(RunnerHealth::Lost(reason)) => {
                        health = None;
                        runner_stalled = false;
                        tracing::warn!(run_id = %run_id, reason = %reason, "run interrupted: its runner is lost");
                        self.lost = Some(reason);
                        self.apply_stop(Some(StopLevel::AtOnce), &mut stop_level, &mut give_up_at);
                    }
                },
                d = done_rx.recv() => {
                    let Some(d) = d else { break };
                    running -= 1;
                    // An occurrence ended by a stop reaches here before the stop may
                    // have: take the stop first, so what has not started is Aborted by it
                    // rather than Skipped as after a failure.
                    let pending = *self.stop.borrow();
                    self.apply_stop(pending, &mut stop_level, &mut give_up_at);
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
                    let level = level.map(|l| *l).unwrap_or(Some(StopLevel::AtOnce));
                    self.apply_stop(level, &mut stop_level, &mut give_up_at);
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
            None => None,
            Some(StopLevel::Graceful) => Some("stopped by the operator; teardowns ran"),
            Some(StopLevel::AtOnce) => Some("stopped at once by the operator"),
        };
        let lost = self.unstored_results();
        let trouble = self.lock().storage.reason(lost);
        let (status, reason) = match (trouble, stopped) {
            // Its runner was lost: the run is interrupted, as by a console's death.
            (_, _) if self.lost.is_some() => (RunStatus::Interrupted, self.lost.clone()),
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
                            taskfiles::log_names(def),
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
            s.flaky[d.item] = d.flaky;
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
                    flaky: d.flaky,
                },
            );
        }
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
