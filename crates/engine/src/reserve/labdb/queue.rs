//! The run queue several servers share: a queued run is taken by exactly one of them.
//! `claim_next` takes the first waiting run (highest priority, then first come) with
//! `FOR UPDATE SKIP LOCKED`: a row another server is taking is passed over, never
//! waited on and never taken twice.

use serde::Serialize;

use super::error::LabResult;
use super::LabBook;
use crate::clock::EpochMs;
use crate::queue::Priority;

/// A run waiting in (or taken from) the lab's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedRun {
    pub id: u64,
    pub run_id: String,
    pub priority: Priority,
    /// What the server that starts it needs (the launch, as the queue's owner wrote it).
    pub payload: String,
    pub enqueued_at: EpochMs,
    pub enqueued_by: String,
}

fn rank(p: Priority) -> i16 {
    match p {
        Priority::Low => 0,
        Priority::Normal => 1,
        Priority::High => 2,
    }
}

fn priority(rank: i16) -> Priority {
    match rank {
        0 => Priority::Low,
        1 => Priority::Normal,
        _ => Priority::High,
    }
}

const QUEUE_COLS: &str = "id, run_id, rank, payload, testbay_ms(enqueued_at), enqueued_by";

fn from_row(r: &tokio_postgres::Row) -> QueuedRun {
    QueuedRun {
        id: r.get::<_, i64>(0) as u64,
        run_id: r.get(1),
        priority: priority(r.get(2)),
        payload: r.get(3),
        enqueued_at: r.get(4),
        enqueued_by: r.get(5),
    }
}

impl LabBook {
    /// Put run `run_id` in the queue (once: queuing it again changes nothing and
    /// returns false).
    pub async fn enqueue(
        &self,
        run_id: &str,
        priority: Priority,
        payload: &str,
    ) -> LabResult<bool> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "INSERT INTO lab_queue (run_id, rank, payload, state, enqueued_by, change, changed_by)
                 VALUES ($1, $2, $3, 'queued', $4, 'queued', $4)
                 ON CONFLICT (run_id) DO NOTHING",
                &[&run_id, &rank(priority), &payload, &&*self.server],
            )
            .await?;
        Ok(n == 1)
    }

    /// Take the first waiting run for this server: highest priority, then first queued.
    /// `None` when nothing waits (or every waiting run is being taken by another server).
    pub async fn claim_next(&self) -> LabResult<Option<QueuedRun>> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE lab_queue
                 SET state = 'started', claimed_by = $1, claimed_at = now(),
                     change = 'started', changed_by = $1
                 WHERE id = (SELECT id FROM lab_queue WHERE state = 'queued'
                             ORDER BY rank DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING {QUEUE_COLS}"
            ))
            .await?;
        let row = client.query_opt(&stmt, &[&&*self.server]).await?;
        Ok(row.as_ref().map(from_row))
    }

    /// Take run `run_id` out of the queue if it still waits. Returns whether it did.
    pub async fn cancel_queued(&self, run_id: &str) -> LabResult<bool> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE lab_queue SET state = 'cancelled', change = 'cancelled', changed_by = $2
                 WHERE run_id = $1 AND state = 'queued'",
                &[&run_id, &&*self.server],
            )
            .await?;
        Ok(n == 1)
    }

    /// The waiting runs in the order they will be taken.
    pub async fn queued(&self) -> LabResult<Vec<QueuedRun>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {QUEUE_COLS} FROM lab_queue WHERE state = 'queued'
                     ORDER BY rank DESC, id"
                ),
                &[],
            )
            .await?;
        Ok(rows.iter().map(from_row).collect())
    }
}
