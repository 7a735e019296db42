//! Leases: every claim the broker makes is a lease of `lease_ms`, renewed every
//! `lease_ms / 3` by a background thread while the run lives (tests on a virtual clock
//! renew by hand). A reservation whose window ends within a lease is extended first, so the
//! renewed lease can reach past the old end. A killed console stops renewing, and the lab
//! gets its resources back at the lease's end. Fenced claims (`reserve::fence`) are
//! extended and renewed in the database too; one whose lease there is lost ends its run
//! `interrupted` ([`crate::run::ResourceBroker::lost_leases`]).

use std::sync::Weak;
use std::time::Duration;

use super::{BookBroker, Inner};
use crate::reserve::fence::FenceId;
use crate::reserve::ResId;

impl BookBroker {
    /// Renew every lease held for live runs, and move a window's end later when the run
    /// is about to outlive it. The renewal thread calls this; tests call it by hand.
    pub fn renew_all(&self) {
        renew(&self.inner);
    }
}

fn renew(inner: &Inner) {
    // (run, id in the book, id in the database under it)
    let held: Vec<(String, ResId, Option<FenceId>)> = {
        let runs = inner.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.iter()
            .flat_map(|(run_id, r)| {
                r.held()
                    .map(|h| (run_id.clone(), h.id, h.fence))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let lease = inner.cfg.lease_ms;
    let mut extended: Vec<(FenceId, i64)> = Vec::new();
    inner.book.with(|b| {
        let now = b.now();
        for (_, id, fenced) in &held {
            let id = *id;
            let Some(v) = b.get(id) else {
                tracing::warn!(id = %id, "a run's reservation is gone (lease lapsed?)");
                continue;
            };
            if v.end.saturating_sub(now) < lease {
                // Still running near the end of its window: ask for more time first, so
                // the renewed lease can reach past the old end.
                match b.extend(id, v.end.saturating_add(lease)) {
                    Ok(r) => extended.extend(fenced.map(|f| (f, r.expire_time - v.end))),
                    Err(e) => {
                        tracing::warn!(id = %id, error = %e, "cannot extend a reservation of a running task")
                    }
                }
            }
            if let Err(e) = b.renew(id) {
                tracing::warn!(id = %id, error = %e, "cannot renew a run's reservation");
            }
        }
    });
    // The database under the book: its windows and leases follow the book's.
    for (f, by) in extended.into_iter().filter(|(_, by)| *by > 0) {
        inner.fence.extend(f, by);
    }
    let fenced: Vec<FenceId> = held.iter().filter_map(|(_, _, f)| *f).collect();
    if fenced.is_empty() {
        return;
    }
    let lost = inner.fence.renew(&fenced);
    if lost.is_empty() {
        return;
    }
    let mut senders = inner.lost.lock().unwrap_or_else(|p| p.into_inner());
    for (f, why) in lost {
        let Some((run_id, _, _)) = held.iter().find(|(_, _, h)| *h == Some(f)) else {
            continue;
        };
        tracing::error!(run_id = %run_id, reason = %why, "a run lost its claim in the lab database");
        // Told once; the run ends interrupted (its driver stops it).
        if let Some(tx) = senders.remove(run_id) {
            let _ = tx.send(why);
        }
    }
}

pub(super) fn renew_loop(inner: Weak<Inner>, period: Duration) {
    loop {
        std::thread::sleep(period);
        let Some(inner) = inner.upgrade() else { return };
        renew(&inner);
    }
}
