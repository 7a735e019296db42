//! Webhooks and their deliveries in SQLite, on a connection of their own.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection};

use crate::clock::EpochMs;
use crate::store::webhooks::parse_status;
use crate::store::{
    DeliveryStatus, Result, StoreError, Webhook, WebhookDelivery, WebhookEvent, WebhookRow,
    WebhookStore, WebhookTarget,
};

/// The webhooks' tables on a connection of their own.
pub struct SqliteWebhookStore {
    conn: Connection,
}

impl SqliteWebhookStore {
    /// Open the webhooks' tables in the database at `db_path` (already migrated by
    /// [`super::SqliteStore::open`]).
    pub fn open(db_path: &Path) -> Result<Self> {
        let open_err = |source: rusqlite::Error| StoreError::Open {
            path: db_path.to_path_buf(),
            source: source.into(),
        };
        let conn = Connection::open(db_path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        )
        .map_err(open_err)?;
        Ok(Self { conn })
    }
}

fn events_json(events: &[WebhookEvent]) -> String {
    serde_json::to_string(events).expect("plain data serialises")
}

fn event_of(s: &str) -> WebhookEvent {
    WebhookEvent::parse(s).unwrap_or(WebhookEvent::RunFinished)
}

impl WebhookStore for SqliteWebhookStore {
    fn webhooks(&self) -> Result<Vec<WebhookTarget>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, url, events_json, secret, enabled, created_ms FROM webhooks ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, i64>(4)? != 0,
                r.get::<_, EpochMs>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, url, events, secret, enabled, created_ms) = row?;
            let events: Vec<WebhookEvent> =
                serde_json::from_str(&events).map_err(|source| StoreError::Json {
                    what: "webhooks.events_json",
                    source,
                })?;
            out.push(WebhookTarget {
                hook: Webhook {
                    id,
                    url,
                    events,
                    has_secret: secret.is_some(),
                    enabled,
                    created_ms,
                },
                secret,
            });
        }
        Ok(out)
    }

    fn add_webhook(&self, row: &WebhookRow, now: EpochMs) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO webhooks (url, events_json, secret, enabled, created_ms) VALUES (?1,?2,?3,?4,?5)",
            params![row.url, events_json(&row.events), row.secret, row.enabled, now],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn update_webhook(&self, id: i64, row: &WebhookRow) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE webhooks SET url = ?2, events_json = ?3, secret = ?4, enabled = ?5 WHERE id = ?1",
            params![id, row.url, events_json(&row.events), row.secret, row.enabled],
        )?;
        Ok(n > 0)
    }

    fn remove_webhook(&self, id: i64) -> Result<bool> {
        self.conn
            .execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?1", [id])?;
        let n = self
            .conn
            .execute("DELETE FROM webhooks WHERE id = ?1", [id])?;
        Ok(n > 0)
    }

    fn add_delivery(
        &self,
        webhook_id: i64,
        event: WebhookEvent,
        body: &str,
        now: EpochMs,
    ) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO webhook_deliveries (webhook_id, url, event, created_ms, status, attempts, body)
             SELECT id, url, ?2, ?3, 'pending', 0, ?4 FROM webhooks WHERE id = ?1",
            params![webhook_id, event.as_str(), now, body],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn update_delivery(
        &self,
        id: i64,
        status: DeliveryStatus,
        attempts: u32,
        http_status: Option<u16>,
        error: Option<&str>,
        now: EpochMs,
    ) -> Result<()> {
        let finished = (status != DeliveryStatus::Pending).then_some(now);
        self.conn.execute(
            "UPDATE webhook_deliveries SET status = ?2, attempts = ?3, http_status = ?4, error = ?5,
                finished_ms = ?6 WHERE id = ?1",
            params![id, status.as_str(), attempts, http_status, error, finished],
        )?;
        Ok(())
    }

    fn deliveries(&self, webhook_id: Option<i64>, limit: u32) -> Result<Vec<WebhookDelivery>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, webhook_id, url, event, created_ms, status, attempts, http_status, error,
                    finished_ms, body
             FROM webhook_deliveries WHERE ?1 IS NULL OR webhook_id = ?1
             ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![webhook_id, limit], |r| {
            Ok(WebhookDelivery {
                id: r.get(0)?,
                webhook_id: r.get(1)?,
                url: r.get(2)?,
                event: event_of(&r.get::<_, String>(3)?),
                created_ms: r.get(4)?,
                status: parse_status(&r.get::<_, String>(5)?),
                attempts: r.get(6)?,
                http_status: r.get(7)?,
                error: r.get(8)?,
                finished_ms: r.get(9)?,
                body: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn prune_deliveries(&self, keep: u32) -> Result<usize> {
        Ok(self.conn.execute(
            "DELETE FROM webhook_deliveries WHERE id <= (SELECT id FROM webhook_deliveries ORDER BY id DESC LIMIT 1 OFFSET ?1)",
            [keep],
        )?)
    }
}
