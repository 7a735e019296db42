//! The error every API command can answer with: a stable code the UI acts on, a message
//! for people, and the diagnostics (file, line, key) when bad input caused it.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::bounds::BoundError;
use crate::diag::Diagnostic;
use crate::reserve::BookError;
use crate::run::RunError;
use crate::store::StoreError;

/// What kind of failure; stable across versions, so the UI may branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request itself is malformed or names impossible values; fix the request.
    InvalidRequest,
    /// A named pack, run, task, DUT, resource or reservation does not exist.
    NotFound,
    /// The pack has problems; `diagnostics` lists every one with file and line.
    PackBroken,
    /// The thing is in use (a held DUT, a running run); try again later.
    Busy,
    /// The request contradicts the current state (stop a finished run, release twice).
    Conflict,
    /// A part of the console is not configured (no lab file, no store).
    Unavailable,
    /// The request, or its answer, is bigger than the command allows (a launch over its
    /// size limits, a file over `read_file`'s cap).
    TooLarge,
    /// The request took longer than its limit and was stopped (a store query past the
    /// read limit, a request body that did not arrive in time); narrow it or retry.
    Timeout,
    /// A fault inside the console (storage I/O, a bug); the message says what failed.
    Internal,
    /// A DUT of the launch is in `bad` health: restore it, or launch with `force`.
    DutBad,
    /// No user token, or one that is unknown or revoked (a lab's console): sign in.
    Unauthorized,
    /// The signed-in user's role does not allow the request; the message names the role
    /// it needs.
    Forbidden,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::PackBroken => "pack_broken",
            ErrorCode::Busy => "busy",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::DutBad => "dut_bad",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize, TS)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Problems in user files behind this error, each with file and line or key path.
    #[serde(default)]
    pub diagnostics: Vec<Diagnostic>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            diagnostics: Vec::new(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    pub fn with_diagnostics(mut self, diagnostics: Vec<Diagnostic>) -> Self {
        self.diagnostics = diagnostics;
        self
    }
}

// The engine parts' errors as the API answers them.

pub(super) fn book_error(e: BookError) -> ApiError {
    let code = match &e {
        BookError::UnknownResource { .. } | BookError::UnknownId(_) => ErrorCode::NotFound,
        BookError::ResourceUnavailable { .. } => ErrorCode::Busy,
        BookError::InvalidDuration(_)
        | BookError::OutOfRange { .. }
        | BookError::ModeMismatch { .. } => ErrorCode::InvalidRequest,
        _ => ErrorCode::Conflict,
    };
    ApiError::new(code, e.to_string())
}

pub(super) fn bound_error(e: BoundError) -> ApiError {
    let code = match e {
        BoundError::OutOfRange { .. } => ErrorCode::InvalidRequest,
        BoundError::TooLarge { .. } => ErrorCode::TooLarge,
    };
    ApiError::new(code, e.to_string())
}

pub(super) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::RunNotFound(id) => ApiError::not_found(format!("run {id} not found")),
        e @ StoreError::Timeout { .. } => ApiError::new(ErrorCode::Timeout, e.to_string()),
        e @ StoreError::InvalidQuery { .. } => ApiError::invalid(e.to_string()),
        e @ StoreError::Closing => ApiError::new(ErrorCode::Unavailable, e.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

pub(super) fn run_error(e: RunError) -> ApiError {
    match e {
        RunError::Pack(p) => ApiError::new(
            ErrorCode::PackBroken,
            format!(
                "pack {} has {} problem(s)",
                p.dir.display(),
                p.diagnostics.len()
            ),
        )
        .with_diagnostics(p.diagnostics),
        e @ RunError::CouldNotStart { .. } => ApiError::invalid(e.to_string()),
        e @ RunError::NotRunning(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
        RunError::Store(s) => store_error(s),
        e @ RunError::Snapshot { .. } => ApiError::internal(e.to_string()),
    }
}
