//! [`Console`]: the engine parts of one running console, composed, behind `dispatch`.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use super::lab::{self, LabView, Reservations};
use super::{artifacts, files};
use super::{
    logs, ApiError, ConsoleInfo, ConsolePaths, ErrorCode, Event, ExportFile, LaunchSpec, Request,
    Response, RunDetail,
};
use crate::bounds::{self, BoundError};
use crate::clock::{Clock, SystemClock};
use crate::diag::Diagnostic;
use crate::lab::{self as inventory, Lab};
use crate::outcome::Phase;
use crate::pack::library::{Library, LibraryChange};
use crate::pack::LoadedPack;
use crate::plan::DutTarget;
use crate::report::{self, ReportFormat};
use crate::reserve::{
    owner_of, resources_named, BookBroker, BookCommand, BookConfig, BookError, BookHandle,
    BookReply, BrokerConfig, LiveError,
};
use crate::run::{AlwaysGrant, LaunchRequest, ResourceBroker, RunError, RunManager};
use crate::store::{Store, StoreError, StoredTaskState};

/// Events buffered per subscriber before it lags and gets `resync`.
pub const EVENT_CAPACITY: usize = 4096;

/// One console: the store, the run manager and the pack roots of a data directory.
pub struct Console {
    paths: ConsolePaths,
    library: Arc<Library>,
    lab: Option<Lab>,
    /// Problems of the lab file (the console then runs without a lab).
    lab_errors: Vec<Diagnostic>,
    /// Behind a mutex: a client's database connection is not shareable between threads.
    book: Option<Mutex<BookHandle>>,
    book_note: Option<String>,
    clock: Arc<dyn Clock>,
    store: Arc<Store>,
    runs: RunManager,
    events: broadcast::Sender<Event>,
}

impl Console {
    /// Open a console on `paths` with wall-clock time. Must be called within a tokio
    /// runtime (runs and event forwarding are tokio tasks).
    pub fn open(paths: ConsolePaths) -> Result<Self, ApiError> {
        Self::open_with_clock(paths, Arc::new(SystemClock))
    }

