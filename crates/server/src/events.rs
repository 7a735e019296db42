//! `GET /api/events`: the engine's event stream over a WebSocket.

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use testbay_engine::api::Event;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;

use crate::AppState;

/// Most events sent in one frame (as a JSON array) when several are waiting.
const BATCH: usize = 256;

pub(crate) async fn upgrade(ws: WebSocketUpgrade, State(st): State<AppState>) -> Response {
    // Subscribe before the upgrade completes, so nothing emitted meanwhile is lost.
    let rx = st.console.subscribe();
    let shutdown = st.shutdown.clone();
    ws.on_upgrade(move |socket| pump(socket, rx, shutdown))
}

async fn pump(
    socket: WebSocket,
    mut rx: Receiver<Event>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let (mut tx, mut inbound) = socket.split();
    loop {
        let first = tokio::select! {
            ev = rx.recv() => ev,
            msg = inbound.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue, // pings are answered by axum; nothing else is expected
            },
            _ = shutdown.changed() => break,
        };
        let Some(batch) = fill_batch(first, &mut rx) else {
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

/// The events to send in one frame: `first` and whatever else is already waiting, up to
/// [`BATCH`]. A gap (this subscriber lagged) becomes [`Event::Resync`] in its place.
/// `None` when the console's event stream has ended.
fn fill_batch(first: Result<Event, RecvError>, rx: &mut Receiver<Event>) -> Option<Vec<Event>> {
    let mut batch = Vec::new();
    match first {
        Ok(ev) => batch.push(ev),
        Err(RecvError::Lagged(missed)) => batch.push(Event::Resync { missed }),
        Err(RecvError::Closed) => return None,
    }
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(ev) => batch.push(ev),
            Err(TryRecvError::Lagged(missed)) => batch.push(Event::Resync { missed }),
            Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
        }
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast;

    fn filler(n: u64) -> Event {
        // Any event will do; resync is the one without engine state.
        Event::Resync { missed: n + 1000 }
    }

    #[tokio::test]
    async fn a_lagging_subscriber_gets_resync_then_the_rest() {
        let (tx, mut rx) = broadcast::channel(4);
        for i in 0..10 {
            tx.send(filler(i)).unwrap();
        }
        let first = rx.recv().await;
        let batch = fill_batch(first, &mut rx).unwrap();
        assert_eq!(batch[0], Event::Resync { missed: 6 });
        assert_eq!(&batch[1..], &[filler(6), filler(7), filler(8), filler(9)]);
        drop(tx);
        let end = rx.recv().await;
        assert!(fill_batch(end, &mut rx).is_none());
    }

    #[tokio::test]
    async fn batches_are_bounded() {
        let (tx, mut rx) = broadcast::channel(4 * BATCH);
        for i in 0..(BATCH as u64 + 5) {
            tx.send(filler(i)).unwrap();
        }
        let first = rx.recv().await;
        assert_eq!(fill_batch(first, &mut rx).unwrap().len(), BATCH);
        let next = rx.recv().await;
        assert_eq!(fill_batch(next, &mut rx).unwrap().len(), 5);
    }
}
