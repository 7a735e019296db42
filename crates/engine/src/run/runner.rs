//! Where a phase runs: the seam between the run driver and a process. The driver describes
//! each phase as a [`PhaseJob`] (serializable: every path relative to the run's folder or
//! the pack snapshot, so it means the same on another machine) and hands it to the run's
//! [`PhaseRunner`]: [`LocalRunner`] runs it here (the single seat and the racks without
//! an agent), a rack agent's runner (`agents`) sends it to the agent of the run's rack;
//! both run it with the same code, [`super::execute::run_job`]. The local path adds no
//! thread hop and no serialisation: the runner's future is polled on the occurrence's own
//! task.
//!
//! An [`AgentDirectory`] says, at launch, which runner a run's rack takes.

use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::execute::{run_job, Hooks, Site};
use crate::clock::Clock;
use crate::exec::{
    self, ExecError, ExecLimits, LiveSink, PhaseCommand, PhaseOutcome, ProtocolEnv, ReporterEnv,
    StopSignal,
};
use crate::outcome::Phase;

/// Name of an occurrence's params file (`TESTBAY_PARAMS`), in its folder.
pub const PARAMS_FILE: &str = super::taskfiles::PARAMS_FILE;

/// One task phase to run, as it travels to whoever runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseJob {
    pub run_id: String,
    /// The occurrence (its item number in the run's plan).
    pub item: u32,
    pub task: String,
    pub lane: String,
    pub phase: Phase,
    /// The content hash of the run's pack snapshot (where `task_dir` is).
    pub snapshot_hash: String,
    /// The folder the argv is relative to, relative to the snapshot's root.
    pub task_dir: String,
    pub argv: Vec<String>,
    /// The attempt's folder (params file, logs, result file, `artifacts/`), relative to
    /// the run's folder.
    pub dir: String,
    /// File names in `dir`.
    pub log_file: String,
    pub result_file: String,
    /// The params file's content, for a runner on another machine (the local one reads
    /// the file the occurrence wrote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
    pub max_runtime_ms: Option<u64>,
    /// SIGTERM to SIGKILL.
    pub kill_grace_ms: u64,
}

/// Why a job cannot be run where it was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("phase job of run {run_id}: {what} `{path}` is not a plain relative path")]
pub struct BadJob {
    pub run_id: String,
    pub what: &'static str,
    pub path: String,
}

/// `p` as a relative path of plain names (no `..`, no root); `""` is `.`.
pub fn plain_relative(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then(|| path.to_path_buf())
}

/// `path` relative to `base` as a string (the whole path when it is not below `base`).
pub(super) fn relative_to(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

impl PhaseJob {
    /// Check every path a job names is relative and plain (a runner on another machine
    /// takes jobs only so).
    pub fn check(&self) -> Result<(), BadJob> {
        let bad = |what, path: &str| BadJob {
            run_id: self.run_id.clone(),
            what,
            path: path.to_string(),
        };
        for (what, p) in [
            ("task folder", &self.task_dir),
            ("task occurrence folder", &self.dir),
            ("log file", &self.log_file),
            ("result file", &self.result_file),
            ("run id", &self.run_id),
            ("snapshot hash", &self.snapshot_hash),
        ] {
            if plain_relative(p).is_none() {
                return Err(bad(what, p));
            }
        }
        Ok(())
    }

    /// The attempt's folder under `run_dir`.
    pub fn dir_in(&self, run_dir: &Path) -> PathBuf {
        run_dir.join(&self.dir)
    }

    /// The command for `exec`, the run's folder being `run_dir` and its snapshot
    /// `pack_dir` on this machine.
    pub fn command(
        &self,
        run_dir: &Path,
        pack_dir: &Path,
        reporter: Option<ReporterEnv>,
        mut limits: ExecLimits,
    ) -> PhaseCommand {
        let dir = self.dir_in(run_dir);
        limits.kill_grace = Duration::from_millis(self.kill_grace_ms);
        PhaseCommand {
            argv: self.argv.clone(),
            cwd: pack_dir.join(&self.task_dir),
            env: ProtocolEnv {
                run_id: self.run_id.clone(),
                task: self.task.clone(),
                phase: self.phase,
                params_file: dir.join(PARAMS_FILE),
                result_file: dir.join(&self.result_file),
                artifacts_dir: dir.join("artifacts"),
                reporter,
            },
            log_file: dir.join(&self.log_file),
            max_runtime: self.max_runtime_ms.map(Duration::from_millis),
            limits,
        }
    }
}

/// One phase handed to a runner, with what it reports to as it runs.
pub struct PhaseCall<'a> {
    pub job: PhaseJob,
    /// The run's reporter socket on this machine (a runner on another machine serves
    /// its phases one of its own).
    pub reporter: Option<&'a exec::reporter::Reporter>,
    pub live: Option<LiveSink>,
    /// Gets the sections, measurements and prompts the phase reports, wherever it runs.
    pub report: Option<exec::reporter::ReportSink>,
    /// The console's operator prompts, where a runner on another machine raises those
    /// its phases ask.
    pub prompts: Option<&'a Arc<exec::prompts::Prompts>>,
    pub stop: Option<StopSignal>,
    /// Gets the pid (= process group) once the phase's process exists.
    pub on_spawn: Box<dyn FnOnce(u32) + Send + 'a>,
}

