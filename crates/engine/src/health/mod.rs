//! Device health (LAVA): each DUT's health (`good`, `bad`, `unknown`), its history, and
//! the health checks the lab file names (`lab::health`). A health run that passes makes
//! its DUT good; one that fails makes it bad (and tells the `dut_bad` webhooks). Runs on a
//! DUT that fail on infrastructure (a task `Errored` or `Timeout`, or the run could not
//! start) count towards `after_failures`, which makes its check due at once.
//!
//! The console launches due checks through its normal launch path (`api`); this service
//! keeps the state and hears every run's end on a channel of its own, so nothing here
//! runs on a run's path.
//!
//! Which runs are health runs is stored (`HealthStore::health_runs`) until each is
//! settled, so a health run that ends after a console restart (one that waited in the run
//! queue, say) still judges its DUT. At start the service takes them up again: one whose
//! run ended meanwhile is settled at once, one neither stored nor queued is forgotten, and
//! one a dead console left `interrupted` says nothing of its DUT (the check falls due
//! again after its interval).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::sync::mpsc;

use crate::clock::{Clock, EpochMs};
use crate::lab::{HealthCheck, HealthDue, Lab};
use crate::outcome::{RunStatus, ERRORED, TIMEOUT};
use crate::store::{
    DutHealth, Health, HealthChange, HealthStore, RunRecord, Store, StoreError, WebhookEvent,
};
use crate::webhook::Webhooks;

/// The console's health service (see the module doc).
pub struct HealthService {
    store: Arc<Mutex<Box<dyn HealthStore>>>,
    lab: Option<Lab>,
    clock: Arc<dyn Clock>,
    /// Health runs going now: run id → DUT.
    in_flight: Arc<Mutex<HashMap<String, String>>>,
    /// DUTs in bad health, kept beside the store so the run queue can ask at every pick
    /// without reading the database.
    bad: BadDuts,
    ended: mpsc::UnboundedSender<String>,
}

type BadDuts = Arc<std::sync::RwLock<std::collections::HashSet<String>>>;

impl std::fmt::Debug for HealthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthService").finish_non_exhaustive()
    }
}

/// A health check to launch now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCheck {
    pub dut: String,
    pub check: HealthCheck,
    pub why: HealthDue,
}

impl HealthService {
    /// Start the service: its task hears the ends of runs ([`HealthService::run_status`]).
    /// Must be called within a tokio runtime.
    pub fn start(
        store: Arc<dyn Store>,
        lab: Option<Lab>,
        clock: Arc<dyn Clock>,
        webhooks: Arc<Webhooks>,
    ) -> Result<Arc<Self>, StoreError> {
        let hs = store.open_health_store()?;
        let (going, settle_now) = take_up(&*store, &*hs)?;
        let bad: BadDuts = Arc::new(std::sync::RwLock::new(
            hs.all_health()?
                .into_iter()
                .filter(|h| h.health == Health::Bad)
                .map(|h| h.dut)
                .collect(),
        ));
        let health = Arc::new(Mutex::new(hs));
        let in_flight = Arc::new(Mutex::new(going));
        let (ended, rx) = mpsc::unbounded_channel();
        for run_id in settle_now {
            let _ = ended.send(run_id);
        }
        tokio::spawn(listen(
            rx,
            Settle {
                runs: store,
                health: health.clone(),
                in_flight: in_flight.clone(),
                clock: clock.clone(),
                webhooks,
                bad: bad.clone(),
            },
        ));
        Ok(Arc::new(Self {
            store: health,
            lab,
            clock,
            in_flight,
            bad,
            ended,
        }))
    }

    /// A run's status changed; an end is settled on the service's task.
    pub fn run_status(&self, run_id: &str, status: RunStatus) {
        if status.is_finished() {
            let _ = self.ended.send(run_id.to_string());
        }
    }

