//! The lab inventory, the run queue's rows, stored schedules and their firings in
//! PostgreSQL.

use tokio_postgres::Client;

use super::{big, small};
use crate::clock::EpochMs;
use crate::lab::LabFile;
use crate::store::{FiringRecord, QueuedRunRecord, Result, ScheduleRecord, StoreError};

/// Replace the stored inventory with `lab` (loaded from `path`), inside the caller's
/// transaction.
pub(super) async fn save_lab(c: &Client, path: &str, lab: &LabFile, now: EpochMs) -> Result<()> {
    let json = serde_json::to_string(lab).map_err(|source| StoreError::Json {
        what: "lab",
        source,
    })?;
    c.execute(
        "INSERT INTO lab (id, path, loaded_ms, lab_json) VALUES (1, $1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET path = $1, loaded_ms = $2, lab_json = $3",
        &[&path, &now, &json],
    )
    .await?;
    c.execute("DELETE FROM lab_duts", &[]).await?;
    let ins = c
        .prepare(
            "INSERT INTO lab_duts (name, rack, slot, model, manufacturer, serial, offline, dut_json)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    for d in &lab.duts {
        let dj = serde_json::to_string(d).map_err(|source| StoreError::Json {
            what: "dut",
            source,
        })?;
        c.execute(
            &ins,
            &[
                &d.name,
                &d.location.as_ref().map(|l| l.rack.clone()),
                &d.location.as_ref().map(|l| big(l.slot)),
                &d.model,
                &d.manufacturer,
                &d.serial,
                &d.offline,
                &dj,
            ],
        )
        .await?;
    }
    Ok(())
}

/// The stored inventory and where it was loaded from.
pub(super) async fn load_lab(c: &Client) -> Result<Option<(String, EpochMs, LabFile)>> {
    let Some(row) = c
        .query_opt(
            "SELECT path, loaded_ms, lab_json FROM lab WHERE id = 1",
            &[],
        )
        .await?
    else {
        return Ok(None);
    };
    let lab = serde_json::from_str(row.get::<_, &str>(2)).map_err(|source| StoreError::Json {
        what: "lab",
        source,
    })?;
    Ok(Some((row.get(0), row.get(1), lab)))
}

pub(super) async fn queue_put(c: &Client, q: &QueuedRunRecord) -> Result<()> {
    let duts = serde_json::to_string(&q.duts).map_err(|source| StoreError::Json {
        what: "queued run's DUTs",
        source,
    })?;
    c.execute(
        "INSERT INTO run_queue (run_id, pack_name, priority, place, enqueued_ms,
            max_queue_ms, est_ms, duts_json, request_json, origin, rev)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                 (SELECT COALESCE(MAX(rev), 0) + 1 FROM run_queue))
         ON CONFLICT (run_id) DO UPDATE SET pack_name = excluded.pack_name,
            priority = excluded.priority, place = excluded.place,
            enqueued_ms = excluded.enqueued_ms, max_queue_ms = excluded.max_queue_ms,
            est_ms = excluded.est_ms, duts_json = excluded.duts_json,
            request_json = excluded.request_json, origin = excluded.origin,
            rev = excluded.rev",
        &[
            &q.run_id,
            &q.pack_name,
            &q.priority,
            &big(q.place),
            &q.enqueued_ms,
            &q.max_queue_ms,
            &q.est_ms,
            &duts,
            &q.request_json,
            &q.origin,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn queue_remove(c: &Client, run_id: &str) -> Result<bool> {
    Ok(
        c.execute("DELETE FROM run_queue WHERE run_id = $1", &[&run_id])
            .await?
            > 0,
    )
}

/// Take `run_id` out of the queue unless another transaction holds its row (that one
/// claims it; this one does not wait for it): the row-locking subselect skips a locked
/// row, so the delete finds nothing.
pub(super) async fn queue_claim(c: &Client, run_id: &str) -> Result<bool> {
    Ok(c.query_opt(
        "DELETE FROM run_queue WHERE run_id = (
             SELECT run_id FROM run_queue WHERE run_id = $1 FOR UPDATE SKIP LOCKED)
         RETURNING run_id",
        &[&run_id],
    )
    .await?
    .is_some())
}

