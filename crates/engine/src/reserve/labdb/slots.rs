//! The earliest free window among a resource's live reservations, pure: the database
//! hands over the rows, this finds the gap, the constraint (or the row lock) makes sure.

use crate::clock::EpochMs;

/// One live reservation's window `[start, end)` and the units it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy {
    pub start: EpochMs,
    pub end: EpochMs,
    pub units: u32,
}

/// Earliest start `>= from` of a `dur`-long window that overlaps none of `busy` (sorted
/// by start).
pub(crate) fn earliest_exclusive(busy: &[Busy], from: EpochMs, dur: i64) -> EpochMs {
    let mut s = from;
    for b in busy {
        if b.start >= s.saturating_add(dur) {
            break;
        }
        if b.end > s {
            s = b.end;
        }
    }
    s
}

/// Most units in use at any instant of `[start, end)`.
pub(crate) fn peak(busy: &[Busy], start: EpochMs, end: EpochMs) -> u32 {
    // The load is highest at one of the window's start or a reservation's start inside it.
    std::iter::once(start)
        .chain(
            busy.iter()
                .map(|b| b.start)
                .filter(|&t| t > start && t < end),
        )
        .map(|t| {
            busy.iter()
                .filter(|b| b.start <= t && t < b.end)
                .map(|b| b.units)
                .sum::<u32>()
        })
        .max()
        .unwrap_or(0)
}

/// Earliest start `>= from` of a `dur`-long window where `units` more fit under
/// `capacity`. `None` when `units` exceeds the capacity.
pub(crate) fn earliest_shared(
    busy: &[Busy],
    from: EpochMs,
    dur: i64,
    units: u32,
    capacity: u32,
) -> Option<EpochMs> {
    if units > capacity {
        return None;
    }
    // A window that fits starts at `from` or where some reservation ends.
    let mut candidates: Vec<EpochMs> = std::iter::once(from)
        .chain(busy.iter().map(|b| b.end).filter(|&e| e > from))
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    candidates
        .into_iter()
        .find(|&s| peak(busy, s, s.saturating_add(dur)) + units <= capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(start: i64, end: i64, units: u32) -> Busy {
        Busy { start, end, units }
    }

    #[test]
    fn exclusive_gaps() {
        let busy = [b(10, 20, 1), b(25, 40, 1)];
        assert_eq!(earliest_exclusive(&busy, 0, 10), 0);
        assert_eq!(earliest_exclusive(&busy, 0, 11), 40);
        assert_eq!(earliest_exclusive(&busy, 12, 5), 20);
        assert_eq!(earliest_exclusive(&busy, 12, 6), 40);
    }

    #[test]
    fn shared_peaks() {
        let busy = [b(0, 10, 2), b(5, 15, 1)];
        assert_eq!(peak(&busy, 0, 20), 3);
        assert_eq!(earliest_shared(&busy, 0, 5, 1, 3), Some(0));
        assert_eq!(earliest_shared(&busy, 0, 6, 1, 3), Some(10));
        assert_eq!(earliest_shared(&busy, 0, 6, 1, 2), Some(10));
        assert_eq!(earliest_shared(&busy, 0, 6, 2, 2), Some(15));
        assert_eq!(earliest_shared(&busy, 0, 6, 3, 2), None);
    }
}
