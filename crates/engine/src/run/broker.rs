//! The resource seam: `run` asks a [`ResourceBroker`] before each task starts. The lab's
//! reservation book implements it (resource modes, leases, the delay queue's "busy until");
//! [`AlwaysGrant`] grants everything at once, for runs without a lab.
//!
//! A task found busy waits in the plan's delay queue until the time the broker named, or
//! until the broker wakes it ([`ResourceBroker::wakes`]): when something it waits for is
//! released, its lease lapses or a hold ends, the run retries it at once.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ts_rs::TS;

use crate::clock::EpochMs;
use crate::pack::{ResourceMode, TaskDef};
use crate::plan::DutTarget;

/// What one task occurrence needs, as the broker sees it.
#[derive(Debug, Clone)]
pub struct TaskNeeds<'a> {
    pub run_id: &'a str,
    /// Occurrence number within the run (plan item id).
    pub item: usize,
    pub task: &'a str,
    pub lane: &'a str,
    pub dut: Option<&'a DutTarget>,
    pub ats: Option<&'a str>,
    pub exclusive: &'a [String],
    pub shared: &'a [String],
    /// `resource_configs` of the task.
    pub configs: &'a Map<String, Value>,
    /// Estimated seconds, all phases.
    pub est_task_time: f64,
    pub now: EpochMs,
}

impl<'a> TaskNeeds<'a> {
    pub fn from_def(
        run_id: &'a str,
        item: usize,
        def: &'a TaskDef,
        lane: &'a str,
        dut: Option<&'a DutTarget>,
        ats: Option<&'a str>,
        now: EpochMs,
    ) -> Self {
        Self {
            run_id,
            item,
            task: &def.name,
            lane,
            dut,
            ats,
            exclusive: &def.exclusive_resources,
            shared: &def.shared_resources,
            configs: &def.resource_configs,
            est_task_time: def.est_task_time,
            now,
        }
    }
}

/// One resource held for a task; written into the task's params file under
/// `reservations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Holding {
    pub resource: String,
    pub exclusive: bool,
    /// The resource's configuration as granted.
    #[ts(type = "unknown")]
    pub config: Value,
    /// Reservation id in the book, when there is a book.
    pub reservation_id: Option<String>,
    /// End of the reservation, when it has one.
    pub until_ms: Option<EpochMs>,
}

/// The broker's answer for one task.
#[derive(Debug, Clone, PartialEq)]
pub enum Grant {
    Granted(Vec<Holding>),
    /// Busy; ask again at `until` (the task goes to the delay queue), the time the busy
    /// resources are booked until, or earlier when the broker wakes the task.
    Busy {
        until: EpochMs,
        reason: String,
    },
    /// Will never be available for this task (unknown resource, ...): the task is Errored.
    Unavailable(String),
}

/// Resource holder interface. Calls are short and synchronous; they are made from the
/// run's driver task.
pub trait ResourceBroker: Send + Sync + 'static {
    /// Before any task of a run starts, with every occurrence's needs (resource mode `all`
    /// reserves everything here). An error makes the run "could not start".
    fn begin_run(
        &self,
        _run_id: &str,
        _mode: ResourceMode,
        _tasks: &[TaskNeeds<'_>],
    ) -> Result<(), String> {
        Ok(())
    }

    /// Before one task occurrence starts.
    fn acquire(&self, needs: &TaskNeeds<'_>) -> Grant;

    /// The occurrence ended; give back what it held.
    fn release(&self, run_id: &str, item: usize, holdings: &[Holding]);

    /// The run ended (any status): drop whatever it still holds.
    fn end_run(&self, _run_id: &str) {}

    /// Wake-ups for `run_id`'s tasks found busy: from the call on, the item id of each such
    /// task is sent once something it waits for may have freed (released, a lease lapsed, a
    /// hold ended), and the run retries it at once instead of at its `until`. Asked once, by
    /// the run's driver before its first task; the sender goes with
    /// [`ResourceBroker::end_run`]. `None` (the default): nothing frees early.
    fn wakes(&self, _run_id: &str) -> Option<Wakes> {
        None
    }

    /// Losses of `run_id`'s claims: from the call on, a reason is sent once the run lost
    /// a claim it holds (the database under the book no longer renews its lease, see
    /// `reserve::fence`); the run then stops at once and ends `interrupted` with that
    /// reason. Asked once, by the run's driver; the sender goes with
    /// [`ResourceBroker::end_run`]. `None` (the default): nothing is lost.
    fn lost_leases(&self, _run_id: &str) -> Option<LostLeases> {
        None
    }
}

/// See [`ResourceBroker::wakes`].
pub type Wakes = tokio::sync::mpsc::UnboundedReceiver<usize>;

/// See [`ResourceBroker::lost_leases`].
pub type LostLeases = tokio::sync::mpsc::UnboundedReceiver<String>;

/// Grants every resource immediately with the task's requested configuration. For runs
/// without a lab inventory.
#[derive(Debug, Default, Clone, Copy)]
pub struct AlwaysGrant;

impl ResourceBroker for AlwaysGrant {
    fn acquire(&self, needs: &TaskNeeds<'_>) -> Grant {
        let hold = |r: &String, exclusive| Holding {
            resource: r.clone(),
            exclusive,
            config: needs.configs.get(r).cloned().unwrap_or(Value::Null),
            reservation_id: None,
            until_ms: None,
        };
        Grant::Granted(
            needs
                .exclusive
                .iter()
                .map(|r| hold(r, true))
                .chain(needs.shared.iter().map(|r| hold(r, false)))
                .collect(),
        )
    }

    fn release(&self, _run_id: &str, _item: usize, _holdings: &[Holding]) {}
}
