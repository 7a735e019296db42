//! The lab's pack library (StormTest's script repository): packs pushed into the store by
//! content hash, with name, version, owner, private or public, and when pushed. It lives
//! in the database, so every server of a lab sees the same library; a console keeps each
//! pushed version unpacked in `<data_dir>/library/<content hash>/` (written once, never
//! changed: a run snapshots it like any pack folder, so a later push never disturbs it).
//!
//! Who sees what: public versions are seen by everyone, a private one only by its owner
//! and admins ([`Viewer`]). A name and version are pushed once: the same content again
//! changes nothing, other content is refused (give it a new version). Older versions stay
//! listed and launchable: a reference ([`LabLibrary::resolve`]) is a content hash, a
//! `NAME@VERSION`, or a `NAME`, which picks the newest (last pushed) version the viewer
//! sees.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{archive, LoadedPack, PackErrors};
use crate::bounds::MAX_PACK_BYTES;
use crate::clock::EpochMs;
use crate::diag::Diagnostic;
use crate::store::{PackStore, PutPack, StoreError, StoredPack};

/// Who looks at the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The caller's name (`local` for a single seat's operator).
    pub name: String,
    /// Admins see every private pack.
    pub admin: bool,
}

impl Viewer {
    /// Whether this viewer sees `pack`.
    pub fn sees(&self, pack: &StoredPack) -> bool {
        !pack.private || self.admin || pack.owner == self.name
    }
}

/// Why the library refused.
#[derive(Debug, thiserror::Error)]
pub enum LabLibraryError {
    /// The pushed pack has problems; each diagnostic names its file relative to the pack.
    #[error("the pack has {} problem(s); first: {}", .0.len(), .0.first().map(|d| d.to_string()).unwrap_or_default())]
    Broken(Vec<Diagnostic>),
    /// Not a readable pack archive, or over its bounds.
    #[error("{0}")]
    BadArchive(String),
    /// This name and version are in the library with other content.
    #[error("pack {name} {version} is already in the library with other content (pushed by {owner}); give it a new version")]
    VersionTaken {
        name: String,
        version: String,
        owner: String,
    },
    /// No pack version the viewer sees answers to this reference.
    #[error("{0}")]
    NotFound(String),
    /// Only the owner (or an admin) may publish.
    #[error("{0}")]
    NotOwner(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Unpacking into the data directory failed.
    #[error("{0}")]
    Io(String),
}

/// A pushed version as the push left it.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub stored: StoredPack,
    /// It was already there with this content: nothing changed.
    pub unchanged: bool,
}

/// The lab's pack library of one console.
pub struct LabLibrary {
    store: Mutex<Box<dyn PackStore>>,
    /// `<data_dir>/library`: one unpacked folder per content hash.
    dir: PathBuf,
    /// Versions loaded so far, by content hash (a hash's files never change).
    loaded: Mutex<HashMap<String, LoadedPack>>,
}

