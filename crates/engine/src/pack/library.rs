//! The pack library: every pack found under the configured roots, kept current by a file
//! watcher. One broken pack never stops the others; it is listed with its errors.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::broadcast;

use super::discover::{discover, is_duplicate, mark_duplicate_names, pack_dirs, PackEntry};
use super::view::{PackDetail, PackSummary};
use super::{hash, LoadedPack};

/// What changed in the library: the pack folders reloaded, added or gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryChange {
    pub dirs: Vec<PathBuf>,
}

/// Quiet time after the last file event before packs are reloaded.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// The packs of a set of roots, reloaded when their files change (after [`Library::watch`]).
pub struct Library {
    roots: Vec<PathBuf>,
    entries: RwLock<Vec<PackEntry>>,
    changes: broadcast::Sender<LibraryChange>,
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
}

impl Library {
    /// Discover the packs of `roots` now. Nothing is watched until [`Library::watch`].
    pub fn open(roots: Vec<PathBuf>) -> Arc<Library> {
        let entries = discover(&roots);
        let (changes, _) = broadcast::channel(64);
        Arc::new(Library {
            roots,
            entries: RwLock::new(entries),
            changes,
            watcher: Mutex::new(None),
        })
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// A notification after every reload (also for [`Library::reload`]).
    pub fn subscribe(&self) -> broadcast::Receiver<LibraryChange> {
        self.changes.subscribe()
    }

    /// Every pack entry, broken ones included, in discovery order.
    pub fn entries(&self) -> Vec<PackEntry> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The first pack that loaded with this `name`.
    pub fn get(&self, name: &str) -> Option<LoadedPack> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find_map(|e| {
                e.result
                    .as_ref()
                    .ok()
                    .filter(|p| p.def.name == name)
                    .cloned()
            })
    }

    /// The entry of a pack folder (as found or canonical).
    pub fn entry_for_dir(&self, dir: &Path) -> Option<PackEntry> {
        let canon = dir.canonicalize().ok();
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|e| e.dir == dir || canon.is_some() && e.dir.canonicalize().ok() == canon)
            .cloned()
    }

    pub fn summaries(&self) -> Vec<PackSummary> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(PackSummary::of)
            .collect()
    }

    /// Detail of the first pack named `name` (loaded or broken).
    pub fn detail(&self, name: &str) -> Option<PackDetail> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .find(|e| e.result.is_ok() && e.name() == name)
            .or_else(|| entries.iter().find(|e| e.name() == name))
            .map(PackDetail::of)
    }

    /// Discover every root again and notify subscribers.
    pub fn reload(&self) {
        let fresh = discover(&self.roots);
        let dirs = fresh.iter().map(|e| e.dir.clone()).collect();
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        let _ = self.changes.send(LibraryChange { dirs });
    }

    /// Reload only the packs touched by `paths` (and pick up added or removed pack folders).
    fn reload_paths(&self, paths: &BTreeSet<PathBuf>) {
        let old = self.entries();
        let mut fresh = Vec::new();
        let mut changed = Vec::new();
        for root in &self.roots {
            let dirs = match pack_dirs(root) {
                Ok(d) => d,
                Err(e) => {
                    changed.push(root.clone());
                    fresh.push(PackEntry {
                        dir: root.clone(),
                        result: Err(e),
                    });
                    continue;
                }
            };
            for dir in dirs {
                let previous = old.iter().find(|e| e.dir == dir);
                // A duplicate is checked again: the pack it clashed with may be gone.
                let touched =
                    paths.iter().any(|p| touches(p, &dir)) || previous.is_some_and(is_duplicate);
                match previous {
                    Some(prev) if !touched => fresh.push(prev.clone()),
                    _ => {
                        changed.push(dir.clone());
                        fresh.push(PackEntry::load(dir));
                    }
                }
            }
        }
        for e in &old {
            if !fresh.iter().any(|f| f.dir == e.dir) {
                changed.push(e.dir.clone());
            }
        }
        mark_duplicate_names(&mut fresh);
        if changed.is_empty() {
            return;
        }
        tracing::info!(changed = changed.len(), "pack library reloaded");
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        let _ = self.changes.send(LibraryChange { dirs: changed });
    }

    /// Watch the roots; changed packs are reloaded [`DEBOUNCE`] after the last event and
    /// subscribers notified. The watch ends when the library is dropped.
    pub fn watch(self: &Arc<Self>) -> notify::Result<()> {
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res {
                    if matches!(ev.kind, notify::EventKind::Access(_)) {
                        return;
                    }
                    for p in ev.paths {
                        let _ = tx.send(p);
                    }
                }
            })?;
        for root in &self.roots {
            // A root that does not exist yet: its parent is watched (not recursively) so
            // its creation is noticed.
            if root.exists() {
                watcher.watch(root, RecursiveMode::Recursive)?;
            } else if let Some(parent) = root.parent().filter(|p| p.exists()) {
                watcher.watch(parent, RecursiveMode::NonRecursive)?;
            }
        }
        *self.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(watcher);
        let weak: Weak<Library> = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("pack-watch".into())
            .spawn(move || debounce_loop(rx, weak))
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok(())
    }
}

/// Whether a changed path belongs to the pack folder `dir` (ignoring caches).
fn touches(path: &Path, dir: &Path) -> bool {
    let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let rel = path
        .strip_prefix(dir)
        .or_else(|_| path.strip_prefix(&canon))
        .ok();
    match rel {
        Some(rel) => !hash::ignored(rel),
        None => false,
    }
}

fn debounce_loop(rx: mpsc::Receiver<PathBuf>, lib: Weak<Library>) {
    while let Ok(first) = rx.recv() {
        let mut paths = BTreeSet::from([first]);
        // Gather until the folder is quiet.
        loop {
            match rx.recv_timeout(DEBOUNCE) {
                Ok(p) => {
                    paths.insert(p);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        let Some(lib) = lib.upgrade() else { return };
        let relevant: BTreeSet<PathBuf> = paths
            .into_iter()
            .filter(|p| !p.components().any(|c| c.as_os_str() == "__pycache__"))
            .collect();
        if !relevant.is_empty() {
            lib.reload_paths(&relevant);
        }
    }
}
