//! [`LocalConsole`]: the engine parts of one console in this process (store, pack
//! library, lab, reservation book, run manager), composed behind [`Console`].
//! `dispatch` only routes; the handlers live with their concern: `packs`, `runs`
//! (launch, stop, live views), `results` (stored runs, export), `holds` (lab, DUT
//! search, reservations, holds), `logs` and `files` (a run's logs and files).

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::console::{Console, EventReceiver, Reply, EVENT_CAPACITY};
use super::queue::{
    CpuProbe, ProcStat, QueueConfig, ReservationSource, RunQueueService, DISPATCH_RETRY,
};
use super::{files, ApiError, ConsoleInfo, ConsolePaths, Event, Request, Response};
use crate::access::Access;
use crate::clock::{Clock, SystemClock};
use crate::diag::Diagnostic;
use crate::health::HealthService;
use crate::lab::{self as inventory, Lab};
use crate::pack::library::{Library, LibraryChange};
use crate::reserve::{BookClient, BookConfig, BookHandle, LiveBook};
use crate::run::{AlwaysGrant, ResourceBroker, RunManager};
use crate::store::{RecoveryReport, Store, StoreLocation};
use crate::webhook::Webhooks;

use super::error::store_error;

/// One console in this process: the store, the run manager, the pack library and the
/// lab of a data directory.
pub struct LocalConsole {
    pub(super) paths: ConsolePaths,
    pub(super) library: Arc<Library>,
    /// The lab's pack library (`pack::lab_library`); `None` when the store keeps none.
    pub(super) lab_library: Option<Arc<crate::pack::LabLibrary>>,
    pub(super) lab: Option<Lab>,
    /// Problems of the lab file (the console then runs without a lab).
    pub(super) lab_errors: Vec<Diagnostic>,
    /// Behind a mutex: a client's database connection is not shareable between threads.
    pub(super) book: Option<Mutex<BookHandle>>,
    /// The book again when this console owns it, for [`Console::shutdown`] (which must
    /// not wait for a request holding the mutex); set when a lab server takes the book
    /// over (`api::handover`).
    pub(super) owned_book: Arc<std::sync::RwLock<Option<LiveBook>>>,
    /// How the book's owner is followed when this console may take the book over.
    pub(super) handover: Option<super::handover::Handover>,
    pub(super) book_note: Mutex<Option<String>>,
    /// Whether runs reserve what they use (not with [`BookUse::None`]).
    pub(super) reserve: bool,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) store: Arc<dyn Store>,
    pub(super) runs: RunManager,
    /// The rack agents connected to this console (`agents`).
    pub(super) agents: crate::agents::AgentHub,
    /// Users and the audit log (`access`); `None` when the store keeps none.
    pub(super) access: Option<Arc<Access>>,
    /// Webhooks and their deliveries (`webhook`).
    pub(super) webhooks: Arc<Webhooks>,
    /// DUT health and health checks (`health`).
    pub(super) health: Arc<HealthService>,
    /// Whether [`LocalConsole::shared`] starts the task that launches due health checks.
    health_checks: bool,
    /// Runs waiting for their DUTs (`api::queue`).
    pub(super) queue: RunQueueService,
    /// Hands the scheduler its handle on this console when it is shared (serving
    /// consoles only; see `api::schedules`).
    scheduler: Mutex<Option<tokio::sync::oneshot::Sender<std::sync::Weak<LocalConsole>>>>,
    pub(super) events: broadcast::Sender<Event>,
    recovered: Result<RecoveryReport, String>,
    /// The PostgreSQL store's URL: [`LocalConsole::shared`] starts the relay on it.
    relay_url: Option<String>,
    /// Events and requests shared with the other servers of a PostgreSQL store
    /// (`api::relay`), once shared.
    pub(super) relay: std::sync::OnceLock<Arc<super::relay::Relay>>,
}

