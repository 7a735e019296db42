//! The run's [`ResourceBroker`] on the reservation book.
//!
//! Each DUT is an exclusive resource: a lane holds its DUT from its first task until its
//! last one ends (or the run ends), so two runs wanting the same DUT queue behind each
//! other. Lab resources follow the run's resource mode (kissats):
//! - `all`: before any task starts, each lane pre-reserves every resource its tasks need
//!   for the lane's estimated time; tasks claim from those.
//! - `per_task_separate`: each task reserves its resources for its own estimated time and
//!   releases them when it ends.
//! - `per_task_combine`: as separate, but a resource the lane already holds is reused, and
//!   kept while a later task of the lane still needs it.
//! - `custom_*` behave as their base mode here (the ordering hook belongs to the plan).
//!
//! A task that cannot have everything gets nothing (what it got is given back, its lane's
//! DUT too if this attempt took it) and a `Busy` answer with the time the missing resource frees up, which sends it to the
//! plan's delay queue. Every claim is a lease renewed by a background thread while the
//! run lives; a killed console stops renewing and the lab gets its resources back at the
//! lease's end (or at once, when the next process opens the book: see `reserve::live`).
//!
//! Waking: the broker listens to the book ([`LiveBook::listen`]). A task found busy waits
//! for the resources that were busy; when one of them is released or expires (a lease
//! lapses, a hold or window ends) in a way that frees time before the task's `until`, the
//! run's driver gets the task's item id ([`ResourceBroker::wakes`]) and retries it at
//! once. The events of an attempt that ends busy (its probe requests and the give-back of
//! what it took) change nothing for anyone and wake nobody: otherwise two tasks waiting
//! for the same resource would wake each other forever.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::{
    fmt_ms_short, Book, BookError, BookEvent, BookEventKind, ClaimOutcome, Holder, LiveBook,
    Request, ResId, ReservationMode, ReservationStatus, ResourceKind,
};
use crate::clock::EpochMs;
use crate::lab::Lab;
use crate::pack::{GroupDef, LoadedPack, ResourceMode};
use crate::run::{Grant, Holding, ResourceBroker, TaskNeeds, Wakes};

/// Tunables of the broker.
#[derive(Debug, Clone, Copy)]
pub struct BrokerConfig {
    /// Lease of every claim; renewed every `lease_ms / 3` while the run lives.
    pub lease_ms: i64,
    /// Run the renewal thread (tests on a virtual clock renew by hand with
    /// [`BookBroker::renew_all`]).
    pub renew_thread: bool,
    /// Reserved time = estimate × this + `margin_ms`.
    pub estimate_factor: f64,
    pub margin_ms: i64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            lease_ms: 60_000,
            renew_thread: true,
            estimate_factor: 1.5,
            margin_ms: 60_000,
        }
    }
}

/// One claimed reservation.
#[derive(Debug, Clone)]
struct Held {
    id: ResId,
    resource: String,
    exclusive: bool,
    config: Value,
    end: EpochMs,
}

impl Held {
    fn holding(&self) -> Holding {
        Holding {
            resource: self.resource.clone(),
            exclusive: self.exclusive,
            config: self.config.clone(),
            reservation_id: Some(self.id.to_string()),
            until_ms: Some(self.end),
        }
    }
}

/// A lane's `all`-mode booking: claimed, or pre-reserved from `from`.
#[derive(Debug, Clone)]
enum Booked {
    Pre { id: ResId, from: EpochMs },
    Held(Held),
}

#[derive(Debug, Default)]
struct LaneState {
    dut: Option<Held>,
    /// `all`: every resource of the lane; `per_task_combine`: what is held across tasks.
    pooled: HashMap<String, Booked>,
    /// Items of this lane not yet released, with the resources each needs.
    remaining: Vec<(usize, Vec<String>)>,
    /// Estimated time of the lane's remaining work.
    est_ms: i64,
}

#[derive(Debug)]
struct RunState {
    mode: ResourceMode,
    lanes: HashMap<String, LaneState>,
    /// `per_task_separate`: what each item holds.
    items: HashMap<usize, Vec<Held>>,
}

