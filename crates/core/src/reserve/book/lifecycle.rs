//! A reservation's life, kissats' ATS client calls: `request` books the earliest window
//! (a pre-reservation, claimable for `claim_grace_ms` from its start); `claim` on time
//! (within `on_time_ms` of the start) gets the window as booked, a late claim keeps the
//! whole duration from now if that is free and is booked anew otherwise (a lapsed
//! pre-reservation too, while it is remembered); a claim with a lease lapses unless
//! renewed; `extend` moves a window's end later when nothing is booked there; `release`
//! and `release_ended` give back, moving up the holds that wait on the resource.

use std::sync::Arc;

use super::{overlay, record, Book, Entry};
use crate::clock::EpochMs;
use crate::reserve::error::BookError;
use crate::reserve::types::*;

impl Book {
    /// Book the earliest window from `from` for a template entry and record the event.
    /// A window that would end past the last instant an `EpochMs` holds is refused.
    fn book_pre(
        &mut self,
        mut e: Entry,
        from: EpochMs,
        duration: i64,
        now: EpochMs,
    ) -> Result<PreReservation, BookError> {
        let start = self.find_slot(e.res, from, duration, e.weight, None);
        let end = start.checked_add(duration).ok_or(BookError::OutOfRange {
            from: start,
            duration_ms: duration,
        })?;
        e.start = start;
        e.end = end;
        e.created_at = now;
        e.claimed_at = None;
        e.expires = if e.auto_claim {
            start
        } else {
            start.saturating_add(self.cfg.claim_grace_ms)
        };
        let id = self.next_id;
        self.next_id += 1;
        let kind = if start > e.needed_at {
            BookEventKind::Waiting
        } else {
            BookEventKind::Requested
        };
        let expires = e.expires;
        record(
            &mut self.events,
            &mut self.next_seq,
            now,
            kind,
            None,
            &self.resources[e.res as usize].name,
            id,
            &e,
        );
        self.insert_entry(id, e);
        Ok(PreReservation {
            id: ResId(id),
            available_from: start,
            expires,
        })
    }

    /// kissats `request_reservation`: a pre-reservation for the earliest window at or after
    /// `time_needed` (or exactly then, with `next_available == false`).
    pub fn request(&mut self, req: ReservationRequest<'_>) -> Result<PreReservation, BookError> {
        let now = self.now();
        self.sweep(now);
        if req.duration_ms <= 0 {
            return Err(BookError::InvalidDuration(req.duration_ms));
        }
        let r = self.res_idx(req.resource)?;
        let weight = self.weight_for(r, req.mode)?;
        let needed_at = req.time_needed.unwrap_or(now).max(now);
        if needed_at.checked_add(req.duration_ms).is_none() {
            return Err(BookError::OutOfRange {
                from: needed_at,
                duration_ms: req.duration_ms,
            });
        }
        if !req.next_available {
            let start = self.find_slot(r, needed_at, req.duration_ms, weight, None);
            if start != needed_at {
                return Err(BookError::ResourceUnavailable {
                    resource: req.resource.to_string(),
                    requested: Window {
                        start: needed_at,
                        end: needed_at.saturating_add(req.duration_ms),
                    },
                    next: Window {
                        start,
                        end: start.saturating_add(req.duration_ms),
                    },
                });
            }
        }
        let template = Entry {
            res: r,
            mode: req.mode,
            weight,
            holder: req.holder,
            config: if req.config.is_null() {
                self.null_config.clone()
            } else {
                Arc::new(req.config)
            },
            needed_at,
            start: 0,
            end: 0,
            created_at: now,
            expires: 0,
            claimed_at: None,
            lease_ms: req.lease_ms.filter(|l| *l > 0),
            auto_claim: req.auto_claim,
        };
        self.book_pre(template, needed_at, req.duration_ms, now)
    }

    pub(super) fn claimed(&mut self, id: u64, at: EpochMs) -> Reservation {
        let e = self.entries.get_mut(&id).expect("entry");
        if e.auto_claim {
            self.resources[e.res as usize]
                .waiters
                .remove(&(e.start, id));
        }
        e.claimed_at = Some(at);
        let lease_until = e.lease_until(at);
        let old_expires = e.expires;
        e.expires = lease_until;
        let res = &mut self.resources[e.res as usize];
        let config = overlay(&res.config, &e.config);
        if matches!(res.kind, ResourceKind::Exclusive) && !e.config.is_null() {
            // The holder configured the resource: that is its current configuration now.
            res.config = config.clone();
        }
        record(
            &mut self.events,
            &mut self.next_seq,
            at,
            BookEventKind::Claimed,
            None,
            &res.name,
            id,
            e,
        );
        let end = e.end;
        if old_expires != lease_until {
            self.push_deadline(lease_until, id);
        }
        Reservation {
            id: ResId(id),
            expire_time: end,
            lease_until,
            resource_config: config,
        }
    }