    /// As [`Console::open`]. Runs left unfinished by a console that died are marked
    /// interrupted first.
    pub fn open_with_clock(paths: ConsolePaths, clock: Arc<dyn Clock>) -> Result<Self, ApiError> {
        std::fs::create_dir_all(&paths.data_dir).map_err(|e| {
            ApiError::internal(format!(
                "cannot create data directory {}: {e}",
                paths.data_dir.display()
            ))
        })?;
        crate::reserve::live::set_owner_label("the Testbay console");
        let store = Arc::new(Store::open_in(&paths.data_dir).map_err(store_error)?);
        let recovered = store
            .recover_interrupted(clock.now_ms())
            .map_err(store_error)?;
        for id in &recovered.interrupted_runs {
            crate::run::remove_unused_folders(&paths.data_dir.join("runs").join(id));
        }
        if !recovered.interrupted_runs.is_empty() {
            tracing::warn!(runs = ?recovered.interrupted_runs, aborted_tasks = recovered.aborted_tasks, "marked runs of a dead console interrupted");
        }
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        // The lab and its book first: runs reserve through the book when this console
        // owns it (see `launch` for when it does not).
        let (mut lab, mut lab_errors, mut book, mut book_note) = (None, Vec::new(), None, None);
        let mut broker: Arc<dyn ResourceBroker> = Arc::new(AlwaysGrant);
        if let Some(file) = &paths.lab_file {
            match inventory::load(file) {
                Ok(l) => {
                    if let Err(e) = store.save_lab(&l, clock.now_ms()) {
                        tracing::warn!(file = %file.display(), error = %e, "cannot store the lab inventory");
                    }
                    match BookHandle::open(
                        store.path(),
                        clock.clone(),
                        BookConfig::default(),
                        l.book_resources(),
                    ) {
                        Ok(BookHandle::Owner(b)) => {
                            forward(b.subscribe(), events.clone(), Event::Book);
                            broker = Arc::new(BookBroker::new(
                                b.clone(),
                                Some(Arc::new(l.clone())),
                                BrokerConfig::default(),
                            ));
                            book = Some(Mutex::new(BookHandle::Owner(b)));
                        }
                        Ok(client) => {
                            book_note = Some("another Testbay process on this data directory owns the reservation book; this view is its last saved state and holds go through it".into());
                            book = Some(Mutex::new(client));
                        }
                        Err(e) => book_note = Some(format!("reservations unavailable: {e}")),
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
        let library = Library::open(paths.pack_roots.clone());
        if let Err(e) = library.watch() {
            tracing::warn!(error = %e, "pack folders are not watched; edits show after a restart");
        }
        // Run events go into the console's stream as they are sent: bursts of thousands
        // (a 2,000-task run) must not depend on a forwarding task keeping up.
        let run_events = events.clone();
        runs.forward_to(Box::new(move |ev| {
            let _ = run_events.send(Event::Run(ev.clone()));
        }));
        forward(library.subscribe(), events.clone(), packs_changed);
        Ok(Self {
            paths,
            library,
            lab,
            lab_errors,
            book,
            book_note,
            clock,
            store,
            runs,
            events,
        })
    }

    pub fn paths(&self) -> &ConsolePaths {
        &self.paths
    }

    /// The console is about to exit: stop the store's reads in flight (their requests
    /// end with `unavailable` at once) and refuse new ones. Runs and writes go on.
    pub fn close_reads(&self) {
        self.store.close_reads();
    }

    /// A new subscriber to every [`Event`] from now on. A subscriber that falls more than
    /// [`EVENT_CAPACITY`] events behind gets `RecvError::Lagged`; transports turn that into
    /// [`Event::Resync`].
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Answer one request.
    pub async fn dispatch(&self, request: Request) -> Result<Response, ApiError> {
        tracing::debug!(?request, "dispatch");
        match request {
            Request::Info => Ok(Response::Info(self.info())),
            Request::ListPacks => Ok(Response::ListPacks(self.library.summaries())),
            Request::GetPack { name } => match self.library.detail(&name) {
                Some(d) => Ok(Response::GetPack(Box::new(d))),
                None => Err(self.no_pack(&name)),
            },
            Request::Launch(spec) => self.launch(spec).await,
            Request::StopRun { run_id } => {
                // A run whose end is stored is over, even if its driver is still winding up.
                let store = self.store.clone();
                let id = run_id.clone();
                let status = blocking(move || store.get_run(&id).map_err(store_error))
                    .await?
                    .status;
                if status.is_finished() {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        format!("run {run_id} is already {}", status.as_str()),
                    ));
                }
                self.runs.stop(&run_id).map_err(run_error)?;
                Ok(Response::StopRun { run_id })
            }
            Request::ActiveRuns => Ok(Response::ActiveRuns(
                self.runs
                    .active_runs()
                    .iter()
                    .filter_map(|id| self.runs.view(id))
                    .collect(),
            )),
            Request::RunView { run_id } => match self.runs.view(&run_id) {
                Some(v) => Ok(Response::RunView(Box::new(v))),
                None => Err(ApiError::not_found(format!(
                    "run {run_id} is not live in this console; its stored results are at get_run"
                ))),
            },
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
            Request::ReadFile { run_id, path } => {
                let runs_dir = self.paths.runs_dir();
                blocking(move || files::read_run_file(&runs_dir, &run_id, &path))
                    .await
                    .map(Response::ReadFile)
            }
            Request::ListRuns(q) => {
                let store = self.store.clone();
                let page = blocking(move || store.list_runs(&q).map_err(store_error)).await?;
                Ok(Response::ListRuns(page))
            }
            Request::GetRun {
                run_id,
                offset,
                limit,
            } => {
                let store = self.store.clone();
                let id = run_id.clone();
                let runs_dir = self.paths.runs_dir();
                let (run, page) = blocking(move || {
                    let run = store.get_run(&id).map_err(store_error)?;
                    let tasks = store.run_tasks(&id).map_err(store_error)?;
                    Ok((run, task_page(tasks, offset, limit, &runs_dir)))
                })
                .await?;
                let live = self.runs.view(&run_id);
                Ok(Response::GetRun(Box::new(RunDetail {
                    run,
                    tasks: page.tasks,
                    tasks_total: page.total,
                    tasks_offset: page.offset,
                    next_offset: page.next_offset,
                    live,
                })))
            }
            Request::GetLab => Ok(Response::GetLab(Box::new(self.lab_view()?))),
            Request::SearchDuts { query, pack, ats } => self.search_duts(&query, pack, ats),
            Request::Reservations => Ok(Response::Reservations(Reservations {
                now: self.clock.now_ms(),
                resources: self.holds()?,
            })),
            Request::Hold {
                resource,
                by,
                duration_s,
                from_ms,
                next_available,
            } => {
                let duration_ms = bounds::hold_duration_ms(duration_s).map_err(bound_error)?;
                bounds::check_hold(duration_ms, from_ms, self.clock.now_ms())
                    .map_err(bound_error)?;
                if by.trim().is_empty() {
                    return Err(ApiError::invalid("say who holds it (by)"));
                }
                let cmd = BookCommand::Hold {
                    resource,
                    by,
                    from: from_ms,
                    duration_ms,
                    next_available,
                };
                match self.book_call(cmd)? {
                    BookReply::Held { reservation } => Ok(Response::Hold(reservation)),
                    other => Err(ApiError::internal(format!(
                        "unexpected answer from the reservation book: {other:?}"
                    ))),
                }
            }
            Request::Release { id } => match self.book_call(BookCommand::Release { id })? {
                BookReply::Released => Ok(Response::Release { id }),
                other => Err(ApiError::internal(format!(
                    "unexpected answer from the reservation book: {other:?}"
                ))),
            },
            Request::Export { run_id, format } => {
                let store = self.store.clone();
                blocking(move || {
                    let run = store.get_run(&run_id).map_err(store_error)?;
                    let tasks = store.run_tasks(&run_id).map_err(store_error)?;
                    let mime = match format {
                        ReportFormat::Junit => "application/xml",
                        ReportFormat::Yaml => "application/yaml",
                        ReportFormat::Json => "application/json",
                    };
                    Ok(Response::Export(ExportFile {
                        filename: format!("{run_id}.{}", format.extension()),
                        mime: mime.into(),
                        content: report::render(format, &run, &tasks),
                    }))
                })
                .await
            }
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

    fn lab(&self) -> Result<&Lab, ApiError> {
        self.lab.as_ref().ok_or_else(|| match &self.paths.lab_file {
            None => ApiError::new(
                ErrorCode::Unavailable,
                "this console has no lab file (--lab / TESTBAY_LAB)",
            ),
            Some(f) => ApiError::new(
                ErrorCode::Unavailable,
                format!("the lab file {} has problems", f.display()),
            )
            .with_diagnostics(self.lab_errors.clone()),
        })
    }

    fn book(&self) -> Result<MutexGuard<'_, BookHandle>, ApiError> {
        self.lab()?;
        let book = self.book.as_ref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unavailable,
                self.book_note
                    .clone()
                    .unwrap_or_else(|| "no reservation book".into()),
            )
        })?;
        Ok(book.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn holds(&self) -> Result<Vec<crate::reserve::ResourceHolds>, ApiError> {
        match &*self.book()? {
            BookHandle::Owner(b) => Ok(b.holds()),
            BookHandle::Client(c) => {
                let list = c
                    .reservations()
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                Ok(lab::holds_from_list(self.lab()?, list))
            }
        }
    }

    /// Change the book: here when this console owns it (typed errors), else through its
    /// owner's inbox.
    fn book_call(&self, cmd: BookCommand) -> Result<BookReply, ApiError> {
        let book = self.book()?;
        match &*book {
            BookHandle::Owner(b) => {
                let reply = match cmd {
                    BookCommand::Hold {
                        resource,
                        by,
                        from,
                        duration_ms,
                        next_available,
                    } => b
                        .hold(&resource, &by, from, duration_ms, next_available)
                        .map(|reservation| BookReply::Held { reservation }),
                    BookCommand::Release { id } => b.release(id).map(|()| BookReply::Released),
                };
                b.flush();
                reply.map_err(book_error)
            }
            client => match client.call(cmd, self.clock.now_ms()) {
                Ok(BookReply::Error { message }) => {
                    Err(ApiError::new(ErrorCode::Conflict, message))
                }
                Ok(r) => Ok(r),
                Err(e @ LiveError::NoAnswer(_)) => {
                    Err(ApiError::new(ErrorCode::Busy, e.to_string()))
                }
                Err(e) => Err(ApiError::internal(e.to_string())),
            },
        }
    }

    fn lab_view(&self) -> Result<LabView, ApiError> {
        match &self.lab {
            Some(l) => {
                let holds = if self.book.is_some() {
                    self.holds()?
                } else {
                    Vec::new()
                };
                Ok(lab::lab_view(l, &holds, self.book_note.clone()))
            }
            None => Ok(LabView {
                file: self
                    .paths
                    .lab_file
                    .as_ref()
                    .map(|f| f.display().to_string()),
                name: String::new(),
                description: String::new(),
                racks: vec![],
                duts: vec![],
                resources: vec![],
                diagnostics: self.lab_errors.clone(),
                book_note: None,
            }),
        }
    }

    fn search_duts(
        &self,
        query: &str,
        pack: Option<String>,
        ats: Option<String>,
    ) -> Result<Response, ApiError> {
        let lab = self.lab()?;
        let terms: Vec<&str> = query.split_whitespace().collect();
        let found = lab
            .find(&terms)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let pack = pack.map(|p| self.find_pack(&p)).transpose()?;
        let duts = found
            .into_iter()
            .filter(|d| {
                ats.as_deref()
                    .is_none_or(|a| d.location.as_ref().is_some_and(|l| l.rack == a))
            })
            .filter(|d| {
                pack.as_ref()
                    .is_none_or(|p| lab::dut_valid_for(p, d, ats.as_deref()))
            })
            .cloned()
            .collect();
        Ok(Response::SearchDuts(duts))
    }

    fn no_pack(&self, name: &str) -> ApiError {
        let names: Vec<String> = self.library.entries().iter().map(|e| e.name()).collect();
        ApiError::not_found(format!(
            "no pack named {name:?}; the library has: {}",
            names.join(", ")
        ))
    }

    /// The pack called `name`, loaded; `pack_broken` with its diagnostics when it has
    /// problems.
    fn find_pack(&self, name: &str) -> Result<LoadedPack, ApiError> {
        if let Some(p) = self.library.get(name) {
            return Ok(p);
        }
        let broken = self
            .library
            .entries()
            .into_iter()
            .find(|e| e.name() == name)
            .and_then(|e| e.result.err());
        match broken {
            Some(errors) => Err(ApiError::new(
                ErrorCode::PackBroken,
                format!("pack {name} has {} problem(s)", errors.diagnostics.len()),
            )
            .with_diagnostics(errors.diagnostics)),
            None => Err(self.no_pack(name)),
        }
    }

    /// Refused before anything is stored: a request over its size limits (`too_large`),
    /// an unknown pack or DUT, an ATS that does not hold the DUTs (`invalid_request`), a
    /// launch expanding to more tasks than a run holds (`too_large`).
    async fn launch(&self, spec: LaunchSpec) -> Result<Response, ApiError> {
        bounds::check_request_size(spec.groups.len(), spec.duts.len(), &spec.params)
            .map_err(bound_error)?;
        let pack = self.find_pack(&spec.pack)?;
        let duts = spec
            .duts
            .into_iter()
            .map(|name| self.dut_target(name))
            .collect::<Result<Vec<_>, _>>()?;
        let ats = self.launch_ats(spec.ats, &duts)?;
        bounds::check_task_count(
            &pack,
            &spec.groups,
            duts.len(),
            &spec.params,
            spec.coverage_mode,
        )
        .map_err(bound_error)?;
        self.check_can_reserve(&pack, &spec.groups, !duts.is_empty())?;
        let req = LaunchRequest {
            pack_dir: pack.dir.display().to_string(),
            groups: spec.groups,
            ats,
            duts,
            params: spec.params,
            resource_mode: spec.resource_mode,
            coverage_mode: spec.coverage_mode,
        };
        let run_id = self.runs.launch(req).map_err(run_error)?;
        Ok(Response::Launch { run_id })
    }

    /// A console with a lab file runs nothing that needs a DUT or a lab resource without
    /// reserving it. It reserves through the book it owns; when another process owns the
    /// book (a second console on the same data directory) or the book could not be
    /// opened, such a launch is refused with the reason, and runs that need nothing
    /// reserved still go. A console without a lab file has nothing to reserve against:
    /// its runs get what their tasks ask for.
    fn check_can_reserve(
        &self,
        pack: &LoadedPack,
        groups: &[String],
        has_duts: bool,
    ) -> Result<(), ApiError> {
        if self.paths.lab_file.is_none() {
            return Ok(());
        }
        let resources = resources_named(pack, groups);
        if !has_duts && resources.is_empty() {
            return Ok(());
        }
        let book = self.book()?;
        if matches!(&*book, BookHandle::Owner(_)) {
            return Ok(());
        }
        let what = if has_duts {
            "its DUTs".to_string()
        } else {
            resources.into_iter().collect::<Vec<_>>().join(", ")
        };
        let owner = owner_of(self.store.path())
            .map(|o| format!("is owned by {o}"))
            .unwrap_or_else(|| "was owned by another process when this console started".into());
        Err(ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "cannot reserve {what}: the reservation book of {} {owner}; launch from that console, or close it and restart this one",
                self.paths.data_dir.display()
            ),
        ))
    }