struct Inner {
    book: LiveBook,
    lab: Option<Arc<Lab>>,
    cfg: BrokerConfig,
    runs: Mutex<HashMap<String, RunState>>,
    /// Shared with the book's listener. Lock order: `runs`, the book, `waiting`.
    waiting: Arc<Mutex<Waiting>>,
}

/// Tasks found busy, and how to wake them.
#[derive(Default)]
struct Waiting {
    /// Wake-up senders of the runs that asked for them ([`ResourceBroker::wakes`]).
    runs: HashMap<String, mpsc::UnboundedSender<usize>>,
    /// Per waiting (run, item): the resources that were busy and the time the book said
    /// they would be free.
    items: HashMap<(String, usize), Want>,
    /// Reservations the last attempt that ended busy made and gave back (or moved): their
    /// ends in the next published batch wake nobody (see the module docs).
    quiet: Vec<ResId>,
}

struct Want {
    resources: Vec<String>,
    until: EpochMs,
}

impl Waiting {
    /// The book published `events`: wake the items some of them may have unblocked, each
    /// once (a task still busy on its retry waits anew).
    fn heard(&mut self, events: &[BookEvent]) {
        let quiet = std::mem::take(&mut self.quiet);
        if self.items.is_empty() {
            return;
        }
        let Waiting { runs, items, .. } = self;
        for e in events {
            if !matches!(e.kind, BookEventKind::Released | BookEventKind::Expired)
                || quiet.contains(&e.reservation.id)
            {
                continue;
            }
            let v = &e.reservation;
            // Time freed from the item's `until` on changes nothing for it: it could have
            // that time anyway.
            items.retain(|(run, item), want| {
                let hit = v.start < want.until && want.resources.iter().any(|r| **r == *v.resource);
                if hit {
                    if let Some(tx) = runs.get(run) {
                        let _ = tx.send(*item);
                    }
                }
                !hit
            });
        }
    }
}

/// [`ResourceBroker`] on a [`LiveBook`]. Cheap to clone.
#[derive(Clone)]
pub struct BookBroker {
    inner: Arc<Inner>,
}

fn base_mode(m: ResourceMode) -> ResourceMode {
    match m {
        ResourceMode::CustomAll => ResourceMode::All,
        ResourceMode::CustomSeparate => ResourceMode::PerTaskSeparate,
        ResourceMode::CustomCombine => ResourceMode::PerTaskCombine,
        m => m,
    }
}

/// The resources a task needs, exclusive ones first; a resource named in both lists is
/// exclusive.
fn wanted(exclusive: &[String], shared: &[String]) -> Vec<(String, bool)> {
    let mut seen = HashSet::new();
    exclusive
        .iter()
        .map(|r| (r.clone(), true))
        .chain(shared.iter().map(|r| (r.clone(), false)))
        .filter(|(r, _)| seen.insert(r.clone()))
        .collect()
}

/// The lab resources a run of `groups` (every group when empty) may ask for: those the
/// tasks of the pack's global setup and teardown and of the groups' setups, tests and
/// teardowns name.
pub fn resources_named(pack: &LoadedPack, groups: &[String]) -> BTreeSet<String> {
    let chosen: Vec<&GroupDef> = if groups.is_empty() {
        pack.def.groups.values().collect()
    } else {
        groups
            .iter()
            .filter_map(|g| pack.def.groups.get(g))
            .collect()
    };
    pack.def
        .setup
        .iter()
        .chain(&pack.def.teardown)
        .chain(
            chosen
                .into_iter()
                .flat_map(|g| g.setup.iter().chain(&g.tests).chain(&g.teardown)),
        )
        .filter_map(|t| pack.tasks.get(t))
        .flat_map(|t| {
            t.def
                .exclusive_resources
                .iter()
                .chain(&t.def.shared_resources)
        })
        .cloned()
        .collect()
}

