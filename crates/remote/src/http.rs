//! `POST /api`: one request to the lab server, its answer or its refusal as an
//! [`ApiError`].

use std::time::Duration;

use reqwest::{header, StatusCode};
use serde::Deserialize;
use testbay_engine::api::{ApiError, ErrorCode, Request, Response};
use testbay_engine::bounds::MAX_PACK_ARCHIVE_BYTES;

use crate::Target;

/// How long connecting to the server may take before it counts as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take, answer included (the server bounds its own work well
/// within this: store reads stop at their read limit).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest answer read: a page of `get_run` or a `read_file` is at most 16 MiB of data,
/// JSON-escaped.
pub const MAX_ANSWER: usize = 64 << 20;
/// The slowest upload a pack push plans for, bytes a second (its time limit grows with
/// its size at this rate).
pub const UPLOAD_MIN_RATE: u64 = 64 << 10;

/// An HTTP client for one lab server.
#[derive(Clone)]
pub struct Client {
    target: Target,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ApiError,
}

impl Client {
    pub fn new(target: Target) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // A redirect would carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApiError::internal(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self { target, http })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Send `request`, read its answer.
    pub async fn call(&self, request: &Request) -> Result<Response, ApiError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| ApiError::internal(format!("cannot encode the request: {e}")))?;
        let post = self
            .http
            .post(self.target.api_url())
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(post).await
    }

    /// Push a pack's archive (`pack::archive`) into the server's pack library:
    /// `POST /api/packs` with the archive as the body, as it is (the `push_pack`
    /// request's answer). Refused here when over `bounds::MAX_PACK_ARCHIVE_BYTES`; given
    /// [`REQUEST_TIMEOUT`] plus its bytes at [`UPLOAD_MIN_RATE`].
    pub async fn push_pack(&self, archive: Vec<u8>, private: bool) -> Result<Response, ApiError> {
        let len = archive.len() as u64;
        if len > MAX_PACK_ARCHIVE_BYTES {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "the pack's archive is {} MiB, over the limit of {} MiB (bounds::MAX_PACK_ARCHIVE_BYTES)",
                    len >> 20,
                    MAX_PACK_ARCHIVE_BYTES >> 20
                ),
            ));
        }
        let mut url = self.target.packs_url();
        url.set_query(Some(&format!("private={private}")));
        let post = self
            .http
            .post(url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .timeout(REQUEST_TIMEOUT + Duration::from_secs(len / UPLOAD_MIN_RATE))
            .body(archive);
        self.send(post).await
    }

    /// Send a request, read its answer (a `Response`, or the server's refusal).
    async fn send(&self, mut post: reqwest::RequestBuilder) -> Result<Response, ApiError> {
        if let Some(token) = &self.target.token {
            post = post.bearer_auth(token);
        }
        let answer = post.send().await.map_err(|e| self.send_error(&e))?;
        let status = answer.status();
        let body = self.read(answer).await?;
        if status.is_success() {
            return serde_json::from_slice::<Response>(&body).map_err(|e| {
                ApiError::internal(format!(
                    "the lab server at {} answered with something that is not a Testbay API answer ({e}); is it the same version ({})?",
                    self.target.url,
                    env!("CARGO_PKG_VERSION")
                ))
            });
        }
        if let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(&body) {
            return Err(error);
        }
        Err(self.status_error(status, &body))
    }

    /// The answer's body, within [`MAX_ANSWER`].
    async fn read(&self, mut answer: reqwest::Response) -> Result<Vec<u8>, ApiError> {
        let mut body = Vec::new();
        while let Some(chunk) = answer.chunk().await.map_err(|e| self.send_error(&e))? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(ApiError::new(
                    ErrorCode::TooLarge,
                    format!("the lab server's answer is over {} MiB", MAX_ANSWER >> 20),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// A request that got no answer: the server is down, unreachable or too slow.
    fn send_error(&self, e: &reqwest::Error) -> ApiError {
        let url = &self.target.url;
        if e.is_timeout() {
            return ApiError::new(
                ErrorCode::Timeout,
                format!("the lab server at {url} did not answer in time"),
            );
        }
        let why = if e.is_connect() {
            "cannot connect"
        } else {
            "the connection failed"
        };
        ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "the lab server at {url} is unavailable: {why} ({})",
                cause(e)
            ),
        )
    }

    /// A refusal that is not the API's own error shape: the server's guard (token, host,
    /// origin) or something that is not a Testbay server.
    fn status_error(&self, status: StatusCode, body: &[u8]) -> ApiError {
        let url = &self.target.url;
        let text = String::from_utf8_lossy(body);
        let text: String = text.trim().chars().take(300).collect();
        let said = if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        };
        let (code, what) = match status {
            StatusCode::UNAUTHORIZED => (
                ErrorCode::InvalidRequest,
                if self.target.token.is_some() {
                    "refused the token (401 Unauthorized); check --token / TESTBAY_TOKEN"
                } else {
                    "wants a token (401 Unauthorized); pass --token or set TESTBAY_TOKEN"
                },
            ),
            StatusCode::FORBIDDEN => (
                ErrorCode::InvalidRequest,
                "refused the request (403 Forbidden)",
            ),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => (
                ErrorCode::Unavailable,
                "has no Testbay API at /api (is it a `testbay serve`?)",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => {
                (ErrorCode::TooLarge, "refused the request as too large")
            }
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
                (ErrorCode::Timeout, "timed out")
            }
            s if s.is_server_error() => (ErrorCode::Unavailable, "failed"),
            _ => (ErrorCode::Internal, "answered with an unexpected status"),
        };
        let what = if what.contains(status.as_str()) {
            what.to_string()
        } else {
            format!("{what} (HTTP {})", status.as_u16())
        };
        ApiError::new(code, format!("the lab server at {url} {what}{said}"))
    }
}

/// The innermost cause of a transport error (reqwest's own text is "error sending request").
fn cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}
