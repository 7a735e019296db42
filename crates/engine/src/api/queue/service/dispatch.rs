//! The dispatcher: the task that wakes on book, run and store changes (or a kick, or a
//! deadline) and starts the queued runs that can start, ending those overdue or that can
//! never start.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, Notify};

use crate::api::queue::QueueChangeKind;
use crate::api::Event;
use crate::outcome::RunStatus;
use crate::queue::Entry;
use crate::reserve::{BookEvent, BookEventKind};
use crate::run::{RunError, RunEvent};
use crate::store::NewRun;

use super::{Inner, State, Waiting};

/// How often the serving console looks whether another process (`testbay queue`)
/// changed the stored queue: one cheap read.
const STORE_LOOK: Duration = Duration::from_secs(1);

/// What woke the dispatcher.
enum Wake {
    /// These DUTs may have freed.
    Duts(Vec<String>),
    /// Look at everything.
    All,
    /// Another process may have changed the stored queue: read it again if so.
    StoreTick,
    /// A deadline or the retry time came.
    Timer,
}

pub(super) async fn dispatch_loop(
    weak: Weak<Inner>,
    kick: Arc<Notify>,
    mut book_rx: Option<broadcast::Receiver<BookEvent>>,
    mut run_rx: broadcast::Receiver<RunEvent>,
) {
    let mut seen = weak.upgrade().and_then(|i| i.store.queue_signature().ok());
    loop {
        let Some(sleep) = weak.upgrade().map(|i| i.next_wake()) else {
            return;
        };
        let book_event = async {
            match &mut book_rx {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let wake = tokio::select! {
            ev = book_event => match ev {
                Ok(ev) if matches!(ev.kind, BookEventKind::Released | BookEventKind::Expired) => {
                    Wake::Duts(vec![ev.reservation.resource.to_string()])
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => Wake::All,
                Err(broadcast::error::RecvError::Closed) => {
                    book_rx = None;
                    continue;
                }
            },
            ev = run_rx.recv() => match ev {
                Ok(RunEvent::RunStatus { run_id, status, .. }) if status.is_finished() => {
                    let Some(inner) = weak.upgrade() else { return };
                    let freed = inner.lock().running.remove(&run_id);
                    match freed {
                        Some(duts) => Wake::Duts(duts),
                        None => continue,
                    }
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let Some(inner) = weak.upgrade() else { return };
                    let active: HashSet<String> = inner.runs.active_runs().into_iter().collect();
                    inner.lock().running.retain(|id, _| active.contains(id));
                    Wake::All
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = kick.notified() => Wake::All,
            _ = tokio::time::sleep(sleep) => Wake::Timer,
            _ = tokio::time::sleep(STORE_LOOK) => Wake::StoreTick,
        };
        let Some(inner) = weak.upgrade() else { return };
        let wake = match wake {
            Wake::StoreTick => {
                let sig = inner.store.queue_signature().ok();
                if sig.is_none() || sig == seen {
                    continue;
                }
                seen = sig;
                inner.reload();
                Wake::All
            }
            w => w,
        };
        if !inner.starts.load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        inner.give_up_overdue();
        inner.dispatch(wake);
    }
}

impl Inner {
    /// How long the dispatcher may sleep: until the next `max_queue_time` deadline or
    /// the dispatch threshold's next try.
    fn next_wake(&self) -> Duration {
        let st = self.lock();
        let now = self.clock.now_ms();
        let deadline = st
            .queue
            .next_deadline()
            .map(|d| Duration::from_millis(u64::try_from(d.saturating_sub(now)).unwrap_or(0)));
        let retry = st
            .retry_at
            .map(|t| t.saturating_duration_since(Instant::now()));
        // When the runs waiting for agents passed over have waited long enough. A hold
        // whose time is up only lets its run through at its turn: it is no reason to wake
        // (its run may wait for a DUT taken meanwhile).
        let agent = st
            .agent_held
            .values()
            .map(|b| b.until_ms)
            .filter(|&u| u > now)
            .min()
            .map(|u| Duration::from_millis(u64::try_from(u.saturating_sub(now)).unwrap_or(0)));
        [deadline, retry, agent]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::from_secs(3600))
    }

    /// End the runs queued past their `max_queue_time`: `could_not_start`, with what
    /// they waited for.
    fn give_up_overdue(&self) {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let overdue: Vec<Entry> = st.queue.overdue(now).into_iter().cloned().collect();
        if overdue.is_empty() {
            return;
        }
        let mut ended = Vec::new();
        for e in overdue {
            st.queue.remove(&e.run_id);
            let w = st.waiting.remove(&e.run_id);
            ended.push((e, w));
        }
        drop(st);
        for (e, w) in ended {
            let secs = e.max_queue_ms.unwrap_or(0) / 1000;
            let reason = format!(
                "queued for longer than its max_queue_time ({secs} s) waiting for {}",
                e.duts.join(", ")
            );
            self.end_unstarted(&e, w, RunStatus::CouldNotStart, &reason);
            self.changed(&e.run_id, QueueChangeKind::GaveUp, Some(reason));
        }
    }

    /// Store a queued run that never started as a run with `status` and `reason`, so it
    /// shows in Results; out of the stored queue.
    pub(super) fn end_unstarted(
        &self,
        e: &Entry,
        w: Option<Waiting>,
        status: RunStatus,
        reason: &str,
    ) {
        let now = self.clock.now_ms();
        if let Err(err) = self.store.queue_remove(&e.run_id) {
            tracing::warn!(run_id = e.run_id, error = %err, "cannot take a run out of the stored queue");
        }
        let Some(w) = w else { return };
        let req = &w.launch.req;
        let mode = |v: Option<String>| v.unwrap_or_default();
        let run = NewRun {
            id: e.run_id.clone(),
            pack_name: w.pack_name.clone(),
            pack_version: w.launch.pack_version.clone(),
            content_hash: w.launch.content_hash.clone(),
            pack_dir: req.pack_dir.clone(),
            snapshot_dir: None,
            groups: req.groups.clone(),
            duts: req.duts.clone(),
            ats: req.ats.clone(),
            params: serde_json::Value::Object(req.params.clone()),
            resource_mode: mode(
                req.resource_mode
                    .and_then(|m| serde_json::to_value(m).ok()?.as_str().map(str::to_string)),
            ),
            coverage_mode: mode(
                req.coverage_mode
                    .and_then(|m| serde_json::to_value(m).ok()?.as_str().map(str::to_string)),
            ),
            status,
            reason: Some(reason.to_string()),
            created_ms: e.enqueued_ms,
            est_run_time: e.est_ms as f64 / 1000.0,
        };
        let stored = self.store.insert_run(&run, &[]).and_then(|_| {
            self.store
                .set_run_status(&run.id, status, Some(reason), now)
        });
        if let Err(err) = stored {
            tracing::error!(run_id = e.run_id, error = %err, "cannot store a queued run's end");
        }
        let _ = self.events.send(Event::Run(RunEvent::RunStatus {
            run_id: e.run_id.clone(),
            seq: 1,
            status,
            reason: Some(reason.into()),
            verdict: crate::outcome::RunVerdict::of(status, 0, 0),
            ts: now,
        }));
        tracing::info!(
            run_id = e.run_id,
            status = status.as_str(),
            reason,
            "queued run ended without starting"
        );
    }

    /// Start what may start: held back while the host's CPU is above the threshold.
    fn dispatch(&self, wake: Wake) {
        let mut st = self.lock();
        if st.queue.is_empty() {
            st.held_back = None;
            st.retry_at = None;
            return;
        }
        if matches!(wake, Wake::Timer) && st.retry_at.is_some_and(|t| t > Instant::now()) {
            return;
        }
        let threshold = self.cfg.cpu_threshold;
        if threshold < 100.0 {
            if let Some(cpu) = self.cfg.cpu.busy_percent().filter(|c| *c > threshold) {
                let retry = self.cfg.retry;
                let reason = format!(
                    "host CPU at {cpu:.0}%, above dispatch_cpu_threshold {threshold:.0}%; tried again in {} s",
                    retry.as_secs().max(1)
                );
                if st.held_back.as_deref() != Some(&reason) {
                    tracing::info!(reason, "dispatch held back");
                }
                st.held_back = Some(reason);
                st.retry_at = Some(Instant::now() + retry);
                return;
            }
        }
        let was_held = st.held_back.take().is_some();
        st.retry_at = None;
        let State {
            queue, agent_held, ..
        } = &mut *st;
        agent_held.retain(|id, _| queue.get(id).is_some());
        let busy = self.busy_now(&st);
        let free = |d: &str| !busy.contains(d);
        let oos = |d: &str| self.out_of_service(d);
        let picked: Vec<Entry> = match wake {
            Wake::Duts(duts) if !was_held => {
                let mut seen = HashSet::new();
                duts.iter()
                    .filter_map(|d| st.queue.pick_for(d, free, oos))
                    .filter(|e| seen.insert(e.run_id.clone()))
                    .cloned()
                    .collect()
            }
            _ => st.queue.pick_all(free, oos).into_iter().cloned().collect(),
        };
        let now = self.clock.now_ms();
        for e in picked {
            // Its racks' agents are all above their CPU threshold: it keeps its place,
            // until they report less or the time it was told to wait is up (an agent
            // still above it then is passed over again, but not for this run).
            let waited = st
                .agent_held
                .get(&e.run_id)
                .is_some_and(|b| b.until_ms <= now);
            let busy = st
                .waiting
                .get(&e.run_id)
                .filter(|_| !waited)
                .and_then(|w| self.runs.agents_busy(&w.launch.req));
            if let Some(busy) = busy {
                match st.agent_held.entry(e.run_id.clone()) {
                    std::collections::hash_map::Entry::Occupied(mut o) => {
                        o.get_mut().reason = busy.reason;
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        tracing::info!(
                            run_id = e.run_id,
                            reason = busy.reason,
                            "run waits for its rack's agent"
                        );
                        v.insert(busy);
                    }
                }
                continue;
            }
            st.agent_held.remove(&e.run_id);
            st.queue.remove(&e.run_id);
            let Some(w) = st.waiting.remove(&e.run_id) else {
                continue;
            };
            // Taking it out of the stored queue is the claim: of two servers that both
            // believe they own the book, only the one whose claim took the row starts it,
            // and neither waits behind the other's (`Store::queue_claim`).
            match self.store.queue_claim(&e.run_id) {
                Ok(false) => {
                    tracing::warn!(
                        run_id = e.run_id,
                        "a queued run was taken by another server"
                    );
                    continue;
                }
                Ok(true) => {}
                Err(err) => {
                    tracing::warn!(run_id = e.run_id, error = %err, "cannot take a run out of the stored queue")
                }
            }
            match self.runs.launch_as(w.launch.req.clone(), e.run_id.clone()) {
                Ok(id) => {
                    if !e.duts.is_empty() {
                        st.running.insert(id.clone(), e.duts.clone());
                    }
                    tracing::info!(run_id = id, "queued run started");
                    self.changed(&id, QueueChangeKind::Started, None);
                }
                Err(RunError::CouldNotStart { run_id, reason }) => {
                    self.changed(&run_id, QueueChangeKind::GaveUp, Some(reason));
                }
                Err(err) => {
                    let reason = format!("at its turn in the queue: {err}");
                    let run_id = e.run_id.clone();
                    drop(st);
                    self.end_unstarted(&e, Some(w), RunStatus::CouldNotStart, &reason);
                    self.changed(&run_id, QueueChangeKind::GaveUp, Some(reason));
                    st = self.lock();
                }
            }
        }
    }
}