pub(super) async fn queue_list(c: &Client) -> Result<Vec<QueuedRunRecord>> {
    let rows = c
        .query(
            "SELECT run_id, pack_name, priority, place, enqueued_ms, max_queue_ms, est_ms,
                    duts_json, request_json, origin
             FROM run_queue ORDER BY place",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| QueuedRunRecord {
            run_id: r.get(0),
            pack_name: r.get(1),
            priority: r.get(2),
            place: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
            enqueued_ms: r.get(4),
            max_queue_ms: r.get(5),
            est_ms: r.get(6),
            duts: serde_json::from_str(r.get::<_, &str>(7)).unwrap_or_default(),
            request_json: r.get(8),
            origin: r.get(9),
        })
        .collect())
}

/// (rows, highest rev): changes whenever any process writes or removes a row.
pub(super) async fn queue_signature(c: &Client) -> Result<(i64, i64)> {
    let r = c
        .query_one(
            "SELECT COUNT(*), COALESCE(MAX(rev), 0)::bigint FROM run_queue",
            &[],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

pub(super) async fn schedule_put(c: &Client, s: &ScheduleRecord) -> Result<()> {
    c.execute(
        "INSERT INTO schedules (id, name, def_json, paused, created_ms, since_ms,
            fired, pending_ms, last_run_id, rev)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
                 (SELECT COALESCE(MAX(rev), 0) + 1 FROM schedules))
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, def_json = excluded.def_json,
            paused = excluded.paused, created_ms = excluded.created_ms,
            since_ms = excluded.since_ms, fired = excluded.fired,
            pending_ms = excluded.pending_ms, last_run_id = excluded.last_run_id,
            rev = excluded.rev",
        &[
            &s.id,
            &s.name,
            &s.def_json,
            &s.paused,
            &s.created_ms,
            &s.since_ms,
            &big(s.fired),
            &s.pending_ms,
            &s.last_run_id,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn schedule_remove(c: &Client, id: &str) -> Result<bool> {
    Ok(c.execute("DELETE FROM schedules WHERE id = $1", &[&id])
        .await?
        > 0)
}

pub(super) async fn schedule_list(c: &Client) -> Result<Vec<ScheduleRecord>> {
    let rows = c
        .query(
            "SELECT id, name, def_json, paused, created_ms, since_ms, fired, pending_ms, last_run_id
             FROM schedules ORDER BY created_ms, id COLLATE \"C\"",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ScheduleRecord {
            id: r.get(0),
            name: r.get(1),
            def_json: r.get(2),
            paused: r.get(3),
            created_ms: r.get(4),
            since_ms: r.get(5),
            fired: small(r.get(6)),
            pending_ms: r.get(7),
            last_run_id: r.get(8),
        })
        .collect())
}

pub(super) async fn firing_add(c: &Client, f: &FiringRecord) -> Result<()> {
    c.execute(
        "INSERT INTO schedule_firings (schedule_id, due_ms, at_ms, kind, run_id, note)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &f.schedule_id,
            &f.due_ms,
            &f.at_ms,
            &f.kind,
            &f.run_id,
            &f.note,
        ],
    )
    .await?;
    Ok(())
}

/// The newest `limit` firings of a schedule, oldest first.
pub(super) async fn firings(
    c: &Client,
    schedule_id: &str,
    limit: u32,
) -> Result<Vec<FiringRecord>> {
    let rows = c
        .query(
            "SELECT schedule_id, due_ms, at_ms, kind, run_id, note FROM schedule_firings
             WHERE schedule_id = $1 ORDER BY id DESC LIMIT $2",
            &[&schedule_id, &(limit as i64)],
        )
        .await?;
    let mut v: Vec<FiringRecord> = rows
        .iter()
        .map(|r| FiringRecord {
            schedule_id: r.get(0),
            due_ms: r.get(1),
            at_ms: r.get(2),
            kind: r.get(3),
            run_id: r.get(4),
            note: r.get(5),
        })
        .collect();
    v.reverse();
    Ok(v)
}
