//! The lab book's errors, each with a stable code. The database's own errors travel
//! boxed as the source; an exclusion violation never reaches a caller as one (it is a
//! [`LabError::Conflict`]).

use crate::clock::EpochMs;
use crate::reserve::{ResId, ReservationMode, Window};
use crate::timefmt::fmt_ms;

/// A backend's own error, kept as the source.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// SQLSTATE of an exclusion constraint violation.
pub const EXCLUSION_VIOLATION: &str = "23P01";
/// SQLSTATEs of a transaction failed to break a deadlock or a serialization conflict.
const DEADLOCK_DETECTED: &str = "40P01";
const SERIALIZATION_FAILURE: &str = "40001";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
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
    /// The window overlaps another live reservation of an exclusive resource.
    #[error("resource `{resource}` is already booked within {} .. {}", fmt_ms(requested.start), fmt_ms(requested.end))]
    Conflict { resource: String, requested: Window },
    /// The window would take a shared resource over its capacity.
    #[error("resource `{resource}` has not {units} of its {capacity} units free within {} .. {}", fmt_ms(requested.start), fmt_ms(requested.end))]
    Capacity {
        resource: String,
        capacity: u32,
        units: u32,
        requested: Window,
    },
    /// A renewal came after the lease had lapsed (or the reservation was ended).
    #[error("the lease of reservation {0} has lapsed")]
    LeaseLost(ResId),
    #[error("reservation {id} cannot be claimed before {}", fmt_ms(*available_from))]
    ClaimTooEarly { id: ResId, available_from: EpochMs },
    #[error("reservation {0} is already claimed")]
    AlreadyClaimed(ResId),
    #[error("reservation {0} is not claimed yet")]
    NotClaimed(ResId),
    #[error("duration must be positive, got {0} ms")]
    InvalidDuration(i64),
    #[error("a window of {duration_ms} ms from {} ends beyond the last time the book can hold", fmt_ms(*from))]
    OutOfRange { from: EpochMs, duration_ms: i64 },
    #[error("resource `{name}`: {why}")]
    InvalidResource { name: String, why: &'static str },
    /// The database broke a deadlock or a serialization conflict between servers by
    /// failing this call's transaction; the book's writes try again on their own.
    #[error("the lab database gave up this change to let another server's through: {0}")]
    Contention(BackendError),
    #[error("cannot reach the lab database: {0}")]
    Connect(BackendError),
    #[error("lab database error: {0}")]
    Database(BackendError),
}

impl LabError {
    /// A stable name for the kind of error (logs, API codes).
    pub fn code(&self) -> &'static str {
        match self {
            LabError::UnknownResource { .. } => "unknown_resource",
            LabError::UnknownId(_) => "unknown_id",
            LabError::ModeMismatch { .. } => "mode_mismatch",
            LabError::Conflict { .. } => "conflict",
            LabError::Capacity { .. } => "capacity",
            LabError::LeaseLost(_) => "lease_lost",
            LabError::ClaimTooEarly { .. } => "claim_too_early",
            LabError::AlreadyClaimed(_) => "already_claimed",
            LabError::NotClaimed(_) => "not_claimed",
            LabError::InvalidDuration(_) => "invalid_duration",
            LabError::OutOfRange { .. } => "out_of_range",
            LabError::InvalidResource { .. } => "invalid_resource",
            LabError::Contention(_) => "contention",
            LabError::Connect(_) => "connect",
            LabError::Database(_) => "database",
        }
    }
}

impl From<tokio_postgres::Error> for LabError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.is_closed() {
            LabError::Connect(Box::new(e))
        } else if matches!(
            e.code().map(|c| c.code()),
            Some(DEADLOCK_DETECTED | SERIALIZATION_FAILURE)
        ) {
            LabError::Contention(Box::new(e))
        } else {
            LabError::Database(Box::new(e))
        }
    }
}

impl From<deadpool_postgres::PoolError> for LabError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        LabError::Connect(Box::new(e))
    }
}

/// Whether a database error is an exclusion constraint violation.
pub(crate) fn is_exclusion(e: &tokio_postgres::Error) -> bool {
    e.code().map(|c| c.code()) == Some(EXCLUSION_VIOLATION)
}

pub type LabResult<T> = std::result::Result<T, LabError>;
