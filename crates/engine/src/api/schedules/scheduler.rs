//! The scheduler: a task of the console that serves the data directory. Every second it
//! reads the stored schedules (so another process's changes count at once) and fires
//! what is due through the console's launch path into the run queue, at low priority.
//!
//! - A firing is due when the calendar's next firing after the schedule's last one (or
//!   its save or resume) has come; it is recorded (`fired`) with its run, and counts
//!   toward `repeat_count`.
//! - A `loop` fires its next run once the previous one has ended (queued or running
//!   counts as going).
//! - At the console's start, a firing due more than [`LATE_MS`] ago was missed while
//!   the console was down: the calendar's catch-up report is recorded (`missed`), then
//!   one run goes now (`caught_up`), when the window opens, or none (`skipped`); the
//!   `schedule_missed` webhooks are told (schedule id, name, first due time, how many,
//!   what was done and why).
//! - A firing whose launch is refused is recorded `failed` with the reason; a `loop`
//!   whose firing fails is paused (it would fail again at once).

use std::sync::Weak;
use std::time::Duration;

use serde_json::json;
use tokio::sync::oneshot;

use super::ScheduleDef;
use crate::api::{LaunchSpec, LocalConsole, Priority, Response};
use crate::clock::EpochMs;
use crate::schedule::{CatchUpAction, CatchUpReport, Recurrence};
use crate::store::{FiringRecord, ScheduleRecord, Store, StoreError, WebhookEvent};

/// How often the stored schedules are read.
pub const TICK: Duration = Duration::from_secs(1);

/// A firing due longer ago than this at the console's start was missed while it was down.
pub const LATE_MS: EpochMs = 60_000;

/// A stored schedule with its definition read.
#[derive(Debug, Clone)]
pub struct Stored {
    pub rec: ScheduleRecord,
    pub def: ScheduleDef,
}

/// Every stored schedule whose definition reads (one that does not is skipped, with a
/// warning: it was checked when stored).
pub fn load(store: &dyn Store) -> Result<Vec<Stored>, StoreError> {
    Ok(store
        .schedule_list()?
        .into_iter()
        .filter_map(
            |rec| match serde_json::from_str::<ScheduleDef>(&rec.def_json) {
                Ok(def) => Some(Stored { rec, def }),
                Err(e) => {
                    tracing::warn!(id = rec.id, error = %e, "a stored schedule is unreadable");
                    None
                }
            },
        )
        .collect())
}

/// The next `n` firings from `now` (a catch-up run waiting for its window first).
pub fn upcoming(s: &Stored, now: EpochMs, n: usize) -> Vec<EpochMs> {
    let Ok(sched) = s.def.when.compile() else {
        return Vec::new();
    };
    let mut out: Vec<EpochMs> = s.rec.pending_ms.into_iter().collect();
    out.extend(sched.upcoming(
        s.rec.since_ms.max(now.saturating_sub(1)),
        s.rec.fired,
        n.saturating_sub(out.len()),
    ));
    out
}

/// Start the scheduler once the console is shared (it needs a handle on it that does
/// not keep it alive). Called within the console's runtime.
pub fn start() -> oneshot::Sender<Weak<LocalConsole>> {
    let (tx, rx) = oneshot::channel::<Weak<LocalConsole>>();
    tokio::spawn(async move {
        let Ok(console) = rx.await else { return };
        let mut first = true;
        loop {
            let Some(c) = console.upgrade() else { return };
            c.schedules_tick(first).await;
            first = false;
            drop(c);
            tokio::time::sleep(TICK).await;
        }
    });
    tx
}

/// Where a loop's previous run stands.
enum Previous {
    Going,
    EndedAt(EpochMs),
}

