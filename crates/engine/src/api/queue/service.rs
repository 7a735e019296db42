//! [`RunQueueService`]: the queue in memory and in the store, and the task that starts
//! its runs (see the module doc of `api::queue`).

mod dispatch;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, Notify};

use super::cpu::CpuProbe;
use super::{Move, Priority, QueueChange, QueueChangeKind, QueueView, QueuedRunView};
use crate::api::{ApiError, Event};
use crate::clock::{Clock, EpochMs};
use crate::outcome::RunStatus;
use crate::queue::{Entry, RunQueue};
use crate::reserve::{fmt_ms_short, BookEventKind, LiveBook, ReservationView};
use crate::run::{new_run_id, LaunchRequest, RackBusy, RunManager};
use crate::store::{QueuedRunRecord, Store};

use dispatch::dispatch_loop;

/// Every live reservation of the book (its owner's, or as the owner last stored them).
pub type ReservationSource = Arc<dyn Fn() -> Vec<ReservationView> + Send + Sync>;

/// Whether a DUT is kept out of service (a health check found it bad): a run wanting it
/// does not start. None by default.
pub type OutOfService = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How the queue dispatches.
#[derive(Clone)]
pub struct QueueConfig {
    /// Start queued runs (the console that owns the book). A console that only looks
    /// (the CLI's) shows the stored queue and starts nothing.
    pub dispatch: bool,
    /// Queue launches whose DUTs are busy (a console that owns the book).
    pub queue_for_duts: bool,
    pub cpu: Arc<dyn CpuProbe>,
    /// `dispatch_cpu_threshold`, percent.
    pub cpu_threshold: f64,
    /// Next try after the threshold held runs back ([`DISPATCH_RETRY`]).
    pub retry: Duration,
}

/// What a launch brings to the queue besides its request.
pub struct QueuedLaunchInfo {
    pub pack_name: String,
    pub pack_version: String,
    pub content_hash: String,
    pub est_ms: i64,
    pub priority: Priority,
    pub max_queue_ms: Option<i64>,
    pub origin: String,
    /// Start at once if possible (an operator's launch), or always through the queue and
    /// the dispatch threshold (a scheduled firing).
    pub through_queue: bool,
    /// A forced launch (a health check, an operator's "launch anyway") may start on a DUT
    /// out of service; once queued, it waits like any other run.
    pub force: bool,
}

/// The launch kept in the store with a queued run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredLaunch {
    req: LaunchRequest,
    pack_version: String,
    content_hash: String,
    #[serde(default)]
    force: bool,
}

struct Waiting {
    launch: StoredLaunch,
    pack_name: String,
    origin: String,
}

#[derive(Default)]
struct State {
    queue: RunQueue,
    waiting: HashMap<String, Waiting>,
    /// Runs this console started that target DUTs and have not ended, with their DUTs.
    running: HashMap<String, Vec<String>>,
    held_back: Option<String>,
    retry_at: Option<Instant>,
    /// Queued runs whose racks' agents are all passed over (CPU above the threshold):
    /// why, and when the first of them is taken again.
    agent_held: HashMap<String, RackBusy>,
}

struct Inner {
    state: Mutex<State>,
    store: Arc<dyn Store>,
    runs: RunManager,
    reservations: Option<ReservationSource>,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<Event>,
    cfg: QueueConfig,
    out_of_service: RwLock<Option<OutOfService>>,
    kick: Arc<Notify>,
    /// Whether launches whose DUTs are busy queue: `cfg.queue_for_duts`, changed when
    /// this console takes the book over or loses it ([`RunQueueService::set_book`]).
    for_duts: std::sync::atomic::AtomicBool,
    /// Whether this console starts queued runs and gives up overdue ones: with
    /// `cfg.dispatch`, unless it is a server that follows another's book (then that
    /// owner starts them, [`RunQueueService::set_book`]).
    starts: std::sync::atomic::AtomicBool,
}

/// The run queue of one console. Cheap to clone.
#[derive(Clone)]
pub struct RunQueueService {
    inner: Arc<Inner>,
}

