//! `testbay run PACK`: run a pack headless with live progress, store every result, print a
//! summary; exit 1 when any result is a failure (not in the run's `valid_result`).
//!
//! Through the console's front door like every other client: the pack folder becomes the
//! console's one pack folder, the run starts with `Request::Launch` (where every launch
//! rule is checked: DUTs, ATS, bounds, reservations), progress comes from the event
//! stream and `run_view`, the summary from `get_run`. Two engine functions are used before
//! the console exists, to turn the command line into the request: `params::parse_overrides`
//! (`-p KEY=VALUE`, the value read as YAML) and `doc::read_limited` (finding a pack by the
//! `name` in its pack.yaml, read within its bound like every pack file).
//!
//! Ctrl-C, SIGTERM and SIGHUP stop the run alike: the first gracefully (teardowns still
//! run), the second at once, the third leaves without waiting (exit status 128 + the
//! signal's number; the next start marks the run interrupted). A stopped run exits 1.

mod progress;
mod summary;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{Map, Value};
use testbay_engine::api::{
    paths::absolute, ApiError, BookUse, Console, ConsoleOptions, ConsolePaths, CoverageMode,
    ErrorCode, Event, EventReceiver, LaunchSpec, Request, ResourceMode, Response, RunEvent,
    RunRecord, RunStatus, RunVerdict, RunView,
};
use testbay_engine::pack::view::{PackSummary, ParamInfo};
use testbay_engine::params;
use tokio::sync::broadcast::error::RecvError;

use super::Ctx;
use crate::console::{error_text, unexpected, Session};
use progress::Output;
pub use summary::fmt_dur;

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
    /// Run on DUTs in bad health too (see `testbay lab health`)
    #[arg(long)]
    pub force: bool,
}

fn parse_mode<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(Value::String(s.to_string())).map_err(|e| e.to_string())
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

/// `-p` overrides, every bad one named at once. Their keys and values are checked
/// against the pack at launch (`params::effective_params`).
fn parse_params(items: &[String]) -> anyhow::Result<Map<String, Value>> {
    params::parse_overrides(items).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!("bad -p KEY=VALUE override(s):\n{}", lines.join("\n"))
    })
}

/// A `-p` value for a parameter whose default is text stays the text as typed: the
/// engine takes an override only of its default's type, and `-p firmware=4.20` means the
/// version "4.20", not the number 4.2.
fn keep_text(items: &[String], params: &mut Map<String, Value>, defaults: &[ParamInfo]) {
    for item in items {
        let Some((key, raw)) = item.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let text_default = defaults.iter().any(|d| d.key == key && d.value.is_string());
        if text_default
            && params
                .get(key)
                .is_some_and(|v| v.is_number() || v.is_boolean())
        {
            params.insert(key.to_string(), Value::String(raw.trim().to_string()));
        }
    }
}

/// Open a console whose one pack folder is the pack's, launch it and follow the run to
/// its end. Refused launches exit 2, saying why.
pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    if ctx.server.is_some() {
        return run_on_server(args, ctx);
    }
    let pack_dir = match resolve_pack(&args.pack, ctx) {
        Ok(dir) => absolute(dir),
        // Not a folder here: a version of the lab's pack library, if it is one.
        Err(e) => match run_from_library(&args, ctx)? {
            Some(code) => return Ok(code),
            None => return Err(e),
        },
    };
    let params = parse_params(&args.params)?;
    let session = run_session(&args, ctx, vec![pack_dir.clone()])?;
    let Some(pack) = pack_name(&session, &pack_dir)? else {
        say!(
            "pack {} cannot run: it has no pack.yaml",
            pack_dir.display()
        );
        return Ok(2);
    };
    launch_and_follow(&session, &args, ctx, &pack_dir, pack, params)
}

