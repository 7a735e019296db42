//! The delay queue (kissats): a task whose resources are busy waits until the time the
//! broker said they are booked until, and is retried then; the broker may wake it earlier
//! ([`Plan::wake`]) when something it waits for frees. `max_resource_retry` counts the
//! times it found its resources still busy at or after the time it was told, the first
//! busy answer included; a retry on such an early wake that finds them busy again does
//! not count (the resource was never promised by then). `max_resource_wait` bounds the
//! wait from the first busy answer to the time the latest answer names.

use super::{BusyOutcome, ItemId, ItemState, Plan};
use crate::clock::EpochMs;
use crate::outcome::ERRORED;

/// An item's time in the delay queue.
#[derive(Debug, Clone, Copy)]
pub(super) struct DelayMem {
    /// Busy answers that counted against `max_resource_retry`.
    retries: u32,
    first_busy: EpochMs,
    /// The time the last busy answer said the resources would be free.
    promised: EpochMs,
}

impl Plan {
    /// The broker said the started item's resources are busy until `until`. The item goes
    /// back to the delay queue, or is done (Errored) when its retries or wait are used up.
    pub fn resource_busy(
        &mut self,
        id: ItemId,
        now: EpochMs,
        until: EpochMs,
        reason: &str,
    ) -> BusyOutcome {
        let mem = self.delay_mem.get(&id).copied();
        let (retries, first_busy) = mem.map_or((0, now), |m| (m.retries, m.first_busy));
        if let ItemState::Running { lane } = self.states[id] {
            self.lanes[lane].running.retain(|&r| r != id);
        }
        let def = &self.items[id].def;
        // Woken before the time it was told, and still busy: not a retry (module docs).
        let early = mem.is_some_and(|m| now < m.promised);
        let retries = if early { retries } else { retries + 1 };
        let waited_s = (until.max(now) - first_busy) as f64 / 1000.0;
        if retries > def.max_resource_retry {
            let message = format!(
                "resources busy ({reason}); gave up after {} retries (max_resource_retry)",
                def.max_resource_retry
            );
            self.settle(id, ERRORED, message.clone(), None);
            return BusyOutcome::GaveUp { message };
        }
        if let Some(max) = def.max_resource_wait {
            if waited_s > max {
                let message = format!(
                    "resources busy ({reason}); would wait {waited_s:.0}s, more than max_resource_wait {max}s"
                );
                self.settle(id, ERRORED, message.clone(), None);
                return BusyOutcome::GaveUp { message };
            }
        }
        self.states[id] = ItemState::Delayed {
            until: until.max(now),
            reason: reason.into(),
            retries,
            first_busy,
        };
        self.delay_mem.insert(
            id,
            DelayMem {
                retries,
                first_busy,
                promised: until.max(now),
            },
        );
        BusyOutcome::Delayed {
            until: until.max(now),
        }
    }

    /// The broker says something a delayed item waits for may have freed: it may start
    /// again now. Its next busy answer, if any, does not count as a retry unless it comes
    /// at or after the time the last one named. Returns whether the item was waiting.
    pub fn wake(&mut self, id: ItemId, now: EpochMs) -> bool {
        match &mut self.states[id] {
            ItemState::Delayed { until, .. } => {
                *until = (*until).min(now);
                true
            }
            _ => false,
        }
    }
}
