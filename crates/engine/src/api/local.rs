//! [`LocalConsole`]: the engine parts of one console in this process (store, pack
//! library, lab, reservation book, run manager), composed behind [`Console`].
//! `dispatch` only routes; the handlers live with their concern: `packs`, `runs`
//! (launch, stop, live views), `results` (stored runs, export), `holds` (lab, DUT
//! search, reservations, holds), `logs` and `files` (a run's logs and files).

mod open;
mod route;

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::console::{Console, EventReceiver, Reply};
use super::queue::RunQueueService;
use super::{files, ApiError, ConsoleInfo, ConsolePaths, Event, Request, Response};
use crate::access::Access;
use crate::clock::Clock;
use crate::diag::Diagnostic;
use crate::health::HealthService;
use crate::lab::Lab;
use crate::pack::library::Library;
use crate::reserve::{BookHandle, LiveBook};
use crate::run::RunManager;
use crate::store::{RecoveryReport, Store};
use crate::webhook::Webhooks;

use open::HEALTH_TICK;
pub use open::{BookUse, ConsoleOptions};

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

impl LocalConsole {
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

    fn push_pack_as(&self, caller: &super::Caller, archive: Vec<u8>, private: bool) -> Reply<'_> {
        let caller = caller.clone();
        let request = Request::PushPack {
            archive: String::new(),
            private,
        };
        Box::pin(async move { self.route_as_with(&caller, request, Some(archive)).await })
    }

    fn subscribe(&self) -> EventReceiver {
        self.events.subscribe()
    }

    fn agent_hub(&self) -> Option<crate::agents::AgentHub> {
        Some(self.agents.clone())
    }

    fn agent_home(&self) -> crate::agents::AgentHome {
        crate::agents::agent_home(&*self.store, self.owns_book())
    }

    fn serving_at(&self, address: &str) {
        if let Err(e) = self.store.set_server_address(address) {
            tracing::warn!(address, error = %e, "cannot record the address this server serves on; rack agents cannot be sent here");
        }
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