impl RunQueueService {
    /// The queue as stored; with `cfg.dispatch`, the task that starts its runs is
    /// spawned (woken by `book`'s events when this console owns it; `reservations` says
    /// who holds what) (within a tokio runtime) and looks at once (a queue left by the previous
    /// start goes on).
    pub(crate) fn open(
        store: Arc<dyn Store>,
        runs: RunManager,
        book: Option<LiveBook>,
        reservations: Option<ReservationSource>,
        clock: Arc<dyn Clock>,
        events: broadcast::Sender<Event>,
        cfg: QueueConfig,
    ) -> Self {
        let book_rx = book.as_ref().map(LiveBook::subscribe);
        let for_duts = cfg.queue_for_duts;
        let starts = cfg.dispatch;
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            store,
            runs,
            reservations,
            clock,
            events,
            cfg,
            out_of_service: RwLock::new(None),
            kick: Arc::new(Notify::new()),
            for_duts: std::sync::atomic::AtomicBool::new(for_duts),
            starts: std::sync::atomic::AtomicBool::new(starts),
        });
        inner.reload();
        if inner.cfg.dispatch {
            let run_rx = inner.runs.subscribe();
            let kick = inner.kick.clone();
            tokio::spawn(dispatch_loop(Arc::downgrade(&inner), kick, book_rx, run_rx));
            inner.kick.notify_one();
        }
        Self { inner }
    }

    /// Keep runs off the DUTs `f` says are out of service (health checks), and look
    /// again at what may start.
    pub fn set_out_of_service(&self, f: OutOfService) {
        *self
            .inner
            .out_of_service
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(f);
        self.kick();
    }

    /// This console took the book over (`Some`), or follows the book another server
    /// owns (`None`, see `api::handover`): while it owns the book, it starts queued
    /// runs, launches whose DUTs are busy queue, and the book's releases and lapses wake
    /// the queue; while it follows, the owner starts the queued runs.
    pub(crate) fn set_book(&self, book: Option<&LiveBook>) {
        let owns = book.is_some() && self.inner.cfg.dispatch;
        self.inner
            .for_duts
            .store(owns, std::sync::atomic::Ordering::Release);
        self.inner
            .starts
            .store(owns, std::sync::atomic::Ordering::Release);
        if let Some(b) = book {
            let mut rx = b.subscribe();
            let kick = self.inner.kick.clone();
            tokio::spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(ev)
                            if !matches!(
                                ev.kind,
                                BookEventKind::Released | BookEventKind::Expired
                            ) => {}
                        Err(broadcast::error::RecvError::Closed) => break,
                        _ => kick.notify_one(),
                    }
                }
            });
        }
        self.kick();
    }

    /// Look again at what may start (a DUT came back into service, settings changed).
    pub fn kick(&self) {
        self.inner.kick.notify_one();
    }

    /// [`RunQueueService::kick`] as a function that keeps nothing of the queue alive (for
    /// the rack agents' hub, which the queue's runs refer to).
    pub fn kicker(&self) -> impl Fn() + Send + Sync + 'static {
        let kick = self.inner.kick.clone();
        move || kick.notify_one()
    }

    /// Start a launch now, or queue it. Returns its run id and whether it was queued.
    pub(crate) fn launch(
        &self,
        req: LaunchRequest,
        info: QueuedLaunchInfo,
    ) -> Result<(String, bool), ApiError> {
        let inner = &self.inner;
        let duts: Vec<String> = req.duts.iter().map(|d| d.name.clone()).collect();
        let mut st = inner.lock();
        // A run whose rack's agents are all above their CPU threshold waits for them.
        let agent_busy = inner
            .cfg
            .dispatch
            .then(|| inner.runs.agents_busy(&req))
            .flatten();
        let must_wait = info.through_queue
            || agent_busy.is_some()
            || (inner.for_duts.load(std::sync::atomic::Ordering::Acquire) && !duts.is_empty() && {
                let busy = inner.busy_now(&st);
                duts.iter().any(|d| {
                    busy.contains(d)
                        || st.queue.wants(d)
                        || (!info.force && inner.out_of_service(d))
                })
            });
        if !must_wait || !inner.cfg.dispatch {
            let run_id = inner
                .runs
                .launch(req)
                .map_err(super::super::error::run_error)?;
            if !duts.is_empty() {
                st.running.insert(run_id.clone(), duts);
            }
            return Ok((run_id, false));
        }
        let now = inner.clock.now_ms();
        let run_id = new_run_id(now);
        let entry = Entry {
            run_id: run_id.clone(),
            priority: info.priority,
            place: st.queue.next_place(),
            duts: duts.clone(),
            enqueued_ms: now,
            max_queue_ms: info.max_queue_ms,
            est_ms: info.est_ms,
            force: info.force,
        };
        let waiting = Waiting {
            launch: StoredLaunch {
                req,
                pack_version: info.pack_version,
                content_hash: info.content_hash,
                force: info.force,
            },
            pack_name: info.pack_name,
            origin: info.origin,
        };
        inner
            .store
            .queue_put(&record(&entry, &waiting))
            .map_err(super::super::error::store_error)?;
        st.queue.push(entry);
        st.waiting.insert(run_id.clone(), waiting);
        if let Some(busy) = agent_busy {
            tracing::info!(
                run_id,
                reason = busy.reason,
                "run waits for its rack's agent"
            );
            st.agent_held.insert(run_id.clone(), busy);
        }
        drop(st);
        inner.changed(&run_id, QueueChangeKind::Queued, None);
        tracing::info!(run_id, duts = ?duts, "run queued");
        self.kick();
        Ok((run_id, true))
    }

    /// Whether `run_id` waits in the queue.
    pub(crate) fn contains(&self, run_id: &str) -> bool {
        self.inner.lock().queue.get(run_id).is_some()
    }

    pub(crate) fn view(&self) -> QueueView {
        let inner = &self.inner;
        if !inner.cfg.dispatch {
            inner.reload();
        }
        let st = inner.lock();
        let now = inner.clock.now_ms();
        let busy = inner.busy_now(&st);
        let live = inner.live_reservations();
        let holders = holders_now(&live, now);
        let starts = st.queue.estimated_starts(now, |d| free_at(&live, d, now));
        let mut wanted_ahead: HashSet<&str> = HashSet::new();
        let runs = st
            .queue
            .iter()
            .zip(starts)
            .enumerate()
            .map(|(i, (e, est))| {
                let w = st.waiting.get(&e.run_id);
                let mut why: Vec<String> = e
                    .duts
                    .iter()
                    .filter_map(|d| {
                        if inner.out_of_service(d) {
                            Some(format!("{d} is out of service"))
                        } else if let Some(h) = holders.get(d.as_str()) {
                            Some(format!("{d} {h}"))
                        } else if let Some(r) = st
                            .running
                            .iter()
                            .find(|(_, ds)| ds.contains(d))
                            .map(|(r, _)| r)
                        {
                            Some(format!("{d} is used by run {r}"))
                        } else if busy.contains(d) {
                            Some(format!("{d} is booked"))
                        } else if wanted_ahead.contains(d.as_str()) {
                            Some(format!("{d} goes to a run ahead in the queue"))
                        } else {
                            None
                        }
                    })
                    .collect();
                wanted_ahead.extend(e.duts.iter().map(String::as_str));
                if let Some(h) = &st.held_back {
                    why.push(h.clone());
                }
                // A hold whose time is up no longer keeps the run back.
                if let Some(b) = st.agent_held.get(&e.run_id).filter(|b| b.until_ms > now) {
                    why.push(b.reason.clone());
                }
                if why.is_empty() {
                    why.push(if inner.cfg.dispatch {
                        "starting".into()
                    } else {
                        // A console that only looks does not know the book's state.
                        format!("waits for {}", e.duts.join(", "))
                    });
                }
                QueuedRunView {
                    run_id: e.run_id.clone(),
                    pack: w.map(|w| w.pack_name.clone()).unwrap_or_default(),
                    priority: e.priority,
                    position: u32::try_from(i + 1).unwrap_or(u32::MAX),
                    duts: e.duts.clone(),
                    enqueued_ms: e.enqueued_ms,
                    est_start_ms: est,
                    waits_for: why.join("; "),
                    give_up_ms: e.deadline(),
                    origin: w.map(|w| w.origin.clone()).unwrap_or_default(),
                }
            })
            .collect();
        QueueView {
            now,
            held_back: st.held_back.clone(),
            runs,
        }
    }

    pub(crate) fn move_run(&self, run_id: &str, to: Move) -> Result<(), ApiError> {
        let inner = &self.inner;
        inner.check_serving()?;
        let mut st = inner.lock();
        let moved: Vec<Entry> = st
            .queue
            .move_run(run_id, to)
            .ok_or_else(|| not_queued(run_id))?
            .into_iter()
            .cloned()
            .collect();
        for e in &moved {
            inner.persist(&st, e)?;
        }
        drop(st);
        inner.changed(run_id, QueueChangeKind::Moved, None);
        self.kick();
        Ok(())
    }

    pub(crate) fn set_priority(&self, run_id: &str, p: Priority) -> Result<(), ApiError> {
        let inner = &self.inner;
        inner.check_serving()?;
        let mut st = inner.lock();
        let e = st
            .queue
            .set_priority(run_id, p)
            .cloned()
            .ok_or_else(|| not_queued(run_id))?;
        inner.persist(&st, &e)?;
        drop(st);
        inner.changed(run_id, QueueChangeKind::Moved, None);
        self.kick();
        Ok(())
    }

    /// Take a run out of the queue; it is stored `stopped` with the reason.
    pub(crate) fn cancel(&self, run_id: &str) -> Result<(), ApiError> {
        let inner = &self.inner;
        inner.check_serving()?;
        let mut st = inner.lock();
        let e = st.queue.remove(run_id).ok_or_else(|| not_queued(run_id))?;
        let w = st.waiting.remove(run_id);
        drop(st);
        let reason = "cancelled by an operator while queued";
        inner.end_unstarted(&e, w, RunStatus::Stopped, reason);
        inner.changed(run_id, QueueChangeKind::Cancelled, Some(reason.into()));
        Ok(())
    }
}

