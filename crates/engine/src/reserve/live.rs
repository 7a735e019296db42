//! The book as a live, persistent service: one [`Book`] behind a mutex, every change
//! broadcast to subscribers (the console) and written to the store by a writer thread that
//! commits one transaction per batch.
//!
//! One process owns the book ([`Store::lock_book`]: a `flock` beside a SQLite database,
//! an advisory lock on PostgreSQL). Another process
//! that wants to change it (the `testbay lab` CLI while a console runs) posts a
//! [`BookCommand`] to the store's inbox; the owner's service thread applies it and writes
//! the answer. So there is one book and one writer, and nothing is double-booked across
//! processes.
//!
//! The owner's first act, once the saved reservations are back, is to give back what
//! runs that are over still hold (`Released`, [`EndReason::HolderEnded`]): a run stored
//! as finished, one whose console is dead (recovery marks it `interrupted`, before or
//! after), or one not stored at all (its console died between reserving and storing it)
//! holds nothing. So a killed console's DUTs are free the moment the next process opens
//! the book, not when its leases lapse or its booked windows end.
//!
//! Listeners ([`LiveBook::listen`]) hear every batch of events under the book's lock, in
//! sequence order: the broker wakes the runs waiting for what a batch freed.

mod client;
mod writer;

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use super::*;
use crate::clock::{Clock, EpochMs};
use crate::store::{BookLock, Store, StoreError};

pub use client::{BookClient, BookHandle};
use writer::service;

/// Errors of the live book.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Book(#[from] BookError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot open the book lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the reservation book is owned by another Testbay process")]
    OwnedElsewhere,
    #[error("the process owning the reservation book did not answer within {0:?}")]
    NoAnswer(Duration),
    #[error("{0}")]
    Remote(String),
}

/// How often the service thread sweeps expiries and reads the inbox.
pub const SERVICE_PERIOD: Duration = Duration::from_millis(100);
/// Largest number of events written in one transaction.
pub const MAX_BATCH: usize = 50_000;

/// A change another process asks the owner to make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum BookCommand {
    /// An operator hold: book `resource` for `duration_ms` from `from` (or now), claimed
    /// by itself when its window starts.
    Hold {
        resource: String,
        by: String,
        from: Option<EpochMs>,
        duration_ms: i64,
        next_available: bool,
        /// Mode, requested configuration and lease (see [`HoldOptions`]).
        #[serde(default)]
        options: HoldOptions,
    },
    Release {
        id: ResId,
    },
    /// Renew the lease of held reservation `id` (see [`Book::renew`]).
    Renew {
        id: ResId,
    },
    /// Move the end of reservation `id` to `end`.
    Extend {
        id: ResId,
        end: EpochMs,
    },
}

/// How an operator hold is made beyond its resource and window: one unit of a shared
/// resource (`mode: shared`) or all of it, a requested configuration (kissats'
/// `res_config`, overlaid on the resource's), and a lease the holder renews (without
/// one the hold lasts its whole window).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HoldOptions {
    pub mode: ReservationMode,
    pub config: Value,
    pub lease_ms: Option<i64>,
}

/// The owner's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum BookReply {
    Held { reservation: ReservationView },
    Released,
    Error { message: String },
}

/// Hears each published batch of events (see [`LiveBook::listen`]); returns false to
/// stop listening.
pub type Listener = Box<dyn FnMut(&[BookEvent]) -> bool + Send>;

/// The book and its listeners, behind one lock, so listeners hear every batch in sequence
/// order before anyone changes the book again.
struct Guarded {
    book: Book,
    listeners: Vec<Listener>,
}

enum WriterMsg {
    Events(Vec<BookEvent>),
    Flush(mpsc::Sender<()>),
    Stop,
    /// Stop without writing what is left (the ownership was lost).
    Abandon,
}

struct Inner {
    book: Mutex<Guarded>,
    to_writer: Mutex<mpsc::Sender<WriterMsg>>,
    events: broadcast::Sender<BookEvent>,
    /// Where the store is ([`Store::location`]).
    location: String,
    /// The book lock, held while this process owns the book; closing it releases the book
    /// to the next process. `shutdown` closes it, so ownership ends when `shutdown`
    /// returns, not when the last clone of the handle (a listener's, a thread's) goes.
    lock: Mutex<Option<Box<dyn BookLock>>>,
    /// The lab database under the book's operator holds ([`LiveBook::set_fence`]).
    fence: std::sync::RwLock<Option<Arc<dyn Fence>>>,
}

/// The owning process's handle on the book. Cheap to clone.
#[derive(Clone)]
pub struct LiveBook {
    inner: Arc<Inner>,
    service: Arc<Mutex<Option<JoinHandle<()>>>>,
}

