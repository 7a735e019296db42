//! Storage: rusqlite with WAL and versioned migrations. Runs, task results, sub-results;
//! the lab helper adds the lab and reservation tables (`store/lab.rs`,
//! `store/reservations.rs`) through migrations appended to [`migrations::MIGRATIONS`].
//!
//! Writes go through one connection behind a mutex: every write is short (no fsync per
//! commit with `synchronous=NORMAL` in WAL mode), so callers on async threads may call in
//! directly. Reads each take a read-only connection of their own (`store/read.rs`), so a
//! read never waits behind another read or a write, and a read that runs past the read
//! limit stops with [`StoreError::Timeout`]. Opening runs the migrations under a file
//! lock, so any number of processes may open one data directory at once.
//! The boundary is this type's methods: a PostgreSQL backend would implement the same.

pub mod migrations;
pub mod lab;
mod read;
pub mod reservations;

pub use read::DEFAULT_READ_LIMIT;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use crate::clock::EpochMs;
use crate::model::DutTarget;
pub use crate::model::TaskKind;
use crate::outcome::{RunStatus, ABORTED};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database {path} has schema version {found}, newer than this Testbay knows ({known}); use a newer Testbay")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    #[error("migration {index} ({name}) failed: {source}")]
    Migration {
        index: usize,
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("cannot take the lock {path} to open the store: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("run {0} not found")]
    RunNotFound(String),
    /// A read ran past the store's read limit and was stopped.
    #[error("the query took longer than {limit_ms} ms and was stopped; narrow the filters and try again")]
    Timeout { limit_ms: u64 },
    /// A query the store refuses to run, with the key and why.
    #[error("{key}: {message}")]
    InvalidQuery { key: &'static str, message: String },
    /// The store is closing ([`Store::close_reads`]): reads are refused.
    #[error("the store is closing")]
    Closing,
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored JSON in {what} is invalid: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Longest [`RunQuery::text`]. Matching one text against a task message takes time
/// proportional to both lengths inside one SQLite step, which the read limit cannot
/// stop; with this bound a step stays short.
pub const MAX_SEARCH_CHARS: usize = 200;

/// A run as launched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct NewRun {
    pub id: String,
    pub pack_name: String,
    pub pack_version: String,
    pub content_hash: String,
    pub pack_dir: String,
    pub snapshot_dir: Option<String>,
    pub groups: Vec<String>,
    pub duts: Vec<DutTarget>,
    pub ats: Option<String>,
    /// Effective global parameters (pack defaults plus overrides).
    #[ts(type = "Record<string, unknown>")]
    pub params: Value,
    pub resource_mode: String,
    pub coverage_mode: String,
    pub status: RunStatus,
    pub reason: Option<String>,
    pub created_ms: EpochMs,
    pub est_run_time: f64,
}

/// One planned task occurrence, inserted at launch.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTaskRow {
    pub seq: u32,
    /// DUT name; `None` until assigned (split coverage).
    pub lane: Option<String>,
    pub task: String,
    pub kind: TaskKind,
    pub group: Option<String>,
    pub description: String,
    pub est_task_time: f64,
}

/// Everything known when a task occurrence is done.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFinish {
    pub lane: Option<String>,
    pub result: String,
    pub failure: bool,
    pub message: String,
    pub metadata: Option<Value>,
    pub raw_result: Option<String>,
    pub run_time: Option<f64>,
    pub run_time_delta: Option<f64>,
    pub started_ms: Option<EpochMs>,
    pub finished_ms: EpochMs,
    pub setup_ms: Option<i64>,
    pub main_ms: Option<i64>,
    pub teardown_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub log_truncated: bool,
    pub sub_results: Vec<NewSubResult>,
    /// The occurrence's files; `None` fields keep what [`Store::task_phase_started`]
    /// recorded.
    pub paths: TaskPaths,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewSubResult {
    pub name: String,
    pub description: String,
    pub result: String,
    pub failure: bool,
    pub message: String,
    pub metadata: Option<Value>,
}

/// Files of one task occurrence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct TaskPaths {
    pub task_dir: Option<String>,
    pub setup_log: Option<String>,
    pub main_log: Option<String>,
    pub teardown_log: Option<String>,
    pub artifacts_dir: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct RunRecord {
    pub id: String,
    pub pack_name: String,
    pub pack_version: String,
    pub content_hash: String,
    pub pack_dir: String,
    pub snapshot_dir: Option<String>,
    pub groups: Vec<String>,
    pub duts: Vec<DutTarget>,
    pub ats: Option<String>,
    #[ts(type = "Record<string, unknown>")]
    pub params: Value,
    pub resource_mode: String,
    pub coverage_mode: String,
    pub status: RunStatus,
    pub reason: Option<String>,
    pub created_ms: EpochMs,
    pub started_ms: Option<EpochMs>,
    pub finished_ms: Option<EpochMs>,
    pub est_run_time: f64,
    pub counts: RunCounts,
}

/// Per-run tallies, for listings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct RunCounts {
    pub total: u32,
    pub done: u32,
    /// Done with a result outside the run's `valid_result`; in an `errored` run, also
    /// every task whose result the store lacks (the run went to its end, so each one
    /// had a result, and a lost result is a failure).
    pub failures: u32,
    /// Count per result name.
    pub by_result: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct SubResultRecord {
    pub name: String,
    pub description: String,
    pub result: String,
    pub failure: bool,
    pub message: String,
    #[ts(type = "Record<string, unknown> | null")]
    pub metadata: Option<Value>,
}

/// State of a stored task occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum StoredTaskState {
    Pending,
    Running,
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct TaskRecord {
    #[ts(type = "number")]
    pub id: i64,
    pub run_id: String,
    pub seq: u32,
    pub lane: Option<String>,
    pub task: String,
    pub kind: TaskKind,
    pub group: Option<String>,
    pub description: String,
    pub state: StoredTaskState,
    pub result: Option<String>,
    pub failure: Option<bool>,
    pub message: Option<String>,
    #[ts(type = "Record<string, unknown> | null")]
    pub metadata: Option<Value>,
    pub raw_result: Option<String>,
    /// kissats Reporting timing, seconds.
    pub est_task_time: f64,
    pub run_time: Option<f64>,
    pub run_time_delta: Option<f64>,
    pub started_ms: Option<EpochMs>,
    pub finished_ms: Option<EpochMs>,
    pub setup_ms: Option<i64>,
    pub main_ms: Option<i64>,
    pub teardown_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Phase running now (while `state` is running).
    pub phase: Option<String>,
    pub paths: TaskPaths,
    pub log_truncated: bool,
    pub pgid: Option<i32>,
    pub sub_results: Vec<SubResultRecord>,
}

/// Sort key of the run listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum RunSort {
    #[default]
    Created,
    Pack,
    Status,
    Duration,
    Failures,
}

