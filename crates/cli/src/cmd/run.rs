//! `testbay run PACK`: run a pack headless with live progress, store every result, print a
//! summary; exit 1 when any result is a failure (not in the run's `valid_result`).
//!
//! Ctrl-C, SIGTERM and SIGHUP stop the run alike: the first gracefully (teardowns still
//! run), the second at once, the third leaves without waiting (exit status 128 + the
//! signal's number; the next start marks the run interrupted). A stopped run exits 1.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value};
use testbay_engine::bounds;
use testbay_engine::clock::{Clock, SystemClock};
use testbay_engine::lab::{Lab, LabErrors};
use testbay_engine::outcome::RunStatus;
use testbay_engine::pack::{CoverageMode, LoadedPack, ResourceMode};
use testbay_engine::params;
use testbay_engine::plan::DutTarget;
use testbay_engine::reserve::{
    owner_of, resources_named, BookBroker, BookConfig, BookHandle, BrokerConfig, LiveBook,
};
use testbay_engine::run::{
    AlwaysGrant, LaunchRequest, ResourceBroker, RunError, RunEvent, RunManager, RunView, TaskState,
};
use testbay_engine::store::{SqliteStore, Store, TaskRecord};

use super::Ctx;
use crate::term::{safe, width};

#[derive(clap::Args)]
pub struct Args {
    /// Pack folder, or the name of a pack in the pack folders (--packs)
    pub pack: String,
    /// Test group to run, in order; repeat for more [default: every group]
    #[arg(long = "group", short = 'g', value_name = "GROUP")]
    pub groups: Vec<String>,
    /// DUT to run on, one lane each; repeat for more. With a lab file, a DUT of the lab
    /// (model, rack and slot come from it, and the ATS from their rack); without one,
    /// NAME or NAME:MODEL
    #[arg(long = "dut", short = 'd', value_name = "DUT")]
    pub duts: Vec<String>,
    /// ATS (test rack) the run uses
    #[arg(long, value_name = "ATS")]
    pub ats: Option<String>,
    /// Override a global parameter; VALUE reads as YAML (`2` a number, `[a, b]` a list,
    /// `true` a boolean, `'2'` a string). Keys are checked against the pack's parameters
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// all, per_task_separate, per_task_combine, custom_all, custom_separate, custom_combine
    #[arg(long, value_name = "MODE", value_parser = parse_mode::<ResourceMode>)]
    pub resource_mode: Option<ResourceMode>,
    /// dut (every DUT runs the whole list), test (every DUT every test, least-run first),
    /// split (each test once, on a free DUT)
    #[arg(long, value_name = "MODE", value_parser = parse_mode::<CoverageMode>)]
    pub coverage_mode: Option<CoverageMode>,
    /// Print events as JSON lines instead of progress and a summary
    #[arg(long)]
    pub json: bool,
    /// Run without reserving DUTs and lab resources in the lab's reservation book (for
    /// when another process, e.g. a console, owns it). Others may use them meanwhile.
    #[arg(long)]
    pub no_reserve: bool,
}

fn parse_mode<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(Value::String(s.to_string())).map_err(|e| e.to_string())
}

/// Open the store in the data dir and mark runs of dead consoles interrupted.
pub fn open_store(ctx: &Ctx) -> anyhow::Result<Arc<dyn Store>> {
    let store = SqliteStore::open_in(&ctx.data_dir)
        .with_context(|| format!("cannot open the data dir {}", ctx.data_dir.display()))?;
    // Reading must work on a full disk too: a recovery that cannot write is a note.
    let recovered =
        testbay_engine::run::recover_interrupted(&store, &ctx.data_dir, SystemClock.now_ms());
    let rep = match recovered {
        Ok(rep) => rep,
        Err(e) => {
            say!("note: cannot mark the runs of consoles that exited as interrupted: {e}");
            Default::default()
        }
    };
    if !rep.interrupted_runs.is_empty() {
        say!(
            "note: {} run(s) left by a console that exited are now marked interrupted ({}); {} task(s) aborted, {} leftover process(es) killed",
            rep.interrupted_runs.len(),
            rep.interrupted_runs.join(", "),
            rep.aborted_tasks,
            rep.killed_processes
        );
    }
    Ok(Arc::new(store))
}

