//! The servers of one database and their leases (`lab_servers`): each [`PgStore`]
//! (a `testbay serve`, or any command that opens the store) is a server with an id
//! (`host:pid:start.n`, `n` counting the stores this process opened, so two opened in
//! one millisecond differ) and a row whose `lease_until` it renews every third of its lease,
//! judged by the database's `now()`. The runs it inserts carry its id (`runs.server_id`);
//! a run whose server's lease lapsed (or whose row is gone) is taken for interrupted by
//! the others, whatever its pid says, so servers on several hosts recover each other's
//! runs. A store that drops ends its lease at once (its row is removed). A server that
//! serves the lab (`testbay serve`) records its address there too
//! (`ServerLease::set_address`): the others send rack agents to the book's owner's
//! (`book_home`).
//!
//! The lease's length is [`LEASE_ENV`] in milliseconds (within
//! [`testbay_core::bounds::MIN_SERVER_LEASE_MS`] to `MAX_SERVER_LEASE_MS`),
//! [`DEFAULT_LEASE_MS`] unless set.
//!
//! [`PgStore`]: super::PgStore

use std::sync::Arc;
use std::time::Duration;

use testbay_core::bounds::{MAX_SERVER_LEASE_MS, MIN_SERVER_LEASE_MS};
use tokio_postgres::Client;

use super::Core;
use crate::store::{Result, StoreError};

/// The environment variable that sets the lease's length, in milliseconds.
pub const LEASE_ENV: &str = "TESTBAY_SERVER_LEASE_MS";
/// The lease's length unless [`LEASE_ENV`] says otherwise: 15 s.
pub const DEFAULT_LEASE_MS: i64 = 15_000;

/// SQL true when the run row `r` (of `runs`) has a server whose lease still runs.
pub(super) const SERVER_ALIVE: &str = "EXISTS (SELECT 1 FROM lab_servers s \
     WHERE s.id = r.server_id AND s.lease_until > now())";

/// This store's place among the servers of its database.
#[derive(Debug)]
pub(super) struct ServerLease {
    pub id: String,
    pub lease_ms: i64,
    /// The address it serves on, once known (kept for a row put back by [`renew`]).
    address: Arc<std::sync::Mutex<Option<String>>>,
    /// Stops the renewing task when the store drops.
    stop: tokio::sync::watch::Sender<bool>,
}

/// The lease's length from [`LEASE_ENV`], checked against its bounds.
pub fn lease_ms_from_env() -> Result<i64> {
    let Ok(text) = std::env::var(LEASE_ENV) else {
        return Ok(DEFAULT_LEASE_MS);
    };
    let invalid = |why: String| StoreError::InvalidQuery {
        key: LEASE_ENV,
        message: why,
    };
    let ms: i64 = text
        .trim()
        .parse()
        .map_err(|_| invalid(format!("`{text}` is not a number of milliseconds")))?;
    if !(MIN_SERVER_LEASE_MS..=MAX_SERVER_LEASE_MS).contains(&ms) {
        return Err(invalid(format!(
            "{ms} ms is out of range ({MIN_SERVER_LEASE_MS} to {MAX_SERVER_LEASE_MS})"
        )));
    }
    Ok(ms)
}

