//! Pack listing for the API: every pack folder under the console's pack roots, loaded and
//! summarised; a broken pack is listed with its diagnostics and never hides the others.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ts_rs::TS;

use crate::diag::Diagnostic;
use crate::pack::{self, LoadedPack, TaskDef};

/// One pack of the library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct PackSummary {
    /// `name` of pack.yaml; the folder name when pack.yaml could not be read.
    pub name: String,
    pub version: Option<String>,
    pub dir: String,
    pub description: String,
    /// Loaded without problems; otherwise `diagnostics` says what is wrong and where.
    pub ok: bool,
    pub diagnostics: Vec<Diagnostic>,
    pub task_count: u32,
    pub group_count: u32,
    /// Seconds: every task of every group once, global setup and teardown included.
    pub est_time: f64,
}

/// One group with what the launch form shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct GroupInfo {
    pub name: String,
    pub description: String,
    pub setup: Vec<String>,
    pub tests: Vec<String>,
    pub teardown: Vec<String>,
    /// Tasks the group runs: its setup, tests and teardown.
    pub task_count: u32,
    /// Seconds: `est_task_time` of the group's tasks.
    pub est_time: f64,
}

/// Everything about one loaded pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct PackDetail {
    pub summary: PackSummary,
    pub setup: Vec<String>,
    pub teardown: Vec<String>,
    /// Seconds: global setup and teardown.
    pub global_est_time: f64,
    pub groups: Vec<GroupInfo>,
    pub tasks: Vec<TaskDef>,
    /// Global parameters with their defaults (the launch form's fields and types).
    #[ts(type = "Record<string, unknown>")]
    pub params: Map<String, Value>,
    /// Every exclusive and shared resource a task names, sorted.
    pub resources: Vec<String>,
}

/// Pack folders under the roots: a root holding `pack.yaml` is itself a pack, otherwise
/// each sub-folder with `pack.yaml` is one (sorted by folder name).
pub fn pack_dirs(roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for root in roots {
        if root.join("pack.yaml").is_file() {
            out.push(root.clone());
            continue;
        }
        let Ok(entries) = std::fs::read_dir(root) else {
            tracing::warn!(root = %root.display(), "pack folder cannot be read");
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("pack.yaml").is_file())
            .collect();
        dirs.sort();
        out.extend(dirs);
    }
    out
}

/// Load one pack folder into its summary (and the loaded pack when it is fine).
pub fn summarise(dir: &Path) -> (PackSummary, Option<LoadedPack>) {
    match pack::load(dir) {
        Ok(p) => (summary_of(&p), Some(p)),
        Err(e) => {
            let folder = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string());
            (
                PackSummary {
                    name: e.name.clone().unwrap_or(folder),
                    version: e.version.clone(),
                    dir: dir.display().to_string(),
                    description: String::new(),
                    ok: false,
                    diagnostics: e.diagnostics,
                    task_count: 0,
                    group_count: 0,
                    est_time: 0.0,
                },
                None,
            )
        }
    }
}

fn est(p: &LoadedPack, names: &[String]) -> f64 {
    names
        .iter()
        .filter_map(|n| p.tasks.get(n))
        .map(|t| t.def.est_task_time)
        .sum()
}

fn summary_of(p: &LoadedPack) -> PackSummary {
    let global = est(p, &p.def.setup) + est(p, &p.def.teardown);
    let groups: f64 = p
        .def
        .groups
        .values()
        .map(|g| est(p, &g.setup) + est(p, &g.tests) + est(p, &g.teardown))
        .sum();
    PackSummary {
        name: p.def.name.clone(),
        version: Some(p.def.version.clone()),
        dir: p.dir.display().to_string(),
        description: p.def.description.clone(),
        ok: true,
        diagnostics: Vec::new(),
        task_count: p.tasks.len() as u32,
        group_count: p.def.groups.len() as u32,
        est_time: global + groups,
    }
}

pub fn detail_of(p: &LoadedPack) -> PackDetail {
    let groups = p
        .def
        .groups
        .iter()
        .map(|(name, g)| GroupInfo {
            name: name.clone(),
            description: g.description.clone(),
            setup: g.setup.clone(),
            tests: g.tests.clone(),
            teardown: g.teardown.clone(),
            task_count: (g.setup.len() + g.tests.len() + g.teardown.len()) as u32,
            est_time: est(p, &g.setup) + est(p, &g.tests) + est(p, &g.teardown),
        })
        .collect();
    let mut resources: Vec<String> = p
        .tasks
        .values()
        .flat_map(|t| {
            t.def
                .exclusive_resources
                .iter()
                .chain(&t.def.shared_resources)
        })
        .cloned()
        .collect();
    resources.sort();
    resources.dedup();
    let params = match serde_json::to_value(&p.def.params) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    PackDetail {
        summary: summary_of(p),
        setup: p.def.setup.clone(),
        teardown: p.def.teardown.clone(),
        global_est_time: est(p, &p.def.setup) + est(p, &p.def.teardown),
        groups,
        tasks: p.tasks.values().map(|t| t.def.clone()).collect(),
        params,
        resources,
    }
}
