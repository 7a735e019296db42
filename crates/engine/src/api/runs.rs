//! Handlers for runs going now: the launch (every rule a launch must pass, checked once,
//! here, for every transport), stopping a run, and the live views.

use super::error::{bound_error, run_error, store_error};
use super::local::blocking;
use super::queue::{QueuedLaunchInfo, MAX_QUEUE_TIME_S};
use super::Priority;
use super::{ApiError, ErrorCode, LaunchSpec, LocalConsole, Request, Response};
use std::path::PathBuf;

use crate::bounds;
use crate::diag::Diagnostic;
use crate::pack::LoadedPack;
use crate::plan::DutTarget;
use crate::reserve::{resources_named, BookHandle};
use crate::run::LaunchRequest;

impl LocalConsole {
    /// Refused before anything is stored: a request over its size limits (`too_large`),
    /// an unknown pack or DUT, an unknown group, a parameter the pack's parameters refuse
    /// (of another type than its default, out of range, an unknown key), an ATS that
    /// does not hold the DUTs (`invalid_request`), a launch expanding to more tasks than
    /// a run holds (`too_large`).
    pub(super) async fn launch(&self, spec: LaunchSpec) -> Result<Response, ApiError> {
        self.launch_from(spec, "launch", false).await
    }

    /// A launch from `origin` (`launch`, `schedule:<id>`); `through_queue`: always
    /// through the run queue and its dispatch threshold (a scheduled firing), else started
    /// at once when its DUTs are free.
    pub(super) async fn launch_from(
        &self,
        spec: LaunchSpec,
        origin: &str,
        through_queue: bool,
    ) -> Result<Response, ApiError> {
        bounds::check_request_size(spec.groups.len(), spec.duts.len(), &spec.params)
            .map_err(bound_error)?;
        let pack = self.find_pack(&spec.pack)?;
        check_groups(&pack, &spec.groups)?;
        check_params(&pack, &spec)?;
        let duts = spec
            .duts
            .into_iter()
            .map(|name| self.dut_target(name))
            .collect::<Result<Vec<_>, _>>()?;
        let ats = self.launch_ats(spec.ats, &duts)?;
        if !spec.force {
            self.check_health(&duts)?;
        }
        crate::pack::check_task_count(
            &pack,
            &spec.groups,
            duts.len(),
            &spec.params,
            spec.coverage_mode,
        )
        .map_err(bound_error)?;
        self.check_can_reserve(&pack, &spec.groups, !duts.is_empty())?;
        let unreserved = self.unreserved(&pack, &spec.groups, &duts);
        let max_queue_ms = queue_time_ms(spec.max_queue_time_s)?;
        let info = QueuedLaunchInfo {
            pack_name: pack.def.name.clone(),
            pack_version: pack.def.version.clone(),
            content_hash: pack.content_hash.clone(),
            est_ms: estimated_ms(&pack, &spec.groups),
            priority: spec.priority.unwrap_or(Priority::High),
            max_queue_ms,
            origin: origin.into(),
            through_queue,
            force: spec.force,
        };
        let req = LaunchRequest {
            pack_dir: pack.dir.display().to_string(),
            groups: spec.groups,
            ats,
            duts,
            params: spec.params,
            resource_mode: spec.resource_mode,
            coverage_mode: spec.coverage_mode,
            tests: None,
        };
        let (run_id, queued) = self.queue.launch(req, info)?;
        Ok(Response::Launch {
            run_id,
            unreserved,
            queued,
        })
    }

    /// What a launch uses without reserving it: its DUTs, then the lab resources its
    /// tasks name, when the console has no lab file or reserves nothing; else none.
    pub(super) fn unreserved(
        &self,
        pack: &LoadedPack,
        groups: &[String],
        duts: &[DutTarget],
    ) -> Vec<String> {
        if self.reserve && self.paths.lab_file.is_some() {
            return Vec::new();
        }
        duts.iter()
            .map(|d| d.name.clone())
            .chain(resources_named(pack, groups))
            .collect()
    }