/// `--server`: the run executes on the lab server, from the pack of that name in the
/// server's library; this process launches it, follows its events and prints the summary.
/// (`--no-reserve` is the server's business: its console owns the book.)
fn run_on_server(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    let params = parse_params(&args.params)?;
    anyhow::ensure!(
        !args.no_reserve,
        "--no-reserve does not apply with --server: the lab server reserves for its runs"
    );
    let server = ctx.server.as_deref().unwrap_or_default();
    let session = Session::remote(server, ctx.token.clone())?;
    let packs = match session.call(Request::ListPacks) {
        Ok(Response::ListPacks(p)) => p,
        Ok(other) => return Err(unexpected("list_packs", other)),
        Err(e) => bail!("{}", error_text(&e)),
    };
    let Some((name, dir)) = find_pack(&packs, &args.pack) else {
        let mut names: Vec<&str> = packs.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        say!(
            "the lab server has no pack named `{}` (with --server, name a pack of the server's library: {})",
            args.pack,
            names.join(", ")
        );
        return Ok(2);
    };
    launch_and_follow(&session, &args, ctx, &dir, name, params)
}

/// The pack `reference` names among a console's packs: a pack folder's name, or a
/// version of the lab's library (`NAME`: its newest, `NAME@VERSION`, a content hash);
/// what to launch it by and its folder.
fn find_pack(packs: &[PackSummary], reference: &str) -> Option<(String, PathBuf)> {
    let p = packs.iter().find(|p| {
        p.name == reference
            || p.library.as_ref().is_some_and(|l| l.reference == reference)
            || p.library.is_some() && p.content_hash.as_deref() == Some(reference)
    })?;
    let launch_by = match &p.library {
        Some(_) => reference.to_string(),
        None => p.name.clone(),
    };
    Some((launch_by, PathBuf::from(&p.dir)))
}

/// The console `testbay run` launches on: the data dir's, with `pack_roots` for packs,
/// owning the book unless `--no-reserve`, no pack watching and no run queue of its own.
fn run_session(args: &Args, ctx: &Ctx, pack_roots: Vec<PathBuf>) -> anyhow::Result<Session> {
    let paths = ConsolePaths {
        pack_roots,
        ..ctx.paths.clone()
    };
    Session::open(
        ctx,
        paths,
        ConsoleOptions {
            book: if args.no_reserve {
                BookUse::None
            } else {
                BookUse::Own
            },
            owner_label: "testbay run",
            watch_packs: false,
            serve_queue: false,
            ..ctx.options()
        },
    )
}

/// `testbay run NAME` where NAME is no pack folder here: a version of the lab's pack
/// library in the store, launched on a console of the data dir; `None` when the library
/// has no such pack.
fn run_from_library(args: &Args, ctx: &Ctx) -> anyhow::Result<Option<i32>> {
    let params = parse_params(&args.params)?;
    let session = run_session(args, ctx, Vec::new())?;
    let packs = match session.call(Request::ListPacks) {
        Ok(Response::ListPacks(p)) => p,
        Ok(other) => return Err(unexpected("list_packs", other)),
        Err(e) => bail!("{}", error_text(&e)),
    };
    let Some((name, dir)) = find_pack(&packs, &args.pack) else {
        return Ok(None);
    };
    launch_and_follow(&session, args, ctx, &dir, name, params).map(Some)
}

/// Launch `pack` on the session's console and follow it to its end.
fn launch_and_follow(
    session: &Session,
    args: &Args,
    ctx: &Ctx,
    pack_dir: &Path,
    pack: String,
    params: Map<String, Value>,
) -> anyhow::Result<i32> {
    let mut params = params;
    if let Ok(Response::GetPack(detail)) = session.call(Request::GetPack { name: pack.clone() }) {
        keep_text(&args.params, &mut params, &detail.params);
    }
    let spec = LaunchSpec {
        pack,
        groups: args.groups.clone(),
        ats: args.ats.clone(),
        duts: args.duts.clone(),
        params,
        resource_mode: args.resource_mode,
        coverage_mode: args.coverage_mode,
        force: args.force,
        ..LaunchSpec::default()
    };
    session.block_on(drive(session.console(), args, ctx, pack_dir, spec))
}

