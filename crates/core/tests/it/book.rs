//! The reservation book on a virtual clock: its logic, with random interleavings checked
//! against a model (the book as a service and on SQLite is tested in the engine).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::json;
use testbay_core::clock::ManualClock;
use testbay_core::reserve::*;

use crate::support::T0;

fn op(name: &str) -> Holder {
    Holder::Operator { name: name.into() }
}

fn lane(run: &str, lane: &str) -> Holder {
    Holder::Run {
        run_id: run.into(),
        lane: lane.into(),
        task: None,
    }
}

fn specs() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec {
            name: "ir_blaster".into(),
            kind: ResourceKind::Exclusive,
            config: json!({"port": 1}),
        },
        ResourceSpec {
            name: "stream_server".into(),
            kind: ResourceKind::Shared { capacity: 2 },
            config: json!({"profile": "sd"}),
        },
    ]
}

fn book() -> (ManualClock, Book) {
    let clock = ManualClock::new(T0);
    let book = Book::new(Arc::new(clock.clone()), specs()).unwrap();
    (clock, book)
}

fn claimed(outcome: ClaimOutcome) -> Reservation {
    match outcome {
        ClaimOutcome::Claimed(r) => r,
        other => panic!("expected a claim, got {other:?}"),
    }
}

#[test]
fn lifecycle_request_claim_release_with_events() {
    let (_clock, mut b) = book();
    let pre = b
        .request(
            ReservationRequest::new("ir_blaster", op("ann"), 60_000).config(json!({"port": 2})),
        )
        .unwrap();
    assert_eq!(pre.available_from, T0);
    assert_eq!(pre.expires, T0 + b.config().claim_grace_ms);
    let r = claimed(b.claim(pre.id).unwrap());
    assert_eq!(r.expire_time, T0 + 60_000);
    assert_eq!(r.resource_config, json!({"port": 2}));
    // The holder configured the exclusive resource.
    assert_eq!(b.resource_config("ir_blaster").unwrap(), json!({"port": 2}));
    assert_eq!(b.available_resources(), vec!["stream_server".to_string()]);
    b.release(pre.id).unwrap();
    assert_eq!(b.release(pre.id), Err(BookError::UnknownId(pre.id)));
    let kinds: Vec<_> = b.drain_events().iter().map(|e| (e.seq, e.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (1, BookEventKind::Requested),
            (2, BookEventKind::Claimed),
            (3, BookEventKind::Released)
        ]
    );
    assert!(b.reservations().is_empty());
}

#[test]
fn busy_resource_gives_a_later_window_and_a_waiter() {
    let (clock, mut b) = book();
    let first = b
        .request(ReservationRequest::new("ir_blaster", op("ann"), 10_000))
        .unwrap();
    b.claim(first.id).unwrap();
    let second = b
        .request(ReservationRequest::new(
            "ir_blaster",
            lane("r1", "stb-01"),
            5_000,
        ))
        .unwrap();
    assert_eq!(second.available_from, T0 + 10_000);
    let err = b
        .request(ReservationRequest::new("ir_blaster", op("bob"), 5_000).next_available(false))
        .unwrap_err();
    assert_eq!(
        err,
        BookError::ResourceUnavailable {
            resource: "ir_blaster".into(),
            requested: Window {
                start: T0,
                end: T0 + 5_000
            },
            next: Window {
                start: T0 + 15_000,
                end: T0 + 20_000
            },
        }
    );
    let holds = b.holds();
    assert_eq!(holds.len(), 1);
    assert_eq!(*holds[0].holders[0].holder, op("ann"));
    assert_eq!(holds[0].waiters.len(), 1);
    assert_eq!(*holds[0].waiters[0].holder, lane("r1", "stb-01"));
    assert_eq!(holds[0].waiters[0].start, T0 + 10_000);
    assert!(b
        .drain_events()
        .iter()
        .any(|e| e.kind == BookEventKind::Waiting));
    // Too early, then on time.
    assert!(matches!(
        b.claim(second.id),
        Err(BookError::ClaimTooEarly { .. })
    ));
    clock.set(T0 + 10_000);
    let r = claimed(b.claim(second.id).unwrap());
    assert_eq!(r.expire_time, T0 + 15_000);
    assert_eq!(b.holds()[0].holders[0].status, ReservationStatus::Held);
}

