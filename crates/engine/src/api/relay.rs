//! Several servers on one PostgreSQL store behave as one console: the relay of a shared
//! [`LocalConsole`] whose store is PostgreSQL.
//!
//! - **Events across servers.** Every event of this console goes out on channel
//!   [`EVENTS`] (`pg_notify`), several to a payload of at most [`PAYLOAD_MAX`] bytes,
//!   tagged with this server's id; an event that does not fit alone is replaced by a
//!   `resync` notice. The relay listens on a connection of its own and puts other
//!   servers' events into this console's stream; a listen connection that drops
//!   reconnects and tells its subscribers [`Event::Resync`], as does a publisher that
//!   fell behind (to the other servers).
//! - **Requests this server cannot serve.** A `launch`, `relaunch` or `check_dut` (a
//!   health check is a launch) on a server that does not own the book, a `stop_run` for
//!   a run another server executes, and an `answer_prompt` naming (`run_id`) a run
//!   another server executes, go to the table
//!   `console_inbox` and channel [`INBOX`]; the server that can serve it (the book's
//!   owner; the one executing the run) takes the row, answers it through its own
//!   `route`, and the caller, waiting up to [`FORWARD_PATIENCE`], returns that answer.
//!   The caller has already checked the caller's role and recorded the audit entry.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use super::error::ErrorCode;
use super::local::LocalConsole;
use super::{ApiError, Event, Request, Response};

/// The channel events travel on.
pub const EVENTS: &str = "testbay_events";
/// The channel that tells servers a request waits in `console_inbox`.
pub const INBOX: &str = "testbay_inbox";
/// A NOTIFY payload's bound (PostgreSQL refuses 8,000 bytes and more).
pub const PAYLOAD_MAX: usize = 7_900;
/// How long a forwarded request waits for the server that serves it.
pub const FORWARD_PATIENCE: Duration = Duration::from_secs(30);
/// How long before a lost listen or publish connection is tried again.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// The listen connection's `application_name` (operators find it in `pg_stat_activity`).
pub const LISTEN_APP_NAME: &str = "testbay relay listen";
/// How often a forwarded request's row is read for its answer.
const ANSWER_POLL: Duration = Duration::from_millis(50);

/// One NOTIFY payload on [`EVENTS`].
#[derive(Serialize, Deserialize)]
struct Batch {
    from: String,
    #[serde(default)]
    events: Vec<Event>,
    /// Events were left out: the other servers' subscribers reload.
    #[serde(default)]
    resync: bool,
}

/// A forwarded request's answer as stored in `console_inbox.answer`.
#[derive(Serialize, Deserialize)]
enum Answer {
    Ok(Box<Response>),
    Err(ApiError),
}

/// The relay of one serving console (see the module doc).
pub(super) struct Relay {
    server: String,
    config: Config,
    events: broadcast::Sender<Event>,
    /// Other servers' events put into this console's stream, by hash, so the publisher
    /// does not send them out again.
    foreign: Mutex<HashMap<u64, u32>>,
    /// The connection forwarded requests use (opened on first use, replaced when closed).
    client: tokio::sync::Mutex<Option<Client>>,
    console: Weak<LocalConsole>,
}

fn hash_of(json: &str) -> u64 {
    let mut h = DefaultHasher::new();
    json.hash(&mut h);
    h.finish()
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        format!("the other servers of this database cannot be reached: {e}"),
    )
}

impl Relay {
    /// Start relaying for `console` (its stream is `events`) on the database at `url`.
    pub(super) fn start(
        url: &str,
        events: broadcast::Sender<Event>,
        console: Weak<LocalConsole>,
    ) -> Result<Arc<Self>, ApiError> {
        let config: Config = url
            .parse()
            .map_err(|e| ApiError::invalid(format!("store URL: {e}")))?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
        let relay = Arc::new(Self {
            server: format!("{host}:{}:{started:x}", std::process::id()),
            config,
            events: events.clone(),
            foreign: Mutex::new(HashMap::new()),
            client: tokio::sync::Mutex::new(None),
            console,
        });
        tokio::spawn(publish(relay.clone(), events.subscribe()));
        tokio::spawn(listen(Arc::downgrade(&relay)));
        Ok(relay)
    }

    /// This server's id, as its events are tagged.
    pub(super) fn server(&self) -> &str {
        &self.server
    }

    /// Put another server's event into this console's stream.
    fn inject(&self, event: Event) {
        if let Ok(json) = serde_json::to_string(&event) {
            *self
                .foreign
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(hash_of(&json))
                .or_default() += 1;
        }
        let _ = self.events.send(event);
    }

