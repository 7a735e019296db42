//! An occurrence's folder and files: its params file (`TESTBAY_PARAMS`), the names of its
//! phase logs, and making its folders when `run::prepare` has not.

use serde_json::Value;

use super::broker::Holding;
use crate::exec;
use crate::outcome::Phase;
use crate::pack::TaskDef;
use crate::plan::DutTarget;
use crate::store::TaskKind;

/// Name of an occurrence's params file (`TESTBAY_PARAMS`), in its folder.
pub(super) const PARAMS_FILE: &str = "params.json";

/// Name of a phase's log file in the occurrence's folder.
pub(super) fn log_name(phase: Phase) -> String {
    format!("{}.log", phase.as_str())
}

/// Log files of the phases `def` has.
pub(super) fn log_names(def: &TaskDef) -> Vec<String> {
    [
        def.setup.as_ref().map(|_| Phase::Setup),
        Some(Phase::Main),
        def.teardown.as_ref().map(|_| Phase::Teardown),
    ]
    .into_iter()
    .flatten()
    .map(log_name)
    .collect()
}

/// The task's `params.json` (`TESTBAY_PARAMS`), written straight from the run's data.
#[derive(serde::Serialize)]
pub(super) struct ParamsFile<'a> {
    pub(super) run_id: &'a str,
    pub(super) task: &'a str,
    pub(super) kind: TaskKind,
    pub(super) group: Option<&'a str>,
    pub(super) lane: &'a str,
    pub(super) dut: Option<&'a DutTarget>,
    pub(super) ats: Option<&'a str>,
    pub(super) rack: Option<&'a str>,
    pub(super) slot: Option<u32>,
    pub(super) global_params: &'a Value,
    pub(super) task_params: &'a TaskDef,
    pub(super) reservations: &'a [Holding],
}

/// The occurrence's folder and its `artifacts/` (two `mkdir`s in the usual case; the lane
/// folder is made on first use).
fn make_task_dirs(occ_dir: &std::path::Path, artifacts: &std::path::Path) -> std::io::Result<()> {
    let mkdir = |p: &std::path::Path| match std::fs::create_dir(p) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.is_dir() => Ok(()),
        r => r,
    };
    match mkdir(occ_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(occ_dir)?,
        r => r?,
    }
    mkdir(artifacts)
}

/// The occurrence's params file, empty, for writing. Usually its folder, `artifacts/` and
/// the empty file are there already (`run::prepare`); else the folders are made first.
pub(super) fn open_params_file(
    occ_dir: &std::path::Path,
    artifacts: &std::path::Path,
    params_file: &std::path::Path,
) -> std::io::Result<std::fs::File> {
    match exec::create_empty(params_file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            make_task_dirs(occ_dir, artifacts)?;
            exec::create_empty(params_file)
        }
        Ok(f) if !artifacts.is_dir() => {
            make_task_dirs(occ_dir, artifacts)?;
            Ok(f)
        }
        made => made,
    }
}
