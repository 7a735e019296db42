//! Files below `<data_dir>/runs`: the one confinement rule (used by `read_file` and by
//! the HTTP server's `/files/runs/...`) and reading a whole file for the API.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::{ApiError, ErrorCode};

/// Largest file `read_file` answers with; bigger ones are refused with `too_large`.
pub const MAX_READ_FILE: u64 = 16 * 1024 * 1024;

/// A whole file of a run, for the client to show or save.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct FileContent {
    /// The file's name (last path component), for saving it.
    pub filename: String,
    #[ts(type = "number")]
    pub size: u64,
    /// Guessed from the extension; `application/octet-stream` when unknown.
    pub mime: String,
    /// The bytes, standard base64 with padding.
    pub content_base64: String,
}

/// Resolve `rel` below `root`, refusing absolute paths, `..`, and anything whose real
/// location (after following symlinks) is not inside `root`. Returns the real path of an
/// existing regular file. Refusals other than a malformed path read as "not found", so a
/// client learns nothing about what lies outside `root`.
pub fn confine(root: &Path, rel: &str) -> Result<PathBuf, ApiError> {
    let rel_path = Path::new(rel);
    if rel.is_empty()
        || rel_path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(ApiError::invalid(format!(
            "not a plain relative path: {rel:?}"
        )));
    }
    let not_found = || ApiError::not_found(format!("no such file: {rel}"));
    let real_root = root.canonicalize().map_err(|_| not_found())?;
    let real = real_root
        .join(rel_path)
        .canonicalize()
        .map_err(|_| not_found())?;
    if !real.starts_with(&real_root) {
        tracing::warn!(path = rel, root = %root.display(), "file refused: leads outside its folder");
        return Err(not_found());
    }
    if !real.is_file() {
        return Err(not_found());
    }
    Ok(real)
}

/// Content type by extension and whether it is safe to show inline (text and pictures);
/// everything else is `application/octet-stream`, to be saved, never rendered.
pub fn guess_type(path: &Path) -> (&'static str, bool) {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "log" | "txt" | "json" | "yaml" | "yml" | "xml" | "csv" => {
            ("text/plain; charset=utf-8", true)
        }
        "png" => ("image/png", true),
        "jpg" | "jpeg" => ("image/jpeg", true),
        "gif" => ("image/gif", true),
        "webp" => ("image/webp", true),
        _ => ("application/octet-stream", false),
    }
}

/// Read `rel` (relative to `<runs_dir>/<run_id>/`) whole, at most [`MAX_READ_FILE`] bytes.
pub fn read_run_file(runs_dir: &Path, run_id: &str, rel: &str) -> Result<FileContent, ApiError> {
    let one_component = matches!(
        Path::new(run_id)
            .components()
            .collect::<Vec<_>>()
            .as_slice(),
        [Component::Normal(_)]
    );
    if !one_component {
        return Err(ApiError::invalid(format!("not a run id: {run_id:?}")));
    }
    let real = confine(&runs_dir.join(run_id), rel)?;
    // The run folder itself must not lead out of `runs/` either.
    let real_runs = runs_dir
        .canonicalize()
        .map_err(|_| ApiError::not_found(format!("no such file: {rel}")))?;
    if !real.starts_with(&real_runs) {
        tracing::warn!(
            run_id,
            path = rel,
            "file refused: run folder leads outside runs/"
        );
        return Err(ApiError::not_found(format!("no such file: {rel}")));
    }
    let io = |e: std::io::Error| ApiError::internal(format!("cannot read {}: {e}", real.display()));
    let too_large = |size: u64| {
        ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "{rel} is {size} bytes; read_file answers files up to {MAX_READ_FILE} bytes \
                 (open it from the data directory instead)"
            ),
        )
    };
    // `confine` saw a regular file; one swapped for a pipe since is refused, not waited on.
    let f = crate::userfile::open_regular(&real).map_err(|e| match e {
        crate::userfile::OpenError::Io(e) => io(e),
        e => ApiError::not_found(format!("{rel} {e}")),
    })?;
    let size = f.metadata().map_err(io)?.len();
    if size > MAX_READ_FILE {
        return Err(too_large(size));
    }
    // A file still growing is cut off by `take`, not read without bound.
    let mut bytes = Vec::with_capacity(size as usize);
    f.take(MAX_READ_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_READ_FILE {
        return Err(too_large(bytes.len() as u64));
    }
    let (mime, _) = guess_type(&real);
    Ok(FileContent {
        filename: Path::new(rel)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size: bytes.len() as u64,
        mime: mime.to_string(),
        content_base64: base64::engine::general_purpose::STANDARD.encode(&bytes),
    })
}
