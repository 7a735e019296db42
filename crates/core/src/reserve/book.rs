//! The in-memory reservation book. Pure: no I/O, time only through the injected clock.
//!
//! Every public operation first sweeps what fell due (unclaimed pre-reservations, lapsed
//! leases, ended windows, operator holds whose window starts), so answers always reflect
//! the clock. Every change is recorded as a [`BookEvent`]; callers drain them with
//! [`Book::drain_events`] to persist and broadcast.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde_json::Value;

use super::error::BookError;
use super::index::{ExclusiveIndex, SharedProfile};
use super::types::*;
use crate::clock::{Clock, EpochMs};

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

/// Width of a deadline bucket.
const BUCKET_MS: EpochMs = 1024;

/// Deadlines falling in one [`BUCKET_MS`] span. Sorted (latest first) once the sweep
/// reaches it, so the sweep pops due items off the end.
#[derive(Default)]
struct Bucket {
    items: Vec<(EpochMs, u64)>,
    sorted: bool,
}

impl Bucket {
    fn push(&mut self, item: (EpochMs, u64)) {
        if self.sorted {
            let at = self.items.partition_point(|x| *x > item);
            self.items.insert(at, item);
        } else {
            self.items.push(item);
        }
    }
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

/// FxHash-style hasher: the book's keys are small ids and short names it made itself, so
/// DoS-resistant SipHash buys nothing and costs a third of a request.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(K);
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

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

    fn set_expires(&mut self, id: u64, expires: EpochMs) {
        let e = self.entries.get_mut(&id).expect("entry exists");
        if e.expires != expires {
            e.expires = expires;
            self.push_deadline(expires, id);
        }
    }

    fn push_deadline(&mut self, due: EpochMs, id: u64) {
        self.next_due = self.next_due.min(due);
        self.deadlines
            .entry(due.div_euclid(BUCKET_MS))
            .or_default()
            .push((due, id));
        self.deadline_items += 1;
        if self.deadline_items > 4 * self.entries.len() + 65_536 {
            // Mostly stale: rebuild from the live entries.
            self.deadlines.clear();
            self.deadline_items = 0;
            let live: Vec<(EpochMs, u64)> = self
                .entries
                .iter()
                .map(|(id, e)| (e.expires, *id))
                .collect();
            self.next_due = live.iter().map(|&(d, _)| d).min().unwrap_or(EpochMs::MAX);
            for (due, id) in live {
                self.deadlines
                    .entry(due.div_euclid(BUCKET_MS))
                    .or_default()
                    .push((due, id));
                self.deadline_items += 1;
            }
        }
    }

    /// Take the live items due by `now`, in deadline order.
    fn take_due(&mut self, now: EpochMs) -> Vec<(EpochMs, u64)> {
        let mut due = Vec::new();
        while let Some(mut bucket) = self.deadlines.first_entry() {
            if *bucket.key() > now.div_euclid(BUCKET_MS) {
                break;
            }
            let b = bucket.get_mut();
            if !b.sorted {
                // Most items are stale by now (released or renewed): drop them before
                // sorting. An id never gets a stale deadline back without a new item.
                let entries = &self.entries;
                let before = b.items.len();
                b.items
                    .retain(|&(d, id)| entries.get(&id).is_some_and(|e| e.expires == d));
                self.deadline_items -= before - b.items.len();
                b.items.sort_unstable_by(|x, y| y.cmp(x));
                b.sorted = true;
            }
            while let Some(&(d, id)) = b.items.last() {
                if d > now {
                    break;
                }
                b.items.pop();
                self.deadline_items -= 1;
                if self.entries.get(&id).is_some_and(|e| e.expires == d) {
                    due.push((d, id));
                }
            }
            if b.items.is_empty() {
                bucket.remove();
            } else {
                break; // the rest of this bucket is after now
            }
        }
        due
    }

    /// Book the earliest window from `from` for a template entry and record the event.
    /// A window that would end past the last instant an `EpochMs` holds is refused.
    fn book_pre(
        &mut self,
        mut e: Entry,
        from: EpochMs,
        duration: i64,
        now: EpochMs,
    ) -> Result<PreReservation, BookError> {
        let start = self.find_slot(e.res, from, duration, e.weight, None);
        let end = start.checked_add(duration).ok_or(BookError::OutOfRange {
            from: start,
            duration_ms: duration,
        })?;
        e.start = start;
        e.end = end;
        e.created_at = now;
        e.claimed_at = None;
        e.expires = if e.auto_claim {
            start
        } else {
            start.saturating_add(self.cfg.claim_grace_ms)
        };
        let id = self.next_id;
        self.next_id += 1;
        let kind = if start > e.needed_at {
            BookEventKind::Waiting
        } else {
            BookEventKind::Requested
        };
        let expires = e.expires;
        record(
            &mut self.events,
            &mut self.next_seq,
            now,
            kind,
            None,
            &self.resources[e.res as usize].name,
            id,
            &e,
        );
        self.insert_entry(id, e);
        Ok(PreReservation {
            id: ResId(id),
            available_from: start,
            expires,
        })
    }

