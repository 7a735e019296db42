//! One step on the book for a task or a lane: request and, when the window starts now,
//! claim; claim a pre-reservation whose window has started; give back; and the "busy"
//! reason a waiting task shows (who holds the resource and until when).

use serde_json::Value;

use super::Held;
use crate::clock::EpochMs;
use crate::reserve::fence::Refused;
use crate::reserve::{
    fmt_ms_short, Book, BookError, ClaimOutcome, Holder, ResId, ReservationMode,
    ReservationRequest, ReservationStatus,
};
use crate::reserve::{Fence, FenceClaim};

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

/// ReservationRequest and, if its window starts now, claim (fenced in the database, see
/// [`fence_held`]). `Err((until, reason, probe))` when busy: `probe` is the request it
/// made to learn `until`, released again.
#[allow(clippy::too_many_arguments)]
pub(super) fn take_now(
    b: &mut Book,
    fence: &dyn Fence,
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
        ReservationRequest::new(resource, who.clone(), dur)
            .mode(mode)
            .config(config)
            .lease(lease),
    )?;
    if pre.available_from > b.now() {
        b.release(pre.id)?;
        return Ok(Err((pre.available_from, busy_reason(b, resource), pre.id)));
    }
    match claim_now(b, fence, pre.id, resource, exclusive, &who, lease)? {
        Claimed::Held(h) => Ok(Ok(h)),
        Claimed::Refused { until, reason } => Ok(Err((until, reason, pre.id))),
        Claimed::Rebooked(..) => unreachable!("a window starting now is claimable"),
    }
}

/// What claiming a pre-reservation came to.
pub(super) enum Claimed {
    Held(Held),
    /// Claimed late and the window was gone: the book replaced it with this new
    /// pre-reservation, from then.
    Rebooked(ResId, EpochMs),
    /// The book gave it but the database refused it (another server holds the resource
    /// there): given back in the book; ask again at `until`.
    Refused {
        until: EpochMs,
        reason: String,
    },
}

/// Claim a pre-reservation whose window has started, and fence the claim.
pub(super) fn claim_now(
    b: &mut Book,
    fence: &dyn Fence,
    id: ResId,
    resource: &str,
    exclusive: bool,
    who: &Holder,
    lease: i64,
) -> Result<Claimed, BookError> {
    match b.claim(id)? {
        ClaimOutcome::Claimed(r) => {
            let mut held = Held {
                id,
                resource: resource.to_string(),
                exclusive,
                config: r.resource_config,
                end: r.expire_time,
                fence: None,
            };
            match fence_held(b, fence, &mut held, who, lease) {
                Ok(()) => Ok(Claimed::Held(held)),
                Err((until, reason)) => Ok(Claimed::Refused { until, reason }),
            }
        }
        ClaimOutcome::Rebooked {
            pre_reservation_id,
            new_avail,
            ..
        } => Ok(Claimed::Rebooked(pre_reservation_id, new_avail)),
    }
}

/// Write the claim `h` to the fence (see `reserve::fence`). When the database refuses it,
/// the claim is given back in the book and `Err((until, reason))` says when to ask again
/// and who holds the resource in the database.
pub(super) fn fence_held(
    b: &mut Book,
    fence: &dyn Fence,
    h: &mut Held,
    who: &Holder,
    lease: i64,
) -> Result<(), (EpochMs, String)> {
    let now = b.now();
    let claim = FenceClaim {
        resource: &h.resource,
        exclusive: h.exclusive,
        holder: who,
        duration_ms: h.end.saturating_sub(now).max(1),
        lease_ms: lease,
    };
    match fence.claim(&claim) {
        Ok(id) => {
            h.fence = id;
            Ok(())
        }
        Err(Refused {
            reason,
            retry_in_ms,
        }) => {
            release_quietly(b, h.id);
            Err((now.saturating_add(retry_in_ms.max(1)), reason))
        }
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
