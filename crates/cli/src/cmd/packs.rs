//! `testbay packs check|list|import-kissats|push|publish|library`: validate pack
//! folders, list the packs found, write a pack from a folder of kissats task modules; the
//! lab's pack library (push, publish, what a console offers) in `pack_library`.
//!
//! A check of folders on this machine (any folder, not only the console's pack folders,
//! with every problem of a broken pack), so it loads them itself (`pack::discover`)
//! instead of opening a console on a data directory it does not need.

use std::path::PathBuf;

use clap::Subcommand;
use testbay_engine::pack::view::PackSummary;
use testbay_engine::pack::{discover, PackEntry};

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: PacksCommand,
}

#[derive(Subcommand)]
enum PacksCommand {
    /// Check packs; print every problem as `file:line:col: key: message` (exit 1 if any)
    Check {
        /// Pack folders, or folders of packs [default: --packs]
        dirs: Vec<PathBuf>,
        /// Print the result as JSON (one summary per pack, with its diagnostics)
        #[arg(long)]
        json: bool,
    },
    /// List every pack found: name, version, groups, tasks, status; broken ones with
    /// their problems
    List {
        /// Pack folders, or folders of packs [default: --packs]
        dirs: Vec<PathBuf>,
        /// Print the list as JSON
        #[arg(long)]
        json: bool,
    },
    /// Write a pack from a folder of kissats task modules (each module's get_params gives
    /// its task file; the modules run unchanged through `python3 -m testbay.kissats`)
    ImportKissats {
        /// Folder of kissats task modules (.py files with task_main)
        dir: PathBuf,
        /// Folder to write the pack in; must not exist or be empty [default: DIR-pack]
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Push a pack into the lab's pack library (checked first; broken packs are refused
    /// with their problems), stored by content hash with you as its owner
    Push {
        /// The pack folder
        dir: PathBuf,
        /// Seen only by you (and admins) until `testbay packs publish`
        #[arg(long)]
        private: bool,
        /// Print the pushed pack as JSON
        #[arg(long)]
        json: bool,
    },
    /// Make a private pack of the lab's library public (its owner or an admin)
    Publish {
        /// NAME (its newest version) or NAME@VERSION
        pack: String,
        /// Print the pack as JSON
        #[arg(long)]
        json: bool,
    },
    /// The packs a console offers: its pack folders and the lab's library versions you
    /// see, each with where it comes from (disk, or library: owner, private or public)
    Library {
        /// Print the list as JSON
        #[arg(long)]
        json: bool,
    },
}

impl Args {
    /// Whether the command works through a console (the lab's library: push, publish,
    /// library), so `--server` applies; the others look at folders on this computer.
    pub fn through_console(&self) -> bool {
        matches!(
            self.command,
            PacksCommand::Push { .. } | PacksCommand::Publish { .. } | PacksCommand::Library { .. }
        )
    }
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    match args.command {
        PacksCommand::Check { dirs, json } => check(&roots(dirs, ctx)?, json),
        PacksCommand::List { dirs, json } => list(&roots(dirs, ctx)?, json),
        PacksCommand::ImportKissats { dir, out } => import_kissats(&dir, out),
        PacksCommand::Push { dir, private, json } => {
            super::pack_library::push(ctx, &dir, private, json)
        }
        PacksCommand::Publish { pack, json } => super::pack_library::publish(ctx, pack, json),
        PacksCommand::Library { json } => super::pack_library::library(ctx, json),
    }
}

fn import_kissats(dir: &std::path::Path, out: Option<PathBuf>) -> anyhow::Result<i32> {
    use anyhow::Context as _;
    anyhow::ensure!(dir.is_dir(), "{} is not a folder", dir.display());
    let out = out.unwrap_or_else(|| {
        let mut s = dir.as_os_str().to_owned();
        s.push("-pack");
        PathBuf::from(s)
    });
    let non_empty = std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some());
    anyhow::ensure!(
        !non_empty,
        "{} is not empty; name another folder with --out",
        out.display()
    );
    let sdk = testbay_engine::exec::python_sdk_dir()
        .context("the bundled Python SDK (sdk/python) is not found")?;
    let run = std::process::Command::new("python3")
        .args(["-m", "testbay.kissats", "--import"])
        .arg(dir)
        .arg(&out)
        .env("PYTHONPATH", &sdk)
        .output()
        .context("cannot run python3")?;
    if !run.status.success() {
        say!("{}", String::from_utf8_lossy(&run.stderr).trim_end());
        return Ok(1);
    }
    let entries = discover(std::slice::from_ref(&out));
    match entries.first().map(|e| &e.result) {
        Some(Ok(p)) => {
            out!(
                "wrote pack {} with {} task(s) in {}",
                p.def.name,
                p.tasks.len(),
                out.display()
            );
            Ok(0)
        }
        Some(Err(errs)) => {
            for d in &errs.diagnostics {
                out!("{d}");
            }
            Ok(1)
        }
        None => anyhow::bail!("no pack was written in {}", out.display()),
    }
}

fn roots(dirs: Vec<PathBuf>, ctx: &Ctx) -> anyhow::Result<Vec<PathBuf>> {
    if !dirs.is_empty() {
        return Ok(dirs);
    }
    anyhow::ensure!(
        !ctx.packs.is_empty(),
        "no pack folder given: name one (testbay packs check DIR) or pass --packs"
    );
    Ok(ctx.packs.clone())
}

fn check(roots: &[PathBuf], json: bool) -> anyhow::Result<i32> {
    let entries = discover(roots);
    let problems: usize = entries
        .iter()
        .map(|e| e.result.as_ref().err().map_or(0, |e| e.diagnostics.len()))
        .sum();
    if json {
        crate::term::print_json(&entries.iter().map(PackSummary::of).collect::<Vec<_>>())?;
    } else {
        for e in &entries {
            if let Err(errs) = &e.result {
                for d in &errs.diagnostics {
                    out!("{d}");
                }
            }
        }
        if entries.is_empty() {
            let shown: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
            out!("no pack found in {}", shown.join(", "));
        }
        let broken = entries.iter().filter(|e| e.result.is_err()).count();
        out!(
            "{} pack(s) checked: {} ok, {broken} with problems ({problems} problem(s))",
            entries.len(),
            entries.len() - broken,
        );
    }
    Ok(if problems > 0 || entries.is_empty() {
        1
    } else {
        0
    })
}

fn list(roots: &[PathBuf], json: bool) -> anyhow::Result<i32> {
    let entries = discover(roots);
    let summaries: Vec<PackSummary> = entries.iter().map(PackSummary::of).collect();
    if json {
        crate::term::print_json(&summaries)?;
        return Ok(0);
    }
    if entries.is_empty() {
        out!("no packs found");
    }
    for (entry, s) in entries.iter().zip(&summaries) {
        write_summary(entry, s);
    }
    Ok(0)
}

fn write_summary(entry: &PackEntry, s: &PackSummary) {
    let version = s.version.as_deref().unwrap_or("?");
    if s.ok {
        out!(
            "{} {version}  ok  {} task(s)  {}",
            s.name,
            s.task_count,
            s.dir
        );
        for line in s.description.lines() {
            out!("  {line}");
        }
        for g in &s.groups {
            out!(
                "  group {}: {} test(s), about {}",
                g.name,
                g.task_count,
                duration(g.est_time)
            );
        }
    } else {
        out!(
            "{} {version}  BROKEN ({} problem(s))  {}",
            s.name,
            s.diagnostics.len(),
            entry.dir.display()
        );
        for d in &s.diagnostics {
            out!("  {d}");
        }
    }
}

fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", (s + 30) / 60)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}
