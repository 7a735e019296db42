//! The store on PostgreSQL (`tokio-postgres` with a `deadpool-postgres` pool, no TLS),
//! for a lab whose servers share one database. Same contract as the SQLite store (see
//! [`crate::store`]):
//!
//! - **Synchronous calls on a runtime of its own.** The traits are synchronous; a
//!   [`PgStore`] owns a small tokio runtime (2 worker threads) that drives its
//!   connections and timers. A call enters that runtime's context and waits for its
//!   future on the calling thread (as SQLite's calls block), so it works from any thread,
//!   a worker of another runtime included; it never blocks on the caller's runtime.
//! - **Reads never wait.** Each read takes a pooled connection of its own, in a
//!   read-only transaction whose statements stop at the read limit (`statement_timeout`,
//!   PostgreSQL cancels the statement: [`StoreError::Timeout`]).
//!   [`Store::close_reads`] cancels the reads in flight (`pg_cancel_backend` through
//!   their cancel tokens: [`StoreError::Closing`]) and refuses new ones.
//! - **Results commit later, in batches**, as on SQLite: writes go through one writer
//!   connection; [`Store::finish_task`] writes inside a transaction left open on it (a
//!   savepoint per task, so a failure undoes that task only) and whatever next takes the
//!   writer commits it first, or a read that finds the writer free, or
//!   [`Store::commit_now`], or dropping the store.
//! - **Migrations** (`migrations`) are versioned in `schema_version`, each in its own
//!   transaction under `pg_advisory_xact_lock`, so servers opening one database at once
//!   take turns.
//! - **The book's ownership** is a session advisory lock held on a connection of its own
//!   (`book`), the owner's name in `book_owner`.
//! - **Reconnecting**: the pool checks a connection before handing it out
//!   (`RecyclingMethod::Verified`) and the writer replaces a closed connection, so after
//!   a PostgreSQL restart the next call works again; what was committed is kept.
//! - **Servers and their leases** (`servers`): each store is a server of the database
//!   with a lease it renews (`lab_servers`, `TESTBAY_SERVER_LEASE_MS`); the runs it
//!   inserts carry its id, and recovery takes a run whose server's lease lapsed for
//!   interrupted ("server X stopped answering"), whatever host it ran on. Runs stored
//!   without a server (by [`PgStore::owned_by`]) are judged by their pid, as on SQLite.
//! - **The book's ownership across a restart**: the advisory lock ends with its
//!   session; the owner's keeper takes it back on a new session, and the others leave
//!   it free while the owner's lease runs (`book_owner.server_id`), so the owner
//!   normally gets it back; if not, the lock reports itself lost (`BookLock::lost`).
//!
//! `import` copies a SQLite store in (`testbay migrate-store`).

mod access;
mod packs;
mod book;
mod health;
mod history;
pub mod import;
pub mod migrations;
mod misc;
mod retention;
mod runs;
pub mod servers;
mod tasks;
mod webhooks;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Poll, Wake};
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::{CancelToken, Client, NoTls};

use crate::clock::EpochMs;
use crate::lab::{Lab, LabFile};
use crate::measure::Measurement;
use crate::outcome::RunStatus;
use crate::store::{
    AccessStore, Baseline, BookLock, BookStore, FiringRecord, HealthStore, MeasurementPoint,
    MeasurementQuery, NewRun, NewTaskRow, QueuedRunRecord, RecoveryReport, Result, RunOwner,
    RunPage, RunQuery, RunRecord, ScheduleRecord, Store, StoreError, TaskFinish, TaskHistoryEntry,
    TaskHistoryQuery, TaskPaths, TaskRecord, WebhookStore, YieldRow, DEFAULT_READ_LIMIT,
};

pub use book::PgBookStore;

/// Connections the pool keeps at most (the writer's, the book's handles', reads').
const POOL_SIZE: usize = 16;
/// How long a call waits for a connection (a free one, or a new one) before failing.
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);
/// The key of the advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x7465_7374_6261_7901;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Database(Box::new(e))
    }
}

/// `postgres://user:secret@host/db` as it may be shown: without the password.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    let user = userinfo.split(':').next().unwrap_or("");
    format!("{scheme}://{user}@{host}")
}