impl LocalConsole {
    async fn schedules_tick(&self, at_start: bool) {
        let all = match load(&*self.store) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored schedules");
                return;
            }
        };
        for s in all.into_iter().filter(|s| !s.rec.paused) {
            self.schedule_step(s, at_start).await;
        }
    }

    async fn schedule_step(&self, mut s: Stored, at_start: bool) {
        let Ok(sched) = s.def.when.compile() else {
            return;
        };
        let now = self.clock.now_ms();
        if sched.recurrence() == Recurrence::Loop {
            let after = match s.rec.last_run_id.as_deref().map(|id| self.previous(id)) {
                Some(Previous::Going) => return,
                Some(Previous::EndedAt(t)) => t,
                None => s.rec.since_ms,
            };
            if let Some(due) = sched.next_firing(after.max(s.rec.since_ms), s.rec.fired) {
                if due <= now {
                    self.fire(&mut s, due, "fired").await;
                }
            }
            return;
        }
        if let Some(p) = s.rec.pending_ms.filter(|p| *p <= now) {
            s.rec.pending_ms = None;
            self.fire(&mut s, p, "caught_up").await;
            return;
        }
        let Some(due) = sched.next_firing(s.rec.since_ms, s.rec.fired) else {
            return;
        };
        if due > now {
            return;
        }
        if !(at_start && due < now.saturating_sub(LATE_MS)) {
            self.fire(&mut s, due, "fired").await;
            return;
        }
        let report = sched.catch_up(s.rec.since_ms, now, s.rec.fired);
        self.note(
            &s.rec.id,
            report.first_missed,
            "missed",
            None,
            Some(report.to_string()),
        );
        self.tell_missed(&s, &report);
        s.rec.since_ms = report.last_missed.unwrap_or(now).max(s.rec.since_ms);
        match report.action {
            CatchUpAction::RunNow { .. } | CatchUpAction::Nothing => {
                self.fire(&mut s, report.last_missed.unwrap_or(due), "caught_up")
                    .await;
            }
            CatchUpAction::RunWhenWindowOpens { at } => {
                s.rec.pending_ms = Some(at);
                self.save(&s.rec);
            }
            CatchUpAction::NextFiringStandsIn { .. } => self.save(&s.rec),
            CatchUpAction::Skipped => {
                self.note(
                    &s.rec.id,
                    report.last_missed,
                    "skipped",
                    None,
                    Some("catch_up: skip".into()),
                );
                self.save(&s.rec);
            }
        }
    }

    /// Tell the `schedule_missed` webhooks that `s` missed firings while no console ran,
    /// and what was done about them.
    fn tell_missed(&self, s: &Stored, report: &CatchUpReport) {
        let action = match report.action {
            CatchUpAction::Nothing | CatchUpAction::RunNow { .. } => "caught_up",
            CatchUpAction::RunWhenWindowOpens { .. } => "caught_up_when_window_opens",
            CatchUpAction::NextFiringStandsIn { .. } => "next_firing_stands_in",
            CatchUpAction::Skipped => "skipped",
        };
        self.webhooks.notify(
            WebhookEvent::ScheduleMissed,
            json!({
                "schedule_id": s.rec.id,
                "name": s.def.name,
                "due_ms": report.first_missed,
                "last_due_ms": report.last_missed,
                "missed": report.missed,
                "action": action,
                "why": report.to_string(),
            }),
        );
    }

    /// A loop's previous run: going (queued, or not ended), or ended when.
    fn previous(&self, run_id: &str) -> Previous {
        match self.store.get_run(run_id) {
            Ok(r) if r.status.is_finished() => {
                Previous::EndedAt(r.finished_ms.unwrap_or_else(|| self.clock.now_ms()))
            }
            Ok(_) => Previous::Going,
            // Not stored yet: it waits in the run queue (or the store cannot say).
            Err(_) => {
                if self.queue.contains(run_id) {
                    Previous::Going
                } else {
                    Previous::EndedAt(self.clock.now_ms())
                }
            }
        }
    }

    /// Fire `s` for the firing due at `due`: launch through the run queue at low
    /// priority, record it, move the schedule on.
    async fn fire(&self, s: &mut Stored, due: EpochMs, kind: &str) {
        let id = s.rec.id.clone();
        let duts = match &s.def.dut_search {
            Some(q) => self.search_first(q),
            None => Ok(s.def.duts.clone()),
        };
        let spec = duts.map(|duts| LaunchSpec {
            pack: s.def.pack.clone(),
            groups: s.def.groups.clone(),
            duts,
            params: s.def.params.clone(),
            coverage_mode: s.def.coverage_mode,
            priority: Some(Priority::Low),
            ..LaunchSpec::default()
        });
        let launched = match spec {
            Ok(spec) => self
                .launch_from(spec, &format!("schedule:{id}"), true)
                .await
                .map_err(|e| e.message),
            Err(e) => Err(e),
        };
        s.rec.fired = s.rec.fired.saturating_add(1);
        s.rec.since_ms = due.max(s.rec.since_ms);
        match launched {
            Ok(Response::Launch { run_id, .. }) => {
                tracing::info!(schedule = id, run_id, "schedule fired");
                self.note(&id, Some(due), kind, Some(run_id.clone()), None);
                s.rec.last_run_id = Some(run_id);
            }
            Ok(_) => {}
            Err(reason) => {
                tracing::warn!(
                    schedule = id,
                    reason,
                    "a schedule's firing could not launch"
                );
                let loops = s.def.when.kind == crate::schedule::ScheduleType::Loop;
                let note = if loops {
                    format!("{reason}; the loop is paused")
                } else {
                    reason
                };
                self.note(&id, Some(due), "failed", None, Some(note));
                s.rec.last_run_id = None;
                s.rec.paused |= loops;
            }
        }
        self.save(&s.rec);
    }

    /// The DUT a search names at this firing: the first match.
    fn search_first(&self, q: &str) -> Result<Vec<String>, String> {
        let terms: Vec<&str> = q.split_whitespace().collect();
        let lab = self.lab().map_err(|e| e.message)?;
        let found = lab.find(&terms).map_err(|e| format!("dut_search: {e}"))?;
        found
            .first()
            .map(|d| vec![d.name.clone()])
            .ok_or_else(|| format!("dut_search `{q}` matches no DUT"))
    }

    fn note(
        &self,
        id: &str,
        due: Option<EpochMs>,
        kind: &str,
        run_id: Option<String>,
        note: Option<String>,
    ) {
        let f = FiringRecord {
            schedule_id: id.into(),
            due_ms: due,
            at_ms: self.clock.now_ms(),
            kind: kind.into(),
            run_id,
            note,
        };
        if let Err(e) = self.store.schedule_firing_add(&f) {
            tracing::warn!(schedule = id, error = %e, "cannot record a schedule's firing");
        }
    }

    /// Store where the schedule stands, over what an operator may have changed since it
    /// was read (maybe in another process): removed stays removed, and its name,
    /// definition and pause stay as the operator left them.
    fn save(&self, rec: &ScheduleRecord) {
        let current = match self.store.schedule_list() {
            Ok(l) => l.into_iter().find(|r| r.id == rec.id),
            Err(_) => Some(rec.clone()),
        };
        let Some(mut current) = current else {
            return;
        };
        current.since_ms = rec.since_ms;
        current.fired = rec.fired;
        current.pending_ms = rec.pending_ms;
        current.last_run_id = rec.last_run_id.clone();
        current.paused |= rec.paused;
        if let Err(e) = self.store.schedule_put(&current) {
            tracing::warn!(schedule = rec.id, error = %e, "cannot store where a schedule stands");
        }
    }
}
