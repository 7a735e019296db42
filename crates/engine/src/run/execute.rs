//! A [`PhaseJob`] run on this machine: the one code path of the console's own phases
//! ([`super::LocalRunner`], the single seat and racks without an agent) and of a rack
//! agent's ([`crate::agents::worker`]). It opens the phase on the run's reporter (its
//! sections, measurements and prompts go to `report`), builds the command from the job
//! (the run's folder and pack snapshot being where this machine keeps them), runs it
//! through `exec` and folds the phase's report into its outcome.
//!
//! What differs between the two callers stays with them: the agent first fetches the
//! snapshot and writes the attempt's folder and params file (the console's driver has
//! written them already), and sends the phase's files to its server afterwards.

use std::path::Path;
use std::sync::Arc;

use crate::clock::Clock;
use crate::exec::reporter::{PhaseInfo, ReportSink, Reporter};
use crate::exec::{self, ExecError, ExecLimits, LiveSink, PhaseOutcome, ReporterEnv, StopSignal};

use super::PhaseJob;

/// Where on this machine a job's paths are, and what serves its phases.
pub struct Site<'a> {
    /// The run's folder (the job's `dir` is relative to it).
    pub run_dir: &'a Path,
    /// The run's pack snapshot (the job's `task_dir` is relative to it).
    pub pack_dir: &'a Path,
    pub limits: &'a ExecLimits,
    pub clock: &'a Arc<dyn Clock>,
    /// The run's reporter socket here; `None`: the phase runs without `TESTBAY_REPORTER`.
    pub reporter: Option<&'a Reporter>,
}

/// What the phase says as it runs, and what stops it.
pub struct Hooks<'a> {
    pub live: Option<LiveSink>,
    /// Gets the sections, measurements and prompts the phase reports.
    pub report: Option<ReportSink>,
    pub stop: Option<StopSignal>,
    /// Gets the pid (= process group) once the phase's process exists.
    pub on_spawn: Box<dyn FnOnce(u32) + Send + 'a>,
}

/// Run `job` to its end at `site`; its report (sections still open closed `Errored`) is
/// part of the outcome.
pub async fn run_job(
    site: Site<'_>,
    job: &PhaseJob,
    hooks: Hooks<'_>,
) -> Result<PhaseOutcome, ExecError> {
    let handle = site.reporter.map(|r| {
        let info = PhaseInfo {
            task: job.task.clone(),
            lane: job.lane.clone(),
            item: job.item,
            phase: job.phase,
        };
        r.open_phase(
            info,
            &job.dir_in(site.run_dir).join("artifacts"),
            hooks.report,
        )
    });
    let cmd = job.command(
        site.run_dir,
        site.pack_dir,
        handle.as_ref().map(|h| ReporterEnv {
            socket: h.socket.clone(),
            token: h.token.clone(),
        }),
        site.limits.clone(),
    );
    let ran = exec::run_phase(&cmd, site.clock, hooks.live, hooks.stop, hooks.on_spawn).await;
    let reason = format!("still open when the {} phase ended", job.phase.as_str());
    let report = handle.map(|h| h.finish(&reason, site.clock.now_ms()));
    ran.map(|mut outcome| {
        if let Some(report) = report {
            exec::apply_report(&mut outcome, report);
        }
        outcome
    })
}
