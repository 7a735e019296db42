//! The Python SDK tasks import (`import testbay`), carried inside the binary.
//!
//! The package's files (`sdk/python/testbay/`) are compiled in and written once per
//! content to a folder of the user's own (`$XDG_CACHE_HOME/testbay/python-sdk-<hash>`,
//! else `~/.cache/...`; the temp folder with the uid in its name when those cannot be
//! written), so a binary
//! finds its SDK wherever it was built or installed from, and always the version it was
//! built with. An installed `../share/testbay/python` beside the binary wins when present.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The package's files, relative to the folder that goes on `PYTHONPATH`.
const FILES: &[(&str, &str)] = &[
    (
        "testbay/__init__.py",
        include_str!("../../../../sdk/python/testbay/__init__.py"),
    ),
    (
        "testbay/ats.py",
        include_str!("../../../../sdk/python/testbay/ats.py"),
    ),
    (
        "testbay/kissats.py",
        include_str!("../../../../sdk/python/testbay/kissats.py"),
    ),
    (
        "testbay/reporter.py",
        include_str!("../../../../sdk/python/testbay/reporter.py"),
    ),
    (
        "testbay/py.typed",
        include_str!("../../../../sdk/python/testbay/py.typed"),
    ),
];

/// The folder holding the `testbay` Python package, written on first use; `None` (and a
/// warning) when no folder of the user's own could be written.
pub fn python_sdk_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let has_pkg = |d: &Path| d.join("testbay/__init__.py").is_file();
        let installed = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("../share/testbay/python")))
            .filter(|d| has_pkg(d));
        if installed.is_some() {
            return installed;
        }
        let mut last = None;
        for root in cache_roots() {
            match write_embedded(&root) {
                Ok(dir) => return Some(dir),
                Err(e) => last = Some(format!("{}: {e}", root.display())),
            }
        }
        tracing::warn!(
            error = last.as_deref().unwrap_or(""),
            "cannot write the bundled Python SDK; tasks that import testbay will fail"
        );
        None
    })
    .clone()
}

fn content_hash() -> String {
    let mut h = Sha256::new();
    for (name, text) in FILES {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

/// Folders of the user's own to write the SDK under, in order of preference: the cache
/// folder (`$XDG_CACHE_HOME`, else `~/.cache`), then the temp folder with the uid in
/// its name (a `HOME` that cannot be written, as for some service users).
fn cache_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| Path::new(d).is_absolute()) {
        roots.push(PathBuf::from(d).join("testbay"));
    } else if let Some(h) = std::env::var_os("HOME").filter(|d| Path::new(d).is_absolute()) {
        roots.push(PathBuf::from(h).join(".cache/testbay"));
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    roots.push(std::env::temp_dir().join(format!("testbay-{uid}")));
    roots
}

/// Write the files into `<root>/python-sdk-<hash>` unless a complete copy is there: a
/// fresh folder beside it, renamed into place, so a reader never sees half a package.
fn write_embedded(root: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(root)?;
    let meta = fs::metadata(root)?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if meta.uid() != uid || meta.permissions().mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} is not a folder of this user's own (owner or others may write it)",
            root.display()
        )));
    }
    let dir = root.join(format!("python-sdk-{}", content_hash()));
    if dir.join(".complete").is_file() {
        return Ok(dir);
    }
    let tmp = root.join(format!(
        ".python-sdk-{}-{}",
        content_hash(),
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&tmp);
    for (name, text) in FILES {
        let path = tmp.join(name);
        fs::create_dir_all(path.parent().expect("a file in a folder"))?;
        fs::write(&path, text)?;
    }
    fs::write(tmp.join(".complete"), "")?;
    match fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another process put a complete copy there first.
        Err(_) if dir.join(".complete").is_file() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_file_of_the_package_is_embedded() {
        let pkg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/python/testbay");
        let mut on_disk: Vec<String> = std::fs::read_dir(&pkg)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".py") || n == "py.typed")
            .map(|n| format!("testbay/{n}"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = super::FILES.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "add the new file to exec/sdk.rs FILES");
    }

    #[test]
    fn the_package_is_written_once_and_a_root_that_is_not_a_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("cache");
        let dir = super::write_embedded(&root).unwrap();
        assert!(dir.join("testbay/__init__.py").is_file());
        assert!(dir.join(".complete").is_file());
        let again = super::write_embedded(&root).unwrap();
        assert_eq!(dir, again);
        std::fs::write(tmp.path().join("file"), "").unwrap();
        assert!(super::write_embedded(&tmp.path().join("file")).is_err());
    }
}
