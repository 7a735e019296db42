//! One step on the book for a task or a lane: request and, when the window starts now,
//! claim; claim a pre-reservation whose window has started; give back; and the "busy"
//! reason a waiting task shows (who holds the resource and until when).

use serde_json::Value;

use super::Held;
use crate::clock::EpochMs;
use crate::reserve::{
    fmt_ms_short, Book, BookError, ClaimOutcome, Holder, ResId, ReservationMode,
    ReservationRequest, ReservationStatus,
};

pub(super) fn holder(run_id: &str, lane: &str, task: Option<&str>) -> Holder {
    Holder::Run {
        run_id: run_id.to_string(),
        lane: lane.to_string(),
        task: task.map(str::to_string),
    }
}

/// Who holds `resource` now and until when, for a "busy" reason.
pub(super) fn busy_reason(b: &mut Book, resource: &str) -> String {
    let now = b.now();
    let by: Vec<String> = b
        .reservations()
        .into_iter()
        .filter(|v| &*v.resource == resource && v.start <= now && v.end > now)
        .map(|v| {
            let what = if v.status == ReservationStatus::Held {
                "held by"
            } else {
                "booked for"
            };
            format!("{what} {} until {}", v.holder, fmt_ms_short(v.end))
        })
        .collect();
    if by.is_empty() {
        format!("{resource} is booked")
    } else {
        format!("{resource} {}", by.join(", "))
    }
}

/// ReservationRequest and, if its window starts now, claim. `Err((until, reason, probe))` when busy:
/// `probe` is the request it made to learn `until`, released again.
pub(super) fn take_now(
    b: &mut Book,
    resource: &str,
    exclusive: bool,
    who: Holder,
    config: Value,
    dur: i64,
    lease: i64,
) -> Result<Result<Held, (EpochMs, String, ResId)>, BookError> {
    let mode = if exclusive {
        ReservationMode::Exclusive
    } else {
        ReservationMode::Shared
    };
    let pre = b.request(
        ReservationRequest::new(resource, who, dur)
            .mode(mode)
            .config(config)
            .lease(lease),
    )?;
    if pre.available_from > b.now() {
        b.release(pre.id)?;
        return Ok(Err((pre.available_from, busy_reason(b, resource), pre.id)));
    }
    Ok(Ok(
        claim_now(b, pre.id, resource, exclusive)?.expect("a window starting now is claimable")
    ))
}

/// Claim a pre-reservation whose window has started. `Ok(Err((new id, from)))` when the
/// book replaced it with a new pre-reservation (claimed late and the window was gone).
pub(super) fn claim_now(
    b: &mut Book,
    id: ResId,
    resource: &str,
    exclusive: bool,
) -> Result<Result<Held, (ResId, EpochMs)>, BookError> {
    match b.claim(id)? {
        ClaimOutcome::Claimed(r) => Ok(Ok(Held {
            id,
            resource: resource.to_string(),
            exclusive,
            config: r.resource_config,
            end: r.expire_time,
        })),
        ClaimOutcome::Rebooked {
            pre_reservation_id,
            new_avail,
            ..
        } => Ok(Err((pre_reservation_id, new_avail))),
    }
}

/// Why a task cannot start now: the latest of the times its busy resources are booked
/// until, why, and which resources were busy.
pub(super) struct Busy {
    pub(super) until: EpochMs,
    pub(super) reason: String,
    pub(super) resources: Vec<String>,
}

impl Busy {
    pub(super) fn add(busy: &mut Option<Busy>, until: EpochMs, reason: String, resource: &str) {
        let b = busy.get_or_insert_with(|| Busy {
            until,
            reason: reason.clone(),
            resources: Vec::new(),
        });
        if (until, &reason) > (b.until, &b.reason) {
            b.until = until;
            b.reason = reason;
        }
        b.resources.push(resource.to_string());
    }
}

pub(super) fn release_quietly(b: &mut Book, id: ResId) {
    if let Err(e) = b.release(id) {
        tracing::debug!(id = %id, error = %e, "release of a reservation that is already gone");
    }
}
