//! Recovery at console start: the runs a console that died left unfinished are found
//! (the store), their leftover processes killed (`exec::reap`), then the runs marked
//! interrupted (the store) and the task folders prepared for them that were never used
//! removed.

use std::path::Path;

use super::remove_unused_folders;
use crate::clock::EpochMs;
use crate::exec::reap::kill_run_leftovers;
use crate::store::{RecoveryReport, Store, StoreError};

/// Recover the runs of consoles that died, on `store` with its runs' folders in
/// `data_dir/runs`. Processes are killed before the runs are marked, so a store that
/// cannot write (a full disk) still has them killed.
pub fn recover_interrupted(
    store: &dyn Store,
    data_dir: &Path,
    now: EpochMs,
) -> Result<RecoveryReport, StoreError> {
    let runs = store.interrupted_runs()?;
    if runs.is_empty() {
        return Ok(RecoveryReport::default());
    }
    // Every process that carries one of these runs' TESTBAY_RUN_ID, whatever its group:
    // recorded groups, grandchildren, even ones that called setsid.
    let killed = kill_run_leftovers(&runs);
    let mut report = store.mark_interrupted(&runs, now)?;
    report.killed_processes = killed;
    for id in &report.interrupted_runs {
        remove_unused_folders(&data_dir.join("runs").join(id));
    }
    Ok(report)
}
