//! Reading the lab book: a reservation as stored, the live ones, the ended ones (history),
//! the sweep that records lapsed reservations as expired, and the audit that looks for
//! what the database must never hold (the tests and the benchmark run it).

use serde::Serialize;
use tokio_postgres::Row;

use super::error::LabResult;
use super::LabBook;
use crate::clock::EpochMs;
use crate::reserve::{EndReason, Holder, ResId, ReservationMode, ReservationStatus};

/// Where a reservation row stands in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LabState {
    Booked,
    Held,
    Released,
    Expired,
    Rebooked,
}

impl LabState {
    fn parse(s: &str) -> LabState {
        match s {
            "booked" => LabState::Booked,
            "held" => LabState::Held,
            "released" => LabState::Released,
            "rebooked" => LabState::Rebooked,
            _ => LabState::Expired,
        }
    }
}

/// One reservation as the lab database holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabReservation {
    pub id: ResId,
    pub resource: String,
    pub mode: ReservationMode,
    pub units: u32,
    pub holder: Holder,
    /// The server that made it.
    pub server: String,
    /// The user it was made for, where one was named.
    pub user: Option<String>,
    pub state: LabState,
    /// Booked, waiting (booked later than asked) or held, as the book's views say.
    pub status: ReservationStatus,
    /// Live by the database's clock now.
    pub live: bool,
    pub needed_at: EpochMs,
    pub start: EpochMs,
    pub end: EpochMs,
    /// Booked: claim by then. Held: the lease's end (the window's end without a lease).
    /// `None` once ended.
    pub expires: Option<EpochMs>,
    pub claimed_at: Option<EpochMs>,
    pub lease_ms: Option<i64>,
    pub created_at: EpochMs,
    pub ended_at: Option<EpochMs>,
    pub end_reason: Option<EndReason>,
}

/// The columns [`from_row`] reads, in its order.
pub(crate) const COLS: &str = "id, resource, mode, units, holder_kind, run_id, lane, task, \
    operator, server, user_name, state, testbay_ms(needed_at), testbay_ms(lower(during)), \
    testbay_ms(upper(during)), testbay_ms(lab_deadline(state, claim_by, lease_until, during)), \
    testbay_ms(claimed_at), lease_ms, testbay_ms(created_at), testbay_ms(ended_at), end_reason, \
    (state IN ('booked', 'held') AND lab_deadline(state, claim_by, lease_until, during) > now()), \
    CASE WHEN state = 'held' AND lower(during) <= now() THEN 'held' \
         WHEN lower(during) > needed_at THEN 'waiting' ELSE 'booked' END";

/// How many columns [`COLS`] has.
pub(crate) const NCOLS: usize = 23;

pub(crate) fn from_row(r: &Row) -> LabReservation {
    let holder = if r.get::<_, &str>(4) == "run" {
        Holder::Run {
            run_id: r.get(5),
            lane: r.get(6),
            task: r.get(7),
        }
    } else {
        Holder::Operator { name: r.get(8) }
    };
    LabReservation {
        id: ResId(r.get::<_, i64>(0) as u64),
        resource: r.get(1),
        mode: if r.get::<_, &str>(2) == "shared" {
            ReservationMode::Shared
        } else {
            ReservationMode::Exclusive
        },
        units: r.get::<_, i32>(3).max(0) as u32,
        holder,
        server: r.get(9),
        user: r.get(10),
        state: LabState::parse(r.get(11)),
        needed_at: r.get(12),
        start: r.get(13),
        end: r.get(14),
        expires: r.get(15),
        claimed_at: r.get(16),
        lease_ms: r.get(17),
        created_at: r.get(18),
        ended_at: r.get(19),
        end_reason: r.get::<_, Option<&str>>(20).map(end_reason),
        live: r.get(21),
        status: match r.get::<_, &str>(22) {
            "held" => ReservationStatus::Held,
            "waiting" => ReservationStatus::Waiting,
            _ => ReservationStatus::Booked,
        },
    }
}

fn end_reason(s: &str) -> EndReason {
    match s {
        "released" => EndReason::Released,
        "rebooked" => EndReason::Rebooked,
        "unclaimed" => EndReason::Unclaimed,
        "lease_lapsed" => EndReason::LeaseLapsed,
        "lab_changed" => EndReason::LabChanged,
        "holder_ended" => EndReason::HolderEnded,
        _ => EndReason::WindowEnded,
    }
}