/// The phase's outcome, as `exec::run_phase` gives it.
pub type PhaseFuture<'a> =
    Pin<Box<dyn Future<Output = Result<PhaseOutcome, ExecError>> + Send + 'a>>;

/// How the place a run's phases go is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerHealth {
    Healthy,
    /// Not heard from lately; its phases may still be running. The run is `stalled`.
    Stalled(String),
    /// Gone for good: its phases ended `Aborted`, the run ends `interrupted`.
    Lost(String),
}

/// Runs the phases of one run.
pub trait PhaseRunner: Send + Sync {
    /// Run one phase to its end.
    fn run_phase<'a>(&'a self, call: PhaseCall<'a>) -> PhaseFuture<'a>;

    /// Whether its phases run on this machine, with the run's folder and reporter socket;
    /// a remote runner's phases get their params file's content in the job and report
    /// to a reporter of its own, their report coming with the outcome.
    fn reports_here(&self) -> bool {
        true
    }

    /// The runner's health, for one that can go away; `None` for one that cannot.
    fn health(&self) -> Option<watch::Receiver<RunnerHealth>> {
        None
    }
}

/// Runs phases in this process, through the code path a rack agent runs them with
/// ([`super::execute::run_job`]).
pub struct LocalRunner {
    pub run_dir: PathBuf,
    pub pack_dir: PathBuf,
    pub limits: ExecLimits,
    pub clock: Arc<dyn Clock>,
}

impl PhaseRunner for LocalRunner {
    fn run_phase<'a>(&'a self, call: PhaseCall<'a>) -> PhaseFuture<'a> {
        Box::pin(async move {
            let site = Site {
                run_dir: &self.run_dir,
                pack_dir: &self.pack_dir,
                limits: &self.limits,
                clock: &self.clock,
                reporter: call.reporter,
            };
            let hooks = Hooks {
                live: call.live,
                report: call.report,
                stop: call.stop,
                on_spawn: call.on_spawn,
            };
            run_job(site, &call.job, hooks).await
        })
    }
}

/// Which runner a rack's runs take (the console's rack agents).
pub trait AgentDirectory: Send + Sync {
    /// `Ok(None)`: the rack's phases run in this process. `Ok(Some(_))`: on the rack's
    /// agent. `Err(reason)`: the rack wants an agent and none can take the run (the run
    /// could not start).
    fn runner_for(
        &self,
        rack: &str,
        run_id: &str,
        snapshot_hash: &str,
        snapshot_dir: &Path,
    ) -> Result<Option<Arc<dyn PhaseRunner>>, String>;

    /// Whether a run on `rack` must wait for its agent (above its CPU threshold); `None`
    /// when it may start (or cannot at all: [`AgentDirectory::runner_for`] says why).
    fn busy(&self, _rack: &str) -> Option<super::RackBusy> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_pass() {
        assert!(plain_relative("box-1/boot/attempt-2").is_some());
        assert!(plain_relative("").is_some());
        assert!(plain_relative("../etc").is_none());
        assert!(plain_relative("/etc").is_none());
        assert!(plain_relative("a/../../b").is_none());
    }
}
