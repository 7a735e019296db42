//! Reservation book persistence in SQLite: live reservations (one row each, latest
//! state), the event history the console's timeline reads, and the inbox through which
//! another process (the CLI while a console runs) asks the book's owner to act.
//! [`SqliteBookStore`] is the [`BookStore`] on one connection of its own; the functions
//! take any connection.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::clock::EpochMs;
use crate::store::{BookStore, Result, RunOwner, SavedBook, StoreError, StoredEvent};
use testbay_core::reserve::{BookEvent, BookEventKind, ReservationView};

/// The reservation book's tables on a connection of its own.
pub struct SqliteBookStore {
    conn: Connection,
}

impl SqliteBookStore {
    /// Open the book's tables in the database at `db_path` (already migrated by
    /// [`super::SqliteStore::open`]).
    pub fn open(db_path: &Path) -> Result<Self> {
        let open_err = |source: rusqlite::Error| StoreError::Open {
            path: db_path.to_path_buf(),
            source: source.into(),
        };
        let conn = Connection::open(db_path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .map_err(open_err)?;
        Ok(Self { conn })
    }
}

impl BookStore for SqliteBookStore {
    fn write_events(&mut self, events: &[BookEvent]) -> Result<()> {
        write_events(&mut self.conn, events)
    }
    fn load_book(&self) -> Result<SavedBook> {
        load_book(&self.conn)
    }
    fn live_reservations(&self) -> Result<Vec<ReservationView>> {
        live_reservations(&self.conn)
    }
    fn live_runs(&self) -> Result<HashSet<String>> {
        live_runs(&self.conn)
    }
    fn events_since(&self, after_seq: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        events_since(&self.conn, after_seq, limit)
    }
    fn history(
        &self,
        resource: &str,
        from: EpochMs,
        to: EpochMs,
    ) -> Result<Vec<(EpochMs, String, ReservationView)>> {
        history(&self.conn, resource, from, to)
    }
    fn prune_events(&self, before: EpochMs) -> Result<usize> {
        prune_events(&self.conn, before)
    }
    fn inbox_post(&self, now: EpochMs, command_json: &str) -> Result<i64> {
        inbox_post(&self.conn, now, command_json)
    }
    fn inbox_pending(&self) -> Result<Vec<(i64, String)>> {
        inbox_pending(&self.conn)
    }
    fn inbox_answer(&self, id: i64, now: EpochMs, result_json: &str) -> Result<()> {
        inbox_answer(&self.conn, id, now, result_json)
    }
    fn inbox_result(&self, id: i64) -> Result<Option<String>> {
        inbox_result(&self.conn, id)
    }
    fn inbox_prune(&self, before: EpochMs) -> Result<usize> {
        inbox_prune(&self.conn, before)
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

/// Apply a batch of book events in one transaction: each event is appended to the event
/// log (a compact row); `reservations` keeps each live id's latest state, and an id that
/// left the book moves to `reservation_history` (an id created and gone within the batch
/// never touches `reservations`).
pub fn write_events(conn: &mut Connection, events: &[BookEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    {
        let mut ins = tx.prepare_cached(
            "INSERT OR REPLACE INTO book_events
             (seq, ts_ms, kind, reason, reservation_id, resource, start_ms, end_ms, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        // Latest event per id within the batch.
        let mut last: HashMap<u64, &BookEvent> = HashMap::new();
        let mut order: Vec<u64> = Vec::new();
        for e in events {
            let v = &e.reservation;
            ins.execute(params![
                e.seq as i64,
                e.ts,
                kind_str(e.kind),
                e.reason.map(enum_str),
                v.id.0 as i64,
                &*v.resource,
                v.start,
                v.end,
                v.expires
            ])?;
            if last.insert(v.id.0, e).is_none() {
                order.push(v.id.0);
            }
        }
        let mut upsert = tx.prepare_cached(
            "INSERT OR REPLACE INTO reservations (id, resource, status, holder, start_ms, end_ms, expires_ms, view_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM reservations WHERE id = ?1")?;
        let mut history = tx.prepare_cached(
            "INSERT OR REPLACE INTO reservation_history (id, resource, holder, start_ms, end_ms, ended_ms, reason, view_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for id in order {
            let e = last[&id];
            let v = &e.reservation;
            let json = serde_json::to_string(v).map_err(json_err("reservation"))?;
            if matches!(e.kind, BookEventKind::Released | BookEventKind::Expired) {
                delete.execute(params![id as i64])?;
                history.execute(params![
                    id as i64,
                    &*v.resource,
                    v.holder.to_string(),
                    v.start,
                    v.end,
                    e.ts,
                    e.reason.map(enum_str).unwrap_or_default(),
                    json
                ])?;
            } else {
                upsert.execute(params![
                    id as i64,
                    &*v.resource,
                    enum_str(v.status),
                    v.holder.to_string(),
                    v.start,
                    v.end,
                    v.expires,
                    json
                ])?;
            }
        }
    }
    tx.commit()?;
    Ok(())
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

pub fn load_book(conn: &Connection) -> Result<SavedBook> {
    let live = live_reservations(conn)?;
    let max_seq: Option<i64> =
        conn.query_row("SELECT MAX(seq) FROM book_events", [], |r| r.get(0))?;
    let max_id: Option<i64> = conn.query_row(
        "SELECT MAX(m) FROM (SELECT MAX(reservation_id) AS m FROM book_events
         UNION ALL SELECT MAX(id) FROM reservations UNION ALL SELECT MAX(id) FROM reservation_history)",
        [],
        |r| r.get(0),
    )?;
    Ok(SavedBook {
        live,
        next_id: max_id.map_or(1, |m| m as u64 + 1),
        next_seq: max_seq.map_or(1, |m| m as u64 + 1),
    })
}

/// Stored live reservations, by id. Between a holder's death and the next sweep these may
/// include lapsed ones; compare `expires` with the time to tell.
pub fn live_reservations(conn: &Connection) -> Result<Vec<ReservationView>> {
    let mut stmt = conn.prepare_cached("SELECT view_json FROM reservations ORDER BY id")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(serde_json::from_str(&row?).map_err(json_err("reservation"))?);
    }
    Ok(out)
}

/// Ids of the runs that may still hold something in the book (see `reserve::live`): not
/// finished (queued, running or stalled) and owned by a process that is alive, as
/// [`crate::store::Store::interrupted_runs`] judges it. A run whose console died is over even
/// before recovery marks it so.
pub fn live_runs(conn: &Connection) -> Result<HashSet<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, owner_pid, owner_start FROM runs
         WHERE status IN ('queued', 'running', 'stalled')",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<i64>>(1)?,
            r.get::<_, Option<i64>>(2)?,
        ))
    })?;
    let mut live = HashSet::new();
    for row in rows {
        let (id, pid, start) = row?;
        if RunOwner::alive(pid, start) {
            live.insert(id);
        }
    }
    Ok(live)
}