    /// kissats `request_reservation`: a pre-reservation for the earliest window at or after
    /// `time_needed` (or exactly then, with `next_available == false`).
    pub fn request(&mut self, req: Request<'_>) -> Result<PreReservation, BookError> {
        let now = self.now();
        self.sweep(now);
        if req.duration_ms <= 0 {
            return Err(BookError::InvalidDuration(req.duration_ms));
        }
        let r = self.res_idx(req.resource)?;
        let weight = self.weight_for(r, req.mode)?;
        let needed_at = req.time_needed.unwrap_or(now).max(now);
        if needed_at.checked_add(req.duration_ms).is_none() {
            return Err(BookError::OutOfRange {
                from: needed_at,
                duration_ms: req.duration_ms,
            });
        }
        if !req.next_available {
            let start = self.find_slot(r, needed_at, req.duration_ms, weight, None);
            if start != needed_at {
                return Err(BookError::ResourceUnavailable {
                    resource: req.resource.to_string(),
                    requested: Window {
                        start: needed_at,
                        end: needed_at.saturating_add(req.duration_ms),
                    },
                    next: Window {
                        start,
                        end: start.saturating_add(req.duration_ms),
                    },
                });
            }
        }
        let template = Entry {
            res: r,
            mode: req.mode,
            weight,
            holder: req.holder,
            config: if req.config.is_null() {
                self.null_config.clone()
            } else {
                Arc::new(req.config)
            },
            needed_at,
            start: 0,
            end: 0,
            created_at: now,
            expires: 0,
            claimed_at: None,
            lease_ms: req.lease_ms.filter(|l| *l > 0),
            auto_claim: req.auto_claim,
        };
        self.book_pre(template, needed_at, req.duration_ms, now)
    }

    fn effective_config(&self, e: &Entry) -> Value {
        overlay(&self.resources[e.res as usize].config, &e.config)
    }

    fn claimed(&mut self, id: u64, at: EpochMs) -> Reservation {
        let e = self.entries.get_mut(&id).expect("entry");
        if e.auto_claim {
            self.resources[e.res as usize]
                .waiters
                .remove(&(e.start, id));
        }
        e.claimed_at = Some(at);
        let lease_until = e.lease_until(at);
        let old_expires = e.expires;
        e.expires = lease_until;
        let res = &mut self.resources[e.res as usize];
        let config = overlay(&res.config, &e.config);
        if matches!(res.kind, ResourceKind::Exclusive) && !e.config.is_null() {
            // The holder configured the resource: that is its current configuration now.
            res.config = config.clone();
        }
        record(
            &mut self.events,
            &mut self.next_seq,
            at,
            BookEventKind::Claimed,
            None,
            &res.name,
            id,
            e,
        );
        let end = e.end;
        if old_expires != lease_until {
            self.push_deadline(lease_until, id);
        }
        Reservation {
            id: ResId(id),
            expire_time: end,
            lease_until,
            resource_config: config,
        }
    }

