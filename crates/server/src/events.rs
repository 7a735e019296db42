//! `GET /api/events`: the engine's event stream over a WebSocket.

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use testbay_engine::api::Event;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;
use tokio::time::{Duration, Instant};

use crate::AppState;

/// Most events sent in one frame (as a JSON array) when several are waiting.
const BATCH: usize = 512;

/// Shortest time between two frames to one client (unless the last frame was full): a
/// busy stream goes out as at most 20 frames a second instead of one per event (each
/// frame is a task on the page's main thread), an idle stream sends its first event at
/// once.
const FRAME_GAP: Duration = Duration::from_millis(50);

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

/// Turns a subscriber's events into frames paced by [`FRAME_GAP`]. `next` is cancel-safe:
/// an event received while the gap runs out is kept for the next call.
struct Framer {
    rx: Receiver<Event>,
    first: Option<Result<Event, RecvError>>,
    /// When the next frame may go (`None`: at once).
    due: Option<Instant>,
}

impl Framer {
    fn new(rx: Receiver<Event>) -> Self {
        Self {
            rx,
            first: None,
            due: None,
        }
    }

    /// The next frame's events; `None` when the console's stream has ended.
    async fn next(&mut self) -> Option<Vec<Event>> {
        if self.first.is_none() {
            self.first = Some(self.rx.recv().await);
        }
        if let Some(due) = self.due {
            tokio::time::sleep_until(due).await;
        }
        let batch = fill_batch(self.first.take()?, &mut self.rx)?;
        self.due = (batch.len() < BATCH).then(|| Instant::now() + FRAME_GAP);
        Some(batch)
    }
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

    #[tokio::test(start_paused = true)]
    async fn a_busy_stream_is_paced_an_idle_one_is_not() {
        let (tx, rx) = broadcast::channel(64);
        let mut frames = Framer::new(rx);
        let t0 = Instant::now();
        tx.send(filler(0)).unwrap();
        assert_eq!(frames.next().await.unwrap(), [filler(0)]);
        assert_eq!(t0.elapsed(), Duration::ZERO, "the first event goes at once");
        for i in 1..4 {
            tx.send(filler(i)).unwrap();
        }
        assert_eq!(
            frames.next().await.unwrap(),
            [filler(1), filler(2), filler(3)]
        );
        assert_eq!(
            t0.elapsed(),
            FRAME_GAP,
            "later ones wait out the gap, together"
        );
        // Idle for longer than the gap: the next event goes at once again.
        tokio::time::sleep(FRAME_GAP * 3).await;
        let t1 = Instant::now();
        tx.send(filler(4)).unwrap();
        assert_eq!(frames.next().await.unwrap(), [filler(4)]);
        assert_eq!(t1.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_out_the_gap_is_cancel_safe() {
        let (tx, rx) = broadcast::channel(64);
        let mut frames = Framer::new(rx);
        tx.send(filler(0)).unwrap();
        frames.next().await.unwrap();
        tx.send(filler(1)).unwrap();
        // Cancelled while the gap runs: the event it already took is not lost.
        let cut = tokio::time::timeout(FRAME_GAP / 2, frames.next()).await;
        assert!(cut.is_err());
        tx.send(filler(2)).unwrap();
        assert_eq!(frames.next().await.unwrap(), [filler(1), filler(2)]);
        drop(tx);
        assert!(frames.next().await.is_none());
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
