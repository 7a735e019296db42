//! The lab's book in PostgreSQL (`reserve::labdb`), on a real throwaway PostgreSQL: two
//! `LabBook`s on one database stand for two servers. Time is the database's; where a test
//! needs time to have passed for one reservation, it moves that reservation's times back
//! with SQL (what the database would see later), or waits for the database's clock.

use std::collections::HashSet;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use testbay_engine::queue::Priority;
use testbay_engine::reserve::labdb::{BookListener, LabBook, LabError, LabState};
use testbay_engine::reserve::{
    ClaimOutcome, EndReason, Holder, ResId, ReservationMode, ReservationRequest, ReservationStatus,
    ResourceKind, ResourceSpec,
};

fn db(name: &str) -> String {
    testbay_pgtest::shared()
        .expect("throwaway PostgreSQL")
        .fresh_db(name)
        .expect("fresh database")
}

/// A plain connection, for what no server would do (moving times back, raw inserts).
async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

fn specs() -> Vec<ResourceSpec> {
    let mut v: Vec<ResourceSpec> = (0..4)
        .map(|i| ResourceSpec {
            name: format!("dut-{i}"),
            kind: ResourceKind::Exclusive,
            config: serde_json::Value::Null,
        })
        .collect();
    v.push(ResourceSpec {
        name: "ir-blaster".into(),
        kind: ResourceKind::Shared { capacity: 2 },
        config: serde_json::Value::Null,
    });
    v
}

async fn two_servers(name: &str) -> (String, LabBook, LabBook) {
    let url = db(name);
    let (a, b) = tokio::join!(
        LabBook::open(&url, "server-a"),
        LabBook::open(&url, "server-b")
    );
    let (a, b) = (a.expect("open a"), b.expect("open b"));
    a.sync_resources(&specs()).await.expect("resources");
    (url, a, b)
}

fn lane(run: &str) -> Holder {
    Holder::Run {
        run_id: run.into(),
        lane: "dut-0".into(),
        task: None,
    }
}

fn req<'a>(resource: &'a str, run: &str, at: i64, dur: i64) -> ReservationRequest<'a> {
    ReservationRequest::new(resource, lane(run), dur)
        .at(at)
        .next_available(false)
}

/// Move reservation `id`'s window (and its deadlines) `ms` earlier, as if it had been
/// made that long ago.
async fn age(url: &str, id: ResId, ms: i64) {
    raw(url)
        .await
        .execute(
            "UPDATE lab_reservations SET
                during = tstzrange(lower(during) - $2::bigint * interval '1 ms', upper(during) - $2::bigint * interval '1 ms'),
                needed_at = needed_at - $2::bigint * interval '1 ms',
                claim_by = claim_by - $2::bigint * interval '1 ms',
                lease_until = lease_until - $2::bigint * interval '1 ms'
             WHERE id = $1",
            &[&(id.0 as i64), &ms],
        )
        .await
        .expect("age");
}

