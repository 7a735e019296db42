//! `GET /api/events`: the engine's event stream over a WebSocket. The server pings every
//! [`Limits::ping_interval`](crate::Limits); a client that sends nothing for two intervals
//! (a browser answers each ping), or does not take a frame within one, is dropped. In lab
//! mode a stream whose user's token is revoked is closed at the next recheck.

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use testbay_engine::api::frames::Framer;
use testbay_engine::api::Event;

use tokio::sync::broadcast::Receiver;
use tokio::time::{timeout, Instant};

use crate::auth::{user_of, UserToken};
use crate::AppState;

pub(crate) async fn upgrade(
    ws: WebSocketUpgrade,
    State(st): State<AppState>,
    token: Option<Extension<UserToken>>,
) -> Response {
    // Subscribe before the upgrade completes, so nothing emitted meanwhile is lost.
    let rx = st.console.subscribe();
    let shutdown = st.shutdown.clone();
    let ping = st.limits.ping_interval;
    // Lab mode: the user's token is checked again every `user_recheck`.
    let recheck = match (&st.auth.users, token) {
        (Some(users), Some(Extension(token))) => Some(Recheck {
            users: users.clone(),
            token,
            every: st.limits.user_recheck,
        }),
        _ => None,
    };
    ws.on_upgrade(move |socket| pump(socket, rx, shutdown, ping, recheck))
}

/// A lab-mode stream's user, looked up again now and then.
struct Recheck {
    users: std::sync::Arc<testbay_engine::access::Access>,
    token: UserToken,
    every: Duration,
}

async fn pump(
    socket: WebSocket,
    rx: Receiver<Event>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    ping: Duration,
    recheck: Option<Recheck>,
) {
    let every = recheck
        .as_ref()
        .map_or(Duration::from_secs(3600), |r| r.every);
    let mut checks = tokio::time::interval_at(Instant::now() + every, every);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut tx, mut inbound) = socket.split();
    let mut frames = Framer::new(rx);
    let mut pings = tokio::time::interval_at(Instant::now() + ping, ping);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    loop {
        let batch = tokio::select! {
            batch = frames.next() => batch,
            msg = inbound.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                // Pongs (and the client's own pings, answered by axum) show it is there.
                Some(Ok(_)) => {
                    heard = Instant::now();
                    continue;
                }
            },
            _ = pings.tick() => {
                if heard.elapsed() > 2 * ping {
                    tracing::info!(silent_s = heard.elapsed().as_secs(), "event stream client stopped answering; closing");
                    break;
                }
                match timeout(ping, tx.send(Message::Ping(Default::default()))).await {
                    Ok(Ok(())) => continue,
                    _ => break,
                }
            },
            _ = shutdown.changed() => break,
            _ = checks.tick(), if recheck.is_some() => {
                let Some(r) = &recheck else { continue };
                if user_of(&r.users, r.token.0.clone()).await.is_none() {
                    tracing::info!("event stream user's token was revoked; closing");
                    break;
                }
                continue;
            },
        };
        let Some(batch) = batch else {
            break;
        };
        let text = if batch.len() == 1 {
            serde_json::to_string(&batch[0])
        } else {
            serde_json::to_string(&batch)
        };
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode event");
                continue;
            }
        };
        match timeout(ping, tx.send(Message::Text(Utf8Bytes::from(text)))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::info!("event stream client does not take its frames; closing");
                break;
            }
        }
    }
    let _ = timeout(ping, tx.send(Message::Close(None))).await;
    tracing::debug!("event stream closed");
}
