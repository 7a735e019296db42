//! Opening a SQLite store: the open lock that lets processes open one data directory at
//! once, and the migrations run under it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};

use super::migrations;
use crate::store::{Result, StoreError};

/// Bring the schema up to date, one migration per transaction. Each transaction takes the
/// write lock first (`BEGIN IMMEDIATE`) and reads the version inside it, so even a process
/// that does not take [`OpenLock`] never applies a migration twice.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let known = migrations::MIGRATIONS.len();
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > known as i64 {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known,
            });
        }
        let index = version as usize;
        let Some(m) = migrations::MIGRATIONS.get(index) else {
            return Ok(());
        };
        tx.execute_batch(m.sql)
            .and_then(|_| tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1)))
            .map_err(|source| StoreError::Migration {
                index,
                name: m.name,
                source: source.into(),
            })?;
        tx.commit()?;
        tracing::info!(index, name = m.name, "applied store migration");
    }
}

/// An exclusive `flock` on `<db>.open.lock`, held while a process opens and migrates the
/// database; released when dropped (or when the process dies).
pub(super) struct OpenLock {
    _file: std::fs::File,
}

impl OpenLock {
    /// How long to wait for another process to finish opening before giving up.
    const PATIENCE: Duration = Duration::from_secs(60);

    pub(super) fn take(db: &Path) -> Result<Self> {
        let mut name = db.as_os_str().to_owned();
        name.push(".open.lock");
        let path = PathBuf::from(name);
        let lock_err = |source| StoreError::Lock {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(lock_err)?;
        let started = Instant::now();
        loop {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor we own; released when the file is closed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Self { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK)
                && err.kind() != std::io::ErrorKind::Interrupted
            {
                return Err(lock_err(err));
            }
            if started.elapsed() > Self::PATIENCE {
                return Err(lock_err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "another process has been opening the database for {} s",
                        Self::PATIENCE.as_secs()
                    ),
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
