//! The in-memory reservation book. Pure: no I/O, time only through the injected clock.
//!
//! Every public operation first sweeps what fell due (unclaimed pre-reservations, lapsed
//! leases, ended windows, operator holds whose window starts), so answers always reflect
//! the clock. Every change is recorded as a [`BookEvent`]; callers drain them with
//! [`Book::drain_events`] to persist and broadcast.
//!
//! The parts: `lifecycle` (request, claim on time or late, renew, extend, release),
//! `deadlines` (the sweep and its index of deadlines), `waiters` (operator holds booked
//! later than asked, moved up when time frees), `queries` (availability, next window,
//! resources, holds), `restore` (reloading after a restart), `hasher` (the maps' hasher).
//! This file holds the book's state, its resources' interval indexes and the events.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use super::error::BookError;
use super::index::{ExclusiveIndex, SharedProfile};
use super::types::*;
use crate::clock::{Clock, EpochMs};

mod deadlines;
mod hasher;
mod lifecycle;
mod queries;
mod restore;
mod waiters;

use deadlines::Bucket;
use hasher::FastMap;

/// Tunables of the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookConfig {
    /// How long after `available_from` a pre-reservation may be claimed.
    pub claim_grace_ms: i64,
    /// A claim this soon after its window's start is on time: it gets the window as
    /// booked. Later ones are late (kissats): they need their whole duration from the
    /// claim and are booked anew when that is not free. Without this, two holders whose
    /// windows follow each other and who both wake a few milliseconds late (as every
    /// program does) push each other back forever.
    pub on_time_ms: i64,
    /// How long a lapsed pre-reservation id is remembered, so that a late claim on it
    /// still gets a new pre-reservation instead of "unknown id".
    pub lapsed_memory_ms: i64,
}

impl Default for BookConfig {
    fn default() -> Self {
        Self {
            claim_grace_ms: 60_000,
            on_time_ms: 1_000,
            lapsed_memory_ms: 3_600_000,
        }
    }
}

enum Index {
    Exclusive(ExclusiveIndex),
    Shared(SharedProfile),
}

struct Resource {
    name: Arc<str>,
    kind: ResourceKind,
    config: Value,
    index: Index,
    /// (start, id) of operator holds (auto-claim) booked later than asked: moved earlier
    /// when the resource frees up before their window.
    waiters: BTreeSet<(EpochMs, u64)>,
    /// Every waiter sits at the earliest window it could have (as of the last
    /// [`Book::promote`]), so a release only needs to re-check the waiters whose possible
    /// windows overlap what it freed. False after a promote moved a waiter (the move may
    /// have freed room for waiters already checked) and after a restore.
    waiters_settled: bool,
}

#[derive(Clone)]
struct Entry {
    res: u32,
    mode: ReservationMode,
    weight: u32,
    holder: Arc<Holder>,
    config: Arc<Value>,
    needed_at: EpochMs,
    start: EpochMs,
    end: EpochMs,
    created_at: EpochMs,
    /// Pre: claim by (for auto-claim: `start`). Held: lease end. Also the sweep deadline.
    expires: EpochMs,
    claimed_at: Option<EpochMs>,
    lease_ms: Option<i64>,
    auto_claim: bool,
}

impl Entry {
    fn status(&self) -> ReservationStatus {
        if self.claimed_at.is_some() {
            ReservationStatus::Held
        } else if self.start > self.needed_at {
            ReservationStatus::Waiting
        } else {
            ReservationStatus::Booked
        }
    }
    fn lease_until(&self, from: EpochMs) -> EpochMs {
        self.lease_ms
            .map_or(self.end, |l| from.saturating_add(l).min(self.end))
    }
}

/// What is remembered of a lapsed pre-reservation.
struct Lapsed {
    entry: Entry,
    at: EpochMs,
}

