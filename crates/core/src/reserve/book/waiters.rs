//! Operator holds (auto-claim) booked later than asked wait on their resource: when it
//! frees time, each moves to the earliest window now possible (never before it asked for
//! it). Waiters are kept settled at their earliest window, so a release only re-checks the
//! waiters whose possible windows overlap what it freed; once one moves, the room it left
//! may help any waiter after it, so all are checked.

use super::{Book, Index};
use crate::clock::EpochMs;
use crate::reserve::types::BookEventKind;

impl Book {
    /// `r` freed `freed` at `at`: move operator holds waiting on it to their earliest window
    /// now possible (never before they asked for it).
    pub(super) fn promote(&mut self, r: u32, at: EpochMs, freed: (EpochMs, EpochMs)) {
        let mut waiting = std::mem::take(&mut self.scratch);
        waiting.clear();
        waiting.extend(self.resources[r as usize].waiters.iter().copied());
        // Settled waiters can only move into windows that overlap the freed interval; once
        // one moves, the room it left may help any waiter after it, so check them all.
        let mut check_all = !self.resources[r as usize].waiters_settled;
        let mut moved = false;
        for &(start, id) in &waiting {
            let e = &self.entries[&id];
            let (dur, weight, from) =
                (e.end.saturating_sub(e.start), e.weight, e.needed_at.max(at));
            if from >= start {
                continue;
            }
            // Every window it could move to lies in [from, start + dur).
            if !check_all && (freed.1 <= from || freed.0 >= start.saturating_add(dur)) {
                continue;
            }
            let s = match &mut self.resources[r as usize].index {
                // The earliest window with this hold's own interval left out: no need to
                // take it out of the index and put it back when it cannot move.
                Index::Exclusive(ix) => {
                    let s = ix.earliest_before(from, dur, Some(id), start);
                    if s >= start {
                        continue;
                    }
                    ix.remove(start);
                    ix.insert(s, s.saturating_add(dur), id);
                    s
                }
                Index::Shared(_) => {
                    let end = start.saturating_add(dur);
                    self.vacate(r, start, end, weight);
                    let s = self.find_slot(r, from, dur, weight, None);
                    if s >= start {
                        self.occupy(r, start, end, weight, id);
                        continue;
                    }
                    self.occupy(r, s, s.saturating_add(dur), weight, id);
                    s
                }
            };
            moved = true;
            check_all = true;
            let e = self.entries.get_mut(&id).expect("entry");
            e.start = s;
            e.end = s.saturating_add(dur);
            let still_waiting = s > e.needed_at;
            let waiters = &mut self.resources[r as usize].waiters;
            waiters.remove(&(start, id));
            if still_waiting {
                waiters.insert((s, id));
            }
            self.set_expires(id, s);
            let kind = if still_waiting {
                BookEventKind::Waiting
            } else {
                BookEventKind::Requested
            };
            let view = self.view(id, &self.entries[&id]);
            self.emit(at, kind, None, view);
        }
        self.resources[r as usize].waiters_settled = !moved;
        self.scratch = waiting;
    }
}
