//! What the UI shows of a pack: a summary for the library list and a detail page.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use super::discover::PackEntry;
use super::{LoadedPack, PackDef, TaskDef};
use crate::diag::Diagnostic;

/// One pack in the library list; broken packs too, with their diagnostics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct PackSummary {
    /// `name` of pack.yaml, or the folder name when pack.yaml cannot be read.
    pub name: String,
    pub version: Option<String>,
    pub description: String,
    /// The pack folder.
    pub dir: String,
    /// Loaded without problems (and can be run).
    pub ok: bool,
    pub diagnostics: Vec<Diagnostic>,
    /// sha256 of the pack's files, when it loaded.
    pub content_hash: Option<String>,
    pub task_count: u32,
    pub group_count: u32,
    pub groups: Vec<GroupSummary>,
    /// Where it comes from: `None` for a pack folder the console finds on disk; for a
    /// version pushed into the lab's pack library, who pushed it, when, and whether it
    /// is private.
    #[serde(default)]
    pub library: Option<LibraryInfo>,
}

/// A pack version of the lab's pack library (`testbay packs push`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct LibraryInfo {
    /// Who pushed it: a user's name, `local` for a single seat's operator.
    pub owner: String,
    /// Seen only by its owner and admins until published.
    pub private: bool,
    pub pushed_ms: crate::clock::EpochMs,
    /// What launches this version: `NAME@VERSION`.
    pub reference: String,
}

/// One test group with its size and estimated time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct GroupSummary {
    pub name: String,
    pub description: String,
    pub tests: Vec<String>,
    pub setup: Vec<String>,
    pub teardown: Vec<String>,
    /// Number of tests.
    pub task_count: u32,
    /// Seconds: `est_task_time` of the group's setup, tests and teardown.
    pub est_time: f64,
}

/// A pack's detail page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct PackDetail {
    #[serde(flatten)]
    pub summary: PackSummary,
    /// pack.yaml as loaded (defaults filled); none for a broken pack.
    pub def: Option<PackDef>,
    /// Global setup and teardown tasks, in order.
    pub setup: Vec<String>,
    pub teardown: Vec<String>,
    /// Seconds: `est_task_time` of the global setup and teardown.
    pub global_est_time: f64,
    pub tasks: Vec<TaskInfo>,
    /// The pack's global parameters, known and free keys, defaults filled.
    pub params: Vec<ParamInfo>,
    /// Every resource some task uses, by name.
    pub resources: Vec<ResourceUse>,
    /// `task` needs `prereq` first.
    pub prereq_edges: Vec<PrereqEdge>,
}

/// One task of a pack, with the fields a list shows and the whole definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct TaskInfo {
    pub name: String,
    pub description: String,
    /// The task file.
    pub file: String,
    pub est_task_time: f64,
    pub max_runtime: Option<f64>,
    pub priority: i32,
    pub exclusive_resources: Vec<String>,
    pub shared_resources: Vec<String>,
    pub prereq_tasks: Vec<String>,
    pub valid_duts: Vec<String>,
    pub valid_ats: Vec<String>,
    pub req_param_keys: Vec<String>,
    pub process_safe: bool,
    pub has_setup: bool,
    pub has_teardown: bool,
    /// Groups (and `setup`/`teardown` for the global ones) that list this task.
    pub used_by: Vec<String>,
    pub def: TaskDef,
}

/// One global parameter with its value in pack.yaml (or its default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ParamInfo {
    pub key: String,
    #[ts(type = "unknown")]
    pub value: Value,
    /// One of the engine's own keys (`process_limit`, ...) rather than a free key.
    pub known: bool,
}

/// Which tasks use a resource, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ResourceUse {
    pub name: String,
    /// Tasks that hold it exclusively.
    pub exclusive_in: Vec<String>,
    /// Tasks that share it.
    pub shared_in: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct PrereqEdge {
    pub task: String,
    pub prereq: String,
}

fn est(pack: &LoadedPack, names: &[String]) -> f64 {
    names
        .iter()
        .filter_map(|n| pack.tasks.get(n))
        .map(|t| t.def.est_task_time)
        .sum()
}

