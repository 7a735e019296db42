//! The fence (`reserve::fence`): the lab database under a console's in-memory book, on a
//! real throwaway PostgreSQL. Each "server" is a bed of its own (its own SQLite store and
//! in-memory book, which it owns: two servers that both believe they own the book, the
//! split brain the fence is for) whose broker fences its claims in one shared database
//! through a `LabFence`. Leases are short and judged by the database's clock; where a
//! test needs one to pass, it waits for it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Map;
use testbay_engine::clock::{Clock, SystemClock};
use testbay_engine::lab;
use testbay_engine::outcome::RunStatus;
use testbay_engine::plan::DutTarget;
use testbay_engine::reserve::labdb::{LabBook, LabFence, LabState};
use testbay_engine::reserve::live::HoldOptions;
use testbay_engine::reserve::{BookError, BrokerConfig, EndReason, Holder};
use testbay_engine::run::{Grant, LaunchRequest, ResourceBroker, TaskNeeds};

use crate::support::{write, write_task, Bed};

const LAB: &str = "name: t\nracks:\n  - {name: rack-x, slots: 4}\nduts:\n  - {name: box-1, model: BX-1, location: {rack: rack-x, slot: 1}}\n";

/// Every claim's lease, in the book and in the database: long enough that a loaded
/// machine renews it in time, short enough for the tests that wait for it to lapse.
const LEASE_MS: i64 = 3_000;

fn db(name: &str) -> String {
    testbay_pgtest::shared()
        .expect("throwaway PostgreSQL")
        .fresh_db(name)
        .expect("fresh database")
}

/// Server `server`'s fence on the lab database at `url`, with the lab's resources.
fn fence(url: &str, server: &str) -> Arc<LabFence> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lab.yaml");
    write(&file, LAB);
    let lab = lab::load(&file).unwrap();
    Arc::new(
        LabFence::open(url, server, &lab.book_resources(), Duration::from_secs(2))
            .expect("the lab book opens"),
    )
}

/// A server: a bed reserving through its own book, its claims and operators' holds
/// fenced in the database at `url`.
fn server(url: &str, name: &str, renew_thread: bool) -> Bed {
    server_leased(url, name, renew_thread, LEASE_MS)
}

/// As [`server`], its claims under leases of `lease_ms`.
fn server_leased(url: &str, name: &str, renew_thread: bool, lease_ms: i64) -> Bed {
    let fence = fence(url, name);
    let bed = Bed::builder()
        .lab(LAB)
        .broker_config(BrokerConfig {
            lease_ms,
            renew_thread,
            ..BrokerConfig::default()
        })
        .fence(fence.clone())
        .build();
    bed.book().set_fence(fence);
    bed
}

fn dut() -> DutTarget {
    DutTarget {
        name: "box-1".into(),
        model: Some("BX-1".into()),
        rack: Some("rack-x".into()),
        slot: Some(1),
    }
}

/// What the first task of run `run` on box-1 asks for.
fn on_box(broker: &dyn ResourceBroker, run: &str) -> Grant {
    let (dut, configs) = (dut(), Map::new());
    broker.acquire(&TaskNeeds {
        run_id: run,
        item: 0,
        task: "t",
        lane: "box-1",
        dut: Some(&dut),
        ats: None,
        exclusive: &[],
        shared: &[],
        configs: &configs,
        est_task_time: 1.0,
        now: SystemClock.now_ms(),
    })
}

/// A pack of one group `g` of tasks `t1`, `t2` running `body` each.
fn write_pack(dir: &Path, body: &str) {
    write(
        &dir.join("pack.yaml"),
        "name: p\nversion: '1'\ngroups:\n  g:\n    tests: [t1, t2]\n",
    );
    for t in ["t1", "t2"] {
        write_task(dir, t, "est_task_time: 1\n", body);
    }
}

fn launch(bed: &Bed) -> String {
    bed.mgr
        .launch(LaunchRequest {
            pack_dir: bed.pack.display().to_string(),
            duts: vec![dut()],
            ..Default::default()
        })
        .unwrap()
}

