//! `GET /files/runs/<path>`: logs and artifacts, never anything outside `<data_dir>/runs`.

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use testbay_engine::api::files::guess_type;
use testbay_engine::api::ApiError;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::{error_response, AppState};

/// The one confinement rule, shared with the API's `read_file`.
pub use testbay_engine::api::files::confine;

pub(crate) async fn download(
    State(st): State<AppState>,
    UrlPath(rel): UrlPath<String>,
    req: Request,
) -> Response {
    let path = match confine(&st.runs_dir, &rel) {
        Ok(p) => p,
        Err(e) => return error_response(e),
    };
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
    let (mime, inline) = guess_type(&path);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if !inline {
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    res
}
