//! Handlers for stored runs: the list, one run with a page of its tasks, a run exported
//! as a report.

use std::path::Path;

use super::error::store_error;
use super::local::blocking;
use super::{artifacts, ApiError, ExportFile, LocalConsole, Response, RunDetail};
use crate::bounds;
use crate::report::{self, ReportFormat};
use crate::store::RunQuery;

impl LocalConsole {
    pub(super) async fn list_runs(&self, q: RunQuery) -> Result<Response, ApiError> {
        let store = self.store.clone();
        let page = blocking(move || store.list_runs(&q).map_err(store_error)).await?;
        Ok(Response::ListRuns(page))
    }

    pub(super) async fn get_run(
        &self,
        run_id: String,
        offset: Option<u32>,
        limit: Option<u32>,
    ) -> Result<Response, ApiError> {
        let store = self.store.clone();
        let id = run_id.clone();
        let runs_dir = self.paths.runs_dir();
        let (run, page) = blocking(move || {
            let run = store.get_run(&id).map_err(store_error)?;
            let tasks = store.run_tasks(&id).map_err(store_error)?;
            Ok((run, task_page(tasks, offset, limit, &runs_dir)))
        })
        .await?;
        let live = self.runs.view(&run_id);
        let launched_by = match self.access.clone() {
            Some(access) => {
                let id = run_id.clone();
                blocking(move || access.launched_by(&id).map_err(store_error)).await?
            }
            None => None,
        };
        Ok(Response::GetRun(Box::new(RunDetail {
            launched_by,
            run,
            tasks: page.tasks,
            tasks_total: page.total,
            tasks_offset: page.offset,
            next_offset: page.next_offset,
            live,
        })))
    }

    pub(super) async fn export(
        &self,
        run_id: String,
        format: ReportFormat,
        new_failures_since: Option<String>,
    ) -> Result<Response, ApiError> {
        let store = self.store.clone();
        blocking(move || {
            let run = store.get_run(&run_id).map_err(store_error)?;
            let mut tasks = store.run_tasks(&run_id).map_err(store_error)?;
            if let Some(base) = &new_failures_since {
                let base_run = store.get_run(base).map_err(store_error)?;
                if base_run.pack_name != run.pack_name {
                    return Err(ApiError::invalid(format!(
                        "new_failures_since: run {base} is of pack {}, not {}",
                        base_run.pack_name, run.pack_name
                    )));
                }
                let base_tasks = store.run_tasks(base).map_err(store_error)?;
                let c = crate::analysis::compare_runs(
                    &base_run,
                    &base_tasks,
                    &run,
                    &tasks,
                    &Default::default(),
                );
                let new: std::collections::HashSet<i64> =
                    c.new_failures.iter().filter_map(|d| d.b_task_id).collect();
                tasks.retain(|t| new.contains(&t.id));
            }
            let mime = match format {
                ReportFormat::Junit => "application/xml",
                ReportFormat::Yaml => "application/yaml",
                ReportFormat::Json => "application/json",
            };
            let suffix = if new_failures_since.is_some() {
                ".new-failures"
            } else {
                ""
            };
            Ok(Response::Export(ExportFile {
                filename: format!("{run_id}{suffix}.{}", format.extension()),
                mime: mime.into(),
                content: report::render(format, &run, &tasks),
            }))
        })
        .await
    }
}

/// Bytes of task details one `get_run` answer carries at most (at least one task): a run
/// of thousands of tasks, each with up to 64 KiB of raw result, is read in pages.
const GET_RUN_MAX_BYTES: usize = 16 * 1024 * 1024;

/// One page of a run's tasks.
struct TaskPage {
    tasks: Vec<artifacts::TaskDetail>,
    total: u32,
    offset: u32,
    next_offset: Option<u32>,
}

/// Tasks `offset..` of a run, at most `limit` (default and most: a run's
/// [`bounds::MAX_RUN_TASKS`]) and [`GET_RUN_MAX_BYTES`] of them; artifacts listed for
/// those only.
fn task_page(
    tasks: Vec<crate::store::TaskRecord>,
    offset: Option<u32>,
    limit: Option<u32>,
    runs_dir: &Path,
) -> TaskPage {
    let total = tasks.len();
    let offset = (offset.unwrap_or(0) as usize).min(total);
    let limit = limit.map_or(bounds::MAX_RUN_TASKS, |l| {
        (l as usize).clamp(1, bounds::MAX_RUN_TASKS)
    });
    let page: Vec<_> = tasks.into_iter().skip(offset).take(limit).collect();
    let mut details = artifacts::with_artifacts(page, runs_dir);
    let mut bytes = 0usize;
    let fits = details
        .iter()
        .position(|d| {
            bytes = bytes.saturating_add(bounds::json_len(d));
            bytes > GET_RUN_MAX_BYTES
        })
        .map_or(details.len(), |i| i.max(1));
    details.truncate(fits);
    let end = offset + details.len();
    TaskPage {
        tasks: details,
        total: total as u32,
        offset: offset as u32,
        next_offset: (end < total).then_some(end as u32),
    }
}
