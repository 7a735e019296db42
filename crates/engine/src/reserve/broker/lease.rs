//! Leases: every claim the broker makes is a lease of `lease_ms`, renewed every
//! `lease_ms / 3` by a background thread while the run lives (tests on a virtual clock
//! renew by hand). A reservation whose window ends within a lease is extended first, so the
//! renewed lease can reach past the old end. A killed console stops renewing, and the lab
//! gets its resources back at the lease's end.

use std::sync::Weak;
use std::time::Duration;

use super::{BookBroker, Booked, Inner};
use crate::reserve::ResId;

impl BookBroker {
    /// Renew every lease held for live runs, and move a window's end later when the run
    /// is about to outlive it. The renewal thread calls this; tests call it by hand.
    pub fn renew_all(&self) {
        renew(&self.inner);
    }
}

fn renew(inner: &Inner) {
    let held: Vec<ResId> = {
        let runs = inner.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.values()
            .flat_map(|r| {
                r.lanes
                    .values()
                    .flat_map(|l| {
                        l.dut
                            .iter()
                            .map(|h| h.id)
                            .chain(l.pooled.values().filter_map(|b| match b {
                                Booked::Held(h) => Some(h.id),
                                Booked::Pre { .. } => None,
                            }))
                    })
                    .chain(r.items.values().flatten().map(|h| h.id))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let lease = inner.cfg.lease_ms;
    inner.book.with(|b| {
        let now = b.now();
        for id in held {
            let Some(v) = b.get(id) else {
                tracing::warn!(id = %id, "a run's reservation is gone (lease lapsed?)");
                continue;
            };
            if v.end.saturating_sub(now) < lease {
                // Still running near the end of its window: ask for more time first, so
                // the renewed lease can reach past the old end.
                if let Err(e) = b.extend(id, v.end.saturating_add(lease)) {
                    tracing::warn!(id = %id, error = %e, "cannot extend a reservation of a running task");
                }
            }
            if let Err(e) = b.renew(id) {
                tracing::warn!(id = %id, error = %e, "cannot renew a run's reservation");
            }
        }
    });
}

pub(super) fn renew_loop(inner: Weak<Inner>, period: Duration) {
    loop {
        std::thread::sleep(period);
        let Some(inner) = inner.upgrade() else { return };
        renew(&inner);
    }
}
