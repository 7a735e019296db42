//! Webhooks: the console tells HTTP receivers what happened (a run finished or failed, a
//! DUT turned bad, a schedule's firing was missed) with a JSON body, signed when the
//! webhook has a shared secret (`sign`). Settings are checked (`check`) and stored
//! (`store::WebhookStore`); so is every delivery and how it went.
//!
//! Nothing waits for a receiver: [`Webhooks::notify`] puts the notice on a bounded queue
//! and returns (a full queue drops the notice, logged); one tokio task takes notices off
//! it and hands each delivery to a task of its own (at most [`WebhookConfig::parallel`] at
//! once), which tries it up to `max_attempts` times, each within `timeout`, waiting
//! `first_backoff`, then twice as long, and so on, between tries.

pub mod check;
mod deliver;
pub mod sign;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::outcome::RunStatus;
use crate::store::{
    Store, StoreError, Webhook, WebhookDelivery, WebhookEvent, WebhookRow, WebhookStore,
};
pub use check::WebhookError;
pub use sign::{signature, SIGNATURE_HEADER};

/// How deliveries are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Longest one try may take, connecting included.
    pub timeout: Duration,
    /// Tries per delivery, the first included.
    pub max_attempts: u32,
    /// Wait before the second try; each later wait is twice the one before.
    pub first_backoff: Duration,
    /// Deliveries under way at once.
    pub parallel: usize,
    /// Deliveries kept in the store (the newest).
    pub keep_deliveries: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_attempts: 5,
            first_backoff: Duration::from_secs(2),
            parallel: 8,
            keep_deliveries: 1000,
        }
    }
}

/// Notices waiting for the delivery task; more are dropped.
pub const QUEUE_CAPACITY: usize = 1024;

/// What the delivery task is told.
#[derive(Debug)]
enum Notice {
    /// `event` happened; `data` goes in the body.
    Event { event: WebhookEvent, data: Value },
    /// A run ended: its record is read and sent as `run_finished`, and as `run_failed`
    /// too when it did not complete or a task failed.
    RunEnded { run_id: String },
}

/// The console's webhook service (see the module doc).
pub struct Webhooks {
    store: Arc<Mutex<Box<dyn WebhookStore>>>,
    queue: mpsc::Sender<Notice>,
    clock: Arc<dyn Clock>,
    config: Arc<Mutex<WebhookConfig>>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Start the service on `store`'s webhook tables. Must be called within a tokio
    /// runtime (the delivery task is a tokio task).
    pub fn start(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Result<Arc<Self>, StoreError> {
        let hooks: Arc<Mutex<Box<dyn WebhookStore>>> =
            Arc::new(Mutex::new(store.open_webhook_store()?));
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let config = Arc::new(Mutex::new(WebhookConfig::default()));
        deliver::spawn(deliver::Worker {
            rx,
            hooks: hooks.clone(),
            runs: store,
            clock: clock.clone(),
            config: config.clone(),
        });
        Ok(Arc::new(Self {
            store: hooks,
            queue,
            clock,
            config,
        }))
    }

    /// Change how the next deliveries are made.
    pub fn set_config(&self, config: WebhookConfig) {
        *lock(&self.config) = config;
    }

    /// Tell the webhooks that want `event`; never waits (see the module doc).
    pub fn notify(&self, event: WebhookEvent, data: Value) {
        self.post(Notice::Event { event, data });
    }

    /// A run's status changed: when it ended, `run_finished`, and `run_failed` when it
    /// did not complete or a task failed, with the run's stored record. Other statuses
    /// are ignored.
    pub fn run_status(&self, run_id: &str, status: RunStatus) {
        if status.is_finished() {
            self.post(Notice::RunEnded {
                run_id: run_id.to_string(),
            });
        }
    }

    fn post(&self, notice: Notice) {
        if let Err(e) = self.queue.try_send(notice) {
            tracing::warn!(error = %e, "webhook queue full or closed; a notice was dropped");
        }
    }

    /// Every webhook.
    pub fn list(&self) -> Result<Vec<Webhook>, StoreError> {
        Ok(lock(&self.store)
            .webhooks()?
            .into_iter()
            .map(|t| t.hook)
            .collect())
    }

    /// Check and store a new webhook.
    pub fn add(&self, row: WebhookRow) -> Result<Webhook, AddError> {
        let row = check::check(row)?;
        let store = lock(&self.store);
        if store.webhooks()?.len() >= check::MAX_WEBHOOKS {
            return Err(WebhookError::TooMany.into());
        }
        let id = store.add_webhook(&row, self.clock.now_ms())?;
        find(&**store, id)
    }

    /// Change webhook `id`: each field given replaces the stored one; a secret of `""`
    /// removes it.
    pub fn update(&self, id: i64, change: WebhookChange) -> Result<Webhook, AddError> {
        let store = lock(&self.store);
        let t = store
            .webhooks()?
            .into_iter()
            .find(|t| t.hook.id == id)
            .ok_or(WebhookError::NotFound(id))?;
        let row = check::check(WebhookRow {
            url: change.url.unwrap_or(t.hook.url),
            events: change.events.unwrap_or(t.hook.events),
            secret: change.secret.or(t.secret),
            enabled: change.enabled.unwrap_or(t.hook.enabled),
        })?;
        if !store.update_webhook(id, &row)? {
            return Err(WebhookError::NotFound(id).into());
        }
        find(&**store, id)
    }

    /// Remove webhook `id` and its deliveries.
    pub fn remove(&self, id: i64) -> Result<(), AddError> {
        if lock(&self.store).remove_webhook(id)? {
            Ok(())
        } else {
            Err(WebhookError::NotFound(id).into())
        }
    }

    /// The newest deliveries, newest first.
    pub fn deliveries(
        &self,
        webhook_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        lock(&self.store).deliveries(webhook_id, limit)
    }
}

/// Fields of a webhook to change; `None` keeps what is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub events: Option<Vec<WebhookEvent>>,
    pub secret: Option<String>,
    pub enabled: Option<bool>,
}

/// Why a webhook could not be added, changed or removed.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error(transparent)]
    Invalid(#[from] WebhookError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn find(store: &dyn WebhookStore, id: i64) -> Result<Webhook, AddError> {
    store
        .webhooks()?
        .into_iter()
        .find(|t| t.hook.id == id)
        .map(|t| t.hook)
        .ok_or_else(|| WebhookError::NotFound(id).into())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
