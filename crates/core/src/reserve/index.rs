//! Per-resource interval indexes used for the earliest-slot search.
//!
//! Exclusive resources keep their bookings as non-overlapping `[start, end)` intervals in
//! a `BTreeMap` keyed by start. Shared resources keep a usage profile: a step function
//! `time -> units in use from this time until the next key`, i.e. the result of a sweep
//! over all overlapping intervals, kept up to date on every insert and removal.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Unbounded};

use crate::clock::EpochMs;

/// Non-overlapping intervals of one exclusive resource.
#[derive(Debug, Default, Clone)]
pub struct ExclusiveIndex {
    /// start -> (end, reservation id)
    by_start: BTreeMap<EpochMs, (EpochMs, u64)>,
}

impl ExclusiveIndex {
    /// Earliest `t >= from` such that `[t, t + dur)` overlaps no interval other than `skip`'s.
    pub fn earliest(&self, from: EpochMs, dur: i64, skip: Option<u64>) -> EpochMs {
        self.earliest_before(from, dur, skip, EpochMs::MAX)
    }

    /// As [`ExclusiveIndex::earliest`], but gives up as soon as the answer is known to be
    /// `>= limit` (and then returns some value `>= limit`).
    pub fn earliest_before(
        &self,
        from: EpochMs,
        dur: i64,
        skip: Option<u64>,
        limit: EpochMs,
    ) -> EpochMs {
        let mut t = from;
        // Only the last interval starting before `t` can cover `t` (intervals never overlap).
        if let Some((_, &(end, id))) = self.by_start.range(..t).next_back() {
            if end > t && Some(id) != skip {
                t = end;
            }
        }
        for (&start, &(end, id)) in self.by_start.range(t..) {
            if Some(id) == skip {
                continue;
            }
            if start >= t.saturating_add(dur) || t >= limit {
                break;
            }
            t = t.max(end);
        }
        t
    }

    pub fn insert(&mut self, start: EpochMs, end: EpochMs, id: u64) {
        debug_assert!(start < end);
        let prev = self.by_start.insert(start, (end, id));
        debug_assert!(prev.is_none(), "exclusive interval start collision");
    }

    pub fn remove(&mut self, start: EpochMs) {
        self.by_start.remove(&start);
    }

    /// Whether anything is booked at instant `t`.
    pub fn busy_at(&self, t: EpochMs) -> bool {
        self.by_start
            .range(..=t)
            .next_back()
            .is_some_and(|(_, &(end, _))| end > t)
    }

    pub fn len(&self) -> usize {
        self.by_start.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }
}

/// Units in use over time for one shared resource. Before the first key usage is 0, and
/// the last key always carries 0, so every search terminates.
#[derive(Debug, Default, Clone)]
pub struct SharedProfile {
    steps: BTreeMap<EpochMs, u32>,
}

impl SharedProfile {
    pub fn usage_at(&self, t: EpochMs) -> u32 {
        self.steps.range(..=t).next_back().map_or(0, |(_, &u)| u)
    }

    /// Earliest `t >= from` such that `usage + weight <= capacity` throughout `[t, t + dur)`.
    /// Requires `weight <= capacity`.
    pub fn earliest(&self, from: EpochMs, dur: i64, weight: u32, capacity: u32) -> EpochMs {
        debug_assert!(weight <= capacity);
        let fits = |u: u32| u.checked_add(weight).is_some_and(|n| n <= capacity);
        let mut candidate = fits(self.usage_at(from)).then_some(from);
        for (&k, &u) in self.steps.range((Excluded(from), Unbounded)) {
            if let Some(c) = candidate {
                if k >= c.saturating_add(dur) {
                    return c;
                }
            }
            if !fits(u) {
                candidate = None;
            } else if candidate.is_none() {
                candidate = Some(k);
            }
        }
        // The last step is 0, so a candidate exists once past it.
        candidate.unwrap_or(from)
    }

    /// Highest usage anywhere in `[start, end)`.
    pub fn peak(&self, start: EpochMs, end: EpochMs) -> u32 {
        let mut peak = self.usage_at(start);
        for (_, &u) in self.steps.range((Excluded(start), Excluded(end))) {
            peak = peak.max(u);
        }
        peak
    }

    pub fn add(&mut self, start: EpochMs, end: EpochMs, weight: u32) {
        self.apply(start, end, |u| u.saturating_add(weight));
    }

    pub fn sub(&mut self, start: EpochMs, end: EpochMs, weight: u32) {
        self.apply(start, end, |u| {
            debug_assert!(u >= weight, "shared profile underflow");
            u.saturating_sub(weight)
        });
    }

    fn apply(&mut self, start: EpochMs, end: EpochMs, f: impl Fn(u32) -> u32) {
        debug_assert!(start < end);
        // Levels just before `start` and at `end`, before the change.
        let before_start = self.steps.range(..start).next_back().map_or(0, |(_, &u)| u);
        let at_end = self.steps.range(..=end).next_back().map_or(0, |(_, &u)| u);
        self.steps.entry(end).or_insert(at_end);
        self.steps.entry(start).or_insert(before_start);
        let mut before_end = before_start;
        for (_, u) in self.steps.range_mut(start..end) {
            *u = f(*u);
            before_end = *u;
        }
        // Drop keys that no longer change the level.
        if self.steps.get(&start) == Some(&before_start) {
            self.steps.remove(&start);
        }
        if at_end == before_end {
            self.steps.remove(&end);
        }
    }

    pub fn steps(&self) -> usize {
        self.steps.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_earliest_skips_busy_and_too_small_gaps() {
        let mut ix = ExclusiveIndex::default();
        ix.insert(10, 20, 1);
        ix.insert(25, 30, 2);
        assert_eq!(ix.earliest(0, 10, None), 0);
        assert_eq!(ix.earliest(0, 11, None), 30);
        assert_eq!(ix.earliest(12, 5, None), 20);
        assert_eq!(ix.earliest(12, 6, None), 30);
        assert_eq!(ix.earliest(12, 6, Some(2)), 20);
        assert!(ix.earliest_before(0, 11, None, 15) >= 15);
        assert_eq!(ix.earliest_before(12, 6, Some(2), 25), 20);
        assert!(ix.busy_at(10) && !ix.busy_at(20));
    }

    #[test]
    fn shared_profile_counts_and_merges() {
        let mut p = SharedProfile::default();
        p.add(0, 10, 1);
        p.add(5, 15, 1);
        assert_eq!(p.usage_at(7), 2);
        assert_eq!(p.peak(0, 15), 2);
        assert_eq!(p.earliest(0, 5, 1, 2), 0);
        assert_eq!(p.earliest(0, 6, 1, 2), 10);
        assert_eq!(p.earliest(0, 5, 2, 2), 15);
        p.sub(5, 15, 1);
        p.sub(0, 10, 1);
        assert_eq!(p.steps(), 0);
    }
}
