//! Load a pack directory, validate it against `schemas/`, report every problem with file
//! and line or key path.

pub mod hash;
pub mod library;
mod load;
pub mod model;
pub mod schema;
pub mod view;

use indexmap::IndexMap;
use std::path::PathBuf;

use crate::diag::Diagnostic;
pub use library::{discover, Library, LibraryChange, PackEntry};
pub(crate) use load::load_with_hash;
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
