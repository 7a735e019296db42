//! The delivery task: notices in, one delivery per webhook that wants the event, each
//! tried with backoff on a task of its own, every try recorded in the store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use super::{lock, Notice, WebhookConfig, SIGNATURE_HEADER};
use crate::clock::Clock;
use crate::outcome::RunStatus;
use crate::store::{DeliveryStatus, Store, WebhookEvent, WebhookStore, WebhookTarget};

/// What the delivery task owns.
pub(super) struct Worker {
    pub rx: mpsc::Receiver<Notice>,
    pub hooks: Arc<Mutex<Box<dyn WebhookStore>>>,
    /// For the records of runs that ended.
    pub runs: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Mutex<WebhookConfig>>,
}

/// One delivery to make.
struct Job {
    delivery_id: i64,
    target: WebhookTarget,
    event: WebhookEvent,
    body: String,
}

pub(super) fn spawn(mut w: Worker) {
    tokio::spawn(async move {
        let parallel = Arc::new(Semaphore::new(lock(&w.config).parallel.max(1)));
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot make the webhooks' HTTP client; no webhook is delivered");
                return;
            }
        };
        while let Some(notice) = w.rx.recv().await {
            let events = match notice {
                Notice::Event { event, data } => vec![(event, data)],
                Notice::RunEnded { run_id } => run_events(&w, run_id).await,
            };
            for (event, data) in events {
                let jobs = match prepare(&w, event, data).await {
                    Ok(j) => j,
                    Err(e) => {
                        tracing::warn!(event = event.as_str(), error = %e, "cannot record webhook deliveries");
                        continue;
                    }
                };
                for job in jobs {
                    let Ok(permit) = parallel.clone().acquire_owned().await else {
                        return;
                    };
                    let (client, hooks, clock, config) = (
                        client.clone(),
                        w.hooks.clone(),
                        w.clock.clone(),
                        lock(&w.config).clone(),
                    );
                    tokio::spawn(async move {
                        deliver(&client, &hooks, &*clock, &config, job).await;
                        drop(permit);
                    });
                }
            }
        }
    });
}

/// `run_finished` for a run that ended, and `run_failed` when it did not complete or a
/// task failed; each with the run's record.
async fn run_events(w: &Worker, run_id: String) -> Vec<(WebhookEvent, Value)> {
    let store = w.runs.clone();
    let id = run_id.clone();
    let record = match tokio::task::spawn_blocking(move || store.get_run(&id)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(run_id, error = %e, "cannot read the run that ended for its webhooks");
            return Vec::new();
        }
        Err(_) => return Vec::new(),
    };
    let failed = record.status != RunStatus::Completed || record.counts.failures > 0;
    let data = json!({ "run": record });
    let mut out = vec![(WebhookEvent::RunFinished, data.clone())];
    if failed {
        out.push((WebhookEvent::RunFailed, data));
    }
    out
}

/// The body for `event` and a stored (pending) delivery per enabled webhook that wants
/// it.
async fn prepare(w: &Worker, event: WebhookEvent, data: Value) -> crate::store::Result<Vec<Job>> {
    let hooks = w.hooks.clone();
    let now = w.clock.now_ms();
    let keep = lock(&w.config).keep_deliveries;
    let body = json!({
        "event": event.as_str(),
        "ts": crate::timefmt::format_utc(now),
        "data": data,
    })
    .to_string();
    tokio::task::spawn_blocking(move || {
        let store = lock(&hooks);
        let mut jobs = Vec::new();
        for target in store.webhooks()? {
            if !target.hook.enabled || !target.hook.events.contains(&event) {
                continue;
            }
            let delivery_id = store.add_delivery(target.hook.id, event, &body, now)?;
            jobs.push(Job {
                delivery_id,
                target,
                event,
                body: body.clone(),
            });
        }
        if !jobs.is_empty() {
            store.prune_deliveries(keep)?;
        }
        Ok(jobs)
    })
    .await
    .unwrap_or_else(|_| Ok(Vec::new()))
}

/// Try one delivery until the receiver takes it or the tries run out.
async fn deliver(
    client: &reqwest::Client,
    hooks: &Arc<Mutex<Box<dyn WebhookStore>>>,
    clock: &dyn Clock,
    config: &WebhookConfig,
    job: Job,
) {
    let signature = job
        .target
        .secret
        .as_deref()
        .map(|s| super::signature(s, job.body.as_bytes()));
    let mut wait = config.first_backoff;
    let attempts = config.max_attempts.max(1);
    for attempt in 1..=attempts {
        let mut req = client
            .post(&job.target.hook.url)
            .timeout(config.timeout)
            .header("Content-Type", "application/json")
            .header("User-Agent", concat!("testbay/", env!("CARGO_PKG_VERSION")))
            .header("X-Testbay-Event", job.event.as_str())
            .header("X-Testbay-Delivery", job.delivery_id.to_string())
            .body(job.body.clone());
        if let Some(sig) = &signature {
            req = req.header(SIGNATURE_HEADER, sig);
        }
        let (http_status, error) = match req.send().await {
            Ok(resp) if resp.status().is_success() => (Some(resp.status().as_u16()), None),
            Ok(resp) => (
                Some(resp.status().as_u16()),
                Some(format!("the receiver answered {}", resp.status())),
            ),
            Err(e) => (None, Some(describe(&e))),
        };
        let status = match (&error, attempt == attempts) {
            (None, _) => DeliveryStatus::Delivered,
            (Some(_), true) => DeliveryStatus::Failed,
            (Some(_), false) => DeliveryStatus::Pending,
        };
        if let Err(e) = lock(hooks).update_delivery(
            job.delivery_id,
            status,
            attempt,
            http_status,
            error.as_deref(),
            clock.now_ms(),
        ) {
            tracing::warn!(delivery = job.delivery_id, error = %e, "cannot record a webhook delivery's try");
        }
        match (status, &error) {
            (DeliveryStatus::Pending, Some(err)) => {
                tracing::info!(url = %job.target.hook.url, attempt, error = %err, "webhook delivery failed; trying again");
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2).min(Duration::from_secs(300));
            }
            (DeliveryStatus::Failed, Some(err)) => {
                tracing::warn!(url = %job.target.hook.url, attempts, error = %err, "webhook delivery failed; giving up");
                return;
            }
            _ => return,
        }
    }
}

/// A failed try in a few words.
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut s = format!("{what}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}
