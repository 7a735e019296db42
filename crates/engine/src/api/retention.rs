//! Retention: the policy of `<data_dir>/settings.yaml` (`retention: {days,
//! runs_per_pack}`), pruning what it removes (each run's rows, then its folder under
//! `runs/`: logs, artifacts, snapshot), the space that gives back, runs marked keep, and
//! the data directory's size. A serving console prunes once a day
//! ([`LocalConsole::shared`]); `testbay results prune` and the UI prune on demand.
//!
//! A prune never touches a run that is not finished, a pinned baseline's run or a run
//! marked keep (the store checks again as it removes each run), and removes one run per
//! transaction, so a running run's writes wait at most for one run's removal. One prune
//! at a time per data directory in a process; at most [`MAX_PRUNE_RUNS`] runs per prune (the next one goes on).

use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::error::store_error;
use super::local::blocking;
use super::{ApiError, ErrorCode, LocalConsole, Response};
use crate::clock::EpochMs;
use crate::store::retention::PruneCandidate;
use crate::store::Store;
use testbay_core::settings::{self, RetentionPolicy};

/// Most runs one prune removes.
pub const MAX_PRUNE_RUNS: u32 = 10_000;
/// Most files the size display walks below `runs/` (then it says `partial`).
const MAX_WALK_ENTRIES: usize = 2_000_000;
/// How often a serving console prunes.
pub const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Data directories a prune is going on in this process.
static PRUNING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// One prune at a time per data directory: held while it goes.
struct PruneLock(PathBuf);

impl PruneLock {
    fn take(data_dir: &Path) -> Option<Self> {
        let mut going = PRUNING.lock().unwrap_or_else(|p| p.into_inner());
        if going.iter().any(|d| d == data_dir) {
            return None;
        }
        going.push(data_dir.to_path_buf());
        Some(Self(data_dir.to_path_buf()))
    }
}

impl Drop for PruneLock {
    fn drop(&mut self) {
        let mut going = PRUNING.lock().unwrap_or_else(|p| p.into_inner());
        going.retain(|d| d != &self.0);
    }
}

/// What a prune removed, or would remove (`dry_run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct PruneReport {
    pub dry_run: bool,
    pub policy: RetentionPolicy,
    /// The runs removed (or that would be), oldest first.
    pub runs: Vec<PruneCandidate>,
    /// Bytes of their folders (logs, artifacts, snapshots) removed.
    #[ts(type = "number")]
    pub files_bytes: u64,
    /// Bytes the database file shrank by (none in a dry run).
    #[ts(type = "number")]
    pub database_bytes: u64,
    /// More runs remain for the next prune ([`MAX_PRUNE_RUNS`] reached).
    pub more: bool,
}

/// The data directory's size, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct DataUsage {
    pub data_dir: String,
    /// The database file and its write-ahead log.
    #[ts(type = "number")]
    pub database_bytes: u64,
    /// Of which free pages, given back at the next prune.
    #[ts(type = "number")]
    pub database_free_bytes: u64,
    /// Task logs (`*.log` below `runs/`).
    #[ts(type = "number")]
    pub logs_bytes: u64,
    /// Files tasks left in their `artifacts/` folders.
    #[ts(type = "number")]
    pub artifacts_bytes: u64,
    /// Everything else below `runs/`: pack snapshots, parameter and result files.
    #[ts(type = "number")]
    pub other_bytes: u64,
    /// Folders below `runs/`.
    pub run_folders: u32,
    /// The walk stopped at its bound: the figures are at least these.
    pub partial: bool,
    pub policy: RetentionPolicy,
}

/// A run's keep mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RunKeep {
    pub run_id: String,
    pub keep: bool,
}

fn policy(data_dir: &Path) -> Result<RetentionPolicy, ApiError> {
    settings::load(data_dir).map(|s| s.retention).map_err(|d| {
        let first = d.first().map(|d| d.to_string()).unwrap_or_default();
        ApiError::invalid(format!("settings are not valid: {first}")).with_diagnostics(d)
    })
}

/// A run's folder, when its id is one plain path segment.
fn run_dir(runs_dir: &Path, run_id: &str) -> Option<PathBuf> {
    let mut c = Path::new(run_id).components();
    match (c.next(), c.next()) {
        (Some(Component::Normal(_)), None) => Some(runs_dir.join(run_id)),
        _ => None,
    }
}

/// Bytes of the regular files below `dir` (symbolic links not followed).
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

