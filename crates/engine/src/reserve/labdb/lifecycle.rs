//! A reservation's life in the lab database, kissats' ATS client calls as in
//! `testbay_core::reserve::Book`: `request` books the earliest window as a pre-reservation
//! (claimable for `claim_grace_ms` from its start); `claim` on time gets the window as
//! booked, a late one keeps its whole duration from now if that is free and is booked anew
//! otherwise (a lapsed pre-reservation too, while remembered); `renew` moves a lease's end;
//! `extend` moves a window's end later when nothing is booked there; `release` ends the
//! range; `hold` is an operator's reservation, claimed from its window's start.
//!
//! Each call is one transaction (a request on an exclusive resource: a few statements,
//! each its own). On an exclusive resource it checks the free time and writes; should another server have booked the same time in between, the exclusion
//! constraint refuses the write and the call starts again (at most `MAX_TRIES` times, as
//! after a deadlock the database broke). On
//! a shared resource it first locks the resource's row, so the sum it checks stays true
//! until it commits.

use deadpool_postgres::{GenericClient, Transaction};

use super::error::{is_exclusion, LabError, LabResult};
use super::queries::{from_row, LabReservation, LabState, COLS, NCOLS, REAP};
use super::slots::{earliest_exclusive, earliest_shared, peak, Busy};
use super::{LabBook, MAX_TRIES};
use crate::clock::EpochMs;
use crate::reserve::{
    ClaimOutcome, EndReason, Holder, PreReservation, ResId, Reservation, ReservationMode,
    ReservationRequest, Window,
};

/// What one try of a write came to.
enum Step<T> {
    Done(T),
    /// Another server wrote first (an exclusion violation); the error to give if this was
    /// the last try.
    Raced(LabError),
}

/// A resource as one transaction sees it.
struct Res {
    name: String,
    exclusive: bool,
    capacity: u32,
    now: EpochMs,
}

/// What a new row is booked for.
struct NewRow<'a> {
    mode: ReservationMode,
    units: u32,
    holder: &'a Holder,
    user: Option<&'a str>,
    needed_at: EpochMs,
    lease_ms: Option<i64>,
    /// An operator hold: held from its window's start (its lease, if any, running from
    /// then), nobody claims it.
    auto_claim: bool,
}

fn not_free(res: &Res, units: u32, requested: Window) -> LabError {
    if res.exclusive {
        LabError::Conflict {
            resource: res.name.clone(),
            requested,
        }
    } else {
        LabError::Capacity {
            resource: res.name.clone(),
            capacity: res.capacity,
            units,
            requested,
        }
    }
}

fn window(start: EpochMs, dur: i64) -> Window {
    Window {
        start,
        end: start.saturating_add(dur),
    }
}

