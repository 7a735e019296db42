//! `POST /api/packs?private=BOOL`: a pack pushed into the lab's pack library as its raw
//! archive (`pack::archive`, `Content-Type: application/octet-stream`), for packs too big
//! for a `push_pack` request's JSON within the `/api` body limit.
//!
//! The caller's role is checked as for `push_pack` (operator or admin) before a byte of
//! the body is read; the body may hold at most `bounds::MAX_PACK_ARCHIVE_BYTES` (413
//! `too_large` naming the bound, at once when `Content-Length` says so) and must arrive
//! within `Limits::body_timeout` plus its bytes at `Limits::upload_min_rate`. The archive
//! is read once into memory and handed to the console as it is
//! (`Console::push_pack_as`); the answer is the `push_pack` request's.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use testbay_engine::api::{authorize, ApiError, Caller, Request as ApiRequest};
use testbay_engine::bounds::MAX_PACK_ARCHIVE_BYTES;

use crate::{error_response, read_bounded, AppState};

/// Whether the request says its body is an archive (`application/octet-stream`).
pub(crate) fn is_archive(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/octet-stream"))
}

/// `private` from the query: absent, `true`/`false` or `1`/`0`; anything else (but
/// the single seat's `token`) is an error.
fn private_flag(query: Option<&str>) -> Result<bool, ApiError> {
    let mut private = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        match (key, value) {
            ("private", "true" | "1") => private = true,
            ("private", "false" | "0") => private = false,
            // The single seat's shared token may come in the address (`auth`).
            ("token", _) => {}
            ("private", other) => {
                return Err(ApiError::invalid(format!(
                    "private={other}: expected true or false"
                )))
            }
            (other, _) => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter {other:?} (a pack upload takes private=BOOL)"
                )))
            }
        }
    }
    Ok(private)
}

pub(crate) async fn upload(State(st): State<AppState>, req: Request) -> Response {
    let caller = req
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::local);
    let private = match private_flag(req.uri().query()) {
        Ok(p) => p,
        Err(e) => return error_response(e),
    };
    if !is_archive(req.headers()) {
        return error_response(ApiError::invalid(
            "a pack upload's body is its archive: Content-Type: application/octet-stream",
        ));
    }
    // The role first: a viewer's archive is not read at all.
    let as_request = ApiRequest::PushPack {
        archive: String::new(),
        private,
    };
    if let Err(e) = authorize(&caller, &as_request) {
        return error_response(e);
    }
    let too_large = format!(
        "pack archive over the limit of {} MiB (bounds::MAX_PACK_ARCHIVE_BYTES)",
        MAX_PACK_ARCHIVE_BYTES >> 20
    );
    let archive = match read_bounded(
        req,
        MAX_PACK_ARCHIVE_BYTES,
        &too_large,
        st.limits.body_timeout,
        Some(st.limits.upload_min_rate),
    )
    .await
    {
        Ok(body) => body,
        Err(res) => return res,
    };
    match st.console.push_pack_as(&caller, archive, private).await {
        Ok(res) => Json(res).into_response(),
        Err(e) => error_response(e),
    }
}
