//! DUT health and its history in PostgreSQL, on pooled connections.

use std::sync::Arc;

use tokio_postgres::{Client, Row};

use super::{small, Core};
use crate::clock::EpochMs;
use crate::store::{DutHealth, Health, HealthChange, HealthStore, Result};

pub struct PgHealthStore {
    core: Arc<Core>,
}

impl PgHealthStore {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    fn on<T>(&self, f: impl AsyncFnOnce(&Client) -> Result<T>) -> Result<T> {
        self.core.block(self.core.on_conn(f))
    }
}

const COLUMNS: &str =
    "dut, health, since_ms, reason, run_id, infra_failures, last_check_ms FROM dut_health";

fn row(r: &Row) -> DutHealth {
    DutHealth {
        dut: r.get(0),
        health: Health::parse(r.get(1)),
        since_ms: r.get(2),
        reason: r.get(3),
        run_id: r.get(4),
        infra_failures: small(r.get(5)),
        last_check_ms: r.get(6),
    }
}

async fn ensure(c: &Client, dut: &str) -> Result<()> {
    c.execute(
        "INSERT INTO dut_health (dut, health, infra_failures) VALUES ($1, 'unknown', 0)
         ON CONFLICT (dut) DO NOTHING",
        &[&dut],
    )
    .await?;
    Ok(())
}

impl HealthStore for PgHealthStore {
    fn all_health(&self) -> Result<Vec<DutHealth>> {
        self.on(async |c| {
            let rows = c
                .query(&format!("SELECT {COLUMNS} ORDER BY dut COLLATE \"C\""), &[])
                .await?;
            Ok(rows.iter().map(row).collect())
        })
    }

    fn health(&self, dut: &str) -> Result<DutHealth> {
        self.on(async |c| {
            let found = c
                .query_opt(&format!("SELECT {COLUMNS} WHERE dut = $1"), &[&dut])
                .await?;
            Ok(found.map(|r| row(&r)).unwrap_or_else(|| DutHealth {
                dut: dut.to_string(),
                ..Default::default()
            }))
        })
    }

    fn set_health(&self, dut: &str, ch: &HealthChange) -> Result<()> {
        self.core.block(self.core.in_tx(async |c| {
            ensure(c, dut).await?;
            c.execute(
                "UPDATE dut_health SET health = $2, since_ms = $3, reason = $4, run_id = $5 WHERE dut = $1",
                &[&dut, &ch.health.as_str(), &ch.ts_ms, &ch.reason, &ch.run_id],
            )
            .await?;
            c.execute(
                "INSERT INTO dut_health_history (dut, ts_ms, health, reason, run_id, note)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&dut, &ch.ts_ms, &ch.health.as_str(), &ch.reason, &ch.run_id, &ch.note],
            )
            .await?;
            Ok(())
        }))
    }

    fn check_started(&self, dut: &str, now: EpochMs) -> Result<()> {
        self.on(async |c| {
            ensure(c, dut).await?;
            c.execute(
                "UPDATE dut_health SET last_check_ms = $2, infra_failures = 0 WHERE dut = $1",
                &[&dut, &now],
            )
            .await?;
            Ok(())
        })
    }

    fn count_run(&self, dut: &str, infra_failure: bool) -> Result<u32> {
        self.on(async |c| {
            ensure(c, dut).await?;
            let sql = if infra_failure {
                "UPDATE dut_health SET infra_failures = infra_failures + 1 WHERE dut = $1
                 RETURNING infra_failures"
            } else {
                "UPDATE dut_health SET infra_failures = 0 WHERE dut = $1 RETURNING infra_failures"
            };
            Ok(small(c.query_one(sql, &[&dut]).await?.get(0)))
        })
    }

    fn health_history(&self, dut: &str, limit: u32) -> Result<Vec<HealthChange>> {
        self.on(async |c| {
            let rows = c
                .query(
                    "SELECT ts_ms, health, reason, run_id, note FROM dut_health_history
                     WHERE dut = $1 ORDER BY id DESC LIMIT $2",
                    &[&dut, &(limit as i64)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| HealthChange {
                    ts_ms: r.get(0),
                    health: Health::parse(r.get(1)),
                    reason: r.get(2),
                    run_id: r.get(3),
                    note: r.get(4),
                })
                .collect())
        })
    }

    fn health_run_add(&self, run_id: &str, dut: &str, now: EpochMs) -> Result<()> {
        self.on(async |c| {
            c.execute(
                "INSERT INTO health_runs (run_id, dut, started_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (run_id) DO UPDATE SET dut = $2, started_ms = $3",
                &[&run_id, &dut, &now],
            )
            .await?;
            Ok(())
        })
    }

    fn health_run_remove(&self, run_id: &str) -> Result<()> {
        self.on(async |c| {
            c.execute("DELETE FROM health_runs WHERE run_id = $1", &[&run_id])
                .await?;
            Ok(())
        })
    }

    fn health_runs(&self) -> Result<Vec<(String, String)>> {
        self.on(async |c| {
            let rows = c
                .query(
                    "SELECT run_id, dut FROM health_runs ORDER BY started_ms, run_id COLLATE \"C\"",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
}
