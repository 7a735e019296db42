//! Result names and run statuses shared by every module.
//!
//! A task result is a free string (kissats: "any string not listed in valid_result is a
//! failure"); the names below are the ones the engine itself assigns or defaults to.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

pub const PASSED: &str = "Passed";
pub const FAILED: &str = "Failed";
pub const COMPLETED: &str = "Completed";
/// Not run: stopped by `stop_suite_on_fail`, or not valid for this DUT/ATS.
pub const SKIPPED: &str = "Skipped";
/// The task crashed (killed by a signal, could not start) or wrote an invalid result.
pub const ERRORED: &str = "Errored";
/// `max_runtime` elapsed; the process group was terminated.
pub const TIMEOUT: &str = "Timeout";
/// A prereq failed or did not run.
pub const BLOCKED: &str = "Blocked";
/// The run was stopped, or the console died while the task was unfinished.
pub const ABORTED: &str = "Aborted";

/// kissats' default `valid_result`.
pub fn default_valid_result() -> Vec<String> {
    vec![PASSED.into(), COMPLETED.into(), SKIPPED.into()]
}

/// Run status, after StormTest's batch status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum RunStatus {
    Queued,
    Running,
    Completed,
    /// Killed by the operator.
    Stopped,
    /// Waiting on something that is not coming (a resource that never frees up).
    Stalled,
    /// Refused before any task started; the reason is stored with the run.
    CouldNotStart,
    /// The console died while the run was going; found and marked at the next start.
    Interrupted,
    /// The run went to its end but its record is not whole: results or statuses could not
    /// be stored, or tasks could not be prepared (no space left on the data dir, ...). The
    /// reason says what and why. A failure whatever the stored results say.
    Errored,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Stopped => "stopped",
            RunStatus::Stalled => "stalled",
            RunStatus::CouldNotStart => "could_not_start",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Errored => "errored",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "completed" => RunStatus::Completed,
            "stopped" => RunStatus::Stopped,
            "stalled" => RunStatus::Stalled,
            "could_not_start" => RunStatus::CouldNotStart,
            "interrupted" => RunStatus::Interrupted,
            "errored" => RunStatus::Errored,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        !matches!(
            self,
            RunStatus::Queued | RunStatus::Running | RunStatus::Stalled
        )
    }
}

/// What a finished run came to, apart from its lifecycle status: `passed` (it completed
/// with no failed or aborted task), `failed` (it completed and a task failed or was
/// aborted), `errored` (it never started, its console died, or its record is not whole),
/// `stopped` (an operator stopped it). A run going now has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum RunVerdict {
    Passed,
    Failed,
    Errored,
    Stopped,
}

impl RunVerdict {
    /// The verdict of a run in `status` with `failures` failed and `aborted` aborted tasks.
    pub fn of(status: RunStatus, failures: u32, aborted: u32) -> Option<Self> {
        Some(match status {
            RunStatus::Queued | RunStatus::Running | RunStatus::Stalled => return None,
            RunStatus::Completed if failures == 0 && aborted == 0 => RunVerdict::Passed,
            RunStatus::Completed => RunVerdict::Failed,
            RunStatus::Stopped => RunVerdict::Stopped,
            RunStatus::CouldNotStart | RunStatus::Interrupted | RunStatus::Errored => {
                RunVerdict::Errored
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunVerdict::Passed => "passed",
            RunVerdict::Failed => "failed",
            RunVerdict::Errored => "errored",
            RunVerdict::Stopped => "stopped",
        }
    }
}

/// Which phase of a task a process runs (`TESTBAY_PHASE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum Phase {
    Setup,
    Main,
    Teardown,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Main => "main",
            Phase::Teardown => "teardown",
        }
    }
}