impl PackSummary {
    pub fn of(entry: &PackEntry) -> PackSummary {
        let dir = entry.dir.display().to_string();
        match &entry.result {
            Ok(p) => PackSummary {
                name: p.def.name.clone(),
                version: Some(p.def.version.clone()),
                description: p.def.description.clone(),
                dir,
                ok: true,
                diagnostics: vec![],
                content_hash: Some(p.content_hash.clone()),
                task_count: p.tasks.len() as u32,
                group_count: p.def.groups.len() as u32,
                groups: p
                    .def
                    .groups
                    .iter()
                    .map(|(name, g)| GroupSummary {
                        name: name.clone(),
                        description: g.description.clone(),
                        tests: g.tests.clone(),
                        setup: g.setup.clone(),
                        teardown: g.teardown.clone(),
                        task_count: g.tests.len() as u32,
                        est_time: est(p, &g.setup) + est(p, &g.tests) + est(p, &g.teardown),
                    })
                    .collect(),
                library: None,
            },
            Err(e) => PackSummary {
                name: entry.name(),
                version: e.version.clone(),
                description: String::new(),
                dir,
                ok: false,
                diagnostics: e.diagnostics.clone(),
                content_hash: None,
                task_count: 0,
                group_count: 0,
                groups: vec![],
                library: None,
            },
        }
    }
}

const KNOWN_PARAMS: &[&str] = &[
    "valid_result",
    "process_limit",
    "resource_mode",
    "coverage_mode",
    "ignore_prereq",
];

impl PackDetail {
    pub fn of(entry: &PackEntry) -> PackDetail {
        let summary = PackSummary::of(entry);
        let Ok(p) = &entry.result else {
            return PackDetail {
                summary,
                def: None,
                setup: vec![],
                teardown: vec![],
                global_est_time: 0.0,
                tasks: vec![],
                params: vec![],
                resources: vec![],
                prereq_edges: vec![],
            };
        };
        let def = &p.def;
        let used_by = |task: &str| -> Vec<String> {
            let mut out = Vec::new();
            if def.setup.iter().any(|t| t == task) {
                out.push("setup".to_string());
            }
            for (g, group) in &def.groups {
                if group
                    .tests
                    .iter()
                    .chain(&group.setup)
                    .chain(&group.teardown)
                    .any(|t| t == task)
                {
                    out.push(g.clone());
                }
            }
            if def.teardown.iter().any(|t| t == task) {
                out.push("teardown".to_string());
            }
            out
        };
        let tasks = p
            .tasks
            .iter()
            .map(|(name, t)| TaskInfo {
                name: name.clone(),
                description: t.def.description.clone(),
                file: t.file.display().to_string(),
                est_task_time: t.def.est_task_time,
                max_runtime: t.def.max_runtime,
                priority: t.def.priority,
                exclusive_resources: t.def.exclusive_resources.clone(),
                shared_resources: t.def.shared_resources.clone(),
                prereq_tasks: t.def.prereq_tasks.clone(),
                valid_duts: t.def.valid_duts.clone(),
                valid_ats: t.def.valid_ats.clone(),
                req_param_keys: t.def.req_param_keys.clone(),
                process_safe: t.def.process_safe,
                has_setup: t.def.setup.is_some(),
                has_teardown: t.def.teardown.is_some(),
                used_by: used_by(name),
                def: t.def.clone(),
            })
            .collect();
        let params = super::global_params_json(&def.params)
            .into_iter()
            .map(|(key, value)| ParamInfo {
                known: KNOWN_PARAMS.contains(&key.as_str()),
                key,
                value,
            })
            .collect();
        let mut resources: BTreeMap<String, ResourceUse> = BTreeMap::new();
        for (name, t) in &p.tasks {
            for (list, exclusive) in [
                (&t.def.exclusive_resources, true),
                (&t.def.shared_resources, false),
            ] {
                for r in list {
                    let use_ = resources.entry(r.clone()).or_insert_with(|| ResourceUse {
                        name: r.clone(),
                        exclusive_in: vec![],
                        shared_in: vec![],
                    });
                    if exclusive {
                        use_.exclusive_in.push(name.clone());
                    } else {
                        use_.shared_in.push(name.clone());
                    }
                }
            }
        }
        let prereq_edges = p
            .tasks
            .iter()
            .flat_map(|(name, t)| {
                t.def.prereq_tasks.iter().map(move |pr| PrereqEdge {
                    task: name.clone(),
                    prereq: pr.clone(),
                })
            })
            .collect();
        PackDetail {
            summary,
            def: Some(def.clone()),
            setup: def.setup.clone(),
            teardown: def.teardown.clone(),
            global_est_time: est(p, &def.setup) + est(p, &def.teardown),
            tasks,
            params,
            resources: resources.into_values().collect(),
            prereq_edges,
        }
    }
}
