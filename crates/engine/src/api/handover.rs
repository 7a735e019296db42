//! Servers of one PostgreSQL store following each other: the sweep a serving console on
//! PostgreSQL runs every [`SWEEP`] (started by `LocalConsole::shared` with the relay).
//!
//! - **Runs of servers that stopped answering.** Each server keeps a lease in the
//!   database (`store::postgres::servers`); the runs of a server whose lease lapsed are
//!   marked `interrupted` ("server X stopped answering"), their unfinished tasks
//!   `Aborted`, exactly as recovery does at a console's start
//!   ([`crate::run::recover_interrupted`]). Whichever server's sweep comes first marks
//!   them; the store marks a run only while its server's lease is lapsed.
//! - **What those runs held.** The book's owner gives back what runs stored as over still
//!   hold in the book (`Released`, `HolderEnded`), as it does on opening.
//! - **The book's owner handed over.** A server that does not own the book tries to take
//!   it (`LiveBook::open`: the advisory lock, free once the owner's session ended and
//!   its lease lapsed) and, once it has it, serves as the owner does from its start:
//!   the book restored from the store, its runs reserving through it
//!   ([`HandoverBroker`]), the queue queueing for busy DUTs and woken by the book,
//!   forwarded launches and holds answered here.
//! - **The database under the book.** On PostgreSQL every claim the book's broker
//!   makes is fenced in the lab book in the database (`reserve::fence`, [`LabFence`]),
//!   under the servers' lease: two servers that both believe they own the book (one cut
//!   off while the other took it over) cannot both hold a DUT, a dead server's claims
//!   lapse by the database's clock before anyone takes its book over, and a server whose
//!   claims' leases could not be renewed ends those runs `interrupted`.
//! - **The book lost.** An owner whose lock another server took while the database was
//!   down ([`crate::store::BookLock::lost`]) stops acting as the owner at once: its
//!   book is dropped unwritten, the runs it executes are stopped (the new owner's book
//!   does not know their claims), its rack agents' connections are closed (they are sent
//!   to the new owner when they connect again), and it follows the new owner.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::local::{forward, LocalConsole};
use super::{ApiError, Event};
use crate::lab::Lab;
use crate::reserve::handover::HandoverBroker;
use crate::reserve::labdb::LabFence;
use crate::reserve::{
    BookBroker, BookClient, BookConfig, BookHandle, BrokerConfig, LiveBook, LiveError,
};
use crate::reserve::{Fence, NoFence};
use crate::run::ResourceBroker;
use crate::store::postgres::{redact, servers::lease_ms_from_env};

/// How often a serving console on PostgreSQL sweeps.
pub const SWEEP: Duration = Duration::from_secs(1);

/// What a console that does not own the book says of it.
pub(super) const NOT_OWNER: &str = "another Testbay process on this store owns the reservation book; this view is its last saved state and holds go through it";

/// A console's part in handing the book over: its broker, the lab it reserves in and
/// the database under the book's claims.
pub(crate) struct Handover {
    pub broker: Arc<HandoverBroker>,
    lab: Arc<Lab>,
    fence: Arc<dyn Fence>,
    /// Whether the fence is a database (not the single seat's [`NoFence`]).
    fenced: bool,
    /// The lease of every claim; on PostgreSQL the servers' lease, so a dead server's
    /// claims free themselves in the database when its runs are taken for interrupted.
    lease_ms: i64,
}

/// How long a call to the lab database under the book waits before the claim is
/// refused (or the renewal tried again); at most a third of the lease.
const FENCE_TIMEOUT: Duration = Duration::from_secs(5);

impl Handover {
    /// A console's handover; `lab_db`: the lab database's URL and this server's name
    /// there, for a console on PostgreSQL, whose book's claims are all fenced in it
    /// ([`LabFence`]); none on the single seat ([`NoFence`]).
    pub(super) fn new(lab: &Lab, lab_db: Option<(&str, &str)>) -> Result<Self, ApiError> {
        let (fence, lease_ms): (Arc<dyn Fence>, i64) = match lab_db {
            None => (Arc::new(NoFence), BrokerConfig::default().lease_ms),
            Some((url, server)) => {
                let lease_ms =
                    lease_ms_from_env().map_err(|e| ApiError::internal(e.to_string()))?;
                // A call waits at most a renewal period (a third of the lease), so a
                // lost lease is noticed before the database lets it go.
                let timeout =
                    FENCE_TIMEOUT.min(Duration::from_millis((lease_ms / 3).max(1) as u64));
                let fence =
                    LabFence::open(url, server, &lab.book_resources(), timeout).map_err(|e| {
                        ApiError::internal(format!(
                            "cannot open the lab book in the database {}: {e}",
                            redact(url)
                        ))
                    })?;
                (Arc::new(fence), lease_ms)
            }
        };
        Ok(Self {
            broker: Arc::new(HandoverBroker::default()),
            lab: Arc::new(lab.clone()),
            fenced: lab_db.is_some(),
            fence,
            lease_ms,
        })
    }