/// Wait (at most a minute) for `f` to say something.
async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "gave up waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two servers that both believe they own the book race for one DUT: the database
/// refuses the second claim, naming who holds the DUT there; racing runs both complete
/// one after the other, their stored task windows never overlapping, and the database
/// never held a double booking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labdb_fence_split_brain_servers_never_both_hold_a_dut() {
    let url = db("fence_split");
    let (a, b) = (
        server(&url, "server-a", true),
        server(&url, "server-b", true),
    );

    // Each book alone would grant box-1; the database grants it once.
    assert!(matches!(on_box(a.broker(), "run-a"), Grant::Granted(_)));
    match on_box(b.broker(), "run-b") {
        Grant::Busy { reason, until } => {
            assert!(
                reason.contains(
                    "box-1 is held in the lab database by run run-a/box-1 of server server-a"
                ),
                "{reason}"
            );
            assert!(until > SystemClock.now_ms() - 1_000, "{until}");
        }
        other => panic!("the database let a second server claim box-1: {other:?}"),
    }
    assert!(b.broker().reservations_of("run-b").is_empty());
    a.broker().end_run("run-a");
    assert!(matches!(on_box(b.broker(), "run-b"), Grant::Granted(_)));
    b.broker().end_run("run-b");

    // Real runs, launched at once on both servers.
    write_pack(&a.pack, "sleep 0.3\n");
    write_pack(&b.pack, "sleep 0.3\n");
    let (ra, rb) = (launch(&a), launch(&b));
    let (sa, sb) = tokio::join!(a.mgr.wait(&ra), b.mgr.wait(&rb));
    assert_eq!(sa.unwrap(), RunStatus::Completed);
    assert_eq!(sb.unwrap(), RunStatus::Completed);
    let window = |bed: &Bed, id: &str| {
        let tasks = bed.store.run_tasks(id).unwrap();
        let start = tasks.iter().filter_map(|t| t.started_ms).min().unwrap();
        let end = tasks.iter().filter_map(|t| t.finished_ms).max().unwrap();
        (start, end)
    };
    let (wa, wb) = (window(&a, &ra), window(&b, &rb));
    assert!(
        wa.1 <= wb.0 || wb.1 <= wa.0,
        "the runs overlap on box-1: {wa:?} and {wb:?}"
    );
    let audit = LabBook::open(&url, "auditor").await.unwrap();
    assert!(audit.audit().await.unwrap().clean());
    let history = audit.history(100).await.unwrap();
    for run in [&ra, &rb] {
        assert!(
            history.iter().any(
                |r| matches!(&r.holder, Holder::Run { run_id, .. } if run_id == run)
                    && r.state == LabState::Released
            ),
            "{run} never held box-1 in the database: {history:?}"
        );
    }
}

/// A server stops renewing (as a dead one does): its claim in the database lapses by the
/// database's clock and another server's claim then succeeds, with no handover of the
/// book (the dead server's own book still believes it holds the DUT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labdb_fence_a_dead_servers_claim_lapses_and_another_server_claims() {
    let url = db("fence_dead");
    let (dead, alive) = (
        server(&url, "server-a", false),
        server(&url, "server-b", true),
    );
    assert!(matches!(on_box(dead.broker(), "run-a"), Grant::Granted(_)));
    assert!(matches!(
        on_box(alive.broker(), "run-b"),
        Grant::Busy { .. }
    ));

    until(
        "the dead server's lease lapsed in the database",
        async || matches!(on_box(alive.broker(), "run-b"), Grant::Granted(_)).then_some(()),
    )
    .await;
    assert!(!dead.broker().reservations_of("run-a").is_empty());
    let audit = LabBook::open(&url, "auditor").await.unwrap();
    let history = audit.history(100).await.unwrap();
    let gone = history
        .iter()
        .find(|r| matches!(&r.holder, Holder::Run { run_id, .. } if run_id == "run-a"))
        .expect("the dead server's claim is recorded");
    assert_eq!(gone.state, LabState::Expired, "{gone:?}");
    assert_eq!(gone.end_reason, Some(EndReason::LeaseLapsed), "{gone:?}");
    assert!(audit.audit().await.unwrap().clean());
    alive.broker().end_run("run-b");
}