/// What a [`PgStore`] and its handles share: the runtime, the pool and the read limits.
pub(crate) struct Core {
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    pg_config: tokio_postgres::Config,
    /// The URL without its password.
    location: String,
    limit_ms: AtomicU64,
    closing: AtomicBool,
    /// Cancel tokens of the reads in flight, by read number.
    reads: Mutex<HashMap<u64, CancelToken>>,
    next_read: AtomicU64,
}

impl Drop for Core {
    fn drop(&mut self) {
        // Not `Runtime`'s own drop: that panics on a thread of another runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// A read in flight: its connection inside a read-only transaction.
struct Reader {
    conn: Object,
    id: u64,
    limit_ms: u64,
}

impl Core {
    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt
            .as_ref()
            .expect("the runtime lives as long as the store")
    }

    /// Wait on this thread for `fut`, inside the store's runtime context (its I/O and
    /// timers are driven by the store's worker threads).
    pub(crate) fn block<F: Future>(&self, fut: F) -> F::Output {
        let _inside = self.rt().enter();
        let mut fut = std::pin::pin!(fut);
        let waker = Arc::new(ThreadWaker(std::thread::current())).into();
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }

    pub(crate) async fn conn(&self) -> Result<Object> {
        Ok(self.pool.get().await?)
    }

    /// A connection of its own, outside the pool (the book's ownership lock lives as
    /// long as its session).
    async fn own_connection(&self) -> Result<Client> {
        let (client, connection) = self.pg_config.connect(NoTls).await?;
        self.rt().spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    /// Run `f` on a pooled connection in a transaction, committed when it succeeds.
    pub(crate) async fn in_tx<T>(&self, f: impl AsyncFnOnce(&Client) -> Result<T>) -> Result<T> {
        let conn = self.conn().await?;
        tx(&conn, f).await
    }

    /// Run `f` on a pooled connection, one statement at a time (autocommit).
    pub(crate) async fn on_conn<T>(&self, f: impl AsyncFnOnce(&Client) -> Result<T>) -> Result<T> {
        let conn = self.conn().await?;
        f(&conn).await
    }

    /// Run `f` as a read: a connection of its own, a read-only transaction, each
    /// statement stopped at the read limit; cancelled by [`Core::close_reads`].
    async fn read<T>(&self, f: impl AsyncFnOnce(&Client) -> Result<T>) -> Result<T> {
        if self.closing.load(Ordering::Acquire) {
            return Err(StoreError::Closing);
        }
        let conn = self.conn().await?;
        let limit_ms = self.limit_ms.load(Ordering::Relaxed);
        let id = self.next_read.fetch_add(1, Ordering::Relaxed);
        self.reads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, conn.cancel_token());
        let reader = Reader { conn, id, limit_ms };
        let out = async {
            reader
                .conn
                .batch_execute(&format!(
                    "BEGIN READ ONLY; SET LOCAL statement_timeout = {limit_ms}"
                ))
                .await?;
            // Closed between the check and the registration: this read was not cancelled.
            if self.closing.load(Ordering::Acquire) {
                return Err(StoreError::Closing);
            }
            f(&reader.conn).await
        }
        .await;
        self.end_read(reader, out).await
    }

    async fn end_read<T>(&self, reader: Reader, out: Result<T>) -> Result<T> {
        self.reads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&reader.id);
        let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
        if let Err(e) = reader.conn.batch_execute(end).await {
            tracing::debug!(error = %e, "cannot end a read transaction");
        }
        out.map_err(|e| {
            if !cancelled(&e) {
                e
            } else if self.closing.load(Ordering::Acquire) {
                StoreError::Closing
            } else {
                tracing::warn!(
                    limit_ms = reader.limit_ms,
                    "store read stopped at its time limit"
                );
                StoreError::Timeout {
                    limit_ms: reader.limit_ms,
                }
            }
        })
    }

    fn close_reads(&self) {
        self.closing.store(true, Ordering::Release);
        let tokens: Vec<CancelToken> = self
            .reads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, t)| t)
            .collect();
        for token in tokens {
            self.rt().spawn(async move {
                if let Err(e) = token.cancel_query(NoTls).await {
                    tracing::debug!(error = %e, "cannot cancel a read");
                }
            });
        }
    }
}

