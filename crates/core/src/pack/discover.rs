//! Pack discovery: every pack folder under a set of roots, loaded, one pack per name.
//! A root or a pack that cannot be read is an entry with its errors, never a failure of
//! the others. The engine's `pack::library` keeps this current with a file watcher.

use std::path::{Path, PathBuf};

use super::load::whole_file;
use super::{LoadedPack, PackErrors};
use crate::diag::Diagnostic;

/// One pack folder and how it loaded.
#[derive(Debug, Clone)]
pub struct PackEntry {
    /// The pack folder as found (under a root, or the root itself).
    pub dir: PathBuf,
    pub result: Result<LoadedPack, PackErrors>,
}

impl PackEntry {
    /// Load the pack in `dir`.
    pub fn load(dir: PathBuf) -> Self {
        let result = super::load(&dir);
        if let Err(e) = &result {
            tracing::debug!(dir = %dir.display(), problems = e.diagnostics.len(), "pack has problems");
        }
        PackEntry { dir, result }
    }

    /// `name` of pack.yaml, or the folder name when it cannot be read.
    pub fn name(&self) -> String {
        match &self.result {
            Ok(p) => p.def.name.clone(),
            Err(e) => e.name.clone().unwrap_or_else(|| folder_name(&self.dir)),
        }
    }
}

fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// Pack folders under `root`: the root itself when it holds a pack.yaml, else each
/// non-hidden subfolder that does, by name.
pub fn pack_dirs(root: &Path) -> Result<Vec<PathBuf>, PackErrors> {
    if has_pack_file(root) {
        return Ok(vec![root.to_path_buf()]);
    }
    let err = |message: String| PackErrors {
        dir: root.to_path_buf(),
        name: None,
        version: None,
        diagnostics: vec![whole_file(root, message)],
    };
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(err("no such folder".into()))
        }
        Err(e) => return Err(err(format!("cannot list packs: {e}"))),
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                && has_pack_file(p)
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Whether `dir` has a `pack.yaml` of any kind: one that is not a file (a named pipe, a
/// folder) makes a broken pack that says so, not a folder silently passed over.
fn has_pack_file(dir: &Path) -> bool {
    dir.join("pack.yaml").exists()
}

/// Load every pack under `roots`, in root order then folder-name order. A root that
/// cannot be read is an entry with its error.
pub fn discover(roots: &[PathBuf]) -> Vec<PackEntry> {
    let mut out = Vec::new();
    for root in roots {
        match pack_dirs(root) {
            Ok(dirs) => out.extend(dirs.into_iter().map(PackEntry::load)),
            Err(e) => out.push(PackEntry {
                dir: root.clone(),
                result: Err(e),
            }),
        }
    }
    mark_duplicate_names(&mut out);
    out
}

const DUPLICATE: &str = "another pack named";

/// A pack whose name an earlier pack already has becomes broken: runs and the UI name
/// packs by name, so a library holds one pack per name.
pub fn mark_duplicate_names(entries: &mut [PackEntry]) {
    for i in 0..entries.len() {
        let Ok(p) = &entries[i].result else { continue };
        let name = p.def.name.clone();
        let first = entries[..i]
            .iter()
            .find(|e| e.result.as_ref().is_ok_and(|q| q.def.name == name));
        if let Some(first) = first {
            let message = format!(
                "{DUPLICATE} `{name}` is at {}; a library holds one pack per name",
                first.dir.display()
            );
            let version = p.def.version.clone();
            let dir = entries[i].dir.clone();
            entries[i].result = Err(PackErrors {
                diagnostics: vec![Diagnostic {
                    file: dir.join("pack.yaml"),
                    line: None,
                    column: None,
                    key_path: Some("name".into()),
                    message,
                }],
                dir,
                name: Some(name),
                version: Some(version),
            });
        }
    }
}

/// Whether `e` is broken only for its name, which an earlier pack has.
pub fn is_duplicate(e: &PackEntry) -> bool {
    e.result.as_ref().is_err_and(|e| {
        e.diagnostics
            .iter()
            .any(|d| d.message.starts_with(DUPLICATE))
    })
}