    /// The ATS of a launch (see [`Lab::launch_ats`]): checked against the lab when the
    /// console has a lab file; without one, any name is taken as given.
    fn launch_ats(
        &self,
        ats: Option<String>,
        duts: &[DutTarget],
    ) -> Result<Option<String>, ApiError> {
        if self.paths.lab_file.is_none() || (ats.is_none() && duts.is_empty()) {
            return Ok(ats);
        }
        self.lab()?
            .launch_ats(ats.as_deref(), duts)
            .map_err(|e| ApiError::invalid(format!("ats: {e}")))
    }

    /// A DUT named at launch, with its model, rack and slot from the lab. A console without
    /// a lab file takes any name as a lane of its own.
    fn dut_target(&self, name: String) -> Result<DutTarget, ApiError> {
        if self.lab.is_none() && self.paths.lab_file.is_none() {
            return Ok(DutTarget {
                name,
                model: None,
                rack: None,
                slot: None,
            });
        }
        let lab = self.lab()?;
        let d = lab.dut(&name).ok_or_else(|| {
            ApiError::not_found(format!(
                "no DUT named {name:?} in the lab {}",
                lab.file.display()
            ))
        })?;
        if d.offline {
            return Err(ApiError::new(
                ErrorCode::Busy,
                format!("DUT {name} is offline"),
            ));
        }
        Ok(DutTarget {
            name,
            model: Some(d.model.clone()).filter(|m| !m.is_empty()),
            rack: d.location.as_ref().map(|l| l.rack.clone()),
            slot: d.location.as_ref().map(|l| l.slot),
        })
    }

