//! Task folders made ahead of time. Creating a file or folder allocates an inode: cheap on
//! tmpfs, but 0.1–0.5 ms on ext4 without a journal right after many deletions, and a
//! round trip on NFS. A task's folder, `artifacts/`, `params.json` and log files are made
//! here, on a thread of their own, while the tasks before it run; the task then finds
//! them there and only writes into them. Everything here is idempotent with what
//! `item::run_phases` does itself, so a task the preparer has not reached yet, or a
//! guess that was wrong, costs only time.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

// An occurrence always writes its params file before its first phase; an empty one
// means the occurrence never started.
use super::taskfiles::PARAMS_FILE;

enum Msg {
    Jobs(Vec<Job>),
    /// Stop now; jobs sent after this are dropped (a task still holding a sender must not
    /// keep the run's end waiting).
    Finish,
}

/// One occurrence folder to make, with the empty files in it.
struct Job {
    dir: PathBuf,
    files: Vec<String>,
}

/// Folders handed to the thread at once.
pub(crate) const SEND_BATCH: usize = 4;

pub(crate) struct Preparer {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<Vec<PathBuf>>>,
    /// Plan items asked for.
    asked: HashSet<usize>,
    /// Folders in use by occurrences that started (those need no look at the end).
    used: HashSet<PathBuf>,
    /// Asked for but not yet handed to the thread.
    pending: Vec<Job>,
}

impl Preparer {
    pub fn start() -> Option<Preparer> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let thread = std::thread::Builder::new()
            .name("testbay-prepare".into())
            .spawn(move || {
                let mut made = Vec::new();
                while let Ok(Msg::Jobs(jobs)) = rx.recv() {
                    for job in jobs {
                        if prepare(&job).is_ok() {
                            made.push(job.dir);
                        }
                    }
                }
                made
            })
            .map_err(|e| tracing::warn!(error = %e, "no task folder preparer; folders are made as tasks start"))
            .ok()?;
        Some(Preparer {
            tx: Some(tx),
            thread: Some(thread),
            asked: HashSet::new(),
            used: HashSet::new(),
            pending: Vec::new(),
        })
    }

    /// Make the folder of plan item `item`, which `job` names (the folder, with
    /// `artifacts/`, `params.json` and the log files), unless asked before.
    pub fn want(&mut self, item: usize, job: impl FnOnce() -> (PathBuf, Vec<String>)) {
        if !self.asked.insert(item) {
            return;
        }
        let (dir, files) = job();
        self.pending.push(Job { dir, files });
    }

    /// An occurrence started in `dir`: if that folder was made here, it is in use.
    pub fn started(&mut self, dir: PathBuf) {
        self.used.insert(dir);
    }

    /// Hand what was asked for since the last call to the thread, from a task of its own,
    /// once there are [`SEND_BATCH`] folders to make: waking the thread costs more than
    /// the rest of a task's bookkeeping on a busy machine, so it is woken once per batch
    /// and not once per task. (Fewer than a batch are left to the tasks themselves.)
    pub fn send_pending(&mut self) {
        if self.pending.len() < SEND_BATCH {
            return;
        }
        if let Some(tx) = self.tx.clone() {
            let jobs = std::mem::take(&mut self.pending);
            tokio::spawn(async move {
                let _ = tx.send(Msg::Jobs(jobs));
            });
        }
    }

    /// Wait for the thread and remove what was prepared for occurrences that never started
    /// or started elsewhere (only empty files and empty folders are removed).
    pub fn finish(mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::Finish);
        }
        let Some(made) = self.thread.take().and_then(|t| t.join().ok()) else {
            return;
        };
        for dir in made.iter().filter(|d| !self.used.contains(*d)) {
            remove_if_unused(dir);
        }
    }
}

/// Remove an occurrence folder made ahead for a task that never started (its params file
/// is empty): only empty files and empty folders go, then the lane's folder if it is left
/// empty.
fn remove_if_unused(dir: &Path) {
    let unused = std::fs::metadata(dir.join(PARAMS_FILE)).is_ok_and(|m| m.len() == 0);
    if !unused {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) && e.metadata().is_ok_and(|m| m.len() == 0)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir.join("artifacts"));
    let _ = std::fs::remove_dir(dir);
    if let Some(lane) = dir.parent() {
        let _ = std::fs::remove_dir(lane);
    }
}

/// After recovery: remove the folders prepared for tasks that never started in `run_dir`,
/// a run whose console died before it could tidy up.
pub fn remove_unused_folders(run_dir: &Path) {
    let Ok(lanes) = std::fs::read_dir(run_dir) else {
        return;
    };
    for lane in lanes.flatten() {
        if lane.file_name() == "pack" || !lane.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Ok(occurrences) = std::fs::read_dir(lane.path()) {
            for occ in occurrences.flatten() {
                if occ.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_if_unused(&occ.path());
                }
            }
        }
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::Finish);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Create without truncating: a task that got there first keeps what it wrote.
fn prepare(job: &Job) -> std::io::Result<()> {
    std::fs::create_dir_all(job.dir.join("artifacts"))?;
    for f in std::iter::once(PARAMS_FILE).chain(job.files.iter().map(String::as_str)) {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(job.dir.join(f))?;
    }
    Ok(())
}
