//! Storage: the interface the rest of the engine speaks to ([`Store`] for runs, task
//! results, sub-results, recovery and the lab; [`BookStore`] for the reservation book's
//! persistence), the types they keep (`model`), and their two implementations: SQLite
//! ([`sqlite::SqliteStore`], one seat, the default) and PostgreSQL
//! ([`postgres::PgStore`], a lab). No backend's type crosses the interface: errors are
//! [`StoreError`]s with stable codes, the backend's own error boxed inside.
//! [`StoreLocation::open`] opens the one `--store` names.
//!
//! Both run the contract suite (`tests/it/store_contract.rs`, one `store_contract!`
//! line per backend). What every backend keeps, beyond the method docs:
//! - **Reads never wait.** A read does not wait behind another read or behind a write
//!   (SQLite: except to see the results waiting for their commit committed, which waits
//!   at most for the one write in progress), and stops at the read limit ([`Store::set_read_limit`], [`DEFAULT_READ_LIMIT`])
//!   with [`StoreError::Timeout`]; [`Store::close_reads`] stops reads in flight with
//!   [`StoreError::Closing`].
//! - **Results commit later, in batches.** [`Store::finish_task`] writes at once and
//!   commits with the next thing that commits, so the run's loop never waits for a
//!   commit; see its doc and [`Store::promise_commit`].
//! - **A run has an owner** ([`RunOwner`], this process when it was stored); recovery
//!   takes the runs of owners that are gone for interrupted. The store says which runs
//!   those are and marks them; it never touches a process.

mod error;
mod history;
mod location;
mod model;
mod owner;
pub(crate) mod paths;
mod queued;
pub mod postgres;
pub mod sqlite;
pub mod webhooks;
pub mod health;
pub mod access;
pub mod retention;
pub mod packs;

pub use access::{AccessStore, AuditEntry, AuditQuery, NewAuditEntry, Role, User, MAX_AUDIT_ROWS};
pub use error::{BackendError, Result, StoreError};
pub use health::{DutHealth, Health, HealthChange, HealthStore};
pub use history::*;
pub use location::StoreLocation;
pub use model::*;
pub use owner::RunOwner;
pub use packs::{PackStore, PutPack, StoredPack};
pub use postgres::PgStore;
pub use queued::{FiringRecord, QueuedRunRecord, ScheduleRecord};
pub use sqlite::{book as reservations, SqliteBookStore, SqliteStore, DEFAULT_READ_LIMIT};
pub use webhooks::{
    DeliveryStatus, Webhook, WebhookDelivery, WebhookEvent, WebhookRow, WebhookStore, WebhookTarget,
};

use std::collections::HashSet;
use std::time::Duration;

use crate::clock::EpochMs;
use crate::lab::{Lab, LabFile};
use crate::outcome::RunStatus;
use testbay_core::reserve::{BookEvent, ReservationView};

/// One ordered schema migration of a backend (`sqlite::migrations`,
/// `postgres::migrations`).
pub struct Migration {
    /// Short description, for logs.
    pub name: &'static str,
    pub sql: &'static str,
}