#[test]
fn late_claim_keeps_full_duration_when_free_and_rebooks_when_not() {
    let (clock, mut b) = book();
    let pre = b
        .request(ReservationRequest::new("ir_blaster", op("ann"), 10_000))
        .unwrap();
    clock.advance(2_000);
    let r = claimed(b.claim(pre.id).unwrap());
    assert_eq!(
        r.expire_time,
        T0 + 12_000,
        "full duration from the late claim"
    );
    b.release(pre.id).unwrap();

    // Now someone books right after the window, so a late claim cannot have it all.
    let t = clock_now(&clock);
    let a = b
        .request(ReservationRequest::new("ir_blaster", op("ann"), 10_000))
        .unwrap();
    let next = b
        .request(ReservationRequest::new("ir_blaster", op("bob"), 10_000).at(t + 10_000))
        .unwrap();
    assert_eq!(next.available_from, t + 10_000);
    clock.advance(3_000);
    match b.claim(a.id).unwrap() {
        ClaimOutcome::Rebooked {
            pre_reservation_id,
            new_avail,
            new_expire,
        } => {
            assert_ne!(pre_reservation_id, a.id);
            assert_eq!(new_avail, t + 20_000);
            assert_eq!(new_expire, new_avail + b.config().claim_grace_ms);
            assert!(b.get(a.id).is_none(), "old pre-reservation is released");
        }
        other => panic!("expected a new pre-reservation, got {other:?}"),
    }
}

/// A claim a moment after its window's start (a program's wake-up latency) keeps the
/// window as booked, even when the next booking follows right after it.
#[test]
fn a_claim_just_after_the_start_is_on_time() {
    let (clock, mut b) = book();
    let t = clock_now(&clock);
    let a = b
        .request(ReservationRequest::new("ir_blaster", op("ann"), 10_000))
        .unwrap();
    b.request(ReservationRequest::new("ir_blaster", op("bob"), 10_000).at(t + 10_000))
        .unwrap();
    clock.advance(b.config().on_time_ms);
    let r = claimed(b.claim(a.id).unwrap());
    assert_eq!(
        r.expire_time,
        t + 10_000,
        "the booked window, not a later one"
    );
}

fn clock_now(c: &ManualClock) -> i64 {
    use testbay_core::clock::Clock;
    c.now_ms()
}