    /// The broker of runs reserving through `book`; the book's operator holds fenced
    /// as its claims are.
    pub(super) fn book_broker(&self, book: &LiveBook) -> Arc<dyn ResourceBroker> {
        if self.fenced {
            book.set_fence(self.fence.clone());
        }
        Arc::new(BookBroker::with_fence(
            book.clone(),
            Some(self.lab.clone()),
            BrokerConfig {
                lease_ms: self.lease_ms,
                ..BrokerConfig::default()
            },
            self.fence.clone(),
        ))
    }
}

/// Start the sweep of `console` (see the module doc); it ends with the console.
pub(super) fn start(console: Weak<LocalConsole>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(c) = console.upgrade() else { break };
            if let Err(e) = tokio::task::spawn_blocking(move || c.sweep()).await {
                tracing::error!(error = %e, "the servers' sweep failed");
            }
        }
    });
}

impl LocalConsole {
    /// One sweep's store work (blocking): recovery of lapsed servers' runs, the give-back,
    /// the takeover attempt.
    fn sweep(&self) {
        match crate::run::recover_interrupted(
            &*self.store,
            &self.paths.data_dir,
            self.clock.now_ms(),
        ) {
            Ok(r) if !r.interrupted_runs.is_empty() => tracing::warn!(
                runs = ?r.interrupted_runs,
                aborted_tasks = r.aborted_tasks,
                "marked the runs of a server that stopped answering interrupted"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for the runs of servers that stopped answering")
            }
        }
        let owned = self
            .owned_book
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match owned {
            Some(b) if b.lost() => self.step_down(&b),
            Some(b) => self.give_back(&b),
            None => self.try_take_over(),
        }
    }

    /// Give back what runs stored as over still hold.
    fn give_back(&self, book: &LiveBook) {
        let ended: Vec<String> = book
            .holding_runs()
            .into_iter()
            .filter(|id| {
                !self.runs_here(id) && self.store.get_run(id).is_ok_and(|r| r.status.is_finished())
            })
            .collect();
        if ended.is_empty() {
            return;
        }
        let n = book.give_back(|id| ended.iter().any(|e| e == id));
        if n > 0 {
            tracing::warn!(runs = ?ended, released = n, "gave back what runs of a server that stopped answering held");
        }
    }

    /// Own the book if its owner is gone.
    fn try_take_over(&self) {
        let (Some(h), Some(lab), Some(book)) = (&self.handover, &self.lab, &self.book) else {
            return;
        };
        let b = match LiveBook::open(
            &*self.store,
            self.clock.clone(),
            BookConfig::default(),
            lab.book_resources(),
        ) {
            Ok(b) => b,
            Err(LiveError::OwnedElsewhere) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the reservation book over");
                return;
            }
        };
        forward(b.subscribe(), self.events.clone(), Event::Book);
        h.broker.set_book(Some(h.book_broker(&b)));
        *book.lock().unwrap_or_else(|p| p.into_inner()) = BookHandle::Owner(b.clone());
        *self.book_note.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.owned_book.write().unwrap_or_else(|p| p.into_inner()) = Some(b.clone());
        self.queue.set_book(Some(&b));
        tracing::warn!("took the reservation book over: its owner stopped answering");
        if let Some(relay) = self.relay.get() {
            relay.serve_waiting_now();
        }
        let _ = self.events.send(Event::Resync { missed: 0 });
    }

    /// Stop acting as the book's owner (see the module doc).
    fn step_down(&self, b: &LiveBook) {
        tracing::error!("another server took the reservation book while the database was down: this server stops acting as its owner and stops its runs");
        *self.owned_book.write().unwrap_or_else(|p| p.into_inner()) = None;
        self.queue.set_book(None);
        if let Some(h) = &self.handover {
            h.broker.set_book(None);
        }
        if let Some(book) = &self.book {
            let handle = match BookClient::open(&*self.store) {
                Ok(c) => BookHandle::Client(c),
                Err(e) => {
                    tracing::error!(error = %e, "cannot follow the book's new owner");
                    return;
                }
            };
            *book.lock().unwrap_or_else(|p| p.into_inner()) = handle;
        }
        *self.book_note.lock().unwrap_or_else(|p| p.into_inner()) = Some(NOT_OWNER.into());
        b.abandon();
        // Its agents belong to the new owner now (`agents::home`).
        self.agents.disconnect_all();
        for run in self.runs.active_runs() {
            if let Err(e) = self.runs.stop(&run) {
                tracing::warn!(run = %run, error = %e, "cannot stop a run after losing the book");
            }
        }
        let _ = self.events.send(Event::Resync { missed: 0 });
    }
}
