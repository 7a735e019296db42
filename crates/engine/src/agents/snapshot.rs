//! A pack snapshot as it travels to an agent (`agent_snapshot`): its files (those its
//! content hash covers), read within the pack's size bound, and written back on the agent
//! side, where the content hash is checked again.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use base64::Engine as _;

use super::wire::{Snapshot, SnapshotFile};
use crate::pack;
use crate::run::runner::plain_relative;

/// The files of the snapshot folder `dir` (its content hash `hash`).
pub fn read(dir: &Path, hash: &str) -> std::io::Result<Snapshot> {
    let mut total = 0;
    let mut files = Vec::new();
    for rel in pack::hash::pack_files(dir)? {
        let (f, len) = pack::hash::open_file(dir, &rel, &mut total)?;
        let executable = f.metadata()?.permissions().mode() & 0o111 != 0;
        let mut data = Vec::with_capacity(len as usize);
        f.take(len).read_to_end(&mut data)?;
        files.push(SnapshotFile {
            path: rel.display().to_string(),
            executable,
            data: base64::engine::general_purpose::STANDARD.encode(&data),
        });
    }
    Ok(Snapshot {
        hash: hash.to_string(),
        files,
    })
}

/// Write `snapshot` into the new folder `to` and check its content hash.
pub fn write(snapshot: &Snapshot, to: &Path) -> std::io::Result<()> {
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    std::fs::create_dir_all(to)?;
    for f in &snapshot.files {
        let rel = plain_relative(&f.path)
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| {
                invalid(format!(
                    "snapshot file `{}` is not a plain relative path",
                    f.path
                ))
            })?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(&f.data)
            .map_err(|e| invalid(format!("snapshot file {}: {e}", f.path)))?;
        let dst = to.join(rel);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&dst, data)?;
        let mode = if f.executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode))?;
    }
    let got = pack::hash::content_hash(to)?;
    if got != snapshot.hash {
        return Err(invalid(format!(
            "the snapshot's files hash to {got}, not {}",
            snapshot.hash
        )));
    }
    Ok(())
}
