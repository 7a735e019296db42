//! DUT health and its history in SQLite, on a connection of their own.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::clock::EpochMs;
use crate::store::{DutHealth, Health, HealthChange, HealthStore, Result, StoreError};

pub struct SqliteHealthStore {
    conn: Connection,
}

impl SqliteHealthStore {
    /// Open the health tables in the database at `db_path` (already migrated).
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

const COLUMNS: &str =
    "dut, health, since_ms, reason, run_id, infra_failures, last_check_ms FROM dut_health";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DutHealth> {
    Ok(DutHealth {
        dut: r.get(0)?,
        health: Health::parse(&r.get::<_, String>(1)?),
        since_ms: r.get(2)?,
        reason: r.get(3)?,
        run_id: r.get(4)?,
        infra_failures: r.get(5)?,
        last_check_ms: r.get(6)?,
    })
}

impl SqliteHealthStore {
    fn ensure(&self, dut: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO dut_health (dut, health, infra_failures) VALUES (?1, 'unknown', 0)",
            [dut],
        )?;
        Ok(())
    }
}

impl HealthStore for SqliteHealthStore {
    fn all_health(&self) -> Result<Vec<DutHealth>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} ORDER BY dut"))?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn health(&self, dut: &str) -> Result<DutHealth> {
        let found = self
            .conn
            .query_row(&format!("SELECT {COLUMNS} WHERE dut = ?1"), [dut], row)
            .optional()?;
        Ok(found.unwrap_or_else(|| DutHealth {
            dut: dut.to_string(),
            ..Default::default()
        }))
    }

    fn set_health(&self, dut: &str, c: &HealthChange) -> Result<()> {
        self.ensure(dut)?;
        self.conn.execute(
            "UPDATE dut_health SET health = ?2, since_ms = ?3, reason = ?4, run_id = ?5 WHERE dut = ?1",
            params![dut, c.health.as_str(), c.ts_ms, c.reason, c.run_id],
        )?;
        self.conn.execute(
            "INSERT INTO dut_health_history (dut, ts_ms, health, reason, run_id, note) VALUES (?1,?2,?3,?4,?5,?6)",
            params![dut, c.ts_ms, c.health.as_str(), c.reason, c.run_id, c.note],
        )?;
        Ok(())
    }

    fn check_started(&self, dut: &str, now: EpochMs) -> Result<()> {
        self.ensure(dut)?;
        self.conn.execute(
            "UPDATE dut_health SET last_check_ms = ?2, infra_failures = 0 WHERE dut = ?1",
            params![dut, now],
        )?;
        Ok(())
    }

    fn count_run(&self, dut: &str, infra_failure: bool) -> Result<u32> {
        self.ensure(dut)?;
        let sql = if infra_failure {
            "UPDATE dut_health SET infra_failures = infra_failures + 1 WHERE dut = ?1"
        } else {
            "UPDATE dut_health SET infra_failures = 0 WHERE dut = ?1"
        };
        self.conn.execute(sql, [dut])?;
        Ok(self.conn.query_row(
            "SELECT infra_failures FROM dut_health WHERE dut = ?1",
            [dut],
            |r| r.get(0),
        )?)
    }

    fn health_history(&self, dut: &str, limit: u32) -> Result<Vec<HealthChange>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ts_ms, health, reason, run_id, note FROM dut_health_history
             WHERE dut = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![dut, limit], |r| {
            Ok(HealthChange {
                ts_ms: r.get(0)?,
                health: Health::parse(&r.get::<_, String>(1)?),
                reason: r.get(2)?,
                run_id: r.get(3)?,
                note: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn health_run_add(&self, run_id: &str, dut: &str, now: EpochMs) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO health_runs (run_id, dut, started_ms) VALUES (?1, ?2, ?3)",
            params![run_id, dut, now],
        )?;
        Ok(())
    }

    fn health_run_remove(&self, run_id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM health_runs WHERE run_id = ?1", [run_id])?;
        Ok(())
    }

    fn health_runs(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT run_id, dut FROM health_runs ORDER BY started_ms, run_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