    /// kissats `claim_reservation`. Claiming on time gives the reservation; claiming late
    /// keeps the full duration from now if that is free, and otherwise releases the old
    /// window and books a new pre-reservation (also for a pre-reservation that lapsed).
    pub fn claim(&mut self, id: ResId) -> Result<ClaimOutcome, BookError> {
        let now = self.now();
        self.sweep(now);
        let Some(e) = self.entries.get(&id.0) else {
            let Some(lapsed) = self.lapsed.remove(&id.0) else {
                return Err(BookError::UnknownId(id));
            };
            let duration = lapsed.entry.end.saturating_sub(lapsed.entry.start);
            let mut template = lapsed.entry;
            template.needed_at = now;
            let pre = self.book_pre(template, now, duration, now)?;
            return Ok(rebooked(pre));
        };
        if e.claimed_at.is_some() {
            return Err(BookError::AlreadyClaimed(id));
        }
        if now < e.start {
            return Err(BookError::ClaimTooEarly {
                id,
                available_from: e.start,
            });
        }
        if now <= e.start.saturating_add(self.cfg.on_time_ms) {
            return Ok(ClaimOutcome::Claimed(self.claimed(id.0, now)));
        }
        // Late: the holder still needs the whole duration, from now.
        let duration = e.end.saturating_sub(e.start);
        if e.auto_claim {
            self.resources[e.res as usize]
                .waiters
                .remove(&(e.start, id.0));
        }
        let (res, weight, old_start, old_end) = (e.res, e.weight, e.start, e.end);
        self.vacate(res, old_start, old_end, weight);
        let start = self.find_slot(res, now, duration, weight, None);
        if start == now {
            self.occupy(res, now, now.saturating_add(duration), weight, id.0);
            let e = self.entries.get_mut(&id.0).expect("entry");
            e.start = now;
            e.end = now.saturating_add(duration);
            return Ok(ClaimOutcome::Claimed(self.claimed(id.0, now)));
        }
        self.occupy(res, old_start, old_end, weight, id.0);
        let old =
            self.remove_entry_with_event(id.0, now, BookEventKind::Released, EndReason::Rebooked);
        let mut template = old;
        template.needed_at = now;
        let pre = self.book_pre(template, now, duration, now)?;
        Ok(rebooked(pre))
    }

    pub(super) fn remove_entry_with_event(
        &mut self,
        id: u64,
        ts: EpochMs,
        kind: BookEventKind,
        reason: EndReason,
    ) -> Entry {
        let e = self.entries.remove(&id).expect("entry exists");
        self.end_entry(id, e, ts, kind, reason)
    }

    /// Take an entry already removed from `entries` out of the indexes, record its end and
    /// move up the holds waiting on its resource.
    fn end_entry(
        &mut self,
        id: u64,
        e: Entry,
        ts: EpochMs,
        kind: BookEventKind,
        reason: EndReason,
    ) -> Entry {
        self.vacate(e.res, e.start, e.end, e.weight);
        let res = &mut self.resources[e.res as usize];
        // Only unclaimed auto-claim holds are ever in `waiters`.
        if e.auto_claim && e.claimed_at.is_none() {
            res.waiters.remove(&(e.start, id));
        }
        record(
            &mut self.events,
            &mut self.next_seq,
            ts,
            kind,
            Some(reason),
            &res.name,
            id,
            &e,
        );
        if !self.resources[e.res as usize].waiters.is_empty() {
            self.promote(e.res, ts, (e.start, e.end));
        }
        e
    }

    /// kissats `release_resource`: frees a reservation or pre-reservation.
    pub fn release(&mut self, id: ResId) -> Result<(), BookError> {
        let now = self.now();
        self.sweep(now);
        if let Some(e) = self.entries.remove(&id.0) {
            self.end_entry(id.0, e, now, BookEventKind::Released, EndReason::Released);
            // A hold moved up to now starts at once.
            self.sweep(now);
            Ok(())
        } else if self.lapsed.remove(&id.0).is_some() {
            Ok(())
        } else {
            Err(BookError::UnknownId(id))
        }
    }