impl BookBroker {
    pub fn new(book: LiveBook, lab: Option<Arc<Lab>>, cfg: BrokerConfig) -> Self {
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let heard = Arc::downgrade(&waiting);
        book.listen(Box::new(move |events| match heard.upgrade() {
            Some(w) => {
                w.lock().unwrap_or_else(|p| p.into_inner()).heard(events);
                true
            }
            None => false,
        }));
        let inner = Arc::new(Inner {
            book,
            lab,
            cfg,
            runs: Mutex::new(HashMap::new()),
            waiting,
        });
        if cfg.renew_thread {
            let weak = Arc::downgrade(&inner);
            let period = Duration::from_millis((cfg.lease_ms / 3).max(50) as u64);
            let spawned = std::thread::Builder::new()
                .name("testbay-lease".into())
                .spawn(move || renew_loop(weak, period));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the lease renewal thread");
            }
        }
        Self { inner }
    }

    fn runs(&self) -> MutexGuard<'_, HashMap<String, RunState>> {
        self.inner.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        self.inner.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called under the book's lock as an attempt ends busy: what the attempt did (`quiet`)
    /// wakes nobody, and the item waits for what was busy, if its run asked for wake-ups.
    fn wait(&self, key: (String, usize), busy: &Busy, quiet: Vec<ResId>) {
        let mut w = self.waiting();
        w.quiet = quiet;
        if w.runs.contains_key(&key.0) {
            w.items.insert(
                key,
                Want {
                    resources: busy.resources.clone(),
                    until: busy.until,
                },
            );
        }
    }

    /// Item ids of `run_id`'s tasks waiting to be woken (for tests and diagnostics).
    pub fn waiting_items(&self, run_id: &str) -> Vec<usize> {
        let mut ids: Vec<usize> = self
            .waiting()
            .items
            .keys()
            .filter(|(r, _)| r == run_id)
            .map(|(_, i)| *i)
            .collect();
        ids.sort_unstable();
        ids
    }

    fn reserve_ms(&self, est_s: f64) -> i64 {
        // `as` saturates a float too large for i64; the sum saturates too.
        ((est_s.max(0.0) * 1000.0 * self.inner.cfg.estimate_factor) as i64)
            .saturating_add(self.inner.cfg.margin_ms)
    }

    /// Renew every lease held for live runs, and move a window's end later when the run
    /// is about to outlive it. The renewal thread calls this; tests call it by hand.
    pub fn renew_all(&self) {
        renew(&self.inner);
    }

    /// Ids of everything held or pre-reserved for `run_id` (for tests and diagnostics).
    pub fn reservations_of(&self, run_id: &str) -> Vec<ResId> {
        let runs = self.runs();
        let Some(run) = runs.get(run_id) else {
            return Vec::new();
        };
        let mut ids: Vec<ResId> = run
            .lanes
            .values()
            .flat_map(|l| {
                l.dut
                    .iter()
                    .map(|h| h.id)
                    .chain(l.pooled.values().map(|b| match b {
                        Booked::Pre { id, .. } => *id,
                        Booked::Held(h) => h.id,
                    }))
            })
            .chain(run.items.values().flatten().map(|h| h.id))
            .collect();
        ids.sort();
        ids
    }
}

fn holder(run_id: &str, lane: &str, task: Option<&str>) -> Holder {
    Holder::Run {
        run_id: run_id.to_string(),
        lane: lane.to_string(),
        task: task.map(str::to_string),
    }
}

/// Who holds `resource` now and until when, for a "busy" reason.
fn busy_reason(b: &mut Book, resource: &str) -> String {
    let now = b.now();
    let by: Vec<String> = b
        .reservations()
        .into_iter()
        .filter(|v| &*v.resource == resource && v.start <= now && v.end > now)
        .map(|v| {
            let what = if v.status == ReservationStatus::Held {
                "held by"
            } else {
                "booked for"
            };
            format!("{what} {} until {}", v.holder, fmt_ms_short(v.end))
        })
        .collect();
    if by.is_empty() {
        format!("{resource} is booked")
    } else {
        format!("{resource} {}", by.join(", "))
    }
}

/// Request and, if its window starts now, claim. `Err((until, reason, probe))` when busy:
/// `probe` is the request it made to learn `until`, released again.
fn take_now(
    b: &mut Book,
    resource: &str,
    exclusive: bool,
    who: Holder,
    config: Value,
    dur: i64,
    lease: i64,
) -> Result<Result<Held, (EpochMs, String, ResId)>, BookError> {
    let mode = if exclusive {
        ReservationMode::Exclusive
    } else {
        ReservationMode::Shared
    };
    let pre = b.request(
        Request::new(resource, who, dur)
            .mode(mode)
            .config(config)
            .lease(lease),
    )?;
    if pre.available_from > b.now() {
        b.release(pre.id)?;
        return Ok(Err((pre.available_from, busy_reason(b, resource), pre.id)));
    }
    Ok(Ok(
        claim_now(b, pre.id, resource, exclusive)?.expect("a window starting now is claimable")
    ))
}