/// Apply the policy of `data_dir`'s settings at `now`: remove (or list, `dry_run`) what
/// it removes, then give the database's free pages back.
pub fn prune(
    store: &dyn Store,
    data_dir: &Path,
    now: EpochMs,
    dry_run: bool,
) -> Result<PruneReport, ApiError> {
    let Some(_one) = PruneLock::take(data_dir) else {
        return Err(ApiError::new(ErrorCode::Busy, "a prune is going already"));
    };
    let policy = policy(data_dir)?;
    let runs_dir = data_dir.join("runs");
    let handle = store.open_retention_store().map_err(store_error)?;
    let older_than = policy
        .days
        .map(|d| now.saturating_sub(i64::from(d) * 86_400_000));
    let mut found = handle
        .candidates(older_than, policy.runs_per_pack, MAX_PRUNE_RUNS + 1)
        .map_err(store_error)?;
    let more = found.len() > MAX_PRUNE_RUNS as usize;
    found.truncate(MAX_PRUNE_RUNS as usize);
    let mut report = PruneReport {
        dry_run,
        policy,
        runs: Vec::new(),
        files_bytes: 0,
        database_bytes: 0,
        more,
    };
    for c in found {
        let dir = run_dir(&runs_dir, &c.run_id);
        let bytes = dir.as_deref().map_or(0, tree_bytes);
        if !dry_run {
            if !handle.remove_run(&c.run_id).map_err(store_error)? {
                continue;
            }
            if let Some(dir) = &dir {
                if let Err(e) = std::fs::remove_dir_all(dir) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a pruned run's folder");
                        continue;
                    }
                }
            }
        }
        report.files_bytes += bytes;
        report.runs.push(c);
    }
    if !dry_run && !report.runs.is_empty() {
        report.database_bytes = handle.reclaim().map_err(store_error)?;
        tracing::info!(
            runs = report.runs.len(),
            files_bytes = report.files_bytes,
            database_bytes = report.database_bytes,
            "pruned stored runs"
        );
    }
    Ok(report)
}

/// The data directory's size by kind.
pub fn usage(store: &dyn Store, data_dir: &Path) -> Result<DataUsage, ApiError> {
    let policy = policy(data_dir)?;
    let size = store
        .open_retention_store()
        .and_then(|h| h.size())
        .map_err(store_error)?;
    let mut u = DataUsage {
        data_dir: data_dir.display().to_string(),
        database_bytes: size.file_bytes,
        database_free_bytes: size.free_bytes,
        logs_bytes: 0,
        artifacts_bytes: 0,
        other_bytes: 0,
        run_folders: 0,
        partial: false,
        policy,
    };
    let runs_dir = data_dir.join("runs");
    u.run_folders = std::fs::read_dir(&runs_dir)
        .map(|d| d.flatten().count() as u32)
        .unwrap_or(0);
    let mut stack = vec![(runs_dir, false)];
    let mut seen = 0usize;
    while let Some((d, in_artifacts)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_WALK_ENTRIES {
                u.partial = true;
                return Ok(u);
            }
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push((e.path(), in_artifacts || e.file_name() == "artifacts"));
            } else if t.is_file() {
                let n = e.metadata().map(|m| m.len()).unwrap_or(0);
                if in_artifacts {
                    u.artifacts_bytes += n;
                } else if e.path().extension().is_some_and(|x| x == "log") {
                    u.logs_bytes += n;
                } else {
                    u.other_bytes += n;
                }
            }
        }
    }
    Ok(u)
}

impl LocalConsole {
    pub(super) async fn prune(&self, dry_run: bool) -> Result<Response, ApiError> {
        let store = self.store.clone();
        let dir = self.paths.data_dir.clone();
        let now = self.clock.now_ms();
        let r = blocking(move || prune(store.as_ref(), &dir, now, dry_run)).await?;
        Ok(Response::Prune(r))
    }

    pub(super) async fn data_usage(&self) -> Result<Response, ApiError> {
        let store = self.store.clone();
        let dir = self.paths.data_dir.clone();
        let u = blocking(move || usage(store.as_ref(), &dir)).await?;
        Ok(Response::DataUsage(u))
    }

    pub(super) async fn run_keep(
        &self,
        run_id: String,
        keep: Option<bool>,
    ) -> Result<Response, ApiError> {
        let store = self.store.clone();
        let now = self.clock.now_ms();
        let r = blocking(move || {
            let h = store.open_retention_store().map_err(store_error)?;
            match keep {
                Some(k) => h.set_keep(&run_id, k, now).map_err(store_error)?,
                None => {
                    store.get_run(&run_id).map_err(store_error)?;
                }
            }
            let keep = h.is_kept(&run_id).map_err(store_error)?;
            Ok(RunKeep { run_id, keep })
        })
        .await?;
        Ok(match keep {
            Some(_) => Response::SetRunKeep(r),
            None => Response::RunKeep(r),
        })
    }
}