/// A pack folder from a path or a pack name under the pack folders.
pub fn resolve_pack(arg: &str, ctx: &Ctx) -> anyhow::Result<PathBuf> {
    let p = Path::new(arg);
    if p.join("pack.yaml").is_file() || p.is_dir() {
        return Ok(p.to_path_buf());
    }
    for root in &ctx.packs {
        if root.file_name().is_some_and(|n| n == arg) && root.join("pack.yaml").is_file() {
            return Ok(root.clone());
        }
        let cand = root.join(arg);
        if cand.join("pack.yaml").is_file() {
            return Ok(cand);
        }
        // A pack whose folder name differs from its `name`.
        if let Ok(rd) = std::fs::read_dir(root) {
            for e in rd.flatten() {
                let f = e.path().join("pack.yaml");
                // Read as packs are read: never a pipe, never without bound.
                if f.is_file()
                    && testbay_engine::doc::read_limited(&f).is_ok_and(|b| {
                        String::from_utf8_lossy(&b)
                            .lines()
                            .any(|l| l.trim() == format!("name: {arg}"))
                    })
                {
                    return Ok(e.path());
                }
            }
        }
    }
    bail!(
        "no pack folder or pack named `{arg}` (searched {})",
        ctx.packs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// DUTs from `--dut`: with a lab file, each must be a DUT of the lab that is not offline,
/// and its model, rack and slot come from the lab; without one, any name is a lane.
fn resolve_duts(args: &[String], lab: Option<&LabFile>) -> anyhow::Result<Vec<DutTarget>> {
    let mut duts = args
        .iter()
        .map(|d| parse_dut(d))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let Some(lab_file) = lab else {
        return Ok(duts);
    };
    if duts.is_empty() {
        return Ok(duts);
    }
    let lab = lab_file.get()?;
    let lab_file = &lab_file.path;
    for t in &mut duts {
        let Some(d) = lab.dut(&t.name) else {
            bail!(
                "no DUT named `{}` in the lab {} (use --lab to pick another lab file)",
                t.name,
                lab_file.display()
            );
        };
        if d.offline {
            bail!(
                "DUT {} is offline in the lab {}",
                t.name,
                lab_file.display()
            );
        }
        if t.model.is_none() && !d.model.is_empty() {
            t.model = Some(d.model.clone());
        }
        t.rack = d.location.as_ref().map(|l| l.rack.clone());
        t.slot = d.location.as_ref().map(|l| l.slot);
    }
    Ok(duts)
}

/// The run's ATS, as the console decides it (`Lab::launch_ats`): with a lab file, `--ats`
/// must be a rack of the lab holding every DUT, and without `--ats` the run takes the rack
/// its DUTs sit in. Without a lab file, `--ats` is taken as given.
fn launch_ats(
    ats: Option<String>,
    duts: &[DutTarget],
    lab: Option<&LabFile>,
) -> anyhow::Result<Option<String>> {
    let Some(lab_file) = lab else {
        return Ok(ats);
    };
    if ats.is_none() && duts.is_empty() {
        return Ok(None);
    }
    lab_file
        .get()?
        .launch_ats(ats.as_deref(), duts)
        .map_err(|e| anyhow::anyhow!("{e} (lab {})", lab_file.path.display()))
}

fn parse_dut(s: &str) -> anyhow::Result<DutTarget> {
    let (name, model) = match s.split_once(':') {
        Some((n, m)) => (n, Some(m.to_string())),
        None => (s, None),
    };
    if name.is_empty() {
        bail!("--dut `{s}`: empty DUT name");
    }
    Ok(DutTarget {
        name: name.to_string(),
        model,
        rack: None,
        slot: None,
    })
}

/// `-p` overrides, every bad one named at once. Their keys and values are checked
/// against the pack at launch (`params::effective_params`).
fn parse_params(items: &[String]) -> anyhow::Result<Map<String, Value>> {
    params::parse_overrides(items).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!("bad -p KEY=VALUE override(s):\n{}", lines.join("\n"))
    })
}

/// The lab file of the run, loaded (its problems are reported only when the run needs it).
struct LabFile {
    path: PathBuf,
    lab: Result<Lab, LabErrors>,
}

impl LabFile {
    fn load(ctx: &Ctx) -> Option<Self> {
        let path = ctx.lab.clone().filter(|p| p.is_file())?;
        let lab = testbay_engine::lab::load(&path);
        Some(Self { path, lab })
    }

    fn get(&self) -> anyhow::Result<&Lab> {
        self.lab
            .as_ref()
            .map_err(|e| anyhow::anyhow!("lab file {}:\n{e}", self.path.display()))
    }
}

/// What the run holds its DUTs and resources with.
struct Booking {
    broker: Arc<dyn ResourceBroker>,
    /// The book, when this process owns it: flushed and given up after the run.
    book: Option<LiveBook>,
}