/// Claim a pre-reservation whose window has started. `Ok(Err((new id, from)))` when the
/// book replaced it with a new pre-reservation (claimed late and the window was gone).
fn claim_now(
    b: &mut Book,
    id: ResId,
    resource: &str,
    exclusive: bool,
) -> Result<Result<Held, (ResId, EpochMs)>, BookError> {
    match b.claim(id)? {
        ClaimOutcome::Claimed(r) => Ok(Ok(Held {
            id,
            resource: resource.to_string(),
            exclusive,
            config: r.resource_config,
            end: r.expire_time,
        })),
        ClaimOutcome::Rebooked {
            pre_reservation_id,
            new_avail,
            ..
        } => Ok(Err((pre_reservation_id, new_avail))),
    }
}

/// Why a task cannot start now: the latest of the times its busy resources are booked
/// until, why, and which resources were busy.
struct Busy {
    until: EpochMs,
    reason: String,
    resources: Vec<String>,
}

impl Busy {
    fn add(busy: &mut Option<Busy>, until: EpochMs, reason: String, resource: &str) {
        let b = busy.get_or_insert_with(|| Busy {
            until,
            reason: reason.clone(),
            resources: Vec::new(),
        });
        if (until, &reason) > (b.until, &b.reason) {
            b.until = until;
            b.reason = reason;
        }
        b.resources.push(resource.to_string());
    }
}

fn release_quietly(b: &mut Book, id: ResId) {
    if let Err(e) = b.release(id) {
        tracing::debug!(id = %id, error = %e, "release of a reservation that is already gone");
    }
}

