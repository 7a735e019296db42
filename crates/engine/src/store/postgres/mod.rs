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
mod batch;
mod packs;
mod book;
mod delegate;
mod health;
mod history;
pub mod import;
pub mod migrations;
mod misc;
mod retention;
mod runs;
pub mod servers;
mod shared;
mod tasks;
mod webhooks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::{Client, NoTls};

use crate::store::{Result, RunOwner, StoreError, DEFAULT_READ_LIMIT};

pub use book::PgBookStore;
use shared::savepoint;
pub(crate) use shared::{tx, Core};

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
            rt: crate::blocking::OwnedRuntime::new(rt),
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

impl PgStore {
    fn commit_now_inner(&self) -> Result<()> {
        let mut w = self.lock_writer();
        self.core.block(self.commit_pending(&mut w))
    }
}
