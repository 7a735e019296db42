//! The one write connection and its group commit.
//!
//! Committing is what a write costs most on SQLite: every page a transaction changed goes
//! to the WAL again, and the indexes that make results answer questions (a task's
//! history) put each run's rows on a few hundred different pages. Results therefore join
//! a *group*: one transaction left open on the write connection, in which each write
//! after the first has a savepoint of its own (a failure undoes that write and no other;
//! the first write's failure rolls back the transaction, which holds nothing else),
//! committed as one at the earliest of
//! - [`Writer::commit`] (`Store::commit_now`, which a run calls within a few ms),
//! - a read through the store ([`Writer::commit_for_read`]),
//! - any other write ([`Writer::now`]: a run's insert and status, a phase's start with the
//!   process group recovery kills, the lab, the queue, schedules, baselines),
//! - [`GROUP_WINDOW`] after the group opened (a flusher thread sees to it, and so does
//!   the first write that finds the window past), or the store dropped.
//!
//! Results of several tasks and runs written at once share one commit: the hot index
//! pages go to the WAL once per group. The price, said in the store's doc: a console
//! killed before the commit loses those results; and while a group is open, the stores
//! beside this one (their own connections) wait for SQLite's write lock.
//!
//! Groups are numbered; a read waits only until the group open when it began is
//! committed (by itself when the writer is free, else by whoever holds it), never behind
//! a write that began after.
//!
//! Hand-written rather than a pool crate: there is one connection, and what is shared is
//! the open transaction, which no pool models.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::checkpoint::Checkpointer;
use crate::store::{Result, StoreError};

/// How long a group of writes stays open at most before its commit.
pub(super) const GROUP_WINDOW: Duration = Duration::from_millis(25);

/// How long a read waiting for a group's commit sleeps between looks at the writer.
const READ_RETRY: Duration = Duration::from_millis(1);

struct State {
    conn: Connection,
    /// Checkpoints the WAL after commits, off this path.
    checkpointer: Option<Checkpointer>,
    /// When the open group began; `None`: no group open.
    opened: Option<Instant>,
    /// The number of the last group opened.
    group: u64,
}

/// What the flusher is told: when the group it is to commit opened, or to stop.
#[derive(Default)]
struct Due {
    opened: Option<Instant>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The flusher's own lock, so it holds the writer's only to commit (taken after
    /// `state` when both are).
    due: Mutex<Due>,
    wake: Condvar,
    /// The number of the open group; 0: none open. Read without the writer's lock.
    open_group: AtomicU64,
    /// The number of the last group settled (committed, or lost), and its condition.
    settled: Mutex<u64>,
    settled_cv: Condvar,
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    /// The flusher thread; without one (it could not be started) every write commits.
    flusher: Option<JoinHandle<()>>,
}

impl Writer {
    /// The writer on `conn`, the database at `path`.
    pub(super) fn new(conn: Connection, path: &Path) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                conn,
                checkpointer: Checkpointer::start(path),
                opened: None,
                group: 0,
            }),
            due: Mutex::default(),
            wake: Condvar::new(),
            open_group: AtomicU64::new(0),
            settled: Mutex::new(0),
            settled_cv: Condvar::new(),
        });
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("testbay-store-flush".into())
                .spawn(move || flush(&shared))
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "no flusher thread; every write commits at once")
                })
                .ok()
        };
        Self { shared, flusher }
    }

    /// Run `f` inside the open group (opening one if none is); committed within
    /// [`GROUP_WINDOW`].
    pub(super) fn group<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut s = self.lock();
        let opened_before = s.opened;
        let out = s.write(&self.shared, f);
        match s.opened {
            Some(t) if self.flusher.is_none() || t.elapsed() >= GROUP_WINDOW => {
                s.commit(&self.shared)?;
            }
            Some(t) if opened_before.is_none() => {
                lock(&self.shared.due).opened = Some(t);
                self.shared.wake.notify_all();
            }
            _ => {}
        }
        out
    }

    /// Run `f` as [`Writer::group`] does, then commit the group with it.
    pub(super) fn now<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut s = self.lock();
        let out = s.write(&self.shared, f)?;
        s.commit(&self.shared)?;
        Ok(out)
    }

    /// Commit the open group, if any.
    pub(super) fn commit(&self) -> Result<()> {
        self.lock().commit(&self.shared)
    }

    /// Before a read: have the group open now (if any) committed, so the read sees every
    /// write that returned before it, on any thread. With no group open this takes no
    /// lock; with one, it commits it when the writer is free, or waits until whoever
    /// holds the writer (a write joining that group, the flusher) has committed it.
    pub(super) fn commit_for_read(&self) {
        let target = self.shared.open_group.load(Ordering::Acquire);
        if target == 0 {
            return;
        }
        loop {
            let settled = lock(&self.shared.settled);
            if *settled >= target {
                return;
            }
            drop(settled);
            match self.shared.state.try_lock() {
                Ok(mut s) => {
                    if s.group == target {
                        let _ = s.commit(&self.shared);
                    }
                    return;
                }
                Err(TryLockError::Poisoned(p)) => {
                    let mut s = p.into_inner();
                    if s.group == target {
                        let _ = s.commit(&self.shared);
                    }
                    return;
                }
                Err(TryLockError::WouldBlock) => {}
            }
            let settled = lock(&self.shared.settled);
            if *settled < target {
                let _ = self
                    .shared
                    .settled_cv
                    .wait_timeout(settled, READ_RETRY)
                    .unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.lock().commit(&self.shared);
        lock(&self.shared.due).stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}

/// Undoes a write whose closure failed or panicked: back to its savepoint when it joined
/// a group, the whole transaction when it opened it.
struct Undo<'a> {
    conn: &'a Connection,
    joined: bool,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let sql = if self.joined {
            "ROLLBACK TO write; RELEASE write"
        } else {
            "ROLLBACK"
        };
        if let Err(e) = self.conn.execute_batch(sql) {
            tracing::error!(error = %e, "could not undo a failed write");
        }
    }
}

