//! The owner's service thread: writes the book's event batches (one transaction each),
//! sweeps expiries every [`SERVICE_PERIOD`] and answers other processes' commands from
//! the store's inbox.

use std::sync::mpsc;

use super::*;
use crate::store::BookStore;

/// The service thread: writes event batches (one transaction each), and every
/// [`SERVICE_PERIOD`] sweeps expiries and answers the inbox.
pub(super) fn service(
    mut store: Box<dyn BookStore>,
    rx: mpsc::Receiver<WriterMsg>,
    inner: std::sync::Weak<Inner>,
) {
    let mut last_service = std::time::Instant::now();
    loop {
        let first = match rx.recv_timeout(SERVICE_PERIOD) {
            Ok(m) => Some(m),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        if pump(&rx, &mut *store, first) {
            return;
        }
        if last_service.elapsed() >= SERVICE_PERIOD {
            last_service = std::time::Instant::now();
            let Some(inner) = inner.upgrade() else { return };
            {
                let mut g = inner.book.lock().unwrap_or_else(|p| p.into_inner());
                g.book.tick();
                publish(&inner, &mut g);
            }
            if serve_inbox(&rx, &mut *store, &inner) {
                return;
            }
        }
    }
}

/// Write `first` and whatever else is queued, in batches of at most [`MAX_BATCH`] events
/// per transaction; answer flush requests once what preceded them is committed. Returns
/// true when asked to stop.
fn pump(
    rx: &mpsc::Receiver<WriterMsg>,
    store: &mut dyn BookStore,
    first: Option<WriterMsg>,
) -> bool {
    let mut next = first.or_else(|| rx.try_recv().ok());
    let mut batch: Vec<BookEvent> = Vec::new();
    let write = |store: &mut dyn BookStore, batch: &mut Vec<BookEvent>| {
        if !batch.is_empty() {
            if let Err(e) = store.write_events(batch) {
                tracing::error!(error = %e, events = batch.len(), "cannot persist reservation events");
            }
            batch.clear();
        }
    };
    while let Some(m) = next {
        match m {
            WriterMsg::Events(ev) => {
                batch.extend(ev);
                if batch.len() >= MAX_BATCH {
                    write(store, &mut batch);
                }
            }
            WriterMsg::Flush(tx) => {
                write(store, &mut batch);
                let _ = tx.send(());
            }
            WriterMsg::Stop => {
                write(store, &mut batch);
                return true;
            }
            WriterMsg::Abandon => return true,
        }
        next = rx.try_recv().ok();
    }
    write(store, &mut batch);
    false
}

/// Apply pending inbox commands; each answer is written after the command's events are
/// committed. Returns true when asked to stop meanwhile.
fn serve_inbox(rx: &mpsc::Receiver<WriterMsg>, store: &mut dyn BookStore, inner: &Inner) -> bool {
    let pending = match store.inbox_pending() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the book inbox");
            return false;
        }
    };
    for (id, json) in pending {
        let (reply, now) = match serde_json::from_str::<BookCommand>(&json) {
            Ok(cmd) => {
                let mut g = inner.book.lock().unwrap_or_else(|p| p.into_inner());
                let fence = super::fence_of(inner);
                let reply = apply(&mut g.book, fence.as_deref(), cmd);
                publish(inner, &mut g);
                (reply, g.book.now())
            }
            Err(e) => (
                BookReply::Error {
                    message: format!("bad book command: {e}"),
                },
                inner
                    .book
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .book
                    .now(),
            ),
        };
        let stop = pump(rx, store, None);
        let json = serde_json::to_string(&reply).unwrap_or_default();
        if let Err(e) = store.inbox_answer(id, now, &json) {
            tracing::error!(error = %e, "cannot answer a book inbox command");
        }
        if stop {
            return true;
        }
    }
    false
}