    /// The checks due at `now`: DUTs of the lab with a health check, in service, with no
    /// health run going.
    pub fn due(&self) -> Result<Vec<DueCheck>, StoreError> {
        let Some(lab) = &self.lab else {
            return Ok(Vec::new());
        };
        let now = self.clock.now_ms();
        let store = lock(&self.store);
        let going: Vec<String> = lock(&self.in_flight).values().cloned().collect();
        let mut out = Vec::new();
        for dut in &lab.def.duts {
            if dut.offline || going.contains(&dut.name) {
                continue;
            }
            let Some(check) = lab.health_check(&dut.name) else {
                continue;
            };
            let h = store.health(&dut.name)?;
            if let Some(why) =
                crate::lab::health::due(check, h.last_check_ms, h.infra_failures, now)
            {
                out.push(DueCheck {
                    dut: dut.name.clone(),
                    check: check.clone(),
                    why,
                });
            }
        }
        Ok(out)
    }

    /// The health check of `dut` from the lab file.
    pub fn check_of(&self, dut: &str) -> Option<HealthCheck> {
        self.lab.as_ref()?.health_check(dut).cloned()
    }

    /// A health run of `dut` was launched (it may wait in the run queue).
    pub fn launched(&self, dut: &str, run_id: &str) -> Result<(), StoreError> {
        lock(&self.in_flight).insert(run_id.to_string(), dut.to_string());
        let now = self.clock.now_ms();
        let store = lock(&self.store);
        store.health_run_add(run_id, dut, now)?;
        store.check_started(dut, now)
    }

    /// Whether a health run of `dut` is going.
    pub fn checking(&self, dut: &str) -> bool {
        lock(&self.in_flight).values().any(|d| d == dut)
    }

    /// Every DUT with a stored health.
    pub fn all(&self) -> Result<Vec<DutHealth>, StoreError> {
        lock(&self.store).all_health()
    }

    /// One DUT's health and its history (newest first, at most `limit`).
    pub fn of(&self, dut: &str, limit: u32) -> Result<(DutHealth, Vec<HealthChange>), StoreError> {
        let store = lock(&self.store);
        Ok((store.health(dut)?, store.health_history(dut, limit)?))
    }

    /// Whether `dut` is in bad health now (no database read).
    pub fn is_bad(&self, dut: &str) -> bool {
        self.bad
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(dut)
    }

    /// An operator restores `dut` to good health, with a note.
    pub fn restore(&self, dut: &str, note: &str) -> Result<(), StoreError> {
        write_health(
            &**lock(&self.store),
            &self.bad,
            dut,
            &HealthChange {
                ts_ms: self.clock.now_ms(),
                health: Health::Good,
                reason: "restored by an operator".into(),
                run_id: None,
                note: Some(note.to_string()),
            },
        )
    }
}

/// The stored health runs at the service's start: those still going (run id → DUT), and
/// those whose run ended while no console heard it (to settle now). The rest are
/// forgotten.
fn take_up(
    runs: &dyn Store,
    health: &dyn HealthStore,
) -> Result<(HashMap<String, String>, Vec<String>), StoreError> {
    let stored = health.health_runs()?;
    if stored.is_empty() {
        return Ok((HashMap::new(), Vec::new()));
    }
    let queued: Vec<String> = runs.queue_list()?.into_iter().map(|q| q.run_id).collect();
    let mut going = HashMap::new();
    let mut settle_now = Vec::new();
    for (run_id, dut) in stored {
        match runs.get_run(&run_id) {
            Ok(r) if r.status.is_finished() => {
                going.insert(run_id.clone(), dut);
                settle_now.push(run_id);
            }
            Ok(_) => {
                going.insert(run_id, dut);
            }
            Err(_) if queued.contains(&run_id) => {
                going.insert(run_id, dut);
            }
            Err(_) => {
                tracing::info!(run_id, dut, "a stored health run is gone; forgotten");
                health.health_run_remove(&run_id)?;
            }
        }
    }
    Ok((going, settle_now))
}

/// What settles the end of a run.
struct Settle {
    runs: Arc<dyn Store>,
    health: Arc<Mutex<Box<dyn HealthStore>>>,
    in_flight: Arc<Mutex<HashMap<String, String>>>,
    clock: Arc<dyn Clock>,
    webhooks: Arc<Webhooks>,
    bad: BadDuts,
}