#[test]
fn unclaimed_pre_reservation_expires_and_a_late_claim_rebooks() {
    let (clock, mut b) = book();
    let pre = b
        .request(ReservationRequest::new("ir_blaster", op("ann"), 10_000))
        .unwrap();
    clock.set(pre.expires + 1);
    assert_eq!(b.tick(), 1);
    let ev = b.drain_events();
    let last = ev.last().unwrap();
    assert_eq!(
        (last.kind, last.reason),
        (BookEventKind::Expired, Some(EndReason::Unclaimed))
    );
    assert!(b.get(pre.id).is_none());
    match b.claim(pre.id).unwrap() {
        ClaimOutcome::Rebooked { new_avail, .. } => assert_eq!(new_avail, pre.expires + 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.claim(ResId(999)), Err(BookError::UnknownId(ResId(999))));
}

#[test]
fn leases_lapse_without_renewal_and_renewal_keeps_them() {
    let (clock, mut b) = book();
    let pre = b
        .request(ReservationRequest::new("ir_blaster", lane("r1", "stb-01"), 600_000).lease(30_000))
        .unwrap();
    let r = claimed(b.claim(pre.id).unwrap());
    assert_eq!(r.lease_until, T0 + 30_000);
    for _ in 0..5 {
        clock.advance(20_000);
        let r = b.renew(pre.id).unwrap();
        assert_eq!(r.lease_until, clock_now(&clock) + 30_000);
    }
    assert!(b.get(pre.id).is_some());
    // The holder dies: no more renewals.
    clock.advance(30_000);
    assert!(b.get(pre.id).is_none());
    let ev = b.drain_events();
    let last = ev.last().unwrap();
    assert_eq!(last.reason, Some(EndReason::LeaseLapsed));
    assert_eq!(
        ev.iter()
            .filter(|e| e.kind == BookEventKind::Renewed)
            .count(),
        5
    );
    // Free again at once.
    assert!(
        b.availability("ir_blaster", clock_now(&clock), clock_now(&clock) + 1000)
            .unwrap()
            .available
    );
    // Renewing a pre-reservation is an error, as is an unknown id.
    let p2 = b
        .request(ReservationRequest::new("ir_blaster", op("x"), 1000).at(clock_now(&clock) + 5000))
        .unwrap();
    assert_eq!(b.renew(p2.id), Err(BookError::NotClaimed(p2.id)));
}

#[test]
fn claimed_window_ends() {
    let (clock, mut b) = book();
    let pre = b
        .request(ReservationRequest::new("ir_blaster", op("ann"), 1_000))
        .unwrap();
    b.claim(pre.id).unwrap();
    clock.advance(1_000);
    b.tick();
    assert_eq!(
        b.drain_events().last().unwrap().reason,
        Some(EndReason::WindowEnded)
    );
}

#[test]
fn shared_capacity_is_never_exceeded_and_exclusive_takes_all_of_it() {
    let (_clock, mut b) = book();
    let s = |b: &mut Book, who: &str| {
        b.request(
            ReservationRequest::new("stream_server", op(who), 10_000).mode(ReservationMode::Shared),
        )
        .unwrap()
    };
    let a = s(&mut b, "a");
    let c = s(&mut b, "b");
    let d = s(&mut b, "c");
    assert_eq!((a.available_from, c.available_from), (T0, T0));
    assert_eq!(
        d.available_from,
        T0 + 10_000,
        "third shared holder waits, capacity 2"
    );
    let x = b
        .request(
            ReservationRequest::new("stream_server", op("x"), 5_000)
                .mode(ReservationMode::Exclusive),
        )
        .unwrap();
    assert_eq!(
        x.available_from,
        T0 + 20_000,
        "exclusive on shared needs every unit"
    );
    b.release(a.id).unwrap();
    let e = s(&mut b, "e");
    assert_eq!(e.available_from, T0);
    // Shared mode on an exclusive resource is refused.
    assert!(matches!(
        b.request(ReservationRequest::new("ir_blaster", op("x"), 5).mode(ReservationMode::Shared)),
        Err(BookError::ModeMismatch { .. })
    ));
}

#[test]
fn next_window_and_availability_find_gaps() {
    let (_clock, mut b) = book();
    b.request(ReservationRequest::new("ir_blaster", op("a"), 10_000))
        .unwrap();
    b.request(ReservationRequest::new("ir_blaster", op("b"), 10_000).at(T0 + 15_000))
        .unwrap();
    let w = b
        .next_window("ir_blaster", T0, 5_000, ReservationMode::Exclusive)
        .unwrap();
    assert_eq!(
        w,
        Window {
            start: T0 + 10_000,
            end: T0 + 15_000
        }
    );
    let w = b
        .next_window("ir_blaster", T0, 6_000, ReservationMode::Exclusive)
        .unwrap();
    assert_eq!(w.start, T0 + 25_000);
    let av = b
        .availability("ir_blaster", T0 + 1_000, T0 + 2_000)
        .unwrap();
    assert!(!av.available);
    assert_eq!((av.avail_start, av.avail_end), (T0 + 10_000, T0 + 11_000));
    assert!(matches!(
        b.next_window("ir_blastr", T0, 1, ReservationMode::Exclusive),
        Err(BookError::UnknownResource { suggestion: Some(s), .. }) if s == "ir_blaster"
    ));
    assert_eq!(
        b.request(ReservationRequest::new("ir_blaster", op("a"), 0)),
        Err(BookError::InvalidDuration(0))
    );
}

#[test]
fn extend_moves_the_end_only_into_free_time() {
    let (_clock, mut b) = book();
    let a = b
        .request(ReservationRequest::new("ir_blaster", op("a"), 10_000))
        .unwrap();
    b.claim(a.id).unwrap();
    b.request(ReservationRequest::new("ir_blaster", op("b"), 10_000).at(T0 + 20_000))
        .unwrap();
    assert_eq!(
        b.extend(a.id, T0 + 20_000).unwrap().expire_time,
        T0 + 20_000
    );
    assert!(matches!(
        b.extend(a.id, T0 + 20_001),
        Err(BookError::ResourceUnavailable { .. })
    ));
}

#[test]
fn unextend_gives_the_extension_back() {
    let (_clock, mut b) = book();
    let a = b
        .request(ReservationRequest::new("ir_blaster", op("a"), 10_000))
        .unwrap();
    b.claim(a.id).unwrap();
    b.extend(a.id, T0 + 30_000).unwrap();
    b.unextend(a.id, T0 + 10_000).unwrap();
    let v = b.get(a.id).unwrap();
    assert_eq!((v.end, v.expires), (T0 + 10_000, T0 + 10_000));
    // The time given back is free for another holder.
    let other = b
        .request(
            ReservationRequest::new("ir_blaster", op("b"), 20_000)
                .at(T0 + 10_000)
                .next_available(false),
        )
        .unwrap();
    assert_eq!(other.available_from, T0 + 10_000);
}

#[test]
fn operator_hold_in_the_future_claims_itself_when_its_window_starts() {
    let (clock, mut b) = book();
    let pre = b
        .request(
            ReservationRequest::new("ir_blaster", op("ann"), 60_000)
                .at(T0 + 30_000)
                .auto_claim(true),
        )
        .unwrap();
    clock.set(T0 + 29_999);
    assert_eq!(b.get(pre.id).unwrap().status, ReservationStatus::Booked);
    clock.set(T0 + 45_000);
    let v = b.get(pre.id).unwrap();
    assert_eq!(
        (v.status, v.claimed_at),
        (ReservationStatus::Held, Some(T0 + 30_000))
    );
    clock.set(T0 + 90_000);
    assert!(b.get(pre.id).is_none());
}

#[test]
fn waiting_operator_holds_move_up_when_the_resource_frees() {
    let (clock, mut b) = book();
    let hold = |b: &mut Book, who: &str, at: Option<i64>, dur: i64| {
        let mut r = ReservationRequest::new("ir_blaster", op(who), dur).auto_claim(true);
        r.time_needed = at;
        b.request(r).unwrap()
    };
    let ann = hold(&mut b, "ann", None, 1_800_000);
    let bob = hold(&mut b, "bob", None, 600_000);
    let cat = hold(&mut b, "cat", Some(T0 + 600_000), 60_000);
    assert_eq!(bob.available_from, T0 + 1_800_000);
    assert_eq!(b.get(bob.id).unwrap().status, ReservationStatus::Waiting);
    b.drain_events();
    clock.set(T0 + 300_000);
    b.release(ann.id).unwrap();
    // bob moved up to now and holds it; cat moved up to when it asked, after bob.
    let v = b.get(bob.id).unwrap();
    assert_eq!(
        (v.status, v.start, v.end),
        (ReservationStatus::Held, T0 + 300_000, T0 + 900_000)
    );
    let c = b.get(cat.id).unwrap();
    assert_eq!(
        (c.status, c.start),
        (ReservationStatus::Waiting, T0 + 900_000)
    );
    let kinds: Vec<_> = b
        .drain_events()
        .iter()
        .map(|e| (e.kind, e.reservation.id))
        .collect();
    assert!(
        kinds.contains(&(BookEventKind::Claimed, bob.id)),
        "{kinds:?}"
    );
    // bob's hold ends early (released): cat moves to its asked time, not before.
    clock.set(T0 + 400_000);
    b.release(bob.id).unwrap();
    let c = b.get(cat.id).unwrap();
    assert_eq!(
        (c.status, c.start),
        (ReservationStatus::Booked, T0 + 600_000)
    );
    clock.set(T0 + 600_000);
    assert_eq!(b.get(cat.id).unwrap().status, ReservationStatus::Held);
}

#[test]
fn a_waiting_hold_moves_up_when_a_lease_lapses() {
    let (clock, mut b) = book();
    let run = b
        .request(
            ReservationRequest::new("ir_blaster", lane("r1", "stb-01"), 3_600_000).lease(30_000),
        )
        .unwrap();
    b.claim(run.id).unwrap();
    let mut r = ReservationRequest::new("ir_blaster", op("ann"), 60_000).auto_claim(true);
    r.time_needed = None;
    let ann = b.request(r).unwrap();
    assert_eq!(ann.available_from, T0 + 3_600_000);
    // The console holding r1 dies; at the lease's end ann's hold starts.
    clock.set(T0 + 45_000);
    let v = b.get(ann.id).unwrap();
    assert_eq!(
        (v.status, v.claimed_at),
        (ReservationStatus::Held, Some(T0 + 30_000))
    );
}

#[test]
fn restore_keeps_live_drops_expired_and_lab_changes() {
    let (clock, mut b) = book();
    let live = b
        .request(ReservationRequest::new("ir_blaster", op("a"), 600_000))
        .unwrap();
    b.claim(live.id).unwrap();
    let short = b
        .request(
            ReservationRequest::new("stream_server", op("b"), 1_000).mode(ReservationMode::Shared),
        )
        .unwrap();
    b.claim(short.id).unwrap();
    let saved = b.reservations();
    let (next_id, next_seq) = (b.next_id(), b.next_seq());
    clock.advance(5_000);
    let mut b2 = Book::new(Arc::new(clock.clone()), specs()).unwrap();
    b2.restore(saved.clone(), next_id, next_seq);
    let ids: Vec<_> = b2.reservations().iter().map(|v| v.id).collect();
    assert_eq!(ids, vec![live.id]);
    let ev = b2.drain_events();
    assert_eq!(ev[0].seq, next_seq);
    assert_eq!(ev[0].reason, Some(EndReason::WindowEnded));
    let fresh = b2
        .request(ReservationRequest::new("stream_server", op("c"), 1))
        .unwrap();
    assert!(fresh.id.0 >= next_id);
    // A lab without ir_blaster: the reservation cannot come back.
    let mut b3 = Book::new(Arc::new(clock.clone()), specs().split_off(1)).unwrap();
    b3.restore(saved, next_id, next_seq);
    assert!(b3.reservations().is_empty());
    assert!(b3
        .drain_events()
        .iter()
        .any(|e| e.reason == Some(EndReason::LabChanged)));
}

#[test]
fn bad_resource_lists_are_refused() {
    let clock = Arc::new(ManualClock::new(0));
    let mut dup = specs();
    dup.push(dup[0].clone());
    assert_eq!(
        Book::new(clock.clone(), dup).err(),
        Some(BookError::DuplicateResource("ir_blaster".into()))
    );
    let zero = vec![ResourceSpec {
        name: "z".into(),
        kind: ResourceKind::Shared { capacity: 0 },
        config: json!(null),
    }];
    assert_eq!(
        Book::new(clock, zero).err(),
        Some(BookError::ZeroCapacity("z".into()))
    );
}

#[test]
fn events_serialize_with_string_ids() {
    let (_clock, mut b) = book();
    b.request(ReservationRequest::new(
        "ir_blaster",
        lane("r1", "stb-01"),
        10,
    ))
    .unwrap();
    let ev = &b.drain_events()[0];
    let v = serde_json::to_value(ev).unwrap();
    assert_eq!(v["reservation"]["id"], json!("1"));
    assert_eq!(v["kind"], json!("requested"));
    assert_eq!(v["reservation"]["holder"]["kind"], json!("run"));
    let back: BookEvent = serde_json::from_value(v).unwrap();
    assert_eq!(&back, ev);
}

// ---- property test: random interleavings against a brute-force model ----

#[derive(Debug, Clone)]
enum Op {
    Request {
        res: usize,
        offset: i64,
        dur: i64,
        next: bool,
        shared: bool,
        lease: Option<i64>,
    },
    Claim(usize),
    Release(usize),
    Renew(usize),
    Advance(i64),
    Tick,
    Restart,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..40i64, 1..30i64, any::<bool>(), any::<bool>(), proptest::option::of(3..20i64))
            .prop_map(|(res, offset, dur, next, shared, lease)| Op::Request { res, offset, dur, next, shared, lease }),
        3 => any::<usize>().prop_map(Op::Claim),
        1 => any::<usize>().prop_map(Op::Release),
        2 => any::<usize>().prop_map(Op::Renew),
        3 => (0..15i64).prop_map(Op::Advance),
        1 => Just(Op::Tick),
        1 => Just(Op::Restart),
    ]
}