/// Book events after `after_seq`, oldest first, at most `limit`.
pub fn events_since(conn: &Connection, after_seq: u64, limit: usize) -> Result<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, ts_ms, kind, reason, reservation_id, resource, start_ms, end_ms, expires_ms
         FROM book_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after_seq as i64, limit as i64], |r| {
        Ok(StoredEvent {
            seq: r.get::<_, i64>(0)? as u64,
            ts: r.get(1)?,
            kind: r.get(2)?,
            reason: r.get(3)?,
            reservation_id: r.get::<_, i64>(4)? as u64,
            resource: r.get(5)?,
            start: r.get(6)?,
            end: r.get(7)?,
            expires: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Reservations of `resource` that ended and overlap `[from, to)`, by start: the
/// timeline's past.
pub fn history(
    conn: &Connection,
    resource: &str,
    from: EpochMs,
    to: EpochMs,
) -> Result<Vec<(EpochMs, String, ReservationView)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT ended_ms, reason, view_json FROM reservation_history
         WHERE resource = ?1 AND start_ms < ?3 AND end_ms > ?2 ORDER BY start_ms, id",
    )?;
    let rows = stmt.query_map(params![resource, from, to], |r| {
        Ok((
            r.get::<_, EpochMs>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (ended, reason, json) = row?;
        out.push((
            ended,
            reason,
            serde_json::from_str(&json).map_err(json_err("reservation"))?,
        ));
    }
    Ok(out)
}

/// Drop history older than `before` (live reservations are untouched).
pub fn prune_events(conn: &Connection, before: EpochMs) -> Result<usize> {
    let n = conn.execute("DELETE FROM book_events WHERE ts_ms < ?1", params![before])?;
    Ok(n + conn.execute(
        "DELETE FROM reservation_history WHERE ended_ms < ?1",
        params![before],
    )?)
}

/// Post a command for the book's owner; returns the inbox row id.
pub fn inbox_post(conn: &Connection, now: EpochMs, command_json: &str) -> Result<i64> {
    conn.execute(
        "INSERT INTO book_inbox (created_ms, command_json) VALUES (?1, ?2)",
        params![now, command_json],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Commands not yet answered, oldest first.
pub fn inbox_pending(conn: &Connection) -> Result<Vec<(i64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, command_json FROM book_inbox WHERE done_ms IS NULL ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn inbox_answer(conn: &Connection, id: i64, now: EpochMs, result_json: &str) -> Result<()> {
    conn.execute(
        "UPDATE book_inbox SET done_ms = ?2, result_json = ?3 WHERE id = ?1",
        params![id, now, result_json],
    )?;
    Ok(())
}

/// The answer to an inbox command, once there is one.
pub fn inbox_result(conn: &Connection, id: i64) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT result_json FROM book_inbox WHERE id = ?1 AND done_ms IS NOT NULL",
            params![id],
            |r| r.get(0),
        )
        .optional()?)
}

/// Forget answered commands older than `before`.
pub fn inbox_prune(conn: &Connection, before: EpochMs) -> Result<usize> {
    Ok(conn.execute(
        "DELETE FROM book_inbox WHERE done_ms IS NOT NULL AND done_ms < ?1",
        params![before],
    )?)
}
