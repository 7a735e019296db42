//! The files a task left in its artifacts folder, listed for the results view.

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::store::TaskRecord;

/// Files listed per task at most; the rest is counted in `TaskDetail::artifacts_more`.
pub const MAX_PER_TASK: usize = 200;
/// Files listed per run at most (a run of thousands of tasks stays a reasonable answer).
pub const MAX_PER_RUN: usize = 5_000;
/// Folder depth below `artifacts/` that is looked into.
const MAX_DEPTH: usize = 8;

/// One file in a task's artifacts folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ArtifactEntry {
    /// Relative to the task's `artifacts_dir`, `/`-separated.
    pub path: String,
    #[ts(type = "number")]
    pub size: u64,
}

/// A stored task occurrence and the artifact files it left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct TaskDetail {
    #[serde(flatten)]
    #[ts(flatten)]
    pub record: TaskRecord,
    /// Regular files below `paths.artifacts_dir`, sorted by path (symlinks are left out).
    pub artifacts: Vec<ArtifactEntry>,
    /// Files there that were not listed (over the per-task or per-run limit).
    pub artifacts_more: u32,
}

/// Every task with its artifact files read from disk. Only folders below `runs_dir` are
/// read; a stored path pointing elsewhere lists nothing.
pub fn with_artifacts(tasks: Vec<TaskRecord>, runs_dir: &Path) -> Vec<TaskDetail> {
    let mut budget = MAX_PER_RUN;
    tasks
        .into_iter()
        .map(|record| {
            let mut files = Vec::new();
            let mut more = 0u32;
            if let Some(dir) = record.paths.artifacts_dir.as_deref().map(Path::new) {
                let inside = dir.starts_with(runs_dir)
                    && !dir.components().any(|c| c == Component::ParentDir);
                if inside {
                    walk(dir, "", 0, &mut files, &mut more, &mut budget);
                }
            }
            files.sort_by(|a, b| a.path.cmp(&b.path));
            TaskDetail {
                record,
                artifacts: files,
                artifacts_more: more,
            }
        })
        .collect()
}

fn walk(
    dir: &Path,
    prefix: &str,
    depth: usize,
    out: &mut Vec<ArtifactEntry>,
    more: &mut u32,
    budget: &mut usize,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    // Listed in name order, so which files make the cut does not depend on the disk.
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        // `file_type` does not follow symlinks: a link out of the folder is never listed.
        let Ok(ft) = e.file_type() else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if ft.is_dir() {
            if depth < MAX_DEPTH {
                walk(&e.path(), &rel, depth + 1, out, more, budget);
            }
        } else if ft.is_file() {
            if out.len() < MAX_PER_TASK && *budget > 0 {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push(ArtifactEntry { path: rel, size });
                *budget -= 1;
            } else {
                *more = more.saturating_add(1);
            }
        }
    }
}