/// The name of the pack in `dir`, as the console's library knows it (the pack may be
/// broken: the launch then says how).
fn pack_name(session: &Session, dir: &Path) -> anyhow::Result<Option<String>> {
    let packs = match session.call(Request::ListPacks) {
        Ok(Response::ListPacks(p)) => p,
        Ok(other) => return Err(unexpected("list_packs", other)),
        Err(e) => bail!("{}", error_text(&e)),
    };
    let dir = dir.display().to_string();
    Ok(packs.into_iter().find(|p| p.dir == dir).map(|p| p.name))
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

/// Launch, follow the run's events until its final status, stop it on signals, then print
/// the summary; the exit code.
async fn drive(
    console: &dyn Console,
    args: &Args,
    ctx: &Ctx,
    pack_dir: &Path,
    spec: LaunchSpec,
) -> anyhow::Result<i32> {
    // Before the launch: a signal that comes while the run starts stops it once started,
    // and the launch's own events (a run that could not start) are heard.
    let mut signals = StopSignals::new()?;
    let mut events = console.subscribe();
    let run_id = match console.dispatch(Request::Launch(spec)).await {
        Ok(Response::Launch {
            run_id, unreserved, ..
        }) => {
            say_unreserved(args, ctx, &unreserved);
            run_id
        }
        Ok(other) => return Err(unexpected("launch", other)),
        Err(e) => return refused(args, pack_dir, e, &mut events),
    };
    let mut out = Output::start(args.json, console, &run_id).await;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut interrupts = 0u8;
    // On a terminal, the run's prompts are asked here too (the answer goes back through
    // the console like any other).
    let ask_here = !args.json && std::io::stdin().is_terminal();
    let (answers_tx, mut answers) = tokio::sync::mpsc::unbounded_channel::<(u64, String)>();
    let mut asked = std::collections::HashMap::<u64, String>::new();
    let status = loop {
        let by = tokio::select! {
            Some((id, answer)) = answers.recv() => {
                let by = std::env::var("USER").ok().map(|u| format!("{u} (terminal)"));
                let req = Request::AnswerPrompt { id, answer, by, run_id: Some(run_id.clone()) };
                if let Err(e) = console.dispatch(req).await {
                    say!("prompt {id}: {}", e.message);
                    // Not an answer it takes: ask again (unless it waits no more).
                    if let (true, Some(q)) = (e.code != ErrorCode::NotFound, asked.get(&id)) {
                        ask_on_terminal(id, q.clone(), answers_tx.clone());
                    }
                }
                continue;
            }
            ev = events.recv() => {
                match ev {
                    Ok(Event::Run(ev)) if ev.run_id() == run_id => {
                        out.show(&ev);
                        if let (true, RunEvent::Prompt { prompt, .. }) = (ask_here, &ev) {
                            let q = question(prompt);
                            asked.insert(prompt.id, q.clone());
                            ask_on_terminal(prompt.id, q, answers_tx.clone());
                        }
                        if let RunEvent::RunStatus { status, .. } = ev {
                            if status.is_finished() {
                                break status;
                            }
                        }
                    }
                    // Events were missed (this subscriber lagged, or a lab server's
                    // stream dropped and came back): the run's status tells whether it
                    // is over.
                    Err(RecvError::Lagged(_)) | Ok(Event::Resync { .. }) => {
                        if let Some(status) = finished_status(console, &run_id).await? {
                            break status;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Closed) => bail!("the console's event stream ended"),
                }
                continue;
            }
            _ = tick.tick() => {
                out.refresh(console, &run_id).await;
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
                // Leave: what is stored stays stored (the console commits the results of
                // the last moments as it shuts down); the task processes die with this
                // process, and the next start marks the run interrupted.
                console.shutdown();
                say!("left run {run_id} without waiting; the next start marks it interrupted");
                return Ok(by.exit_code());
            }
        }
        let stop = Request::StopRun {
            run_id: run_id.clone(),
        };
        let _ = console.dispatch(stop).await;
    };
    out.finish(console, &run_id).await;
    // The verdict is what the run did (its live state), not only what the store kept: a
    // result the store lost (no space left) still counts, and the run says so.
    let (run, tasks, view) = match crate::console::read_back(console, &run_id).await {
        Ok((run, tasks, view)) => (Some(run), tasks, view),
        Err(e) => {
            say!(
                "cannot read run {run_id} back from the store: {}",
                e.message
            );
            let view = match console
                .dispatch(Request::RunView {
                    run_id: run_id.clone(),
                })
                .await
            {
                Ok(Response::RunView(v)) => Some(*v),
                _ => None,
            };
            (None, Vec::new(), view)
        }
    };
    if !args.json {
        let reason = view.as_ref().and_then(|v| v.reason.as_deref());
        summary::print(
            &run_id,
            status,
            verdict(&view, &run),
            reason,
            &summary::with_live_results(tasks, view.as_ref()),
        );
    }
    if view.is_none() && run.is_none() {
        bail!("run {run_id}: neither its live state nor its record can be read");
    }
    Ok(if verdict(&view, &run) == Some(RunVerdict::Passed) {
        0
    } else {
        1
    })
}

/// A launch the console refused, said as `testbay run` says it; exit 2.
fn refused(
    args: &Args,
    pack_dir: &Path,
    e: ApiError,
    events: &mut EventReceiver,
) -> anyhow::Result<i32> {
    if e.code == ErrorCode::PackBroken {
        say!("pack {} cannot run:", pack_dir.display());
        for d in &e.diagnostics {
            say!("  {d}");
        }
        return Ok(2);
    }
    // A launch refused once the pack was read is stored as a run that could not start;
    // its one event is already in the stream.
    while let Ok(ev) = events.try_recv() {
        if let Event::Run(
            ev @ RunEvent::RunStatus {
                status: RunStatus::CouldNotStart,
                ..
            },
        ) = ev
        {
            if args.json {
                out!("{}", serde_json::to_string(&ev)?);
            }
            say!("{}", e.message);
            return Ok(2);
        }
    }
    if e.code == ErrorCode::Unavailable && e.diagnostics.is_empty() && !args.no_reserve {
        say!("{}", e.message);
        say!("Launch the run from that console, or pass --no-reserve to run without reservations.");
        return Ok(2);
    }
    bail!("{}", error_text(&e))
}

/// Say what the run uses without reserving it (no lab file, or `--no-reserve`).
fn say_unreserved(args: &Args, ctx: &Ctx, unreserved: &[String]) {
    if unreserved.is_empty() {
        return;
    }
    // The console names the DUTs first, one per `--dut`.
    let (duts, resources) = unreserved.split_at(args.duts.len().min(unreserved.len()));
    let mut what: Vec<String> = Vec::new();
    if !duts.is_empty() {
        what.push(format!("DUT(s) {}", duts.join(", ")));
    }
    what.extend(resources.iter().cloned());
    let what = what.join(", ");
    if ctx.server.is_some() {
        say!("note: the lab server has no lab file, so nothing is reserved ({what})");
    } else if ctx.paths.lab_file.is_none() {
        say!("note: no lab file, so nothing is reserved ({what})");
    } else {
        say!(
            "--no-reserve: running without reservations; {what} may be in use by others meanwhile"
        );
    }
}

/// The run's final status when it has one (its live state, else its record).
/// Reads an answer to prompt `id` from the terminal on a thread of its own (a read of
/// stdin cannot be cancelled; an answer that comes after the prompt was answered elsewhere
/// is refused by the console and said so).
fn ask_on_terminal(
    id: u64,
    question: String,
    answers: tokio::sync::mpsc::UnboundedSender<(u64, String)>,
) {
    std::thread::spawn(move || {
        // One line at a time: `say!` shows a line break inside a line escaped.
        for line in question.lines() {
            say!("{line}");
        }
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            let _ = answers.send((id, line.trim_end_matches(['\r', '\n']).to_string()));
        }
    });
}

/// What the terminal asks for a prompt.
fn question(p: &testbay_engine::exec::prompts::PromptView) -> String {
    let how = if !p.choices.is_empty() {
        format!("one of: {}", p.choices.join(" / "))
    } else if let Some(pat) = &p.pattern {
        format!("text matching {pat}")
    } else {
        "any text".to_string()
    };
    format!(
        "{} asks (prompt {}): {}\nanswer with {how}, then Enter:",
        p.task, p.id, p.message
    )
}

async fn finished_status(console: &dyn Console, run_id: &str) -> anyhow::Result<Option<RunStatus>> {
    let view = Request::RunView {
        run_id: run_id.to_string(),
    };
    let status = match console.dispatch(view).await {
        Ok(Response::RunView(v)) => v.status,
        _ => match crate::console::run_page(console, run_id, 0, Some(1)).await {
            Ok(detail) => detail.run.status,
            Err(e) => bail!("{}", error_text(&e)),
        },
    };
    Ok(Some(status).filter(|s| s.is_finished()))
}

/// The run's verdict: from its live state, else its record.
fn verdict(view: &Option<RunView>, run: &Option<RunRecord>) -> Option<RunVerdict> {
    match (view, run) {
        (Some(v), _) => v.verdict,
        (None, Some(r)) => r.verdict,
        (None, None) => None,
    }
}