/// What the model believes about one live id.
#[derive(Debug, Clone)]
struct ModelRes {
    res: usize,
    start: i64,
    end: i64,
    weight: u32,
    /// Gone at or after this time.
    deadline: i64,
}

const NAMES: [&str; 3] = ["e0", "e1", "s0"];
const CAPS: [u32; 3] = [1, 1, 3];

fn prop_specs() -> Vec<ResourceSpec> {
    NAMES
        .iter()
        .zip(CAPS)
        .map(|(n, c)| ResourceSpec {
            name: n.to_string(),
            kind: if *n == "s0" {
                ResourceKind::Shared { capacity: c }
            } else {
                ResourceKind::Exclusive
            },
            config: json!(null),
        })
        .collect()
}

const PROP_ON_TIME: i64 = 3;

fn prop_book(clock: &ManualClock) -> Book {
    let cfg = BookConfig {
        claim_grace_ms: 10,
        on_time_ms: PROP_ON_TIME,
        lapsed_memory_ms: 50,
    };
    Book::with_config(Arc::new(clock.clone()), cfg, prop_specs()).unwrap()
}

/// Brute force: units in use on `res` at instant `t` by every model reservation but `skip`.
fn load(model: &BTreeMap<u64, ModelRes>, res: usize, t: i64, skip: Option<u64>) -> u32 {
    model
        .iter()
        .filter(|(id, m)| Some(**id) != skip && m.res == res && m.start <= t && t < m.end)
        .map(|(_, m)| m.weight)
        .sum()
}

