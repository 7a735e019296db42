//! Reading a task log from an offset, for live tails and the results view.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::error::store_error;
use super::local::blocking;
use super::{ApiError, LocalConsole, Response};
use crate::outcome::Phase;
use crate::store::StoredTaskState;

pub const DEFAULT_MAX: u32 = 64 * 1024;
const HARD_MAX: u32 = 1024 * 1024;

/// A piece of a log file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct LogChunk {
    /// Where `text` starts, in bytes.
    #[ts(type = "number")]
    pub offset: u64,
    /// Where the next read starts.
    #[ts(type = "number")]
    pub next_offset: u64,
    /// Size of the file now.
    #[ts(type = "number")]
    pub size: u64,
    /// Whole lines (the last one may be cut only if a single line exceeds the window);
    /// invalid UTF-8 is replaced.
    pub text: String,
}

/// Read up to `max` bytes of `path` from `offset`, ending at the last line break in the
/// window unless the window holds no line break at all. While the log is still written
/// (`complete` false) an unfinished last line waits for the next read. A missing file (the
/// phase has not started) reads as empty.
pub fn read_chunk(
    path: &Path,
    offset: u64,
    max: Option<u32>,
    complete: bool,
) -> Result<LogChunk, ApiError> {
    let max = max.unwrap_or(DEFAULT_MAX).clamp(1, HARD_MAX) as usize;
    // A task may have put something else than a file where its log was.
    let mut f = match crate::userfile::open_regular(path) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => {
            return Ok(LogChunk {
                offset,
                next_offset: offset,
                size: 0,
                text: String::new(),
            })
        }
        Err(e @ crate::userfile::OpenError::NotAFile(_)) => {
            return Err(ApiError::not_found(format!("log {} {e}", path.display())))
        }
        Err(crate::userfile::OpenError::Io(e)) => {
            return Err(ApiError::internal(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let io = |e: std::io::Error| ApiError::internal(format!("cannot read {}: {e}", path.display()));
    let size = f.metadata().map_err(io)?.len();
    let offset = offset.min(size);
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = Vec::with_capacity(max.min((size - offset) as usize));
    f.take(max as u64).read_to_end(&mut buf).map_err(io)?;
    if buf.len() == max {
        if let Some(end) = buf.iter().rposition(|&b| b == b'\n') {
            buf.truncate(end + 1);
        }
    } else if !complete {
        let end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |e| e + 1);
        buf.truncate(end);
    }
    Ok(LogChunk {
        offset,
        next_offset: offset + buf.len() as u64,
        size,
        text: String::from_utf8_lossy(&buf).into_owned(),
    })
}

impl LocalConsole {
    /// A window of a task phase's log (see [`read_chunk`]); only logs below `runs/`.
    pub(super) async fn read_log(
        &self,
        run_id: String,
        task_id: i64,
        phase: Phase,
        offset: u64,
        max_bytes: Option<u32>,
    ) -> Result<Response, ApiError> {
        let store = self.store.clone();
        let runs_dir = self.paths.runs_dir();
        blocking(move || {
            let task = store
                .run_tasks(&run_id)
                .map_err(store_error)?
                .into_iter()
                .find(|t| t.id == task_id)
                .ok_or_else(|| {
                    ApiError::not_found(format!("run {run_id} has no task {task_id}"))
                })?;
            let log = match phase {
                Phase::Setup => task.paths.setup_log,
                Phase::Main => task.paths.main_log,
                Phase::Teardown => task.paths.teardown_log,
            };
            let Some(log) = log else {
                return Err(ApiError::not_found(format!(
                    "task {} has no {} log",
                    task.task,
                    phase.as_str()
                )));
            };
            // Logs live below runs/; a stored path pointing elsewhere is never read.
            let log = Path::new(&log);
            if !log.starts_with(&runs_dir)
                || log
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
            {
                return Err(ApiError::internal(format!(
                    "stored log path {} is outside the runs folder",
                    log.display()
                )));
            }
            let complete = task.state == StoredTaskState::Done;
            read_chunk(log, offset, max_bytes, complete).map(Response::ReadLog)
        })
        .await
    }
}