static OWNER_LABEL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Name this process in the book's lock file when it owns the book (`testbay run`, `the
/// Testbay console`); the first call wins. Without one, the program's file name is used.
pub fn set_owner_label(label: &str) {
    let _ = OWNER_LABEL.set(label.to_string());
}

/// `testbay run (pid 4242)`: this process, as [`Store::book_owner`] reports it to others.
fn owner_description() -> String {
    let label = OWNER_LABEL.get().cloned().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "a Testbay process".into())
    });
    format!("{label} (pid {})", std::process::id())
}

impl LiveBook {
    /// Become the book's owner for `store` ([`Store::lock_book`]): reload live reservations (dropping those that expired
    /// while nobody owned the book) and start the writer/service thread. Fails with
    /// [`LiveError::OwnedElsewhere`] if another process owns it.
    pub fn open(
        store: &dyn Store,
        clock: Arc<dyn Clock>,
        cfg: BookConfig,
        resources: Vec<ResourceSpec>,
    ) -> Result<Self, LiveError> {
        let location = store.location();
        // Named for the processes that cannot have it ([`Store::book_owner`]).
        let lock = store
            .lock_book(&owner_description())?
            .ok_or(LiveError::OwnedElsewhere)?;
        let store = store.open_book_store()?;
        let saved = store.load_book()?;
        let mut book = Book::with_config(clock, cfg, resources)?;
        let restored = saved.live.len();
        book.restore(saved.live, saved.next_id, saved.next_seq);
        let live_runs = store.live_runs()?;
        let given_back = book.release_ended(|h| match h {
            Holder::Run { run_id, .. } => !live_runs.contains(run_id),
            Holder::Operator { .. } => false,
        });
        if given_back > 0 {
            tracing::warn!(
                given_back,
                "released what runs that are over still held (their console exited)"
            );
        }
        tracing::info!(
            restored,
            live = book.reservations().len(),
            "reservation book loaded"
        );
        let (tx, rx) = mpsc::channel();
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            book: Mutex::new(Guarded {
                book,
                listeners: Vec::new(),
            }),
            to_writer: Mutex::new(tx),
            events,
            location: location.clone(),
            lock: Mutex::new(Some(lock)),
            fence: std::sync::RwLock::new(None),
        });
        // Events from the restore (expired while down, given back) go out like any others.
        {
            let mut g = inner.book.lock().unwrap_or_else(|p| p.into_inner());
            publish(&inner, &mut g);
        }
        let weak = Arc::downgrade(&inner);
        let handle = std::thread::Builder::new()
            .name("testbay-book".into())
            .spawn(move || service(store, rx, weak))
            .map_err(|source| LiveError::Lock {
                path: PathBuf::from(&location),
                source,
            })?;
        Ok(Self {
            inner,
            service: Arc::new(Mutex::new(Some(handle))),
        })
    }

    /// Run `f` on the book and publish the events it caused.
    pub fn with<R>(&self, f: impl FnOnce(&mut Book) -> R) -> R {
        let mut g = self.lock();
        let r = f(&mut g.book);
        publish(&self.inner, &mut g);
        r
    }

    fn lock(&self) -> MutexGuard<'_, Guarded> {
        self.inner.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Call `listener` with every batch of events published from now on, under the book's
    /// lock: it hears them in sequence order, before anyone changes the book again, so it
    /// must be quick and must not use the book. It stays until it returns false.
    pub fn listen(&self, listener: Listener) {
        self.lock().listeners.push(listener);
    }

    /// Live book events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BookEvent> {
        self.inner.events.subscribe()
    }

    pub fn request(&self, req: ReservationRequest<'_>) -> Result<PreReservation, BookError> {
        self.with(|b| b.request(req))
    }
    pub fn claim(&self, id: ResId) -> Result<ClaimOutcome, BookError> {
        self.with(|b| b.claim(id))
    }
    pub fn release(&self, id: ResId) -> Result<(), BookError> {
        let fence = self.fence();
        self.with(|b| release(b, fence.as_deref(), id))
    }
    pub fn renew(&self, id: ResId) -> Result<Reservation, BookError> {
        let fence = self.fence();
        self.with(|b| renew(b, fence.as_deref(), id))
    }
    pub fn extend(&self, id: ResId, new_end: EpochMs) -> Result<Reservation, BookError> {
        self.with(|b| b.extend(id, new_end))
    }
    pub fn holds(&self) -> Vec<ResourceHolds> {
        self.with(|b| b.holds())
    }
    pub fn reservations(&self) -> Vec<ReservationView> {
        self.with(|b| b.reservations())
    }
    pub fn resources(&self) -> Vec<ResourceInfo> {
        self.with(|b| b.resources())
    }

    /// An operator hold (see [`BookCommand::Hold`]).
    pub fn hold(
        &self,
        resource: &str,
        by: &str,
        from: Option<EpochMs>,
        duration_ms: i64,
        next_available: bool,
    ) -> Result<ReservationView, BookError> {
        self.hold_with(
            resource,
            by,
            from,
            duration_ms,
            next_available,
            &HoldOptions::default(),
        )
    }

    /// An operator hold made as `options` say.
    pub fn hold_with(
        &self,
        resource: &str,
        by: &str,
        from: Option<EpochMs>,
        duration_ms: i64,
        next_available: bool,
        options: &HoldOptions,
    ) -> Result<ReservationView, BookError> {
        let fence = self.fence();
        self.with(|b| {
            hold(
                b,
                fence.as_deref(),
                resource,
                by,
                from,
                duration_ms,
                next_available,
                options,
            )
        })
    }

    /// Fence the operators' holds made from now on in `fence` (see `reserve::fence`).
    pub fn set_fence(&self, fence: Arc<dyn Fence>) {
        *self.inner.fence.write().unwrap_or_else(|p| p.into_inner()) = Some(fence);
    }

    fn fence(&self) -> Option<Arc<dyn Fence>> {
        fence_of(&self.inner)
    }

    /// [`Self::renew`], answered with the reservation as it is now.
    pub fn renew_view(&self, id: ResId) -> Result<ReservationView, BookError> {
        let fence = self.fence();
        self.with(|b| {
            renew(b, fence.as_deref(), id)?;
            b.get(id).ok_or(BookError::UnknownId(id))
        })
    }

    /// [`Self::extend`], answered with the reservation as it is now.
    pub fn extend_to(&self, id: ResId, end: EpochMs) -> Result<ReservationView, BookError> {
        let fence = self.fence();
        self.with(|b| match extend(b, fence.as_deref(), id, end)? {
            BookReply::Held { reservation } => Ok(reservation),
            _ => Err(BookError::UnknownId(id)),
        })
    }

    /// Apply one inbox command.
    pub fn apply(&self, cmd: BookCommand) -> BookReply {
        let fence = self.fence();
        self.with(|b| apply(b, fence.as_deref(), cmd))
    }

    /// Wait until everything published so far is committed.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        let sent = self
            .inner
            .to_writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(WriterMsg::Flush(tx))
            .is_ok();
        if sent {
            let _ = rx.recv();
        }
    }

    /// Flush, stop the service thread and give up ownership (once the last clone drops).
    pub fn shutdown(&self) {
        self.flush();
        let _ = self
            .inner
            .to_writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(WriterMsg::Stop);
        if let Some(h) = self
            .service
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = h.join();
        }
        drop(
            self.inner
                .lock
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }

    /// Give back what runs stored as over (`ended`) still hold (as on opening): a
    /// survivor took the runs of a server that stopped answering for interrupted.
    /// Returns how many reservations were released.
    pub fn give_back(&self, ended: impl Fn(&str) -> bool) -> usize {
        self.with(|b| {
            b.release_ended(|h| match h {
                Holder::Run { run_id, .. } => ended(run_id),
                Holder::Operator { .. } => false,
            })
        })
    }

    /// The runs that hold or booked something in the book.
    pub fn holding_runs(&self) -> std::collections::BTreeSet<String> {
        self.reservations()
            .into_iter()
            .filter_map(|v| match &*v.holder {
                Holder::Run { run_id, .. } => Some(run_id.to_string()),
                Holder::Operator { .. } => None,
            })
            .collect()
    }

    /// Whether the ownership was lost without this process giving it up (see
    /// [`crate::store::BookLock::lost`]): it must stop acting as the owner.
    pub fn lost(&self) -> bool {
        self.inner
            .lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|l| l.lost())
    }

    /// Stop as owner without writing anything more: the ownership was [lost](Self::lost)
    /// and another process writes the book now. Changes made here from now on stay in
    /// memory.
    pub fn abandon(&self) {
        let _ = self
            .inner
            .to_writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(WriterMsg::Abandon);
        drop(
            self.inner
                .lock
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }

    /// Where the book's store is ([`Store::location`]).
    pub fn location(&self) -> &str {
        &self.inner.location
    }
}

