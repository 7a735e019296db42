//! Launching a stored run again: the same pack version (its snapshot), groups, ATS, DUTs,
//! parameters and modes, checked against the lab and the book as they are now, like any
//! launch.

use std::path::PathBuf;

use super::error::{run_error, store_error};
use super::local::blocking;
use super::{ApiError, ErrorCode, LocalConsole, Response};
use crate::run::LaunchRequest;

impl LocalConsole {
    pub(super) async fn relaunch(&self, run_id: String) -> Result<Response, ApiError> {
        let store = self.store.clone();
        let id = run_id.clone();
        let old = blocking(move || store.get_run(&id).map_err(store_error)).await?;
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
        self.check_can_reserve(&pack, &old.groups, !duts.is_empty())?;
        let unreserved = self.unreserved(&pack, &old.groups, &duts);
        // The run's parameters as it took them: every key, its modes included.
        let params = old.params.as_object().cloned().unwrap_or_default();
        let req = LaunchRequest {
            pack_dir: snapshot.display().to_string(),
            groups: old.groups.clone(),
            ats,
            duts,
            params,
            resource_mode: None,
            coverage_mode: None,
        };
        let new_id = self.runs.launch(req).map_err(run_error)?;
        Ok(Response::Relaunch {
            run_id: new_id,
            from: run_id,
            unreserved,
        })
    }
}
