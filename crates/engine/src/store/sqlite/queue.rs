//! The run queue's rows (`run_queue`), stored schedules and their firings.

use rusqlite::{params, Connection};

use crate::store::{FiringRecord, QueuedRunRecord, Result, ScheduleRecord, StoreError};

pub fn put(conn: &Connection, q: &QueuedRunRecord) -> Result<()> {
    let duts = serde_json::to_string(&q.duts).map_err(|source| StoreError::Json {
        what: "queued run's DUTs",
        source,
    })?;
    conn.execute(
        "INSERT OR REPLACE INTO run_queue (run_id, pack_name, priority, place, enqueued_ms,
            max_queue_ms, est_ms, duts_json, request_json, origin, rev)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,
                 (SELECT COALESCE(MAX(rev), 0) + 1 FROM run_queue))",
        params![
            q.run_id,
            q.pack_name,
            q.priority,
            i64::try_from(q.place).unwrap_or(i64::MAX),
            q.enqueued_ms,
            q.max_queue_ms,
            q.est_ms,
            duts,
            q.request_json,
            q.origin
        ],
    )?;
    Ok(())
}

pub fn remove(conn: &Connection, run_id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM run_queue WHERE run_id = ?1", [run_id])? > 0)
}

pub fn list(conn: &Connection) -> Result<Vec<QueuedRunRecord>> {
    let mut st = conn.prepare(
        "SELECT run_id, pack_name, priority, place, enqueued_ms, max_queue_ms, est_ms,
                duts_json, request_json, origin
         FROM run_queue ORDER BY place",
    )?;
    let rows = st.query_map([], |r| {
        let duts: String = r.get(7)?;
        Ok(QueuedRunRecord {
            run_id: r.get(0)?,
            pack_name: r.get(1)?,
            priority: r.get(2)?,
            place: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
            enqueued_ms: r.get(4)?,
            max_queue_ms: r.get(5)?,
            est_ms: r.get(6)?,
            duts: serde_json::from_str(&duts).unwrap_or_default(),
            request_json: r.get(8)?,
            origin: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// (rows, highest rev): changes whenever any process writes or removes a row.
pub fn signature(conn: &Connection) -> Result<(i64, i64)> {
    Ok(conn.query_row(
        "SELECT COUNT(*), COALESCE(MAX(rev), 0) FROM run_queue",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

pub fn schedule_put(conn: &Connection, s: &ScheduleRecord) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO schedules (id, name, def_json, paused, created_ms, since_ms,
            fired, pending_ms, last_run_id, rev)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
                 (SELECT COALESCE(MAX(rev), 0) + 1 FROM schedules))",
        params![
            s.id,
            s.name,
            s.def_json,
            s.paused,
            s.created_ms,
            s.since_ms,
            s.fired,
            s.pending_ms,
            s.last_run_id
        ],
    )?;
    Ok(())
}

pub fn schedule_remove(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM schedules WHERE id = ?1", [id])? > 0)
}

pub fn schedule_list(conn: &Connection) -> Result<Vec<ScheduleRecord>> {
    let mut st = conn.prepare(
        "SELECT id, name, def_json, paused, created_ms, since_ms, fired, pending_ms, last_run_id
         FROM schedules ORDER BY created_ms, id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(ScheduleRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            def_json: r.get(2)?,
            paused: r.get(3)?,
            created_ms: r.get(4)?,
            since_ms: r.get(5)?,
            fired: r.get(6)?,
            pending_ms: r.get(7)?,
            last_run_id: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub fn firing_add(conn: &Connection, f: &FiringRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO schedule_firings (schedule_id, due_ms, at_ms, kind, run_id, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![f.schedule_id, f.due_ms, f.at_ms, f.kind, f.run_id, f.note],
    )?;
    Ok(())
}

/// The newest `limit` firings of a schedule, oldest first.
pub fn firings(conn: &Connection, schedule_id: &str, limit: u32) -> Result<Vec<FiringRecord>> {
    let mut st = conn.prepare(
        "SELECT schedule_id, due_ms, at_ms, kind, run_id, note FROM schedule_firings
         WHERE schedule_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = st.query_map(params![schedule_id, limit], |r| {
        Ok(FiringRecord {
            schedule_id: r.get(0)?,
            due_ms: r.get(1)?,
            at_ms: r.get(2)?,
            kind: r.get(3)?,
            run_id: r.get(4)?,
            note: r.get(5)?,
        })
    })?;
    let mut v = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    v.reverse();
    Ok(v)
}
