//! Failure triage (`testbay_core::triage`): the known-issue rules of
//! `<data_dir>/triage.yaml`, listed, added and removed here, and applied on read to
//! stored failures, so a new or edited rule applies to past results at once. What a read
//! does is bounded: one run's failures, or the failures of a pack's last runs (at most
//! [`MAX_SUMMARY_RUNS`] runs and [`MAX_SUMMARY_FAILURES`] failures), each task's logs
//! read from their last [`LOG_TAIL_BYTES`] bytes only when a rule looks at logs.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::error::store_error;
use super::local::blocking;
use super::{ApiError, LocalConsole, Response};
use crate::store::{RunQuery, Store, TaskRecord};
use testbay_core::triage::{self, Triage, TriageFile, TriageRule, TRIAGE_FILE};

/// Most runs a summary looks at.
pub const MAX_SUMMARY_RUNS: u32 = 500;
/// Runs a summary looks at when not told (0).
pub const DEFAULT_SUMMARY_RUNS: u32 = 50;
/// Most failures a summary classifies (the newest runs' first).
pub const MAX_SUMMARY_FAILURES: usize = 5_000;
/// How much of the end of each log a rule's `log` expression searches.
pub const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// One edit of the rules file at a time in this process (another process editing at
/// the same moment is not guarded against: the file is replaced whole, by rename).
static EDIT: Mutex<()> = Mutex::new(());

/// The rules in precedence order and the file they are kept in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct TriageRules {
    pub file: String,
    pub rules: Vec<TriageRule>,
}

/// A failed task of a run and the known issue it matches, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct TriagedFailure {
    #[ts(type = "number")]
    pub task_id: i64,
    pub seq: u32,
    pub task: String,
    pub lane: Option<String>,
    pub result: Option<String>,
    pub message: Option<String>,
    /// The matching rule's category; none for a failure no rule knows.
    pub category: Option<String>,
    pub rule: Option<String>,
    pub issue: Option<String>,
}

/// Failures per category over a pack's (or every pack's) last runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct TriageSummary {
    /// Runs looked at.
    pub runs: u32,
    /// Failed tasks in them (classified ones, when `truncated`).
    pub failures: u32,
    /// Failures some rule matched.
    pub known: u32,
    /// Per category, most failures first.
    pub categories: Vec<CategoryCount>,
    /// Stopped at [`MAX_SUMMARY_FAILURES`]: older runs' failures are not counted.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct CategoryCount {
    pub category: String,
    pub count: u32,
}

fn diags_error(file: &Path, d: Vec<crate::diag::Diagnostic>) -> ApiError {
    let first = d.first().map(|d| d.to_string()).unwrap_or_default();
    ApiError::invalid(format!("{} is not valid: {first}", file.display())).with_diagnostics(d)
}

fn load(data_dir: &Path) -> Result<(TriageFile, Triage), ApiError> {
    triage::load(data_dir).map_err(|d| diags_error(&data_dir.join(TRIAGE_FILE), d))
}

/// Check `file` and replace the rules file with it (written beside it, then renamed).
fn save(data_dir: &Path, file: &TriageFile) -> Result<(), ApiError> {
    if let Err(problems) = triage::compile(&file.rules) {
        let text = problems
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ApiError::invalid(text));
    }
    let path = data_dir.join(TRIAGE_FILE);
    let tmp = data_dir.join(format!(".{TRIAGE_FILE}.new"));
    let io =
        |e: std::io::Error| ApiError::internal(format!("cannot write {}: {e}", path.display()));
    std::fs::write(&tmp, triage::to_yaml(file)).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

/// Whether a stored task is a failure triage looks at: done with a failing result,
/// not aborted (a stop or a dead console is not a failure).
pub fn is_failure(t: &TaskRecord) -> bool {
    t.failure == Some(true) && t.result.as_deref() != Some("Aborted")
}

/// The end of a task's logs (setup, main, teardown), each below `runs_dir` and read
/// through `userfile`, at most [`LOG_TAIL_BYTES`] of each.
fn log_tail(t: &TaskRecord, runs_dir: &Path) -> String {
    let mut out = String::new();
    for p in [&t.paths.setup_log, &t.paths.main_log, &t.paths.teardown_log]
        .into_iter()
        .flatten()
    {
        let p = PathBuf::from(p);
        if !p.starts_with(runs_dir) || p.components().any(|c| c == std::path::Component::ParentDir)
        {
            continue;
        }
        let Ok(mut f) = crate::userfile::open_regular(&p) else {
            continue;
        };
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        if f.seek(SeekFrom::Start(size.saturating_sub(LOG_TAIL_BYTES)))
            .is_err()
        {
            continue;
        }
        let mut buf = Vec::new();
        if f.take(LOG_TAIL_BYTES).read_to_end(&mut buf).is_ok() {
            out.push_str(&String::from_utf8_lossy(&buf));
            out.push('\n');
        }
    }
    out
}