/// Reserve through the lab's book, which this process must own; `Err(exit code)` after
/// saying why not. Without a lab file, or with `--no-reserve` (said on stderr), or when
/// the run needs nothing reserved, nothing is booked.
fn booking(
    args: &Args,
    ctx: &Ctx,
    lab: Option<&LabFile>,
    store: &dyn Store,
    pack: Option<&LoadedPack>,
    needs_duts: bool,
) -> anyhow::Result<Result<Booking, i32>> {
    let unbooked = Booking {
        broker: Arc::new(AlwaysGrant),
        book: None,
    };
    let resources = pack
        .map(|p| resources_named(p, &args.groups))
        .unwrap_or_default();
    let what = {
        let mut w: Vec<String> = Vec::new();
        if needs_duts {
            w.push(format!("DUT(s) {}", args.duts.join(", ")));
        }
        w.extend(resources.iter().cloned());
        w.join(", ")
    };
    let Some(lab) = lab else {
        if !what.is_empty() {
            say!("note: no lab file, so nothing is reserved ({what})");
        }
        return Ok(Ok(unbooked));
    };
    if args.no_reserve {
        if !what.is_empty() {
            say!("--no-reserve: running without reservations; {what} may be in use by others meanwhile");
        }
        return Ok(Ok(unbooked));
    }
    if what.is_empty() {
        return Ok(Ok(unbooked));
    }
    let l = lab.get()?;
    let clock = SystemClock;
    store
        .save_lab(l, clock.now_ms())
        .context("cannot store the lab inventory")?;
    testbay_engine::reserve::live::set_owner_label("testbay run");
    let handle = BookHandle::open(
        store,
        Arc::new(clock),
        BookConfig::default(),
        l.book_resources(),
    )
    .context("cannot open the reservation book")?;
    match handle {
        BookHandle::Owner(book) => Ok(Ok(Booking {
            broker: Arc::new(BookBroker::new(
                book.clone(),
                Some(Arc::new(l.clone())),
                BrokerConfig::default(),
            )),
            book: Some(book),
        })),
        BookHandle::Client(_) => {
            let owner = owner_of(store.path()).unwrap_or_else(|| "another Testbay process".into());
            say!(
                "cannot reserve {what}: the reservation book of {} is owned by {owner}.",
                ctx.data_dir.display()
            );
            say!("Launch the run from that console, or pass --no-reserve to run without reservations.");
            Ok(Err(2))
        }
    }
}

/// Refused before anything is stored, as the console refuses a launch: sizes over their
/// limits (`bounds`), unknown or offline DUTs, an ATS that does not hold the DUTs.
pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    let pack_dir = resolve_pack(&args.pack, ctx)?;
    let lab = LabFile::load(ctx);
    let params = parse_params(&args.params)?;
    bounds::check_request_size(args.groups.len(), args.duts.len(), &params)?;
    let duts = resolve_duts(&args.duts, lab.as_ref())?;
    let ats = launch_ats(args.ats.clone(), &duts, lab.as_ref())?;
    // A pack that does not load is reported by the launch, with its diagnostics.
    let pack = testbay_engine::pack::load(&pack_dir).ok();
    if let Some(p) = &pack {
        bounds::check_task_count(p, &args.groups, duts.len(), &params, args.coverage_mode)?;
    }
    let needs_duts = !duts.is_empty();
    let req = LaunchRequest {
        pack_dir: pack_dir.display().to_string(),
        groups: args.groups.clone(),
        ats,
        duts,
        params,
        resource_mode: args.resource_mode,
        coverage_mode: args.coverage_mode,
    };
    let store = open_store(ctx)?;
    let booking = match booking(&args, ctx, lab.as_ref(), &*store, pack.as_ref(), needs_duts)? {
        Ok(b) => b,
        Err(code) => return Ok(code),
    };
    // One thread: tasks are child processes, the engine only waits on them. Phases are
    // forked from this (long-lived) thread, as PR_SET_PDEATHSIG requires.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = rt.block_on(drive(args, req, store, booking.broker, ctx));
    if let Some(book) = booking.book {
        book.shutdown();
    }
    code
}

/// What asked the run to stop.
#[derive(Clone, Copy)]
enum StopBy {
    CtrlC,
    Term,
    Hangup,
}

