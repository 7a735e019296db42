//! The **fence**: the database's word under every claim the console's book makes.
//!
//! The in-memory book (`reserve::live`) plans: it finds windows, orders waiters, says
//! why a task waits. In a lab (the console on PostgreSQL) it is one server's book, and a
//! server cut off from the others (a partition, a database restart that handed the book
//! to another server) could go on believing it owns it. So every claim the broker makes
//! for a run (a DUT, a rack slot, a lab resource) is also written, in its own
//! transaction, to the lab book in the database (`reserve::labdb`), under its exclusion
//! constraint (shared capacity under a row lock), with a lease judged by the database's
//! clock. Only when the database accepts does the task start; when it refuses, the
//! in-memory claim is given back and the task waits, `Busy` with a reason naming who
//! holds the resource in the database. The broker's lease thread renews the database's
//! leases too; a claim whose lease could not be renewed before it ran out is *lost*, and
//! the run holding it ends `interrupted` instead of running on a resource the database
//! may have given to someone else. A dead server's fenced claims stop counting at their
//! lease's end by the database's `now()`, so a survivor can claim at once, without
//! waiting to take the in-memory book over.
//!
//! Operators' holds are fenced too, by the book itself (`reserve::live`, for holds made
//! here and those other servers send through its inbox): a hold the database refuses is
//! not made. A hold with a lease has the same lease in the database (by its clock),
//! renewed with the book's; one that lapsed there is released here when next renewed.
//!
//! Why a fence under the planner rather than the database as the planner: the in-memory
//! book's waiters, wake-ups and busy reasons stay as they are (and the single seat stays
//! exactly as it is: [`NoFence`] does nothing and costs nothing), while the one thing
//! that must hold whoever believes what, no two holders of one DUT at once, is decided by
//! the database alone.

use crate::clock::EpochMs;
use crate::reserve::{Holder, ResId, ReservationMode};

/// One claim to fence: `resource` held by `holder` from the database's now for
/// `duration_ms`, under a lease of `lease_ms`.
#[derive(Debug, Clone, Copy)]
pub struct FenceClaim<'a> {
    pub resource: &'a str,
    pub exclusive: bool,
    pub holder: &'a Holder,
    pub duration_ms: i64,
    pub lease_ms: i64,
}

/// The database refused a claim: who holds the resource there, and in how many
/// milliseconds to ask again (when that holder's lease or window ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: String,
    pub retry_in_ms: i64,
}

/// An operator's hold as the book has it: `operator` holds `resource` over
/// `start .. end` (the book's clock, whose now is `now`).
#[derive(Debug, Clone, Copy)]
pub struct FenceHold<'a> {
    pub resource: &'a str,
    pub mode: ReservationMode,
    pub operator: &'a str,
    pub start: EpochMs,
    pub end: EpochMs,
    pub now: EpochMs,
    /// The hold's lease, renewed by its holder ([`Fence::renew_hold`]); without one it
    /// lasts its window.
    pub lease_ms: Option<i64>,
}

/// A fenced claim's id in the database.
pub type FenceId = ResId;

/// The database under the book's claims (see the module doc).
pub trait Fence: Send + Sync + 'static {
    /// Fence a claim the in-memory book just made. `Ok(None)`: nothing to fence (the
    /// single seat); `Ok(Some(id))`: the database holds it under `id`.
    fn claim(&self, claim: &FenceClaim<'_>) -> Result<Option<FenceId>, Refused>;

    /// Renew the leases of `ids`; the ids whose lease is lost, each with why (the
    /// database ended it, or no renewal got through before it ran out).
    fn renew(&self, ids: &[FenceId]) -> Vec<(FenceId, String)>;

    /// Move the end of `id`'s window `by_ms` later (the in-memory book extended it); a
    /// fence may take it with the [`Fence::renew`] that follows, asking again each
    /// renewal until the database takes it.
    fn extend(&self, id: FenceId, by_ms: i64);

    /// End `id` now (the in-memory claim was given back).
    fn release(&self, id: FenceId);

    /// Fence an operator's hold the book just made, under its lease if it has one (by
    /// the database's clock). The hold is found again by what it is (resource,
    /// operator, window), so whichever server owns the book later can end, extend or
    /// renew it.
    fn hold(&self, _hold: &FenceHold<'_>) -> Result<(), Refused> {
        Ok(())
    }

    /// The book ended `hold` (released): end it in the database too.
    fn end_hold(&self, _hold: &FenceHold<'_>) {}

    /// The book moved `hold`'s end to `new_end`; refused when the database does not
    /// (the book then gives the extension back).
    fn extend_hold(&self, _hold: &FenceHold<'_>, _new_end: EpochMs) -> Result<(), Refused> {
        Ok(())
    }

    /// The book renewed `hold`'s lease: renew it in the database. Refused when the
    /// database no longer has it (its lease lapsed there).
    fn renew_hold(&self, _hold: &FenceHold<'_>) -> Result<(), Refused> {
        Ok(())
    }

    /// Call `freed` with the resource each time another server lets one go in the
    /// database (a claim or hold released, or found lapsed), until it answers `false`:
    /// the broker wakes its tasks the database refused that resource at once, rather
    /// than when the other holder's lease would have ended.
    fn on_freed(&self, _freed: Freed) {}
}

/// A listener of [`Fence::on_freed`]: called with the freed resource; `false` to stop.
pub type Freed = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// No database under the book: the single seat.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFence;

impl Fence for NoFence {
    fn claim(&self, _claim: &FenceClaim<'_>) -> Result<Option<FenceId>, Refused> {
        Ok(None)
    }
    fn renew(&self, _ids: &[FenceId]) -> Vec<(FenceId, String)> {
        Vec::new()
    }
    fn extend(&self, _id: FenceId, _by_ms: i64) {}
    fn release(&self, _id: FenceId) {}
}