/// The store of runs, their task results and sub-results, and the lab inventory. Shared
/// by every thread of a console (`Arc<dyn Store>`); every method may be called from any
/// thread and returns within the read limit (reads) or the time a short write takes.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Where the store lives, for messages: the database file of a SQLite store, the
    /// URL (without its password) of a PostgreSQL one.
    fn location(&self) -> String;

    /// Take the reservation book's ownership for this process (`reserve::live`),
    /// naming it `who` for the processes that cannot have it; `None` when another
    /// process owns the book. Dropping the lock gives the book up. SQLite: an exclusive
    /// `flock` on a file beside the database; PostgreSQL: a session advisory lock.
    fn lock_book(&self, who: &str) -> Result<Option<Box<dyn BookLock>>>;

    /// Who owns the reservation book now, as its owner named itself; `None` when
    /// nobody does.
    fn book_owner(&self) -> Option<String>;

    /// Record the address this process serves the lab on (`testbay serve`), where the
    /// other servers of its database send rack agents while it owns the book. The
    /// single seat has no other servers: nothing to record.
    fn set_server_address(&self, address: &str) -> Result<()> {
        let _ = address;
        Ok(())
    }

    /// Which server of the store's database owns the reservation book, for a rack
    /// agent's hello (see [`BookHome`]); the single seat's is [`BookHome::Alone`].
    fn book_home(&self) -> Result<BookHome> {
        Ok(BookHome::Alone)
    }

    // Runs.

    /// Insert a run and its planned task occurrences, all or nothing, owned by this
    /// store's [`RunOwner`]; the id of each occurrence, in the order given. Committed at
    /// once, with any results waiting for their commit.
    fn insert_run(&self, run: &NewRun, tasks: &[NewTaskRow]) -> Result<Vec<i64>>;

    /// Set a run's status. `running` sets `started_ms` the first time and replaces the
    /// reason; any other status keeps the reason unless one is given; a finished status
    /// sets `finished_ms`. An unknown run is [`StoreError::RunNotFound`]. Committed at
    /// once, with any results waiting for their commit.
    fn set_run_status(
        &self,
        id: &str,
        status: RunStatus,
        reason: Option<&str>,
        now: EpochMs,
    ) -> Result<()>;

    /// One run with its tallies, or [`StoreError::RunNotFound`].
    fn get_run(&self, id: &str) -> Result<RunRecord>;

    /// Runs matching `q`, one page, newest first unless asked otherwise; the total counts
    /// every page. A search text over [`MAX_SEARCH_CHARS`] is
    /// [`StoreError::InvalidQuery`] (key `text`); `%` and `_` in it are literal.
    fn list_runs(&self, q: &RunQuery) -> Result<RunPage>;

    /// The task tree of one run, in plan order, with sub-results; an unknown run is
    /// [`StoreError::RunNotFound`].
    fn run_tasks(&self, run_id: &str) -> Result<Vec<TaskRecord>>;

    // Task results.

    /// A phase of a task occurrence started: record lane, phase, paths and the process
    /// group (for operators), and commit, together with any result still waiting for
    /// its commit. The run calls this only for a phase still running a few milliseconds
    /// after its start; a shorter one's result carries the same facts.
    fn task_phase_started(
        &self,
        task_id: i64,
        lane: &str,
        phase: &str,
        started_ms: EpochMs,
        pgid: Option<i32>,
        paths: &TaskPaths,
    ) -> Result<()>;

    /// A task occurrence is done: result, timings and sub-results, all or nothing (a
    /// failure undoes this task's writes and no other's).
    ///
    /// The write is made at once but its commit waits for the next use of the store that
    /// commits: [`Store::commit_now`], which the run calls a few milliseconds later (one
    /// commit for the results of those milliseconds, see [`Store::promise_commit`]), any
    /// read, a phase's start, any other write, dropping the store, or the backend's own
    /// bound (SQLite: 25 ms after the first write waiting; also opening a store of the
    /// `open_*_store` family).
    /// Committing is the costliest part of a task's bookkeeping, and this takes it off
    /// the path between one task and the next. Reads through this store see the result at
    /// once; other processes and connections see it at the commit. A console killed in
    /// between loses the writes of that moment (recovery marks those tasks Aborted), at
    /// most a few milliseconds' worth.
    fn finish_task(&self, task_id: i64, f: &TaskFinish) -> Result<()>;

    /// Several occurrences done at once, all or nothing, committed together: the batch
    /// path, for results that arrive in bursts (a run's Skipped, Blocked or Aborted
    /// rows; an import). It stores exactly what [`Store::finish_task`] would for each;
    /// SQLite prepares each statement once per batch, writes an occurrence's
    /// measurements in its row's update and tallies measurements once per run and lane.
    fn finish_tasks(&self, items: &[(i64, TaskFinish)]) -> Result<()>;

    /// Commit finished tasks' results that wait for it. An error means the results it
    /// held are not stored (or not yet: a later commit may still store them).
    fn commit_now(&self) -> Result<()>;

    /// [`Store::commit_now`] for callers with nobody to tell of a failure (the backend
    /// logs it).
    fn commit_pending_results(&self) {
        let _ = self.commit_now();
    }

    /// Whether the caller should arrange a [`Store::commit_now`] soon: `true` for the
    /// first caller since the last commit_now, so one timer serves every run's results.
    fn promise_commit(&self) -> bool;

    // Results across runs.

    /// The newest occurrences of one task of a pack across runs, newest first.
    fn task_history(&self, q: &TaskHistoryQuery) -> Result<Vec<TaskHistoryEntry>>;

    /// The newest stored values of one measurement, newest first.
    fn measurement_history(&self, q: &MeasurementQuery) -> Result<Vec<MeasurementPoint>>;

    /// Yield per DUT model over the last `last_runs` runs of `pack`.
    fn measurement_yield(&self, pack: &str, last_runs: u32) -> Result<Vec<YieldRow>>;

    /// Every finished task occurrence of the runs of `pack` that are among the last
    /// `window` runs on one of their DUT models, looking at the pack's last `most_runs`
    /// runs at most; oldest run first, in plan order within a run; without messages
    /// (`message` is `None`), which what reads this (flaky detection) does not need.
    fn recent_results(
        &self,
        pack: &str,
        window: u32,
        most_runs: u32,
    ) -> Result<Vec<TaskHistoryEntry>>;

    /// Names of the packs with stored runs, sorted.
    fn run_packs(&self) -> Result<Vec<String>>;

    /// Pin `run_id` as its pack's baseline on `dut_model` (`None`: the model of the run's
    /// first DUT, or no model), replacing the one pinned there; the baseline stored. An
    /// unknown run is [`StoreError::RunNotFound`].
    fn pin_baseline(&self, run_id: &str, dut_model: Option<&str>, now: EpochMs)
        -> Result<Baseline>;

    /// Unpin the baseline of `pack` on `dut_model`; whether one was pinned.
    fn unpin_baseline(&self, pack: &str, dut_model: Option<&str>) -> Result<bool>;

    /// Pinned baselines, of one pack or of all, by pack and model.
    fn baselines(&self, pack: Option<&str>) -> Result<Vec<Baseline>>;

    // Recovery.

    /// Runs left queued, running or stalled by an owner that is gone, oldest first: what
    /// recovery at console start kills the leftover processes of
    /// (`exec::reap::kill_run_leftovers`) and then marks (`run::recover_interrupted`).
    /// Runs of a live owner (another process on the same data) are not among them. A
    /// read: it works on a full disk too.
    fn interrupted_runs(&self) -> Result<Vec<String>>;

    /// Mark `run_ids` interrupted, each all or nothing: those still queued, running or
    /// stalled become `interrupted` (reason naming the console, `finished_ms` = `now`),
    /// their unfinished tasks `Aborted` (done, a failure, with a message saying whether
    /// they were running). A run already finished is left as it is: nothing stored
    /// changes. The report names the runs marked and counts the tasks aborted.
    fn mark_interrupted(&self, run_ids: &[String], now: EpochMs) -> Result<RecoveryReport>;

    // Reads.

    /// The longest a read may run before it stops with [`StoreError::Timeout`]
    /// ([`DEFAULT_READ_LIMIT`] unless set).
    fn set_read_limit(&self, limit: Duration);

    /// Stop every read in progress (they end with [`StoreError::Closing`] within
    /// moments) and refuse new ones; writes go on. For a console about to exit, so that
    /// no request waits for a long query.
    fn close_reads(&self);

    // Lab.

    /// Replace the stored inventory with `lab`, all or nothing.
    fn save_lab(&self, lab: &Lab, now: EpochMs) -> Result<()>;

    /// The stored inventory, where it was loaded from and when.
    fn stored_lab(&self) -> Result<Option<(String, EpochMs, LabFile)>>;

    // Reservation book.

    /// A handle on the book's tables of its own (a connection of its own), for the
    /// book's writer thread or a process that posts to the book's owner.
    fn open_book_store(&self) -> Result<Box<dyn BookStore>>;

    // Webhooks.

    /// A handle on the webhooks' tables of its own (a connection of its own), for the
    /// console's webhook service.
    fn open_webhook_store(&self) -> Result<Box<dyn WebhookStore>>;

    // DUT health.

    /// A handle on the DUT health tables of its own (a connection of its own).
    fn open_health_store(&self) -> Result<Box<dyn HealthStore>>;

    // Users and the audit log.

    /// A handle on the users' and audit tables of its own (a connection of its own), for
    /// the console's access service. A backend without them answers
    /// [`StoreError::InvalidQuery`] (key `store`): its console keeps no users and no
    /// audit log, and serves as a single seat.
    fn open_access_store(&self) -> Result<Box<dyn AccessStore>> {
        Err(StoreError::InvalidQuery {
            key: "store",
            message: "this store keeps no users or audit log".into(),
        })
    }

    // The lab's pack library.

    /// A handle on the pack library's tables of its own (a connection of its own): the
    /// packs pushed into the lab and their archives. A backend without them answers
    /// [`StoreError::InvalidQuery`] (key `store`).
    fn open_pack_store(&self) -> Result<Box<dyn PackStore>> {
        Err(StoreError::InvalidQuery {
            key: "store",
            message: "this store keeps no pack library".into(),
        })
    }

    // Retention.

    /// A handle on retention's reads and removals of its own (a connection of its own).
    fn open_retention_store(&self) -> Result<Box<dyn retention::RetentionStore>>;

    // Run queue.

    /// Store a queued run, or replace it (a new priority or place).
    fn queue_put(&self, run: &QueuedRunRecord) -> Result<()>;

    /// Take a run out of the queue (it started, was cancelled or given up on); whether
    /// it was there.
    fn queue_remove(&self, run_id: &str) -> Result<bool>;

    /// Claim a queued run to start it: take it out of the queue unless another claim
    /// holds it; whether this claim took it. Of several servers claiming one run at
    /// once, exactly one gets `true`, and none waits behind another's claim (PostgreSQL:
    /// `FOR UPDATE SKIP LOCKED`). One process alone (SQLite) removes it.
    fn queue_claim(&self, run_id: &str) -> Result<bool> {
        self.queue_remove(run_id)
    }

    /// Every queued run, by place.
    fn queue_list(&self) -> Result<Vec<QueuedRunRecord>>;

    /// A value that changes whenever any process changes the stored queue (the serving
    /// console notices the CLI's changes by it).
    fn queue_signature(&self) -> Result<(i64, i64)>;

    // Schedules.

    /// Store a schedule, or replace it (edited, paused, fired).
    fn schedule_put(&self, schedule: &ScheduleRecord) -> Result<()>;

    /// Delete a schedule (its firings stay, for the runs they link); whether it was there.
    fn schedule_remove(&self, id: &str) -> Result<bool>;

    /// Every schedule, oldest first.
    fn schedule_list(&self) -> Result<Vec<ScheduleRecord>>;

    /// Add a line to a schedule's history.
    fn schedule_firing_add(&self, firing: &FiringRecord) -> Result<()>;

    /// The newest `limit` lines of a schedule's history, oldest first.
    fn schedule_firings(&self, id: &str, limit: u32) -> Result<Vec<FiringRecord>>;
}