    async fn read_log(
        &self,
        run_id: String,
        task_id: i64,
        phase: Phase,
        offset: u64,
        max_bytes: Option<u32>,
    ) -> Result<Response, ApiError> {
        let store = self.store.clone();
        let runs_dir = self.paths.runs_dir();
        blocking(move || {
            let task = store
                .run_tasks(&run_id)
                .map_err(store_error)?
                .into_iter()
                .find(|t| t.id == task_id)
                .ok_or_else(|| {
                    ApiError::not_found(format!("run {run_id} has no task {task_id}"))
                })?;
            let log = match phase {
                Phase::Setup => task.paths.setup_log,
                Phase::Main => task.paths.main_log,
                Phase::Teardown => task.paths.teardown_log,
            };
            let Some(log) = log else {
                return Err(ApiError::not_found(format!(
                    "task {} has no {} log",
                    task.task,
                    phase.as_str()
                )));
            };
            // Logs live below runs/; a stored path pointing elsewhere is never read.
            let log = Path::new(&log);
            if !log.starts_with(&runs_dir)
                || log
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
            {
                return Err(ApiError::internal(format!(
                    "stored log path {} is outside the runs folder",
                    log.display()
                )));
            }
            let complete = task.state == StoredTaskState::Done;
            logs::read_chunk(log, offset, max_bytes, complete).map(Response::ReadLog)
        })
        .await
    }
}