/// Run `f` in a transaction on `c`: committed when it succeeds, rolled back when not.
pub(crate) async fn tx<T>(c: &Client, f: impl AsyncFnOnce(&Client) -> Result<T>) -> Result<T> {
    c.batch_execute("BEGIN").await?;
    match f(c).await {
        Ok(v) => {
            c.batch_execute("COMMIT").await?;
            Ok(v)
        }
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Run `f` under a savepoint of the transaction open on `c`: a failure undoes `f`'s
/// writes and leaves the transaction usable. The savepoint is pipelined with `f`'s
/// first statement (sent first, no wait for its answer): if it fails, so does `f`.
async fn savepoint<T>(
    c: &ClientWrapper,
    f: impl AsyncFnOnce(&ClientWrapper) -> Result<T>,
) -> Result<T> {
    let (set, out) = futures_util::future::join(c.batch_execute("SAVEPOINT one_write"), f(c)).await;
    match set.map_err(StoreError::from).and(out) {
        Ok(v) => {
            c.batch_execute("RELEASE one_write").await?;
            Ok(v)
        }
        Err(e) => {
            let _ = c
                .batch_execute("ROLLBACK TO one_write; RELEASE one_write")
                .await;
            Err(e)
        }
    }
}

/// Whether `e` is PostgreSQL's answer to a statement it cancelled (time limit, or a
/// cancel request).
fn cancelled(e: &StoreError) -> bool {
    let StoreError::Database(e) = e else {
        return false;
    };
    e.downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        .is_some_and(|c| *c == SqlState::QUERY_CANCELED)
}

/// The writer connection and whether it holds an open transaction (finished tasks'
/// results waiting for their commit).
#[derive(Default)]
struct Writer {
    conn: Option<Object>,
    in_tx: bool,
}

impl Writer {
    /// The writer connection, a new one if there is none or it closed (results that
    /// waited on a closed one are lost, as on a crash).
    async fn client(&mut self, core: &Core) -> Result<&ClientWrapper> {
        if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
            if self.in_tx {
                tracing::error!(
                    "the database connection closed before finished tasks' results were committed"
                );
            }
            self.in_tx = false;
            self.conn = None;
            self.conn = Some(core.conn().await?);
        }
        Ok(self.conn.as_ref().expect("just set"))
    }
}

/// The store on PostgreSQL.
pub struct PgStore {
    core: Arc<Core>,
    writer: Mutex<Writer>,
    owner: RunOwner,
    /// This store as a server of the database (`servers`); `None` once
    /// [`PgStore::owned_by`] stands in for another owner.
    server: Option<servers::ServerLease>,
    commit_promised: AtomicBool,
    uncommitted: AtomicBool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.core.location)
            .finish()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        let mut w = self.lock_writer();
        let _ = self.core.block(self.commit_pending(&mut w));
        drop(w);
        self.end_lease();
    }
}

impl PgStore {
    /// Connect to the database at `url` (`postgres://USER@HOST[:PORT]/DB`) and bring its
    /// schema up to date. Runs it inserts are owned by this process.
    pub fn open(url: &str) -> Result<Self> {
        let location = redact(url);
        let open_err = |source: crate::store::BackendError| StoreError::Open {
            path: location.clone().into(),
            source,
        };
        let pg_config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| open_err(e.into()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("testbay-pg")
            .enable_all()
            .build()
            .map_err(|e| open_err(e.into()))?;
        let mgr = Manager::from_config(
            pg_config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_PATIENCE))
            .create_timeout(Some(CONNECT_PATIENCE))
            .recycle_timeout(Some(CONNECT_PATIENCE))
            .build()
            .map_err(|e| open_err(e.into()))?;
        let core = Arc::new(Core {
            rt: Some(rt),
            pool,
            pg_config,
            location: location.clone(),
            limit_ms: AtomicU64::new(DEFAULT_READ_LIMIT.as_millis() as u64),
            closing: AtomicBool::new(false),
            reads: Mutex::new(HashMap::new()),
            next_read: AtomicU64::new(0),
        });
        core.block(async {
            let mut conn = core.conn().await.map_err(|e| match e {
                StoreError::Database(source) => open_err(source),
                e => e,
            })?;
            migrate(&mut conn, &location).await
        })?;
        let server = servers::ServerLease::start(&core, servers::lease_ms_from_env()?)?;
        Ok(Self {
            core,
            writer: Mutex::new(Writer::default()),
            owner: RunOwner::this_process(),
            server: Some(server),
            commit_promised: AtomicBool::new(false),
            uncommitted: AtomicBool::new(false),
        })
    }