/// Cut off from the lab database (its connections ended, new ones refused), a server
/// cannot renew its claims' leases; once a lease has run out its run stops and ends
/// `interrupted`, naming the DUT whose lease it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labdb_fence_a_server_cut_off_from_the_database_interrupts_its_run() {
    let url = db("fence_cut");
    let name = url.rsplit('/').next().unwrap().to_string();
    let admin_url = format!("{}/postgres", url.rsplit_once('/').unwrap().0);
    let bed = server(&url, "server-a", true);
    write_pack(&bed.pack, "sleep 30\n");
    let id = launch(&bed);
    let audit = LabBook::open(&url, "auditor").await.unwrap();
    until("the run holds box-1 in the database", async || {
        let live = audit.live().await.unwrap();
        live.iter()
            .any(|r| r.resource == "box-1" && r.state == LabState::Held)
            .then_some(())
    })
    .await;

    let (admin, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
        ))
        .await
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap();

    let status = bed.mgr.wait(&id).await.unwrap();
    admin
        .batch_execute(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    assert_eq!(status, RunStatus::Interrupted);
    let run = bed.store.get_run(&id).unwrap();
    let reason = run.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("lost its lease on box-1 in the lab database"),
        "{reason}"
    );
    let t1 = bed
        .store
        .run_tasks(&id)
        .unwrap()
        .into_iter()
        .find(|t| t.task == "t1")
        .unwrap();
    assert_eq!(t1.result.as_deref(), Some("Aborted"), "{t1:?}");
}

/// An operator's hold in one server's book is a hold in the database: the other server
/// (which also believes it owns the book) can neither claim the DUT for a run nor hold it,
/// each told who holds it there; extended, the hold moves its end in the database too;
/// released, the DUT is the other server's to claim, and then the first one's to wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labdb_fence_an_operators_hold_is_held_in_the_database() {
    let url = db("fence_hold");
    let (a, b) = (
        server(&url, "server-a", true),
        server(&url, "server-b", true),
    );
    let hold = a
        .book()
        .hold("box-1", "alice", None, 600_000, false)
        .unwrap();

    match on_box(b.broker(), "run-b") {
        Grant::Busy { reason, .. } => assert!(
            reason
                .contains("box-1 is held in the lab database by operator alice of server server-a"),
            "{reason}"
        ),
        other => panic!("a run claimed a DUT an operator holds: {other:?}"),
    }
    match b.book().hold("box-1", "bob", None, 60_000, false) {
        Err(BookError::Fenced(reason)) => assert!(reason.contains("operator alice"), "{reason}"),
        other => panic!("two operators hold box-1: {other:?}"),
    }
    assert!(b
        .book()
        .holds()
        .iter()
        .all(|r| r.holders.is_empty() && r.booked.is_empty()));

    let audit = LabBook::open(&url, "auditor").await.unwrap();
    let extended = a.book().extend_to(hold.id, hold.end + 60_000).unwrap();
    let live = audit.live().await.unwrap();
    let row = live
        .iter()
        .find(|r| matches!(&r.holder, Holder::Operator { name } if name == "alice"))
        .expect("the hold is live in the database");
    assert!(
        (row.end - extended.end).abs() < 1_000,
        "{row:?} does not end with {extended:?}"
    );

    a.book().release(hold.id).unwrap();
    assert!(matches!(on_box(b.broker(), "run-b"), Grant::Granted(_)));
    match a.book().hold("box-1", "alice", None, 60_000, false) {
        Err(BookError::Fenced(reason)) => assert!(reason.contains("run run-b/box-1"), "{reason}"),
        other => panic!("an operator holds a DUT a run holds: {other:?}"),
    }
    b.broker().end_run("run-b");
    assert!(audit.audit().await.unwrap().clean());
}

