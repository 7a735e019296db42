//! Reports of a stored run: JUnit XML (for CI dashboards), a `results.yaml` tree in the
//! pyATS reporter's shape (run > task > sub-results), and a JSON export.
//!
//! `junit` writes the XML, `tree` builds the results tree, `yaml` writes it as YAML.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::store::{RunRecord, TaskRecord};

mod junit;
mod tree;
mod yaml;

pub use junit::junit;
pub use tree::{measurement_text, results_tree};
pub use yaml::results_yaml;

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum ReportFormat {
    Junit,
    Yaml,
    Json,
}

impl ReportFormat {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "junit" | "xml" => ReportFormat::Junit,
            "yaml" | "yml" => ReportFormat::Yaml,
            "json" => ReportFormat::Json,
            _ => return None,
        })
    }

    pub fn extension(self) -> &'static str {
        match self {
            ReportFormat::Junit => "xml",
            ReportFormat::Yaml => "yaml",
            ReportFormat::Json => "json",
        }
    }
}

/// A run with its task tree: the JSON export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct RunExport {
    pub run: RunRecord,
    pub tasks: Vec<TaskRecord>,
}

pub fn render(format: ReportFormat, run: &RunRecord, tasks: &[TaskRecord]) -> String {
    match format {
        ReportFormat::Junit => junit(run, tasks),
        ReportFormat::Yaml => results_yaml(run, tasks),
        ReportFormat::Json => {
            let export = RunExport {
                run: run.clone(),
                tasks: tasks.to_vec(),
            };
            serde_json::to_string_pretty(&export).expect("plain data") + "\n"
        }
    }
}