pub struct Book {
    clock: Arc<dyn Clock>,
    cfg: BookConfig,
    resources: Vec<Resource>,
    by_name: FastMap<Arc<str>, u32>,
    entries: FastMap<u64, Entry>,
    /// (deadline, id) items in buckets of [`BUCKET_MS`], keyed by `deadline / BUCKET_MS`.
    /// Lazy: an item is stale once its entry is gone or has another deadline; the sweep
    /// skips stale items, so releasing or renewing never searches this index.
    deadlines: BTreeMap<EpochMs, Bucket>,
    /// Items in `deadlines`, stale ones included.
    deadline_items: usize,
    /// No item in `deadlines` is due before this (`EpochMs::MAX` when there is none), so
    /// the sweep every operation starts with costs one comparison when nothing is due.
    next_due: EpochMs,
    lapsed: FastMap<u64, Lapsed>,
    /// Shared "no configuration requested".
    null_config: Arc<Value>,
    lapsed_order: VecDeque<(EpochMs, u64)>,
    next_id: u64,
    next_seq: u64,
    events: Vec<BookEvent>,
    /// Reused buffer for the waiters [`Book::promote`] walks.
    scratch: Vec<(EpochMs, u64)>,
}

fn overlay(base: &Value, requested: &Value) -> Value {
    match (base, requested) {
        (_, Value::Null) => base.clone(),
        (Value::Object(b), Value::Object(r)) => {
            let mut merged = b.clone();
            for (k, v) in r {
                merged.insert(k.clone(), v.clone());
            }
            Value::Object(merged)
        }
        (_, r) => r.clone(),
    }
}

impl Book {
    pub fn new(
        clock: Arc<dyn Clock>,
        resources: impl IntoIterator<Item = ResourceSpec>,
    ) -> Result<Self, BookError> {
        Self::with_config(clock, BookConfig::default(), resources)
    }

    pub fn with_config(
        clock: Arc<dyn Clock>,
        cfg: BookConfig,
        resources: impl IntoIterator<Item = ResourceSpec>,
    ) -> Result<Self, BookError> {
        let mut book = Book {
            clock,
            cfg,
            resources: Vec::new(),
            by_name: FastMap::default(),
            entries: FastMap::default(),
            deadlines: BTreeMap::new(),
            deadline_items: 0,
            next_due: EpochMs::MAX,
            lapsed: FastMap::default(),
            null_config: Arc::new(Value::Null),
            lapsed_order: VecDeque::new(),
            next_id: 1,
            next_seq: 1,
            events: Vec::new(),
            scratch: Vec::new(),
        };
        for spec in resources {
            if book.by_name.contains_key(spec.name.as_str()) {
                return Err(BookError::DuplicateResource(spec.name));
            }
            if spec.kind.capacity() == 0 {
                return Err(BookError::ZeroCapacity(spec.name));
            }
            let name: Arc<str> = spec.name.into();
            let index = match spec.kind {
                ResourceKind::Exclusive => Index::Exclusive(ExclusiveIndex::default()),
                ResourceKind::Shared { .. } => Index::Shared(SharedProfile::default()),
            };
            book.by_name
                .insert(name.clone(), book.resources.len() as u32);
            book.resources.push(Resource {
                name,
                kind: spec.kind,
                config: spec.config,
                index,
                waiters: BTreeSet::new(),
                waiters_settled: true,
            });
        }
        Ok(book)
    }

    pub fn config(&self) -> BookConfig {
        self.cfg
    }

    pub fn now(&self) -> EpochMs {
        self.clock.now_ms()
    }

