//! Retention in PostgreSQL, on pooled connections: candidates chosen in one query
//! (`ROW_NUMBER` per pack), one run removed per statement (the rest goes by `ON DELETE
//! CASCADE`). Space: PostgreSQL's autovacuum makes freed rows reusable on its own;
//! [`RetentionStore::reclaim`] runs a plain `VACUUM` on the tables that pruning empties
//! (no exclusive lock, so running runs keep writing) and reports how much the database
//! shrank by, which is often nothing: plain `VACUUM` gives back only empty pages at a
//! table's end. `VACUUM FULL` would rewrite the tables under an exclusive lock, which a
//! lab's running runs must never wait for.

use std::sync::Arc;

use super::Core;
use crate::clock::EpochMs;
use crate::store::retention::{DbSize, PruneCandidate, RetentionStore};
use crate::store::{Result, StoreError};

/// Statuses of runs that are still going: never removed.
const GOING: &str = "('queued', 'running', 'stalled')";

/// The tables a prune empties rows of, vacuumed by `reclaim`.
const PRUNED_TABLES: &str =
    "runs, task_results, sub_results, task_attempts, sections, measurements, measurement_tallies, run_keep";

pub struct PgRetentionStore {
    core: Arc<Core>,
}

impl PgRetentionStore {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    async fn db_bytes(c: &tokio_postgres::Client) -> Result<u64> {
        let n: i64 = c
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await?
            .get(0);
        Ok(n.max(0) as u64)
    }
}

impl RetentionStore for PgRetentionStore {
    fn candidates(
        &self,
        older_than: Option<EpochMs>,
        beyond: Option<u32>,
        limit: u32,
    ) -> Result<Vec<PruneCandidate>> {
        if older_than.is_none() && beyond.is_none() {
            return Ok(Vec::new());
        }
        let beyond_i = beyond.map(i64::from);
        let limit = i64::from(limit);
        self.core.block(self.core.on_conn(async |c| {
            let rows = c
                .query(
                    &format!(
                        "SELECT id, pack_name, created_ms, rn FROM (
                             SELECT id, pack_name, created_ms, status,
                                    ROW_NUMBER() OVER (PARTITION BY pack_name
                                                       ORDER BY created_ms DESC, id DESC) AS rn
                             FROM runs) r
                         WHERE status NOT IN {GOING}
                           AND id NOT IN (SELECT run_id FROM baselines)
                           AND id NOT IN (SELECT run_id FROM run_keep)
                           AND (($1::BIGINT IS NOT NULL AND created_ms < $1)
                                OR ($2::BIGINT IS NOT NULL AND rn > $2))
                         ORDER BY created_ms, id
                         LIMIT $3"
                    ),
                    &[&older_than, &beyond_i, &limit],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| {
                    let created_ms: EpochMs = r.get(2);
                    PruneCandidate {
                        run_id: r.get(0),
                        pack: r.get(1),
                        created_ms,
                        why: if older_than.is_some_and(|t| created_ms < t) {
                            "age".into()
                        } else {
                            "count".into()
                        },
                    }
                })
                .collect())
        }))
    }

    fn remove_run(&self, run_id: &str) -> Result<bool> {
        self.core.block(self.core.on_conn(async |c| {
            let n = c
                .execute(
                    &format!(
                        "DELETE FROM runs WHERE id = $1 AND status NOT IN {GOING}
                           AND id NOT IN (SELECT run_id FROM baselines)
                           AND id NOT IN (SELECT run_id FROM run_keep)"
                    ),
                    &[&run_id],
                )
                .await?;
            Ok(n == 1)
        }))
    }

    fn set_keep(&self, run_id: &str, keep: bool, now: EpochMs) -> Result<()> {
        self.core.block(self.core.in_tx(async |c| {
            let exists = c
                .query_opt("SELECT 1 FROM runs WHERE id = $1", &[&run_id])
                .await?;
            if exists.is_none() {
                return Err(StoreError::RunNotFound(run_id.to_string()));
            }
            if keep {
                c.execute(
                    "INSERT INTO run_keep (run_id, kept_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&run_id, &now],
                )
                .await?;
            } else {
                c.execute("DELETE FROM run_keep WHERE run_id = $1", &[&run_id])
                    .await?;
            }
            Ok(())
        }))
    }

    fn is_kept(&self, run_id: &str) -> Result<bool> {
        self.core.block(self.core.on_conn(async |c| {
            Ok(
                c.query_opt("SELECT 1 FROM run_keep WHERE run_id = $1", &[&run_id])
                    .await?
                    .is_some(),
            )
        }))
    }

    fn size(&self) -> Result<DbSize> {
        self.core.block(self.core.on_conn(async |c| {
            Ok(DbSize {
                file_bytes: Self::db_bytes(c).await?,
                // PostgreSQL keeps no free-page count the way SQLite does; dead rows are
                // reused by later writes.
                free_bytes: 0,
            })
        }))
    }

    fn reclaim(&self) -> Result<u64> {
        self.core.block(self.core.on_conn(async |c| {
            let before = Self::db_bytes(c).await?;
            c.batch_execute(&format!("VACUUM {PRUNED_TABLES}")).await?;
            Ok(before.saturating_sub(Self::db_bytes(c).await?))
        }))
    }
}
