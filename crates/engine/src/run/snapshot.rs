//! A run's own copy of its pack (`runs/<id>/pack/`): a run executes from it, so editing
//! the pack never disturbs a running run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::pack;

/// Copy the pack's files (those its content hash covers) into `to`; the content hash of
/// what was copied.
pub(super) fn snapshot_pack(src: &Path, to: &Path) -> std::io::Result<String> {
    let root = src.canonicalize()?;
    std::fs::create_dir_all(to)?;
    let mut made: HashSet<PathBuf> = HashSet::new();
    let mut hash = pack::hash::ContentHash::default();
    let mut total = 0;
    for rel in pack::hash::pack_files(&root)? {
        let dst = to.join(&rel);
        if let Some(parent) = dst.parent() {
            if !made.contains(parent) {
                std::fs::create_dir_all(parent)?;
                made.insert(parent.to_path_buf());
            }
        }
        // Within the pack's size bound, copied and hashed piece by piece.
        let (from, len) = pack::hash::open_file(&root, &rel, &mut total)?;
        let permissions = from.metadata()?.permissions();
        let mut copy = std::fs::File::create(&dst)?;
        hash.add_reader(&rel, len, from, |piece| {
            std::io::Write::write_all(&mut copy, piece)
        })?;
        // Programs stay programs.
        copy.set_permissions(permissions)?;
    }
    Ok(hash.finish())
}