    /// A console with a lab file runs nothing that needs a DUT or a lab resource without
    /// reserving it. It reserves through the book it owns; when another process owns the
    /// book (a second console on the same data directory) or the book could not be
    /// opened, such a launch is refused with the reason, and runs that need nothing
    /// reserved still go. A console without a lab file has nothing to reserve against,
    /// and one opened not to reserve does not: their runs get what their tasks ask for.
    pub(super) fn check_can_reserve(
        &self,
        pack: &LoadedPack,
        groups: &[String],
        has_duts: bool,
    ) -> Result<(), ApiError> {
        if self.paths.lab_file.is_none() || !self.reserve {
            return Ok(());
        }
        let resources = resources_named(pack, groups);
        if !has_duts && resources.is_empty() {
            return Ok(());
        }
        let book = self.book()?;
        if matches!(&*book, BookHandle::Owner(_)) {
            return Ok(());
        }
        let what = if has_duts {
            "its DUTs".to_string()
        } else {
            resources.into_iter().collect::<Vec<_>>().join(", ")
        };
        let owner = self
            .store
            .book_owner()
            .map(|o| format!("is owned by {o}"))
            .unwrap_or_else(|| "was owned by another process when this console started".into());
        Err(ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "cannot reserve {what}: the reservation book of {} {owner}; launch from that console, or close it and restart this one",
                self.paths.data_dir.display()
            ),
        ))
    }

    /// The ATS of a launch (see [`Lab::launch_ats`]): checked against the lab when the
    /// console has a lab file; without one, any name is taken as given.
    pub(super) fn launch_ats(
        &self,
        ats: Option<String>,
        duts: &[DutTarget],
    ) -> Result<Option<String>, ApiError> {
        if self.paths.lab_file.is_none() || (ats.is_none() && duts.is_empty()) {
            return Ok(ats);
        }
        self.lab()?
            .launch_ats(ats.as_deref(), duts)
            .map_err(|e| ApiError::invalid(format!("ats: {e}")))
    }

    /// A DUT named at launch (`NAME`, or `NAME:MODEL` naming its model), with its rack
    /// and slot, and its model unless named, from the lab. A console without a lab file
    /// takes any name as a lane of its own.
    pub(super) fn dut_target(&self, named: String) -> Result<DutTarget, ApiError> {
        let (name, model) = match named.split_once(':') {
            Some((n, m)) => (n.to_string(), Some(m.to_string()).filter(|m| !m.is_empty())),
            None => (named, None),
        };
        if name.is_empty() {
            return Err(ApiError::invalid("a DUT needs a name (NAME or NAME:MODEL)"));
        }
        if self.lab.is_none() && self.paths.lab_file.is_none() {
            return Ok(DutTarget {
                name,
                model,
                rack: None,
                slot: None,
            });
        }
        let lab = self.lab()?;
        let d = lab.dut(&name).ok_or_else(|| {
            ApiError::not_found(format!(
                "no DUT named `{name}` in the lab {}",
                lab.file.display()
            ))
        })?;
        if d.offline {
            return Err(ApiError::new(
                ErrorCode::Busy,
                format!("DUT {name} is offline"),
            ));
        }
        Ok(DutTarget {
            name,
            model: model.or_else(|| Some(d.model.clone()).filter(|m| !m.is_empty())),
            rack: d.location.as_ref().map(|l| l.rack.clone()),
            slot: d.location.as_ref().map(|l| l.slot),
        })
    }

    /// Stop a run: the first stop is graceful, a second one stops it at once (see
    /// [`crate::run::RunManager::stop`]).
    pub(super) async fn stop_run(&self, run_id: String) -> Result<Response, ApiError> {
        // A run whose end is stored is over, even if its driver is still winding up.
        let store = self.store.clone();
        let id = run_id.clone();
        let status = blocking(move || store.get_run(&id).map_err(store_error))
            .await?
            .status;
        if status.is_finished() {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("run {run_id} is already {}", status.as_str()),
            ));
        }
        if !self.runs_here(&run_id) {
            if let Some(relay) = self.relay.get() {
                let id = run_id.clone();
                return relay
                    .forward("stop_run", Some(&id), Request::StopRun { run_id })
                    .await;
            }
        }
        self.runs.stop(&run_id).map_err(run_error)?;
        Ok(Response::StopRun { run_id })
    }

    pub(super) fn active_runs(&self) -> Response {
        Response::ActiveRuns(
            self.runs
                .active_runs()
                .iter()
                .filter_map(|id| self.runs.view(id))
                .collect(),
        )
    }

    pub(super) fn run_view(&self, run_id: &str) -> Result<Response, ApiError> {
        match self.runs.view(run_id) {
            Some(v) => Ok(Response::RunView(Box::new(v))),
            None => Err(ApiError::not_found(format!(
                "run {run_id} is not live in this console; its stored results are at get_run"
            ))),
        }
    }
}