/// Filters, sort and page of the run listing. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
#[ts(export)]
pub struct RunQuery {
    pub pack: Option<String>,
    pub group: Option<String>,
    /// DUT name.
    pub dut: Option<String>,
    pub ats: Option<String>,
    pub status: Option<RunStatus>,
    /// Runs with at least one task with this result.
    pub result: Option<String>,
    /// Runs with at least one failure, and every `errored` run (a failure whatever its
    /// stored results say).
    pub failed_only: bool,
    pub from_ms: Option<EpochMs>,
    pub to_ms: Option<EpochMs>,
    /// Substring of the run id, pack name, reason, a task name or a task message; at most
    /// 200 characters (`MAX_SEARCH_CHARS`).
    pub text: Option<String>,
    pub sort: RunSort,
    /// Ascending instead of the default descending.
    pub ascending: bool,
    pub offset: u32,
    /// 0 means 50.
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct RunPage {
    /// Runs matching the filters, all pages.
    pub total: u32,
    pub runs: Vec<RunRecord>,
}

/// What [`Store::recover_interrupted`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct RecoveryReport {
    pub interrupted_runs: Vec<String>,
    pub aborted_tasks: u32,
    /// Leftover task processes killed.
    pub killed_processes: u32,
}

pub struct Store {
    /// The one write connection.
    conn: Mutex<Connection>,
    readers: read::Readers,
    path: PathBuf,
    /// A caller has promised a [`Store::commit_pending_results`] soon.
    commit_promised: AtomicBool,
    /// The write connection holds finished tasks' results not yet committed.
    uncommitted: AtomicBool,
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.commit_pending(&self.lock_conn());
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Open (creating if needed) `testbay.db` in `data_dir`.
    pub fn open_in(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: data_dir.to_path_buf(),
            source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
        })?;
        Self::open(&data_dir.join("testbay.db"))
    }

    /// Open (creating if needed) the database at `path` and bring its schema up to date.
    /// Opening and migrating hold an exclusive lock on `<path>.open.lock`: processes that
    /// open one database at once take turns, and each finds the schema up to date or
    /// brings it there.
    pub fn open(path: &Path) -> Result<Self> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let lock = OpenLock::take(path)?;
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        )
        .map_err(open_err)?;
        migrate(&mut conn, path)?;
        drop(lock);
        Ok(Self {
            conn: Mutex::new(conn),
            readers: read::Readers::new(path),
            path: path.to_path_buf(),
            commit_promised: Default::default(),
            uncommitted: Default::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The write connection, for the store's submodules. Keep the lock short. A finished
    /// task's result still waiting for its commit (see [`Store::finish_task`]) is
    /// committed first.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        let c = self.lock_conn();
        let _ = self.commit_pending(&c);
        c
    }

    fn lock_conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commit the write connection's open transaction, if any: the only one left open
    /// between calls is that of finished tasks' results waiting for their commit.
    /// Commit the open transaction, if any: the only one left open between calls is that
    /// of finished tasks' results waiting for their commit.
    fn commit_pending(&self, c: &Connection) -> rusqlite::Result<()> {
        self.uncommitted.store(false, Ordering::Release);
        if c.is_autocommit() {
            return Ok(());
        }
        c.prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]))
            .map(|_| ())
            .inspect_err(
                |e| tracing::error!(error = %e, "could not commit finished tasks' results"),
            )
    }

    /// Run `f` on a read connection, bounded by the read limit. Results finished but not
    /// yet committed are committed first when the writer is free, so reads through this
    /// store see them; a read never waits for the writer (while it is busy, the read sees
    /// what is committed, at most a few milliseconds older).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.uncommitted.load(Ordering::Acquire) {
            match self.conn.try_lock() {
                Ok(c) => {
                    let _ = self.commit_pending(&c);
                }
                Err(TryLockError::Poisoned(p)) => {
                    let _ = self.commit_pending(&p.into_inner());
                }
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.readers.read(f)
    }

    /// The longest a read may run before it stops with [`StoreError::Timeout`]
    /// ([`DEFAULT_READ_LIMIT`] unless set).
    pub fn set_read_limit(&self, limit: Duration) {
        self.readers.set_limit(limit);
    }

    /// Stop every read in progress (they end with [`StoreError::Closing`] within
    /// microseconds) and refuse new ones; writes go on. For a console about to exit, so
    /// that no request waits for a long query.
    pub fn close_reads(&self) {
        self.readers.close();
    }

    /// Commit finished tasks' results that still wait for it (the run calls this a few
    /// milliseconds after each task ends; any other use of the store does it too).
    pub fn commit_pending_results(&self) {
        let _ = self.commit_now();
    }

    /// [`Store::commit_pending_results`], saying whether the commit failed: the results
    /// it held are then not stored (or not yet: a later commit may still store them).
    pub fn commit_now(&self) -> Result<()> {
        self.commit_promised.store(false, Ordering::Release);
        Ok(self.commit_pending(&self.lock_conn())?)
    }

    /// Whether the caller should arrange a [`Store::commit_pending_results`] soon: `true`
    /// for the first caller since the last one, so one timer serves every run's results.
    pub fn promise_commit(&self) -> bool {
        !self.commit_promised.swap(true, Ordering::AcqRel)
    }

    /// Schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        self.read(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
    }

    /// Insert a run and its planned task occurrences in one transaction; returns the row id
    /// of each occurrence, in the order given. The run is owned by this process (for
    /// recovery).
    pub fn insert_run(&self, run: &NewRun, tasks: &[NewTaskRow]) -> Result<Vec<i64>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (owner_pid, owner_start) = own_identity();
        tx.execute(
            "INSERT INTO runs (id, pack_name, pack_version, content_hash, pack_dir, snapshot_dir,
                groups_json, duts_json, ats, params_json, resource_mode, coverage_mode, status,
                reason, created_ms, est_run_time, owner_pid, owner_start)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)",
            params![
                run.id,
                run.pack_name,
                run.pack_version,
                run.content_hash,
                run.pack_dir,
                run.snapshot_dir,
                to_json(&run.groups),
                to_json(&run.duts),
                run.ats,
                run.params.to_string(),
                run.resource_mode,
                run.coverage_mode,
                run.status.as_str(),
                run.reason,
                run.created_ms,
                run.est_run_time,
                owner_pid,
                owner_start,
            ],
        )?;
        let mut ids = Vec::with_capacity(tasks.len());
        {
            let mut stmt = tx.prepare(
                "INSERT INTO task_results (run_id, seq, lane, task, kind, grp, description, est_task_time)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
            )?;
            for t in tasks {
                stmt.execute(params![
                    run.id,
                    t.seq,
                    t.lane,
                    t.task,
                    t.kind.as_str(),
                    t.group,
                    t.description,
                    t.est_task_time
                ])?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    pub fn set_run_status(
        &self,
        id: &str,
        status: RunStatus,
        reason: Option<&str>,
        now: EpochMs,
    ) -> Result<()> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE runs SET status = ?2,
                reason = CASE WHEN ?2 = 'running' THEN ?3 ELSE COALESCE(?3, reason) END,
                started_ms = CASE WHEN ?2 = 'running' AND started_ms IS NULL THEN ?4 ELSE started_ms END,
                finished_ms = CASE WHEN ?5 THEN ?4 ELSE finished_ms END
             WHERE id = ?1",
            params![id, status.as_str(), reason, now, status.is_finished()],
        )?;
        if n == 0 {
            return Err(StoreError::RunNotFound(id.into()));
        }
        Ok(())
    }

    /// A phase of a task occurrence started: record lane, phase, paths and the process
    /// group (for recovery), and commit. The run calls this only for a phase still
    /// running a few milliseconds after its start; a shorter one's result carries the
    /// same facts.
    pub fn task_phase_started(
        &self,
        task_id: i64,
        lane: &str,
        phase: &str,
        started_ms: EpochMs,
        pgid: Option<i32>,
        paths: &TaskPaths,
    ) -> Result<()> {
        // Committed together with a finished task's result still waiting (if any).
        let c = self.lock_conn();
        c.prepare_cached(
            "UPDATE task_results SET state = 'running', lane = ?2, phase = ?3,
                started_ms = COALESCE(started_ms, ?4), pgid = ?5,
                task_dir = ?6, setup_log = ?7, main_log = ?8, teardown_log = ?9, artifacts_dir = ?10
             WHERE id = ?1",
        )?
        .execute(params![
            task_id,
            lane,
            phase,
            started_ms,
            pgid,
            paths.task_dir,
            paths.setup_log,
            paths.main_log,
            paths.teardown_log,
            paths.artifacts_dir
        ])?;
        self.commit_pending(&c)?;
        Ok(())
    }

    /// A task occurrence is done: result, timings and sub-results, all or nothing.
    ///
    /// The write is made at once but its commit waits for the next use of the store
    /// that commits: [`Store::commit_pending_results`], which the run calls a few
    /// milliseconds later (one commit for the results of those milliseconds), any read or
    /// other write, or a phase's start. Committing is the costliest part of a task's
    /// bookkeeping, and this takes it off the path between one task and the next. Reads through this store see the result at
    /// once; other processes see it at the commit. A console killed in between loses the
    /// results of that moment (recovery marks those tasks Aborted) — at most
    /// a few milliseconds' worth.
    pub fn finish_task(&self, task_id: i64, f: &TaskFinish) -> Result<()> {
        let c = self.lock_conn();
        if c.is_autocommit() {
            c.prepare_cached("BEGIN")?.execute([])?;
            self.uncommitted.store(true, Ordering::Release);
        }
        if f.sub_results.is_empty() {
            // One statement: a failure undoes it alone.
            return update_task_finish(&c, task_id, f);
        }
        // Several: a savepoint, so a failure undoes this task's writes and no other's.
        c.prepare_cached("SAVEPOINT finish_task")?.execute([])?;
        match finish_task_writes(&c, task_id, f) {
            Ok(()) => {
                c.prepare_cached("RELEASE finish_task")?.execute([])?;
                Ok(())
            }
            Err(e) => {
                let _ = c.execute_batch("ROLLBACK TO finish_task; RELEASE finish_task");
                Err(e)
            }
        }
    }

    /// Several occurrences done at once (Skipped, Blocked, Aborted), one transaction.
    pub fn finish_tasks(&self, items: &[(i64, TaskFinish)]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (id, f) in items {
            finish_task_writes(&tx, *id, f)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn get_run(&self, id: &str) -> Result<RunRecord> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {RUN_COLS} FROM runs r WHERE r.id = ?1"))?;
            let run = stmt
                .query_row([id], run_from_row)
                .optional()?
                .ok_or_else(|| StoreError::RunNotFound(id.into()))?;
            let mut runs = vec![run.map_err(|e| StoreError::Json {
                what: "runs",
                source: e,
            })?];
            fill_counts(conn, &mut runs)?;
            Ok(runs.pop().expect("one run"))
        })
    }

    /// Runs matching `q`, one page, newest first unless asked otherwise.
    pub fn list_runs(&self, q: &RunQuery) -> Result<RunPage> {
        let sql = ListSql::new(q)?;
        self.read(|conn| {
            let total: u32 =
                conn.query_row(&sql.count(), params_from_iter(sql.args.iter()), |r| {
                    r.get(0)
                })?;
            let mut stmt = conn.prepare(&sql.page())?;
            let rows = stmt.query_map(params_from_iter(sql.args.iter()), run_from_row)?;
            let mut runs = Vec::new();
            for r in rows {
                runs.push(r?.map_err(|e| StoreError::Json {
                    what: "runs",
                    source: e,
                })?);
            }
            fill_counts(conn, &mut runs)?;
            Ok(RunPage { total, runs })
        })
    }

    /// SQLite's plan for [`Store::list_runs`] with `q` (`EXPLAIN QUERY PLAN` of the count
    /// and of the page, one line per step), to check that a filter uses an index.
    pub fn list_runs_plan(&self, q: &RunQuery) -> Result<Vec<String>> {
        let sql = ListSql::new(q)?;
        self.read(|conn| {
            let mut plan = Vec::new();
            for s in [sql.count(), sql.page()] {
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {s}"))?;
                let rows =
                    stmt.query_map(params_from_iter(sql.args.iter()), |r| r.get::<_, String>(3))?;
                for r in rows {
                    plan.push(r?);
                }
            }
            Ok(plan)
        })
    }

    /// The task tree of one run, in plan order, with sub-results.
    pub fn run_tasks(&self, run_id: &str) -> Result<Vec<TaskRecord>> {
        self.read(|conn| run_tasks(conn, run_id))
    }

    /// At console start: runs left queued/running/stalled by a console that is no longer
    /// alive become `interrupted`; their unfinished tasks become `Aborted`; every process
    /// still carrying one of their `TESTBAY_RUN_ID`s in its environment is killed. Runs
    /// owned by a live console (another process on the same data dir) are left alone.
    /// Nothing already stored changes.
    pub fn recover_interrupted(&self, now: EpochMs) -> Result<RecoveryReport> {
        let mut report = RecoveryReport::default();
        let mut conn = self.conn();
        let candidates: Vec<(String, Option<i64>, Option<i64>)> = {
            let mut stmt = conn.prepare(
                "SELECT id, owner_pid, owner_start FROM runs
                 WHERE status IN ('queued', 'running', 'stalled') ORDER BY created_ms",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let dead: Vec<String> = candidates
            .into_iter()
            .filter(|(_, pid, start)| match (pid, start) {
                // Its console is alive (same pid, same start time): leave it alone.
                (Some(pid), Some(start)) => process_start_time(*pid as i32) != Some(*start as u64),
                _ => true,
            })
            .map(|(id, _, _)| id)
            .collect();
        if !dead.is_empty() {
            // Every process that carries one of these runs' TESTBAY_RUN_ID, whatever its
            // group: recorded groups, grandchildren, even ones that called setsid.
            report.killed_processes = kill_run_leftovers(&dead);
        }
        for run_id in dead {
            let tx = conn.transaction()?;
            let aborted = tx.execute(
                "UPDATE task_results SET state = 'done', result = ?2, failure = 1,
                    message = CASE WHEN state = 'running'
                        THEN 'the console exited while this task was running'
                        ELSE 'the console exited before this task ran' END,
                    finished_ms = ?3, pgid = NULL, phase = NULL
                 WHERE run_id = ?1 AND state != 'done'",
                params![run_id, ABORTED, now],
            )?;
            tx.execute(
                "UPDATE runs SET status = 'interrupted',
                    reason = 'the console running it exited' || CASE WHEN owner_pid IS NULL THEN '' ELSE ' (pid ' || owner_pid || ')' END,
                    finished_ms = ?2
                 WHERE id = ?1",
                params![run_id, now],
            )?;
            tx.commit()?;
            tracing::warn!(run_id = %run_id, aborted, "marked interrupted run");
            report.aborted_tasks += aborted as u32;
            report.interrupted_runs.push(run_id);
        }
        Ok(report)
    }
}

const RUN_COLS: &str =
    "r.id, r.pack_name, r.pack_version, r.content_hash, r.pack_dir, r.snapshot_dir,
    r.groups_json, r.duts_json, r.ats, r.params_json, r.resource_mode, r.coverage_mode, r.status,
    r.reason, r.created_ms, r.started_ms, r.finished_ms, r.est_run_time";

/// The SQL of one [`Store::list_runs`] call: its filters, order and page.
struct ListSql {
    where_sql: String,
    order: String,
    limit: u32,
    offset: u32,
    args: Vec<rusqlite::types::Value>,
}

impl ListSql {
    fn new(q: &RunQuery) -> Result<Self> {
        let mut wh: Vec<String> = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut arg = |v: rusqlite::types::Value| {
            args.push(v);
            format!("?{}", args.len())
        };
        use rusqlite::types::Value as V;
        if let Some(p) = &q.pack {
            wh.push(format!("r.pack_name = {}", arg(V::Text(p.clone()))));
        }
        if let Some(g) = &q.group {
            wh.push(format!(
                "EXISTS (SELECT 1 FROM json_each(r.groups_json) WHERE value = {})",
                arg(V::Text(g.clone()))
            ));
        }
        if let Some(d) = &q.dut {
            wh.push(format!(
                "EXISTS (SELECT 1 FROM json_each(r.duts_json) WHERE json_extract(value, '$.name') = {})",
                arg(V::Text(d.clone()))
            ));
        }
        if let Some(a) = &q.ats {
            wh.push(format!("r.ats = {}", arg(V::Text(a.clone()))));
        }
        if let Some(s) = q.status {
            wh.push(format!("r.status = {}", arg(V::Text(s.as_str().into()))));
        }
        if let Some(res) = &q.result {
            wh.push(format!(
                "EXISTS (SELECT 1 FROM task_results t WHERE t.run_id = r.id AND t.result = {})",
                arg(V::Text(res.clone()))
            ));
        }
        if q.failed_only {
            wh.push(
                "(r.status = 'errored'
                  OR EXISTS (SELECT 1 FROM task_results t WHERE t.run_id = r.id AND t.failure = 1))"
                    .into(),
            );
        }
        if let Some(f) = q.from_ms {
            wh.push(format!("r.created_ms >= {}", arg(V::Integer(f))));
        }
        if let Some(t) = q.to_ms {
            wh.push(format!("r.created_ms <= {}", arg(V::Integer(t))));
        }
        if let Some(text) = q.text.as_deref().filter(|t| !t.is_empty()) {
            let chars = text.chars().count();
            if chars > MAX_SEARCH_CHARS {
                return Err(StoreError::InvalidQuery {
                    key: "text",
                    message: format!(
                        "the search text has {chars} characters; at most {MAX_SEARCH_CHARS}"
                    ),
                });
            }
            let pat = format!(
                "%{}%",
                text.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            let p = arg(V::Text(pat));
            wh.push(format!(
                "(r.id LIKE {p} ESCAPE '\\' OR r.pack_name LIKE {p} ESCAPE '\\' OR r.reason LIKE {p} ESCAPE '\\'
                  OR EXISTS (SELECT 1 FROM task_results t WHERE t.run_id = r.id
                             AND (t.task LIKE {p} ESCAPE '\\' OR t.message LIKE {p} ESCAPE '\\')))"
            ));
        }
        let where_sql = if wh.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", wh.join(" AND "))
        };
        let dir = if q.ascending { "ASC" } else { "DESC" };
        let order = match q.sort {
            RunSort::Created => format!("r.created_ms {dir}, r.id {dir}"),
            RunSort::Pack => format!("r.pack_name {dir}, r.created_ms DESC"),
            RunSort::Status => format!("r.status {dir}, r.created_ms DESC"),
            RunSort::Duration => format!(
                "(COALESCE(r.finished_ms, r.started_ms) - r.started_ms) {dir}, r.created_ms DESC"
            ),
            // As `RunCounts::failures` counts them.
            RunSort::Failures => format!(
                "(SELECT count(*) FROM task_results t WHERE t.run_id = r.id
                   AND (t.failure = 1 OR (r.status = 'errored' AND t.state != 'done'))) {dir},
                 r.created_ms DESC"
            ),
        };
        let limit = if q.limit == 0 { 50 } else { q.limit.min(1000) };
        Ok(Self {
            where_sql,
            order,
            limit,
            offset: q.offset,
            args,
        })
    }

    fn count(&self) -> String {
        format!("SELECT count(*) FROM runs r {}", self.where_sql)
    }

    fn page(&self) -> String {
        format!(
            "SELECT {RUN_COLS} FROM runs r {} ORDER BY {} LIMIT {} OFFSET {}",
            self.where_sql, self.order, self.limit, self.offset
        )
    }
}

