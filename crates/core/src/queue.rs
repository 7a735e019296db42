//! The run queue's order, pure (no I/O, no clock; time passed in): which queued runs start
//! when DUTs free (StormTest's Idle runs).
//!
//! A queued run waits for its DUTs. Runs are ordered by [`Priority`] (high first), then by
//! their place (first come, first served within a priority; an operator may move a run up
//! or down among the runs of its priority). A DUT goes to the first run in that order that
//! wants it: a run starts when every DUT it wants is free and it is the first in the queue
//! wanting each of them. So no run starts while a run ahead of it that wants one of its
//! DUTs waits (a run wanting several DUTs is not starved by smaller ones behind it), and
//! runs wanting other DUTs go on past it.
//!
//! The queue keeps, per DUT, the runs that want it in order, so picking what starts when
//! one DUT frees looks at one run ([`RunQueue::pick_for`]), whatever the queue's length.
//! DUTs out of service (a health check found them bad) are passed in: a run wanting one
//! does not start, and keeps its place.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::clock::EpochMs;

/// How urgently a queued run starts. Interactive launches are `high`, scheduled ones
/// `low`; an operator may change it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, TS,
)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        match s {
            "low" => Some(Priority::Low),
            "normal" => Some(Priority::Normal),
            "high" => Some(Priority::High),
            _ => None,
        }
    }
}

/// One queued run as the queue orders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub run_id: String,
    pub priority: Priority,
    /// Order within a priority: lower goes first.
    pub place: u64,
    /// The DUTs it waits for, each once.
    pub duts: Vec<String>,
    pub enqueued_ms: EpochMs,
    /// Given up on (`could_not_start`) once queued this long.
    pub max_queue_ms: Option<i64>,
    /// Estimated run time, for the estimated starts of the runs behind it.
    pub est_ms: i64,
    /// A forced launch (a health check, "launch anyway"): starts on DUTs out of service.
    pub force: bool,
}

impl Entry {
    /// When it is given up on, if ever.
    pub fn deadline(&self) -> Option<EpochMs> {
        self.max_queue_ms
            .map(|m| self.enqueued_ms.saturating_add(m.max(0)))
    }
}

/// Sort key: high priority first, then place.
type Key = (std::cmp::Reverse<Priority>, u64);

fn key_of(e: &Entry) -> Key {
    (std::cmp::Reverse(e.priority), e.place)
}

/// Where an operator moves a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum Move {
    /// Ahead of the run before it among the runs of its priority.
    Up,
    /// Behind the run after it among the runs of its priority.
    Down,
}

/// The queued runs in order, indexed per DUT.
#[derive(Debug, Default, Clone)]
pub struct RunQueue {
    order: BTreeMap<Key, Entry>,
    by_id: HashMap<String, Key>,
    /// Per DUT, the keys of the runs wanting it, in queue order.
    by_dut: HashMap<String, BTreeSet<Key>>,
    next_place: u64,
}

