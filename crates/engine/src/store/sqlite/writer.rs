//! The one write connection and its group commit.
//!
//! Committing is what a write costs most on SQLite: every page a transaction changed goes
//! to the WAL again, and the indexes that make results answer questions (a task's
//! history) put each run's rows on a few hundred different pages. Results therefore join
//! a *group*: one transaction left open on the write connection, each write inside a
//! savepoint of its own (a failure undoes that write and no other), committed as one at
//! the earliest of
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
//! Hand-written rather than a pool crate: there is one connection, and what is shared is
//! the open transaction, which no pool models.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::checkpoint::Checkpointer;
use crate::store::Result;

/// How long a group of writes stays open at most before its commit.
pub(super) const GROUP_WINDOW: Duration = Duration::from_millis(25);

struct State {
    conn: Connection,
    /// Checkpoints the WAL after commits, off this path.
    checkpointer: Option<Checkpointer>,
    /// When the open group began; `None`: no group open (autocommit).
    opened: Option<Instant>,
    /// [`Shared::open`].
    open: Arc<AtomicBool>,
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
    /// A group is open: a read commits it first (so the writer's lock is taken only
    /// while writes wait for their commit).
    open: Arc<AtomicBool>,
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

impl Writer {
    /// The writer on `conn`, the database at `path`.
    pub(super) fn new(conn: Connection, path: &Path) -> Self {
        let open = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                conn,
                checkpointer: Checkpointer::start(path),
                opened: None,
                open: open.clone(),
            }),
            due: Mutex::default(),
            wake: Condvar::new(),
            open,
        });
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("testbay-store-flush".into())
                .spawn(move || flush(&shared))
                .ok()
        };
        Self { shared, flusher }
    }

    /// Run `f` inside the open group (opening one if none is), in a savepoint of its
    /// own; committed within [`GROUP_WINDOW`].
    pub(super) fn group<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut s = self.lock();
        let out = s.write(&self.shared, f);
        if s.opened.is_some_and(|t| t.elapsed() >= GROUP_WINDOW) {
            s.commit()?;
        }
        out
    }

    /// Run `f` as [`Writer::group`] does, then commit the group with it.
    pub(super) fn now<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut s = self.lock();
        let out = s.write(&self.shared, f)?;
        s.commit()?;
        Ok(out)
    }

    /// Commit the open group, if any.
    pub(super) fn commit(&self) -> Result<()> {
        self.lock().commit()
    }

    /// Commit the open group, if any, before a read: the read then sees every write
    /// that returned before it, on any thread. With no group open this takes no lock;
    /// with one, it waits for the write in progress (one call's worth, a few
    /// milliseconds at most), never for a window.
    pub(super) fn commit_for_read(&self) {
        if self.shared.open.load(Ordering::Acquire) {
            let _ = self.lock().commit();
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
        let _ = self.lock().commit();
        lock(&self.shared.due).stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}

impl State {
    fn write<T>(&mut self, shared: &Shared, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if !self.conn.is_autocommit() {
            // Joining a group: a savepoint, so a failure undoes this write alone.
            self.conn.prepare_cached("SAVEPOINT write")?.execute([])?;
            return match f(&self.conn) {
                Ok(v) => {
                    self.conn.prepare_cached("RELEASE write")?.execute([])?;
                    Ok(v)
                }
                Err(e) => {
                    if let Err(undo) = self.conn.execute_batch("ROLLBACK TO write; RELEASE write") {
                        tracing::error!(error = %undo, "could not undo a failed write");
                    }
                    Err(e)
                }
            };
        }
        // Opening one. IMMEDIATE: the write lock first. A write may read before it writes
        // (a task's run folder), and a read transaction of WAL cannot become a write one
        // once another connection has committed: that fails at once, whatever the busy
        // timeout. No savepoint (it would copy every page the write touches): the write is
        // alone in the group, and a failure rolls the group back.
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        match f(&self.conn) {
            Ok(v) => {
                let now = Instant::now();
                self.opened = Some(now);
                self.open.store(true, Ordering::Release);
                lock(&shared.due).opened = Some(now);
                shared.wake.notify_all();
                Ok(v)
            }
            Err(e) => {
                if let Err(undo) = self.conn.execute_batch("ROLLBACK") {
                    tracing::error!(error = %undo, "could not undo a failed write");
                }
                Err(e)
            }
        }
    }

    /// Commit the open group. A group that cannot be committed is rolled back (its writes
    /// are lost, and said so in the log), so the next write starts clean.
    fn commit(&mut self) -> Result<()> {
        let Some(opened) = self.opened.take() else {
            return Ok(());
        };
        self.open.store(false, Ordering::Release);
        if self.conn.is_autocommit() {
            return Ok(());
        }
        let done = self
            .conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]));
        if let Err(e) = done {
            tracing::error!(error = %e, open_ms = opened.elapsed().as_millis() as u64,
                "could not commit a group of writes; they are lost");
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            return Err(e.into());
        }
        if let Some(c) = &self.checkpointer {
            c.committed();
        }
        Ok(())
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
                    let _ = s.commit();
                }
                // Committed meanwhile, and another group opened since: due in its turn.
                Some(t) => lock(&shared.due).opened = Some(t),
                None => {}
            }
        }
        due = lock(&shared.due);
    }
}
