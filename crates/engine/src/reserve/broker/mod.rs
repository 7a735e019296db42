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
//! Made [`BookBroker::with_fence`], every claim is also written to a fence (the lab
//! database, see `reserve::fence`) before its task starts; a claim the fence refuses is
//! given back and the task waits, and a claim whose fenced lease is lost ends its run
//! `interrupted`.
//!
//! The parts: `grant` (the [`ResourceBroker`] calls: a run's start, a task's resources all
//! or nothing, their release, the run's end), `take` (one request, claim or give-back on
//! the book, and the "busy" reason), `wake` (waking the tasks that wait), `lease` (the
//! renewal thread). This file holds the broker's state per run and lane.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use tokio::sync::mpsc;

use super::fence::{Fence, FenceId, NoFence};
use super::{LiveBook, ResId};
use crate::clock::EpochMs;
use crate::lab::Lab;
use crate::pack::{GroupDef, LoadedPack, ResourceMode};
use crate::run::Holding;

mod grant;
mod lease;
mod take;
mod wake;

use wake::Waiting;

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
    /// Its id in the database under the book (`reserve::fence`), when there is one.
    fence: Option<FenceId>,
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

impl RunState {
    /// Every claim the run holds: its lanes' DUTs, what they pooled, its items'.
    fn held(&self) -> impl Iterator<Item = &Held> {
        self.lanes
            .values()
            .flat_map(|l| {
                l.dut
                    .iter()
                    .chain(l.pooled.values().filter_map(|b| match b {
                        Booked::Held(h) => Some(h),
                        Booked::Pre { .. } => None,
                    }))
            })
            .chain(self.items.values().flatten())
    }
}

struct Inner {
    book: LiveBook,
    lab: Option<Arc<Lab>>,
    cfg: BrokerConfig,
    /// The database under the book's claims ([`NoFence`] on the single seat).
    fence: Arc<dyn Fence>,
    /// Per run: where to say it lost a lease ([`crate::run::ResourceBroker::lost_leases`]).
    lost: Mutex<HashMap<String, mpsc::UnboundedSender<String>>>,
    runs: Mutex<HashMap<String, RunState>>,
    /// Shared with the book's listener. Lock order: `runs`, the book, `waiting`.
    waiting: Arc<Mutex<Waiting>>,
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
        Self::with_fence(book, lab, cfg, Arc::new(NoFence))
    }

    /// As [`BookBroker::new`], every claim also written to `fence` (see
    /// `reserve::fence`): a claim the database refuses makes the task wait, a lease the
    /// database no longer renews ends its run `interrupted`.
    pub fn with_fence(
        book: LiveBook,
        lab: Option<Arc<Lab>>,
        cfg: BrokerConfig,
        fence: Arc<dyn Fence>,
    ) -> Self {
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let heard = Arc::downgrade(&waiting);
        book.listen(Box::new(move |events| match heard.upgrade() {
            Some(w) => {
                w.lock().unwrap_or_else(|p| p.into_inner()).heard(events);
                true
            }
            None => false,
        }));
        let freed = Arc::downgrade(&waiting);
        fence.on_freed(Box::new(move |resource| match freed.upgrade() {
            Some(w) => {
                w.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .freed_elsewhere(resource);
                true
            }
            None => false,
        }));
        let inner = Arc::new(Inner {
            book,
            lab,
            cfg,
            fence,
            lost: Mutex::new(HashMap::new()),
            runs: Mutex::new(HashMap::new()),
            waiting,
        });
        if cfg.renew_thread {
            let weak = Arc::downgrade(&inner);
            let period = Duration::from_millis((cfg.lease_ms / 3).max(50) as u64);
            let spawned = std::thread::Builder::new()
                .name("testbay-lease".into())
                .spawn(move || lease::renew_loop(weak, period));
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

    fn reserve_ms(&self, est_s: f64) -> i64 {
        // `as` saturates a float too large for i64; the sum saturates too.
        ((est_s.max(0.0) * 1000.0 * self.inner.cfg.estimate_factor) as i64)
            .saturating_add(self.inner.cfg.margin_ms)
    }

    /// The fenced claims of `run_id` (their ids in the database under the book).
    fn fences_of(&self, run_id: &str) -> Vec<FenceId> {
        let runs = self.runs();
        let Some(run) = runs.get(run_id) else {
            return Vec::new();
        };
        run.held().filter_map(|h| h.fence).collect()
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
