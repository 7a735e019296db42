//! Typed errors of the reservation book.

use thiserror::Error;

use super::types::{ResId, ReservationMode, Window};
use crate::clock::EpochMs;
use crate::timefmt::fmt_ms;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BookError {
    #[error("unknown resource `{name}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownResource {
        name: String,
        suggestion: Option<String>,
    },
    #[error("unknown reservation id {0}")]
    UnknownId(ResId),
    #[error("resource `{resource}` is exclusive and cannot be reserved in {requested} mode")]
    ModeMismatch {
        resource: String,
        requested: ReservationMode,
    },
    #[error(
        "resource `{resource}` is not available {} .. {}; next free window {} .. {}",
        fmt_ms(requested.start), fmt_ms(requested.end), fmt_ms(next.start), fmt_ms(next.end)
    )]
    ResourceUnavailable {
        resource: String,
        requested: Window,
        next: Window,
    },
    #[error("reservation {id} cannot be claimed before {}", fmt_ms(*available_from))]
    ClaimTooEarly { id: ResId, available_from: EpochMs },
    #[error("reservation {0} is already claimed")]
    AlreadyClaimed(ResId),
    #[error("reservation {0} is not claimed yet")]
    NotClaimed(ResId),
    #[error("duration must be positive, got {0} ms")]
    InvalidDuration(i64),
    /// A window that would end after the last instant the book can hold.
    #[error("a window of {duration_ms} ms from {} ends beyond the last time the book can hold", fmt_ms(*from))]
    OutOfRange { from: EpochMs, duration_ms: i64 },
    #[error("resource `{0}` is defined twice")]
    DuplicateResource(String),
    #[error("shared resource `{0}` has capacity 0")]
    ZeroCapacity(String),
    /// The book would have it, but the lab database under the book (the engine's fence)
    /// refused it: another server holds the resource there.
    #[error("{0}")]
    Fenced(String),
}