type JsonResult<T> = std::result::Result<T, serde_json::Error>;

fn run_from_row(r: &Row<'_>) -> rusqlite::Result<JsonResult<RunRecord>> {
    let groups: String = r.get(6)?;
    let duts: String = r.get(7)?;
    let params: String = r.get(9)?;
    let status: String = r.get(12)?;
    let build = || -> JsonResult<RunRecord> {
        Ok(RunRecord {
            id: r.get(0).unwrap_or_default(),
            pack_name: r.get(1).unwrap_or_default(),
            pack_version: r.get(2).unwrap_or_default(),
            content_hash: r.get(3).unwrap_or_default(),
            pack_dir: r.get(4).unwrap_or_default(),
            snapshot_dir: r.get(5).unwrap_or_default(),
            groups: serde_json::from_str(&groups)?,
            duts: serde_json::from_str(&duts)?,
            ats: r.get(8).unwrap_or_default(),
            params: serde_json::from_str(&params)?,
            resource_mode: r.get(10).unwrap_or_default(),
            coverage_mode: r.get(11).unwrap_or_default(),
            status: RunStatus::parse(&status).unwrap_or(RunStatus::Interrupted),
            reason: r.get(13).unwrap_or_default(),
            created_ms: r.get(14).unwrap_or_default(),
            started_ms: r.get(15).unwrap_or_default(),
            finished_ms: r.get(16).unwrap_or_default(),
            est_run_time: r.get(17).unwrap_or_default(),
            counts: RunCounts::default(),
        })
    };
    Ok(build())
}

