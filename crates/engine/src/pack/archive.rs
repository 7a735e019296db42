//! A pack's files as one archive: what `testbay packs push` sends and the lab's pack
//! library ([`super::lab_library`]) keeps, one row per content hash.
//!
//! Format (then deflated): the magic line `testbay-pack 1\n`, then per file, in
//! [`hash::pack_files`] order: the relative path's length (u32 LE) and its UTF-8 bytes,
//! the file's mode bits (u32 LE: programs stay programs), its length (u64 LE) and its
//! bytes. Packing reads the files as the content hash does (within
//! [`MAX_PACK_BYTES`], no named pipes or devices) and hashes them on the way, so the
//! archive and the hash name the same bytes. Unpacking refuses paths that leave the
//! folder, files the hash would ignore, and more than [`MAX_PACK_BYTES`] in all.

use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;

use super::hash::{self, ContentHash};
use crate::bounds::MAX_PACK_BYTES;

const MAGIC: &[u8] = b"testbay-pack 1\n";
/// The longest relative path a pack file may have, bytes.
const MAX_PATH_BYTES: u32 = 4096;

/// The pack folder `root`'s files as an archive, with their content hash (the one
/// [`hash::content_hash`] gives).
pub fn pack_dir(root: &Path) -> io::Result<(Vec<u8>, String)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = DeflateEncoder::new(Vec::new(), Compression::default());
    out.write_all(MAGIC)?;
    let mut hash = ContentHash::default();
    let mut total = 0;
    for rel in hash::pack_files(root)? {
        let (f, len) = hash::open_file(root, &rel, &mut total)?;
        let mode = f.metadata()?.permissions().mode() & 0o777;
        let path = rel.to_str().ok_or_else(|| {
            io::Error::other(format!(
                "{}: a pack file's name must be UTF-8",
                rel.display()
            ))
        })?;
        if path.len() > MAX_PATH_BYTES as usize {
            return Err(io::Error::other(format!(
                "{path}: path longer than {MAX_PATH_BYTES} bytes"
            )));
        }
        out.write_all(&(path.len() as u32).to_le_bytes())?;
        out.write_all(path.as_bytes())?;
        out.write_all(&mode.to_le_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        hash.add_reader(&rel, len, f, |piece| out.write_all(piece))?;
    }
    Ok((out.finish()?, hash.finish()))
}

/// Write the archive's files into the folder `to` (created; it should be empty); the
/// content hash of what was written.
pub fn unpack(archive: &[u8], to: &Path) -> io::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let mut r = DeflateDecoder::new(archive);
    let mut magic = [0u8; MAGIC.len()];
    r.read_exact(&mut magic)
        .map_err(|_| bad("not a pack archive".into()))?;
    if magic != MAGIC {
        return Err(bad("not a pack archive (unknown format)".into()));
    }
    std::fs::create_dir_all(to)?;
    let mut hash = ContentHash::default();
    let mut total: u64 = 0;
    let mut last: Option<PathBuf> = None;
    loop {
        let mut n = [0u8; 4];
        match r.read_exact(&mut n) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(bad(format!("damaged pack archive: {e}"))),
        }
        let n = u32::from_le_bytes(n);
        if n == 0 || n > MAX_PATH_BYTES {
            return Err(bad(format!("damaged pack archive: a path of {n} bytes")));
        }
        let mut path = vec![0u8; n as usize];
        r.read_exact(&mut path)?;
        let path = String::from_utf8(path).map_err(|_| bad("a path is not UTF-8".into()))?;
        let rel = PathBuf::from(&path);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) || hash::ignored(&rel) {
            return Err(bad(format!("{path}: not a path inside a pack")));
        }
        // In order and once each, as packing writes them (the hash depends on it).
        if last.as_ref().is_some_and(|l| *l >= rel) {
            return Err(bad(format!("{path}: out of order or given twice")));
        }
        let mut mode = [0u8; 4];
        r.read_exact(&mut mode)?;
        let mut len = [0u8; 8];
        r.read_exact(&mut len)?;
        let len = u64::from_le_bytes(len);
        total = total.saturating_add(len);
        if total > MAX_PACK_BYTES {
            return Err(bad(format!(
                "the pack's files hold more than {} MiB (bounds::MAX_PACK_BYTES) by {path}",
                MAX_PACK_BYTES / 1024 / 1024
            )));
        }
        let dst = to.join(&rel);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::File::create(&dst)?;
        hash.add_reader(&rel, len, &mut r, |piece| file.write_all(piece))
            .map_err(|e| bad(format!("damaged pack archive: {e}")))?;
        let mode = u32::from_le_bytes(mode) & 0o755 | 0o600;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        last = Some(rel);
    }
    Ok(hash.finish())
}

/// An archive as `push_pack` carries it in JSON (base64).
pub fn to_text(archive: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(archive)
}

/// The archive a `push_pack` request carries.
pub fn from_text(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text.as_bytes())
}