async fn listen(mut rx: mpsc::UnboundedReceiver<String>, s: Settle) {
    let s = Arc::new(s);
    while let Some(run_id) = rx.recv().await {
        let s = s.clone();
        let done = tokio::task::spawn_blocking(move || {
            match settle(&s, &run_id) {
                Ok(()) => {}
                // The console is shutting down (a `testbay run` that just ended): its
                // store refuses reads, and nothing of the run itself is lost.
                Err(StoreError::Closing) => {
                    tracing::debug!(run_id, "console closing; the run's DUT health is not counted");
                }
                Err(e) => {
                    tracing::warn!(run_id, error = %e, "cannot record DUT health for a run that ended");
                }
            }
        })
        .await;
        if done.is_err() {
            tracing::error!("the DUT health task failed");
        }
    }
}

/// Whether a run failed on infrastructure rather than on what it tested.
pub fn infra_failure(run: &RunRecord) -> bool {
    let count = |r: &str| run.counts.by_result.get(r).copied().unwrap_or(0);
    run.status == RunStatus::CouldNotStart || count(ERRORED) > 0 || count(TIMEOUT) > 0
}

/// Settle a run's end; a health run counts as going until its DUT's health is written.
fn settle(s: &Settle, run_id: &str) -> Result<(), StoreError> {
    let checked = lock(&s.in_flight).get(run_id).cloned();
    let r = settle_run(s, run_id, checked.clone());
    if checked.is_some() {
        lock(&s.health).health_run_remove(run_id)?;
    }
    lock(&s.in_flight).remove(run_id);
    r
}

fn settle_run(s: &Settle, run_id: &str, checked: Option<String>) -> Result<(), StoreError> {
    let run = s.runs.get_run(run_id)?;
    let now: EpochMs = s.clock.now_ms();
    let store = lock(&s.health);
    let Some(dut) = checked else {
        let infra = infra_failure(&run);
        for d in &run.duts {
            store.count_run(&d.name, infra)?;
        }
        return Ok(());
    };
    if run.status == RunStatus::Interrupted {
        tracing::info!(
            run_id,
            dut,
            "a health run was interrupted; the DUT's health stands"
        );
        return Ok(());
    }
    let passed = run.status == RunStatus::Completed && run.counts.failures == 0;
    if passed {
        write_health(
            &**store,
            &s.bad,
            &dut,
            &HealthChange {
                ts_ms: now,
                health: Health::Good,
                reason: format!(
                    "health check passed ({} {})",
                    run.pack_name, run.pack_version
                ),
                run_id: Some(run_id.to_string()),
                note: None,
            },
        )?;
        return Ok(());
    }
    let was_bad = store.health(&dut)?.health == Health::Bad;
    let reason = format!(
        "health check failed: run {run_id} of {} ended {} with {} failure(s){}",
        run.pack_name,
        run.status.as_str(),
        run.counts.failures,
        run.reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    write_health(
        &**store,
        &s.bad,
        &dut,
        &HealthChange {
            ts_ms: now,
            health: Health::Bad,
            reason: reason.clone(),
            run_id: Some(run_id.to_string()),
            note: None,
        },
    )?;
    if was_bad {
        return Ok(());
    }
    tracing::warn!(dut, run_id, reason, "DUT health turned bad");
    s.webhooks.notify(
        WebhookEvent::DutBad,
        json!({ "dut": dut, "reason": reason, "run_id": run_id, "since_ms": now }),
    );
    Ok(())
}

/// Store a DUT's new health and keep the bad set in step with it.
fn write_health(
    store: &dyn HealthStore,
    bad: &BadDuts,
    dut: &str,
    change: &HealthChange,
) -> Result<(), StoreError> {
    store.set_health(dut, change)?;
    let mut bad = bad.write().unwrap_or_else(|p| p.into_inner());
    if change.health == Health::Bad {
        bad.insert(dut.to_string());
    } else {
        bad.remove(dut);
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