/// Let reservation `id`'s lease (or claim-by time) pass, as a dead server's would.
async fn lapse(url: &str, id: ResId) {
    raw(url)
        .await
        .execute(
            "UPDATE lab_reservations SET
                lease_until = CASE WHEN lease_until IS NULL THEN NULL ELSE now() - interval '1 ms' END,
                claim_by = CASE WHEN claim_by IS NULL THEN NULL ELSE now() - interval '1 ms' END
             WHERE id = $1",
            &[&(id.0 as i64)],
        )
        .await
        .expect("lapse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_exclusive_booking_is_refused_by_the_database() {
    let (url, a, b) = two_servers("labdb_overlap").await;
    let now = a.now().await.unwrap();
    let t = now + 60_000;
    a.request(req("dut-0", "r1", t, 10_000), Some("ann"))
        .await
        .unwrap();
    // The other server asks for an overlapping window: a typed conflict.
    let err = b
        .request(req("dut-0", "r2", t + 5_000, 10_000), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "conflict", "{err}");
    assert!(matches!(err, LabError::Conflict { .. }));
    // Asked for the next free window instead, it gets the end of the first.
    let pre = b
        .request(
            req("dut-0", "r2", t + 5_000, 10_000).next_available(true),
            None,
        )
        .await
        .unwrap();
    assert_eq!(pre.available_from, t + 10_000);
    // Another DUT is free at the same time.
    b.request(req("dut-1", "r2", t, 10_000), None)
        .await
        .unwrap();

    // The constraint itself refuses a row written past the book (SQLSTATE 23P01).
    let e = raw(&url)
        .await
        .execute(
            "INSERT INTO lab_reservations (resource, exclusive, mode, units, holder_kind,
                operator, server, needed_at, during, state, change, changed_by)
             VALUES ('dut-0', true, 'exclusive', 1, 'operator', 'eve', 'x', now(),
                tstzrange(testbay_ts($1), testbay_ts($2)), 'held', 'held', 'x')",
            &[&(t + 1_000), &(t + 2_000)],
        )
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23P01"), "{e}");
    assert!(a.audit().await.unwrap().clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_servers_book_one_window_once() {
    let (_url, a, b) = two_servers("labdb_race").await;
    let t = a.now().await.unwrap() + 60_000;
    // Ten requests for the same window of one DUT, five from each server, at once.
    let tries = (0..10).map(|i| {
        let book = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            book.request(req("dut-2", &format!("r{i}"), t, 30_000), None)
                .await
        })
    });
    let mut won = 0;
    for h in tries {
        match h.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(e.code(), "conflict", "{e}"),
        }
    }
    assert_eq!(won, 1);
    assert!(a.audit().await.unwrap().clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_resource_is_never_over_capacity() {
    let (_url, a, b) = two_servers("labdb_shared").await;
    let t = a.now().await.unwrap() + 60_000;
    let tries = (0..6).map(|i| {
        let book = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            book.request(
                req("ir-blaster", &format!("r{i}"), t, 30_000).mode(ReservationMode::Shared),
                None,
            )
            .await
        })
    });
    let mut won = 0;
    for h in tries {
        match h.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(e.code(), "capacity", "{e}"),
        }
    }
    assert_eq!(won, 2, "capacity 2");
    // The whole resource (exclusive mode) fits only after both shared windows.
    let pre = a
        .request(
            req("ir-blaster", "big", t, 1_000).next_available(true),
            None,
        )
        .await
        .unwrap();
    assert_eq!(pre.available_from, t + 30_000);
    // A DUT cannot be shared.
    let e = a
        .request(
            req("dut-0", "r", t, 1_000).mode(ReservationMode::Shared),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "mode_mismatch");
    assert!(a.audit().await.unwrap().clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_servers_lease_lapses_by_the_database_clock() {
    let (url, a, b) = two_servers("labdb_lease").await;
    // Server A claims a DUT on a short lease and then dies (renews nothing).
    let now = a.now().await.unwrap();
    let pre = a
        .request(req("dut-3", "ra", now, 600_000).lease(300), None)
        .await
        .unwrap();
    let ClaimOutcome::Claimed(r) = a.claim(pre.id).await.unwrap() else {
        panic!("claimed on time")
    };
    assert!(r.lease_until < r.expire_time);
    let e = b
        .request(req("dut-3", "rb", now + 1_000, 10_000), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "conflict", "held while the lease runs");
    drop(a);
    // Nobody deletes anything: the database's clock passes the lease's end.
    let mut waited = 0;
    while b.now().await.unwrap() <= r.lease_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
        assert!(waited < 400, "the database clock never passed the lease");
    }
    assert!(b.live().await.unwrap().is_empty(), "lapsed: not live");
    // B books the DUT at once, and the lapsed claim is recorded as expired on the way.
    let at = b.now().await.unwrap();
    let got = b
        .request(req("dut-3", "rb", at, 10_000), None)
        .await
        .unwrap();
    assert!(got.available_from >= at, "at once");
    let old = b.get(pre.id).await.unwrap().unwrap();
    assert_eq!(old.state, LabState::Expired);
    assert_eq!(old.end_reason, Some(EndReason::LeaseLapsed));
    assert!(!old.live);
    // A renewal after the lapse is refused.
    let e = b.renew(pre.id).await.unwrap_err();
    assert_eq!(e.code(), "lease_lost", "{e}");
    // Renewing in time moves the lease on.
    let ClaimOutcome::Claimed(_) = b.claim(got.id).await.unwrap() else {
        panic!("claimed")
    };
    let r2 = b.renew(got.id).await.unwrap();
    assert_eq!(r2.lease_until, r2.expire_time, "no lease: held to the end");
    let pre3 = b
        .request(req("dut-0", "rc", at, 600_000).lease(60_000), None)
        .await
        .unwrap();
    b.claim(pre3.id).await.unwrap();
    lapse(&url, pre3.id).await;
    assert_eq!(b.renew(pre3.id).await.unwrap_err().code(), "lease_lost");
    assert!(b.audit().await.unwrap().clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_follow_the_books_rules() {
    let (url, a, b) = two_servers("labdb_claim").await;
    let now = a.now().await.unwrap();
    // Too early.
    let later = a
        .request(req("dut-0", "r1", now + 60_000, 10_000), None)
        .await
        .unwrap();
    let e = a.claim(later.id).await.unwrap_err();
    assert_eq!(e.code(), "claim_too_early", "{e}");
    assert_eq!(a.renew(later.id).await.unwrap_err().code(), "not_claimed");
    // On time, then claimed twice.
    let pre = a
        .request(req("dut-1", "r1", now, 10_000), Some("ann"))
        .await
        .unwrap();
    let ClaimOutcome::Claimed(r) = b.claim(pre.id).await.unwrap() else {
        panic!("on time")
    };
    assert_eq!(r.expire_time, pre.available_from + 10_000);
    assert_eq!(a.claim(pre.id).await.unwrap_err().code(), "already_claimed");
    let live = b.live().await.unwrap();
    let held = live.iter().find(|r| r.id == pre.id).unwrap();
    assert_eq!(held.status, ReservationStatus::Held);
    assert_eq!(held.user.as_deref(), Some("ann"));
    assert_eq!(held.server, "server-a");

    // Late and the window is free: the whole duration from now.
    let late = a
        .request(req("dut-2", "r2", now, 10_000), None)
        .await
        .unwrap();
    age(&url, late.id, 5_000).await;
    let ClaimOutcome::Claimed(r) = a.claim(late.id).await.unwrap() else {
        panic!("late, free")
    };
    assert!(r.expire_time >= now + 10_000);

    // Late and someone booked right after: booked anew after them.
    let t = a.now().await.unwrap();
    let mine = a
        .request(req("dut-3", "r3", t, 10_000), None)
        .await
        .unwrap();
    age(&url, mine.id, 5_000).await;
    let theirs = b
        .request(
            req("dut-3", "r4", mine.available_from + 5_000, 10_000),
            None,
        )
        .await
        .unwrap();
    let ClaimOutcome::Rebooked {
        pre_reservation_id,
        new_avail,
        ..
    } = a.claim(mine.id).await.unwrap()
    else {
        panic!("late, taken: rebooked")
    };
    assert_eq!(new_avail, theirs.available_from + 10_000);
    assert_ne!(pre_reservation_id, mine.id);
    let old = a.get(mine.id).await.unwrap().unwrap();
    assert_eq!(old.state, LabState::Rebooked);
    assert_eq!(a.claim(mine.id).await.unwrap_err().code(), "unknown_id");

    // A lapsed pre-reservation claimed late is booked anew.
    let t = a.now().await.unwrap();
    let gone = a.request(req("dut-0", "r5", t, 1_000), None).await.unwrap();
    lapse(&url, gone.id).await;
    assert!(matches!(
        a.claim(gone.id).await.unwrap(),
        ClaimOutcome::Rebooked { .. }
    ));

    // Unknown things.
    assert_eq!(
        a.claim(ResId(999_999)).await.unwrap_err().code(),
        "unknown_id"
    );
    assert_eq!(
        a.release(ResId(999_999)).await.unwrap_err().code(),
        "unknown_id"
    );
    let e = a
        .request(req("dut-9x", "r", t, 1_000), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unknown_resource");
    let e = a
        .request(req("dut-", "r", t, 1_000), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("did you mean"), "{e}");
    assert_eq!(
        a.request(req("dut-0", "r", t, 0), None)
            .await
            .unwrap_err()
            .code(),
        "invalid_duration"
    );
    assert!(a.audit().await.unwrap().clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_extend_release_and_history() {
    let (_url, a, b) = two_servers("labdb_hold").await;
    let now = a.now().await.unwrap();
    let hold = a
        .hold("dut-0", "ann", Some("ann"), Some(now), 60_000, false)
        .await
        .unwrap();
    assert_eq!(hold.status, ReservationStatus::Held);
    // Booked from the database's now (a moment after `now`).
    let now = hold.start;
    assert!(hold.live);
    assert_eq!(hold.holder, Holder::Operator { name: "ann".into() });
    // A run on the other server cannot take the DUT while it is held.
    let e = b
        .request(req("dut-0", "r1", now + 1_000, 10_000), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "conflict");
    let after = b
        .request(req("dut-0", "r1", now + 60_000, 10_000), None)
        .await
        .unwrap();
    // Extending into the run's window is refused; up to it is fine.
    let e = a.extend(hold.id, now + 65_000).await.unwrap_err();
    assert_eq!(e.code(), "conflict", "{e}");
    let r = a.extend(hold.id, now + 60_000).await.unwrap();
    assert_eq!(r.expire_time, now + 60_000);
    b.release(after.id).await.unwrap();
    let r = a.extend(hold.id, now + 90_000).await.unwrap();
    assert_eq!(r.expire_time, now + 90_000);
    // Released: the range ends now, and history says so.
    a.release(hold.id).await.unwrap();
    a.release(hold.id).await.unwrap();
    assert!(a.live().await.unwrap().is_empty());
    let past = b.history(10).await.unwrap();
    let ended = past.iter().find(|r| r.id == hold.id).unwrap();
    assert_eq!(ended.end_reason, Some(EndReason::Released));
    assert!(ended.end < now + 90_000, "the range ended at the release");
    assert!(past.iter().any(|r| r.id == after.id));
    // The DUT is free again for the other server.
    let t = b.now().await.unwrap();
    b.request(req("dut-0", "r2", t, 10_000), None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_never_start_the_same_queued_run() {
    let (_url, a, b) = two_servers("labdb_queue").await;
    for i in 0..200 {
        let p = match i % 3 {
            0 => Priority::Low,
            1 => Priority::Normal,
            _ => Priority::High,
        };
        assert!(a.enqueue(&format!("run-{i:03}"), p, "{}").await.unwrap());
    }
    assert!(!a.enqueue("run-000", Priority::High, "{}").await.unwrap());
    assert!(b.cancel_queued("run-003").await.unwrap());
    let order = a.queued().await.unwrap();
    assert_eq!(order.len(), 199);
    assert_eq!(order[0].run_id, "run-002", "high first, then first come");
    assert_eq!(order.last().unwrap().run_id, "run-198");

    // Both servers take from the queue at once, each on several connections.
    let takers = (0..8).map(|i| {
        let book = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(q) = book.claim_next().await.unwrap() {
                got.push((book.server().to_string(), q.run_id));
            }
            got
        })
    });
    let mut all = Vec::new();
    for t in takers {
        all.extend(t.await.unwrap());
    }
    let runs: HashSet<&str> = all.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(all.len(), 199, "every waiting run taken");
    assert_eq!(runs.len(), 199, "none taken twice");
    assert!(!runs.contains("run-003"), "cancelled");
    assert!(a.claim_next().await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_hears_the_others_claim() {
    let (url, a, b) = two_servers("labdb_notify").await;
    let mut heard_by_b = BookListener::connect(b.url()).await.unwrap();
    assert_eq!(b.url(), url);
    let now = a.now().await.unwrap();
    let pre = a
        .request(req("dut-1", "r1", now, 10_000), None)
        .await
        .unwrap();
    a.claim(pre.id).await.unwrap();
    a.enqueue("run-x", Priority::Normal, "{}").await.unwrap();
    let mut notices = Vec::new();
    while notices.len() < 3 {
        let n = tokio::time::timeout(Duration::from_secs(30), heard_by_b.next())
            .await
            .expect("a notice within 30 s")
            .expect("listening");
        notices.push(n);
    }
    assert_eq!(notices[0].change, "requested");
    assert_eq!(notices[1].change, "claimed");
    assert_eq!(notices[1].id, pre.id.0);
    assert_eq!(notices[1].resource.as_deref(), Some("dut-1"));
    assert_eq!(notices[1].state, "held");
    assert_eq!(notices[1].by, "server-a");
    assert_eq!(notices[2].table, "queue");
    assert_eq!(notices[2].run_id.as_deref(), Some("run-x"));
    // A change rolled back is never told: a refused request sends nothing.
    let e = b
        .request(req("dut-1", "r2", now, 10_000), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "conflict");
    b.release(pre.id).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(30), heard_by_b.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((n.change.as_str(), n.by.as_str()), ("released", "server-b"));
}

/// One step of a server in the property test. Indexes pick among the reservations made
/// so far (modulo their count); times are in 5 s slots from the case's start.
#[derive(Debug, Clone)]
enum Op {
    Request {
        res: usize,
        slot: i64,
        slots: i64,
        next: bool,
        lease: bool,
    },
    Hold {
        res: usize,
        slot: i64,
        slots: i64,
    },
    Claim(usize),
    Renew(usize),
    Extend(usize, i64),
    Release(usize),
    /// Its lease (or claim-by time) passes, as a dead server's would.
    Expire(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..5usize, 0..6i64, 1..4i64, any::<bool>(), any::<bool>())
            .prop_map(|(res, slot, slots, next, lease)| Op::Request { res, slot, slots, next, lease }),
        1 => (0..5usize, 0..6i64, 1..4i64).prop_map(|(res, slot, slots)| Op::Hold { res, slot, slots }),
        3 => any::<usize>().prop_map(Op::Claim),
        1 => any::<usize>().prop_map(Op::Renew),
        1 => (any::<usize>(), 1..3i64).prop_map(|(i, n)| Op::Extend(i, n)),
        2 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Expire),
    ]
}

const SLOT: i64 = 5_000;
const RES: [&str; 5] = ["dut-0", "dut-1", "dut-2", "dut-3", "ir-blaster"];

/// Apply `op` on `book`; returns the id of a reservation it made. A refusal is fine if it
/// is one of the book's typed answers; a raw database error is not.
async fn apply(
    book: &LabBook,
    url: &str,
    base: i64,
    ids: &[ResId],
    op: &Op,
) -> Result<Option<ResId>, String> {
    let pick = |i: usize| (!ids.is_empty()).then(|| ids[i % ids.len()]);
    let r = match op {
        Op::Request {
            res,
            slot,
            slots,
            next,
            lease,
        } => {
            let mut q =
                req(RES[*res], "prop", base + slot * SLOT, slots * SLOT).next_available(*next);
            if *res == 4 {
                q = q.mode(ReservationMode::Shared);
            }
            if *lease {
                q = q.lease(60_000);
            }
            book.request(q, None).await.map(|p| Some(p.id))
        }
        Op::Hold { res, slot, slots } => book
            .hold(
                RES[*res],
                "op",
                None,
                Some(base + slot * SLOT),
                slots * SLOT,
                false,
            )
            .await
            .map(|r| Some(r.id)),
        Op::Claim(i) => match pick(*i) {
            Some(id) => book.claim(id).await.map(|o| match o {
                ClaimOutcome::Claimed(_) => None,
                ClaimOutcome::Rebooked {
                    pre_reservation_id, ..
                } => Some(pre_reservation_id),
            }),
            None => Ok(None),
        },
        Op::Renew(i) => match pick(*i) {
            Some(id) => book.renew(id).await.map(|_| None),
            None => Ok(None),
        },
        Op::Extend(i, n) => match pick(*i) {
            Some(id) => match book.get(id).await {
                Ok(Some(r)) => book.extend(id, r.end + n * SLOT).await.map(|_| None),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        },
        Op::Release(i) => match pick(*i) {
            Some(id) => book.release(id).await.map(|_| None),
            None => Ok(None),
        },
        Op::Expire(i) => {
            if let Some(id) = pick(*i) {
                lapse(url, id).await;
            }
            Ok(None)
        }
    };
    match r {
        Ok(id) => Ok(id),
        Err(e @ (LabError::Database(_) | LabError::Connect(_))) => Err(format!("{op:?}: {e}")),
        Err(_) => Ok(None),
    }
}

#[test]
fn random_interleavings_on_two_servers_never_double_book() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (url, a, b) = rt.block_on(two_servers("labdb_prop"));
    let cases: u32 = std::env::var("LABDB_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let steps = proptest::collection::vec((op(), op()), 1..25);
    runner
        .run(&steps, |steps| {
            rt.block_on(async {
                raw(&url)
                    .await
                    .batch_execute("TRUNCATE lab_reservations")
                    .await
                    .unwrap();
                let base = a.now().await.unwrap();
                let mut ids = Vec::new();
                for (oa, ob) in &steps {
                    // The two servers' steps run at once, each on its own connections.
                    let (ra, rb) = tokio::join!(
                        apply(&a, &url, base, &ids, oa),
                        apply(&b, &url, base, &ids, ob)
                    );
                    for r in [ra, rb] {
                        if let Some(id) = r.map_err(TestCaseError::fail)? {
                            ids.push(id);
                        }
                    }
                    let audit = a.audit().await.unwrap();
                    prop_assert!(audit.clean(), "{audit:?} after {oa:?} / {ob:?}");
                }
                Ok(())
            })
        })
        .unwrap();
}