/// Copy one engine part's events into the console's stream, as `wrap(event)`; a lag on
/// this internal hop becomes `resync` for everyone.
fn forward<T: Clone + Send + 'static>(
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
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

fn book_error(e: BookError) -> ApiError {
    let code = match &e {
        BookError::UnknownResource { .. } | BookError::UnknownId(_) => ErrorCode::NotFound,
        BookError::ResourceUnavailable { .. } => ErrorCode::Busy,
        BookError::InvalidDuration(_)
        | BookError::OutOfRange { .. }
        | BookError::ModeMismatch { .. } => ErrorCode::InvalidRequest,
        _ => ErrorCode::Conflict,
    };
    ApiError::new(code, e.to_string())
}

fn bound_error(e: BoundError) -> ApiError {
    let code = match e {
        BoundError::OutOfRange { .. } => ErrorCode::InvalidRequest,
        BoundError::TooLarge { .. } => ErrorCode::TooLarge,
    };
    ApiError::new(code, e.to_string())
}

/// Bytes of task details one `get_run` answer carries at most (at least one task): a run
/// of thousands of tasks, each with up to 64 KiB of raw result, is read in pages.
const GET_RUN_MAX_BYTES: usize = 16 * 1024 * 1024;

/// One page of a run's tasks.
struct TaskPage {
    tasks: Vec<artifacts::TaskDetail>,
    total: u32,
    offset: u32,
    next_offset: Option<u32>,
}