/// `max_queue_time_s` in milliseconds: more than 0, at most [`MAX_QUEUE_TIME_S`].
fn queue_time_ms(s: Option<f64>) -> Result<Option<i64>, ApiError> {
    match s {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s <= MAX_QUEUE_TIME_S => {
            Ok(Some((s * 1000.0).round().max(1.0) as i64))
        }
        Some(s) => Err(ApiError::invalid(format!(
            "max_queue_time_s: must be more than 0 and at most {MAX_QUEUE_TIME_S} seconds (30 days), got {s}"
        ))),
    }
}

/// The estimated time of a run of `groups` (every group when empty): the sum of its
/// tasks' `est_task_time`, in milliseconds (for the queue's estimated starts).
fn estimated_ms(pack: &LoadedPack, groups: &[String]) -> i64 {
    let chosen: Vec<&String> = if groups.is_empty() {
        pack.def.groups.keys().collect()
    } else {
        groups.iter().collect()
    };
    let tasks = pack.def.setup.iter().chain(&pack.def.teardown).chain(
        chosen
            .into_iter()
            .filter_map(|g| pack.def.groups.get(g))
            .flat_map(|g| g.setup.iter().chain(&g.tests).chain(&g.teardown)),
    );
    let secs: f64 = tasks
        .filter_map(|t| pack.tasks.get(t))
        .map(|t| t.def.est_task_time.max(0.0))
        .sum();
    (secs * 1000.0).min(i64::MAX as f64) as i64
}

/// Every group a launch names is a group of the pack.
fn check_groups(pack: &LoadedPack, groups: &[String]) -> Result<(), ApiError> {
    let unknown: Vec<&str> = groups
        .iter()
        .filter(|g| !pack.def.groups.contains_key(g.as_str()))
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let known: Vec<&str> = pack.def.groups.keys().map(String::as_str).collect();
    Err(ApiError::invalid(format!(
        "groups: pack {} has no group {} (its groups: {})",
        pack.def.name,
        unknown
            .iter()
            .map(|g| format!("`{g}`"))
            .collect::<Vec<_>>()
            .join(", "),
        known.join(", ")
    )))
}

/// The launch's parameters as the run would take them (see
/// [`crate::params::effective_params`]); every problem is a diagnostic whose key path is
/// `params.<key>`, so a form marks the field.
fn check_params(pack: &LoadedPack, spec: &LaunchSpec) -> Result<(), ApiError> {
    let mut overrides = spec.params.clone();
    if let Some(m) = spec.resource_mode {
        overrides.insert(
            "resource_mode".into(),
            serde_json::to_value(m).expect("enum"),
        );
    }
    if let Some(m) = spec.coverage_mode {
        overrides.insert(
            "coverage_mode".into(),
            serde_json::to_value(m).expect("enum"),
        );
    }
    let Err(errors) = crate::params::effective_params(&pack.def.params, &overrides) else {
        return Ok(());
    };
    let diagnostics: Vec<Diagnostic> = errors
        .iter()
        .map(|e| Diagnostic {
            file: PathBuf::from("launch"),
            line: None,
            column: None,
            key_path: Some(match e.key().map(top_key) {
                Some("params") | Some("") | None => "params".into(),
                Some(k) => format!("params.{k}"),
            }),
            message: e.to_string(),
        })
        .collect();
    let message = format!(
        "params: {}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    Err(ApiError::invalid(message).with_diagnostics(diagnostics))
}

/// The top-level key of a key path (`channel_list` of `channel_list[1]`).
fn top_key(path: &str) -> &str {
    let path = path.strip_prefix("params.").unwrap_or(path);
    path.split(['.', '[']).next().unwrap_or(path)
}
