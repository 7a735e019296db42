//! Hearing the book's changes from other servers: every insert or update of a
//! reservation or a queued run is told on channel [`CHANNEL`] by a trigger (at commit,
//! so a notice is never about something rolled back). A [`BookListener`] holds a
//! connection of its own (a pooled one would be handed to others) and yields the notices.
//! When the connection ends, `next` answers `None`: the listener missed whatever came
//! after, so its owner reads the book again (resync) and listens anew.

use std::future::poll_fn;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use super::error::{LabError, LabResult};

/// The channel the book's changes are told on.
pub const CHANNEL: &str = "testbay_book";

/// One change, as the trigger tells it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BookNotice {
    /// `reservation` or `queue`.
    pub table: String,
    /// The reservation's or queue entry's id.
    pub id: u64,
    /// The reservation's resource.
    #[serde(default)]
    pub resource: Option<String>,
    /// The queued run.
    #[serde(default)]
    pub run_id: Option<String>,
    /// What happened: `requested`, `waiting`, `held`, `claimed`, `renewed`, `extended`,
    /// `released`, `rebooked`, `expired`; for the queue `queued`, `started`, `cancelled`.
    pub change: String,
    /// The row's state after it.
    pub state: String,
    /// The server that made the change.
    pub by: String,
}

/// A connection listening on [`CHANNEL`].
pub struct BookListener {
    rx: mpsc::UnboundedReceiver<BookNotice>,
    // Kept so the connection stays open; dropped with the listener.
    _client: tokio_postgres::Client,
    task: JoinHandle<()>,
}

impl BookListener {
    /// Connect to `url` and listen. Notices committed after this returns are heard.
    pub async fn connect(url: &str) -> LabResult<BookListener> {
        let (client, mut conn) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| LabError::Connect(Box::new(e)))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match poll_fn(|cx| conn.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) if n.channel() == CHANNEL => {
                        match serde_json::from_str::<BookNotice>(n.payload()) {
                            Ok(notice) => {
                                if tx.send(notice).is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, payload = n.payload(), "unreadable book notice")
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "book listener's connection failed");
                        return;
                    }
                    None => return,
                }
            }
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        Ok(BookListener {
            rx,
            _client: client,
            task,
        })
    }

    /// The next notice; `None` once the connection has ended (resync, then listen anew).
    pub async fn next(&mut self) -> Option<BookNotice> {
        self.rx.recv().await
    }

    /// A notice already received, without waiting.
    pub fn try_next(&mut self) -> Option<BookNotice> {
        self.rx.try_recv().ok()
    }
}

impl Drop for BookListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}
