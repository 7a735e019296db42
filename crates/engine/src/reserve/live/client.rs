//! The book from a process that may not own it: [`BookClient`] posts commands to the
//! owner's inbox and reads the stored state; [`BookHandle`] is the book owned here or
//! such a client.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::{Clock, EpochMs};
use crate::store::{BookStore, Store};

/// A process that does not own the book: posts commands to the owner's inbox and reads
/// the stored state.
pub struct BookClient {
    store: Box<dyn BookStore>,
    timeout: Duration,
}

impl BookClient {
    pub fn open(store: &dyn Store) -> Result<Self, LiveError> {
        Ok(Self {
            store: store.open_book_store()?,
            timeout: Duration::from_secs(10),
        })
    }

    /// Post `cmd` and wait for the owner's answer.
    pub fn call(&self, cmd: &BookCommand, now: EpochMs) -> Result<BookReply, LiveError> {
        let json = serde_json::to_string(cmd).map_err(|e| LiveError::Remote(e.to_string()))?;
        let id = self.store.inbox_post(now, &json)?;
        let start = std::time::Instant::now();
        while start.elapsed() < self.timeout {
            if let Some(ans) = self.store.inbox_result(id)? {
                return serde_json::from_str(&ans).map_err(|e| LiveError::Remote(e.to_string()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(LiveError::NoAnswer(self.timeout))
    }

    /// Live reservations as last written by the owner.
    pub fn reservations(&self) -> Result<Vec<ReservationView>, LiveError> {
        Ok(self.store.live_reservations()?)
    }
}

/// Either the book itself or a client of the process that owns it.
pub enum BookHandle {
    Owner(LiveBook),
    Client(BookClient),
}

impl BookHandle {
    /// Own the book if nobody does, else talk to its owner.
    pub fn open(
        store: &dyn Store,
        clock: Arc<dyn Clock>,
        cfg: BookConfig,
        resources: Vec<ResourceSpec>,
    ) -> Result<Self, LiveError> {
        match LiveBook::open(store, clock, cfg, resources) {
            Ok(b) => Ok(BookHandle::Owner(b)),
            Err(LiveError::OwnedElsewhere) => Ok(BookHandle::Client(BookClient::open(store)?)),
            Err(e) => Err(e),
        }
    }

    /// Apply a command here or at the owner; committed to the store on return.
    pub fn call(&self, cmd: BookCommand, now: EpochMs) -> Result<BookReply, LiveError> {
        match self {
            BookHandle::Owner(b) => {
                let r = b.apply(cmd);
                b.flush();
                Ok(r)
            }
            BookHandle::Client(c) => c.call(&cmd, now),
        }
    }

    pub fn reservations(&self) -> Result<Vec<ReservationView>, LiveError> {
        match self {
            BookHandle::Owner(b) => Ok(b.reservations()),
            BookHandle::Client(c) => c.reservations(),
        }
    }

    pub fn shutdown(&self) {
        if let BookHandle::Owner(b) = self {
            b.shutdown();
        }
    }
}