/// Ends the active reservations whose deadline passed: `expired`, with why, at their
/// deadline. `{WHERE}` narrows it (to one resource in [`REAP`], through its index).
macro_rules! reap {
    ($where:literal) => {
        concat!(
            "UPDATE lab_reservations
    SET state = 'expired',
        ended_at = lab_deadline(state, claim_by, lease_until, during),
        end_reason = CASE WHEN state = 'booked' THEN 'unclaimed'
                          WHEN lease_until IS NOT NULL AND lease_until < upper(during) THEN 'lease_lapsed'
                          ELSE 'window_ended' END,
        change = 'expired', changed_by = $1
    WHERE state IN ('booked', 'held')
      AND lab_deadline(state, claim_by, lease_until, during) <= now()",
            $where
        )
    };
}

/// [`reap!`] for resource `$2`.
pub(crate) const REAP: &str = reap!(" AND resource = $2");
/// [`reap!`] for every resource.
const REAP_ALL: &str = reap!("");

/// What the audit found: each count must be 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct BookAudit {
    /// Pairs of live reservations of one exclusive resource whose windows overlap.
    pub live_overlaps: i64,
    /// The same among active rows (live or lapsed but not yet recorded as expired).
    pub active_overlaps: i64,
    /// Shared resources whose live reservations take more than their capacity at once.
    pub over_capacity: i64,
}

impl BookAudit {
    pub fn clean(&self) -> bool {
        *self == BookAudit::default()
    }
}

impl LabBook {
    /// One reservation, live or ended.
    pub async fn get(&self, id: ResId) -> LabResult<Option<LabReservation>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLS} FROM lab_reservations WHERE id = $1"),
                &[&(id.0 as i64)],
            )
            .await?;
        Ok(row.as_ref().map(from_row))
    }

    /// Every live reservation (by the database's clock), by resource and start.
    pub async fn live(&self) -> LabResult<Vec<LabReservation>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!("SELECT {COLS} FROM lab_live ORDER BY resource, lower(during), id"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Ended reservations, the last ended first, at most `limit` (lapsed ones are
    /// recorded first, so they are listed).
    pub async fn history(&self, limit: u32) -> LabResult<Vec<LabReservation>> {
        self.sweep().await?;
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLS} FROM lab_reservations WHERE ended_at IS NOT NULL
                     ORDER BY ended_at DESC, id DESC LIMIT $1"
                ),
                &[&i64::from(limit)],
            )
            .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Record every reservation whose deadline passed as expired (told like every change).
    /// Nothing depends on it: lapsed reservations stop counting at their deadline and
    /// writers end them on their resource; this only makes the record and the notice
    /// come sooner. Returns how many it ended.
    pub async fn sweep(&self) -> LabResult<u64> {
        let client = self.pool.get().await?;
        let n = client.execute(REAP_ALL, &[&&*self.server]).await?;
        Ok(n)
    }

    /// Look for double bookings and shared resources over capacity.
    pub async fn audit(&self) -> LabResult<BookAudit> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT
                  (SELECT count(*) FROM lab_live a JOIN lab_live b
                     ON a.resource = b.resource AND a.id < b.id AND a.during && b.during
                   WHERE a.exclusive AND b.exclusive),
                  (SELECT count(*) FROM lab_reservations a JOIN lab_reservations b
                     ON a.resource = b.resource AND a.id < b.id AND a.during && b.during
                   WHERE a.exclusive AND b.exclusive
                     AND a.state IN ('booked', 'held') AND b.state IN ('booked', 'held')),
                  (SELECT count(DISTINCT r.name) FROM lab_resources r
                     JOIN lab_live a ON a.resource = r.name
                   WHERE r.kind = 'shared'
                     AND (SELECT sum(b.units) FROM lab_live b
                          WHERE b.resource = r.name AND b.during @> lower(a.during)) > r.capacity)",
                &[],
            )
            .await?;
        Ok(BookAudit {
            live_overlaps: row.get(0),
            active_overlaps: row.get(1),
            over_capacity: row.get(2),
        })
    }
}