/// The failures among `tasks`, each with the rule that knows it.
pub fn classify_tasks(
    triage: &Triage,
    tasks: &[TaskRecord],
    runs_dir: &Path,
) -> Vec<TriagedFailure> {
    tasks
        .iter()
        .filter(|t| is_failure(t))
        .map(|t| {
            let mut messages: Vec<&str> = t.message.as_deref().into_iter().collect();
            messages.extend(
                t.sub_results
                    .iter()
                    .filter(|s| s.failure)
                    .map(|s| s.message.as_str()),
            );
            let rule = triage
                .classify(&messages, &mut || log_tail(t, runs_dir))
                .cloned();
            TriagedFailure {
                task_id: t.id,
                seq: t.seq,
                task: t.task.clone(),
                lane: t.lane.clone(),
                result: t.result.clone(),
                message: t.message.clone(),
                category: rule.as_ref().map(|r| r.category.clone()),
                issue: rule.as_ref().and_then(|r| r.issue.clone()),
                rule: rule.map(|r| r.name),
            }
        })
        .collect()
}

/// Failures per category over the last `last_runs` runs (of `pack`, or of all packs).
pub fn summarize(
    store: &dyn Store,
    triage: &Triage,
    runs_dir: &Path,
    pack: Option<String>,
    last_runs: u32,
) -> crate::store::Result<TriageSummary> {
    let last_runs = match last_runs {
        0 => DEFAULT_SUMMARY_RUNS,
        n => n.min(MAX_SUMMARY_RUNS),
    };
    let page = store.list_runs(&RunQuery {
        pack,
        limit: last_runs,
        ..RunQuery::default()
    })?;
    let mut by: BTreeMap<String, u32> = BTreeMap::new();
    let (mut failures, mut known, mut truncated) = (0u32, 0u32, false);
    for run in &page.runs {
        if run.counts.failures == 0 {
            continue;
        }
        if failures as usize >= MAX_SUMMARY_FAILURES {
            truncated = true;
            break;
        }
        let tasks = store.run_tasks(&run.id)?;
        for f in classify_tasks(triage, &tasks, runs_dir) {
            failures += 1;
            if let Some(c) = f.category {
                known += 1;
                *by.entry(c).or_default() += 1;
            }
        }
    }
    let mut categories: Vec<CategoryCount> = by
        .into_iter()
        .map(|(category, count)| CategoryCount { category, count })
        .collect();
    categories.sort_by(|a, b| b.count.cmp(&a.count).then(a.category.cmp(&b.category)));
    Ok(TriageSummary {
        runs: page.runs.len() as u32,
        failures,
        known,
        categories,
        truncated,
    })
}

impl LocalConsole {
    fn rules_view(&self, file: TriageFile) -> TriageRules {
        TriageRules {
            file: self.paths.data_dir.join(TRIAGE_FILE).display().to_string(),
            rules: file.rules,
        }
    }

    pub(super) fn triage_rules(&self) -> Result<Response, ApiError> {
        let (file, _) = load(&self.paths.data_dir)?;
        Ok(Response::TriageRules(self.rules_view(file)))
    }

    pub(super) fn add_triage_rule(
        &self,
        rule: TriageRule,
        position: Option<u32>,
    ) -> Result<Response, ApiError> {
        let _edit = EDIT.lock().unwrap_or_else(|p| p.into_inner());
        let (mut file, _) = load(&self.paths.data_dir)?;
        if file.rules.iter().any(|r| r.name == rule.name) {
            return Err(ApiError::new(
                super::ErrorCode::Conflict,
                format!("a rule named `{}` exists already", rule.name),
            ));
        }
        let at = position.map_or(file.rules.len(), |p| (p as usize).min(file.rules.len()));
        file.rules.insert(at, rule);
        save(&self.paths.data_dir, &file)?;
        Ok(Response::AddTriageRule(self.rules_view(file)))
    }

    pub(super) fn remove_triage_rule(&self, name: String) -> Result<Response, ApiError> {
        let _edit = EDIT.lock().unwrap_or_else(|p| p.into_inner());
        let (mut file, _) = load(&self.paths.data_dir)?;
        let before = file.rules.len();
        file.rules.retain(|r| r.name != name);
        if file.rules.len() == before {
            return Err(ApiError::not_found(format!(
                "no triage rule named `{name}`"
            )));
        }
        save(&self.paths.data_dir, &file)?;
        Ok(Response::RemoveTriageRule(self.rules_view(file)))
    }

    pub(super) async fn run_triage(&self, run_id: String) -> Result<Response, ApiError> {
        let (_, triage) = load(&self.paths.data_dir)?;
        let store = self.store.clone();
        let runs_dir = self.paths.runs_dir();
        let failures = blocking(move || {
            let tasks = store.run_tasks(&run_id).map_err(store_error)?;
            Ok(classify_tasks(&triage, &tasks, &runs_dir))
        })
        .await?;
        Ok(Response::RunTriage(failures))
    }

    pub(super) async fn triage_summary(
        &self,
        pack: Option<String>,
        last_runs: u32,
    ) -> Result<Response, ApiError> {
        let (_, triage) = load(&self.paths.data_dir)?;
        let store = self.store.clone();
        let runs_dir = self.paths.runs_dir();
        let s = blocking(move || {
            summarize(store.as_ref(), &triage, &runs_dir, pack, last_runs).map_err(store_error)
        })
        .await?;
        Ok(Response::TriageSummary(s))
    }
}
