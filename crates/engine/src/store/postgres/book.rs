//! The reservation book's persistence in PostgreSQL ([`PgBookStore`]): live reservations,
//! the event history, the inbox; and the book's ownership, a session advisory lock held
//! on a connection of the owner's own (outside the pool, so it is never recycled), with
//! the owner's name in `book_owner`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::Client;

use super::Core;
use crate::clock::EpochMs;
use crate::store::{BookLock, BookStore, Result, SavedBook, StoreError, StoredEvent};
use testbay_core::reserve::{BookEvent, BookEventKind, ReservationView};

/// The key of the book's advisory lock.
const BOOK_LOCK: i64 = 0x7465_7374_6261_7902;

/// The book's ownership: the session holding the advisory lock. Dropping it closes the
/// session, which releases the lock. A keeper task takes the lock again on a new
/// session when the database drops the first (a restart): the other servers leave it
/// free while this server's lease runs ([`lock`]), so it is normally back within the
/// lease; if another server has it by then, the ownership is [`BookLock::lost`].
struct AdvisoryLock {
    /// The session holding the lock (`None` once given up).
    client: Arc<Mutex<Option<Client>>>,
    lost: Arc<AtomicBool>,
    _stop: tokio::sync::watch::Sender<bool>,
    core: Arc<Core>,
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        // Given up, not lost: the next owner need not wait for this server's lease.
        // Closing the session then releases the lock now, whatever the keeper does.
        let client = self.client.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let (Some(c), false) = (&client, self.lost.load(Ordering::Acquire)) {
            let cleared = self
                .core
                .block(c.execute("UPDATE book_owner SET server_id = NULL WHERE id = 1", &[]));
            if let Err(e) = cleared {
                tracing::debug!(error = %e, "cannot record that the book was given up");
            }
        }
        drop(client);
    }
}

impl BookLock for AdvisoryLock {
    fn lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }
}

/// How often the keeper looks at the lock's session.
const KEEPER_PERIOD: Duration = Duration::from_millis(250);

/// Take the book's lock on `client` and name the owner; false if another session has it.
async fn take(client: &Client, who: &str, server: Option<&str>) -> Result<bool> {
    let got: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&BOOK_LOCK])
        .await?
        .get(0);
    if got {
        client
            .execute(
                "INSERT INTO book_owner (id, who, server_id) VALUES (1, $1, $2)
                 ON CONFLICT (id) DO UPDATE SET who = $1, server_id = $2",
                &[&who, &server],
            )
            .await?;
    }
    Ok(got)
}

/// Own the book for `who` (this store's server `server`), unless another session holds
/// its lock, or the server last named its owner still has a running lease (it is
/// taking the lock back after losing its session).
pub(super) fn lock(
    core: &Arc<Core>,
    who: &str,
    server: Option<&str>,
) -> Result<Option<Box<dyn BookLock>>> {
    core.block(async {
        let client = core.own_connection().await?;
        let owner_alive: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM book_owner b JOIN lab_servers s ON s.id = b.server_id
                 WHERE b.id = 1 AND s.lease_until > now() AND b.server_id IS DISTINCT FROM $1)",
                &[&server],
            )
            .await?
            .get(0);
        if owner_alive || !take(&client, who, server).await? {
            return Ok(None);
        }
        let client = Arc::new(Mutex::new(Some(client)));
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (keeper_client, keeper_lost) = (client.clone(), lost.clone());
        let (who, server) = (who.to_string(), server.map(str::to_string));
        let weak = Arc::downgrade(core);
        core.rt().spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(KEEPER_PERIOD) => {}
                    _ = stopped.changed() => return,
                }
                let closed = match &*keeper_client.lock().unwrap_or_else(|p| p.into_inner()) {
                    Some(c) => c.is_closed(),
                    None => return,
                };
                if !closed {
                    continue;
                }
                let Some(core) = weak.upgrade() else { return };
                let Ok(fresh) = core.own_connection().await else {
                    continue;
                };
                match take(&fresh, &who, server.as_deref()).await {
                    Ok(true) => {
                        let mut held = keeper_client.lock().unwrap_or_else(|p| p.into_inner());
                        if held.is_none() {
                            return;
                        }
                        tracing::warn!("took the reservation book's lock back after the database connection dropped");
                        *held = Some(fresh);
                    }
                    Ok(false) => {
                        tracing::error!("the reservation book's lock was lost: another server took it while the database connection was down");
                        keeper_lost.store(true, Ordering::Release);
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot take the reservation book's lock back yet"),
                }
            }
        });
        let lock: Box<dyn BookLock> = Box::new(AdvisoryLock {
            client,
            lost,
            _stop: stop,
            core: core.clone(),
        });
        Ok(Some(lock))
    })
}