/// The reservation book's ownership, held by the owning process (see
/// [`Store::lock_book`]); dropping it gives the book up.
/// Where the reservation book is owned, among the servers of one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookHome {
    /// This store is the only server (SQLite, or a store that is no server).
    Alone,
    /// This server owns it.
    Here,
    /// Another server, alive, owns it and serves at this address.
    At(String),
    /// No live server owns it now (its owner died and nobody took it over yet), or its
    /// owner recorded no address.
    Unknown,
}

pub trait BookLock: Send {
    /// Whether the ownership was lost without being given up: the database restarted
    /// and another server took the book before this one could take it back. The owner
    /// then stops acting as one.
    fn lost(&self) -> bool {
        false
    }
}

/// The reservation book's persistence (`reserve::live`): live reservations, the event
/// history, and the inbox through which another process asks the book's owner to act.
/// One handle serves one thread (the book's writer, or a client).
pub trait BookStore: Send {
    /// Apply a batch of book events, all or nothing: each is appended to the history;
    /// each reservation's latest state is kept while it lives, and one that was released
    /// or expired moves to the history of ended reservations.
    fn write_events(&mut self, events: &[BookEvent]) -> Result<()>;

    /// What a restarted book needs: the stored live reservations, the next id and the
    /// next event number.
    fn load_book(&self) -> Result<SavedBook>;

