//! WAL checkpoints off the writer's path.
//!
//! A checkpoint copies the pages the WAL holds back into the database file and syncs it;
//! made by the writer (SQLite's automatic checkpoint runs in the commit that crosses the
//! threshold), it stalls every write behind it. Here a thread of its own, on a
//! connection of its own, runs a PASSIVE checkpoint (it never blocks the writer or a
//! reader) at most every [`EVERY`] while commits come in. The writer keeps SQLite's
//! automatic checkpoint at a higher threshold as a backstop, should this thread fall
//! behind or be missing.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// At most one checkpoint this often.
const EVERY: Duration = Duration::from_millis(250);

#[derive(Default)]
struct State {
    /// A commit came since the last checkpoint.
    committed: bool,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Start the checkpointer of the database at `path`; `None` (and a warning) if its
    /// connection or thread cannot be had: the writer's automatic checkpoint still runs.
    pub(super) fn start(path: &Path) -> Option<Self> {
        let conn = match Connection::open(path) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "no checkpoint thread; the writer checkpoints");
                return None;
            }
        };
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("testbay-store-checkpoint".into())
                .spawn(move || run(&shared, &conn))
                .inspect_err(
                    |e| tracing::warn!(error = %e, "no checkpoint thread; the writer checkpoints"),
                )
                .ok()?
        };
        Some(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// The writer committed: a checkpoint is due within [`EVERY`].
    pub(super) fn committed(&self) {
        let mut s = lock(&self.shared);
        if !s.committed {
            s.committed = true;
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.shared).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

fn run(shared: &Shared, conn: &Connection) {
    let mut s = lock(shared);
    loop {
        while !s.committed && !s.stop {
            s = shared.wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if s.stop {
            return;
        }
        s.committed = false;
        drop(s);
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) => {}
            // Another connection or process is checkpointing.
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                tracing::debug!("WAL checkpoint busy elsewhere");
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; the next one tries again"),
        }
        // Rest before the next, unless told to stop.
        s = lock(shared);
        if !s.stop {
            s = shared
                .wake
                .wait_timeout_while(s, EVERY, |s| !s.stop)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
