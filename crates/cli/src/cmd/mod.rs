//! The subcommands and what they share ([`Ctx`]).
//!
//! Adding a subcommand: `cmd/<name>.rs` with `pub struct Args` (clap::Args) and
//! `pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32>`, then one `pub mod` line,
//! one [`Command`] variant and one match arm in [`run`] below.

pub mod agent;
pub mod agents;
pub mod audit;
pub mod export;
pub mod history;
pub mod lab;
pub mod migrate_store;
pub mod pack_library;
pub mod packs;
pub mod queue;
pub mod report;
pub mod results;
pub mod retention;
pub mod run;
pub mod schedule;
pub mod serve;
pub mod users;
pub mod triage;
pub mod webhook;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use testbay_engine::api::{ConsoleOptions, ConsolePaths};
use testbay_engine::store::StoreLocation;

#[derive(Parser)]
#[command(
    name = "testbay",
    version,
    about = "Testbay: run task packs on test racks, headless or as a console"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(clap::Args)]
pub struct GlobalArgs {
    /// Data directory: testbay.db, run logs and artifacts
    /// [default: $XDG_DATA_HOME/testbay or ~/.local/share/testbay]
    #[arg(long, global = true, env = "TESTBAY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A folder of packs, or a pack folder; repeat for more (TESTBAY_PACKS: `:`-separated)
    /// [default: the repository's packs/ when run from a checkout]
    #[arg(
        long = "packs",
        global = true,
        env = "TESTBAY_PACKS",
        value_name = "DIR",
        value_delimiter = ':'
    )]
    pub packs: Vec<PathBuf>,
    /// Lab inventory file [default: DATA_DIR/lab.yaml, else the repository's demo lab]
    #[arg(long, global = true, env = "TESTBAY_LAB", value_name = "FILE")]
    pub lab: Option<PathBuf>,
    /// The store: sqlite://PATH or postgres://USER@HOST[:PORT]/DB (a lab's shared
    /// database); logs and artifacts stay in the data directory
    /// [default: sqlite://DATA_DIR/testbay.db]
    #[arg(long, global = true, env = "TESTBAY_STORE", value_name = "URL")]
    pub store: Option<StoreLocation>,
    /// Work on a lab server (a `testbay serve`, http://HOST:PORT) instead of this
    /// computer's data directory: runs, results, lab, queue and schedules are the server's.
    /// `agent` takes it repeated: any servers of the lab, tried in turn (other commands
    /// refuse several)
    #[arg(long, global = true, env = "TESTBAY_SERVER", value_name = "URL")]
    pub server: Vec<String>,
    /// The lab server's token (with --server); for `serve`, the token to require off
    /// loopback instead of a random one (letters, digits, `-._~`)
    #[arg(long, global = true, env = "TESTBAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl GlobalArgs {
    fn servers(&self) -> Vec<String> {
        self.server
            .iter()
            .filter(|s| !s.trim().is_empty())
            .cloned()
            .collect()
    }

    pub fn ctx(&self) -> Ctx {
        let paths =
            ConsolePaths::resolve(self.data_dir.clone(), self.packs.clone(), self.lab.clone());
        Ctx {
            data_dir: paths.data_dir.clone(),
            packs: paths.pack_roots.clone(),
            lab: paths.lab_file.clone(),
            paths,
            store: self.store.clone(),
            server: self.servers().first().cloned(),
            servers: self.servers(),
            token: self.token.clone(),
        }
    }
}

/// What every subcommand gets: where the data, the packs and the lab are. Cheap to build:
/// nothing is opened until a subcommand needs it.
pub struct Ctx {
    pub data_dir: PathBuf,
    /// Pack folders to search (`--packs`, or the repository's `packs/`).
    pub packs: Vec<PathBuf>,
    /// The lab file, if one was given or found.
    pub lab: Option<PathBuf>,
    /// The same, as the engine takes it.
    pub paths: ConsolePaths,
    /// `--server`: the lab server every console of a subcommand is (`console::Session`).
    pub server: Option<String>,
    /// Every `--server` given (only `agent` takes several).
    pub servers: Vec<String>,
    /// `--token`: the lab server's token, or the one `serve` requires.
    pub token: Option<String>,
    /// The store `--store` names; `None`: SQLite in the data directory.
    pub store: Option<StoreLocation>,
}