impl StopBy {
    /// Prefix of the messages ("" for Ctrl-C, whose messages say so).
    fn name(self) -> &'static str {
        match self {
            StopBy::CtrlC => "",
            StopBy::Term => "SIGTERM: ",
            StopBy::Hangup => "SIGHUP: ",
        }
    }

    fn again(self) -> &'static str {
        match self {
            StopBy::CtrlC => "Ctrl-C again",
            StopBy::Term | StopBy::Hangup => "signal again",
        }
    }

    /// Exit status when the run is left without waiting: 128 + the signal's number.
    fn exit_code(self) -> i32 {
        128 + match self {
            StopBy::CtrlC => libc::SIGINT,
            StopBy::Term => libc::SIGTERM,
            StopBy::Hangup => libc::SIGHUP,
        }
    }
}

/// SIGINT (Ctrl-C), SIGTERM and SIGHUP, each a request to stop the run.
struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind| signal(kind).context("cannot listen for signals");
        Ok(Self {
            int: listen(SignalKind::interrupt())?,
            term: listen(SignalKind::terminate())?,
            hup: listen(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> StopBy {
        tokio::select! {
            _ = self.int.recv() => StopBy::CtrlC,
            _ = self.term.recv() => StopBy::Term,
            _ = self.hup.recv() => StopBy::Hangup,
        }
    }
}

enum Output {
    Json,
    Plain,
    Bars {
        mp: MultiProgress,
        bars: HashMap<String, ProgressBar>,
    },
}

async fn drive(
    args: Args,
    req: LaunchRequest,
    store: Arc<dyn Store>,
    broker: Arc<dyn ResourceBroker>,
    ctx: &Ctx,
) -> anyhow::Result<i32> {
    // Before the launch: a signal that comes while the run starts stops it once started.
    let mut signals = StopSignals::new()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mgr = RunManager::new(store.clone(), &ctx.data_dir, broker, clock);
    let mut events = mgr.subscribe();
    let run_id = match mgr.launch(req) {
        Ok(id) => id,
        Err(RunError::Pack(e)) => {
            say!("pack {} cannot run:", e.dir.display());
            for d in &e.diagnostics {
                say!("  {d}");
            }
            return Ok(2);
        }
        Err(RunError::CouldNotStart { run_id, reason }) => {
            if args.json {
                let ev = serde_json::json!({"type": "run_status", "run_id": run_id, "status": "could_not_start", "reason": reason});
                out!("{ev}");
            }
            say!("run {run_id} could not start: {reason}");
            return Ok(2);
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = if args.json {
        Output::Json
    } else if std::io::stderr().is_terminal() {
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let style = ProgressStyle::with_template(
            "{prefix:>12.bold} [{bar:28.cyan/blue}] {pos:>3}/{len:<3} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        let mut bars = HashMap::new();
        if let Some(view) = mgr.view(&run_id) {
            say!(
                "run {run_id}: {} {} on {} lane(s)",
                view.pack_name,
                view.pack_version,
                view.lanes.len()
            );
            for lane in &view.lanes {
                let pb = mp.add(ProgressBar::new(lane.progress.total as u64));
                pb.set_style(style.clone());
                pb.set_prefix(safe(&lane.name).into_owned());
                bars.insert(lane.name.clone(), pb);
            }
        }
        Output::Bars { mp, bars }
    } else {
        say!("run {run_id} started");
        Output::Plain
    };

    let wait = mgr.wait(&run_id);
    tokio::pin!(wait);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut interrupts = 0u8;
    let status = loop {
        let by = tokio::select! {
            st = &mut wait => break st?,
            ev = events.recv() => {
                match ev {
                    Ok(ev) if ev.run_id() == run_id => show_event(&mut out, &ev),
                    _ => {}
                }
                continue;
            }
            _ = tick.tick() => {
                refresh_bars(&out, &mgr, &run_id);
                continue;
            }
            by = signals.next() => by,
        };
        interrupts += 1;
        let (name, again) = (by.name(), by.again());
        match interrupts {
            1 => {
                say!("{name}stopping run {run_id}: teardowns still run ({again} to stop them too)")
            }
            2 => say!("{name}stopping run {run_id} at once ({again} to leave without waiting)"),
            _ => {
                // Leave: what is stored stays stored (the results of the last moments
                // are committed now); the task processes die with this process, and the
                // next start marks the run interrupted.
                store.commit_pending_results();
                say!("left run {run_id} without waiting; the next start marks it interrupted");
                return Ok(by.exit_code());
            }
        }
        let _ = mgr.stop(&run_id);
    };
    while let Ok(ev) = events.try_recv() {
        if ev.run_id() == run_id {
            show_event(&mut out, &ev);
        }
    }
    if let Output::Bars { bars, mp } = &out {
        refresh_bars(&out, &mgr, &run_id);
        for pb in bars.values() {
            pb.finish();
        }
        let _ = mp.clear();
    }
    // The verdict is what the run did (its live state), not only what the store kept: a
    // result the store lost (no space left) still counts, and the run says so.
    let view = mgr.view(&run_id);
    if !matches!(out, Output::Json) {
        let tasks = match store.run_tasks(&run_id) {
            Ok(tasks) => tasks,
            Err(e) => {
                say!("cannot read run {run_id} back from the store: {e}");
                Vec::new()
            }
        };
        let reason = view.as_ref().and_then(|v| v.reason.as_deref());
        print_summary(
            &run_id,
            status,
            reason,
            &with_live_results(tasks, view.as_ref()),
        );
    }
    let failures = match &view {
        Some(v) => v.progress.failures,
        None => store.get_run(&run_id)?.counts.failures,
    };
    Ok(if status == RunStatus::Completed && failures == 0 {
        0
    } else {
        1
    })
}

/// The stored tasks, each with the result the run gave it where the store does not have
/// that result (its write failed); such results are marked `(not stored)`.
fn with_live_results(mut tasks: Vec<TaskRecord>, view: Option<&RunView>) -> Vec<TaskRecord> {
    let Some(view) = view else { return tasks };
    let done: HashMap<i64, (&str, &str, bool)> = view
        .lanes
        .iter()
        .flat_map(|l| {
            l.setup
                .iter()
                .chain(&l.test)
                .chain(&l.teardown)
                .chain(&l.delay)
        })
        .chain(&view.shared)
        .filter_map(|t| match &t.state {
            TaskState::Done {
                result,
                message,
                failure,
            } => Some((t.task_id, (result.as_str(), message.as_str(), *failure))),
            _ => None,
        })
        .collect();
    for t in &mut tasks {
        let Some(&(result, message, failure)) = done.get(&t.id) else {
            continue;
        };
        if t.result.as_deref() != Some(result) {
            t.result = Some(result.to_string());
            t.failure = Some(failure);
            t.message = Some(format!("(not stored) {message}"));
        }
    }
    tasks
}

fn show_event(out: &mut Output, ev: &RunEvent) {
    match out {
        Output::Json => {
            let mut so = std::io::stdout().lock();
            let _ = serde_json::to_writer(&mut so, ev);
            let _ = so.write_all(b"\n");
        }
        Output::Plain => match ev {
            RunEvent::TaskState {
                task,
                lane,
                state: TaskState::Done {
                    result, message, ..
                },
                ..
            } => {
                let lane = lane.as_deref().unwrap_or("-");
                if message.is_empty() {
                    say!("[{lane}] {task}: {result}");
                } else {
                    say!("[{lane}] {task}: {result} - {message}");
                }
            }
            RunEvent::TaskState {
                task,
                lane,
                state: TaskState::Running { phase },
                ..
            } => say!(
                "[{}] {task}: {} ...",
                lane.as_deref().unwrap_or("-"),
                phase.as_str()
            ),
            RunEvent::TaskState {
                task,
                lane,
                state: TaskState::Waiting { reason },
                ..
            } => say!(
                "[{}] {task}: waiting - {reason}",
                lane.as_deref().unwrap_or("-")
            ),
            RunEvent::RunStatus { status, reason, .. } => match reason {
                Some(r) => say!("run {}: {r}", status.as_str()),
                None => say!("run {}", status.as_str()),
            },
            _ => {}
        },
        Output::Bars { mp, .. } => {
            if let RunEvent::TaskState {
                task,
                lane,
                state:
                    TaskState::Done {
                        result,
                        message,
                        failure,
                    },
                ..
            } = ev
            {
                if *failure {
                    let line = format!(
                        "  {} {task}: {result}{}",
                        lane.as_deref().unwrap_or("-"),
                        if message.is_empty() {
                            String::new()
                        } else {
                            format!(" - {message}")
                        }
                    );
                    let _ = mp.println(safe(&line));
                }
            }
        }
    }
}

fn refresh_bars(out: &Output, mgr: &RunManager, run_id: &str) {
    let Output::Bars { bars, .. } = out else {
        return;
    };
    let Some(view) = mgr.view(run_id) else { return };
    for lane in &view.lanes {
        let Some(pb) = bars.get(&lane.name) else {
            continue;
        };
        pb.set_length(lane.progress.total as u64);
        pb.set_position(lane.progress.done as u64);
        let running: Vec<String> = lane
            .setup
            .iter()
            .chain(&lane.test)
            .chain(&lane.teardown)
            .filter_map(|t| match &t.state {
                TaskState::Running { phase } => Some(format!("{} ({})", t.task, phase.as_str())),
                _ => None,
            })
            .collect();
        let eta = lane
            .progress
            .eta_ms
            .filter(|_| lane.progress.done < lane.progress.total)
            .map(|ms| format!(" · ETA {}", fmt_dur(ms)))
            .unwrap_or_default();
        let fails = if lane.progress.failures > 0 {
            format!(" · {} failed", lane.progress.failures)
        } else {
            String::new()
        };
        let now = if running.is_empty() {
            if lane.progress.done == lane.progress.total {
                "done".to_string()
            } else {
                "waiting".to_string()
            }
        } else {
            running.join(", ")
        };
        pb.set_message(safe(&format!("{now}{eta}{fails}")).into_owned());
    }
}

/// `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn fmt_dur(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// The first line of `s`, escaped (`term::safe`), in at most `n` characters.
fn cut(s: &str, n: usize) -> String {
    let line = safe(s.lines().next().unwrap_or(""));
    if line.chars().count() <= n {
        line.into_owned()
    } else {
        format!("{}…", line.chars().take(n - 1).collect::<String>())
    }
}

fn print_summary(run_id: &str, status: RunStatus, reason: Option<&str>, tasks: &[TaskRecord]) {
    // Lane by lane, each in plan order.
    let mut lanes: Vec<Option<&str>> = Vec::new();
    for t in tasks {
        if !lanes.contains(&t.lane.as_deref()) {
            lanes.push(t.lane.as_deref());
        }
    }
    let mut sorted: Vec<&TaskRecord> = tasks.iter().collect();
    sorted.sort_by_key(|t| lanes.iter().position(|l| *l == t.lane.as_deref()));
    let tasks = sorted;
    // Columns as printed: every cell escaped (`term::safe`), widths in characters.
    let lane_w = tasks
        .iter()
        .map(|t| width(t.lane.as_deref().unwrap_or("-")))
        .max()
        .unwrap_or(4)
        .max(4);
    let task_w = tasks
        .iter()
        .map(|t| width(&t.task))
        .max()
        .unwrap_or(4)
        .max(4);
    let group_w = tasks
        .iter()
        .map(|t| width(t.group.as_deref().unwrap_or("-")))
        .max()
        .unwrap_or(5)
        .max(5);
    out!(
        "{:<lane_w$}  {:<group_w$}  {:<task_w$}  {:<8}  {:<9}  {:>7}  MESSAGE",
        "LANE",
        "GROUP",
        "TASK",
        "KIND",
        "RESULT",
        "TIME"
    );
    let mut by_result: std::collections::BTreeMap<String, u32> = Default::default();
    let mut failures = 0;
    for t in &tasks {
        let result = t.result.as_deref().unwrap_or("-");
        *by_result.entry(result.to_string()).or_default() += 1;
        if t.failure == Some(true) {
            failures += 1;
        }
        let time = t
            .run_time
            .map(|s| fmt_dur((s * 1000.0) as i64))
            .unwrap_or_default();
        out!(
            "{:<lane_w$}  {:<group_w$}  {:<task_w$}  {:<8}  {:<9}  {:>7}  {}",
            safe(t.lane.as_deref().unwrap_or("-")),
            safe(t.group.as_deref().unwrap_or("-")),
            safe(&t.task),
            t.kind.as_str(),
            safe(result),
            time,
            cut(t.message.as_deref().unwrap_or(""), 60)
        );
        for s in &t.sub_results {
            out!(
                "{:<w$}↳ {:<n$}  {:<9}  {:>7}  {}",
                "",
                safe(&s.name),
                safe(&s.result),
                "",
                cut(&s.message, 60),
                w = lane_w + group_w + 6,
                n = task_w + 8,
            );
        }
    }
    let counts: Vec<String> = by_result.iter().map(|(k, v)| format!("{v} {k}")).collect();
    out!();
    out!(
        "run {run_id} {}: {} task(s): {}; {} failure(s)",
        status.as_str(),
        tasks.len(),
        counts.join(", "),
        failures
    );
    if let (Some(r), true) = (reason, status != RunStatus::Completed) {
        out!("why: {r}");
    }
    out!("details: testbay results {run_id}");
}
