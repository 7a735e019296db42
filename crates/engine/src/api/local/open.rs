//! Opening a [`LocalConsole`]: its options, and composing the engine parts of a data
//! directory (store, pack library, lab, reservation book, run manager, queue, health,
//! webhooks, agents) into one console.

use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::access::Access;
use crate::api::console::EVENT_CAPACITY;
use crate::api::error::store_error;
use crate::api::queue::{
    CpuProbe, ProcStat, QueueConfig, ReservationSource, RunQueueService, DISPATCH_RETRY,
};
use crate::api::{ApiError, ConsolePaths, Event};
use crate::clock::{Clock, SystemClock};
use crate::health::HealthService;
use crate::lab as inventory;
use crate::pack::library::{Library, LibraryChange};
use crate::reserve::{BookClient, BookConfig, BookHandle};
use crate::run::{AlwaysGrant, ResourceBroker, RunManager};
use crate::store::{RecoveryReport, StoreLocation};
use crate::webhook::Webhooks;

use super::{forward, LocalConsole};

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

fn packs_changed(change: LibraryChange) -> Event {
    Event::PacksChanged {
        dirs: change
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect(),
    }
}

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
        cpu_threshold: f64::from(
            settings
                .agent_cpu_threshold_pct
                .clamp(MIN_AGENT_CPU_THRESHOLD_PCT, MAX_AGENT_CPU_THRESHOLD_PCT),
        ),
        pass_over: std::time::Duration::from_secs(AGENT_PASS_OVER_S),
    }
}

/// This process's name in the lab database under the book: host and pid.
fn fence_server_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}:{}", std::process::id())
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
        let pg_url = match &store {
            StoreLocation::Postgres(url) => Some(url.clone()),
            _ => None,
        };
        let relay_url = pg_url.clone().filter(|_| serve_queue);
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
        // A console on PostgreSQL fences its book's claims in the lab database.
        let fence_server = fence_server_name();
        let lab_db = || pg_url.as_deref().map(|u| (u, fence_server.as_str()));
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
                            let h = crate::api::handover::Handover::new(&l, lab_db())?;
                            h.broker.set_book(Some(h.book_broker(&b)));
                            broker = h.broker.clone();
                            handover = Some(h);
                            owned_book = Some(b.clone());
                            book = Some(Mutex::new(BookHandle::Owner(b)));
                        }
                        Some(Ok(client)) => {
                            book_note = Some(crate::api::handover::NOT_OWNER.into());
                            if relay_url.is_some() && book_use == BookUse::Own {
                                let h = crate::api::handover::Handover::new(&l, lab_db())?;
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
        // An agent back under its CPU threshold may start the runs that wait for it.
        agents.on_change(Arc::new(queue.kicker()));
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
            scheduler: Mutex::new(serve_queue.then(crate::api::schedules::scheduler::start)),
            events,
            recovered,
            relay_url,
            relay: std::sync::OnceLock::new(),
        })
    }
}
