//! A subscriber's events as frames for a transport (the server's WebSocket, the desktop
//! window): the first event goes at once, a busy stream as at most one batch per
//! [`FRAME_GAP`]. Every frame costs the page a main-thread task and the transport a
//! message, so one per event is what a log flood cannot afford.

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;
use tokio::time::{Duration, Instant};

use super::Event;

/// Most events in one frame.
pub const BATCH: usize = 512;

/// Shortest time between two frames to one subscriber, unless the last frame was full.
pub const FRAME_GAP: Duration = Duration::from_millis(50);

/// Turns a subscriber's events into frames paced by [`FRAME_GAP`]. `next` is cancel-safe:
/// an event received while the gap runs out is kept for the next call.
pub struct Framer {
    rx: Receiver<Event>,
    first: Option<Result<Event, RecvError>>,
    /// When the next frame may go (`None`: at once).
    due: Option<Instant>,
}

impl Framer {
    pub fn new(rx: Receiver<Event>) -> Self {
        Self {
            rx,
            first: None,
            due: None,
        }
    }

    /// The next frame's events; `None` when the console's stream has ended.
    pub async fn next(&mut self) -> Option<Vec<Event>> {
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

/// What a subscriber that fell `missed` events behind gets in their place.
fn lagged(missed: u64) -> Event {
    tracing::warn!(
        missed,
        "a subscriber fell behind the event stream; it resyncs"
    );
    Event::Resync { missed }
}

/// The events to send in one frame: `first` and whatever else is already waiting, up to
/// [`BATCH`]. A gap (this subscriber lagged) becomes [`Event::Resync`] in its place.
/// `None` when the console's event stream has ended.
fn fill_batch(first: Result<Event, RecvError>, rx: &mut Receiver<Event>) -> Option<Vec<Event>> {
    let mut batch = Vec::new();
    match first {
        Ok(ev) => batch.push(ev),
        Err(RecvError::Lagged(missed)) => batch.push(lagged(missed)),
        Err(RecvError::Closed) => return None,
    }
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(ev) => batch.push(ev),
            Err(TryRecvError::Lagged(missed)) => batch.push(lagged(missed)),
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
