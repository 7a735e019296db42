//! The reservation book's ownership on SQLite: an exclusive `flock` on
//! `<db>.book.lock`, held by the owning process, which writes its name into the file for
//! the processes that cannot have it.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::store::{BookLock, Result, StoreError};

struct FileLock {
    _file: File,
}

impl BookLock for FileLock {}

fn lock_path(db_path: &Path) -> PathBuf {
    let mut p = db_path.as_os_str().to_owned();
    p.push(".book.lock");
    PathBuf::from(p)
}

/// Take the book lock without waiting. `Ok(None)` when another process holds it.
fn try_lock(db_path: &Path) -> Result<Option<File>> {
    let path = lock_path(db_path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::Lock {
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(Some(file))
    } else {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(StoreError::Lock { path, source: err })
        }
    }
}

/// Take the book for this process, naming it `who` in the lock file.
pub(super) fn lock(db_path: &Path, who: &str) -> Result<Option<Box<dyn BookLock>>> {
    let Some(file) = try_lock(db_path)? else {
        return Ok(None);
    };
    let written = file
        .set_len(0)
        .and_then(|()| (&file).write_all(who.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(db = %db_path.display(), error = %e, "cannot note the book's owner in its lock file");
    }
    Ok(Some(Box::new(FileLock { _file: file })))
}

/// Who owns the book now, as its owner noted it; `None` when nobody does.
pub(super) fn owner(db_path: &Path) -> Option<String> {
    match try_lock(db_path) {
        Ok(None) => {
            let who = std::fs::read_to_string(lock_path(db_path)).unwrap_or_default();
            let who = who.trim();
            Some(if who.is_empty() {
                "another Testbay process".into()
            } else {
                who.to_string()
            })
        }
        // Free (taking it released it again when the file closed) or unreadable.
        Ok(Some(_)) | Err(_) => None,
    }
}