    /// kissats `claim_reservation`. Claiming on time gives the reservation; claiming late
    /// keeps the full duration from now if that is free, and otherwise releases the old
    /// window and books a new pre-reservation (also for a pre-reservation that lapsed).
    pub fn claim(&mut self, id: ResId) -> Result<ClaimOutcome, BookError> {
        let now = self.now();
        self.sweep(now);
        let Some(e) = self.entries.get(&id.0) else {
            let Some(lapsed) = self.lapsed.remove(&id.0) else {
                return Err(BookError::UnknownId(id));
            };
            let duration = lapsed.entry.end.saturating_sub(lapsed.entry.start);
            let mut template = lapsed.entry;
            template.needed_at = now;
            let pre = self.book_pre(template, now, duration, now)?;
            return Ok(rebooked(pre));
        };
        if e.claimed_at.is_some() {
            return Err(BookError::AlreadyClaimed(id));
        }
        if now < e.start {
            return Err(BookError::ClaimTooEarly {
                id,
                available_from: e.start,
            });
        }
        if now <= e.start.saturating_add(self.cfg.on_time_ms) {
            return Ok(ClaimOutcome::Claimed(self.claimed(id.0, now)));
        }
        // Late: the holder still needs the whole duration, from now.
        let duration = e.end.saturating_sub(e.start);
        if e.auto_claim {
            self.resources[e.res as usize]
                .waiters
                .remove(&(e.start, id.0));
        }
        let (res, weight, old_start, old_end) = (e.res, e.weight, e.start, e.end);
        self.vacate(res, old_start, old_end, weight);
        let start = self.find_slot(res, now, duration, weight, None);
        if start == now {
            self.occupy(res, now, now.saturating_add(duration), weight, id.0);
            let e = self.entries.get_mut(&id.0).expect("entry");
            e.start = now;
            e.end = now.saturating_add(duration);
            return Ok(ClaimOutcome::Claimed(self.claimed(id.0, now)));
        }
        self.occupy(res, old_start, old_end, weight, id.0);
        let old =
            self.remove_entry_with_event(id.0, now, BookEventKind::Released, EndReason::Rebooked);
        let mut template = old;
        template.needed_at = now;
        let pre = self.book_pre(template, now, duration, now)?;
        Ok(rebooked(pre))
    }

    fn remove_entry_with_event(
        &mut self,
        id: u64,
        ts: EpochMs,
        kind: BookEventKind,
        reason: EndReason,
    ) -> Entry {
        let e = self.entries.remove(&id).expect("entry exists");
        self.end_entry(id, e, ts, kind, reason)
    }

    /// Take an entry already removed from `entries` out of the indexes, record its end and
    /// move up the holds waiting on its resource.
    fn end_entry(
        &mut self,
        id: u64,
        e: Entry,
        ts: EpochMs,
        kind: BookEventKind,
        reason: EndReason,
    ) -> Entry {
        self.vacate(e.res, e.start, e.end, e.weight);
        let res = &mut self.resources[e.res as usize];
        // Only unclaimed auto-claim holds are ever in `waiters`.
        if e.auto_claim && e.claimed_at.is_none() {
            res.waiters.remove(&(e.start, id));
        }
        record(
            &mut self.events,
            &mut self.next_seq,
            ts,
            kind,
            Some(reason),
            &res.name,
            id,
            &e,
        );
        if !self.resources[e.res as usize].waiters.is_empty() {
            self.promote(e.res, ts, (e.start, e.end));
        }
        e
    }

    /// `r` freed `freed` at `at`: move operator holds waiting on it to their earliest window
    /// now possible (never before they asked for it).
    fn promote(&mut self, r: u32, at: EpochMs, freed: (EpochMs, EpochMs)) {
        let mut waiting = std::mem::take(&mut self.scratch);
        waiting.clear();
        waiting.extend(self.resources[r as usize].waiters.iter().copied());
        // Settled waiters can only move into windows that overlap the freed interval; once
        // one moves, the room it left may help any waiter after it, so check them all.
        let mut check_all = !self.resources[r as usize].waiters_settled;
        let mut moved = false;
        for &(start, id) in &waiting {
            let e = &self.entries[&id];
            let (dur, weight, from) =
                (e.end.saturating_sub(e.start), e.weight, e.needed_at.max(at));
            if from >= start {
                continue;
            }
            // Every window it could move to lies in [from, start + dur).
            if !check_all && (freed.1 <= from || freed.0 >= start.saturating_add(dur)) {
                continue;
            }
            let s = match &mut self.resources[r as usize].index {
                // The earliest window with this hold's own interval left out: no need to
                // take it out of the index and put it back when it cannot move.
                Index::Exclusive(ix) => {
                    let s = ix.earliest_before(from, dur, Some(id), start);
                    if s >= start {
                        continue;
                    }
                    ix.remove(start);
                    ix.insert(s, s.saturating_add(dur), id);
                    s
                }
                Index::Shared(_) => {
                    let end = start.saturating_add(dur);
                    self.vacate(r, start, end, weight);
                    let s = self.find_slot(r, from, dur, weight, None);
                    if s >= start {
                        self.occupy(r, start, end, weight, id);
                        continue;
                    }
                    self.occupy(r, s, s.saturating_add(dur), weight, id);
                    s
                }
            };
            moved = true;
            check_all = true;
            let e = self.entries.get_mut(&id).expect("entry");
            e.start = s;
            e.end = s.saturating_add(dur);
            let still_waiting = s > e.needed_at;
            let waiters = &mut self.resources[r as usize].waiters;
            waiters.remove(&(start, id));
            if still_waiting {
                waiters.insert((s, id));
            }
            self.set_expires(id, s);
            let kind = if still_waiting {
                BookEventKind::Waiting
            } else {
                BookEventKind::Requested
            };
            let view = self.view(id, &self.entries[&id]);
            self.emit(at, kind, None, view);
        }
        self.resources[r as usize].waiters_settled = !moved;
        self.scratch = waiting;
    }

