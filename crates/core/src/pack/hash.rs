//! Content hash of a pack folder: what a run records so a stored result names exactly the
//! pack it ran.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::bounds::MAX_PACK_BYTES;

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
    let mut total = 0;
    for rel in pack_files(root)? {
        let (f, len) = open_file(root, &rel, &mut total)?;
        h.add_reader(&rel, len, f, |_| Ok(()))?;
    }
    Ok(h.finish())
}

/// Open the pack file `rel` for hashing or copying, with its length; `total` (the bytes
/// of the files opened before) must stay within [`MAX_PACK_BYTES`]. A file that is not a
/// regular file (swapped since it was listed) is refused, not waited on.
pub fn open_file(root: &Path, rel: &Path, total: &mut u64) -> io::Result<(File, u64)> {
    let f = crate::userfile::open_regular(&root.join(rel)).map_err(|e| match e {
        crate::userfile::OpenError::Io(e) => e,
        e => io::Error::other(format!("{}: {e}", rel.display())),
    })?;
    let len = f.metadata()?.len();
    *total = total.saturating_add(len);
    if *total > MAX_PACK_BYTES {
        return Err(io::Error::other(format!(
            "the pack's files hold more than {} MiB (bounds::MAX_PACK_BYTES) by {} ({len} bytes)",
            MAX_PACK_BYTES / 1024 / 1024,
            rel.display()
        )));
    }
    Ok((f, len))
}

/// [`content_hash`] built file by file, for who reads the files anyway.
#[derive(Default)]
pub struct ContentHash(Sha256);

impl ContentHash {
    /// The next file (in [`pack_files`] order): its path, its length `len` and its bytes,
    /// read from `r` in pieces, each also given to `sink` (a copy). A file that does not
    /// hold `len` bytes any more (it changed while read) is an error.
    pub fn add_reader(
        &mut self,
        rel: &Path,
        len: u64,
        r: impl Read,
        mut sink: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        self.0.update(rel.to_string_lossy().as_bytes());
        self.0.update([0u8]);
        self.0.update(len.to_le_bytes());
        let mut r = r.take(len);
        let mut buf = vec![0u8; 64 * 1024];
        let mut read = 0u64;
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.0.update(&buf[..n]);
            sink(&buf[..n])?;
            read += n as u64;
        }
        if read != len {
            return Err(io::Error::other(format!(
                "{} changed while it was read",
                rel.display()
            )));
        }
        Ok(())
    }

    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}
