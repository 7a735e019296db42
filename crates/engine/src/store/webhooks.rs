//! Webhooks as the store keeps them: each configured webhook (URL, the events it wants,
//! its shared secret) and the deliveries made to it, with their outcome.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::Result;
use crate::clock::EpochMs;

/// What a webhook may be told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum WebhookEvent {
    /// A run ended, whatever its status.
    RunFinished,
    /// A run ended with a status other than `completed`, or with failed tasks.
    RunFailed,
    /// A DUT's health turned `bad`.
    DutBad,
    /// A schedule's firing was missed (the console was down, or it could not start).
    ScheduleMissed,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 4] = [
        WebhookEvent::RunFinished,
        WebhookEvent::RunFailed,
        WebhookEvent::DutBad,
        WebhookEvent::ScheduleMissed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::RunFinished => "run_finished",
            WebhookEvent::RunFailed => "run_failed",
            WebhookEvent::DutBad => "dut_bad",
            WebhookEvent::ScheduleMissed => "schedule_missed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// A configured webhook as clients see it: its secret is never shown, only whether it
/// has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Webhook {
    #[ts(type = "number")]
    pub id: i64,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    /// Bodies are signed (`X-Testbay-Signature: sha256=<hex HMAC-SHA256 of the body>`).
    pub has_secret: bool,
    pub enabled: bool,
    pub created_ms: EpochMs,
}

/// A webhook as stored: what [`Webhook`] shows, and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub hook: Webhook,
    pub secret: Option<String>,
}

/// A new webhook, or the new settings of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub secret: Option<String>,
    pub enabled: bool,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum DeliveryStatus {
    /// Being tried, or waiting for its next try.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every try failed; `error` says how the last one did.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// One event sent (or being sent) to one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct WebhookDelivery {
    #[ts(type = "number")]
    pub id: i64,
    #[ts(type = "number")]
    pub webhook_id: i64,
    pub url: String,
    pub event: WebhookEvent,
    pub created_ms: EpochMs,
    pub status: DeliveryStatus,
    /// Tries made so far.
    pub attempts: u32,
    /// The HTTP status of the last answer.
    pub http_status: Option<u16>,
    /// Why the last try failed.
    pub error: Option<String>,
    pub finished_ms: Option<EpochMs>,
    /// The JSON body sent.
    pub body: String,
}

/// The webhooks' tables on a handle of their own (one connection), for the console's
/// webhook service.
pub trait WebhookStore: Send {
    /// Every webhook, by id.
    fn webhooks(&self) -> Result<Vec<WebhookTarget>>;
    /// Store a new webhook; its id.
    fn add_webhook(&self, row: &WebhookRow, now: EpochMs) -> Result<i64>;
    /// Replace webhook `id`'s settings; `false` when there is no such webhook.
    fn update_webhook(&self, id: i64, row: &WebhookRow) -> Result<bool>;
    /// Remove webhook `id` and its deliveries; `false` when there is no such webhook.
    fn remove_webhook(&self, id: i64) -> Result<bool>;
    /// Record a delivery about to be tried (pending); its id.
    fn add_delivery(
        &self,
        webhook_id: i64,
        event: WebhookEvent,
        body: &str,
        now: EpochMs,
    ) -> Result<i64>;
    /// Record a delivery's try: how many so far, the answer's status or the error, and
    /// its status (`finished_ms` set once it is delivered or failed).
    fn update_delivery(
        &self,
        id: i64,
        status: DeliveryStatus,
        attempts: u32,
        http_status: Option<u16>,
        error: Option<&str>,
        now: EpochMs,
    ) -> Result<()>;
    /// The newest deliveries (of one webhook, or of all), newest first, at most `limit`.
    fn deliveries(&self, webhook_id: Option<i64>, limit: u32) -> Result<Vec<WebhookDelivery>>;
    /// Keep only the newest `keep` deliveries; how many were dropped.
    fn prune_deliveries(&self, keep: u32) -> Result<usize>;
}

pub(crate) fn parse_status(s: &str) -> DeliveryStatus {
    DeliveryStatus::parse(s)
}