fn fill_counts(conn: &Connection, runs: &mut [RunRecord]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT state, result, failure, count(*) FROM task_results WHERE run_id = ?1
         GROUP BY state, result, failure",
    )?;
    for run in runs {
        let rows = stmt.query_map([&run.id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, u32>(3)?,
            ))
        })?;
        let mut c = RunCounts::default();
        for row in rows {
            let (state, result, failure, n) = row?;
            c.total += n;
            if state != "done" && run.status == RunStatus::Errored {
                // A row an errored run never finished: its result was lost.
                c.failures += n;
            }
            if state == "done" {
                c.done += n;
                if failure == Some(1) {
                    c.failures += n;
                }
                if let Some(res) = result {
                    *c.by_result.entry(res).or_default() += n;
                }
            }
        }
        run.counts = c;
    }
    Ok(())
}

fn run_tasks(conn: &Connection, run_id: &str) -> Result<Vec<TaskRecord>> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1)",
        [run_id],
        |r| r.get(0),
    )?;
    if !exists {
        return Err(StoreError::RunNotFound(run_id.into()));
    }
    let mut stmt = conn.prepare(
        "SELECT id, run_id, seq, lane, task, kind, grp, description, state, result, failure,
                message, metadata_json, raw_result, est_task_time, run_time, run_time_delta,
                started_ms, finished_ms, setup_ms, main_ms, teardown_ms, exit_code, signal, phase,
                task_dir, setup_log, main_log, teardown_log, artifacts_dir, log_truncated, pgid
         FROM task_results WHERE run_id = ?1 ORDER BY seq",
    )?;
    let mut tasks: Vec<TaskRecord> = stmt
        .query_map([run_id], |r| {
            Ok(TaskRecord {
                id: r.get(0)?,
                run_id: r.get(1)?,
                seq: r.get(2)?,
                lane: r.get(3)?,
                task: r.get(4)?,
                kind: TaskKind::parse(&r.get::<_, String>(5)?).unwrap_or(TaskKind::Test),
                group: r.get(6)?,
                description: r.get(7)?,
                state: match r.get::<_, String>(8)?.as_str() {
                    "running" => StoredTaskState::Running,
                    "done" => StoredTaskState::Done,
                    _ => StoredTaskState::Pending,
                },
                result: r.get(9)?,
                failure: r.get::<_, Option<i64>>(10)?.map(|v| v != 0),
                message: r.get(11)?,
                metadata: parse_opt_json(r.get(12)?),
                raw_result: r.get(13)?,
                est_task_time: r.get(14)?,
                run_time: r.get(15)?,
                run_time_delta: r.get(16)?,
                started_ms: r.get(17)?,
                finished_ms: r.get(18)?,
                setup_ms: r.get(19)?,
                main_ms: r.get(20)?,
                teardown_ms: r.get(21)?,
                exit_code: r.get(22)?,
                signal: r.get(23)?,
                phase: r.get(24)?,
                paths: TaskPaths {
                    task_dir: r.get(25)?,
                    setup_log: r.get(26)?,
                    main_log: r.get(27)?,
                    teardown_log: r.get(28)?,
                    artifacts_dir: r.get(29)?,
                },
                log_truncated: r.get::<_, i64>(30)? != 0,
                pgid: r.get(31)?,
                sub_results: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut sub = conn.prepare(
        "SELECT s.task_result_id, s.name, s.description, s.result, s.failure, s.message, s.metadata_json
         FROM sub_results s JOIN task_results t ON t.id = s.task_result_id
         WHERE t.run_id = ?1 ORDER BY s.task_result_id, s.idx",
    )?;
    let mut by_id: BTreeMap<i64, Vec<SubResultRecord>> = BTreeMap::new();
    let rows = sub.query_map([run_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            SubResultRecord {
                name: r.get(1)?,
                description: r.get(2)?,
                result: r.get(3)?,
                failure: r.get::<_, i64>(4)? != 0,
                message: r.get(5)?,
                metadata: parse_opt_json(r.get(6)?),
            },
        ))
    })?;
    for row in rows {
        let (id, s) = row?;
        by_id.entry(id).or_default().push(s);
    }
    for t in &mut tasks {
        if let Some(s) = by_id.remove(&t.id) {
            t.sub_results = s;
        }
    }
    Ok(tasks)
}

fn update_task_finish(conn: &Connection, task_id: i64, f: &TaskFinish) -> Result<()> {
    conn.prepare_cached(
        "UPDATE task_results SET state = 'done', lane = COALESCE(?2, lane), result = ?3, failure = ?4,
            message = ?5, metadata_json = ?6, raw_result = ?7, run_time = ?8, run_time_delta = ?9,
            started_ms = COALESCE(?10, started_ms), finished_ms = ?11, setup_ms = ?12, main_ms = ?13,
            teardown_ms = ?14, exit_code = ?15, signal = ?16, log_truncated = ?17, pgid = NULL,
            phase = NULL, task_dir = COALESCE(?18, task_dir), setup_log = COALESCE(?19, setup_log),
            main_log = COALESCE(?20, main_log), teardown_log = COALESCE(?21, teardown_log),
            artifacts_dir = COALESCE(?22, artifacts_dir)
         WHERE id = ?1",
    )?
    .execute(params![
            task_id,
            f.lane,
            f.result,
            f.failure,
            f.message,
            f.metadata.as_ref().map(|m| m.to_string()),
            f.raw_result,
            f.run_time,
            f.run_time_delta,
            f.started_ms,
            f.finished_ms,
            f.setup_ms,
            f.main_ms,
            f.teardown_ms,
            f.exit_code,
            f.signal,
            f.log_truncated,
            f.paths.task_dir,
            f.paths.setup_log,
            f.paths.main_log,
            f.paths.teardown_log,
            f.paths.artifacts_dir,
        ])?;
    Ok(())
}

/// A finished task's row and sub-results, inside the caller's transaction.
fn finish_task_writes(conn: &Connection, task_id: i64, f: &TaskFinish) -> Result<()> {
    update_task_finish(conn, task_id, f)?;
    if !f.sub_results.is_empty() {
        conn.execute(
            "DELETE FROM sub_results WHERE task_result_id = ?1",
            [task_id],
        )?;
        let mut stmt = conn.prepare_cached(
            "INSERT INTO sub_results (task_result_id, idx, name, description, result, failure, message, metadata_json)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
        )?;
        for (i, s) in f.sub_results.iter().enumerate() {
            stmt.execute(params![
                task_id,
                i as i64,
                s.name,
                s.description,
                s.result,
                s.failure,
                s.message,
                s.metadata.as_ref().map(|m| m.to_string())
            ])?;
        }
    }
    Ok(())
}

fn parse_opt_json(s: Option<String>) -> Option<Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

/// Bring the schema up to date, one migration per transaction. Each transaction takes the
/// write lock first (`BEGIN IMMEDIATE`) and reads the version inside it, so even a process
/// that does not take [`OpenLock`] never applies a migration twice.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
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
                source,
            })?;
        tx.commit()?;
        tracing::info!(index, name = m.name, "applied store migration");
    }
}

