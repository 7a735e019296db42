//! Launching a stored run again: the same pack version (its snapshot), groups, ATS, DUTs,
//! parameters and modes, checked against the lab and the book as they are now, like any
//! launch. "Rerun failed" narrows it to the tests that failed (on any of its DUTs) and the
//! tests they need as prereqs, in the groups that hold them, on every DUT of the run.

use std::path::PathBuf;

use super::error::{run_error, store_error};
use super::local::blocking;
use super::{ApiError, ErrorCode, LocalConsole, Response};
use crate::outcome::ABORTED;
use crate::pack::LoadedPack;
use crate::run::LaunchRequest;
use crate::store::TaskKind;

impl LocalConsole {
    pub(super) async fn relaunch(
        &self,
        run_id: String,
        only_failed: bool,
    ) -> Result<Response, ApiError> {
        let store = self.store.clone();
        let id = run_id.clone();
        let (old, tasks) = blocking(move || {
            let run = store.get_run(&id).map_err(store_error)?;
            let tasks = if only_failed {
                store.run_tasks(&id).map_err(store_error)?
            } else {
                Vec::new()
            };
            Ok((run, tasks))
        })
        .await?;
        let snapshot = old
            .snapshot_dir
            .as_deref()
            .map(PathBuf::from)
            .filter(|d| d.join("pack.yaml").is_file())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Conflict,
                    format!(
                        "run {run_id} cannot be launched again: the copy of pack {} {} it ran from is gone",
                        old.pack_name, old.pack_version
                    ),
                )
            })?;
        let pack = crate::pack::load(&snapshot).map_err(|e| run_error(e.into()))?;
        let (groups, tests) = if only_failed {
            let failed: Vec<String> = tasks
                .iter()
                .filter(|t| {
                    t.kind == TaskKind::Test
                        && t.failure == Some(true)
                        && t.result.as_deref() != Some(ABORTED)
                })
                .map(|t| t.task.clone())
                .collect();
            if failed.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("run {run_id} has no failed test to run again"),
                ));
            }
            let tests = with_prereqs(&pack, failed);
            let groups: Vec<String> = if old.groups.is_empty() {
                pack.def.groups.keys().cloned().collect()
            } else {
                old.groups.clone()
            }
            .into_iter()
            .filter(|g| {
                pack.def
                    .groups
                    .get(g)
                    .is_some_and(|gd| gd.tests.iter().any(|t| tests.contains(t)))
            })
            .collect();
            (groups, Some(tests))
        } else {
            (old.groups.clone(), None)
        };
        let duts = old
            .duts
            .iter()
            .map(|d| match &d.model {
                Some(m) => format!("{}:{m}", d.name),
                None => d.name.clone(),
            })
            .map(|named| self.dut_target(named))
            .collect::<Result<Vec<_>, _>>()?;
        let ats = self.launch_ats(old.ats.clone(), &duts)?;
        self.check_can_reserve(&pack, &groups, !duts.is_empty())?;
        let unreserved = self.unreserved(&pack, &groups, &duts);
        // The run's parameters as it took them: every key, its modes included.
        let params = old.params.as_object().cloned().unwrap_or_default();
        let req = LaunchRequest {
            pack_dir: snapshot.display().to_string(),
            groups,
            ats,
            duts,
            params,
            resource_mode: None,
            coverage_mode: None,
            tests,
        };
        let new_id = self.runs.launch(req).map_err(run_error)?;
        Ok(Response::Relaunch {
            run_id: new_id,
            from: run_id,
            unreserved,
        })
    }
}

/// `tests` and every test they need as a prereq, transitively, in the order found.
fn with_prereqs(pack: &LoadedPack, tests: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut todo = tests;
    while let Some(t) = todo.pop() {
        if out.contains(&t) {
            continue;
        }
        if let Some(task) = pack.tasks.get(&t) {
            todo.extend(task.def.prereq_tasks.iter().cloned());
        }
        out.push(t);
    }
    out
}