/// How a [`LocalConsole`] opens.
pub struct ConsoleOptions {
    /// Time for runs and reservations ([`crate::clock::ManualClock`] in tests).
    pub clock: Arc<dyn Clock>,
    /// How it uses the lab's reservation book.
    pub book: BookUse,
    /// How other processes name this one when it owns the book.
    pub owner_label: &'static str,
    /// Reload packs when their folders change on disk.
    pub watch_packs: bool,
    /// Mark the runs of consoles that exited without ending them interrupted as it opens
    /// ([`LocalConsole::recovered`]), which lets the book's next owner give back what
    /// they held. A console that only looks leaves them to the next one that runs.
    pub recover: bool,
    /// Launch the lab's due health checks ([`LocalConsole::health_tick`]) every
    /// [`HEALTH_TICK`] from [`LocalConsole::shared`] on: the long-lived console does,
    /// a CLI command's does not.
    pub health_checks: bool,
    /// Serve the run queue and the schedules: queue launches whose DUTs are busy, start
    /// queued runs as they free, fire schedules once the console is shared (`testbay
    /// run` and the CLI's looks do not).
    pub serve_queue: bool,
    /// The host's CPU use for the dispatch threshold (`/proc/stat` unless given).
    pub cpu_probe: Option<Arc<dyn CpuProbe>>,
    /// How long the dispatch threshold holds queued runs back before the next try.
    pub dispatch_retry: std::time::Duration,
    /// The store to open (`--store`): `None` is SQLite's `testbay.db` in the data
    /// directory. Logs and artifacts stay in the data directory whichever it is.
    pub store: Option<StoreLocation>,
}

/// How often the long-lived console looks for due health checks.
pub const HEALTH_TICK: std::time::Duration = std::time::Duration::from_secs(30);

/// How a console uses the lab's reservation book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookUse {
    /// Own it when no other process does, else post to its owner; runs reserve through
    /// the book it owns and are refused what they would need to reserve otherwise.
    Own,
    /// Never own it: show what its owner last stored and post changes to the owner.
    Client,
    /// No book (`testbay run --no-reserve`): runs get what their tasks ask for, and a
    /// launch's answer names what went unreserved.
    None,
}

impl Default for ConsoleOptions {
    /// The long-lived console: wall-clock time, the book owned, pack folders watched,
    /// runs of dead consoles recovered, due health checks launched.
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            book: BookUse::Own,
            owner_label: "the Testbay console",
            watch_packs: true,
            recover: true,
            health_checks: true,
            serve_queue: true,
            cpu_probe: None,
            dispatch_retry: DISPATCH_RETRY,
            store: None,
        }
    }
}

impl LocalConsole {
    /// Open a console on `paths` as `testbay serve` and the desktop app do (see
    /// [`ConsoleOptions::default`]). Must be called within a tokio runtime (runs and event
    /// forwarding are tokio tasks).
    pub fn open(paths: ConsolePaths) -> Result<Self, ApiError> {
        Self::open_with(paths, ConsoleOptions::default())
    }

