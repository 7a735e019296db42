//! Retention's storage: which stored runs a policy removes, removing them, marking runs
//! `keep`, the database's size and giving freed pages back to the file system. A handle
//! of its own ([`super::Store::open_retention_store`]) on a connection of its own, so a
//! long prune never holds the store's other connections.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::Result;
use crate::clock::EpochMs;

/// A run a policy removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct PruneCandidate {
    pub run_id: String,
    pub pack: String,
    pub created_ms: EpochMs,
    /// `age` (older than the policy's days) or `count` (beyond the pack's newest runs).
    pub why: String,
}

/// The database's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct DbSize {
    /// The database file and its write-ahead log, in bytes.
    #[ts(type = "number")]
    pub file_bytes: u64,
    /// Of which free pages (given back by [`RetentionStore::reclaim`]).
    #[ts(type = "number")]
    pub free_bytes: u64,
}

pub trait RetentionStore: Send {
    /// Runs a policy removes, oldest first, at most `limit`: finished runs (not queued,
    /// running or stalled) created before `older_than` or beyond their pack's newest
    /// `beyond` runs (every run of the pack counted), never a pinned baseline's run nor
    /// one marked keep.
    fn candidates(
        &self,
        older_than: Option<EpochMs>,
        beyond: Option<u32>,
        limit: u32,
    ) -> Result<Vec<PruneCandidate>>;

    /// Remove one run and everything stored of it (task results, sub-results, attempts,
    /// measurements, sections, tallies), all or nothing, in a transaction of its own, so a
    /// running run's writes wait at most for one run's removal. Refused (false) when the
    /// run is no longer removable (pinned, kept, or not finished) by the time it is
    /// removed.
    fn remove_run(&self, run_id: &str) -> Result<bool>;

    /// Mark a run keep (never pruned) or not; an unknown run is
    /// [`super::StoreError::RunNotFound`].
    fn set_keep(&self, run_id: &str, keep: bool, now: EpochMs) -> Result<()>;

    /// Whether a run is marked keep.
    fn is_kept(&self, run_id: &str) -> Result<bool>;

    /// The database's size now.
    fn size(&self) -> Result<DbSize>;

    /// Give free pages back to the file system; the bytes the file shrank by.
    fn reclaim(&self) -> Result<u64>;
}
