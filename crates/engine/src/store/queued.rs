//! A queued run, a schedule and its firings as the store keeps them (`api::queue` and
//! `api::schedules` own them; the store keeps them across restarts).

use serde::{Deserialize, Serialize};

use crate::clock::EpochMs;

/// One run waiting in the run queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedRunRecord {
    pub run_id: String,
    pub pack_name: String,
    /// `low`, `normal` or `high`.
    pub priority: String,
    /// Order within its priority.
    pub place: u64,
    pub enqueued_ms: EpochMs,
    pub max_queue_ms: Option<i64>,
    pub est_ms: i64,
    /// The DUTs it waits for.
    pub duts: Vec<String>,
    /// The launch (`run::LaunchRequest`) as JSON, started as it is when its turn comes.
    pub request_json: String,
    /// Who queued it: `launch` (an operator) or `schedule:<id>`.
    pub origin: String,
}

/// A stored schedule: its definition as JSON (`api::schedules::ScheduleDef`) and where
/// its calendar stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub id: String,
    pub name: String,
    pub def_json: String,
    pub paused: bool,
    pub created_ms: EpochMs,
    /// The last firing's due time, or when the schedule was saved or resumed: firings
    /// after it are still to come.
    pub since_ms: EpochMs,
    /// Runs fired so far (the repeat count's measure).
    pub fired: u32,
    /// A catch-up run waiting for the window to open.
    pub pending_ms: Option<EpochMs>,
    pub last_run_id: Option<String>,
}

/// One line of a schedule's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FiringRecord {
    pub schedule_id: String,
    /// When the firing was due (none for a note about missed firings).
    pub due_ms: Option<EpochMs>,
    pub at_ms: EpochMs,
    /// `fired`, `caught_up`, `skipped`, `missed`, `failed`.
    pub kind: String,
    pub run_id: Option<String>,
    pub note: Option<String>,
}