    /// Stored live reservations, by id. Between a holder's death and the next sweep these
    /// may include lapsed ones; compare `expires` with the time to tell.
    fn live_reservations(&self) -> Result<Vec<ReservationView>>;

    /// Ids of the runs that may still hold something in the book: not finished (queued,
    /// running or stalled) and owned by a live process ([`RunOwner::is_alive`]). A run
    /// whose console died is over even before recovery marks it so.
    fn live_runs(&self) -> Result<HashSet<String>>;

    /// Book events after `after_seq`, oldest first, at most `limit`.
    fn events_since(&self, after_seq: u64, limit: usize) -> Result<Vec<StoredEvent>>;

    /// Reservations of `resource` that ended and overlap `[from, to)`, by start, each
    /// with when it ended and why: the timeline's past.
    fn history(
        &self,
        resource: &str,
        from: EpochMs,
        to: EpochMs,
    ) -> Result<Vec<(EpochMs, String, ReservationView)>>;

    /// Drop history older than `before` (live reservations are untouched); how many rows.
    fn prune_events(&self, before: EpochMs) -> Result<usize>;

    /// Post a command (JSON) for the book's owner; its inbox id.
    fn inbox_post(&self, now: EpochMs, command_json: &str) -> Result<i64>;

    /// Commands not yet answered, oldest first.
    fn inbox_pending(&self) -> Result<Vec<(i64, String)>>;

    /// Answer command `id` (JSON).
    fn inbox_answer(&self, id: i64, now: EpochMs, result_json: &str) -> Result<()>;

    /// The answer to command `id`, once there is one.
    fn inbox_result(&self, id: i64) -> Result<Option<String>>;

    /// Forget answered commands older than `before`; how many.
    fn inbox_prune(&self, before: EpochMs) -> Result<usize>;
}