impl ResourceBroker for BookBroker {
    fn begin_run(
        &self,
        run_id: &str,
        mode: ResourceMode,
        tasks: &[TaskNeeds<'_>],
    ) -> Result<(), String> {
        let mode = base_mode(mode);
        let mut lanes: HashMap<String, LaneState> = HashMap::new();
        let mut duts: HashMap<String, String> = HashMap::new();
        for t in tasks {
            let lane = lanes.entry(t.lane.to_string()).or_default();
            let res: Vec<String> = wanted(t.exclusive, t.shared)
                .into_iter()
                .map(|(r, _)| r)
                .collect();
            lane.remaining.push((t.item, res));
            lane.est_ms = lane
                .est_ms
                .saturating_add((t.est_task_time.max(0.0) * 1000.0) as i64);
            if let Some(d) = t.dut {
                duts.insert(t.lane.to_string(), d.name.clone());
            }
        }
        if let Some(lab) = &self.inner.lab {
            for dut in duts.values() {
                if lab.dut(dut).is_some_and(|d| d.offline) {
                    return Err(format!("DUT {dut} is offline"));
                }
            }
        }
        if mode == ResourceMode::All {
            // Pre-reserve each lane's whole set for the lane's estimated time.
            let cfg = self.inner.cfg;
            let result = self.inner.book.with(|b| -> Result<(), String> {
                for t in tasks {
                    let lane = lanes.get_mut(t.lane).expect("lane");
                    let dur = (((lane.est_ms as f64) * cfg.estimate_factor) as i64)
                        .saturating_add(cfg.margin_ms);
                    for (r, exclusive) in wanted(t.exclusive, t.shared) {
                        if lane.pooled.contains_key(&r) {
                            continue;
                        }
                        let mode = if exclusive {
                            ReservationMode::Exclusive
                        } else {
                            ReservationMode::Shared
                        };
                        let config = t.configs.get(&r).cloned().unwrap_or(Value::Null);
                        let pre = b
                            .request(
                                Request::new(&r, holder(run_id, t.lane, None), dur)
                                    .mode(mode)
                                    .config(config)
                                    .lease(cfg.lease_ms),
                            )
                            .map_err(|e| e.to_string())?;
                        lane.pooled.insert(
                            r,
                            Booked::Pre {
                                id: pre.id,
                                from: pre.available_from,
                            },
                        );
                    }
                }
                Ok(())
            });
            if let Err(e) = result {
                self.inner.book.with(|b| {
                    for l in lanes.values() {
                        for bk in l.pooled.values() {
                            if let Booked::Pre { id, .. } = bk {
                                release_quietly(b, *id);
                            }
                        }
                    }
                });
                return Err(e);
            }
        }
        self.runs().insert(
            run_id.to_string(),
            RunState {
                mode,
                lanes,
                items: HashMap::new(),
            },
        );
        Ok(())
    }

    fn acquire(&self, needs: &TaskNeeds<'_>) -> Grant {
        let cfg = self.inner.cfg;
        let mut runs = self.runs();
        let run = runs
            .entry(needs.run_id.to_string())
            .or_insert_with(|| RunState {
                mode: ResourceMode::PerTaskSeparate,
                lanes: HashMap::new(),
                items: HashMap::new(),
            });
        let mode = run.mode;
        let lane_name = needs.lane.to_string();
        let lane = run.lanes.entry(lane_name.clone()).or_default();
        let want = wanted(needs.exclusive, needs.shared);
        let task_ms = self.reserve_ms(needs.est_task_time);
        let lane_ms = (((lane.est_ms.max(0) as f64) * cfg.estimate_factor) as i64)
            .saturating_add(cfg.margin_ms);
        let lab = self.inner.lab.clone();
        let key = (needs.run_id.to_string(), needs.item);
        let answer = self
            .inner
            .book
            .with(|b| -> Result<Result<Vec<Held>, Busy>, String> {
                // What this attempt books and gives back again if it ends busy.
                let mut quiet: Vec<ResId> = Vec::new();
                // Unknown resources can never be had.
                for (r, exclusive) in &want {
                    match b.resource_kind(r) {
                        Err(e) => return Err(e.to_string()),
                        Ok(ResourceKind::Exclusive) if !exclusive => {
                            return Err(format!("{r} is exclusive and cannot be shared"))
                        }
                        Ok(_) => {}
                    }
                }
                // The lane's DUT first. Taken by this attempt, it is given back with the
                // rest if the task cannot start: a lane waiting for a resource must not sit
                // on a DUT another run's lane is waiting for (hold and wait deadlocks).
                let mut dut_fresh: Option<ResId> = None;
                if lane.dut.is_none() {
                    if let Some(d) = needs.dut.filter(|d| b.has_resource(&d.name)) {
                        if lab
                            .as_ref()
                            .and_then(|l| l.dut(&d.name))
                            .is_some_and(|d| d.offline)
                        {
                            return Err(format!("DUT {} is offline", d.name));
                        }
                        match take_now(
                            b,
                            &d.name,
                            true,
                            holder(needs.run_id, needs.lane, None),
                            Value::Null,
                            lane_ms,
                            cfg.lease_ms,
                        )
                        .map_err(|e| e.to_string())?
                        {
                            Ok(h) => {
                                dut_fresh = Some(h.id);
                                lane.dut = Some(h);
                            }
                            Err((until, reason, probe)) => {
                                quiet.push(probe);
                                let mut busy = None;
                                Busy::add(&mut busy, until, reason, &d.name);
                                let busy = busy.expect("just added");
                                self.wait(key, &busy, quiet);
                                return Ok(Err(busy));
                            }
                        }
                    }
                }
                let now = b.now();
                let mut got: Vec<Held> = Vec::new();
                let mut fresh: Vec<ResId> = Vec::new();
                let mut busy: Option<Busy> = None;
                for (r, exclusive) in &want {
                    let config = needs.configs.get(r).cloned().unwrap_or(Value::Null);
                    let pooled = matches!(mode, ResourceMode::All | ResourceMode::PerTaskCombine);
                    match (pooled, lane.pooled.get(r).cloned()) {
                        (true, Some(Booked::Held(h))) => got.push(h),
                        (true, Some(Booked::Pre { id, from })) => {
                            if from > now {
                                // Booked for later, but what stood before may have freed
                                // early: book again from now. The new window starts no
                                // later than the old one, and is claimed if it starts now.
                                release_quietly(b, id);
                                quiet.push(id);
                                let dur = if mode == ResourceMode::All {
                                    lane_ms
                                } else {
                                    task_ms
                                };
                                let m = if *exclusive {
                                    ReservationMode::Exclusive
                                } else {
                                    ReservationMode::Shared
                                };
                                let pre = b
                                    .request(
                                        Request::new(
                                            r,
                                            holder(needs.run_id, needs.lane, None),
                                            dur,
                                        )
                                        .mode(m)
                                        .config(config)
                                        .lease(cfg.lease_ms),
                                    )
                                    .map_err(|e| e.to_string())?;
                                let claimed = if pre.available_from <= now {
                                    claim_now(b, pre.id, r, *exclusive)
                                        .map_err(|e| e.to_string())?
                                } else {
                                    Err((pre.id, pre.available_from))
                                };
                                match claimed {
                                    Ok(h) => {
                                        lane.pooled.insert(r.clone(), Booked::Held(h.clone()));
                                        got.push(h);
                                    }
                                    Err((id, from)) => {
                                        lane.pooled.insert(r.clone(), Booked::Pre { id, from });
                                        Busy::add(&mut busy, from, busy_reason(b, r), r);
                                    }
                                }
                                continue;
                            }
                            match claim_now(b, id, r, *exclusive) {
                                Ok(Ok(h)) => {
                                    lane.pooled.insert(r.clone(), Booked::Held(h.clone()));
                                    got.push(h);
                                }
                                Ok(Err((new_id, from))) => {
                                    // Claimed late and the window was gone: the book gave
                                    // a new pre-reservation; wait for it.
                                    lane.pooled
                                        .insert(r.clone(), Booked::Pre { id: new_id, from });
                                    Busy::add(&mut busy, from, busy_reason(b, r), r);
                                }
                                Err(BookError::UnknownId(_)) => {
                                    // Lapsed long ago and forgotten: book again.
                                    let dur = if mode == ResourceMode::All {
                                        lane_ms
                                    } else {
                                        task_ms
                                    };
                                    let m = if *exclusive {
                                        ReservationMode::Exclusive
                                    } else {
                                        ReservationMode::Shared
                                    };
                                    let pre = b
                                        .request(
                                            Request::new(
                                                r,
                                                holder(needs.run_id, needs.lane, None),
                                                dur,
                                            )
                                            .mode(m)
                                            .config(config)
                                            .lease(cfg.lease_ms),
                                        )
                                        .map_err(|e| e.to_string())?;
                                    lane.pooled.insert(
                                        r.clone(),
                                        Booked::Pre {
                                            id: pre.id,
                                            from: pre.available_from,
                                        },
                                    );
                                    Busy::add(&mut busy, pre.available_from, busy_reason(b, r), r);
                                }
                                Err(e) => return Err(e.to_string()),
                            }
                        }
                        (_, _) => {
                            let (who, dur) = if pooled {
                                (
                                    holder(needs.run_id, needs.lane, None),
                                    if mode == ResourceMode::All {
                                        lane_ms
                                    } else {
                                        task_ms
                                    },
                                )
                            } else {
                                (holder(needs.run_id, needs.lane, Some(needs.task)), task_ms)
                            };
                            match take_now(b, r, *exclusive, who, config, dur, cfg.lease_ms)
                                .map_err(|e| e.to_string())?
                            {
                                Ok(h) => {
                                    fresh.push(h.id);
                                    if pooled {
                                        lane.pooled.insert(r.clone(), Booked::Held(h.clone()));
                                    }
                                    got.push(h);
                                }
                                Err((until, reason, probe)) => {
                                    quiet.push(probe);
                                    Busy::add(&mut busy, until, reason, r);
                                }
                            }
                        }
                    }
                }
                if let Some(busy) = busy {
                    // All or nothing: give back what this attempt took.
                    if let Some(id) = dut_fresh {
                        release_quietly(b, id);
                        quiet.push(id);
                        lane.dut = None;
                    }
                    for id in fresh {
                        release_quietly(b, id);
                        quiet.push(id);
                        lane.pooled
                            .retain(|_, bk| !matches!(bk, Booked::Held(h) if h.id == id));
                    }
                    self.wait(key, &busy, quiet);
                    return Ok(Err(busy));
                }
                Ok(Ok(got))
            });
        if !matches!(answer, Ok(Err(_))) {
            self.waiting()
                .items
                .remove(&(needs.run_id.to_string(), needs.item));
        }
        match answer {
            Err(reason) => Grant::Unavailable(reason),
            Ok(Err(Busy { until, reason, .. })) => Grant::Busy { until, reason },
            Ok(Ok(got)) => {
                let lane = &run.lanes[&lane_name];
                let mut holdings: Vec<Holding> = lane.dut.iter().map(Held::holding).collect();
                holdings.extend(got.iter().map(Held::holding));
                if mode == ResourceMode::PerTaskSeparate {
                    run.items.insert(needs.item, got);
                }
                Grant::Granted(holdings)
            }
        }
    }

    fn release(&self, run_id: &str, item: usize, _holdings: &[Holding]) {
        self.waiting().items.remove(&(run_id.to_string(), item));
        let mut runs = self.runs();
        let Some(run) = runs.get_mut(run_id) else {
            return;
        };
        let separate = run.items.remove(&item).unwrap_or_default();
        let mut to_release: Vec<ResId> = separate.iter().map(|h| h.id).collect();
        for lane in run.lanes.values_mut() {
            let before = lane.remaining.len();
            lane.remaining.retain(|(i, _)| *i != item);
            if lane.remaining.len() == before {
                continue;
            }
            // Keep pooled resources only while a remaining item of the lane needs them.
            let still: HashSet<&String> = lane.remaining.iter().flat_map(|(_, r)| r).collect();
            let drop: Vec<String> = lane
                .pooled
                .keys()
                .filter(|r| !still.contains(r))
                .cloned()
                .collect();
            for r in drop {
                if let Some(bk) = lane.pooled.remove(&r) {
                    to_release.push(match bk {
                        Booked::Pre { id, .. } => id,
                        Booked::Held(h) => h.id,
                    });
                }
            }
            if lane.remaining.is_empty() {
                if let Some(d) = lane.dut.take() {
                    to_release.push(d.id);
                }
            }
        }
        drop(runs);
        self.inner.book.with(|b| {
            for id in to_release {
                release_quietly(b, id);
            }
        });
    }

    fn end_run(&self, run_id: &str) {
        {
            let mut w = self.waiting();
            w.runs.remove(run_id);
            w.items.retain(|(r, _), _| r != run_id);
        }
        let ids = self.reservations_of(run_id);
        self.runs().remove(run_id);
        self.inner.book.with(|b| {
            for id in ids {
                release_quietly(b, id);
            }
        });
    }

    fn wakes(&self, run_id: &str) -> Option<Wakes> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.waiting().runs.insert(run_id.to_string(), tx);
        Some(rx)
    }
}

