//! Read connections: every read runs on a read-only connection of its own, so it never
//! waits behind another read or behind the writer (WAL lets readers and the one writer go
//! side by side), and is stopped once it runs past the store's read limit.
//!
//! A plain idle list, not a pool crate: a read that finds no idle connection opens one
//! (about 0.1 ms) instead of waiting for one, and at most [`KEEP_IDLE`] are kept.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::store::{Result, StoreError};

/// Idle read connections kept for reuse; more may be open while reads run at once.
const KEEP_IDLE: usize = 8;
/// SQLite checks the deadline every this many virtual machine steps (a few microseconds).
const CHECK_EVERY_OPS: i32 = 1000;
/// The read limit unless [`crate::store::Store::set_read_limit`] says otherwise: long enough for
/// a text search over a large store, short enough that no screen waits for a minute.
pub const DEFAULT_READ_LIMIT: Duration = Duration::from_secs(10);

/// What a connection's progress handler checks.
struct Watch {
    /// Deadline of the read in progress, in nanoseconds after `epoch`; 0: none.
    deadline_ns: AtomicU64,
}

struct Reader {
    conn: Connection,
    watch: Arc<Watch>,
}

pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
    epoch: Instant,
    limit_ms: AtomicU64,
    /// Set by [`Readers::close`]: reads in progress stop, new ones are refused.
    closing: Arc<AtomicBool>,
}

impl Readers {
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            epoch: Instant::now(),
            limit_ms: AtomicU64::new(DEFAULT_READ_LIMIT.as_millis() as u64),
            closing: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(super) fn set_limit(&self, limit: Duration) {
        self.limit_ms
            .store(limit.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    pub(super) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Run `f` on a read connection, stopped at the read limit.
    pub(super) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.closing.load(Ordering::Acquire) {
            return Err(StoreError::Closing);
        }
        let popped = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let reader = match popped {
            Some(r) => r,
            None => self.open()?,
        };
        let limit_ms = self.limit_ms.load(Ordering::Relaxed);
        let deadline = self.epoch.elapsed() + Duration::from_millis(limit_ms);
        reader
            .watch
            .deadline_ns
            .store(deadline.as_nanos().max(1) as u64, Ordering::Relaxed);
        // One read transaction: the statements of one read see one state of the store.
        let conn = &reader.conn;
        let out = conn
            .prepare_cached("BEGIN")
            .and_then(|mut s| s.execute([]))
            .map_err(StoreError::from)
            .and_then(|_| f(conn));
        reader.watch.deadline_ns.store(0, Ordering::Relaxed);
        let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
        if !conn.is_autocommit() {
            if let Err(e) = conn.prepare_cached(end).and_then(|mut s| s.execute([])) {
                tracing::warn!(error = %e, "cannot end a read transaction");
            }
        }
        let out = out.map_err(|e| {
            if !interrupted(&e) {
                e
            } else if self.closing.load(Ordering::Acquire) {
                StoreError::Closing
            } else {
                tracing::warn!(limit_ms, "store read stopped at its time limit");
                StoreError::Timeout { limit_ms }
            }
        });
        // A connection still inside its transaction is not reused.
        if conn.is_autocommit() && !self.closing.load(Ordering::Acquire) {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < KEEP_IDLE {
                idle.push(reader);
            }
        }
        out
    }

    fn open(&self) -> Result<Reader> {
        let open_err = |source: rusqlite::Error| StoreError::Open {
            path: self.path.clone(),
            source: source.into(),
        };
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        // Readers wait for a lock only while another process recovers the WAL.
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        let watch = Arc::new(Watch {
            deadline_ns: AtomicU64::new(0),
        });
        let (w, closing, epoch) = (watch.clone(), self.closing.clone(), self.epoch);
        conn.progress_handler(
            CHECK_EVERY_OPS,
            Some(move || {
                let deadline = w.deadline_ns.load(Ordering::Relaxed);
                closing.load(Ordering::Relaxed)
                    || (deadline != 0 && epoch.elapsed().as_nanos() as u64 > deadline)
            }),
        );
        Ok(Reader { conn, watch })
    }
}

/// Whether `e` is SQLite's answer to a read its progress handler stopped.
fn interrupted(e: &StoreError) -> bool {
    let StoreError::Database(e) = e else {
        return false;
    };
    matches!(
        e.downcast_ref::<rusqlite::Error>(),
        Some(rusqlite::Error::SqliteFailure(err, _))
            if err.code == rusqlite::ErrorCode::OperationInterrupted
    )
}
