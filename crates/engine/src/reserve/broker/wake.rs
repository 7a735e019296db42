//! Waking the tasks that wait: the broker listens to the book
//! ([`LiveBook::listen`](crate::reserve::LiveBook::listen)). A task found busy waits
//! for the resources that were busy; when one of them is released or expires (a lease
//! lapses, a hold or window ends) in a way that frees time before the task's `until`, the
//! run's driver gets the task's item id ([`ResourceBroker::wakes`](crate::run::ResourceBroker::wakes)) and retries it at
//! once. The events of an attempt that ends busy (its probe requests and the give-back of
//! what it took) change nothing for anyone and wake nobody: otherwise two tasks waiting
//! for the same resource would wake each other forever.
//!
//! In a lab, a task the database refused (another server holds the resource there) is
//! woken the same way when that server lets the resource go: the fence hears it on the
//! lab book's channel (`Fence::on_freed`).

use std::collections::HashMap;

use tokio::sync::mpsc;

use super::take::Busy;
use super::BookBroker;
use crate::clock::EpochMs;
use crate::reserve::{BookEvent, BookEventKind, ResId};

/// Tasks found busy, and how to wake them.
#[derive(Default)]
pub(super) struct Waiting {
    /// Wake-up senders of the runs that asked for them ([`ResourceBroker::wakes`](crate::run::ResourceBroker::wakes)).
    pub(super) runs: HashMap<String, mpsc::UnboundedSender<usize>>,
    /// Per waiting (run, item): the resources that were busy and the time the book said
    /// they would be free.
    pub(super) items: HashMap<(String, usize), Want>,
    /// Reservations the last attempt that ended busy made and gave back (or moved): their
    /// ends in the next published batch wake nobody (see the module docs).
    pub(super) quiet: Vec<ResId>,
}

pub(super) struct Want {
    resources: Vec<String>,
    until: EpochMs,
}

impl Waiting {
    /// The book published `events`: wake the items some of them may have unblocked, each
    /// once (a task still busy on its retry waits anew).
    pub(super) fn heard(&mut self, events: &[BookEvent]) {
        let quiet = std::mem::take(&mut self.quiet);
        if self.items.is_empty() {
            return;
        }
        let Waiting { runs, items, .. } = self;
        for e in events {
            if !matches!(e.kind, BookEventKind::Released | BookEventKind::Expired)
                || quiet.contains(&e.reservation.id)
            {
                continue;
            }
            let v = &e.reservation;
            // Time freed from the item's `until` on changes nothing for it: it could have
            // that time anyway.
            items.retain(|(run, item), want| {
                let hit = v.start < want.until && want.resources.iter().any(|r| **r == *v.resource);
                if hit {
                    if let Some(tx) = runs.get(run) {
                        let _ = tx.send(*item);
                    }
                }
                !hit
            });
        }
    }
}

impl Waiting {
    /// Another server let `resource` go in the lab database (`Fence::on_freed`): wake
    /// the items that wait for it, each once.
    pub(super) fn freed_elsewhere(&mut self, resource: &str) {
        let Waiting { runs, items, .. } = self;
        items.retain(|(run, item), want| {
            let hit = want.resources.iter().any(|r| r == resource);
            if hit {
                if let Some(tx) = runs.get(run) {
                    let _ = tx.send(*item);
                }
            }
            !hit
        });
    }
}

impl BookBroker {
    /// Called under the book's lock as an attempt ends busy: what the attempt did (`quiet`)
    /// wakes nobody, and the item waits for what was busy, if its run asked for wake-ups.
    pub(super) fn wait(&self, key: (String, usize), busy: &Busy, quiet: Vec<ResId>) {
        let mut w = self.waiting();
        w.quiet = quiet;
        if w.runs.contains_key(&key.0) {
            w.items.insert(
                key,
                Want {
                    resources: busy.resources.clone(),
                    until: busy.until,
                },
            );
        }
    }

    /// Item ids of `run_id`'s tasks waiting to be woken (for tests and diagnostics).
    pub fn waiting_items(&self, run_id: &str) -> Vec<usize> {
        let mut ids: Vec<usize> = self
            .waiting()
            .items
            .keys()
            .filter(|(r, _)| r == run_id)
            .map(|(_, i)| *i)
            .collect();
        ids.sort_unstable();
        ids
    }
}