fn window_fits(
    model: &BTreeMap<u64, ModelRes>,
    res: usize,
    s: i64,
    e: i64,
    w: u32,
    skip: Option<u64>,
) -> bool {
    // Load only rises at interval starts, so checking `s` and every start inside suffices.
    std::iter::once(s)
        .chain(
            model
                .values()
                .filter(|m| m.res == res && m.start > s && m.start < e)
                .map(|m| m.start),
        )
        .all(|t| load(model, res, t, skip) + w <= CAPS[res])
}

fn pick(model: &BTreeMap<u64, ModelRes>, lapsed: &[u64], i: usize) -> Option<u64> {
    let ids: Vec<u64> = model
        .keys()
        .copied()
        .chain(lapsed.iter().copied())
        .collect();
    (!ids.is_empty()).then(|| ids[i % ids.len()])
}

fn apply_new_pre(
    model: &mut BTreeMap<u64, ModelRes>,
    res: usize,
    weight: u32,
    from: i64,
    dur: i64,
    pre: PreReservation,
) -> Result<(), TestCaseError> {
    // Earliest: the granted start fits, and no earlier candidate (from, or the end of any
    // interval in between) does.
    prop_assert!(pre.available_from >= from);
    prop_assert!(window_fits(
        model,
        res,
        pre.available_from,
        pre.available_from + dur,
        weight,
        None
    ));
    let candidates = std::iter::once(from).chain(
        model
            .values()
            .filter(|m| m.res == res && m.end > from && m.end < pre.available_from)
            .map(|m| m.end),
    );
    for c in candidates {
        prop_assert!(
            c >= pre.available_from || !window_fits(model, res, c, c + dur, weight, None),
            "window at {c} was free but the book gave {}",
            pre.available_from
        );
    }
    model.insert(
        pre.id.0,
        ModelRes {
            res,
            start: pre.available_from,
            end: pre.available_from + dur,
            weight,
            deadline: pre.expires,
        },
    );
    Ok(())
}

