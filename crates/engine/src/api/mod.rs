//! The one command list of the console. Tauri (`src-tauri`) and axum (`crates/server`)
//! only move JSON between a client and [`Console::dispatch`] / [`Console::subscribe`].
//!
//! Wire format (TypeScript types are generated into `ui/src/lib/api/generated/`):
//! - a request is `{"cmd": "<name>", ...fields}` ([`Request`]);
//! - its answer is `{"cmd": "<name>", "data": ...}` ([`Response`], same `cmd` as the
//!   request) or an [`ApiError`] `{"code", "message", "diagnostics"}`;
//! - an event is `{"kind": "<name>", "data": ...}` ([`Event`]). After `resync` the client
//!   has missed events and must reload what it shows.

mod console;
mod error;
pub mod paths;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

pub use console::{Console, EVENT_CAPACITY};
pub use error::{ApiError, ErrorCode};
pub use paths::ConsolePaths;

/// Every command a client can send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Version and the paths this console works on.
    Info,
}

/// The answer to a [`Request`], tagged with the request's `cmd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "cmd", content = "data", rename_all = "snake_case")]
pub enum Response {
    Info(ConsoleInfo),
}

/// Everything that changes by itself, pushed to every subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// This subscriber fell behind and `missed` events were dropped: reload.
    Resync { missed: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ConsoleInfo {
    pub version: String,
    pub data_dir: String,
    pub pack_roots: Vec<String>,
    pub lab_file: Option<String>,
}

/// Parse a request from JSON; a bad one becomes an `invalid_request` error naming what
/// is wrong (unknown `cmd`, missing or mistyped field) and where.
pub fn parse_request(json: &[u8]) -> Result<Request, ApiError> {
    serde_json::from_slice(json).map_err(|e| ApiError::invalid(format!("bad request: {e}")))
}
