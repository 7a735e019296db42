//! Opening files that packs, tasks and operators control (pack and lab files, result
//! files, logs, a run's files) without waiting on them: anything that is not a regular
//! file is refused before it is read. A named pipe (FIFO) opened for reading waits for a
//! writer forever, and a device (`/dev/zero`, a terminal behind `/dev/stdin`) never ends;
//! either would wedge the thread reading it. Callers bound how much they read.

use std::fs::{File, FileType};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a user-controlled file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Something other than a regular file: "is a named pipe, not a file".
    #[error("is {0}, not a file")]
    NotAFile(&'static str),
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
}

impl OpenError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, OpenError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Open `path` (symlinks followed) for reading, refusing anything but a regular file.
/// The type is looked at before opening, so a device is not even opened (opening some
/// has effects), and again on the open file, so a file swapped for a pipe in between
/// is refused too: the open itself is non-blocking and returns at once for a pipe.
pub fn open_regular(path: &Path) -> Result<File, OpenError> {
    check(std::fs::metadata(path)?.file_type())?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    check(f.metadata()?.file_type())?;
    // Regular files ignore O_NONBLOCK; reads behave as usual.
    Ok(f)
}

fn check(t: FileType) -> Result<(), OpenError> {
    if t.is_file() {
        return Ok(());
    }
    Err(OpenError::NotAFile(kind(t)))
}

/// What a non-regular file is, in words ("a named pipe").
pub fn kind(t: FileType) -> &'static str {
    if t.is_fifo() {
        "a named pipe"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_dir() {
        "a folder"
    } else if t.is_file() {
        "a file"
    } else {
        "not a regular file"
    }
}
