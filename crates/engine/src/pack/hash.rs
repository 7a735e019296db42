//! Content hash of a pack folder: what a run records so a stored result names exactly the
//! pack it ran.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Whether a path (relative to the pack folder) is noise that never belongs to a pack:
/// hidden files and folders, Python bytecode caches.
pub fn ignored(rel: &Path) -> bool {
    rel.components().any(|c| {
        let s = c.as_os_str().to_string_lossy();
        s.starts_with('.') || s == "__pycache__"
    }) || rel.extension().is_some_and(|e| e == "pyc")
}

/// Every file of the pack folder (relative paths, sorted), ignoring [`ignored`] ones.
/// Symlinks are followed for files; a symlinked folder is not entered.
pub fn pack_files(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for entry in std::fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let child = rel.join(entry.file_name());
            if ignored(&child) {
                continue;
            }
            let ty = entry.file_type()?;
            if ty.is_dir() {
                todo.push(child);
            } else if ty.is_file() || (ty.is_symlink() && root.join(&child).is_file()) {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// sha256 (hex) over each file's relative path, length and contents, in path order.
pub fn content_hash(root: &Path) -> io::Result<String> {
    let mut h = ContentHash::default();
    for rel in pack_files(root)? {
        h.add(&rel, &std::fs::read(root.join(&rel))?);
    }
    Ok(h.finish())
}

/// [`content_hash`] built file by file, for who reads the files anyway.
#[derive(Default)]
pub struct ContentHash(Sha256);

impl ContentHash {
    /// The next file, in [`pack_files`] order.
    pub fn add(&mut self, rel: &Path, bytes: &[u8]) {
        self.0.update(rel.to_string_lossy().as_bytes());
        self.0.update([0u8]);
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}
