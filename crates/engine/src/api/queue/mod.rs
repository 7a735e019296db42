//! The run queue (StormTest's Idle runs): a valid launch whose DUTs are busy waits here
//! with status `queued` instead of being refused or stalling, and starts the moment its
//! DUTs free, highest priority first, first come first served within a priority
//! ([`crate::queue`] decides the order).
//!
//! [`RunQueueService`] keeps the queue in memory and in the store (`run_queue`, so it
//! survives a restart), and one tokio task that starts runs: it wakes on the book's
//! events (a DUT released, a lease lapsed, a hold ended), on the end of a run that held
//! DUTs, on operators' changes, on the next `max_queue_time` deadline, and 30 s after the
//! dispatch threshold held runs back. It never polls the book.
//!
//! A DUT is free when the book has nothing on it now and no run this console started
//! still targets it (a run holds its DUTs from its lane's first task; between its start
//! and that claim the queue counts the DUT as taken). Only a console that owns the book
//! queues for DUTs; one without a lab or without the book starts runs at once, held back
//! only by the dispatch threshold. Lab resources other than DUTs are not queued for:
//! a run's tasks wait for them in its delay queue.
//!
//! The dispatch threshold (`dispatch_cpu_threshold` in `settings.yaml`, StormTest 6.2):
//! while the host's CPU use is above it nothing starts; the queue says why.
//!
//! Health checks may keep DUTs out of service: [`RunQueueService::set_out_of_service`]
//! takes the predicate; a run wanting such a DUT keeps waiting (and its reason says so).

pub mod cpu;
mod handlers;
mod service;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::clock::EpochMs;
pub use crate::queue::{Move, Priority};

pub use cpu::{CpuProbe, ProcStat};
pub use service::{
    OutOfService, QueueConfig, QueuedLaunchInfo, ReservationSource, RunQueueService,
};

/// How long the dispatch threshold holds runs back before the next try.
pub const DISPATCH_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// Most a launch may wait in the queue (`max_queue_time_s`): 30 days.
pub const MAX_QUEUE_TIME_S: f64 = 30.0 * 86_400.0;

/// The queue as an operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct QueueView {
    pub now: EpochMs,
    /// Why nothing starts now, for every run (the dispatch threshold), if so.
    pub held_back: Option<String>,
    /// In the order they start.
    pub runs: Vec<QueuedRunView>,
}

/// One queued run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct QueuedRunView {
    pub run_id: String,
    pub pack: String,
    pub priority: Priority,
    /// 1 for the next to start.
    pub position: u32,
    pub duts: Vec<String>,
    pub enqueued_ms: EpochMs,
    /// When it should start, from the book and the runs ahead of it.
    pub est_start_ms: EpochMs,
    /// What it waits for (who holds its DUTs and until when, a run ahead of it, the
    /// dispatch threshold).
    pub waits_for: String,
    /// It ends `could_not_start` at this time if still queued.
    pub give_up_ms: Option<EpochMs>,
    /// `launch` (an operator) or `schedule:<id>`.
    pub origin: String,
}

/// A queue change, pushed to every subscriber (the Queue view reloads on it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct QueueChange {
    pub run_id: String,
    pub change: QueueChangeKind,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum QueueChangeKind {
    Queued,
    Started,
    Moved,
    Cancelled,
    /// Queued past its `max_queue_time`: ended `could_not_start`.
    GaveUp,
}