impl Ctx {
    /// Console options that open the store this command was given.
    pub fn options(&self) -> ConsoleOptions {
        ConsoleOptions {
            store: self.store.clone(),
            ..ConsoleOptions::default()
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the console (UI, API, events) to a browser
    Serve(serve::Args),
    /// Run a pack headless: live progress, stored results, a summary
    Run(run::Args),
    /// List stored runs, or show one run's task tree
    Results(results::Args),
    /// Export a stored run as JUnit XML, results.yaml or JSON
    Export(export::Args),
    /// Check pack folders, or list the packs found
    Packs(packs::Args),
    /// Lab inventory: show, find DUTs, hold and release, list holds and waiters
    Lab(lab::Args),
    /// Webhooks: add, list, remove; their last deliveries
    Webhook(webhook::Args),
    /// The run queue: list it (who waits for what, since when, estimated start), move,
    /// reprioritise or cancel a queued run
    Queue(queue::Args),
    /// Stored schedules: add, list, show, pause, resume, remove
    Schedule(schedule::Args),
    /// From inside a task: report sections, details, measurements, attachments, the result
    Report(report::Args),
    /// The lab's users and roles: add (prints a token once), list, revoke, role
    Users(users::Args),
    /// The audit log: who launched, stopped, held, released, answered, changed what, when
    Audit(audit::Args),
    /// Copy a SQLite store into a PostgreSQL database (a lab's), then compare every
    /// table's rows and content hash
    MigrateStore(migrate_store::Args),
    /// Known-issue rules: list, add, remove; apply them to stored failures
    Triage(triage::Args),
    /// Run the task phases of a lab's racks on this machine, for the lab server
    /// (`--server`, an agent user's `--token`)
    Agent(agent::Args),
    /// The lab's rack agents: racks, heartbeat, CPU, what they run; drain one
    Agents(agents::Args),
}

impl Command {
    /// Whether this subcommand starts task phases (and so wants the phase guard).
    pub fn runs_phases(&self) -> bool {
        matches!(
            self,
            Command::Run(_) | Command::Serve(_) | Command::Agent(_)
        )
    }
}

pub fn run(command: Command, ctx: &Ctx) -> anyhow::Result<i32> {
    if ctx.servers.len() > 1 && !matches!(command, Command::Agent(_)) {
        anyhow::bail!(
            "--server is given {} times: only `testbay agent` takes several (any servers of a lab); other commands work on one",
            ctx.servers.len()
        );
    }
    if let Some(server) = &ctx.server {
        let local_only = match &command {
            Command::Serve(_) => Some(("serve", "serves this computer's console")),
            Command::Packs(a) if !a.through_console() => {
                Some(("packs", "checks and lists pack folders on this computer"))
            }
            _ => None,
        };
        if let Some((name, what)) = local_only {
            anyhow::bail!(
                "--server {server}: `testbay {name}` {what}; it does not work on a lab server (drop --server, or unset TESTBAY_SERVER)"
            );
        }
    }
    match command {
        Command::Serve(a) => serve::run(a, ctx),
        Command::Run(a) => run::run(a, ctx),
        Command::Results(a) => results::run(a, ctx),
        Command::Export(a) => export::run(a, ctx),
        Command::Packs(a) => packs::run(a, ctx),
        Command::Lab(a) => lab::run(a, ctx),
        Command::Webhook(a) => webhook::run(a, ctx),
        Command::Queue(a) => queue::run(a, ctx),
        Command::Schedule(a) => schedule::run(a, ctx),
        Command::Report(a) => report::run(a, ctx),
        Command::Users(a) => users::run(a, ctx),
        Command::Audit(a) => audit::run(a, ctx),
        Command::MigrateStore(a) => migrate_store::run(a, ctx),
        Command::Triage(a) => triage::run(a, ctx),
        Command::Agent(a) => agent::run(a, ctx),
        Command::Agents(a) => agents::run(a, ctx),
    }
}