/// Drain the book's events to the listeners, the writer and subscribers, under the book
/// lock so each sees them in sequence order.
fn publish(inner: &Inner, g: &mut Guarded) {
    if g.book.pending_events() == 0 {
        return;
    }
    let events = g.book.drain_events();
    if !g.listeners.is_empty() {
        g.listeners.retain_mut(|l| l(&events));
    }
    for e in &events {
        let _ = inner.events.send(e.clone());
    }
    let _ = inner
        .to_writer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(WriterMsg::Events(events));
}

/// The fence of the book behind `inner`, if it has one.
fn fence_of(inner: &Inner) -> Option<Arc<dyn Fence>> {
    inner
        .fence
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// `v` as a fenced hold: an operator's (with its lease, if it has one).
fn fenced_hold(v: &ReservationView, now: EpochMs) -> Option<FenceHold<'_>> {
    match &*v.holder {
        Holder::Operator { name } => Some(FenceHold {
            resource: &v.resource,
            mode: v.mode,
            operator: name,
            start: v.start,
            end: v.end,
            now,
            lease_ms: v.lease_ms,
        }),
        _ => None,
    }
}

/// Release `id`; an operator's hold in the fence too.
fn release(b: &mut Book, fence: Option<&dyn Fence>, id: ResId) -> Result<(), BookError> {
    let before = fence.and(b.get(id));
    b.release(id)?;
    if let (Some(f), Some(v)) = (fence, before) {
        if let Some(h) = fenced_hold(&v, b.now()) {
            f.end_hold(&h);
        }
    }
    Ok(())
}

