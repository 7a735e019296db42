//! The store on SQLite: rusqlite with WAL and versioned migrations (`migrations`).
//!
//! Writes go through one connection behind a mutex: every write is short (no fsync per
//! commit with `synchronous=NORMAL` in WAL mode), so callers on async threads may call in
//! directly. Reads each take a read-only connection of their own (`read`), so a read
//! never waits behind another read or a write, and a read that runs past the read limit
//! stops with [`StoreError::Timeout`]. Opening runs the migrations under a file lock
//! (`open`), so any number of processes may open one data directory at once.
//!
//! A finished task's result is written inside a transaction left open on the write
//! connection; whatever next takes the connection commits it first (`conn`), and so does
//! a read that finds the writer free.
//!
//! Bulk writes (`finish_tasks`, a run's insert) are one transaction each (`batch`:
//! multi-row inserts, the tally triggers paused and each run counted once, `tally`).
//!
//! Durability: WAL with `synchronous=NORMAL`. A committed write (a whole batch, or
//! nothing of it) survives the process being killed at any moment. A power cut or an OS
//! crash keeps the database consistent but can lose the commits made since the WAL was
//! last synced, which SQLite does at each checkpoint (every 4,000 pages, 16 MiB of WAL):
//! the last seconds of results; recovery then finds those tasks unfinished and marks
//! them Aborted.

mod batch;
mod history;
pub mod migrations;
mod open;
mod read;
mod runs;
mod tally;
mod tasks;
pub mod lab;
pub mod book;
mod book_lock;
pub mod webhooks;
pub mod health;
pub mod access;
pub mod packs;
mod queue;
pub mod retention;

pub use book::SqliteBookStore;
pub use read::DEFAULT_READ_LIMIT;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use rusqlite::Connection;
use serde::Serialize;
use serde_json::Value;

use crate::clock::EpochMs;
use crate::lab::{Lab, LabFile};
use crate::measure::Measurement;
use crate::outcome::RunStatus;
use crate::store::{
    Baseline, BookLock, BookStore, FiringRecord, MeasurementPoint, MeasurementQuery, NewRun,
    NewTaskRow, QueuedRunRecord, RecoveryReport, Result, RunOwner, RunPage, RunQuery, RunRecord,
    ScheduleRecord, Store, StoreError, TaskFinish, TaskHistoryEntry, TaskHistoryQuery, TaskPaths,
    TaskRecord, YieldRow,
};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

pub struct SqliteStore {
    /// The one write connection.
    conn: Mutex<Connection>,
    readers: read::Readers,
    path: PathBuf,
    /// Recorded as the owner of every run this store inserts.
    owner: RunOwner,
    /// A caller has promised a [`Store::commit_now`] soon.
    commit_promised: AtomicBool,
    /// The write connection holds finished tasks' results not yet committed.
    uncommitted: AtomicBool,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        let _ = self.commit_pending(&self.lock_conn());
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Open (creating if needed) `testbay.db` in `data_dir`.
    pub fn open_in(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: data_dir.to_path_buf(),
            source: e.into(),
        })?;
        Self::open(&data_dir.join("testbay.db"))
    }

    /// Open (creating if needed) the database at `path` and bring its schema up to date.
    /// Opening and migrating hold an exclusive lock on `<path>.open.lock`: processes that
    /// open one database at once take turns, and each finds the schema up to date or
    /// brings it there. Runs it inserts are owned by this process.
    pub fn open(path: &Path) -> Result<Self> {
        let open_err = |source: rusqlite::Error| StoreError::Open {
            path: path.to_path_buf(),
            source: source.into(),
        };
        let lock = open::OpenLock::take(path)?;
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        // `auto_vacuum` first: it takes effect on a new database only (before its first
        // table); an older one switches at its first prune (`sqlite::retention`).
        // Statement journals (a savepoint's, a statement's that fires triggers) in memory,
        // not in a temp file written page by page; 32 MiB of page cache for the writer,
        // whose indexes outgrow the default 2 MiB long before a million results; the WAL
        // checkpointed every 4,000 pages (16 MiB) rather than 1,000, so a hot index page
        // is copied (and the database synced) a quarter as often.
        conn.execute_batch(
            "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-32768; PRAGMA wal_autocheckpoint=4000;",
        )
        .map_err(open_err)?;
        open::migrate(&mut conn, path)?;
        drop(lock);
        Ok(Self {
            conn: Mutex::new(conn),
            readers: read::Readers::new(path),
            path: path.to_path_buf(),
            owner: RunOwner::this_process(),
            commit_promised: Default::default(),
            uncommitted: Default::default(),
        })
    }

    /// Record `owner` as the owner of the runs this store inserts from now on (tests
    /// stand in for a console that died).
    pub fn owned_by(mut self, owner: RunOwner) -> Self {
        self.owner = owner;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        self.read(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
    }

    /// SQLite's plan for [`Store::list_runs`] with `q` (`EXPLAIN QUERY PLAN` of the count
    /// and of the page, and for a page past the first of the unfiltered listing by
    /// creation, of the reverse page it is read as when deep; one line per step), to
    /// check that a filter uses an index.
    pub fn list_runs_plan(&self, q: &RunQuery) -> Result<Vec<String>> {
        let sql = runs::ListSql::new(q)?;
        self.read(|conn| runs::list_plan(conn, &sql))
    }

    /// SQLite's plan (`EXPLAIN QUERY PLAN`, one line per step) of each query of the
    /// results-across-runs reads, by name, to check that each starts from an index.
    pub fn history_plans(&self) -> Result<Vec<(&'static str, Vec<String>)>> {
        self.read(|conn| {
            history::PLANNED
                .iter()
                .map(|(name, sql)| Ok((*name, history::plan(conn, sql)?)))
                .collect()
        })
    }

    /// The write connection. Keep the lock short. A finished task's result still waiting
    /// for its commit (see [`Store::finish_task`]) is committed first.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        let c = self.lock_conn();
        let _ = self.commit_pending(&c);
        c
    }

    fn lock_conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commit the write connection's open transaction, if any: the only one left open
    /// between calls is that of finished tasks' results waiting for their commit.
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
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
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
}

