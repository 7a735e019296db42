//! The lab's pack library as the store keeps it: each pushed pack version (name,
//! version, content hash, owner, private or public, when pushed) and each content's
//! files in one archive row per hash (`pack::archive`). In the database, so every
//! server of a lab sees the same library.

use super::Result;
use crate::clock::EpochMs;

/// One pushed pack version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPack {
    pub name: String,
    pub version: String,
    /// The pack's content hash (`pack::hash`), which names its archive.
    pub content_hash: String,
    /// Who pushed it: a user's name, `local` for a single seat's operator.
    pub owner: String,
    /// Seen only by its owner (and admins) until published.
    pub private: bool,
    pub pushed_ms: EpochMs,
    /// Size of its archive, bytes.
    pub archive_bytes: i64,
}

/// What [`PackStore::put_pack`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutPack {
    /// Stored as a new version.
    Added(StoredPack),
    /// This name and version were already stored with this content: nothing changed.
    Unchanged(StoredPack),
    /// This name and version are stored with other content (the stored one given).
    Conflict(StoredPack),
}

/// The library's tables on a handle of their own (one connection).
pub trait PackStore: Send {
    /// Store `pack` and its `archive` (kept once per content hash), all or nothing; a
    /// name and version are stored once (see [`PutPack`]).
    fn put_pack(&self, pack: &StoredPack, archive: &[u8]) -> Result<PutPack>;
    /// Every stored pack version, by name, then newest push first.
    fn packs(&self) -> Result<Vec<StoredPack>>;
    /// The archive of a content hash, if stored.
    fn pack_archive(&self, content_hash: &str) -> Result<Option<Vec<u8>>>;
    /// Make the version public; `false` when there is no such version.
    fn publish_pack(&self, name: &str, version: &str) -> Result<bool>;
}
