//! The sweep: what fell due by now (an unclaimed pre-reservation, a lapsed lease, an ended
//! window, an operator hold whose window starts and is claimed for it) is applied before
//! every operation, and lapsed pre-reservations are forgotten after `lapsed_memory_ms`.
//!
//! Deadlines sit in buckets of [`BUCKET_MS`], sorted (latest first) only once the sweep
//! reaches a bucket. The index is lazy: an item is stale once its entry is gone or has
//! another deadline, and the sweep skips stale items, so releasing or renewing never
//! searches it; when stale items outnumber live ones by far it is rebuilt from the
//! entries. `next_due` makes the sweep cost one comparison when nothing is due.

use super::{Book, Lapsed};
use crate::clock::EpochMs;
use crate::reserve::types::{BookEventKind, EndReason};

/// Width of a deadline bucket.
const BUCKET_MS: EpochMs = 1024;

/// Deadlines falling in one [`BUCKET_MS`] span. Sorted (latest first) once the sweep
/// reaches it, so the sweep pops due items off the end.
#[derive(Default)]
pub(super) struct Bucket {
    items: Vec<(EpochMs, u64)>,
    sorted: bool,
}

impl Bucket {
    fn push(&mut self, item: (EpochMs, u64)) {
        if self.sorted {
            let at = self.items.partition_point(|x| *x > item);
            self.items.insert(at, item);
        } else {
            self.items.push(item);
        }
    }
}

impl Book {
    pub(super) fn set_expires(&mut self, id: u64, expires: EpochMs) {
        let e = self.entries.get_mut(&id).expect("entry exists");
        if e.expires != expires {
            e.expires = expires;
            self.push_deadline(expires, id);
        }
    }

    pub(super) fn push_deadline(&mut self, due: EpochMs, id: u64) {
        self.next_due = self.next_due.min(due);
        self.deadlines
            .entry(due.div_euclid(BUCKET_MS))
            .or_default()
            .push((due, id));
        self.deadline_items += 1;
        if self.deadline_items > 4 * self.entries.len() + 65_536 {
            // Mostly stale: rebuild from the live entries.
            self.deadlines.clear();
            self.deadline_items = 0;
            let live: Vec<(EpochMs, u64)> = self
                .entries
                .iter()
                .map(|(id, e)| (e.expires, *id))
                .collect();
            self.next_due = live.iter().map(|&(d, _)| d).min().unwrap_or(EpochMs::MAX);
            for (due, id) in live {
                self.deadlines
                    .entry(due.div_euclid(BUCKET_MS))
                    .or_default()
                    .push((due, id));
                self.deadline_items += 1;
            }
        }
    }

    /// Take the live items due by `now`, in deadline order.
    fn take_due(&mut self, now: EpochMs) -> Vec<(EpochMs, u64)> {
        let mut due = Vec::new();
        while let Some(mut bucket) = self.deadlines.first_entry() {
            if *bucket.key() > now.div_euclid(BUCKET_MS) {
                break;
            }
            let b = bucket.get_mut();
            if !b.sorted {
                // Most items are stale by now (released or renewed): drop them before
                // sorting. An id never gets a stale deadline back without a new item.
                let entries = &self.entries;
                let before = b.items.len();
                b.items
                    .retain(|&(d, id)| entries.get(&id).is_some_and(|e| e.expires == d));
                self.deadline_items -= before - b.items.len();
                b.items.sort_unstable_by(|x, y| y.cmp(x));
                b.sorted = true;
            }
            while let Some(&(d, id)) = b.items.last() {
                if d > now {
                    break;
                }
                b.items.pop();
                self.deadline_items -= 1;
                if self.entries.get(&id).is_some_and(|e| e.expires == d) {
                    due.push((d, id));
                }
            }
            if b.items.is_empty() {
                bucket.remove();
            } else {
                break; // the rest of this bucket is after now
            }
        }
        due
    }

    /// Apply everything due by now. Returns how many entries changed.
    pub fn tick(&mut self) -> usize {
        let now = self.now();
        self.sweep(now)
    }

    pub(super) fn sweep(&mut self, now: EpochMs) -> usize {
        let mut changed = 0;
        if now >= self.next_due {
            changed = self.sweep_due(now);
        }
        while let Some(&(at, id)) = self.lapsed_order.front() {
            if at.saturating_add(self.cfg.lapsed_memory_ms) > now {
                break;
            }
            self.lapsed_order.pop_front();
            if self.lapsed.get(&id).is_some_and(|l| l.at == at) {
                self.lapsed.remove(&id);
            }
        }
        changed
    }

    /// The earliest deadline item left (stale ones included), for [`Book::next_due`].
    fn first_deadline(&self) -> EpochMs {
        self.deadlines
            .first_key_value()
            .and_then(|(_, b)| {
                if b.sorted {
                    b.items.last().map(|&(d, _)| d)
                } else {
                    b.items.iter().map(|&(d, _)| d).min()
                }
            })
            .unwrap_or(EpochMs::MAX)
    }

    fn sweep_due(&mut self, now: EpochMs) -> usize {
        let mut changed = 0;
        loop {
            // Cheap exit on the hot path: nothing due.
            match self.deadlines.first_key_value() {
                Some((&k, b)) if k <= now.div_euclid(BUCKET_MS) => {
                    if b.sorted && b.items.last().is_some_and(|&(d, _)| d > now) {
                        break;
                    }
                }
                _ => break,
            }
            let due = self.take_due(now);
            if due.is_empty() {
                break;
            }
            for (due, id) in due {
                // Handling an earlier item may have changed this one.
                let Some(e) = self.entries.get(&id).filter(|e| e.expires == due) else {
                    continue;
                };
                changed += 1;
                if e.claimed_at.is_none() && e.auto_claim {
                    let start = e.start;
                    self.claimed(id, start);
                    continue;
                }
                let (reason, lapsed) = match (e.claimed_at, e.expires < e.end) {
                    (None, _) => (EndReason::Unclaimed, true),
                    (Some(_), true) => (EndReason::LeaseLapsed, false),
                    (Some(_), false) => (EndReason::WindowEnded, false),
                };
                let entry = self.remove_entry_with_event(id, due, BookEventKind::Expired, reason);
                if lapsed {
                    self.lapsed.insert(id, Lapsed { entry, at: due });
                    self.lapsed_order.push_back((due, id));
                }
            }
        }
        self.next_due = self.first_deadline();
        changed
    }
}
