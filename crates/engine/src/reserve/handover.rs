//! [`HandoverBroker`]: the resource broker of a console that may become the book's
//! owner while it runs (a lab server taking the book over from one that died). Until it
//! owns the book its runs get what their tasks ask for (as [`AlwaysGrant`]: only runs
//! that need nothing reserved start on a server that does not own the book, the others
//! go to the owner); once it owns it, runs begun from then on reserve through the book
//! ([`BookBroker`]). Each run stays with the broker it began with, so one begun before
//! the handover never hands the book a release it did not take.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::pack::ResourceMode;
use crate::run::{AlwaysGrant, Grant, Holding, LostLeases, ResourceBroker, TaskNeeds, Wakes};

/// See the module doc.
#[derive(Default)]
pub struct HandoverBroker {
    /// The book's broker while this console owns the book.
    book: RwLock<Option<Arc<dyn ResourceBroker>>>,
    /// The broker each live run began with.
    runs: Mutex<HashMap<String, Arc<dyn ResourceBroker>>>,
}

impl HandoverBroker {
    /// Runs begun from now on reserve through `broker` (`None`: through nothing, this
    /// console no longer owns the book).
    pub fn set_book(&self, broker: Option<Arc<dyn ResourceBroker>>) {
        *self.book.write().unwrap_or_else(|p| p.into_inner()) = broker;
    }

    /// The broker runs begin with now.
    fn current(&self) -> Arc<dyn ResourceBroker> {
        self.book
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| Arc::new(AlwaysGrant))
    }

    /// The broker `run_id` began with (the current one for a run that did not begin).
    fn of(&self, run_id: &str) -> Arc<dyn ResourceBroker> {
        let began = self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(run_id)
            .cloned();
        began.unwrap_or_else(|| self.current())
    }
}

impl ResourceBroker for HandoverBroker {
    fn begin_run(
        &self,
        run_id: &str,
        mode: ResourceMode,
        tasks: &[TaskNeeds<'_>],
    ) -> Result<(), String> {
        let broker = self.current();
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run_id.to_string(), broker.clone());
        broker.begin_run(run_id, mode, tasks)
    }

    fn acquire(&self, needs: &TaskNeeds<'_>) -> Grant {
        self.of(needs.run_id).acquire(needs)
    }

    fn release(&self, run_id: &str, item: usize, holdings: &[Holding]) {
        self.of(run_id).release(run_id, item, holdings)
    }

    fn end_run(&self, run_id: &str) {
        let broker = self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(run_id);
        if let Some(b) = broker {
            b.end_run(run_id);
        }
    }

    fn wakes(&self, run_id: &str) -> Option<Wakes> {
        self.of(run_id).wakes(run_id)
    }

    fn lost_leases(&self, run_id: &str) -> Option<LostLeases> {
        self.of(run_id).lost_leases(run_id)
    }
}