/// A run's task the database refused (another server holds its DUT there, under a long
/// lease) starts as soon as that server lets the DUT go, told on the lab book's channel,
/// not when the other server's lease would have ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labdb_fence_a_release_on_another_server_wakes_a_waiting_task() {
    const LONG_LEASE_MS: i64 = 60_000;
    let url = db("fence_wake");
    let (a, b) = (
        server_leased(&url, "server-a", false, LONG_LEASE_MS),
        server_leased(&url, "server-b", true, LONG_LEASE_MS),
    );
    assert!(matches!(on_box(a.broker(), "run-a"), Grant::Granted(_)));
    write_pack(&b.pack, "true\n");
    let rb = launch(&b);
    until("server-b's first task waits for box-1", async || {
        (!b.broker().waiting_items(&rb).is_empty()).then_some(())
    })
    .await;
    let audit = LabBook::open(&url, "auditor").await.unwrap();
    let held = audit
        .live()
        .await
        .unwrap()
        .into_iter()
        .find(|r| matches!(&r.holder, Holder::Run { run_id, .. } if run_id == "run-a"))
        .expect("server-a holds box-1 in the database");
    let lease_end = held.expires.expect("a run's claim has a lease");

    let released_at = SystemClock.now_ms();
    a.broker().end_run("run-a");
    assert_eq!(b.mgr.wait(&rb).await.unwrap(), RunStatus::Completed);
    let started = b
        .store
        .run_tasks(&rb)
        .unwrap()
        .iter()
        .filter_map(|t| t.started_ms)
        .min()
        .unwrap();
    assert!(
        released_at <= started && started < lease_end,
        "server-b's task started at {started}, server-a let box-1 go at {released_at}, its lease ran until {lease_end}"
    );
    b.broker().end_run(&rb);
    assert!(audit.audit().await.unwrap().clean());
}

/// An operator's hold with a lease is held in the database under that lease: the other
/// server can claim neither the DUT nor a hold on it while the lease is renewed (each
/// renewal moves the lease's end in the database); left unrenewed, it lapses there by
/// the database's clock and the other server claims the DUT. A leased hold the database
/// no longer has is refused its next renewal and ends in the book too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labdb_fence_a_leased_hold_is_held_in_the_database_under_its_lease() {
    let url = db("fence_leased_hold");
    let (a, b) = (
        server(&url, "server-a", true),
        server(&url, "server-b", true),
    );
    let leased = HoldOptions {
        lease_ms: Some(LEASE_MS),
        ..HoldOptions::default()
    };
    let hold = a
        .book()
        .hold_with("box-1", "alice", None, 600_000, false, &leased)
        .unwrap();
    let audit = LabBook::open(&url, "auditor").await.unwrap();
    let alices = async || {
        audit
            .live()
            .await
            .unwrap()
            .into_iter()
            .find(|r| matches!(&r.holder, Holder::Operator { name } if name == "alice"))
    };
    let row = alices().await.expect("the hold is live in the database");
    let first_lease = row.expires.expect("the hold has a lease in the database");
    assert!(first_lease < row.end, "{row:?}");

    match on_box(b.broker(), "run-b") {
        Grant::Busy { reason, .. } => assert!(
            reason
                .contains("box-1 is held in the lab database by operator alice of server server-a"),
            "{reason}"
        ),
        other => panic!("a run claimed a DUT a leased hold covers: {other:?}"),
    }
    match b.book().hold("box-1", "bob", None, 60_000, false) {
        Err(BookError::Fenced(reason)) => assert!(reason.contains("operator alice"), "{reason}"),
        other => panic!("two operators hold box-1: {other:?}"),
    }

    // Renewed, its lease moves on in the database.
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.book().renew_view(hold.id).unwrap();
    let renewed = alices().await.expect("the renewed hold is live");
    assert!(
        renewed.expires.unwrap() > first_lease,
        "{renewed:?} after {first_lease}"
    );

    // Left unrenewed, it lapses in the database and the DUT is the other server's.
    until("the hold's lease lapsed in the database", async || {
        matches!(on_box(b.broker(), "run-b"), Grant::Granted(_)).then_some(())
    })
    .await;
    b.broker().end_run("run-b");

    // A leased hold the database no longer has (ended there) is ended in the book at its
    // next renewal, the renewal refused.
    let long = HoldOptions {
        lease_ms: Some(60_000),
        ..HoldOptions::default()
    };
    let hold = a
        .book()
        .hold_with("box-1", "alice", None, 600_000, false, &long)
        .unwrap();
    let row = alices()
        .await
        .expect("the second hold is live in the database");
    audit.release(row.id).await.unwrap();
    match a.book().renew_view(hold.id) {
        Err(BookError::Fenced(reason)) => {
            assert!(reason.contains("lapsed in the lab database"), "{reason}")
        }
        other => panic!("a hold the database ended was renewed: {other:?}"),
    }
    assert!(a.book().holds().iter().all(|r| r.holders.is_empty()));
    assert!(audit.audit().await.unwrap().clean());
}