    /// As [`LocalConsole::open`]. Runs left unfinished by a console that died are marked
    /// interrupted first ([`LocalConsole::recovered`]); when that cannot be written (no
    /// space left), the console opens all the same, for reading.
    pub fn open_with(paths: ConsolePaths, options: ConsoleOptions) -> Result<Self, ApiError> {
        let ConsoleOptions {
            clock,
            book: book_use,
            owner_label,
            watch_packs,
            recover,
            health_checks,
            serve_queue,
            cpu_probe,
            dispatch_retry,
            store,
        } = options;
        std::fs::create_dir_all(&paths.data_dir).map_err(|e| {
            ApiError::internal(format!(
                "cannot create data directory {}: {e}",
                paths.data_dir.display()
            ))
        })?;
        crate::reserve::live::set_owner_label(owner_label);
        let store = store.unwrap_or_else(|| StoreLocation::default_in(&paths.data_dir));
        let relay_url = match &store {
            StoreLocation::Postgres(url) if serve_queue => Some(url.clone()),
            _ => None,
        };
        let store = store.open().map_err(store_error)?;
        let recovered = if recover {
            crate::run::recover_interrupted(&*store, &paths.data_dir, clock.now_ms())
                .map_err(|e| e.to_string())
        } else {
            Ok(RecoveryReport::default())
        };
        match &recovered {
            Ok(r) => {
                if !r.interrupted_runs.is_empty() {
                    tracing::warn!(runs = ?r.interrupted_runs, aborted_tasks = r.aborted_tasks, "marked runs of a dead console interrupted");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot mark the runs of consoles that exited as interrupted")
            }
        }
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        // The lab and its book first: runs reserve through the book when this console
        // owns it (see `launch` for when it does not).
        let (mut lab, mut lab_errors, mut book, mut book_note) = (None, Vec::new(), None, None);
        let mut owned_book = None;
        let mut broker: Arc<dyn ResourceBroker> = Arc::new(AlwaysGrant);
        let mut handover = None;
        if let Some(file) = &paths.lab_file {
            match inventory::load(file) {
                Ok(l) => {
                    if let Err(e) = store.save_lab(&l, clock.now_ms()) {
                        tracing::warn!(file = %file.display(), error = %e, "cannot store the lab inventory");
                    }
                    let opened = match book_use {
                        BookUse::Own => Some(BookHandle::open(
                            &*store,
                            clock.clone(),
                            BookConfig::default(),
                            l.book_resources(),
                        )),
                        BookUse::Client => Some(BookClient::open(&*store).map(BookHandle::Client)),
                        BookUse::None => None,
                    };
                    match opened {
                        None => book_note = Some("this console reserves nothing".into()),
                        Some(Ok(BookHandle::Owner(b))) => {
                            forward(b.subscribe(), events.clone(), Event::Book);
                            let h = super::handover::Handover::new(&l);
                            h.broker.set_book(Some(h.book_broker(&b)));
                            broker = h.broker.clone();
                            handover = Some(h);
                            owned_book = Some(b.clone());
                            book = Some(Mutex::new(BookHandle::Owner(b)));
                        }
                        Some(Ok(client)) => {
                            book_note = Some(super::handover::NOT_OWNER.into());
                            if relay_url.is_some() && book_use == BookUse::Own {
                                let h = super::handover::Handover::new(&l);
                                broker = h.broker.clone();
                                handover = Some(h);
                            }
                            book = Some(Mutex::new(client));
                        }
                        Some(Err(e)) => book_note = Some(format!("reservations unavailable: {e}")),
                    }
                    lab = Some(l);
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), problems = e.0.len(), "lab file has problems");
                    lab_errors = e.0;
                }
            }
        }
        let runs = RunManager::new(store.clone(), &paths.data_dir, broker, clock.clone());
        let settings = crate::settings::load(&paths.data_dir).unwrap_or_else(|diags| {
            for d in &diags {
                tracing::warn!(problem = %d, "settings file has problems; defaults used");
            }
            crate::settings::ConsoleSettings::default()
        });
        let agents = crate::agents::AgentHub::new(
            lab.iter()
                .flat_map(|l| {
                    l.def
                        .racks
                        .iter()
                        .filter(|r| r.agent)
                        .map(|r| r.name.clone())
                })
                .collect(),
            agent_config(&settings),
            clock.clone(),
        );
        runs.set_agents(Arc::new(agents.clone()));
        let first_book = owned_book.clone();
        let owned_book = Arc::new(std::sync::RwLock::new(owned_book));
        let reservations: Option<ReservationSource> = match (&first_book, &book) {
            (Some(b), _) if handover.is_none() => {
                let b = b.clone();
                Some(Arc::new(move || b.reservations()))
            }
            (_, Some(_)) => {
                // The owner's book while this console owns it (it may take it over),
                // else what the owner last stored.
                let client = BookClient::open(&*store).ok().map(Mutex::new);
                let owned = owned_book.clone();
                Some(Arc::new(move || {
                    if let Some(b) = &*owned.read().unwrap_or_else(|p| p.into_inner()) {
                        return b.reservations();
                    }
                    client
                        .as_ref()
                        .map(|c| {
                            c.lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .reservations()
                                .unwrap_or_default()
                        })
                        .unwrap_or_default()
                }) as ReservationSource)
            }
            _ => None,
        };
        let queue = RunQueueService::open(
            store.clone(),
            runs.clone(),
            first_book.clone(),
            reservations,
            clock.clone(),
            events.clone(),
            QueueConfig {
                dispatch: serve_queue,
                queue_for_duts: serve_queue && first_book.is_some(),
                cpu: cpu_probe.unwrap_or_else(|| Arc::new(ProcStat::new())),
                cpu_threshold: settings.dispatch_cpu_threshold,
                retry: dispatch_retry,
            },
        );
        if handover.is_some() && first_book.is_none() {
            // A server following another's book: the owner starts queued runs.
            queue.set_book(None);
        }
        let library = Library::open(paths.pack_roots.clone());
        if watch_packs {
            if let Err(e) = library.watch() {
                tracing::warn!(error = %e, "pack folders are not watched; edits show after a restart");
            }
        }
        let lab_library = match store.open_pack_store() {
            Ok(s) => Some(Arc::new(crate::pack::LabLibrary::new(s, &paths.data_dir))),
            Err(e) => {
                tracing::warn!(error = %e, "no pack library in this store");
                None
            }
        };
        let webhooks = Webhooks::start(store.clone(), clock.clone()).map_err(store_error)?;
        let access = Access::open(&*store, clock.clone())
            .map_err(store_error)?
            .map(Arc::new);
        let health =
            HealthService::start(store.clone(), lab.clone(), clock.clone(), webhooks.clone())
                .map_err(store_error)?;
        // A DUT in bad health is out of service: the queue starts no run on it.
        let bad = health.clone();
        queue.set_out_of_service(Arc::new(move |dut: &str| bad.is_bad(dut)));
        // Run events go into the console's stream as they are sent: bursts of thousands
        // (a 2,000-task run) must not depend on a forwarding task keeping up. A run's end
        // goes to the webhooks too (queued; nothing waits for a receiver).
        let run_events = events.clone();
        let hooks = webhooks.clone();
        let dut_health = health.clone();
        runs.forward_to(Box::new(move |ev| {
            if let crate::run::RunEvent::RunStatus { run_id, status, .. } = ev {
                dut_health.run_status(run_id, *status);
                hooks.run_status(run_id, *status);
            }
            let _ = run_events.send(Event::Run(ev.clone()));
        }));
        forward(library.subscribe(), events.clone(), packs_changed);
        Ok(Self {
            paths,
            library,
            lab_library,
            lab,
            lab_errors,
            book,
            owned_book,
            handover,
            book_note: Mutex::new(book_note),
            reserve: book_use != BookUse::None,
            clock,
            store,
            runs,
            agents,
            access,
            webhooks,
            health,
            health_checks,
            queue,
            scheduler: Mutex::new(serve_queue.then(super::schedules::scheduler::start)),
            events,
            recovered,
            relay_url,
            relay: std::sync::OnceLock::new(),
        })
    }

    /// The console's webhook service: other parts of the console tell it what happened
    /// (`dut_bad`, `schedule_missed`) through [`Webhooks::notify`].
    pub fn webhooks(&self) -> &Arc<Webhooks> {
        &self.webhooks
    }

    /// The console's users and audit log (the server checks tokens with it); `None`
    /// when the store keeps none.
    pub fn access(&self) -> Option<Arc<Access>> {
        self.access.clone()
    }

    pub fn paths(&self) -> &ConsolePaths {
        &self.paths
    }

    /// What opening did to the runs of consoles that exited without ending them, or why
    /// it could not.
    pub fn recovered(&self) -> Result<&RecoveryReport, &str> {
        self.recovered.as_ref().map_err(|e| e.as_str())
    }

    /// Whether this console owns the reservation book.
    pub(super) fn owns_book(&self) -> bool {
        self.owned_book
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Whether a run executes in this console.
    pub(super) fn runs_here(&self, run_id: &str) -> bool {
        self.runs.view(run_id).is_some()
    }

    /// Whether launches go to the book's owner among the servers of this database: this
    /// console reserves through a book another server owns.
    pub(super) fn launch_elsewhere(&self) -> bool {
        self.reserve && self.paths.lab_file.is_some() && !self.owns_book() && self.book.is_some()
    }

    /// The run queue (health checks keep DUTs out of service through it).
    pub fn queue(&self) -> &RunQueueService {
        &self.queue
    }

    /// The console as its transports hold it. A serving console's scheduler starts
    /// firing schedules now, and with [`ConsoleOptions::health_checks`] a task launches
    /// the lab's due health checks every [`HEALTH_TICK`] while the console lives.
    pub fn shared(self) -> Arc<dyn Console> {
        let me = Arc::new(self);
        if let Some(url) = &me.relay_url {
            match super::relay::Relay::start(url, me.events.clone(), Arc::downgrade(&me)) {
                Ok(r) => {
                    tracing::info!(
                        server = r.server(),
                        "relaying events and requests with the other servers of this database"
                    );
                    let _ = me.relay.set(r);
                }
                Err(e) => tracing::warn!(error = %e, "events are not shared with other servers"),
            }
            super::handover::start(Arc::downgrade(&me));
        }
        let starter = me
            .scheduler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(tx) = starter {
            let _ = tx.send(Arc::downgrade(&me));
            // A serving console prunes what the retention policy removes once a day.
            let weak = Arc::downgrade(&me);
            tokio::spawn(async move {
                let start = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
                let mut tick = tokio::time::interval_at(start, super::retention::PRUNE_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(console) = weak.upgrade() else { break };
                    if let Err(e) = console.prune(false).await {
                        tracing::warn!(error = %e, "daily prune failed");
                    }
                }
            });
        }
        if me.health_checks && me.lab.is_some() {
            let weak = Arc::downgrade(&me);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(HEALTH_TICK);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(console) = weak.upgrade() else { break };
                    console.health_tick().await;
                    // A check that passed since may have put a DUT back in service.
                    console.queue.kick();
                }
            });
        }
        me
    }

    /// Answer one request: route it to the handler of its concern (the caller's own
    /// requests go through `route_as`, `api::access`).
    pub(super) async fn route(&self, request: Request) -> Result<Response, ApiError> {
        tracing::debug!(?request, "dispatch");
        match request {
            Request::Info => Ok(Response::Info(self.info())),
            Request::ListPacks => self.list_packs(&super::Caller::local()).await,
            Request::GetPack { name } => self.get_pack(&super::Caller::local(), name).await,
            Request::PushPack { archive, private } => {
                self.push_pack(&super::Caller::local(), archive, private)
                    .await
            }
            Request::PublishPack { pack } => self.publish_pack(&super::Caller::local(), pack).await,
            Request::Launch(spec) => match self.relay.get().filter(|_| self.launch_elsewhere()) {
                Some(relay) => relay.forward("launch", None, Request::Launch(spec)).await,
                None => self.launch(spec).await,
            },
            Request::StopRun { run_id } => self.stop_run(run_id).await,
            Request::ActiveRuns => Ok(self.active_runs()),
            Request::ListPrompts => Ok(Response::ListPrompts(self.runs.prompts().list())),
            Request::TriageRules => self.triage_rules(),
            Request::AddTriageRule { rule, position } => self.add_triage_rule(rule, position),
            Request::RemoveTriageRule { name } => self.remove_triage_rule(name),
            Request::RunTriage { run_id } => self.run_triage(run_id).await,
            Request::TriageSummary { pack, last_runs } => {
                self.triage_summary(pack, last_runs).await
            }
            Request::Prune { dry_run } => self.prune(dry_run).await,
            Request::DataUsage => self.data_usage().await,
            Request::RunKeep { run_id } => self.run_keep(run_id, None).await,
            Request::SetRunKeep { run_id, keep } => self.run_keep(run_id, Some(keep)).await,
            Request::TaskSections { run_id, item } => self
                .runs
                .task_sections(&run_id, item as usize)
                .map(Response::TaskSections)
                .ok_or_else(|| ApiError::not_found(format!("no live run {run_id}"))),
            Request::AnswerPrompt {
                id,
                answer,
                by,
                run_id,
            } => self.answer_prompt(id, answer, by, run_id).await,
            Request::RunView { run_id } => self.run_view(&run_id),
            Request::ReadLog {
                run_id,
                task_id,
                phase,
                offset,
                max_bytes,
            } => {
                self.read_log(run_id, task_id, phase, offset, max_bytes)
                    .await
            }
            Request::ReadFile { run_id, path } => self.read_file(run_id, path).await,
            Request::ListRuns(q) => self.list_runs(q).await,
            Request::GetRun {
                run_id,
                offset,
                limit,
            } => self.get_run(run_id, offset, limit).await,
            Request::Export {
                run_id,
                format,
                new_failures_since,
            } => self.export(run_id, format, new_failures_since).await,
            Request::GetLab => self.get_lab(),
            Request::SearchDuts { query, pack, ats } => self.search_duts(&query, pack, ats),
            Request::Reservations => self.reservations(),
            Request::Hold {
                resource,
                by,
                duration_s,
                from_ms,
                next_available,
                mode,
                config,
                lease_s,
            } => self.hold(
                resource,
                by,
                duration_s,
                from_ms,
                next_available,
                mode,
                config,
                lease_s,
            ),
            Request::RenewHold { id } => self.renew_hold(id),
            Request::Agents => Ok(Response::Agents(self.agents.list())),
            Request::DrainAgent { name, drain } => self.drain_agent(&name, drain),
            Request::AgentSnapshot { hash } => self.agent_snapshot("local", hash).await,
            Request::Release { id } => self.release(id),
            Request::ExtendHold { id, duration_s } => self.extend_hold(id, duration_s),
            Request::ReservationHistory { hours } => self.reservation_history(hours),
            Request::ListWebhooks
            | Request::AddWebhook { .. }
            | Request::UpdateWebhook { .. }
            | Request::RemoveWebhook { .. }
            | Request::WebhookDeliveries { .. } => self.webhook_request(request).await,
            Request::DutHealth { dut } => self.dut_health(dut).await,
            Request::RestoreDut { dut, note } => self.restore_dut(dut, note).await,
            Request::CheckDut { dut } => match self.relay.get().filter(|_| self.launch_elsewhere())
            {
                // A health check is a launch: the book's owner makes it.
                Some(relay) => {
                    relay
                        .forward("check_dut", None, Request::CheckDut { dut })
                        .await
                }
                None => self.check_dut(dut).await,
            },
            Request::Queue => Ok(self.queue_view()),
            Request::MoveQueued { run_id, to } => self.move_queued(&run_id, to),
            Request::SetQueuedPriority { run_id, priority } => {
                self.set_queued_priority(&run_id, priority)
            }
            Request::CancelQueued { run_id } => self.cancel_queued(run_id),
            Request::AddSchedule(def) => self.add_schedule(def),
            Request::UpdateSchedule { id, def } => self.update_schedule(&id, def),
            Request::ListSchedules => self.list_schedules(),
            Request::GetSchedule { id } => self.get_schedule(&id),
            Request::PauseSchedule { id } => self.pause_schedule(&id, true),
            Request::ResumeSchedule { id } => self.pause_schedule(&id, false),
            Request::RemoveSchedule { id } => self.remove_schedule(id),
            Request::Relaunch {
                run_id,
                only_failed,
            } => match self.relay.get().filter(|_| self.launch_elsewhere()) {
                // A launch again: the book's owner makes it.
                Some(relay) => {
                    let request = Request::Relaunch {
                        run_id,
                        only_failed,
                    };
                    relay.forward("relaunch", None, request).await
                }
                None => self.relaunch(run_id, only_failed.unwrap_or(false)).await,
            },
            Request::TaskHistory(q) => self.task_history(q).await,
            Request::MeasurementHistory(q) => self.measurement_history(q).await,
            Request::MeasurementYield { pack, last_runs } => {
                self.measurement_yield(pack, last_runs).await
            }
            Request::Flaky(q) => self.flaky(q).await,
            Request::CompareRuns { a, b, options } => {
                self.compare_runs(a, b, options.unwrap_or_default()).await
            }
            Request::PinBaseline { run_id, dut_model } => {
                self.pin_baseline(run_id, dut_model).await
            }
            Request::UnpinBaseline { pack, dut_model } => {
                self.unpin_baseline(pack, dut_model).await
            }
            Request::Baselines { pack } => self.baselines(pack).await,
            Request::WhoAmI => Ok(super::access::who_am_i(&super::Caller::local())),
            Request::ListUsers
            | Request::AddUser { .. }
            | Request::RevokeUser { .. }
            | Request::SetUserRole { .. }
            | Request::Audit(_) => self.access_request(request).await,
        }
    }

    fn info(&self) -> ConsoleInfo {
        let s = |p: &Path| p.display().to_string();
        ConsoleInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            data_dir: s(&self.paths.data_dir),
            pack_roots: self.paths.pack_roots.iter().map(|p| s(p)).collect(),
            lab_file: self.paths.lab_file.as_deref().map(s),
        }
    }

    /// Answer a prompt here, or, for a prompt of a run (`run_id`) another server of this
    /// database executes, on that server (`api::relay`).
    async fn answer_prompt(
        &self,
        id: u64,
        answer: String,
        by: Option<String>,
        run_id: Option<String>,
    ) -> Result<Response, ApiError> {
        use crate::exec::prompts::AnswerError;
        let elsewhere = run_id.as_ref().filter(|r| !self.runs_here(r));
        if let (Some(relay), Some(run)) = (self.relay.get(), elsewhere) {
            // A run that is over waits on no prompt: said at once, not after the wait.
            let store = self.store.clone();
            let id_of_run = run.clone();
            let going = blocking(move || {
                Ok(store
                    .get_run(&id_of_run)
                    .is_ok_and(|r| !r.status.is_finished()))
            })
            .await?;
            if !going {
                return Err(ApiError::not_found(format!(
                    "no prompt {id} is waiting: run {run} is not going"
                )));
            }
            let request = Request::AnswerPrompt {
                id,
                answer,
                by,
                run_id: run_id.clone(),
            };
            return relay
                .forward("answer_prompt", run_id.as_deref(), request)
                .await;
        }
        self.runs
            .prompts()
            .answer(id, answer, by)
            .map(Response::AnswerPrompt)
            .map_err(|e| match e {
                AnswerError::NotFound(_) => ApiError::not_found(e.to_string()),
                _ => ApiError::invalid(e.to_string()),
            })
    }

    async fn read_file(&self, run_id: String, path: String) -> Result<Response, ApiError> {
        let runs_dir = self.paths.runs_dir();
        blocking(move || files::read_run_file(&runs_dir, &run_id, &path))
            .await
            .map(Response::ReadFile)
    }
}