impl Store for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn lock_book(&self, who: &str) -> Result<Option<Box<dyn BookLock>>> {
        book_lock::lock(&self.path, who)
    }

    fn book_owner(&self) -> Option<String> {
        book_lock::owner(&self.path)
    }

    fn insert_run(&self, run: &NewRun, tasks: &[NewTaskRow]) -> Result<Vec<i64>> {
        runs::insert(&mut self.conn(), run, tasks, self.owner)
    }

    fn set_run_status(
        &self,
        id: &str,
        status: RunStatus,
        reason: Option<&str>,
        now: EpochMs,
    ) -> Result<()> {
        runs::set_status(&self.conn(), id, status, reason, now)
    }

    fn get_run(&self, id: &str) -> Result<RunRecord> {
        self.read(|conn| runs::get(conn, id))
    }

    fn list_runs(&self, q: &RunQuery) -> Result<RunPage> {
        let sql = runs::ListSql::new(q)?;
        self.read(|conn| runs::list(conn, &sql))
    }

    fn run_tasks(&self, run_id: &str) -> Result<Vec<TaskRecord>> {
        self.read(|conn| tasks::of_run(conn, run_id))
    }

    fn task_phase_started(
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
        tasks::phase_started(&c, task_id, lane, phase, started_ms, pgid, paths)?;
        self.commit_pending(&c)?;
        Ok(())
    }

    fn finish_task(&self, task_id: i64, f: &TaskFinish) -> Result<()> {
        let c = self.lock_conn();
        if c.is_autocommit() {
            // IMMEDIATE: the write lock first. A task's first statement may be a read (its
            // run's folder), and a read transaction of WAL cannot become a write one once
            // another connection has committed: that fails at once, whatever the busy
            // timeout.
            c.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
            self.uncommitted.store(true, Ordering::Release);
        }
        if f.sub_results.is_empty()
            && f.attempts.is_empty()
            && f.measurements.is_empty()
            && f.sections.is_empty()
        {
            // One statement: a failure undoes it alone.
            return tasks::update_finish(&c, task_id, f);
        }
        // Several: a savepoint, so a failure undoes this task's writes and no other's.
        c.prepare_cached("SAVEPOINT finish_task")?.execute([])?;
        match batch::finish(&c, [(task_id, f)]) {
            Ok(_) => {
                c.prepare_cached("RELEASE finish_task")?.execute([])?;
                Ok(())
            }
            Err(e) => {
                let _ = c.execute_batch("ROLLBACK TO finish_task; RELEASE finish_task");
                Err(e)
            }
        }
    }

    fn finish_tasks(&self, items: &[(i64, TaskFinish)]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        // IMMEDIATE, as in `finish_task`: the batch may read before it writes.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // The tallies once per run for the whole batch, not once per row.
        tally::pause(&tx)?;
        let runs = batch::finish(&tx, items.iter().map(|(id, f)| (*id, f)))?;
        tally::recount(&tx, runs.iter().map(String::as_str))?;
        tx.commit()?;
        Ok(())
    }

    fn commit_now(&self) -> Result<()> {
        self.commit_promised.store(false, Ordering::Release);
        Ok(self.commit_pending(&self.lock_conn())?)
    }

    fn promise_commit(&self) -> bool {
        !self.commit_promised.swap(true, Ordering::AcqRel)
    }

    fn add_measurements(
        &self,
        task_id: i64,
        sub_result: Option<&str>,
        measurements: &[Measurement],
    ) -> Result<()> {
        if measurements.is_empty() {
            return Ok(());
        }
        let c = self.lock_conn();
        if c.is_autocommit() {
            c.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
            self.uncommitted.store(true, Ordering::Release);
        }
        c.prepare_cached("SAVEPOINT add_measurements")?
            .execute([])?;
        match history::insert(&c, task_id, sub_result, measurements) {
            Ok(()) => {
                c.prepare_cached("RELEASE add_measurements")?.execute([])?;
                Ok(())
            }
            Err(e) => {
                let _ = c.execute_batch("ROLLBACK TO add_measurements; RELEASE add_measurements");
                Err(e)
            }
        }
    }

    fn task_history(&self, q: &TaskHistoryQuery) -> Result<Vec<TaskHistoryEntry>> {
        self.read(|conn| history::task_history(conn, q))
    }

    fn measurement_history(&self, q: &MeasurementQuery) -> Result<Vec<MeasurementPoint>> {
        self.read(|conn| history::measurement_history(conn, q))
    }

    fn measurement_yield(&self, pack: &str, last_runs: u32) -> Result<Vec<YieldRow>> {
        self.read(|conn| history::measurement_yield(conn, pack, last_runs))
    }

    fn recent_results(
        &self,
        pack: &str,
        window: u32,
        most_runs: u32,
    ) -> Result<Vec<TaskHistoryEntry>> {
        self.read(|conn| history::recent_results(conn, pack, window, most_runs))
    }

    fn run_packs(&self) -> Result<Vec<String>> {
        self.read(history::packs)
    }

    fn pin_baseline(
        &self,
        run_id: &str,
        dut_model: Option<&str>,
        now: EpochMs,
    ) -> Result<Baseline> {
        history::pin_baseline(&self.conn(), run_id, dut_model, now)
    }

    fn unpin_baseline(&self, pack: &str, dut_model: Option<&str>) -> Result<bool> {
        history::unpin_baseline(&self.conn(), pack, dut_model)
    }

    fn baselines(&self, pack: Option<&str>) -> Result<Vec<Baseline>> {
        self.read(|conn| history::baselines(conn, pack))
    }

    fn interrupted_runs(&self) -> Result<Vec<String>> {
        self.read(runs::interrupted)
    }

    fn mark_interrupted(&self, run_ids: &[String], now: EpochMs) -> Result<RecoveryReport> {
        runs::mark_interrupted(&mut self.conn(), run_ids, now)
    }

    fn set_read_limit(&self, limit: Duration) {
        self.readers.set_limit(limit);
    }

    fn close_reads(&self) {
        self.readers.close();
    }

    fn save_lab(&self, lab: &Lab, now: EpochMs) -> Result<()> {
        lab::save_lab(&mut self.conn(), &lab.file.to_string_lossy(), &lab.def, now)
    }

    fn stored_lab(&self) -> Result<Option<(String, EpochMs, LabFile)>> {
        self.read(lab::load_lab)
    }

    fn open_book_store(&self) -> Result<Box<dyn BookStore>> {
        Ok(Box::new(SqliteBookStore::open(&self.path)?))
    }

    fn open_webhook_store(&self) -> Result<Box<dyn crate::store::WebhookStore>> {
        Ok(Box::new(webhooks::SqliteWebhookStore::open(&self.path)?))
    }

    fn open_health_store(&self) -> Result<Box<dyn crate::store::HealthStore>> {
        Ok(Box::new(health::SqliteHealthStore::open(&self.path)?))
    }

    fn open_access_store(&self) -> Result<Box<dyn crate::store::AccessStore>> {
        Ok(Box::new(access::SqliteAccessStore::open(&self.path)?))
    }

    fn open_pack_store(&self) -> Result<Box<dyn crate::store::PackStore>> {
        Ok(Box::new(packs::SqlitePackStore::open(&self.path)?))
    }

    fn open_retention_store(&self) -> Result<Box<dyn crate::store::retention::RetentionStore>> {
        Ok(Box::new(retention::SqliteRetentionStore::open(&self.path)?))
    }

    fn queue_put(&self, run: &QueuedRunRecord) -> Result<()> {
        queue::put(&self.conn(), run)
    }

    fn queue_remove(&self, run_id: &str) -> Result<bool> {
        queue::remove(&self.conn(), run_id)
    }

    fn queue_list(&self) -> Result<Vec<QueuedRunRecord>> {
        self.read(queue::list)
    }

    fn queue_signature(&self) -> Result<(i64, i64)> {
        self.read(queue::signature)
    }

    fn schedule_put(&self, schedule: &ScheduleRecord) -> Result<()> {
        queue::schedule_put(&self.conn(), schedule)
    }

    fn schedule_remove(&self, id: &str) -> Result<bool> {
        queue::schedule_remove(&self.conn(), id)
    }

    fn schedule_list(&self) -> Result<Vec<ScheduleRecord>> {
        self.read(queue::schedule_list)
    }

    fn schedule_firing_add(&self, firing: &FiringRecord) -> Result<()> {
        queue::firing_add(&self.conn(), firing)
    }

    fn schedule_firings(&self, id: &str, limit: u32) -> Result<Vec<FiringRecord>> {
        self.read(|c| queue::firings(c, id, limit))
    }
}

fn parse_opt_json(s: Option<String>) -> Option<Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}