fn renew(inner: &Inner) {
    let held: Vec<ResId> = {
        let runs = inner.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.values()
            .flat_map(|r| {
                r.lanes
                    .values()
                    .flat_map(|l| {
                        l.dut
                            .iter()
                            .map(|h| h.id)
                            .chain(l.pooled.values().filter_map(|b| match b {
                                Booked::Held(h) => Some(h.id),
                                Booked::Pre { .. } => None,
                            }))
                    })
                    .chain(r.items.values().flatten().map(|h| h.id))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let lease = inner.cfg.lease_ms;
    inner.book.with(|b| {
        let now = b.now();
        for id in held {
            let Some(v) = b.get(id) else {
                tracing::warn!(id = %id, "a run's reservation is gone (lease lapsed?)");
                continue;
            };
            if v.end.saturating_sub(now) < lease {
                // Still running near the end of its window: ask for more time first, so
                // the renewed lease can reach past the old end.
                if let Err(e) = b.extend(id, v.end.saturating_add(lease)) {
                    tracing::warn!(id = %id, error = %e, "cannot extend a reservation of a running task");
                }
            }
            if let Err(e) = b.renew(id) {
                tracing::warn!(id = %id, error = %e, "cannot renew a run's reservation");
            }
        }
    });
}

fn renew_loop(inner: Weak<Inner>, period: Duration) {
    loop {
        std::thread::sleep(period);
        let Some(inner) = inner.upgrade() else { return };
        renew(&inner);
    }
}