pub(super) fn owner(core: &Core) -> Option<String> {
    core.block(async {
        let c = core.conn().await.ok()?;
        let free: bool = c
            .query_one("SELECT pg_try_advisory_lock($1)", &[&BOOK_LOCK])
            .await
            .ok()?
            .get(0);
        if free {
            let _ = c
                .execute("SELECT pg_advisory_unlock($1)", &[&BOOK_LOCK])
                .await;
            return None;
        }
        let who: Option<String> = c
            .query_opt("SELECT who FROM book_owner WHERE id = 1", &[])
            .await
            .ok()
            .flatten()
            .map(|r| r.get(0));
        Some(who.unwrap_or_else(|| "another Testbay process".into()))
    })
}

/// The reservation book's tables, on pooled connections.
pub struct PgBookStore {
    core: Arc<Core>,
}

impl PgBookStore {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    fn on<T>(&self, f: impl AsyncFnOnce(&Client) -> Result<T>) -> Result<T> {
        self.core.block(self.core.on_conn(f))
    }
}

fn json_err(what: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |source| StoreError::Json { what, source }
}

fn enum_str<T: serde::Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn kind_str(k: BookEventKind) -> &'static str {
    match k {
        BookEventKind::Requested => "requested",
        BookEventKind::Waiting => "waiting",
        BookEventKind::Claimed => "claimed",
        BookEventKind::Renewed => "renewed",
        BookEventKind::Extended => "extended",
        BookEventKind::Released => "released",
        BookEventKind::Expired => "expired",
    }
}

/// Apply a batch of book events inside the caller's transaction (see the SQLite store's
/// `write_events`).
async fn write_events(c: &Client, events: &[BookEvent]) -> Result<()> {
    let ins = c
        .prepare(
            "INSERT INTO book_events
             (seq, ts_ms, kind, reason, reservation_id, resource, start_ms, end_ms, expires_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (seq) DO UPDATE SET ts_ms = $2, kind = $3, reason = $4,
                reservation_id = $5, resource = $6, start_ms = $7, end_ms = $8, expires_ms = $9",
        )
        .await?;
    let mut last: HashMap<u64, &BookEvent> = HashMap::new();
    let mut order: Vec<u64> = Vec::new();
    for e in events {
        let v = &e.reservation;
        c.execute(
            &ins,
            &[
                &(e.seq as i64),
                &e.ts,
                &kind_str(e.kind),
                &e.reason.map(enum_str),
                &(v.id.0 as i64),
                &&*v.resource,
                &v.start,
                &v.end,
                &v.expires,
            ],
        )
        .await?;
        if last.insert(v.id.0, e).is_none() {
            order.push(v.id.0);
        }
    }
    for id in order {
        let e = last[&id];
        let v = &e.reservation;
        let json = serde_json::to_string(v).map_err(json_err("reservation"))?;
        if matches!(e.kind, BookEventKind::Released | BookEventKind::Expired) {
            c.execute("DELETE FROM reservations WHERE id = $1", &[&(id as i64)])
                .await?;
            c.execute(
                "INSERT INTO reservation_history (id, resource, holder, start_ms, end_ms, ended_ms, reason, view_json)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET resource = $2, holder = $3, start_ms = $4,
                    end_ms = $5, ended_ms = $6, reason = $7, view_json = $8",
                &[
                    &(id as i64),
                    &&*v.resource,
                    &v.holder.to_string(),
                    &v.start,
                    &v.end,
                    &e.ts,
                    &e.reason.map(enum_str).unwrap_or_default(),
                    &json,
                ],
            )
            .await?;
        } else {
            c.execute(
                "INSERT INTO reservations (id, resource, status, holder, start_ms, end_ms, expires_ms, view_json)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET resource = $2, status = $3, holder = $4,
                    start_ms = $5, end_ms = $6, expires_ms = $7, view_json = $8",
                &[
                    &(id as i64),
                    &&*v.resource,
                    &enum_str(v.status),
                    &v.holder.to_string(),
                    &v.start,
                    &v.end,
                    &v.expires,
                    &json,
                ],
            )
            .await?;
        }
    }
    Ok(())
}

async fn live_reservations(c: &Client) -> Result<Vec<ReservationView>> {
    let rows = c
        .query("SELECT view_json FROM reservations ORDER BY id", &[])
        .await?;
    rows.iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(json_err("reservation")))
        .collect()
}