impl LabLibrary {
    pub fn new(store: Box<dyn PackStore>, data_dir: &Path) -> Self {
        Self {
            store: Mutex::new(store),
            dir: data_dir.join("library"),
            loaded: Mutex::new(HashMap::new()),
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Box<dyn PackStore>> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Check and store a pushed pack's `archive` (`pack::archive`) as `owner`'s.
    pub fn push(
        &self,
        archive: &[u8],
        owner: &str,
        private: bool,
        now: EpochMs,
    ) -> Result<Pushed, LabLibraryError> {
        if archive.len() as u64 > MAX_PACK_BYTES {
            return Err(LabLibraryError::BadArchive(format!(
                "the pack archive is over {} MiB (bounds::MAX_PACK_BYTES)",
                MAX_PACK_BYTES / 1024 / 1024
            )));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io(e))?;
        let incoming = Incoming::new(&self.dir);
        let unpacked = incoming.0.join("pack");
        let hash = archive::unpack(archive, &unpacked)
            .map_err(|e| LabLibraryError::BadArchive(format!("pack archive: {e}")))?;
        let pack = super::load_with_hash(&unpacked, Some(hash.clone()))
            .map_err(|e| LabLibraryError::Broken(relative(e, &unpacked)))?;
        let stored = StoredPack {
            name: pack.def.name.clone(),
            version: pack.def.version.clone(),
            content_hash: hash.clone(),
            owner: owner.to_string(),
            private,
            pushed_ms: now,
            archive_bytes: archive.len() as i64,
        };
        let put = self.store().put_pack(&stored, archive)?;
        let (stored, unchanged) = match put {
            PutPack::Added(s) => (s, false),
            PutPack::Unchanged(s) => (s, true),
            PutPack::Conflict(s) => {
                return Err(LabLibraryError::VersionTaken {
                    name: s.name,
                    version: s.version,
                    owner: s.owner,
                })
            }
        };
        // Keep what was unpacked as this hash's folder (another push may have made it).
        let home = self.dir.join(&hash);
        if !home.is_dir() && std::fs::rename(&unpacked, &home).is_err() && !home.is_dir() {
            tracing::warn!(
                hash,
                "cannot keep the pushed pack's folder; unpacked again on use"
            );
        }
        Ok(Pushed { stored, unchanged })
    }

    /// Every version the viewer sees, by name, then newest push first.
    pub fn list(&self, viewer: &Viewer) -> Result<Vec<StoredPack>, LabLibraryError> {
        let mut all = self.store().packs()?;
        all.retain(|p| viewer.sees(p));
        Ok(all)
    }

    /// The version `reference` names among those the viewer sees: a content hash, a
    /// `NAME@VERSION`, or a `NAME` (its newest push); `None` when none answers.
    pub fn resolve(
        &self,
        reference: &str,
        viewer: &Viewer,
    ) -> Result<Option<StoredPack>, LabLibraryError> {
        let seen = self.list(viewer)?;
        Ok(pick(&seen, reference).cloned())
    }

    /// Make the version `reference` names public: its owner or an admin may.
    pub fn publish(&self, reference: &str, viewer: &Viewer) -> Result<StoredPack, LabLibraryError> {
        let seen = self.list(viewer)?;
        // A bare name: the newest version the viewer may publish, private or not.
        let pack = pick(&seen, reference).cloned().ok_or_else(|| {
            LabLibraryError::NotFound(format!("no pack {reference} in the lab's library"))
        })?;
        if !viewer.admin && pack.owner != viewer.name {
            return Err(LabLibraryError::NotOwner(format!(
                "pack {} {} is {}'s: only its owner or an admin publishes it",
                pack.name, pack.version, pack.owner
            )));
        }
        if pack.private {
            self.store().publish_pack(&pack.name, &pack.version)?;
        }
        Ok(StoredPack {
            private: false,
            ..pack
        })
    }

    /// A stored version loaded from its folder, unpacked from the store first when this
    /// console has not yet.
    pub fn load(&self, pack: &StoredPack) -> Result<LoadedPack, LabLibraryError> {
        if let Some(p) = self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pack.content_hash)
        {
            return Ok(p.clone());
        }
        let home = self.dir.join(&pack.content_hash);
        if !home.join("pack.yaml").is_file() {
            let archive = self
                .store()
                .pack_archive(&pack.content_hash)?
                .ok_or_else(|| {
                    LabLibraryError::NotFound(format!(
                        "the archive of pack {} {} is not in the store",
                        pack.name, pack.version
                    ))
                })?;
            std::fs::create_dir_all(&self.dir).map_err(|e| self.io(e))?;
            let incoming = Incoming::new(&self.dir);
            let unpacked = incoming.0.join("pack");
            let hash = archive::unpack(&archive, &unpacked)
                .map_err(|e| LabLibraryError::BadArchive(format!("stored pack archive: {e}")))?;
            if hash != pack.content_hash {
                return Err(LabLibraryError::BadArchive(format!(
                    "the stored archive of pack {} {} does not hold its content (hash {hash})",
                    pack.name, pack.version
                )));
            }
            if std::fs::rename(&unpacked, &home).is_err() && !home.is_dir() {
                return Err(LabLibraryError::Io(format!(
                    "cannot unpack pack {} {} into {}",
                    pack.name,
                    pack.version,
                    home.display()
                )));
            }
        }
        let loaded = super::load_with_hash(&home, Some(pack.content_hash.clone()))
            .map_err(|e| LabLibraryError::Broken(relative(e, &home)))?;
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pack.content_hash.clone(), loaded.clone());
        Ok(loaded)
    }

    fn io(&self, e: std::io::Error) -> LabLibraryError {
        LabLibraryError::Io(format!("pack library folder {}: {e}", self.dir.display()))
    }
}

/// A folder a pack is unpacked into before it is kept under its hash; removed with
/// whatever is left in it.
struct Incoming(PathBuf);

impl Incoming {
    fn new(dir: &Path) -> Self {
        Incoming(dir.join(format!(".incoming-{}", uuid::Uuid::new_v4().simple())))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The version `reference` names among `packs` (by name, newest push first).
fn pick<'a>(packs: &'a [StoredPack], reference: &str) -> Option<&'a StoredPack> {
    if let Some(p) = packs.iter().find(|p| p.content_hash == reference) {
        return Some(p);
    }
    match reference.rsplit_once('@') {
        Some((name, version)) => packs
            .iter()
            .find(|p| p.name == name && p.version == version),
        None => packs.iter().find(|p| p.name == reference),
    }
}

/// The diagnostics of a pack unpacked in `root`, their files named relative to it.
fn relative(e: PackErrors, root: &Path) -> Vec<Diagnostic> {
    let canon = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    e.diagnostics
        .into_iter()
        .map(|mut d| {
            if let Ok(rel) = d
                .file
                .strip_prefix(root)
                .or_else(|_| d.file.strip_prefix(&canon))
            {
                d.file = if rel.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    rel.to_path_buf()
                };
            }
            d
        })
        .collect()
}
