//! What a [`PgStore`](super::PgStore) and its handles share: the runtime its calls block
//! on, the connection pool, reads that never wait (each in its own read-only
//! transaction, cancelled on close), and running work in a transaction or a savepoint.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use deadpool_postgres::{ClientWrapper, Object, Pool};
use tokio_postgres::error::SqlState;
use tokio_postgres::{CancelToken, Client, NoTls};

use crate::blocking::OwnedRuntime;
use crate::store::{Result, StoreError};

/// What a [`PgStore`](super::PgStore) and its handles share: the runtime, the pool and the read limits.
pub(crate) struct Core {
    pub(super) rt: OwnedRuntime,
    pub(super) pool: Pool,
    pub(super) pg_config: tokio_postgres::Config,
    /// The URL without its password.
    pub(super) location: String,
    pub(super) limit_ms: AtomicU64,
    pub(super) closing: AtomicBool,
    /// Cancel tokens of the reads in flight, by read number.
    pub(super) reads: Mutex<HashMap<u64, CancelToken>>,
    pub(super) next_read: AtomicU64,
}

/// A read in flight: its connection inside a read-only transaction.
struct Reader {
    conn: Object,
    id: u64,
    limit_ms: u64,
}

impl Core {
    pub(super) fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.get()
    }

    /// Wait on this thread for `fut`, inside the store's runtime context (its I/O and
    /// timers are driven by the store's worker threads).
    pub(crate) fn block<F: Future>(&self, fut: F) -> F::Output {
        self.rt.block(fut)
    }

    pub(crate) async fn conn(&self) -> Result<Object> {
        Ok(self.pool.get().await?)
    }

    /// A connection of its own, outside the pool (the book's ownership lock lives as
    /// long as its session).
    pub(super) async fn own_connection(&self) -> Result<Client> {
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
    pub(super) async fn read<T>(&self, f: impl AsyncFnOnce(&Client) -> Result<T>) -> Result<T> {
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

    pub(super) fn close_reads(&self) {
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
pub(super) async fn savepoint<T>(
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
pub(super) fn cancelled(e: &StoreError) -> bool {
    let StoreError::Database(e) = e else {
        return false;
    };
    e.downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        .is_some_and(|c| *c == SqlState::QUERY_CANCELED)
}