fn check(book: &mut Book, model: &BTreeMap<u64, ModelRes>, now: i64) -> Result<(), TestCaseError> {
    let live = book.reservations();
    // 1. Independent double-booking check over what the book says is live.
    for r in 0..3 {
        let mine: Vec<_> = live.iter().filter(|v| &*v.resource == NAMES[r]).collect();
        for v in &mine {
            let w_at = |t: i64| -> u32 {
                mine.iter()
                    .filter(|o| o.start <= t && t < o.end)
                    .map(|o| {
                        if o.mode == ReservationMode::Exclusive {
                            CAPS[r]
                        } else {
                            1
                        }
                    })
                    .sum()
            };
            prop_assert!(
                w_at(v.start) <= CAPS[r],
                "{} over capacity at {}",
                NAMES[r],
                v.start
            );
        }
    }
    // 2. The book holds exactly what the model expects to be alive now.
    let book_ids: Vec<u64> = live.iter().map(|v| v.id.0).collect();
    let model_ids: Vec<u64> = model
        .iter()
        .filter(|(_, m)| m.deadline > now)
        .map(|(id, _)| *id)
        .collect();
    prop_assert_eq!(book_ids, model_ids);
    for v in &live {
        let m = &model[&v.id.0];
        prop_assert_eq!((v.start, v.end, v.expires), (m.start, m.end, m.deadline));
    }
    Ok(())
}

