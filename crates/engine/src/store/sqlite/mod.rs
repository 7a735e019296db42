//! The store on SQLite: rusqlite with WAL and versioned migrations (`migrations`).
//!
//! Writes go through one connection behind a mutex (`writer`): every write is short (no
//! fsync per commit with `synchronous=NORMAL` in WAL mode), so callers on async threads
//! may call in directly. Reads each take a read-only connection of their own (`read`), so a
//! read never waits behind another read, nor behind a write (except the one write in
//! progress while others wait for their commit, see below), and a read that runs past the
//! read limit stops with [`StoreError::Timeout`]. Opening runs the migrations under a file lock
//! (`open`), so any number of processes may open one data directory at once.
//!
//! Group commit (`writer`): finished tasks' results and measurements join one transaction
//! left open on the write connection (a write joining it in a savepoint of its own), committed
//! together at `commit_now` (the run calls it within a few milliseconds), by a read
//! through the store, or at most `writer::GROUP_WINDOW` (25 ms) later. Every other write
//! commits the group with it, at once: a run's insert and status, a phase's start (its
//! process group, which recovery kills), the lab, the queue, schedules, baselines,
//! recovery's marks. The window is short because the group holds SQLite's write lock:
//! the stores opened beside this one (book, health, audit) wait for it.
//!
//! Bulk writes (`finish_tasks`, a run's insert) are one write each (`batch`: multi-row
//! inserts, the tally triggers paused and each run counted once, `tally`).
//!
//! Durability: WAL with `synchronous=NORMAL`. A committed write (a whole batch, or
//! nothing of it) survives the process being killed at any moment; a console killed
//! before a group's commit loses that group's results (recovery finds those tasks
//! unfinished and marks them Aborted). A power cut or an OS crash keeps the
//! database consistent but can lose the commits made since the WAL was last synced,
//! which SQLite does at each checkpoint (`checkpoint`, at most every 250 ms): the last
//! seconds of results; recovery then finds those tasks unfinished and marks them Aborted.

mod batch;
mod checkpoint;
mod history;
pub mod migrations;
mod open;
mod read;
mod runs;
mod sub_results;
mod tally;
mod tasks;
mod writer;
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
use std::time::Duration;

use rusqlite::Connection;
use serde::Serialize;
use serde_json::Value;

