//! `GET /api/events`: the engine's event stream over a WebSocket.

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use testbay_engine::api::frames::Framer;
use testbay_engine::api::Event;
use tokio::sync::broadcast::Receiver;

use crate::AppState;

pub(crate) async fn upgrade(ws: WebSocketUpgrade, State(st): State<AppState>) -> Response {
    // Subscribe before the upgrade completes, so nothing emitted meanwhile is lost.
    let rx = st.console.subscribe();
    let shutdown = st.shutdown.clone();
    ws.on_upgrade(move |socket| pump(socket, rx, shutdown))
}

async fn pump(
    socket: WebSocket,
    rx: Receiver<Event>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let (mut tx, mut inbound) = socket.split();
    let mut frames = Framer::new(rx);
    loop {
        let batch = tokio::select! {
            batch = frames.next() => batch,
            msg = inbound.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue, // pings are answered by axum; nothing else is expected
            },
            _ = shutdown.changed() => break,
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
        if tx.send(Message::Text(Utf8Bytes::from(text))).await.is_err() {
            break;
        }
    }
    let _ = tx.send(Message::Close(None)).await;
    tracing::debug!("event stream closed");
}
