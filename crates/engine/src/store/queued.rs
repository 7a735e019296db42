//! A queued run as the store keeps it (`api::queue` owns the queue; the store only keeps
//! it across restarts).

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