/// Renew `id`'s lease; an operator's hold's in the fence too. A hold whose lease the
/// database no longer has (it lapsed there: the resource may be another server's now)
/// is released here as well, and the renewal is refused.
fn renew(b: &mut Book, fence: Option<&dyn Fence>, id: ResId) -> Result<Reservation, BookError> {
    let r = b.renew(id)?;
    let Some(f) = fence else { return Ok(r) };
    let Some(v) = b.get(id) else { return Ok(r) };
    let Some(h) = fenced_hold(&v, b.now()).filter(|h| h.lease_ms.is_some()) else {
        return Ok(r);
    };
    match f.renew_hold(&h) {
        Ok(()) => Ok(r),
        Err(refused) => {
            b.release(id)?;
            Err(BookError::Fenced(refused.reason))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn hold(
    b: &mut Book,
    fence: Option<&dyn Fence>,
    resource: &str,
    by: &str,
    from: Option<EpochMs>,
    duration_ms: i64,
    next_available: bool,
    options: &HoldOptions,
) -> Result<ReservationView, BookError> {
    let mut req = ReservationRequest::new(
        resource,
        Holder::Operator {
            name: by.to_string(),
        },
        duration_ms,
    )
    .auto_claim(true)
    .next_available(next_available)
    .config(options.config.clone());
    req.time_needed = from;
    req.mode = options.mode;
    req.lease_ms = options.lease_ms;
    let pre = b.request(req)?;
    // An auto-claim pre-reservation is claimed by the sweep once its window starts,
    // so if that is now, `get` returns it held.
    let view = b.get(pre.id).ok_or(BookError::UnknownId(pre.id))?;
    if let (Some(f), Some(h)) = (fence, fenced_hold(&view, b.now())) {
        if let Err(refused) = f.hold(&h) {
            b.release(pre.id)?;
            return Err(BookError::Fenced(refused.reason));
        }
    }
    Ok(view)
}

/// Extend `id` to `end`, answered with the reservation as it is now.
fn extend(
    b: &mut Book,
    fence: Option<&dyn Fence>,
    id: ResId,
    end: EpochMs,
) -> Result<BookReply, BookError> {
    let before = fence.and(b.get(id));
    b.extend(id, end)?;
    let reservation = b.get(id).ok_or(BookError::UnknownId(id))?;
    if let (Some(f), Some(v)) = (fence, before) {
        if let Some(h) = fenced_hold(&v, b.now()) {
            if let Err(refused) = f.extend_hold(&h, reservation.end) {
                // The database did not move it: nor does the book.
                b.unextend(id, v.end)?;
                return Err(BookError::Fenced(refused.reason));
            }
        }
    }
    Ok(BookReply::Held { reservation })
}

fn apply(b: &mut Book, fence: Option<&dyn Fence>, cmd: BookCommand) -> BookReply {
    let r = match cmd {
        BookCommand::Hold {
            resource,
            by,
            from,
            duration_ms,
            next_available,
            options,
        } => hold(
            b,
            fence,
            &resource,
            &by,
            from,
            duration_ms,
            next_available,
            &options,
        )
        .map(|reservation| BookReply::Held { reservation }),
        BookCommand::Release { id } => release(b, fence, id).map(|()| BookReply::Released),
        BookCommand::Renew { id } => renew(b, fence, id)
            .and_then(|_| b.get(id).ok_or(BookError::UnknownId(id)))
            .map(|reservation| BookReply::Held { reservation }),
        BookCommand::Extend { id, end } => extend(b, fence, id, end),
    };
    r.unwrap_or_else(|e| BookReply::Error {
        message: e.to_string(),
    })
}