    /// Record `owner` as the owner of the runs this store inserts from now on (tests
    /// stand in for a console that died).
    pub fn owned_by(mut self, owner: RunOwner) -> Self {
        self.owner = owner;
        self.end_lease();
        self
    }

    /// This store's id among the servers of its database (`None` under
    /// [`PgStore::owned_by`]).
    pub fn server_id(&self) -> Option<&str> {
        self.server.as_ref().map(|s| s.id.as_str())
    }

    /// The length of this server's lease, in milliseconds.
    pub fn lease_ms(&self) -> Option<i64> {
        self.server.as_ref().map(|s| s.lease_ms)
    }

    fn end_lease(&mut self) {
        if let Some(server) = self.server.take() {
            let core = self.core.clone();
            let _ = core.block(core.on_conn(async |c| {
                server.end(c).await;
                Ok(())
            }));
        }
    }

    /// Schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        self.core.block(self.core.read(async |c| {
            Ok(
                c.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
                    .await?
                    .get(0),
            )
        }))
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commit the writer's open transaction, if any.
    async fn commit_pending(&self, w: &mut Writer) -> Result<()> {
        self.uncommitted.store(false, Ordering::Release);
        if !w.in_tx {
            return Ok(());
        }
        w.in_tx = false;
        let Some(c) = w.conn.as_ref() else {
            return Ok(());
        };
        c.batch_execute("COMMIT").await.map_err(|e| {
            tracing::error!(error = %e, "could not commit finished tasks' results");
            StoreError::from(e)
        })
    }

    /// Run `f` on the writer connection, after committing what waits there.
    fn write<T>(&self, f: impl AsyncFnOnce(&ClientWrapper) -> Result<T>) -> Result<T> {
        let mut w = self.lock_writer();
        self.core.block(async {
            let _ = self.commit_pending(&mut w).await;
            let c = w.client(&self.core).await?;
            f(c).await
        })
    }

    /// Run `f` on the writer connection inside the transaction left open for later
    /// commit (opened if need be), under a savepoint.
    fn write_later<T>(&self, f: impl AsyncFnOnce(&ClientWrapper) -> Result<T>) -> Result<T> {
        let mut w = self.lock_writer();
        self.core.block(async {
            w.client(&self.core).await?;
            let opened = !w.in_tx;
            let c = w.conn.as_ref().expect("the writer has a connection");
            if opened {
                c.batch_execute("BEGIN").await?;
            }
            let out = savepoint(c, f).await;
            if opened {
                w.in_tx = true;
                self.uncommitted.store(true, Ordering::Release);
            }
            out
        })
    }

    /// A read; finished results waiting for their commit are committed first when the
    /// writer is free, so reads through this store see them.
    fn read<T>(&self, f: impl AsyncFnOnce(&Client) -> Result<T>) -> Result<T> {
        if self.uncommitted.load(Ordering::Acquire) {
            let guard = match self.writer.try_lock() {
                Ok(g) => Some(g),
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            };
            if let Some(mut w) = guard {
                let _ = self.core.block(self.commit_pending(&mut w));
            }
        }
        self.core.block(self.core.read(f))
    }
}

/// Bring the schema up to date, one migration per transaction, each under the
/// migration advisory lock and reading the version inside it.
async fn migrate(conn: &mut Object, location: &str) -> Result<()> {
    let known = migrations::MIGRATIONS.len();
    loop {
        let tx = conn.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                version     BIGINT PRIMARY KEY,
                name        TEXT NOT NULL,
                applied_ms  BIGINT NOT NULL
            )",
        )
        .await?;
        let version: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await?
            .get(0);
        if version > known as i64 {
            return Err(StoreError::TooNew {
                path: location.into(),
                found: version,
                known,
            });
        }
        let index = version as usize;
        let Some(m) = migrations::MIGRATIONS.get(index) else {
            tx.commit().await?;
            return Ok(());
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let applied = async {
            tx.batch_execute(m.sql).await?;
            tx.execute(
                "INSERT INTO schema_version (version, name, applied_ms) VALUES ($1, $2, $3)",
                &[&(index as i64 + 1), &m.name, &now],
            )
            .await?;
            tx.commit().await
        }
        .await;
        applied.map_err(|source| StoreError::Migration {
            index,
            name: m.name,
            source: source.into(),
        })?;
        tracing::info!(index, name = m.name, "applied store migration");
    }
}