    /// The id the next pre-reservation will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn res_idx(&self, name: &str) -> Result<u32, BookError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| BookError::UnknownResource {
                name: name.to_string(),
                suggestion: crate::diag::did_you_mean(
                    name,
                    self.resources.iter().map(|r| &*r.name),
                )
                .map(str::to_string),
            })
    }

    fn weight_for(&self, r: u32, mode: ReservationMode) -> Result<u32, BookError> {
        let res = &self.resources[r as usize];
        match (res.kind, mode) {
            (ResourceKind::Exclusive, ReservationMode::Shared) => Err(BookError::ModeMismatch {
                resource: res.name.to_string(),
                requested: mode,
            }),
            (kind, ReservationMode::Exclusive) => Ok(kind.capacity()),
            (ResourceKind::Shared { .. }, ReservationMode::Shared) => Ok(1),
        }
    }

    /// Earliest start `>= from` of a `dur`-long window with `weight` units free.
    fn find_slot(
        &self,
        r: u32,
        from: EpochMs,
        dur: i64,
        weight: u32,
        skip: Option<u64>,
    ) -> EpochMs {
        let res = &self.resources[r as usize];
        match &res.index {
            Index::Exclusive(ix) => ix.earliest(from, dur, skip),
            Index::Shared(p) => p.earliest(from, dur, weight, res.kind.capacity()),
        }
    }

    fn occupy(&mut self, r: u32, start: EpochMs, end: EpochMs, weight: u32, id: u64) {
        match &mut self.resources[r as usize].index {
            Index::Exclusive(ix) => ix.insert(start, end, id),
            Index::Shared(p) => p.add(start, end, weight),
        }
    }

    fn vacate(&mut self, r: u32, start: EpochMs, end: EpochMs, weight: u32) {
        match &mut self.resources[r as usize].index {
            Index::Exclusive(ix) => ix.remove(start),
            Index::Shared(p) => p.sub(start, end, weight),
        }
    }

    fn view(&self, id: u64, e: &Entry) -> ReservationView {
        make_view(&self.resources[e.res as usize].name, id, e)
    }

    fn emit(
        &mut self,
        ts: EpochMs,
        kind: BookEventKind,
        reason: Option<EndReason>,
        reservation: ReservationView,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.push(BookEvent {
            seq,
            ts,
            kind,
            reason,
            reservation,
        });
    }

    fn emit_for(&mut self, ts: EpochMs, kind: BookEventKind, reason: Option<EndReason>, id: u64) {
        let view = self.view(id, &self.entries[&id]);
        self.emit(ts, kind, reason, view);
    }

    /// Events recorded since the last drain, oldest first.
    pub fn drain_events(&mut self) -> Vec<BookEvent> {
        // The next batch is likely as large as the last: start at the buffer's size, so
        // the buffer does not regrow (copying every event) batch after batch.
        let cap = self.events.capacity().min(65_536);
        std::mem::replace(&mut self.events, Vec::with_capacity(cap))
    }

    /// Number of events waiting to be drained.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    fn insert_entry(&mut self, id: u64, e: Entry) {
        if e.auto_claim && e.claimed_at.is_none() && e.start > e.needed_at {
            self.resources[e.res as usize].waiters.insert((e.start, id));
        }
        self.occupy(e.res, e.start, e.end, e.weight, id);
        let expires = e.expires;
        // In the map first: a rebuild of the deadline index reads the entries.
        self.entries.insert(id, e);
        self.push_deadline(expires, id);
    }

    fn effective_config(&self, e: &Entry) -> Value {
        overlay(&self.resources[e.res as usize].config, &e.config)
    }
}

/// Record one event, built in place in the event buffer.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn record(
    events: &mut Vec<BookEvent>,
    next_seq: &mut u64,
    ts: EpochMs,
    kind: BookEventKind,
    reason: Option<EndReason>,
    resource: &Arc<str>,
    id: u64,
    e: &Entry,
) {
    let seq = *next_seq;
    *next_seq += 1;
    events.push(BookEvent {
        seq,
        ts,
        kind,
        reason,
        reservation: make_view(resource, id, e),
    });
}

#[inline(always)]
fn make_view(resource: &Arc<str>, id: u64, e: &Entry) -> ReservationView {
    ReservationView {
        id: ResId(id),
        resource: resource.clone(),
        mode: e.mode,
        holder: e.holder.clone(),
        status: e.status(),
        needed_at: e.needed_at,
        start: e.start,
        end: e.end,
        expires: e.expires,
        claimed_at: e.claimed_at,
        lease_ms: e.lease_ms,
        auto_claim: e.auto_claim,
        created_at: e.created_at,
        config: e.config.clone(),
    }
}