impl ServerLease {
    /// Register this process as a server of the database and keep its lease renewed on
    /// the store's runtime.
    pub(super) fn start(core: &Arc<Core>, lease_ms: i64) -> Result<Self> {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".into());
        let pid = std::process::id();
        static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{host}:{pid}:{:x}.{n}", started.as_millis());
        let started_ms = i64::try_from(started.as_millis()).unwrap_or(i64::MAX);
        core.block(async {
            let c = core.conn().await?;
            forget_long_gone(&c).await?;
            c.execute(
                "INSERT INTO lab_servers (id, host, pid, started_ms, lease_until)
                 VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
                &[&id, &host, &i64::from(pid), &started_ms, &secs(lease_ms)],
            )
            .await?;
            Ok::<_, StoreError>(())
        })?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let weak = Arc::downgrade(core);
        let renew_id = id.clone();
        let address = Arc::new(std::sync::Mutex::new(None));
        let renew_address = address.clone();
        core.rt().spawn(async move {
            let period = Duration::from_millis((lease_ms / 3).max(100) as u64);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = stopped.changed() => return,
                }
                let Some(core) = weak.upgrade() else { return };
                let address = renew_address
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                if let Err(e) = renew(&core, &renew_id, lease_ms, address.as_deref()).await {
                    tracing::warn!(error = %e, server = %renew_id, "cannot renew this server's lease");
                }
            }
        });
        tracing::info!(server = %id, lease_ms, "registered as a server of the database");
        Ok(Self {
            id,
            lease_ms,
            address,
            stop,
        })
    }

    /// Record the address this server serves on.
    pub(super) fn set_address(&self, core: &Core, address: &str) -> Result<()> {
        *self.address.lock().unwrap_or_else(|p| p.into_inner()) = Some(address.to_string());
        core.block(async {
            let c = core.conn().await?;
            c.execute(
                "UPDATE lab_servers SET address = $2 WHERE id = $1",
                &[&self.id, &address],
            )
            .await?;
            Ok(())
        })
    }

    /// End the lease: the renewing task stops and the row goes.
    pub(super) async fn end(&self, c: &Client) {
        let _ = self.stop.send(true);
        if let Err(e) = c
            .execute("DELETE FROM lab_servers WHERE id = $1", &[&self.id])
            .await
        {
            tracing::debug!(error = %e, "cannot remove this server's lease");
        }
    }
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Renew `id`'s lease; a row that is gone (another server cleared it after it lapsed) is
/// put back, and a lease found lapsed is logged: the others may have taken this
/// server's runs for interrupted meanwhile.
async fn renew(core: &Core, id: &str, lease_ms: i64, address: Option<&str>) -> Result<()> {
    let c = core.conn().await?;
    let row = c
        .query_opt(
            "UPDATE lab_servers SET lease_until = now() + make_interval(secs => $2)
             WHERE id = $1 RETURNING (SELECT lease_until < now() FROM lab_servers WHERE id = $1)",
            &[&id, &secs(lease_ms)],
        )
        .await?;
    let lapsed = match row {
        Some(r) => r.get::<_, Option<bool>>(0).unwrap_or(false),
        None => {
            let parts: Vec<&str> = id.splitn(3, ':').collect();
            let pid = i64::from(std::process::id());
            c.execute(
                "INSERT INTO lab_servers (id, host, pid, started_ms, lease_until, address)
                 VALUES ($1, $2, $3, 0, now() + make_interval(secs => $4), $5)
                 ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until",
                &[
                    &id,
                    &parts.first().copied().unwrap_or(""),
                    &pid,
                    &secs(lease_ms),
                    &address,
                ],
            )
            .await?;
            true
        }
    };
    if lapsed {
        tracing::error!(
            server = %id,
            "this server's lease had lapsed: the other servers may have taken its runs for interrupted"
        );
    }
    Ok(())
}

/// Forget servers whose lease lapsed over an hour ago (their runs were long taken for
/// interrupted; a run without its server's row counts as one whose lease lapsed).
async fn forget_long_gone(c: &Client) -> Result<u64> {
    Ok(c.execute(
        "DELETE FROM lab_servers WHERE lease_until < now() - interval '1 hour'",
        &[],
    )
    .await?)
}

/// Which server owns the book, as `server` (this store's id; `None`: a store that is no
/// server) sees it: the server `book_owner` names, if its lease runs.
pub(super) fn book_home(core: &Core, server: Option<&str>) -> Result<crate::store::BookHome> {
    use crate::store::BookHome;
    let Some(server) = server else {
        return Ok(BookHome::Alone);
    };
    core.block(async {
        let c = core.conn().await?;
        let row = c
            .query_opt(
                "SELECT s.id, s.address FROM book_owner b JOIN lab_servers s ON s.id = b.server_id
                 WHERE b.id = 1 AND s.lease_until > now()",
                &[],
            )
            .await?;
        Ok(match row {
            None => BookHome::Unknown,
            Some(r) if r.get::<_, String>(0) == server => BookHome::Here,
            Some(r) => match r.get::<_, Option<String>>(1) {
                Some(address) => BookHome::At(address),
                None => BookHome::Unknown,
            },
        })
    })
}