impl LabBook {
    /// Run `f` until it is done or has lost `MAX_TRIES` races.
    async fn tries<T, F, Fut>(&self, mut f: F) -> LabResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = LabResult<Step<T>>>,
    {
        let mut last = None;
        for _ in 0..MAX_TRIES {
            match f().await {
                Ok(Step::Done(v)) => return Ok(v),
                Ok(Step::Raced(e)) => last = Some(e),
                // Two servers' writes locked each other's rows (a lapsed reservation each
                // ends while booking): the database failed one; it starts again.
                Err(e @ LabError::Contention(_)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one try"))
    }

    /// The resource `name`, its row locked with `lock`; the statement's `now`.
    async fn resource(&self, tx: &impl GenericClient, name: &str, lock: bool) -> LabResult<Res> {
        let sql = if lock {
            "SELECT kind, capacity, testbay_ms(now()) FROM lab_resources WHERE name = $1 FOR UPDATE"
        } else {
            "SELECT kind, capacity, testbay_ms(now()) FROM lab_resources WHERE name = $1"
        };
        let stmt = tx.prepare_cached(sql).await?;
        let Some(row) = tx.query_opt(&stmt, &[&name]).await? else {
            let names = tx
                .query("SELECT name FROM lab_resources", &[])
                .await?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>();
            return Err(LabError::UnknownResource {
                name: name.to_string(),
                suggestion: crate::diag::did_you_mean(name, names.iter().map(String::as_str))
                    .map(str::to_string),
            });
        };
        let kind: &str = row.get(0);
        let res = Res {
            name: name.to_string(),
            exclusive: kind == "exclusive",
            capacity: row.get::<_, i32>(1).max(1) as u32,
            now: row.get(2),
        };
        Ok(res)
    }

    /// End the lapsed reservations of `resource`, so they no longer block a write.
    async fn reap(&self, tx: &impl GenericClient, resource: &str) -> LabResult<()> {
        let stmt = tx.prepare_cached(REAP).await?;
        tx.execute(&stmt, &[&&*self.server, &resource]).await?;
        Ok(())
    }

    /// The live reservations of `resource` ending after `from`, by start (not `skip`).
    async fn busy(
        &self,
        tx: &impl GenericClient,
        resource: &str,
        from: EpochMs,
        skip: Option<ResId>,
    ) -> LabResult<Vec<Busy>> {
        let stmt = tx
            .prepare_cached(
                "SELECT testbay_ms(lower(during)), testbay_ms(upper(during)), units
                 FROM lab_reservations
                 WHERE resource = $1 AND state IN ('booked', 'held')
                   AND lab_deadline(state, claim_by, lease_until, during) > now()
                   AND upper(during) > testbay_ts($2) AND id <> $3
                 ORDER BY lower(during)",
            )
            .await?;
        let skip = skip.map_or(-1, |id| id.0 as i64);
        Ok(tx
            .query(&stmt, &[&resource, &from, &skip])
            .await?
            .iter()
            .map(|r| Busy {
                start: r.get(0),
                end: r.get(1),
                units: r.get::<_, i32>(2).max(0) as u32,
            })
            .collect())
    }

    /// Whether `units` more fit in `[start, start + dur)` of `res` (not counting `skip`).
    async fn fits(
        &self,
        tx: &Transaction<'_>,
        res: &Res,
        w: Window,
        units: u32,
        skip: ResId,
    ) -> LabResult<bool> {
        let busy = self.busy(tx, &res.name, w.start, Some(skip)).await?;
        Ok(if res.exclusive {
            !busy.iter().any(|b| b.start < w.end && w.start < b.end)
        } else {
            peak(&busy, w.start, w.end) + units <= res.capacity
        })
    }

    /// Book the earliest window of `dur` from `from` (exactly `from` unless
    /// `next_available`) for `row`, within the caller's transaction (or, on an exclusive
    /// resource, statement by statement: the constraint keeps the book right).
    #[allow(clippy::too_many_arguments)]
    async fn book(
        &self,
        tx: &impl GenericClient,
        res: &Res,
        row: &NewRow<'_>,
        from: EpochMs,
        dur: i64,
        next_available: bool,
    ) -> LabResult<Step<PreReservation>> {
        self.reap(tx, &res.name).await?;
        let busy = self.busy(tx, &res.name, from, None).await?;
        let start = if res.exclusive {
            Some(earliest_exclusive(&busy, from, dur))
        } else {
            earliest_shared(&busy, from, dur, row.units, res.capacity)
        };
        let Some(start) = start.filter(|&s| next_available || s == from) else {
            return Err(not_free(res, row.units, window(from, dur)));
        };
        let end = start.checked_add(dur).ok_or(LabError::OutOfRange {
            from: start,
            duration_ms: dur,
        })?;
        // A hold with a lease runs it from its window's start, or from the database's
        // now (not this server's clock) when that is later.
        let (state, claim_by, claimed_at, leased) = if row.auto_claim {
            ("held", None, Some(start), row.lease_ms.is_some())
        } else {
            (
                "booked",
                Some(start.saturating_add(self.cfg.claim_grace_ms)),
                None,
                false,
            )
        };
        let lease_ms = row.lease_ms;
        let (kind, run_id, lane, task, operator) = match row.holder {
            Holder::Run { run_id, lane, task } => (
                "run",
                Some(run_id.as_str()),
                Some(lane.as_str()),
                task.as_deref(),
                None,
            ),
            Holder::Operator { name } => ("operator", None, None, None, Some(name.as_str())),
        };
        let mode = match row.mode {
            ReservationMode::Exclusive => "exclusive",
            ReservationMode::Shared => "shared",
        };
        let change = if row.auto_claim {
            "held"
        } else if start > row.needed_at {
            "waiting"
        } else {
            "requested"
        };
        let stmt = tx
            .prepare_cached(
                "INSERT INTO lab_reservations (resource, exclusive, mode, units, holder_kind,
                    run_id, lane, task, operator, server, user_name, needed_at, during, state,
                    claim_by, lease_ms, claimed_at, change, changed_by, lease_until)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, testbay_ts($12),
                    tstzrange(testbay_ts($13), testbay_ts($14)), $15, testbay_ts($16), $17,
                    testbay_ts($18), $19, $10,
                    CASE WHEN $20::boolean THEN least(greatest(now(), testbay_ts($13))
                        + $17::bigint * interval '1 millisecond', testbay_ts($14)) END)
                 RETURNING id",
            )
            .await?;
        let units = row.units as i32;
        let inserted = tx
            .query_one(
                &stmt,
                &[
                    &res.name,
                    &res.exclusive,
                    &mode,
                    &units,
                    &kind,
                    &run_id,
                    &lane,
                    &task,
                    &operator,
                    &&*self.server,
                    &row.user,
                    &row.needed_at,
                    &start,
                    &end,
                    &state,
                    &claim_by,
                    &lease_ms,
                    &claimed_at,
                    &change,
                    &leased,
                ],
            )
            .await;
        match inserted {
            Ok(r) => Ok(Step::Done(PreReservation {
                id: ResId(r.get::<_, i64>(0) as u64),
                available_from: start,
                expires: claim_by.unwrap_or(start),
            })),
            Err(e) if is_exclusion(&e) => {
                Ok(Step::Raced(not_free(res, row.units, window(start, dur))))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// kissats `request_reservation`: a pre-reservation for the earliest window at or
    /// after `time_needed` (or exactly then, with `next_available == false`), for `user`.
    /// `auto_claim` makes it an operator hold, held from its window's start.
    pub async fn request(
        &self,
        req: ReservationRequest<'_>,
        user: Option<&str>,
    ) -> LabResult<PreReservation> {
        if req.duration_ms <= 0 {
            return Err(LabError::InvalidDuration(req.duration_ms));
        }
        self.tries(|| self.try_request(&req, user)).await
    }

    async fn try_request(
        &self,
        req: &ReservationRequest<'_>,
        user: Option<&str>,
    ) -> LabResult<Step<PreReservation>> {
        let mut client = self.pool.get().await?;
        let looked = self.resource(&client, req.resource, false).await?;
        if looked.exclusive {
            // No transaction: a lapsed reservation is ended, the free time read and the
            // row inserted, each on its own; the constraint refuses an insert that lost
            // a race, and the request starts again.
            return self.book_request(&client, &looked, req, user).await;
        }
        let tx = client.transaction().await?;
        let res = self.resource(&tx, req.resource, true).await?;
        let step = self.book_request(&tx, &res, req, user).await?;
        if let Step::Done(_) = step {
            tx.commit().await?;
        }
        Ok(step)
    }

    async fn book_request(
        &self,
        db: &impl GenericClient,
        res: &Res,
        req: &ReservationRequest<'_>,
        user: Option<&str>,
    ) -> LabResult<Step<PreReservation>> {
        let units = match (res.exclusive, req.mode) {
            (true, ReservationMode::Shared) => {
                return Err(LabError::ModeMismatch {
                    resource: res.name.clone(),
                    requested: req.mode,
                })
            }
            (_, ReservationMode::Exclusive) => res.capacity,
            (false, ReservationMode::Shared) => 1,
        };
        let needed_at = req.time_needed.unwrap_or(res.now).max(res.now);
        if needed_at.checked_add(req.duration_ms).is_none() {
            return Err(LabError::OutOfRange {
                from: needed_at,
                duration_ms: req.duration_ms,
            });
        }
        let row = NewRow {
            mode: req.mode,
            units,
            holder: &req.holder,
            user,
            needed_at,
            lease_ms: req.lease_ms.filter(|l| *l > 0),
            auto_claim: req.auto_claim,
        };
        self.book(
            db,
            res,
            &row,
            needed_at,
            req.duration_ms,
            req.next_available,
        )
        .await
    }

    /// An operator's hold of `resource` for `duration_ms` from `from` (or now), the next
    /// free window with `next_available`: held from its start, no lease.
    pub async fn hold(
        &self,
        resource: &str,
        operator: &str,
        user: Option<&str>,
        from: Option<EpochMs>,
        duration_ms: i64,
        next_available: bool,
    ) -> LabResult<LabReservation> {
        let mut req = ReservationRequest::new(
            resource,
            Holder::Operator {
                name: operator.to_string(),
            },
            duration_ms,
        )
        .next_available(next_available)
        .auto_claim(true);
        req.time_needed = from;
        let pre = self.request(req, user).await?;
        self.get(pre.id).await?.ok_or(LabError::UnknownId(pre.id))
    }

    /// kissats `claim_reservation`: on time, the window as booked; late, the whole
    /// duration from now if that is free, else a new pre-reservation replaces it (also
    /// for a pre-reservation that lapsed within `lapsed_memory_ms`).
    pub async fn claim(&self, id: ResId) -> LabResult<ClaimOutcome> {
        self.tries(|| self.try_claim(id)).await
    }

    /// The reservation `id` locked for change, with the transaction's `now`; its resource
    /// locked first when shared (always resource, then reservation: no deadlock).
    async fn lock_reservation(
        &self,
        tx: &Transaction<'_>,
        id: ResId,
    ) -> LabResult<(Res, LabReservation)> {
        let head = tx
            .prepare_cached("SELECT resource, exclusive FROM lab_reservations WHERE id = $1")
            .await?;
        let Some(h) = tx.query_opt(&head, &[&(id.0 as i64)]).await? else {
            return Err(LabError::UnknownId(id));
        };
        let resource: String = h.get(0);
        let exclusive: bool = h.get(1);
        let res = self.resource(tx, &resource, !exclusive).await?;
        let stmt = tx
            .prepare_cached(&format!(
                "SELECT {COLS} FROM lab_reservations WHERE id = $1 FOR UPDATE"
            ))
            .await?;
        let row = tx.query_one(&stmt, &[&(id.0 as i64)]).await?;
        debug_assert_eq!(row.len(), NCOLS);
        Ok((res, from_row(&row)))
    }

    async fn try_claim(&self, id: ResId) -> LabResult<Step<ClaimOutcome>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let (res, r) = self.lock_reservation(&tx, id).await?;
        let now = res.now;
        let dur = r.end.saturating_sub(r.start);
        let lapsed = match r.state {
            LabState::Held if r.live => return Err(LabError::AlreadyClaimed(id)),
            LabState::Held => return Err(LabError::LeaseLost(id)),
            LabState::Booked => !r.live,
            LabState::Expired => {
                r.end_reason == Some(EndReason::Unclaimed)
                    && r.ended_at
                        .is_some_and(|t| now < t.saturating_add(self.cfg.lapsed_memory_ms))
            }
            LabState::Released | LabState::Rebooked => false,
        };
        if !r.live && !lapsed {
            return Err(LabError::UnknownId(id));
        }
        if r.live {
            if now < r.start {
                return Err(LabError::ClaimTooEarly {
                    id,
                    available_from: r.start,
                });
            }
            let w = if now <= r.start.saturating_add(self.cfg.on_time_ms) {
                Some(Window {
                    start: r.start,
                    end: r.end,
                })
            } else {
                // Late: the holder still needs the whole duration, from now.
                let w = window(now, dur);
                self.reap(&tx, &res.name).await?;
                self.fits(&tx, &res, w, r.units, id).await?.then_some(w)
            };
            if let Some(w) = w {
                return match self.set_claimed(&tx, id, w).await {
                    Ok(rsv) => {
                        tx.commit().await?;
                        Ok(Step::Done(ClaimOutcome::Claimed(rsv)))
                    }
                    Err(e) if is_exclusion(&e) => Ok(Step::Raced(not_free(&res, r.units, w))),
                    Err(e) => Err(e.into()),
                };
            }
        }
        // Booked anew from now: the old one ends as rebooked (a lapsed one too, so a
        // second late claim of it finds nothing to book again).
        let end = tx
            .prepare_cached(
                "UPDATE lab_reservations SET state = 'rebooked', ended_at = coalesce(ended_at, now()),
                    end_reason = 'rebooked', change = 'rebooked', changed_by = $2
                 WHERE id = $1",
            )
            .await?;
        tx.execute(&end, &[&(id.0 as i64), &&*self.server]).await?;
        let row = NewRow {
            mode: r.mode,
            units: r.units,
            holder: &r.holder,
            user: r.user.as_deref(),
            needed_at: now,
            lease_ms: r.lease_ms,
            auto_claim: false,
        };
        match self.book(&tx, &res, &row, now, dur, true).await? {
            Step::Done(pre) => {
                tx.commit().await?;
                Ok(Step::Done(ClaimOutcome::Rebooked {
                    pre_reservation_id: pre.id,
                    new_avail: pre.available_from,
                    new_expire: pre.expires,
                }))
            }
            Step::Raced(e) => Ok(Step::Raced(e)),
        }
    }

    async fn set_claimed(
        &self,
        tx: &Transaction<'_>,
        id: ResId,
        w: Window,
    ) -> Result<Reservation, tokio_postgres::Error> {
        let stmt = tx
            .prepare_cached(
                "UPDATE lab_reservations SET state = 'held', claimed_at = now(), claim_by = NULL,
                    during = tstzrange(testbay_ts($2), testbay_ts($3)),
                    lease_until = CASE WHEN lease_ms IS NULL THEN NULL
                        ELSE least(now() + lease_ms * interval '1 millisecond', testbay_ts($3)) END,
                    change = 'claimed', changed_by = $4
                 WHERE id = $1
                 RETURNING testbay_ms(upper(during)), testbay_ms(coalesce(lease_until, upper(during)))",
            )
            .await?;
        let row = tx
            .query_one(&stmt, &[&(id.0 as i64), &w.start, &w.end, &&*self.server])
            .await?;
        Ok(Reservation {
            id,
            expire_time: row.get(0),
            lease_until: row.get(1),
            resource_config: serde_json::Value::Null,
        })
    }

    /// Renew the lease of a claimed reservation: it now lapses `lease_ms` from the
    /// database's now, or from its window's start if that is later (a hold renewed
    /// before it begins), never after its window ends. A lapsed lease is lost for good.
    pub async fn renew(&self, id: ResId) -> LabResult<Reservation> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE lab_reservations
                 SET lease_until = CASE WHEN lease_ms IS NULL THEN NULL
                        ELSE least(greatest(now(), lower(during)) + lease_ms * interval '1 millisecond',
                                   upper(during)) END,
                     change = 'renewed', changed_by = $2
                 WHERE id = $1 AND state = 'held'
                   AND lab_deadline(state, claim_by, lease_until, during) > now()
                 RETURNING testbay_ms(upper(during)), testbay_ms(coalesce(lease_until, upper(during)))",
            )
            .await?;
        if let Some(row) = client
            .query_opt(&stmt, &[&(id.0 as i64), &&*self.server])
            .await?
        {
            return Ok(Reservation {
                id,
                expire_time: row.get(0),
                lease_until: row.get(1),
                resource_config: serde_json::Value::Null,
            });
        }
        drop(client);
        Err(match self.get(id).await? {
            None => LabError::UnknownId(id),
            Some(r) if r.state == LabState::Booked && r.live => LabError::NotClaimed(id),
            Some(_) => LabError::LeaseLost(id),
        })
    }

    /// Move the end of a live reservation's window to `new_end`, if nothing else is booked
    /// there ([`LabError::Conflict`] / [`LabError::Capacity`] otherwise). An earlier or
    /// equal end changes nothing.
    pub async fn extend(&self, id: ResId, new_end: EpochMs) -> LabResult<Reservation> {
        self.tries(|| self.try_extend(id, new_end)).await
    }

    async fn try_extend(&self, id: ResId, new_end: EpochMs) -> LabResult<Step<Reservation>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let (res, r) = self.lock_reservation(&tx, id).await?;
        if !r.live {
            return Err(match r.state {
                LabState::Held => LabError::LeaseLost(id),
                _ => LabError::UnknownId(id),
            });
        }
        let current = |end: EpochMs, lease: Option<EpochMs>| Reservation {
            id,
            expire_time: end,
            lease_until: lease.unwrap_or(end),
            resource_config: serde_json::Value::Null,
        };
        if new_end <= r.end {
            return Ok(Step::Done(current(r.end, r.expires)));
        }
        let extra = Window {
            start: r.end,
            end: new_end,
        };
        self.reap(&tx, &res.name).await?;
        if !self.fits(&tx, &res, extra, r.units, id).await? {
            return Err(not_free(&res, r.units, extra));
        }
        let stmt = tx
            .prepare_cached(
                "UPDATE lab_reservations
                 SET during = tstzrange(lower(during), testbay_ts($2)),
                     change = 'extended', changed_by = $3
                 WHERE id = $1
                 RETURNING testbay_ms(upper(during)),
                           testbay_ms(lab_deadline(state, claim_by, lease_until, during))",
            )
            .await?;
        match tx
            .query_one(&stmt, &[&(id.0 as i64), &new_end, &&*self.server])
            .await
        {
            Ok(row) => {
                tx.commit().await?;
                Ok(Step::Done(current(row.get(0), row.get(1))))
            }
            Err(e) if is_exclusion(&e) => Ok(Step::Raced(not_free(&res, r.units, extra))),
            Err(e) => Err(e.into()),
        }
    }

    /// kissats `release_resource`: end a reservation or pre-reservation now (a window
    /// under way ends at now). Releasing one that already ended changes nothing.
    pub async fn release(&self, id: ResId) -> LabResult<()> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE lab_reservations
                 SET state = 'released', ended_at = now(), end_reason = 'released',
                     during = CASE WHEN lower(during) < now() AND upper(during) > now()
                                   THEN tstzrange(lower(during), now()) ELSE during END,
                     change = 'released', changed_by = $2
                 WHERE id = $1 AND state IN ('booked', 'held')",
            )
            .await?;
        let n = client
            .execute(&stmt, &[&(id.0 as i64), &&*self.server])
            .await?;
        if n == 0 {
            let exists = client
                .query_opt(
                    "SELECT 1 FROM lab_reservations WHERE id = $1",
                    &[&(id.0 as i64)],
                )
                .await?
                .is_some();
            if !exists {
                return Err(LabError::UnknownId(id));
            }
        }
        Ok(())
    }
}