impl Console for LocalConsole {
    fn dispatch(&self, request: Request) -> Reply<'_> {
        Box::pin(async move { self.route_as(&super::Caller::local(), request).await })
    }

    fn dispatch_as(&self, caller: &super::Caller, request: Request) -> Reply<'_> {
        let caller = caller.clone();
        Box::pin(async move { self.route_as(&caller, request).await })
    }

    fn subscribe(&self) -> EventReceiver {
        self.events.subscribe()
    }

    fn agent_hub(&self) -> Option<crate::agents::AgentHub> {
        Some(self.agents.clone())
    }

    fn shutdown(&self) {
        self.store.commit_pending_results();
        let owned = self
            .owned_book
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(book) = owned {
            book.shutdown();
        }
        self.store.close_reads();
    }
}

/// Copy one engine part's events into the console's stream, as `wrap(event)`; a lag on
/// this internal hop becomes `resync` for everyone.
pub(super) fn forward<T: Clone + Send + 'static>(
    mut rx: broadcast::Receiver<T>,
    tx: broadcast::Sender<Event>,
    wrap: fn(T) -> Event,
) {
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let _ = tx.send(wrap(ev));
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "the console's event stream fell behind a source; subscribers resync"
                    );
                    let _ = tx.send(Event::Resync { missed });
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

fn packs_changed(change: LibraryChange) -> Event {
    Event::PacksChanged {
        dirs: change
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect(),
    }
}

/// Run store and file work off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

// Transports share one console between threads.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<LocalConsole>();
};

/// The agents' heartbeat and grace period from `settings.yaml`, within their bounds.
fn agent_config(settings: &crate::settings::ConsoleSettings) -> crate::agents::AgentConfig {
    use crate::bounds::*;
    crate::agents::AgentConfig {
        heartbeat: std::time::Duration::from_millis(
            settings
                .agent_heartbeat_ms
                .clamp(MIN_AGENT_HEARTBEAT_MS, MAX_AGENT_HEARTBEAT_MS),
        ),
        grace: std::time::Duration::from_secs(
            settings
                .agent_grace_s
                .clamp(MIN_AGENT_GRACE_S, MAX_AGENT_GRACE_S),
        ),
    }
}
