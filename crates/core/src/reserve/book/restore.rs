//! Reloading the live reservations after a restart: what no longer fits the lab (a
//! resource gone, a capacity lowered) ends with `LabChanged`, then everything already due
//! is swept with its usual events.

use super::{Book, Entry};
use crate::reserve::types::*;

impl Book {
    /// Reload live reservations after a restart. Entries whose resource is gone or that no
    /// longer fit (capacity lowered) are dropped with `LabChanged`; then everything already
    /// due is swept, so expired ones are dropped with their usual events.
    pub fn restore(&mut self, mut saved: Vec<ReservationView>, next_id: u64, next_seq: u64) {
        self.next_seq = self.next_seq.max(next_seq);
        saved.sort_by_key(|v| (v.created_at, v.id));
        let now = self.now();
        for v in saved {
            self.next_id = self.next_id.max(v.id.0 + 1);
            if self.entries.contains_key(&v.id.0) {
                continue;
            }
            let fits = self.by_name.get(&v.resource).copied().and_then(|r| {
                let weight = self.weight_for(r, v.mode).ok()?;
                (v.end > v.start
                    && self.find_slot(r, v.start, v.end.saturating_sub(v.start), weight, None)
                        == v.start)
                    .then_some((r, weight))
            });
            let Some((res, weight)) = fits else {
                let view = v.clone();
                self.emit(
                    now,
                    BookEventKind::Expired,
                    Some(EndReason::LabChanged),
                    view,
                );
                continue;
            };
            let entry = Entry {
                res,
                mode: v.mode,
                weight,
                holder: v.holder,
                config: v.config,
                needed_at: v.needed_at,
                start: v.start,
                end: v.end,
                created_at: v.created_at,
                expires: v.expires,
                claimed_at: v.claimed_at,
                lease_ms: v.lease_ms,
                auto_claim: v.auto_claim,
            };
            self.insert_entry(v.id.0, entry);
        }
        self.next_id = self.next_id.max(next_id);
        // Restored waiters need not sit at their earliest window.
        for res in &mut self.resources {
            res.waiters_settled = false;
        }
        self.sweep(now);
    }
}
