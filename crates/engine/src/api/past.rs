//! The book's past for the Lab timeline: reservations of the lab's DUTs and resources
//! that ended within the last `hours`, from the store's history of ended reservations.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::{ApiError, LocalConsole, Response};
use crate::clock::EpochMs;
use crate::reserve::ReservationView;

/// At most this many hours back.
pub const MAX_PAST_HOURS: f64 = 24.0;
/// At most this many past reservations in one answer (the newest kept).
pub const MAX_PAST_RESERVATIONS: usize = 2_000;

/// A reservation that ended: when and why (released, expired, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct PastReservation {
    pub ended_ms: EpochMs,
    pub reason: String,
    pub reservation: ReservationView,
}

impl LocalConsole {
    pub(super) fn reservation_history(&self, hours: f64) -> Result<Response, ApiError> {
        if !(hours.is_finite() && hours > 0.0 && hours <= MAX_PAST_HOURS) {
            return Err(ApiError::invalid(format!(
                "hours: must be more than 0 and at most {MAX_PAST_HOURS}, got {hours}"
            )));
        }
        let lab = self.lab()?;
        let now = self.clock.now_ms();
        let from = now.saturating_sub((hours * 3_600_000.0) as i64);
        let store = self
            .store
            .open_book_store()
            .map_err(super::error::store_error)?;
        let mut out = Vec::new();
        for spec in lab.book_resources() {
            let ended = store
                .history(&spec.name, from, now.saturating_add(1))
                .map_err(super::error::store_error)?;
            out.extend(
                ended
                    .into_iter()
                    .map(|(ended_ms, reason, reservation)| PastReservation {
                        ended_ms,
                        reason,
                        reservation,
                    }),
            );
        }
        out.sort_by_key(|p| (p.reservation.start, p.reservation.id));
        if out.len() > MAX_PAST_RESERVATIONS {
            out.drain(..out.len() - MAX_PAST_RESERVATIONS);
        }
        Ok(Response::ReservationHistory(out))
    }
}