impl RunQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The place a run queued now takes: behind every run queued so far.
    pub fn next_place(&self) -> u64 {
        self.next_place
    }

    /// Add a run (a new one with [`RunQueue::next_place`], or one restored with its
    /// stored place). A run already queued is replaced.
    pub fn push(&mut self, mut e: Entry) {
        self.remove(&e.run_id);
        e.duts.sort();
        e.duts.dedup();
        self.next_place = self.next_place.max(e.place.saturating_add(1));
        let k = key_of(&e);
        for d in &e.duts {
            self.by_dut.entry(d.clone()).or_default().insert(k);
        }
        self.by_id.insert(e.run_id.clone(), k);
        self.order.insert(k, e);
    }

    pub fn remove(&mut self, run_id: &str) -> Option<Entry> {
        let k = self.by_id.remove(run_id)?;
        let e = self.order.remove(&k)?;
        for d in &e.duts {
            if let Some(set) = self.by_dut.get_mut(d) {
                set.remove(&k);
                if set.is_empty() {
                    self.by_dut.remove(d);
                }
            }
        }
        Some(e)
    }

    pub fn get(&self, run_id: &str) -> Option<&Entry> {
        self.by_id.get(run_id).and_then(|k| self.order.get(k))
    }

    /// Every queued run in order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.order.values()
    }

    /// Whether some queued run wants `dut` (a new launch wanting it then queues behind).
    pub fn wants(&self, dut: &str) -> bool {
        self.by_dut.contains_key(dut)
    }

    /// Give a run another priority; among the runs of that priority it takes its place
    /// by arrival (or the place an operator moved it to). Returns the entry as it now is.
    pub fn set_priority(&mut self, run_id: &str, priority: Priority) -> Option<&Entry> {
        let mut e = self.remove(run_id)?;
        e.priority = priority;
        self.push(e);
        self.get(run_id)
    }

    /// Swap a run with its neighbour among the runs of its priority. Returns the two
    /// runs whose places changed (none when it is already first or last).
    pub fn move_run(&mut self, run_id: &str, to: Move) -> Option<Vec<&Entry>> {
        let k = *self.by_id.get(run_id)?;
        let neighbour = match to {
            Move::Up => self.order.range(..k).next_back(),
            Move::Down => self
                .order
                .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                .next(),
        }
        .filter(|(nk, _)| nk.0 == k.0)
        .map(|(_, e)| e.run_id.clone());
        let Some(other) = neighbour else {
            return Some(Vec::new());
        };
        let mut a = self.remove(run_id)?;
        let mut b = self.remove(&other)?;
        std::mem::swap(&mut a.place, &mut b.place);
        self.push(a);
        self.push(b);
        Some(vec![self.get(run_id)?, self.get(&other)?])
    }

    /// Whether the run with key `k` may start: each DUT it wants is free, in service (or the
    /// launch is forced), and
    /// wanted by no run ahead of it.
    fn startable(
        &self,
        k: &Key,
        e: &Entry,
        free: &impl Fn(&str) -> bool,
        out_of_service: &impl Fn(&str) -> bool,
    ) -> bool {
        e.duts.iter().all(|d| {
            free(d)
                && (e.force || !out_of_service(d))
                && self.by_dut.get(d).and_then(|s| s.first()) == Some(k)
        })
    }

    /// The runs that start now that `dut` is free: at most the first run wanting it.
    /// `free` says whether a DUT is free now; `out_of_service` whether it is kept out of
    /// service. The runs returned are still queued: take them out with
    /// [`RunQueue::remove`] as they start.
    pub fn pick_for(
        &self,
        dut: &str,
        free: impl Fn(&str) -> bool,
        out_of_service: impl Fn(&str) -> bool,
    ) -> Option<&Entry> {
        let k = self.by_dut.get(dut)?.first()?;
        let e = self.order.get(k)?;
        self.startable(k, e, &free, &out_of_service).then_some(e)
    }

    /// Every run that may start now, in queue order (after a restart, or when a
    /// dispatch threshold no longer holds runs back). Runs without DUTs start at once.
    pub fn pick_all(
        &self,
        free: impl Fn(&str) -> bool,
        out_of_service: impl Fn(&str) -> bool,
    ) -> Vec<&Entry> {
        let mut firsts: BTreeSet<&Key> = self.by_dut.values().filter_map(|s| s.first()).collect();
        firsts.extend(
            self.order
                .iter()
                .filter(|(_, e)| e.duts.is_empty())
                .map(|(k, _)| k),
        );
        firsts
            .into_iter()
            .filter_map(|k| self.order.get(k).map(|e| (k, e)))
            .filter(|(k, e)| self.startable(k, e, &free, &out_of_service))
            .map(|(_, e)| e)
            .collect()
    }

    /// Runs queued longer than their `max_queue_time` at `now`.
    pub fn overdue(&self, now: EpochMs) -> Vec<&Entry> {
        self.order
            .values()
            .filter(|e| e.deadline().is_some_and(|d| d <= now))
            .collect()
    }

    /// The soonest `max_queue_time` deadline of a queued run.
    pub fn next_deadline(&self) -> Option<EpochMs> {
        self.order.values().filter_map(Entry::deadline).min()
    }

    /// Estimated start of every queued run: each DUT is free from `free_at(dut)` (the
    /// book's answer), then taken in queue order by the runs wanting it for their
    /// estimated time. A run starts when all its DUTs are free for it.
    pub fn estimated_starts(
        &self,
        now: EpochMs,
        free_at: impl Fn(&str) -> EpochMs,
    ) -> Vec<EpochMs> {
        let mut next: HashMap<&str, EpochMs> = HashMap::new();
        self.order
            .values()
            .map(|e| {
                let start = e
                    .duts
                    .iter()
                    .map(|d| *next.entry(d).or_insert_with(|| free_at(d).max(now)))
                    .max()
                    .unwrap_or(now);
                for d in &e.duts {
                    next.insert(d, start.saturating_add(e.est_ms.max(0)));
                }
                start
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, p: Priority, place: u64, duts: &[&str]) -> Entry {
        Entry {
            run_id: id.into(),
            priority: p,
            place,
            duts: duts.iter().map(|d| d.to_string()).collect(),
            enqueued_ms: 0,
            max_queue_ms: None,
            est_ms: 10,
            force: false,
        }
    }

    #[test]
    fn a_dut_out_of_service_starts_only_forced_runs() {
        let mut q = RunQueue::new();
        q.push(entry("plain", Priority::High, 1, &["a"]));
        let oos = |d: &str| d == "a";
        assert!(q.pick_for("a", |_| true, oos).is_none());
        let mut forced = entry("check", Priority::High, 0, &["a"]);
        forced.force = true;
        q.push(forced);
        assert_eq!(
            q.pick_for("a", |_| true, oos).map(|e| e.run_id.as_str()),
            Some("check")
        );
    }

    #[test]
    fn high_priority_first_then_fifo() {
        let mut q = RunQueue::new();
        q.push(entry("a", Priority::Low, 0, &["d1"]));
        q.push(entry("b", Priority::High, 1, &["d1"]));
        q.push(entry("c", Priority::High, 2, &["d1"]));
        let order: Vec<_> = q.iter().map(|e| e.run_id.as_str()).collect();
        assert_eq!(order, ["b", "c", "a"]);
        assert_eq!(q.pick_for("d1", |_| true, |_| false).unwrap().run_id, "b");
        q.move_run("c", Move::Up).unwrap();
        assert_eq!(q.pick_for("d1", |_| true, |_| false).unwrap().run_id, "c");
        // Already first among the high ones: nothing moves.
        assert!(q.move_run("c", Move::Up).unwrap().is_empty());
        // Raised, it keeps its arrival: it came first.
        q.set_priority("a", Priority::High);
        let order: Vec<_> = q.iter().map(|e| e.run_id.as_str()).collect();
        assert_eq!(order, ["a", "c", "b"]);
    }

    #[test]
    fn a_waiting_run_keeps_its_duts_from_runs_behind() {
        let mut q = RunQueue::new();
        q.push(entry("big", Priority::Normal, 0, &["d1", "d2"]));
        q.push(entry("small", Priority::Normal, 1, &["d1"]));
        q.push(entry("other", Priority::Normal, 2, &["d3"]));
        let free = |d: &str| d != "d2";
        assert!(q.pick_for("d1", free, |_| false).is_none());
        let all: Vec<_> = q
            .pick_all(free, |_| false)
            .into_iter()
            .map(|e| e.run_id.clone())
            .collect();
        assert_eq!(all, ["other"]);
        // d3 out of service: nothing starts.
        assert!(q.pick_all(free, |d| d == "d3").is_empty());
    }

    #[test]
    fn estimated_starts_follow_the_queue() {
        let mut q = RunQueue::new();
        q.push(entry("a", Priority::Normal, 0, &["d1"]));
        q.push(entry("b", Priority::Normal, 1, &["d1", "d2"]));
        q.push(entry("c", Priority::Normal, 2, &["d2"]));
        let s = q.estimated_starts(100, |d| if d == "d1" { 500 } else { 0 });
        assert_eq!(s, [500, 510, 520]);
    }

    #[test]
    fn overdue_runs() {
        let mut q = RunQueue::new();
        let mut e = entry("a", Priority::Normal, 0, &["d1"]);
        e.enqueued_ms = 1000;
        e.max_queue_ms = Some(500);
        q.push(e);
        q.push(entry("b", Priority::Normal, 1, &["d1"]));
        assert_eq!(q.next_deadline(), Some(1500));
        assert!(q.overdue(1499).is_empty());
        assert_eq!(q.overdue(1500)[0].run_id, "a");
    }
}