use crate::clock::EpochMs;
use crate::lab::{Lab, LabFile};
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
    /// Dropped before the writer: the last connection to close checkpoints the WAL and
    /// removes its file, which a read-only one cannot do.
    readers: read::Readers,
    /// The one write connection and its group of writes.
    writer: writer::Writer,
    path: PathBuf,
    /// Recorded as the owner of every run this store inserts.
    owner: RunOwner,
    /// A caller has promised a [`Store::commit_now`] soon.
    commit_promised: AtomicBool,
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
        // table); an older one switches at its first prune (`sqlite::retention`). 32 MiB
        // of page cache for the writer, whose indexes outgrow the default 2 MiB long
        // before a million results; the WAL checkpointed by a thread of its own
        // (`checkpoint`), the writer's automatic checkpoint at 16,000 pages (64 MiB) only a
        // backstop; the WAL file cut back to 64 MiB once checkpointed
        // (`journal_size_limit`), rather than keeping the size of the largest transaction
        // it ever held (a migration, a prune) while the store is open.
        conn.execute_batch(
            "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-32768; PRAGMA wal_autocheckpoint=16000; PRAGMA journal_size_limit=67108864;",
        )
        .map_err(open_err)?;
        // Migrations with temporary storage in files: a migration's statement journal and
        // sorts can be as large as the tables it rewrites (a million task results: 600 MB
        // held in memory). Then statement journals (a savepoint's, a statement's that fires
        // triggers) in memory, not in a temp file written page by page.
        open::migrate(&mut conn, path)?;
        conn.execute_batch("PRAGMA temp_store=MEMORY;")
            .map_err(open_err)?;
        // Room for every statement a batch prepares (a multi-row insert per chunk size),
        // so none is parsed again.
        conn.set_prepared_statement_cache_capacity(256);
        drop(lock);
        Ok(Self {
            readers: read::Readers::new(path),
            writer: writer::Writer::new(conn, path),
            path: path.to_path_buf(),
            owner: RunOwner::this_process(),
            commit_promised: Default::default(),
        })
    }

    /// Record `owner` as the owner of the runs this store inserts from now on (tests
    /// stand in for a console that died).
    pub fn owned_by(mut self, owner: RunOwner) -> Self {
        self.owner = owner;
        self
    }

    /// A store of its own connection beside this one (book, health, audit…), opened
    /// with `open` once the open group is committed: its first write would otherwise wait
    /// on the group's lock, and its reads would not see the group.
    fn beside<T>(&self, open: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
        self.writer.commit()?;
        open(&self.path)
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

    /// Run `f` on a read connection, bounded by the read limit. Writes waiting for their
    /// commit are committed first, so a read through this store sees every write that
    /// returned before it; a read never waits behind another read, and behind the writer
    /// only while writes wait for their commit (for the one write in progress, never one
    /// that began after the read).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.writer.commit_for_read();
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
        // At once: a launched run is there for every connection and process (the book's
        // owner, another console, the CLI) as soon as its id is known.
        self.writer.now(|c| runs::insert(c, run, tasks, self.owner))
    }

    fn set_run_status(
        &self,
        id: &str,
        status: RunStatus,
        reason: Option<&str>,
        now: EpochMs,
    ) -> Result<()> {
        self.writer
            .now(|c| runs::set_status(c, id, status, reason, now))
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
        // At once, and the group with it: recovery kills the process group it records.
        self.writer
            .now(|c| tasks::phase_started(c, task_id, lane, phase, started_ms, pgid, paths))
    }

    fn finish_task(&self, task_id: i64, f: &TaskFinish) -> Result<()> {
        self.writer.group(|c| {
            if f.sub_results.is_empty()
                && f.attempts.is_empty()
                && f.measurements.is_empty()
                && f.sections.is_empty()
            {
                return tasks::update_finish(c, task_id, f);
            }
            batch::finish(c, [(task_id, f)]).map(drop)
        })
    }

    fn finish_tasks(&self, items: &[(i64, TaskFinish)]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.writer.group(|c| {
            // The tallies once per run for the whole batch, not once per row.
            tally::pause(c)?;
            let runs = batch::finish(c, items.iter().map(|(id, f)| (*id, f)))?;
            tally::recount(c, runs.iter().map(String::as_str))
        })
    }

    fn commit_now(&self) -> Result<()> {
        self.commit_promised.store(false, Ordering::Release);
        self.writer.commit()
    }

    fn promise_commit(&self) -> bool {
        !self.commit_promised.swap(true, Ordering::AcqRel)
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
        self.writer
            .now(|c| history::pin_baseline(c, run_id, dut_model, now))
    }

    fn unpin_baseline(&self, pack: &str, dut_model: Option<&str>) -> Result<bool> {
        self.writer
            .now(|c| history::unpin_baseline(c, pack, dut_model))
    }

    fn baselines(&self, pack: Option<&str>) -> Result<Vec<Baseline>> {
        self.read(|conn| history::baselines(conn, pack))
    }

    fn interrupted_runs(&self) -> Result<Vec<String>> {
        self.read(runs::interrupted)
    }

    fn mark_interrupted(&self, run_ids: &[String], now: EpochMs) -> Result<RecoveryReport> {
        self.writer.now(|c| runs::mark_interrupted(c, run_ids, now))
    }

    fn set_read_limit(&self, limit: Duration) {
        self.readers.set_limit(limit);
    }

    fn close_reads(&self) {
        self.readers.close();
    }

    fn save_lab(&self, lab: &Lab, now: EpochMs) -> Result<()> {
        self.writer
            .now(|c| lab::save_lab(c, &lab.file.to_string_lossy(), &lab.def, now))
    }

    fn stored_lab(&self) -> Result<Option<(String, EpochMs, LabFile)>> {
        self.read(lab::load_lab)
    }

    // A store opened from this one (a connection of its own) sees every write made
    // through this one so far: the open group is committed first.

    fn open_book_store(&self) -> Result<Box<dyn BookStore>> {
        Ok(Box::new(self.beside(SqliteBookStore::open)?))
    }

    fn open_webhook_store(&self) -> Result<Box<dyn crate::store::WebhookStore>> {
        Ok(Box::new(self.beside(webhooks::SqliteWebhookStore::open)?))
    }

    fn open_health_store(&self) -> Result<Box<dyn crate::store::HealthStore>> {
        Ok(Box::new(self.beside(health::SqliteHealthStore::open)?))
    }

    fn open_access_store(&self) -> Result<Box<dyn crate::store::AccessStore>> {
        Ok(Box::new(self.beside(access::SqliteAccessStore::open)?))
    }

    fn open_pack_store(&self) -> Result<Box<dyn crate::store::PackStore>> {
        Ok(Box::new(self.beside(packs::SqlitePackStore::open)?))
    }

    fn open_retention_store(&self) -> Result<Box<dyn crate::store::retention::RetentionStore>> {
        Ok(Box::new(
            self.beside(retention::SqliteRetentionStore::open)?,
        ))
    }

    fn queue_put(&self, run: &QueuedRunRecord) -> Result<()> {
        self.writer.now(|c| queue::put(c, run))
    }

    fn queue_remove(&self, run_id: &str) -> Result<bool> {
        self.writer.now(|c| queue::remove(c, run_id))
    }

    fn queue_list(&self) -> Result<Vec<QueuedRunRecord>> {
        self.read(queue::list)
    }

    fn queue_signature(&self) -> Result<(i64, i64)> {
        self.read(queue::signature)
    }

    fn schedule_put(&self, schedule: &ScheduleRecord) -> Result<()> {
        self.writer.now(|c| queue::schedule_put(c, schedule))
    }

    fn schedule_remove(&self, id: &str) -> Result<bool> {
        self.writer.now(|c| queue::schedule_remove(c, id))
    }

    fn schedule_list(&self) -> Result<Vec<ScheduleRecord>> {
        self.read(queue::schedule_list)
    }

    fn schedule_firing_add(&self, firing: &FiringRecord) -> Result<()> {
        self.writer.now(|c| queue::firing_add(c, firing))
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
