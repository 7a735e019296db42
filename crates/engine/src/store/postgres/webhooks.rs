//! Webhooks and their deliveries in PostgreSQL, on pooled connections.

use std::sync::Arc;

use tokio_postgres::Client;

use super::{big, small, Core};
use crate::clock::EpochMs;
use crate::store::webhooks::parse_status;
use crate::store::{
    DeliveryStatus, Result, StoreError, Webhook, WebhookDelivery, WebhookEvent, WebhookRow,
    WebhookStore, WebhookTarget,
};

pub struct PgWebhookStore {
    core: Arc<Core>,
}

impl PgWebhookStore {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    fn on<T>(&self, f: impl AsyncFnOnce(&Client) -> Result<T>) -> Result<T> {
        self.core.block(self.core.on_conn(f))
    }
}

fn events_json(events: &[WebhookEvent]) -> String {
    serde_json::to_string(events).expect("plain data serialises")
}

impl WebhookStore for PgWebhookStore {
    fn webhooks(&self) -> Result<Vec<WebhookTarget>> {
        self.on(async |c| {
            let rows = c
                .query(
                    "SELECT id, url, events_json, secret, enabled, created_ms FROM webhooks ORDER BY id",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let events: Vec<WebhookEvent> = serde_json::from_str(r.get::<_, &str>(2))
                        .map_err(|source| StoreError::Json {
                            what: "webhooks.events_json",
                            source,
                        })?;
                    let secret: Option<String> = r.get(3);
                    Ok(WebhookTarget {
                        hook: Webhook {
                            id: r.get(0),
                            url: r.get(1),
                            events,
                            has_secret: secret.is_some(),
                            enabled: r.get(4),
                            created_ms: r.get(5),
                        },
                        secret,
                    })
                })
                .collect()
        })
    }

    fn add_webhook(&self, row: &WebhookRow, now: EpochMs) -> Result<i64> {
        self.on(async |c| {
            Ok(c.query_one(
                "INSERT INTO webhooks (url, events_json, secret, enabled, created_ms)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[
                    &row.url,
                    &events_json(&row.events),
                    &row.secret,
                    &row.enabled,
                    &now,
                ],
            )
            .await?
            .get(0))
        })
    }

    fn update_webhook(&self, id: i64, row: &WebhookRow) -> Result<bool> {
        self.on(async |c| {
            Ok(c.execute(
                "UPDATE webhooks SET url = $2, events_json = $3, secret = $4, enabled = $5 WHERE id = $1",
                &[&id, &row.url, &events_json(&row.events), &row.secret, &row.enabled],
            )
            .await?
                > 0)
        })
    }

    fn remove_webhook(&self, id: i64) -> Result<bool> {
        self.core.block(self.core.in_tx(async |c| {
            c.execute(
                "DELETE FROM webhook_deliveries WHERE webhook_id = $1",
                &[&id],
            )
            .await?;
            Ok(c.execute("DELETE FROM webhooks WHERE id = $1", &[&id])
                .await?
                > 0)
        }))
    }

    fn add_delivery(
        &self,
        webhook_id: i64,
        event: WebhookEvent,
        body: &str,
        now: EpochMs,
    ) -> Result<i64> {
        self.on(async |c| {
            let row = c
                .query_opt(
                    "INSERT INTO webhook_deliveries (webhook_id, url, event, created_ms, status, attempts, body)
                     SELECT id, url, $2::text, $3::bigint, 'pending', 0, $4::text FROM webhooks WHERE id = $1
                     RETURNING id",
                    &[&webhook_id, &event.as_str(), &now, &body],
                )
                .await?;
            row.map(|r| r.get(0)).ok_or_else(|| StoreError::InvalidQuery {
                key: "webhook_id",
                message: format!("no webhook {webhook_id}"),
            })
        })
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
        let http_status = http_status.map(i32::from);
        self.on(async |c| {
            c.execute(
                "UPDATE webhook_deliveries SET status = $2, attempts = $3, http_status = $4, error = $5,
                    finished_ms = $6 WHERE id = $1",
                &[&id, &status.as_str(), &big(attempts), &http_status, &error, &finished],
            )
            .await?;
            Ok(())
        })
    }

    fn deliveries(&self, webhook_id: Option<i64>, limit: u32) -> Result<Vec<WebhookDelivery>> {
        self.on(async |c| {
            let rows = c
                .query(
                    "SELECT id, webhook_id, url, event, created_ms, status, attempts, http_status,
                        error, finished_ms, body
                     FROM webhook_deliveries WHERE $1::bigint IS NULL OR webhook_id = $1::bigint
                     ORDER BY id DESC LIMIT $2",
                    &[&webhook_id, &(limit as i64)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| WebhookDelivery {
                    id: r.get(0),
                    webhook_id: r.get(1),
                    url: r.get(2),
                    event: WebhookEvent::parse(r.get(3)).unwrap_or(WebhookEvent::RunFinished),
                    created_ms: r.get(4),
                    status: parse_status(r.get(5)),
                    attempts: small(r.get(6)),
                    http_status: r
                        .get::<_, Option<i32>>(7)
                        .and_then(|s| u16::try_from(s).ok()),
                    error: r.get(8),
                    finished_ms: r.get(9),
                    body: r.get(10),
                })
                .collect())
        })
    }

    fn prune_deliveries(&self, keep: u32) -> Result<usize> {
        self.on(async |c| {
            Ok(c.execute(
                "DELETE FROM webhook_deliveries WHERE id <= (SELECT id FROM webhook_deliveries
                    ORDER BY id DESC LIMIT 1 OFFSET $1)",
                &[&(keep as i64)],
            )
            .await? as usize)
        })
    }
}