    /// Give back everything held or booked by holders that are over (`ended`), as
    /// `Released` events with [`EndReason::HolderEnded`]; their lapsed pre-reservations are
    /// forgotten too, so a late claim cannot book for them again. Returns how many
    /// reservations were released.
    pub fn release_ended(&mut self, ended: impl Fn(&Holder) -> bool) -> usize {
        let now = self.now();
        self.sweep(now);
        let mut ids: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| ended(&e.holder))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for &id in &ids {
            self.remove_entry_with_event(id, now, BookEventKind::Released, EndReason::HolderEnded);
        }
        self.lapsed.retain(|_, l| !ended(&l.entry.holder));
        // A hold moved up to now starts at once.
        self.sweep(now);
        ids.len()
    }

    /// Renew the lease of a claimed reservation: it now lapses `lease_ms` from now (never
    /// after its window ends). Without a lease this changes nothing.
    pub fn renew(&mut self, id: ResId) -> Result<Reservation, BookError> {
        let now = self.now();
        self.sweep(now);
        let e = self.entries.get(&id.0).ok_or(BookError::UnknownId(id))?;
        if e.claimed_at.is_none() {
            return Err(BookError::NotClaimed(id));
        }
        let until = e.lease_until(now);
        if until != e.expires {
            self.set_expires(id.0, until);
            self.emit_for(now, BookEventKind::Renewed, None, id.0);
        }
        let e = &self.entries[&id.0];
        Ok(Reservation {
            id,
            expire_time: e.end,
            lease_until: e.expires,
            resource_config: self.effective_config(e),
        })
    }

    /// Move the end of a reservation's window later, if nothing else is booked there.
    pub fn extend(&mut self, id: ResId, new_end: EpochMs) -> Result<Reservation, BookError> {
        let now = self.now();
        self.sweep(now);
        let e = self
            .entries
            .get(&id.0)
            .ok_or(BookError::UnknownId(id))?
            .clone();
        if new_end > e.end {
            let extra = new_end.saturating_sub(e.end);
            let free_from = self.find_slot(e.res, e.end, extra, e.weight, Some(id.0));
            if free_from != e.end {
                return Err(BookError::ResourceUnavailable {
                    resource: self.resources[e.res as usize].name.to_string(),
                    requested: Window {
                        start: e.end,
                        end: new_end,
                    },
                    next: Window {
                        start: free_from,
                        end: free_from.saturating_add(extra),
                    },
                });
            }
            self.vacate(e.res, e.start, e.end, e.weight);
            self.occupy(e.res, e.start, new_end, e.weight, id.0);
            self.entries.get_mut(&id.0).expect("entry").end = new_end;
            if e.claimed_at.is_some() && e.lease_ms.is_none() {
                self.set_expires(id.0, new_end);
            }
            self.emit_for(now, BookEventKind::Extended, None, id.0);
        }
        let e = &self.entries[&id.0];
        Ok(Reservation {
            id,
            expire_time: e.end,
            lease_until: e.expires,
            resource_config: self.effective_config(e),
        })
    }

    /// Give back an [`Self::extend`] of `id` whose window ended at `old_end` before it
    /// (one the database under the book refused): its window ends there again.
    pub fn unextend(&mut self, id: ResId, old_end: EpochMs) -> Result<(), BookError> {
        let now = self.now();
        let e = self
            .entries
            .get(&id.0)
            .ok_or(BookError::UnknownId(id))?
            .clone();
        if old_end >= e.end || old_end <= e.start {
            return Ok(());
        }
        self.vacate(e.res, e.start, e.end, e.weight);
        self.occupy(e.res, e.start, old_end, e.weight, id.0);
        self.entries.get_mut(&id.0).expect("entry").end = old_end;
        if e.claimed_at.is_some() && (e.lease_ms.is_none() || e.expires > old_end) {
            self.set_expires(id.0, old_end);
        }
        self.emit_for(now, BookEventKind::Extended, None, id.0);
        Ok(())
    }
}

fn rebooked(pre: PreReservation) -> ClaimOutcome {
    ClaimOutcome::Rebooked {
        pre_reservation_id: pre.id,
        new_avail: pre.available_from,
        new_expire: pre.expires,
    }
}