    /// Whether `json` is an event this relay injected (then counted off).
    fn was_foreign(&self, json: &str) -> bool {
        let mut f = self.foreign.lock().unwrap_or_else(|p| p.into_inner());
        let h = hash_of(json);
        match f.get_mut(&h) {
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    f.remove(&h);
                }
                true
            }
            None => false,
        }
    }

    async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, conn) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "relay connection ended");
            }
        });
        Ok(client)
    }

    /// Send `request` to the server that can serve it and return its answer.
    pub(super) async fn forward(
        &self,
        kind: &str,
        run_id: Option<&str>,
        request: Request,
    ) -> Result<Response, ApiError> {
        let body = serde_json::to_string(&request)
            .map_err(|e| ApiError::internal(format!("cannot forward the request: {e}")))?;
        let id: i64 = {
            let mut guard = self.client.lock().await;
            if guard.as_ref().is_none_or(|c| c.is_closed()) {
                *guard = Some(self.connect().await.map_err(unavailable)?);
            }
            let c = guard.as_ref().expect("connected above");
            // Rows whose caller went away before reading its answer.
            c.execute(
                "DELETE FROM console_inbox WHERE created_at < now() - interval '1 hour'",
                &[],
            )
            .await
            .map_err(unavailable)?;
            let row = c
                .query_one(
                    "INSERT INTO console_inbox (from_server, kind, run_id, request) \
                     VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&self.server, &kind, &run_id, &body],
                )
                .await
                .map_err(unavailable)?;
            let id: i64 = row.get(0);
            c.execute("SELECT pg_notify($1, $2)", &[&INBOX, &id.to_string()])
                .await
                .map_err(unavailable)?;
            id
        };
        tracing::debug!(id, kind, "request forwarded to another server");
        let deadline = tokio::time::Instant::now() + FORWARD_PATIENCE;
        loop {
            tokio::time::sleep(ANSWER_POLL).await;
            let guard = self.client.lock().await;
            let Some(c) = guard.as_ref() else {
                return Err(unavailable("connection lost"));
            };
            let row = c
                .query_one(
                    "SELECT answer, taken_by FROM console_inbox WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(unavailable)?;
            let answer: Option<String> = row.get(0);
            let taken_by: Option<String> = row.get(1);
            if let Some(a) = answer {
                let _ = c
                    .execute("DELETE FROM console_inbox WHERE id = $1", &[&id])
                    .await;
                return match serde_json::from_str::<Answer>(&a) {
                    Ok(Answer::Ok(r)) => Ok(*r),
                    Ok(Answer::Err(e)) => Err(e),
                    Err(e) => Err(ApiError::internal(format!("bad forwarded answer: {e}"))),
                };
            }
            if tokio::time::Instant::now() >= deadline {
                let n = c
                    .execute(
                        "DELETE FROM console_inbox WHERE id = $1 AND taken_by IS NULL",
                        &[&id],
                    )
                    .await
                    .unwrap_or(0);
                let what = match (n, taken_by) {
                    (1, _) => "no server of this database took it".to_string(),
                    (_, Some(by)) => format!("server {by} took it and has not answered"),
                    _ => "no answer".to_string(),
                };
                return Err(ApiError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "{kind} forwarded to the other servers: {what} within {} s",
                        FORWARD_PATIENCE.as_secs()
                    ),
                ));
            }
        }
    }

    /// Serve the waiting request `id` if this server can, on `client`.
    async fn serve(&self, client: &Client, id: i64) -> Result<(), tokio_postgres::Error> {
        let Some(console) = self.console.upgrade() else {
            return Ok(());
        };
        let Some(row) = client
            .query_opt(
                "SELECT kind, run_id, request FROM console_inbox \
                 WHERE id = $1 AND taken_by IS NULL",
                &[&id],
            )
            .await?
        else {
            return Ok(());
        };
        let (kind, run_id): (String, Option<String>) = (row.get(0), row.get(1));
        let request: String = row.get(2);
        let mine = match kind.as_str() {
            "launch" | "relaunch" | "check_dut" => console.owns_book(),
            "stop_run" | "answer_prompt" => run_id.as_deref().is_some_and(|r| console.runs_here(r)),
            _ => false,
        };
        if !mine {
            return Ok(());
        }
        let took = client
            .execute(
                "UPDATE console_inbox SET taken_by = $2 WHERE id = $1 AND taken_by IS NULL",
                &[&id, &self.server],
            )
            .await?;
        if took != 1 {
            return Ok(());
        }
        let answer = match serde_json::from_str::<Request>(&request) {
            Ok(req) => match console.route(req).await {
                Ok(r) => Answer::Ok(Box::new(r)),
                Err(e) => Answer::Err(e),
            },
            Err(e) => Answer::Err(ApiError::invalid(format!("forwarded request: {e}"))),
        };
        let json = serde_json::to_string(&answer).unwrap_or_else(|e| {
            serde_json::to_string(&Answer::Err(ApiError::internal(e.to_string())))
                .unwrap_or_default()
        });
        client
            .execute(
                "UPDATE console_inbox SET answer = $2 WHERE id = $1",
                &[&id, &json],
            )
            .await?;
        Ok(())
    }
}