fn run_ops(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = ManualClock::new(1000);
    let mut book = prop_book(&clock);
    let mut model: BTreeMap<u64, ModelRes> = BTreeMap::new();
    let mut lapsed: Vec<u64> = Vec::new();
    let mut claimed: HashMap<u64, Option<i64>> = HashMap::new();
    let mut leases: HashMap<u64, Option<i64>> = HashMap::new();
    let mut last_seq = 0u64;
    for step in ops {
        let now = clock_now(&clock);
        // Model expiry: everything past its deadline is gone; unclaimed ones become lapsed.
        let due: Vec<u64> = model
            .iter()
            .filter(|(_, m)| m.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            model.remove(&id);
            if !claimed.contains_key(&id) {
                lapsed.push(id);
            }
        }
        match step {
            Op::Request {
                res,
                offset,
                dur,
                next,
                shared,
                lease,
            } => {
                let mode = if shared {
                    ReservationMode::Shared
                } else {
                    ReservationMode::Exclusive
                };
                let mut req = ReservationRequest::new(NAMES[res], op("p"), dur)
                    .at(now + offset)
                    .next_available(next)
                    .mode(mode);
                if let Some(l) = lease {
                    req = req.lease(l);
                }
                let weight = if shared { 1 } else { CAPS[res] };
                match book.request(req) {
                    Ok(pre) => {
                        prop_assert!(!(shared && CAPS[res] == 1));
                        if !next {
                            prop_assert_eq!(pre.available_from, now + offset);
                        }
                        leases.insert(pre.id.0, lease);
                        apply_new_pre(&mut model, res, weight, now + offset, dur, pre)?;
                    }
                    Err(BookError::ModeMismatch { .. }) => prop_assert!(shared && CAPS[res] == 1),
                    Err(BookError::ResourceUnavailable { .. }) => {
                        prop_assert!(!next);
                        prop_assert!(!window_fits(
                            &model,
                            res,
                            now + offset,
                            now + offset + dur,
                            weight,
                            None
                        ));
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
            Op::Claim(i) => {
                let Some(id) = pick(&model, &lapsed, i) else {
                    continue;
                };
                let outcome = book.claim(ResId(id));
                match (model.get(&id).cloned(), outcome) {
                    (Some(m), Ok(ClaimOutcome::Claimed(r))) => {
                        prop_assert!(!claimed.contains_key(&id) && now >= m.start);
                        let dur = m.end - m.start;
                        // On time: the window as booked; late: the whole duration from now.
                        let late = now > m.start + PROP_ON_TIME;
                        if late {
                            prop_assert!(window_fits(
                                &model,
                                m.res,
                                now,
                                now + dur,
                                m.weight,
                                Some(id)
                            ));
                        }
                        let lease = leases[&id];
                        let start = if late { now } else { m.start };
                        let until = lease.map_or(start + dur, |l| (now + l).min(start + dur));
                        prop_assert_eq!((r.expire_time, r.lease_until), (start + dur, until));
                        model.insert(
                            id,
                            ModelRes {
                                start,
                                end: start + dur,
                                deadline: until,
                                ..m
                            },
                        );
                        claimed.insert(id, lease);
                    }
                    (
                        Some(m),
                        Ok(ClaimOutcome::Rebooked {
                            pre_reservation_id,
                            new_avail,
                            new_expire,
                        }),
                    ) => {
                        let dur = m.end - m.start;
                        prop_assert!(now > m.start + PROP_ON_TIME);
                        prop_assert!(!window_fits(
                            &model,
                            m.res,
                            now,
                            now + dur,
                            m.weight,
                            Some(id)
                        ));
                        model.remove(&id);
                        leases.insert(pre_reservation_id.0, leases[&id]);
                        let pre = PreReservation {
                            id: pre_reservation_id,
                            available_from: new_avail,
                            expires: new_expire,
                        };
                        apply_new_pre(&mut model, m.res, m.weight, now, dur, pre)?;
                    }
                    (Some(m), Err(BookError::ClaimTooEarly { .. })) => prop_assert!(now < m.start),
                    (Some(_), Err(BookError::AlreadyClaimed(_))) => {
                        prop_assert!(claimed.contains_key(&id))
                    }
                    (
                        None,
                        Ok(ClaimOutcome::Rebooked {
                            pre_reservation_id,
                            new_avail,
                            new_expire,
                        }),
                    ) => {
                        // A lapsed id still remembered: booked anew from now.
                        prop_assert!(lapsed.contains(&id));
                        lapsed.retain(|l| *l != id);
                        let v = book.get(pre_reservation_id).unwrap();
                        let res = NAMES.iter().position(|n| *n == &*v.resource).unwrap();
                        let weight = if v.mode == ReservationMode::Shared {
                            1
                        } else {
                            CAPS[res]
                        };
                        leases.insert(pre_reservation_id.0, leases[&id]);
                        // Validate against the model before the book's own entry is added.
                        let pre = PreReservation {
                            id: pre_reservation_id,
                            available_from: new_avail,
                            expires: new_expire,
                        };
                        apply_new_pre(&mut model, res, weight, now, v.end - v.start, pre)?;
                    }
                    (None, Err(BookError::UnknownId(_))) => lapsed.retain(|l| *l != id),
                    (m, other) => prop_assert!(false, "claim {id} (model {m:?}) gave {other:?}"),
                }
            }
            Op::Release(i) => {
                let Some(id) = pick(&model, &lapsed, i) else {
                    continue;
                };
                let r = book.release(ResId(id));
                if model.remove(&id).is_some() {
                    prop_assert!(r.is_ok());
                } else {
                    lapsed.retain(|l| *l != id);
                }
            }
            Op::Renew(i) => {
                let Some(id) = pick(&model, &lapsed, i) else {
                    continue;
                };
                match (model.get_mut(&id), book.renew(ResId(id))) {
                    (Some(m), Ok(r)) => {
                        let lease = claimed.get(&id).copied().flatten();
                        prop_assert!(claimed.contains_key(&id));
                        let until = lease.map_or(m.end, |l| (now + l).min(m.end));
                        prop_assert_eq!(r.lease_until, until);
                        m.deadline = until;
                    }
                    (Some(_), Err(BookError::NotClaimed(_))) => {
                        prop_assert!(!claimed.contains_key(&id))
                    }
                    (None, Err(BookError::UnknownId(_))) => {}
                    (m, other) => prop_assert!(false, "renew {id} (model {m:?}) gave {other:?}"),
                }
            }
            Op::Advance(ms) => clock.advance(ms),
            Op::Tick => {
                book.tick();
            }
            Op::Restart => {
                let saved = serde_json::to_string(&book.reservations()).unwrap();
                let (next_id, next_seq) = (book.next_id(), book.next_seq());
                for e in book.drain_events() {
                    prop_assert_eq!(e.seq, last_seq + 1);
                    last_seq = e.seq;
                }
                book = prop_book(&clock);
                book.restore(serde_json::from_str(&saved).unwrap(), next_id, next_seq);
                // Lapsed ids are forgotten by a restart.
                lapsed.clear();
            }
        }
        for e in book.drain_events() {
            prop_assert_eq!(e.seq, last_seq + 1, "event seq is contiguous");
            last_seq = e.seq;
        }
        let now = clock_now(&clock);
        check(&mut book, &model, now)?;
    }
    Ok(())
}

/// Interleavings that include operator holds (auto-claim, moved up when a resource
/// frees): checked only against the brute-force capacity invariant, after every step.
#[derive(Debug, Clone)]
enum HoldOp {
    Hold {
        res: usize,
        offset: i64,
        dur: i64,
        shared: bool,
    },
    Request {
        res: usize,
        dur: i64,
        lease: Option<i64>,
    },
    ClaimOrRelease(usize, bool),
    Advance(i64),
    Restart,
}

fn hold_op() -> impl Strategy<Value = HoldOp> {
    prop_oneof![
        4 => (0..3usize, 0..30i64, 1..25i64, any::<bool>()).prop_map(|(res, offset, dur, shared)| HoldOp::Hold { res, offset, dur, shared }),
        2 => (0..3usize, 1..25i64, proptest::option::of(3..15i64)).prop_map(|(res, dur, lease)| HoldOp::Request { res, dur, lease }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(i, c)| HoldOp::ClaimOrRelease(i, c)),
        3 => (0..12i64).prop_map(HoldOp::Advance),
        1 => Just(HoldOp::Restart),
    ]
}

fn capacity_ok(book: &mut Book) -> Result<(), TestCaseError> {
    let live = book.reservations();
    for (r, name) in NAMES.iter().enumerate() {
        let mine: Vec<_> = live.iter().filter(|v| &*v.resource == *name).collect();
        for v in &mine {
            let load: u32 = mine
                .iter()
                .filter(|o| o.start <= v.start && v.start < o.end)
                .map(|o| {
                    if o.mode == ReservationMode::Exclusive {
                        CAPS[r]
                    } else {
                        1
                    }
                })
                .sum();
            prop_assert!(
                load <= CAPS[r],
                "{name} over capacity at {}: {mine:#?}",
                v.start
            );
            prop_assert!(
                v.start >= v.needed_at,
                "moved before it was asked for: {v:?}"
            );
        }
    }
    Ok(())
}

fn run_hold_ops(ops: Vec<HoldOp>) -> Result<(), TestCaseError> {
    let clock = ManualClock::new(1000);
    let mut book = prop_book(&clock);
    for step in ops {
        let now = clock_now(&clock);
        match step {
            HoldOp::Hold {
                res,
                offset,
                dur,
                shared,
            } => {
                let mode = if shared && CAPS[res] > 1 {
                    ReservationMode::Shared
                } else {
                    ReservationMode::Exclusive
                };
                book.request(
                    ReservationRequest::new(NAMES[res], op("o"), dur)
                        .at(now + offset)
                        .mode(mode)
                        .auto_claim(true),
                )
                .unwrap();
            }
            HoldOp::Request { res, dur, lease } => {
                let mut r = ReservationRequest::new(NAMES[res], op("p"), dur);
                r.lease_ms = lease;
                book.request(r).unwrap();
            }
            HoldOp::ClaimOrRelease(i, claim) => {
                let live = book.reservations();
                if !live.is_empty() {
                    let id = live[i % live.len()].id;
                    if claim {
                        let _ = book.claim(id);
                    } else {
                        book.release(id).unwrap();
                    }
                }
            }
            HoldOp::Advance(ms) => clock.advance(ms),
            HoldOp::Restart => {
                let saved = book.reservations();
                let (next_id, next_seq) = (book.next_id(), book.next_seq());
                book = prop_book(&clock);
                book.restore(saved, next_id, next_seq);
            }
        }
        capacity_ok(&mut book)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn random_interleavings_never_double_book(ops in proptest::collection::vec(op_strategy(), 1..80)) {
        run_ops(ops)?;
    }

    #[test]
    fn operator_holds_moving_up_never_double_book(ops in proptest::collection::vec(hold_op(), 1..80)) {
        run_hold_ops(ops)?;
    }
}
