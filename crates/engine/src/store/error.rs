//! The store's errors, the same for every backend: a backend's own error (SQLite's,
//! later PostgreSQL's) travels boxed as the source, never as a variant's type.

use std::path::PathBuf;

/// A backend's own error, kept as the source of a [`StoreError`].
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open { path: PathBuf, source: BackendError },
    #[error("database {path} has schema version {found}, newer than this Testbay knows ({known}); use a newer Testbay")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    #[error("migration {index} ({name}) failed: {source}")]
    Migration {
        index: usize,
        name: &'static str,
        source: BackendError,
    },
    #[error("cannot take the lock {path} to open the store: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("run {0} not found")]
    RunNotFound(String),
    /// A read ran past the store's read limit and was stopped.
    #[error("the query took longer than {limit_ms} ms and was stopped; narrow the filters and try again")]
    Timeout { limit_ms: u64 },
    /// A query the store refuses to run, with the key and why.
    #[error("{key}: {message}")]
    InvalidQuery { key: &'static str, message: String },
    /// The store is closing ([`super::Store::close_reads`]): reads are refused.
    #[error("the store is closing")]
    Closing,
    /// The database refused or failed a statement.
    #[error("database error: {}", with_sources(.0))]
    Database(BackendError),
    #[error("stored JSON in {what} is invalid: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
}

impl StoreError {
    /// A stable name for the kind of error, the same for every backend (for logs, and for
    /// the API's codes: `run_not_found` is `not_found`, `timeout` is `timeout`).
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Open { .. } => "open",
            StoreError::TooNew { .. } => "too_new",
            StoreError::Migration { .. } => "migration",
            StoreError::Lock { .. } => "lock",
            StoreError::RunNotFound(_) => "run_not_found",
            StoreError::Timeout { .. } => "timeout",
            StoreError::InvalidQuery { .. } => "invalid_query",
            StoreError::Closing => "closing",
            StoreError::Database(_) => "database",
            StoreError::Json { .. } => "json",
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An error and its sources, `: `-joined (PostgreSQL's driver says `db error` and keeps
/// the server's message as the source).
fn with_sources(e: &BackendError) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        next = s.source();
    }
    text
}
