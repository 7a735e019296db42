//! `GET /files/runs/<path>`: logs and artifacts, never anything outside `<data_dir>/runs`.

use std::path::{Component, Path, PathBuf};

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use testbay_engine::api::ApiError;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::{error_response, AppState};

/// Resolve `rel` below `root`, refusing absolute paths, `..`, and anything whose real
/// location (after following symlinks) is not inside `root`. Returns the real path of an
/// existing regular file.
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
    let not_found = || ApiError::not_found(format!("no such file: runs/{rel}"));
    let real_root = root.canonicalize().map_err(|_| not_found())?;
    let real = real_root
        .join(rel_path)
        .canonicalize()
        .map_err(|_| not_found())?;
    if !real.starts_with(&real_root) {
        tracing::warn!(
            path = rel,
            "download refused: leads outside the data directory"
        );
        return Err(ApiError::not_found(format!("no such file: runs/{rel}")));
    }
    if !real.is_file() {
        return Err(not_found());
    }
    Ok(real)
}

pub(crate) async fn download(
    State(st): State<AppState>,
    UrlPath(rel): UrlPath<String>,
    req: Request,
) -> Response {
    let path = match confine(&st.runs_dir, &rel) {
        Ok(p) => p,
        Err(e) => return error_response(e),
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let mut res = match ServeFile::new(&path).oneshot(req).await {
        Ok(r) => r.into_response(),
        Err(e) => {
            return error_response(ApiError::internal(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    // Artifacts are written by task programs: show text and pictures, hand everything
    // else over as a download, and never let a file run script on the console's origin.
    let h = res.headers_mut();
    let inline_type = match ext.as_str() {
        "log" | "txt" | "json" | "yaml" | "yml" | "xml" | "csv" => {
            Some("text/plain; charset=utf-8")
        }
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "webp" => Some("image/webp"),
        _ => None,
    };
    match inline_type {
        Some(t) => {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(t));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment"),
            );
        }
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    res
}
