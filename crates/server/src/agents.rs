//! `GET /api/agent`: a rack agent's connection (a WebSocket, so the server can send it
//! phases the moment a run needs them and its live output comes back on the same
//! connection, in order, with no polling on either side). Only a user with the `agent`
//! role may open it; the agent's name is its user's. The agent's first message is its
//! `hello` (within [`HELLO_WITHIN`]); a server of a lab database that does not own the
//! reservation book answers it with a redirect to the owner and closes
//! (`testbay_engine::agents::home`); otherwise the connection carries the messages of
//! `testbay_engine::agents::wire` as JSON text frames until either side closes it. A
//! refused agent gets a close frame saying why.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use futures_util::{SinkExt, StreamExt};
use testbay_engine::agents::wire::{AgentMsg, ServerMsg};
use testbay_engine::agents::{AgentHome, AgentHub, Resume};
use testbay_engine::api::{ApiError, Caller, Console, ErrorCode, Role};

use crate::{error_response, AppState};

/// How long an agent has to say hello.
pub const HELLO_WITHIN: Duration = Duration::from_secs(10);

/// Close code for a refused agent (policy violation).
const REFUSED: u16 = 1008;

pub(crate) async fn upgrade(
    ws: WebSocketUpgrade,
    State(st): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Response {
    let Some(hub) = st.console.agent_hub() else {
        return error_response(ApiError::new(
            ErrorCode::Unavailable,
            "this console runs no phases, so it takes no rack agents",
        ));
    };
    let caller = caller.map_or_else(Caller::local, |Extension(c)| c);
    if caller.role != Role::Agent {
        return error_response(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "{} is not a rack agent: the agent connection needs a user with the agent role",
                caller.name()
            ),
        ));
    }
    let name = caller.name().to_string();
    let shutdown = st.shutdown.clone();
    let console = st.console.clone();
    ws.on_upgrade(move |socket| pump(socket, console, hub, name, shutdown))
}

async fn pump(
    socket: WebSocket,
    st_console: std::sync::Arc<dyn Console>,
    hub: AgentHub,
    name: String,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let (mut tx, mut rx) = socket.split();
    let hello = match tokio::time::timeout(HELLO_WITHIN, rx.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<AgentMsg>(&t).ok(),
        _ => None,
    };
    let Some(AgentMsg::Hello {
        racks,
        host,
        version,
        boot,
        running,
    }) = hello
    else {
        refuse(&mut tx, "the agent's first message must be its hello").await;
        return;
    };
    let console = st_console.clone();
    let home = tokio::task::spawn_blocking(move || console.agent_home())
        .await
        .unwrap_or_else(|e| AgentHome::NotYet(format!("cannot tell where the agent belongs: {e}")));
    let redirect = match home {
        AgentHome::Here => None,
        AgentHome::Redirect(url) => Some(ServerMsg::Redirect {
            why: format!("this server does not own the reservation book; {url} does"),
            url: Some(url),
        }),
        AgentHome::NotYet(why) => Some(ServerMsg::Redirect { url: None, why }),
    };
    if let Some(msg) = redirect {
        tracing::info!(agent = %name, ?msg, "rack agent sent to the book's owner");
        let text = serde_json::to_string(&msg).expect("plain JSON");
        let _ = tx.send(Message::Text(text.into())).await;
        let _ = tx.close().await;
        return;
    }
    let resume = Resume { boot, running };
    let mut session = match hub.connect_resuming(&name, racks, host, version, resume) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(agent = %name, error = %e, "rack agent refused");
            refuse(&mut tx, &e.to_string()).await;
            return;
        }
    };
    let welcome = serde_json::to_string(&session.welcome()).expect("plain JSON");
    if tx.send(Message::Text(welcome.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            out = session.outbox.recv() => match out {
                Some(msg) => {
                    let text = serde_json::to_string(&msg).expect("plain JSON");
                    if tx.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<AgentMsg>(&t) {
                    Ok(m) => session.receive(m),
                    Err(e) => tracing::warn!(agent = %name, error = %e, "an agent message the server does not understand; ignored"),
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    let _ = tx.close().await;
}

async fn refuse(tx: &mut futures_util::stream::SplitSink<WebSocket, Message>, why: &str) {
    // A close frame's reason holds at most 123 bytes.
    let mut reason = why.to_string();
    while reason.len() > 123 {
        reason.pop();
    }
    let _ = tx
        .send(Message::Close(Some(CloseFrame {
            code: REFUSED,
            reason: reason.into(),
        })))
        .await;
}