/// An unsigned count or number as PostgreSQL's `BIGINT`.
pub(crate) fn big(v: impl Into<u64>) -> i64 {
    i64::try_from(v.into()).unwrap_or(i64::MAX)
}

/// A stored `BIGINT` as a `u32` (0 when out of range).
pub(crate) fn small(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

impl Store for PgStore {
    fn location(&self) -> String {
        self.core.location.clone()
    }

    fn lock_book(&self, who: &str) -> Result<Option<Box<dyn BookLock>>> {
        book::lock(&self.core, who, self.server_id())
    }

    fn book_owner(&self) -> Option<String> {
        book::owner(&self.core)
    }

    fn insert_run(&self, run: &NewRun, tasks: &[NewTaskRow]) -> Result<Vec<i64>> {
        let owner = self.owner;
        let server = self.server_id();
        self.write(async |c| {
            tx(c, async |c| {
                runs::insert(c, run, tasks, owner, server).await
            })
            .await
        })
    }

    fn set_run_status(
        &self,
        id: &str,
        status: RunStatus,
        reason: Option<&str>,
        now: EpochMs,
    ) -> Result<()> {
        self.write(async |c| runs::set_status(c, id, status, reason, now).await)
    }

    fn get_run(&self, id: &str) -> Result<RunRecord> {
        self.read(async |c| runs::get(c, id).await)
    }

    fn list_runs(&self, q: &RunQuery) -> Result<RunPage> {
        let sql = runs::ListSql::new(q)?;
        self.read(async |c| runs::list(c, &sql).await)
    }

    fn run_tasks(&self, run_id: &str) -> Result<Vec<TaskRecord>> {
        self.read(async |c| tasks::of_run(c, run_id).await)
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
        // Committed together with the finished tasks' results waiting (if any).
        self.write_later(async |c| {
            tasks::phase_started(c, task_id, lane, phase, started_ms, pgid, paths).await
        })?;
        self.commit_now_inner()
    }

    fn finish_task(&self, task_id: i64, f: &TaskFinish) -> Result<()> {
        self.write_later(async |c| tasks::finish_writes(c, task_id, f).await)
    }

    fn finish_tasks(&self, items: &[(i64, TaskFinish)]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.write(async |c| {
            c.batch_execute("BEGIN").await?;
            for (id, f) in items {
                if let Err(e) = tasks::finish_writes(c, *id, f).await {
                    let _ = c.batch_execute("ROLLBACK").await;
                    return Err(e);
                }
            }
            Ok(c.batch_execute("COMMIT").await?)
        })
    }

    fn commit_now(&self) -> Result<()> {
        self.commit_promised.store(false, Ordering::Release);
        self.commit_now_inner()
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
        self.write_later(async |c| history::insert(c, task_id, sub_result, measurements).await)
    }

    fn task_history(&self, q: &TaskHistoryQuery) -> Result<Vec<TaskHistoryEntry>> {
        self.read(async |c| history::task_history(c, q).await)
    }

    fn measurement_history(&self, q: &MeasurementQuery) -> Result<Vec<MeasurementPoint>> {
        self.read(async |c| history::measurement_history(c, q).await)
    }

    fn measurement_yield(&self, pack: &str, last_runs: u32) -> Result<Vec<YieldRow>> {
        self.read(async |c| history::measurement_yield(c, pack, last_runs).await)
    }

    fn recent_results(
        &self,
        pack: &str,
        window: u32,
        most_runs: u32,
    ) -> Result<Vec<TaskHistoryEntry>> {
        self.read(async |c| history::recent_results(c, pack, window, most_runs).await)
    }

    fn run_packs(&self) -> Result<Vec<String>> {
        self.read(async |c| history::packs(c).await)
    }

    fn pin_baseline(
        &self,
        run_id: &str,
        dut_model: Option<&str>,
        now: EpochMs,
    ) -> Result<Baseline> {
        self.write(async |c| history::pin_baseline(c, run_id, dut_model, now).await)
    }

    fn unpin_baseline(&self, pack: &str, dut_model: Option<&str>) -> Result<bool> {
        self.write(async |c| history::unpin_baseline(c, pack, dut_model).await)
    }

    fn baselines(&self, pack: Option<&str>) -> Result<Vec<Baseline>> {
        self.read(async |c| history::baselines(c, pack).await)
    }

    fn interrupted_runs(&self) -> Result<Vec<String>> {
        let me = self.server_id();
        self.read(async |c| runs::interrupted(c, me).await)
    }

    fn mark_interrupted(&self, run_ids: &[String], now: EpochMs) -> Result<RecoveryReport> {
        self.write(async |c| runs::mark_interrupted(c, run_ids, now).await)
    }

    fn set_read_limit(&self, limit: Duration) {
        self.core
            .limit_ms
            .store(limit.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    fn close_reads(&self) {
        self.core.close_reads();
    }

    fn save_lab(&self, lab: &Lab, now: EpochMs) -> Result<()> {
        let path = lab.file.to_string_lossy();
        self.write(async |c| tx(c, async |c| misc::save_lab(c, &path, &lab.def, now).await).await)
    }

    fn stored_lab(&self) -> Result<Option<(String, EpochMs, LabFile)>> {
        self.read(async |c| misc::load_lab(c).await)
    }

    fn open_book_store(&self) -> Result<Box<dyn BookStore>> {
        Ok(Box::new(PgBookStore::new(self.core.clone())))
    }

    fn open_webhook_store(&self) -> Result<Box<dyn WebhookStore>> {
        Ok(Box::new(webhooks::PgWebhookStore::new(self.core.clone())))
    }

    fn open_health_store(&self) -> Result<Box<dyn HealthStore>> {
        Ok(Box::new(health::PgHealthStore::new(self.core.clone())))
    }

    fn open_access_store(&self) -> Result<Box<dyn AccessStore>> {
        Ok(Box::new(access::PgAccessStore::new(self.core.clone())))
    }

    fn open_pack_store(&self) -> Result<Box<dyn crate::store::PackStore>> {
        Ok(Box::new(packs::PgPackStore::new(self.core.clone())))
    }

    fn open_retention_store(&self) -> Result<Box<dyn crate::store::retention::RetentionStore>> {
        Ok(Box::new(retention::PgRetentionStore::new(
            self.core.clone(),
        )))
    }

    fn queue_put(&self, run: &QueuedRunRecord) -> Result<()> {
        self.write(async |c| misc::queue_put(c, run).await)
    }

    fn queue_remove(&self, run_id: &str) -> Result<bool> {
        self.write(async |c| misc::queue_remove(c, run_id).await)
    }

    fn queue_list(&self) -> Result<Vec<QueuedRunRecord>> {
        self.read(async |c| misc::queue_list(c).await)
    }

    fn queue_signature(&self) -> Result<(i64, i64)> {
        self.read(async |c| misc::queue_signature(c).await)
    }

    fn schedule_put(&self, schedule: &ScheduleRecord) -> Result<()> {
        self.write(async |c| misc::schedule_put(c, schedule).await)
    }

    fn schedule_remove(&self, id: &str) -> Result<bool> {
        self.write(async |c| misc::schedule_remove(c, id).await)
    }

    fn schedule_list(&self) -> Result<Vec<ScheduleRecord>> {
        self.read(async |c| misc::schedule_list(c).await)
    }

    fn schedule_firing_add(&self, firing: &FiringRecord) -> Result<()> {
        self.write(async |c| misc::firing_add(c, firing).await)
    }

    fn schedule_firings(&self, id: &str, limit: u32) -> Result<Vec<FiringRecord>> {
        self.read(async |c| misc::firings(c, id, limit).await)
    }
}

impl PgStore {
    fn commit_now_inner(&self) -> Result<()> {
        let mut w = self.lock_writer();
        self.core.block(self.commit_pending(&mut w))
    }
}