/// An operator's hold extension the database refuses (another server's hold follows it
/// there) is refused here too, and the book's window is given back: the book never holds
/// longer than the database does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labdb_fence_a_hold_extension_the_database_refuses_is_given_back() {
    let url = db("fence_hold_extend");
    let (a, b) = (
        server(&url, "server-a", true),
        server(&url, "server-b", true),
    );
    let alices = a
        .book()
        .hold("box-1", "alice", None, 60_000, false)
        .unwrap();
    b.book()
        .hold("box-1", "bob", Some(alices.end + 1_000), 60_000, false)
        .expect("bob's later hold fits in the database");
    match a.book().extend_to(alices.id, alices.end + 60_000) {
        Err(BookError::Fenced(reason)) => assert!(reason.contains("box-1"), "{reason}"),
        other => panic!("the book extended a hold the database did not: {other:?}"),
    }
    let now = a
        .book()
        .reservations()
        .into_iter()
        .find(|r| r.id == alices.id)
        .expect("alice's hold is still held");
    assert_eq!(now.end, alices.end, "the book kept the refused extension");
    // A shorter one that fits is taken by both.
    let extended = a.book().extend_to(alices.id, alices.end + 500).unwrap();
    assert_eq!(extended.end, alices.end + 500);
}

/// A claim's extension the database refuses (another server's hold follows it there) is
/// asked again at each renewal, and taken once the way is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labdb_fence_a_refused_claim_extension_is_asked_again_at_each_renewal() {
    use testbay_engine::reserve::{Fence, FenceClaim, FenceHold, ReservationMode};
    let url = db("fence_extend_retry");
    let (a, b) = (fence(&url, "server-a"), fence(&url, "server-b"));
    let run = Holder::Run {
        run_id: "run-a".into(),
        lane: "box-1".into(),
        task: None,
    };
    let id = a
        .claim(&FenceClaim {
            resource: "box-1",
            exclusive: true,
            holder: &run,
            duration_ms: 60_000,
            lease_ms: 60_000,
        })
        .unwrap()
        .expect("fenced");
    let audit = LabBook::open(&url, "auditor").await.unwrap();
    let end_in_db = async || {
        audit
            .live()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.id == id)
            .expect("the claim is live")
            .end
    };
    let end = end_in_db().await;
    let bobs = FenceHold {
        resource: "box-1",
        mode: ReservationMode::Exclusive,
        operator: "bob",
        start: end,
        end: end + 60_000,
        now: end,
        lease_ms: None,
    };
    b.hold(&bobs).expect("bob's hold follows the claim");

    a.extend(id, 30_000);
    assert!(a.renew(&[id]).is_empty(), "the claim is still held");
    assert_eq!(
        end_in_db().await,
        end,
        "the database extended over bob's hold"
    );

    b.end_hold(&bobs);
    assert!(a.renew(&[id]).is_empty());
    assert_eq!(
        end_in_db().await,
        end + 30_000,
        "the refused extension was not asked again"
    );
    a.release(id);
    assert!(audit.audit().await.unwrap().clean());
}