/// Who holds each busy DUT now and until when (for the queue's "waits for").
fn holders_now(live: &[ReservationView], now: EpochMs) -> HashMap<String, String> {
    live.iter()
        .filter(|v| v.start <= now && v.end > now)
        .map(|v| {
            (
                v.resource.to_string(),
                format!("is held by {} until {}", v.holder, fmt_ms_short(v.end)),
            )
        })
        .collect()
}

/// When the book has `dut` free from `now` on: the end of the reservations that follow
/// each other on it from now.
fn free_at(live: &[ReservationView], dut: &str, now: EpochMs) -> EpochMs {
    let mut t = now;
    while let Some(end) = live
        .iter()
        .filter(|v| &*v.resource == dut && v.start <= t && v.end > t)
        .map(|v| v.end)
        .max()
    {
        t = end;
    }
    t
}

fn not_queued(run_id: &str) -> ApiError {
    ApiError::not_found(format!("run {run_id} is not queued"))
}

fn record(e: &Entry, w: &Waiting) -> QueuedRunRecord {
    QueuedRunRecord {
        run_id: e.run_id.clone(),
        pack_name: w.pack_name.clone(),
        priority: e.priority.as_str().into(),
        place: e.place,
        enqueued_ms: e.enqueued_ms,
        max_queue_ms: e.max_queue_ms,
        est_ms: e.est_ms,
        duts: e.duts.clone(),
        request_json: serde_json::to_string(&w.launch).expect("plain data serialises"),
        origin: w.origin.clone(),
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn out_of_service(&self, dut: &str) -> bool {
        self.out_of_service
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|f| f(dut))
    }

    /// Before an operator's change: a console that only looks reads the stored queue
    /// first, so it changes what the serving console keeps (which notices the change by
    /// [`Store::queue_signature`]).
    fn check_serving(&self) -> Result<(), ApiError> {
        if !self.cfg.dispatch {
            self.reload();
        }
        Ok(())
    }

    /// The queue as stored (at opening; a looking console before each view).
    fn reload(&self) {
        let rows = match self.store.queue_list() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored run queue");
                return;
            }
        };
        let mut st = self.lock();
        st.queue = RunQueue::new();
        st.waiting.clear();
        for r in rows {
            let launch: StoredLaunch = match serde_json::from_str(&r.request_json) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(run_id = r.run_id, error = %e, "a stored queued run is unreadable; dropped");
                    let _ = self.store.queue_remove(&r.run_id);
                    continue;
                }
            };
            st.queue.push(Entry {
                run_id: r.run_id.clone(),
                priority: Priority::parse(&r.priority).unwrap_or_default(),
                place: r.place,
                duts: r.duts,
                enqueued_ms: r.enqueued_ms,
                max_queue_ms: r.max_queue_ms,
                est_ms: r.est_ms,
                force: launch.force,
            });
            st.waiting.insert(
                r.run_id,
                Waiting {
                    launch,
                    pack_name: r.pack_name,
                    origin: r.origin,
                },
            );
        }
    }

    fn persist(&self, st: &State, e: &Entry) -> Result<(), ApiError> {
        let Some(w) = st.waiting.get(&e.run_id) else {
            return Ok(());
        };
        self.store
            .queue_put(&record(e, w))
            .map_err(crate::api::error::store_error)
    }

    fn changed(&self, run_id: &str, change: QueueChangeKind, reason: Option<String>) {
        let _ = self.events.send(Event::Queue(QueueChange {
            run_id: run_id.into(),
            change,
            reason,
        }));
    }

    /// DUTs taken now: by the book, or by a run this console started.
    fn busy_now(&self, st: &State) -> HashSet<String> {
        let mut busy: HashSet<String> = st.running.values().flatten().cloned().collect();
        let now = self.clock.now_ms();
        busy.extend(
            self.live_reservations()
                .into_iter()
                .filter(|v| v.start <= now && v.end > now)
                .map(|v| v.resource.to_string()),
        );
        busy
    }

    fn live_reservations(&self) -> Vec<ReservationView> {
        self.reservations.as_ref().map(|f| f()).unwrap_or_default()
    }
}