impl State {
    fn write<T>(&mut self, shared: &Shared, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.opened.is_none() && !self.conn.is_autocommit() {
            // A transaction nobody counts as a group: what is left of a write that failed
            // and could not be undone. It holds nothing anyone was promised.
            tracing::error!("a write's transaction was left open; rolling it back");
            self.conn.execute_batch("ROLLBACK")?;
        }
        let joined = self.opened.is_some();
        if joined {
            self.conn.prepare_cached("SAVEPOINT write")?.execute([])?;
        } else {
            // IMMEDIATE: the write lock first. A write may read before it writes (a
            // task's run folder), and a read transaction of WAL cannot become a write one
            // once another connection has committed: that fails at once, whatever the
            // busy timeout. No savepoint (it would copy every page the write touches):
            // the write is alone in its transaction.
            self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        }
        let out = {
            let mut undo = Undo {
                conn: &self.conn,
                joined,
                armed: true,
            };
            let out = f(&self.conn);
            if out.is_ok() {
                undo.armed = false;
            }
            out
        };
        match out {
            Ok(v) if joined => {
                self.conn.prepare_cached("RELEASE write")?.execute([])?;
                Ok(v)
            }
            Ok(v) => {
                self.opened = Some(Instant::now());
                self.group += 1;
                shared.open_group.store(self.group, Ordering::Release);
                Ok(v)
            }
            Err(e) => {
                if joined && self.conn.is_autocommit() {
                    // SQLite ended the whole transaction (a full disk, an I/O error): the
                    // group's earlier writes are gone with it.
                    self.lost(shared);
                }
                Err(e)
            }
        }
    }

    /// Commit the open group. A group that cannot be committed is rolled back (its writes
    /// are lost, and said so in the log), so the next write starts clean.
    fn commit(&mut self, shared: &Shared) -> Result<()> {
        if self.opened.is_none() {
            return Ok(());
        }
        if self.conn.is_autocommit() {
            self.lost(shared);
            return Err(StoreError::Database(
                "the open group of results was rolled back by the database; they are lost".into(),
            ));
        }
        let done = self
            .conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]));
        if let Err(e) = done {
            tracing::error!(error = %e, "could not commit a group of writes; they are lost");
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            self.settle(shared);
            return Err(e.into());
        }
        self.settle(shared);
        if let Some(c) = &self.checkpointer {
            c.committed();
        }
        Ok(())
    }

    /// The open group was rolled back behind our back.
    fn lost(&mut self, shared: &Shared) {
        tracing::error!(
            open_ms = self.opened.map_or(0, |t| t.elapsed().as_millis() as u64),
            "the database rolled back the open group of writes; they are lost"
        );
        self.settle(shared);
    }

    /// The open group is over (committed or lost): reads waiting for it go on.
    fn settle(&mut self, shared: &Shared) {
        self.opened = None;
        shared.open_group.store(0, Ordering::Release);
        *lock(&shared.settled) = self.group;
        shared.settled_cv.notify_all();
    }
}

/// The flusher: commits each group [`GROUP_WINDOW`] after it opened, if nothing else did.
fn flush(shared: &Shared) {
    let mut due = lock(&shared.due);
    loop {
        if due.stop {
            return;
        }
        let Some(opened) = due.opened else {
            due = shared.wake.wait(due).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        if let Some(left) = GROUP_WINDOW
            .checked_sub(opened.elapsed())
            .filter(|d| !d.is_zero())
        {
            due = shared
                .wake
                .wait_timeout(due, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            continue;
        }
        due.opened = None;
        drop(due);
        {
            let mut s = lock(&shared.state);
            match s.opened {
                Some(t) if t.elapsed() >= GROUP_WINDOW => {
                    let _ = s.commit(shared);
                }
                // Committed meanwhile, and another group opened since: due in its turn.
                Some(t) => lock(&shared.due).opened = Some(t),
                None => {}
            }
        }
        due = lock(&shared.due);
    }
}
