//! Retention in SQLite, on a connection of its own: candidates chosen in one query
//! (`ROW_NUMBER` per pack over `runs_pack_created`), one run removed per transaction
//! (the rest goes by `ON DELETE CASCADE`), free pages given back by
//! `PRAGMA incremental_vacuum`.
//!
//! Stores are created with `auto_vacuum = INCREMENTAL` (set as the store opens, before
//! its first table). A database made before that has `auto_vacuum = NONE`, which only a
//! `VACUUM` can change: the first [`RetentionStore::reclaim`] on it switches the mode and
//! runs that `VACUUM` once (it rewrites the file and holds the write lock meanwhile:
//! writers wait up to their busy timeout), every later one is incremental.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use crate::clock::EpochMs;
use crate::store::retention::{DbSize, PruneCandidate, RetentionStore};
use crate::store::{Result, StoreError};

/// How long [`SqliteRetentionStore::truncate_wal`] tries again.
const TRUNCATE_PATIENCE: Duration = Duration::from_secs(2);

/// Statuses of runs that are still going: never removed.
const GOING: &str = "('queued', 'running', 'stalled')";

pub struct SqliteRetentionStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteRetentionStore {
    /// Open retention's handle on the database at `db_path` (already migrated).
    pub fn open(db_path: &Path) -> Result<Self> {
        let open_err = |source: rusqlite::Error| StoreError::Open {
            path: db_path.to_path_buf(),
            source: source.into(),
        };
        let conn = Connection::open(db_path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        )
        .map_err(open_err)?;
        Ok(Self {
            conn,
            path: db_path.to_path_buf(),
        })
    }

    fn file_bytes(&self) -> u64 {
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        [self.path.clone(), PathBuf::from(wal)]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Give the write-ahead log's pages back: a `TRUNCATE` checkpoint, tried again while
    /// it finds another checkpoint under way (the store's own checkpointer takes the same
    /// lock, and SQLite returns at once rather than wait for it), for up to
    /// [`TRUNCATE_PATIENCE`]; after that the log is left for the next prune. (A reader on
    /// an older snapshot is waited for within one try, by the connection's busy timeout.)
    fn truncate_wal(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            let busy: i64 = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            if busy == 0 {
                return Ok(());
            }
            if started.elapsed() >= TRUNCATE_PATIENCE {
                tracing::warn!(path = %self.path.display(), "the write-ahead log stays: a checkpoint or a reader kept it busy");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn pragma(&self, name: &str) -> Result<i64> {
        Ok(self
            .conn
            .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?)
    }
}

impl RetentionStore for SqliteRetentionStore {
    fn candidates(
        &self,
        older_than: Option<EpochMs>,
        beyond: Option<u32>,
        limit: u32,
    ) -> Result<Vec<PruneCandidate>> {
        if older_than.is_none() && beyond.is_none() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id, pack_name, created_ms, rn FROM (
                 SELECT id, pack_name, created_ms, status,
                        ROW_NUMBER() OVER (PARTITION BY pack_name
                                           ORDER BY created_ms DESC, id DESC) AS rn
                 FROM runs)
             WHERE status NOT IN {GOING}
               AND id NOT IN (SELECT run_id FROM baselines)
               AND id NOT IN (SELECT run_id FROM run_keep)
               AND ((?1 IS NOT NULL AND created_ms < ?1) OR (?2 IS NOT NULL AND rn > ?2))
             ORDER BY created_ms, id
             LIMIT ?3"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params![older_than, beyond, limit], |r| {
            let created_ms: EpochMs = r.get(2)?;
            let rn: i64 = r.get(3)?;
            Ok(PruneCandidate {
                run_id: r.get(0)?,
                pack: r.get(1)?,
                created_ms,
                why: if older_than.is_some_and(|t| created_ms < t) {
                    "age".into()
                } else {
                    debug_assert!(beyond.is_some_and(|b| rn > b as i64));
                    "count".into()
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn remove_run(&self, run_id: &str) -> Result<bool> {
        // One statement, so one transaction: the cascade goes with the run's row.
        let n = self.conn.execute(
            &format!(
                "DELETE FROM runs WHERE id = ?1 AND status NOT IN {GOING}
                   AND id NOT IN (SELECT run_id FROM baselines)
                   AND id NOT IN (SELECT run_id FROM run_keep)"
            ),
            [run_id],
        )?;
        Ok(n == 1)
    }

    fn set_keep(&self, run_id: &str, keep: bool, now: EpochMs) -> Result<()> {
        let exists: Option<i64> = self
            .conn
            .query_row("SELECT 1 FROM runs WHERE id = ?1", [run_id], |r| r.get(0))
            .optional()?;
        if exists.is_none() {
            return Err(StoreError::RunNotFound(run_id.to_string()));
        }
        if keep {
            self.conn.execute(
                "INSERT OR IGNORE INTO run_keep (run_id, kept_ms) VALUES (?1, ?2)",
                params![run_id, now],
            )?;
        } else {
            self.conn
                .execute("DELETE FROM run_keep WHERE run_id = ?1", [run_id])?;
        }
        Ok(())
    }

    fn is_kept(&self, run_id: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM run_keep WHERE run_id = ?1", [run_id], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    fn size(&self) -> Result<DbSize> {
        let free = self.pragma("freelist_count")? * self.pragma("page_size")?;
        Ok(DbSize {
            file_bytes: self.file_bytes(),
            free_bytes: free.max(0) as u64,
        })
    }

    fn reclaim(&self) -> Result<u64> {
        let before = self.file_bytes();
        if self.pragma("auto_vacuum")? == 2 {
            // Runs until every free page is gone; the pragma's rows must be stepped.
            let mut stmt = self.conn.prepare("PRAGMA incremental_vacuum")?;
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
        } else {
            self.conn
                .execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
        }
        self.truncate_wal()?;
        Ok(before.saturating_sub(self.file_bytes()))
    }
}
