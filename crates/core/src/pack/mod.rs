//! Load a pack directory, validate it against `schemas/`, report every problem with file
//! and line or key path.

mod count;
pub mod discover;
pub mod hash;
mod load;
pub mod model;
pub mod schema;
pub mod view;

use indexmap::IndexMap;
use serde_json::{Map, Value};
use std::path::PathBuf;

use crate::diag::Diagnostic;
pub use count::{check_task_count, task_count};
pub use discover::{discover, PackEntry};
pub use load::load_with_hash;
pub use load::{find_on_path, load, prereq_cycles};
pub use model::*;

/// A pack that loaded without errors.
#[derive(Debug, Clone)]
pub struct LoadedPack {
    /// Absolute path of the pack folder.
    pub dir: PathBuf,
    pub def: PackDef,
    /// Every task of `tasks/*.yaml`, by name, in file-name order.
    pub tasks: IndexMap<String, LoadedTask>,
    /// sha256 (hex) over the relative paths and contents of every file in the pack folder.
    pub content_hash: String,
}

#[derive(Debug, Clone)]
pub struct LoadedTask {
    pub def: TaskDef,
    /// Absolute path of `tasks/<name>.yaml`.
    pub file: PathBuf,
    /// Folder the task's argv is relative to (the task file's folder).
    pub dir: PathBuf,
}

/// Every problem found in one pack folder.
#[derive(Debug, Clone, thiserror::Error)]
#[error("pack {} has {} problem(s); first: {}", dir.display(), diagnostics.len(), diagnostics.first().map(|d| d.to_string()).unwrap_or_default())]
pub struct PackErrors {
    pub dir: PathBuf,
    /// `name` of pack.yaml, when it could be read at all.
    pub name: Option<String>,
    /// `version` of pack.yaml, when it could be read at all.
    pub version: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
}

/// The normalised global parameters as one JSON object: every known key with its value or
/// default, and every free key, at the top level. This is `global_params` in a task's
/// params file.
pub fn global_params_json(params: &GlobalParams) -> Map<String, Value> {
    match serde_json::to_value(params) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}
