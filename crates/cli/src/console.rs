//! The console a subcommand talks to: every subcommand that works on runs, results or the
//! lab opens a [`LocalConsole`] on the data directory and then only uses it as a
//! [`Console`] (`dispatch`, `subscribe`, `shutdown`), as `testbay serve` and the desktop
//! app do. Opening is the one thing that knows the console is local: it says what
//! opening recovered (runs of consoles that exited, marked interrupted).
//!
//! With `--server URL` the console is a lab server's instead ([`RemoteConsole`]): the
//! subcommand is the same, the requests go to that server and act on its data.

use std::sync::Arc;

use anyhow::Context as _;
use testbay_engine::api::{
    ApiError, BookUse, Console, ConsoleOptions, ConsolePaths, LocalConsole, Request, Response,
    RunDetail, RunRecord, RunView, TaskRecord,
};
use testbay_remote::{RemoteConsole, Target};
use tokio::runtime::Runtime;

use crate::Ctx;

/// A console and the runtime it lives in, for one subcommand. Shut down when dropped.
pub struct Session {
    console: Arc<dyn Console>,
    rt: Runtime,
}

impl Session {
    /// The console of a subcommand: the lab server's with `--server`, else a local one
    /// on `paths` with `options`.
    pub fn open(ctx: &Ctx, paths: ConsolePaths, options: ConsoleOptions) -> anyhow::Result<Self> {
        match &ctx.server {
            Some(server) => Self::remote(server, ctx.token.clone()),
            None => Self::local(paths, options),
        }
    }

    /// The console of the lab server at `server`, checked by one request (`info`).
    pub fn remote(server: &str, token: Option<String>) -> anyhow::Result<Self> {
        let target =
            Target::parse(server, token).map_err(|e| anyhow::anyhow!("--server: {}", e.message))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let remote = rt
            .block_on(RemoteConsole::connect(target))
            .map_err(|e| anyhow::anyhow!("{}: {}", e.code.as_str(), error_text(&e)))?;
        Ok(Self {
            console: remote.shared(),
            rt,
        })
    }

    /// Open a console on `paths`. One thread: tasks are child processes, the engine only
    /// waits on them, and phases are forked from this (long-lived) thread, as
    /// `PR_SET_PDEATHSIG` requires.
    fn local(paths: ConsolePaths, options: ConsoleOptions) -> anyhow::Result<Self> {
        // A command's console launches no health checks: the long-lived one does.
        let options = ConsoleOptions {
            health_checks: false,
            ..options
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let place = match &options.store {
            Some(store) => format!("the store {}", store.display()),
            None => format!("the data dir {}", paths.data_dir.display()),
        };
        let local = rt
            .block_on(async { LocalConsole::open_with(paths, options) })
            .map_err(|e| anyhow::anyhow!("{}", e.message))
            .with_context(|| format!("cannot open {place}"))?;
        match local.recovered() {
            Ok(rep) if !rep.interrupted_runs.is_empty() => say!(
                "note: {} run(s) left by a console that exited are now marked interrupted ({}); {} task(s) aborted, {} leftover process(es) killed",
                rep.interrupted_runs.len(),
                rep.interrupted_runs.join(", "),
                rep.aborted_tasks,
                rep.killed_processes
            ),
            Ok(_) => {}
            // Reading must work on a full disk too: a recovery that cannot write is a note.
            Err(e) => {
                say!("note: cannot mark the runs of consoles that exited as interrupted: {e}")
            }
        }
        Ok(Self {
            console: local.shared(),
            rt,
        })
    }

    /// A console for reading stored runs (of the store `--store` names): no packs, no
    /// lab, nothing reserved.
    pub fn reading(ctx: &Ctx) -> anyhow::Result<Self> {
        let paths = ConsolePaths {
            pack_roots: Vec::new(),
            lab_file: None,
            ..ctx.paths.clone()
        };
        let options = ConsoleOptions {
            book: BookUse::None,
            watch_packs: false,
            serve_queue: false,
            ..ctx.options()
        };
        Self::open(ctx, paths, options)
    }

    pub fn console(&self) -> &dyn Console {
        &*self.console
    }

    /// Answer one request.
    pub fn call(&self, request: Request) -> Result<Response, ApiError> {
        self.rt.block_on(self.console.dispatch(request))
    }

    /// Push a pack's archive (`pack::archive`) into the console's pack library: to a
    /// lab server as an upload of its bytes (no base64, no `/api` body limit).
    pub fn push_pack(&self, archive: Vec<u8>, private: bool) -> Result<Response, ApiError> {
        self.rt.block_on(self.console.push_pack_as(
            &testbay_engine::api::Caller::local(),
            archive,
            private,
        ))
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.console.shutdown();
    }
}

/// An answer that is not the one its request calls for (a console bug).
pub fn unexpected(what: &str, answer: Response) -> anyhow::Error {
    anyhow::anyhow!("the console answered {what} with {answer:?}")
}

/// An API error as the CLI reports it: the message, then each diagnostic on its own line.
pub fn error_text(e: &ApiError) -> String {
    let mut text = e.message.clone();
    for d in &e.diagnostics {
        text.push_str(&format!("\n  {d}"));
    }
    text
}

type ReadBack = (RunRecord, Vec<TaskRecord>, Option<RunView>);

/// The stored run, every one of its tasks (all pages, in plan order) and its live state
/// when the console still has it.
pub async fn read_back(console: &dyn Console, run_id: &str) -> Result<ReadBack, ApiError> {
    let first = run_page(console, run_id, 0, None).await?;
    let RunDetail {
        run,
        tasks,
        next_offset,
        live,
        ..
    } = first;
    let mut tasks: Vec<TaskRecord> = tasks.into_iter().map(|t| t.record).collect();
    let mut next = next_offset;
    while let Some(offset) = next {
        let page = run_page(console, run_id, offset, None).await?;
        tasks.extend(page.tasks.into_iter().map(|t| t.record));
        next = page.next_offset;
    }
    Ok((run, tasks, live))
}

pub async fn run_page(
    console: &dyn Console,
    run_id: &str,
    offset: u32,
    limit: Option<u32>,
) -> Result<RunDetail, ApiError> {
    let request = Request::GetRun {
        run_id: run_id.to_string(),
        offset: Some(offset),
        limit,
    };
    match console.dispatch(request).await? {
        Response::GetRun(detail) => Ok(*detail),
        other => Err(ApiError::internal(format!(
            "the console answered get_run with {other:?}"
        ))),
    }
}