/// Tasks `offset..` of a run, at most `limit` (default and most: a run's
/// [`bounds::MAX_RUN_TASKS`]) and [`GET_RUN_MAX_BYTES`] of them; artifacts listed for
/// those only.
fn task_page(
    tasks: Vec<crate::store::TaskRecord>,
    offset: Option<u32>,
    limit: Option<u32>,
    runs_dir: &Path,
) -> TaskPage {
    let total = tasks.len();
    let offset = (offset.unwrap_or(0) as usize).min(total);
    let limit = limit.map_or(bounds::MAX_RUN_TASKS, |l| {
        (l as usize).clamp(1, bounds::MAX_RUN_TASKS)
    });
    let page: Vec<_> = tasks.into_iter().skip(offset).take(limit).collect();
    let mut details = artifacts::with_artifacts(page, runs_dir);
    let mut bytes = 0usize;
    let fits = details
        .iter()
        .position(|d| {
            bytes = bytes.saturating_add(bounds::json_len(d));
            bytes > GET_RUN_MAX_BYTES
        })
        .map_or(details.len(), |i| i.max(1));
    details.truncate(fits);
    let end = offset + details.len();
    TaskPage {
        tasks: details,
        total: total as u32,
        offset: offset as u32,
        next_offset: (end < total).then_some(end as u32),
    }
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::RunNotFound(id) => ApiError::not_found(format!("run {id} not found")),
        e @ StoreError::Timeout { .. } => ApiError::new(ErrorCode::Timeout, e.to_string()),
        e @ StoreError::InvalidQuery { .. } => ApiError::invalid(e.to_string()),
        e @ StoreError::Closing => ApiError::new(ErrorCode::Unavailable, e.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

fn run_error(e: RunError) -> ApiError {
    match e {
        RunError::Pack(p) => ApiError::new(
            ErrorCode::PackBroken,
            format!(
                "pack {} has {} problem(s)",
                p.dir.display(),
                p.diagnostics.len()
            ),
        )
        .with_diagnostics(p.diagnostics),
        e @ RunError::CouldNotStart { .. } => ApiError::invalid(e.to_string()),
        e @ RunError::NotRunning(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
        RunError::Store(s) => store_error(s),
        e @ RunError::Snapshot { .. } => ApiError::internal(e.to_string()),
    }
}

// Transports share one console between threads.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<Console>();
};