/// Send this console's own events out, batched into payloads.
async fn publish(relay: Arc<Relay>, mut rx: broadcast::Receiver<Event>) {
    let mut client: Option<Client> = None;
    let mut behind = false;
    loop {
        let first = match rx.recv().await {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "the relay fell behind this console's events");
                behind = true;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let mut batch = vec![first];
        while batch.len() < 1_000 {
            match rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(broadcast::error::TryRecvError::Lagged(_)) => behind = true,
                Err(_) => break,
            }
        }
        let mut payloads = Vec::new();
        let mut current: Vec<String> = Vec::new();
        let mut size = 0;
        for ev in &batch {
            let Ok(json) = serde_json::to_string(ev) else {
                continue;
            };
            if relay.was_foreign(&json) {
                continue;
            }
            if json.len() + 200 > PAYLOAD_MAX {
                behind = true;
                continue;
            }
            if size + json.len() + 200 > PAYLOAD_MAX {
                payloads.push(std::mem::take(&mut current));
                size = 0;
            }
            size += json.len() + 1;
            current.push(json);
        }
        if !current.is_empty() {
            payloads.push(current);
        }
        let mut texts: Vec<String> = payloads
            .into_iter()
            .map(|events| {
                format!(
                    "{{\"from\":{},\"events\":[{}]}}",
                    serde_json::Value::String(relay.server.clone()),
                    events.join(",")
                )
            })
            .collect();
        if std::mem::take(&mut behind) {
            texts.push(
                serde_json::to_string(&Batch {
                    from: relay.server.clone(),
                    events: Vec::new(),
                    resync: true,
                })
                .unwrap_or_default(),
            );
        }
        for text in texts {
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                match relay.connect().await {
                    Ok(c) => client = Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "relay cannot publish events; other servers resync");
                        tokio::time::sleep(RECONNECT_AFTER).await;
                        behind = true;
                        break;
                    }
                }
            }
            let c = client.as_ref().expect("connected above");
            if let Err(e) = c
                .execute("SELECT pg_notify($1, $2)", &[&EVENTS, &text])
                .await
            {
                tracing::warn!(error = %e, "relay cannot publish events; other servers resync");
                behind = true;
                client = None;
                break;
            }
        }
    }
}

/// Listen for other servers' events and forwarded requests, reconnecting when the
/// connection drops (subscribers then resync).
async fn listen(relay: Weak<Relay>) {
    let mut first = true;
    loop {
        let Some(r) = relay.upgrade() else { break };
        let mut config = r.config.clone();
        config.application_name(LISTEN_APP_NAME);
        let (client, mut conn) = match config.connect(NoTls).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "relay cannot listen; trying again");
                drop(r);
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        let (tx, mut notes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(msg) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                match msg {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(n).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "relay's listen connection lost");
                        break;
                    }
                }
            }
        });
        let listening = client
            .batch_execute(&format!("LISTEN {EVENTS}; LISTEN {INBOX}"))
            .await;
        if let Err(e) = listening {
            tracing::warn!(error = %e, "relay cannot listen; trying again");
            drop(r);
            tokio::time::sleep(RECONNECT_AFTER).await;
            continue;
        }
        if !std::mem::take(&mut first) {
            // Whatever was said while the connection was down is lost.
            r.inject(Event::Resync { missed: 0 });
        }
        // Requests that waited while this server was not listening.
        serve_waiting(&r, &client).await;
        drop(r);
        while let Some(n) = notes.recv().await {
            let Some(r) = relay.upgrade() else { return };
            if n.channel() == INBOX {
                if let Ok(id) = n.payload().parse::<i64>() {
                    spawn_serve(&r, id);
                }
                continue;
            }
            match serde_json::from_str::<Batch>(n.payload()) {
                Ok(b) if b.from == r.server => {}
                Ok(b) => {
                    for ev in b.events {
                        r.inject(ev);
                    }
                    if b.resync {
                        r.inject(Event::Resync { missed: 0 });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable event payload from another server");
                    r.inject(Event::Resync { missed: 0 });
                }
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// Serve the requests still waiting for a server, read on `client`.
async fn serve_waiting(relay: &Arc<Relay>, client: &Client) {
    if let Ok(rows) = client
        .query(
            "SELECT id FROM console_inbox WHERE taken_by IS NULL \
             AND created_at > now() - make_interval(secs => $1) ORDER BY id",
            &[&(FORWARD_PATIENCE.as_secs_f64())],
        )
        .await
    {
        for row in rows {
            spawn_serve(relay, row.get(0));
        }
    }
}

impl Relay {
    /// Look at the requests waiting for a server now: this server just became able to
    /// serve more (it took the book over).
    pub(super) fn serve_waiting_now(self: &Arc<Self>) {
        let relay = self.clone();
        tokio::spawn(async move {
            match relay.connect().await {
                Ok(c) => serve_waiting(&relay, &c).await,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the requests waiting for a server")
                }
            }
        });
    }
}

fn spawn_serve(relay: &Arc<Relay>, id: i64) {
    let relay = relay.clone();
    tokio::spawn(async move {
        let client = match relay.connect().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, id, "cannot serve a forwarded request");
                return;
            }
        };
        if let Err(e) = relay.serve(&client, id).await {
            tracing::warn!(error = %e, id, "cannot serve a forwarded request");
        }
    });
}