impl BookStore for PgBookStore {
    fn write_events(&mut self, events: &[BookEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.core
            .block(self.core.in_tx(async |c| write_events(c, events).await))
    }

    fn load_book(&self) -> Result<SavedBook> {
        self.on(async |c| {
            let live = live_reservations(c).await?;
            let max_seq: Option<i64> = c
                .query_one("SELECT MAX(seq) FROM book_events", &[])
                .await?
                .get(0);
            let max_id: Option<i64> = c
                .query_one(
                    "SELECT MAX(m) FROM (SELECT MAX(reservation_id) AS m FROM book_events
                     UNION ALL SELECT MAX(id) FROM reservations
                     UNION ALL SELECT MAX(id) FROM reservation_history) x",
                    &[],
                )
                .await?
                .get(0);
            Ok(SavedBook {
                live,
                next_id: max_id.map_or(1, |m| m as u64 + 1),
                next_seq: max_seq.map_or(1, |m| m as u64 + 1),
            })
        })
    }

    fn live_reservations(&self) -> Result<Vec<ReservationView>> {
        self.on(async |c| live_reservations(c).await)
    }

    fn live_runs(&self) -> Result<HashSet<String>> {
        self.on(async |c| {
            let rows = c.query(&super::runs::unfinished_sql(), &[]).await?;
            Ok(rows
                .iter()
                .filter(|r| super::runs::has_console(r))
                .map(|r| r.get(0))
                .collect())
        })
    }

    fn events_since(&self, after_seq: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        self.on(async |c| {
            let rows = c
                .query(
                    "SELECT seq, ts_ms, kind, reason, reservation_id, resource, start_ms, end_ms, expires_ms
                     FROM book_events WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&(after_seq as i64), &(limit as i64)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| StoredEvent {
                    seq: r.get::<_, i64>(0) as u64,
                    ts: r.get(1),
                    kind: r.get(2),
                    reason: r.get(3),
                    reservation_id: r.get::<_, i64>(4) as u64,
                    resource: r.get(5),
                    start: r.get(6),
                    end: r.get(7),
                    expires: r.get(8),
                })
                .collect())
        })
    }

    fn history(
        &self,
        resource: &str,
        from: EpochMs,
        to: EpochMs,
    ) -> Result<Vec<(EpochMs, String, ReservationView)>> {
        self.on(async |c| {
            let rows = c
                .query(
                    "SELECT ended_ms, reason, view_json FROM reservation_history
                     WHERE resource = $1 AND start_ms < $3 AND end_ms > $2 ORDER BY start_ms, id",
                    &[&resource, &from, &to],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.get(0),
                        r.get(1),
                        serde_json::from_str(r.get::<_, &str>(2))
                            .map_err(json_err("reservation"))?,
                    ))
                })
                .collect()
        })
    }

    fn prune_events(&self, before: EpochMs) -> Result<usize> {
        self.on(async |c| {
            let n = c
                .execute("DELETE FROM book_events WHERE ts_ms < $1", &[&before])
                .await?;
            let m = c
                .execute(
                    "DELETE FROM reservation_history WHERE ended_ms < $1",
                    &[&before],
                )
                .await?;
            Ok((n + m) as usize)
        })
    }

    fn inbox_post(&self, now: EpochMs, command_json: &str) -> Result<i64> {
        self.on(async |c| {
            Ok(c.query_one(
                "INSERT INTO book_inbox (created_ms, command_json) VALUES ($1, $2) RETURNING id",
                &[&now, &command_json],
            )
            .await?
            .get(0))
        })
    }

    fn inbox_pending(&self) -> Result<Vec<(i64, String)>> {
        self.on(async |c| {
            let rows = c
                .query(
                    "SELECT id, command_json FROM book_inbox WHERE done_ms IS NULL ORDER BY id",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn inbox_answer(&self, id: i64, now: EpochMs, result_json: &str) -> Result<()> {
        self.on(async |c| {
            c.execute(
                "UPDATE book_inbox SET done_ms = $2, result_json = $3 WHERE id = $1",
                &[&id, &now, &result_json],
            )
            .await?;
            Ok(())
        })
    }

    fn inbox_result(&self, id: i64) -> Result<Option<String>> {
        self.on(async |c| {
            Ok(c.query_opt(
                "SELECT result_json FROM book_inbox WHERE id = $1 AND done_ms IS NOT NULL",
                &[&id],
            )
            .await?
            .and_then(|r| r.get(0)))
        })
    }

    fn inbox_prune(&self, before: EpochMs) -> Result<usize> {
        self.on(async |c| {
            Ok(c.execute(
                "DELETE FROM book_inbox WHERE done_ms IS NOT NULL AND done_ms < $1",
                &[&before],
            )
            .await? as usize)
        })
    }
}