    /// kissats `release_resource`: frees a reservation or pre-reservation.
    pub fn release(&mut self, id: ResId) -> Result<(), BookError> {
        let now = self.now();
        self.sweep(now);
        if let Some(e) = self.entries.remove(&id.0) {
            self.end_entry(id.0, e, now, BookEventKind::Released, EndReason::Released);
            // A hold moved up to now starts at once.
            self.sweep(now);
            Ok(())
        } else if self.lapsed.remove(&id.0).is_some() {
            Ok(())
        } else {
            Err(BookError::UnknownId(id))
        }
    }

    /// Give back everything held or booked by holders that are over (`ended`), as
    /// `Released` events with [`EndReason::HolderEnded`]; their lapsed pre-reservations are
    /// forgotten too, so a late claim cannot book for them again. Returns how many
    /// reservations were released.
    pub fn release_ended(&mut self, ended: impl Fn(&Holder) -> bool) -> usize {
        let now = self.now();
        self.sweep(now);
        let mut ids: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| ended(&e.holder))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for &id in &ids {
            self.remove_entry_with_event(id, now, BookEventKind::Released, EndReason::HolderEnded);
        }
        self.lapsed.retain(|_, l| !ended(&l.entry.holder));
        // A hold moved up to now starts at once.
        self.sweep(now);
        ids.len()
    }

    /// Renew the lease of a claimed reservation: it now lapses `lease_ms` from now (never
    /// after its window ends). Without a lease this changes nothing.
    pub fn renew(&mut self, id: ResId) -> Result<Reservation, BookError> {
        let now = self.now();
        self.sweep(now);
        let e = self.entries.get(&id.0).ok_or(BookError::UnknownId(id))?;
        if e.claimed_at.is_none() {
            return Err(BookError::NotClaimed(id));
        }
        let until = e.lease_until(now);
        if until != e.expires {
            self.set_expires(id.0, until);
            self.emit_for(now, BookEventKind::Renewed, None, id.0);
        }
        let e = &self.entries[&id.0];
        Ok(Reservation {
            id,
            expire_time: e.end,
            lease_until: e.expires,
            resource_config: self.effective_config(e),
        })
    }

    /// Move the end of a reservation's window later, if nothing else is booked there.
    pub fn extend(&mut self, id: ResId, new_end: EpochMs) -> Result<Reservation, BookError> {
        let now = self.now();
        self.sweep(now);
        let e = self
            .entries
            .get(&id.0)
            .ok_or(BookError::UnknownId(id))?
            .clone();
        if new_end > e.end {
            let extra = new_end.saturating_sub(e.end);
            let free_from = self.find_slot(e.res, e.end, extra, e.weight, Some(id.0));
            if free_from != e.end {
                return Err(BookError::ResourceUnavailable {
                    resource: self.resources[e.res as usize].name.to_string(),
                    requested: Window {
                        start: e.end,
                        end: new_end,
                    },
                    next: Window {
                        start: free_from,
                        end: free_from.saturating_add(extra),
                    },
                });
            }
            self.vacate(e.res, e.start, e.end, e.weight);
            self.occupy(e.res, e.start, new_end, e.weight, id.0);
            self.entries.get_mut(&id.0).expect("entry").end = new_end;
            if e.claimed_at.is_some() && e.lease_ms.is_none() {
                self.set_expires(id.0, new_end);
            }
            self.emit_for(now, BookEventKind::Extended, None, id.0);
        }
        let e = &self.entries[&id.0];
        Ok(Reservation {
            id,
            expire_time: e.end,
            lease_until: e.expires,
            resource_config: self.effective_config(e),
        })
    }

    /// Apply everything due by now. Returns how many entries changed.
    pub fn tick(&mut self) -> usize {
        let now = self.now();
        self.sweep(now)
    }

    fn sweep(&mut self, now: EpochMs) -> usize {
        let mut changed = 0;
        if now >= self.next_due {
            changed = self.sweep_due(now);
        }
        while let Some(&(at, id)) = self.lapsed_order.front() {
            if at.saturating_add(self.cfg.lapsed_memory_ms) > now {
                break;
            }
            self.lapsed_order.pop_front();
            if self.lapsed.get(&id).is_some_and(|l| l.at == at) {
                self.lapsed.remove(&id);
            }
        }
        changed
    }

    /// The earliest deadline item left (stale ones included), for [`Book::next_due`].
    fn first_deadline(&self) -> EpochMs {
        self.deadlines
            .first_key_value()
            .and_then(|(_, b)| {
                if b.sorted {
                    b.items.last().map(|&(d, _)| d)
                } else {
                    b.items.iter().map(|&(d, _)| d).min()
                }
            })
            .unwrap_or(EpochMs::MAX)
    }

    fn sweep_due(&mut self, now: EpochMs) -> usize {
        let mut changed = 0;
        loop {
            // Cheap exit on the hot path: nothing due.
            match self.deadlines.first_key_value() {
                Some((&k, b)) if k <= now.div_euclid(BUCKET_MS) => {
                    if b.sorted && b.items.last().is_some_and(|&(d, _)| d > now) {
                        break;
                    }
                }
                _ => break,
            }
            let due = self.take_due(now);
            if due.is_empty() {
                break;
            }
            for (due, id) in due {
                // Handling an earlier item may have changed this one.
                let Some(e) = self.entries.get(&id).filter(|e| e.expires == due) else {
                    continue;
                };
                changed += 1;
                if e.claimed_at.is_none() && e.auto_claim {
                    let start = e.start;
                    self.claimed(id, start);
                    continue;
                }
                let (reason, lapsed) = match (e.claimed_at, e.expires < e.end) {
                    (None, _) => (EndReason::Unclaimed, true),
                    (Some(_), true) => (EndReason::LeaseLapsed, false),
                    (Some(_), false) => (EndReason::WindowEnded, false),
                };
                let entry = self.remove_entry_with_event(id, due, BookEventKind::Expired, reason);
                if lapsed {
                    self.lapsed.insert(id, Lapsed { entry, at: due });
                    self.lapsed_order.push_back((due, id));
                }
            }
        }
        self.next_due = self.first_deadline();
        changed
    }

    /// kissats `get_resource_availability`: whether `[start, end)` is free for an exclusive
    /// request, else the soonest window of the same length.
    pub fn availability(
        &mut self,
        resource: &str,
        start: EpochMs,
        end: EpochMs,
    ) -> Result<Availability, BookError> {
        self.availability_for(resource, start, end, ReservationMode::Exclusive)
    }

    /// As [`Book::availability`] for a request in `mode`.
    pub fn availability_for(
        &mut self,
        resource: &str,
        start: EpochMs,
        end: EpochMs,
        mode: ReservationMode,
    ) -> Result<Availability, BookError> {
        let w = self.next_window(resource, start, end.saturating_sub(start), mode)?;
        Ok(Availability {
            available: w.start == start.max(self.now()),
            avail_start: w.start,
            avail_end: w.end,
        })
    }

    /// The next free window of `duration_ms` at or after `from` (never before now).
    pub fn next_window(
        &mut self,
        resource: &str,
        from: EpochMs,
        duration_ms: i64,
        mode: ReservationMode,
    ) -> Result<Window, BookError> {
        let now = self.now();
        self.sweep(now);
        if duration_ms <= 0 {
            return Err(BookError::InvalidDuration(duration_ms));
        }
        let r = self.res_idx(resource)?;
        let weight = self.weight_for(r, mode)?;
        let start = self.find_slot(r, from.max(now), duration_ms, weight, None);
        Ok(Window {
            start,
            end: start.saturating_add(duration_ms),
        })
    }

    fn in_use_at(&self, r: u32, t: EpochMs) -> u32 {
        match &self.resources[r as usize].index {
            Index::Exclusive(ix) => u32::from(ix.busy_at(t)),
            Index::Shared(p) => p.usage_at(t),
        }
    }

    /// kissats `get_all_resources`, with the units in use now.
    pub fn resources(&mut self) -> Vec<ResourceInfo> {
        let now = self.now();
        self.sweep(now);
        (0..self.resources.len() as u32)
            .map(|r| {
                let res = &self.resources[r as usize];
                ResourceInfo {
                    name: res.name.to_string(),
                    kind: res.kind,
                    in_use: self.in_use_at(r, now),
                    config: res.config.clone(),
                }
            })
            .collect()
    }

    /// kissats `get_available_resources`: resources with at least one free unit now.
    pub fn available_resources(&mut self) -> Vec<String> {
        self.resources()
            .into_iter()
            .filter(|r| r.in_use < r.kind.capacity())
            .map(|r| r.name)
            .collect()
    }

    /// kissats `get_resource_config`.
    pub fn resource_config(&self, resource: &str) -> Result<Value, BookError> {
        let r = self.res_idx(resource)?;
        Ok(self.resources[r as usize].config.clone())
    }

    pub fn resource_kind(&self, resource: &str) -> Result<ResourceKind, BookError> {
        let r = self.res_idx(resource)?;
        Ok(self.resources[r as usize].kind)
    }

    pub fn has_resource(&self, resource: &str) -> bool {
        self.by_name.contains_key(resource)
    }

    /// One live reservation.
    pub fn get(&mut self, id: ResId) -> Option<ReservationView> {
        let now = self.now();
        self.sweep(now);
        self.entries.get(&id.0).map(|e| self.view(id.0, e))
    }

    /// Every live reservation and pre-reservation, by id.
    pub fn reservations(&mut self) -> Vec<ReservationView> {
        let now = self.now();
        self.sweep(now);
        let mut ids: Vec<u64> = self.entries.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| self.view(id, &self.entries[&id]))
            .collect()
    }

    /// Who holds what, who is booked next and who waits, per resource that has any.
    pub fn holds(&mut self) -> Vec<ResourceHolds> {
        let all = self.reservations();
        let mut per: Vec<Option<ResourceHolds>> = (0..self.resources.len()).map(|_| None).collect();
        for v in all {
            let r = self.by_name[&v.resource] as usize;
            let slot = per[r].get_or_insert_with(|| ResourceHolds {
                resource: self.resources[r].name.to_string(),
                kind: self.resources[r].kind,
                holders: Vec::new(),
                booked: Vec::new(),
                waiters: Vec::new(),
            });
            match v.status {
                ReservationStatus::Held => slot.holders.push(v),
                ReservationStatus::Booked => slot.booked.push(v),
                ReservationStatus::Waiting => slot.waiters.push(v),
            }
        }
        per.into_iter()
            .flatten()
            .map(|mut h| {
                h.holders.sort_by_key(|v| (v.start, v.id));
                h.booked.sort_by_key(|v| (v.start, v.id));
                h.waiters.sort_by_key(|v| (v.start, v.id));
                h
            })
            .collect()
    }

    /// Reload live reservations after a restart. Entries whose resource is gone or that no
    /// longer fit (capacity lowered) are dropped with `LabChanged`; then everything already
    /// due is swept, so expired ones are dropped with their usual events.
    pub fn restore(&mut self, mut saved: Vec<ReservationView>, next_id: u64, next_seq: u64) {
        self.next_seq = self.next_seq.max(next_seq);
        saved.sort_by_key(|v| (v.created_at, v.id));
        let now = self.now();
        for v in saved {
            self.next_id = self.next_id.max(v.id.0 + 1);
            if self.entries.contains_key(&v.id.0) {
                continue;
            }
            let fits = self.by_name.get(&v.resource).copied().and_then(|r| {
                let weight = self.weight_for(r, v.mode).ok()?;
                (v.end > v.start
                    && self.find_slot(r, v.start, v.end.saturating_sub(v.start), weight, None)
                        == v.start)
                    .then_some((r, weight))
            });
            let Some((res, weight)) = fits else {
                let view = v.clone();
                self.emit(
                    now,
                    BookEventKind::Expired,
                    Some(EndReason::LabChanged),
                    view,
                );
                continue;
            };
            let entry = Entry {
                res,
                mode: v.mode,
                weight,
                holder: v.holder,
                config: v.config,
                needed_at: v.needed_at,
                start: v.start,
                end: v.end,
                created_at: v.created_at,
                expires: v.expires,
                claimed_at: v.claimed_at,
                lease_ms: v.lease_ms,
                auto_claim: v.auto_claim,
            };
            self.insert_entry(v.id.0, entry);
        }
        self.next_id = self.next_id.max(next_id);
        // Restored waiters need not sit at their earliest window.
        for res in &mut self.resources {
            res.waiters_settled = false;
        }
        self.sweep(now);
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

fn rebooked(pre: PreReservation) -> ClaimOutcome {
    ClaimOutcome::Rebooked {
        pre_reservation_id: pre.id,
        new_avail: pre.available_from,
        new_expire: pre.expires,
    }
}