/// An exclusive `flock` on `<db>.open.lock`, held while a process opens and migrates the
/// database; released when dropped (or when the process dies).
struct OpenLock {
    _file: std::fs::File,
}

impl OpenLock {
    /// How long to wait for another process to finish opening before giving up.
    const PATIENCE: Duration = Duration::from_secs(60);

    fn take(db: &Path) -> Result<Self> {
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

/// This process's pid and start time, which together identify it across pid reuse.
fn own_identity() -> (i64, Option<i64>) {
    let pid = std::process::id() as i32;
    (pid as i64, process_start_time(pid).map(|t| t as i64))
}

/// Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat); `None`
/// once it has exited, even while its parent has not reaped it yet (a zombie).
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; fields after the
    // last ')' are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Process group of `pid` (field 5 of /proc/<pid>/stat).
fn process_group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Kill every process whose environment says it belongs to one of `run_ids`
/// (`TESTBAY_RUN_ID`, set for every task phase and inherited by what it starts). Returns
/// how many were killed. Processes of other users, or without that variable, are never
/// touched.
pub(crate) fn kill_run_leftovers(run_ids: &[String]) -> u32 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let markers: Vec<Vec<u8>> = run_ids
        .iter()
        .map(|id| format!("TESTBAY_RUN_ID={id}").into_bytes())
        .collect();
    let me = std::process::id() as i32;
    let mut killed = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env
            .split(|&b| b == 0)
            .any(|kv| markers.iter().any(|m| kv == m.as_slice()))
        {
            // SAFETY: plain syscall on a pid we just identified.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                tracing::warn!(pid, pgid = ?process_group_of(pid), "killed leftover task process");
                killed += 1;
            }
        }
    }
    killed
}
