//! Nothing wedges: a task waiting for a DUT or resource wakes on the book's events (a
//! release, a lease lapsing, a hold ending) and starts at once; an early wake-up that finds
//! the resource busy again is no retry; the next owner of the book gives back what runs
//! that are over still hold; a run whose phase never reports back can still be stopped,
//! and its reservations end with it. Real child processes and a real SQLite file; the
//! book's time is virtual ([`ManualClock`]) wherever waiting is involved, so a waiter can
//! only start early by being woken.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{json, Map};
use testbay_engine::api::{parse_request, Console, ConsolePaths, Event, LocalConsole, Response};
use testbay_engine::clock::{Clock, ManualClock};
use testbay_engine::exec::ExecLimits;
use testbay_engine::lab::{self, Lab};
use testbay_engine::outcome::{RunStatus, ABORTED, ERRORED, PASSED};
use testbay_engine::pack::ResourceMode;
use testbay_engine::plan::{BusyOutcome, DutTarget, ItemState, Plan, PlanInput};
use testbay_engine::reserve::{
    BookBroker, BookConfig, BrokerConfig, Holder, LiveBook, LiveError, ResId, ReservationMode,
    ReservationRequest,
};
use testbay_engine::run::{
    Grant, LaunchRequest, ResourceBroker, RunEvent, TaskNeeds, TaskState, Wakes,
};
use testbay_engine::store::{reservations as db, NewRun, SqliteStore, Store};

use crate::support::{alive, write, Bed, T0};

const LAB: &str = "name: t\nracks:\n  - {name: rack-x, slots: 4}\nduts:\n  - {name: box-1, model: BX-1, location: {rack: rack-x, slot: 1}}\n  - {name: box-2, model: BX-1, location: {rack: rack-x, slot: 2}}\nresources:\n  - {name: ir, mode: exclusive}\n  - {name: stream, mode: shared, capacity: 2}\n";

fn box_1() -> DutTarget {
    DutTarget {
        name: "box-1".into(),
        model: Some("BX-1".into()),
        rack: Some("rack-x".into()),
        slot: Some(1),
    }
}

// ---- the next owner of the book gives back what ended runs hold (a real SQLite file) ----

fn needs<'a>(run: &'a str, item: usize, lane: &'a str, dut: &'a DutTarget) -> TaskNeeds<'a> {
    static NO_CONFIG: std::sync::OnceLock<Map<String, serde_json::Value>> =
        std::sync::OnceLock::new();
    TaskNeeds {
        run_id: run,
        item,
        task: "t",
        lane,
        dut: Some(dut),
        ats: None,
        exclusive: &[],
        shared: &[],
        configs: NO_CONFIG.get_or_init(Map::new),
        est_task_time: 100.0,
        now: T0,
    }
}

fn stored_run(store: &dyn Store, id: &str) {
    store
        .insert_run(
            &NewRun {
                id: id.into(),
                pack_name: "p".into(),
                pack_version: "1".into(),
                content_hash: String::new(),
                pack_dir: String::new(),
                snapshot_dir: None,
                groups: vec![],
                duts: vec![],
                ats: None,
                params: json!({}),
                resource_mode: String::new(),
                coverage_mode: String::new(),
                status: RunStatus::Running,
                reason: None,
                created_ms: T0,
                est_run_time: 0.0,
            },
            &[],
        )
        .unwrap();
}

/// A console dies with runs holding DUTs and resources: one is still running elsewhere
/// (stored as running by a live process), one was marked interrupted by recovery, one is
/// stored as running by a process that is gone (recovery has not seen it yet), one never
/// got stored. The next owner of the book gives back what the three that are over hold,
/// at once and as book events, and keeps the rest.
#[test]
fn the_next_owner_of_the_book_gives_back_what_ended_runs_hold() {
    let root = tempfile::tempdir().unwrap();
    write(&root.path().join("lab.yaml"), LAB);
    let lab = lab::load(&root.path().join("lab.yaml")).unwrap();
    let store = SqliteStore::open_in(&root.path().join("data")).unwrap();
    stored_run(&store, "r-live");
    stored_run(&store, "r-dead");
    store
        .set_run_status("r-dead", RunStatus::Interrupted, Some("console exited"), T0)
        .unwrap();
    stored_run(&store, "r-orphan");
    // Same pid, another start time: another process, long gone.
    rusqlite::Connection::open(store.path())
        .unwrap()
        .execute("UPDATE runs SET owner_start = 1 WHERE id = 'r-orphan'", [])
        .unwrap();
    let clock = ManualClock::new(T0);
    let open = || {
        LiveBook::open(
            &store,
            Arc::new(clock.clone()),
            BookConfig::default(),
            lab.book_resources(),
        )
        .unwrap()
    };
    let cfg = BrokerConfig {
        renew_thread: false,
        ..BrokerConfig::default()
    };
    let book = open();
    let broker = BookBroker::new(book.clone(), Some(Arc::new(lab.clone())), cfg);
    let box_2 = DutTarget {
        name: "box-2".into(),
        ..box_1()
    };
    let mut held = Vec::new();
    for (run, dut) in [
        ("r-live", &box_1()),
        ("r-dead", &box_2),
        ("r-ghost", &box_1()),
    ] {
        broker
            .begin_run(run, ResourceMode::PerTaskSeparate, &[])
            .unwrap();
        held.push(broker.acquire(&needs(run, 0, &dut.name, dut)));
    }
    assert!(matches!(held[0], Grant::Granted(_)), "{:?}", held[0]);
    assert!(matches!(held[1], Grant::Granted(_)), "{:?}", held[1]);
    assert!(matches!(held[2], Grant::Busy { .. }), "{:?}", held[2]);
    // r-ghost took `ir` (never stored: its console died before the run was).
    let ghost = book
        .with(|b| {
            let pre = b.request(
                ReservationRequest::new(
                    "ir",
                    Holder::Run {
                        run_id: "r-ghost".into(),
                        lane: "box-1".into(),
                        task: None,
                    },
                    3_600_000,
                )
                .lease(60_000),
            )?;
            b.claim(pre.id).map(|_| pre.id)
        })
        .unwrap();
    let orphan = book
        .with(|b| {
            let pre = b.request(
                ReservationRequest::new(
                    "stream",
                    Holder::Run {
                        run_id: "r-orphan".into(),
                        lane: "box-2".into(),
                        task: Some("t".into()),
                    },
                    3_600_000,
                )
                .mode(ReservationMode::Shared)
                .lease(60_000),
            )?;
            b.claim(pre.id).map(|_| pre.id)
        })
        .unwrap();
    // An operator's hold, booked for later: kept.
    let carol = book
        .hold("ir", "carol", Some(T0 + 7_200_000), 600_000, false)
        .unwrap();
    let dead: Vec<ResId> = broker.reservations_of("r-dead");
    assert_eq!(dead.len(), 1);
    // The console dies: nothing is released, the leases have not lapsed.
    book.shutdown();
    drop((broker, book));

    let book = open();
    let mut left: Vec<String> = book
        .reservations()
        .iter()
        .map(|v| format!("{} {}", v.resource, v.holder))
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["box-1 run r-live/box-1", "ir operator carol"],
        "what ended runs held is given back; the rest stays"
    );
    book.flush();
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let stored: Vec<ResId> = db::live_reservations(&conn)
        .unwrap()
        .iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(stored.len(), 2);
    assert!(stored.contains(&carol.id));
    let given_back: Vec<u64> = db::events_since(&conn, 0, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "released" && e.reason.as_deref() == Some("holder_ended"))
        .map(|e| e.reservation_id)
        .collect();
    assert_eq!(given_back, [dead[0].0, ghost.0, orphan.0]);
    book.shutdown();
}

/// Longest a woken run may take to finish here. Runs that are not woken sleep for many
/// minutes (their `until`), so this only tells woken from not woken.
const WOKEN_WITHIN: Duration = Duration::from_secs(20);

/// A pack `p` with one group per task: `quick` passes at once, `gate` waits for the file
/// `go` beside the pack, `ir_user` needs `ir` and gives up after one retry.
fn write_pack(root: &Path) -> PathBuf {
    let dir = root.join("packs/p");
    write(
        &dir.join("pack.yaml"),
        "name: p\nversion: '1'\ngroups:\n  quick:\n    tests: [quick]\n  gate:\n    tests: [gate]\n  ir:\n    tests: [ir_user]\n",
    );
    let task = |name: &str, extra: &str, body: &str| {
        write(
            &dir.join(format!("tasks/{name}.yaml")),
            &format!("name: {name}\nrun: [bash, {name}.sh]\nest_task_time: 1\n{extra}"),
        );
        write(&dir.join(format!("tasks/{name}.sh")), body);
    };
    task("quick", "", "exit 0\n");
    task(
        "gate",
        "",
        &format!(
            "touch {started}\nfor i in $(seq 600); do [ -e {go} ] && exit 0; sleep 0.05; done\nexit 1\n",
            started = root.join("started").display(),
            go = root.join("go").display()
        ),
    );
    task(
        "ir_user",
        "exclusive_resources: [ir]\nmax_resource_retry: 1\n",
        "exit 0\n",
    );
    dir
}

/// A bed reserving through the book of [`LAB`] on a [`ManualClock`], its pack written
/// (see [`write_pack`]).
fn fx() -> Bed {
    let f = Bed::builder()
        .lab(LAB)
        .manual_clock(T0)
        .broker_config(BrokerConfig {
            renew_thread: false,
            ..BrokerConfig::default()
        })
        .build();
    write_pack(f.root());
    f
}

/// What this module asks of its bed.
trait WaitersBed {
    fn launch(&self, group: &str, duts: Vec<DutTarget>) -> String;
    fn launch_in(&self, mode: ResourceMode, group: &str, duts: Vec<DutTarget>) -> String;
    async fn stalled(&self, id: &str) -> String;
    async fn ends(&self, id: &str) -> RunStatus;
    fn results(&self, id: &str) -> Vec<(String, String, String)>;
    fn holders(&self) -> Vec<String>;
}

impl WaitersBed for Bed {
    fn launch(&self, group: &str, duts: Vec<DutTarget>) -> String {
        self.launch_in(ResourceMode::PerTaskSeparate, group, duts)
    }

    fn launch_in(&self, mode: ResourceMode, group: &str, duts: Vec<DutTarget>) -> String {
        self.mgr
            .launch(LaunchRequest {
                pack_dir: self.root().join("packs/p").display().to_string(),
                groups: vec![group.into()],
                duts,
                resource_mode: Some(mode),
                ..Default::default()
            })
            .unwrap()
    }

    /// Wait (real time) until run `id` is stalled; the reason its waiting task gives.
    async fn stalled(&self, id: &str) -> String {
        for _ in 0..500 {
            if let Some(v) = self.mgr.view(id) {
                if v.status == RunStatus::Stalled {
                    let waiting = v.lanes.iter().flat_map(|l| &l.delay).next().unwrap();
                    let TaskState::Waiting { reason } = &waiting.state else {
                        panic!("{waiting:?}")
                    };
                    return reason.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("run {id} never stalled: {:?}", self.mgr.view(id));
    }

    async fn ends(&self, id: &str) -> RunStatus {
        tokio::time::timeout(WOKEN_WITHIN, self.mgr.wait(id))
            .await
            .unwrap_or_else(|_| panic!("run {id} was not woken: {:?}", self.mgr.view(id)))
            .unwrap()
    }

    fn results(&self, id: &str) -> Vec<(String, String, String)> {
        self.store
            .run_tasks(id)
            .unwrap()
            .into_iter()
            .map(|t| {
                (
                    t.task,
                    t.result.unwrap_or_default(),
                    t.message.unwrap_or_default(),
                )
            })
            .collect()
    }

    fn holders(&self) -> Vec<String> {
        self.book()
            .reservations()
            .iter()
            .map(|v| v.holder.to_string())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_starts_when_the_operator_releases_the_dut() {
    let f = fx();
    let hold = f
        .book()
        .hold("box-1", "carol", None, 3_600_000, false)
        .unwrap();
    let id = f.launch("quick", vec![box_1()]);
    let reason = f.stalled(&id).await;
    // Honest: the hold is booked for an hour, and the run starts when it ends.
    assert!(reason.contains("box-1 held by operator carol"), "{reason}");
    assert!(reason.contains("starts when they free"), "{reason}");
    assert!(reason.contains("retry in 3600s at the latest"), "{reason}");
    assert_eq!(f.broker().waiting_items(&id), [0]);

    f.book().release(hold.id).unwrap();
    assert_eq!(f.ends(&id).await, RunStatus::Completed);
    assert_eq!(f.results(&id)[0].1, PASSED);
    assert!(f.broker().waiting_items(&id).is_empty());
    assert!(f.holders().is_empty(), "{:?}", f.holders());
    f.book().shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_starts_when_a_hold_ends_on_virtual_time() {
    let f = fx();
    f.book()
        .hold("box-1", "carol", None, 600_000, false)
        .unwrap();
    let id = f.launch("quick", vec![box_1()]);
    let reason = f.stalled(&id).await;
    assert!(reason.contains("retry in 600s at the latest"), "{reason}");
    // The hold's window ends; the book's service thread sweeps it within 100 ms.
    f.clock().advance(600_000);
    assert_eq!(f.ends(&id).await, RunStatus::Completed);
    assert_eq!(f.results(&id)[0].1, PASSED);
    f.book().shutdown();
}

/// Resource mode `all`: the run books `ir` up front, for after the operator's hold. The
/// hold is released early: the run books again from now and starts at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_booked_ahead_starts_early_when_the_holder_lets_go() {
    let f = fx();
    let hold = f
        .book()
        .hold("ir", "carol", None, 3_600_000, false)
        .unwrap();
    let id = f.launch_in(ResourceMode::All, "ir", vec![]);
    let reason = f.stalled(&id).await;
    assert!(reason.contains("retry in 3600s at the latest"), "{reason}");
    let booked: Vec<_> = f
        .book()
        .reservations()
        .into_iter()
        .filter(|v| v.holder.to_string().contains(&id))
        .map(|v| (v.resource.to_string(), v.start))
        .collect();
    assert_eq!(booked, [("ir".to_string(), T0 + 3_600_000)]);
    f.book().release(hold.id).unwrap();
    assert_eq!(f.ends(&id).await, RunStatus::Completed);
    assert_eq!(f.results(&id)[0].1, PASSED);
    f.book().shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_starts_when_a_silent_holders_lease_lapses() {
    let f = fx();
    // A holder that stopped renewing: booked for an hour, on a 30 s lease.
    f.book().with(|b| {
        let gone = Holder::Run {
            run_id: "r-gone".into(),
            lane: "box-1".into(),
            task: None,
        };
        let pre = b
            .request(ReservationRequest::new("box-1", gone, 3_600_000).lease(30_000))
            .unwrap();
        b.claim(pre.id).unwrap();
    });
    let id = f.launch("quick", vec![box_1()]);
    let reason = f.stalled(&id).await;
    assert!(reason.contains("held by run r-gone/box-1"), "{reason}");
    f.clock().advance(30_000);
    assert_eq!(f.ends(&id).await, RunStatus::Completed);
    assert_eq!(f.results(&id)[0].1, PASSED);
    f.book().shutdown();
}

/// A task with `max_resource_retry: 1` is woken when the operator's hold on `ir` ends, but
/// another operator takes `ir` in the same instant: it finds it busy again without that
/// counting as a retry (it was never promised `ir` by then), waits on, and runs once `ir`
/// is really free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_wake_that_finds_the_resource_busy_again_is_no_retry() {
    let f = fx();
    let mut events = f.mgr.subscribe();
    let first = f
        .book()
        .hold("ir", "carol", None, 3_600_000, false)
        .unwrap();
    let id = f.launch("ir", vec![]);
    let reason = f.stalled(&id).await;
    assert!(reason.contains("operator carol"), "{reason}");
    // Released and taken again at once, under one lock: the waiter hears the release.
    let second = f.book().with(|b| {
        b.release(first.id).unwrap();
        b.request(
            ReservationRequest::new(
                "ir",
                Holder::Operator {
                    name: "dave".into(),
                },
                3_600_000,
            )
            .auto_claim(true),
        )
        .unwrap()
    });
    let woken = tokio::time::timeout(WOKEN_WITHIN, async {
        loop {
            if let Ok(RunEvent::TaskState {
                state: TaskState::Waiting { reason },
                ..
            }) = events.recv().await
            {
                if reason.contains("operator dave") {
                    return reason;
                }
            }
        }
    })
    .await
    .expect("the waiting task was woken and retried");
    assert!(woken.contains("retry in 3600s"), "{woken}");
    assert!(!f.mgr.view(&id).unwrap().status.is_finished());
    f.book().release(second.id).unwrap();
    assert_eq!(f.ends(&id).await, RunStatus::Completed);
    let results = f.results(&id);
    assert_eq!(results[0].1, PASSED, "{results:?}");
    f.book().shutdown();
}

/// Two launches through the console's API on one DUT: the second waits in the run queue
/// and starts as soon as the first ends, not when the first's booked window would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_of_two_api_launches_on_one_dut_starts_when_the_first_ends() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("lab.yaml"), LAB);
    write_pack(root);
    // The second run waits in the queue: a busy test machine must not hold it back.
    write(
        &root.join("data/settings.yaml"),
        "dispatch_cpu_threshold: 100\n",
    );
    let console = LocalConsole::open(ConsolePaths {
        data_dir: root.join("data"),
        pack_roots: vec![root.join("packs")],
        lab_file: Some(root.join("lab.yaml")),
    })
    .unwrap();
    let mut events = console.subscribe();
    let launch = |group: &str| {
        let req = parse_request(
            json!({"cmd": "launch", "pack": "p", "groups": [group], "duts": ["box-1"]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let c = &console;
        async move {
            let Response::Launch { run_id, queued, .. } = c.dispatch(req).await.unwrap() else {
                panic!()
            };
            (run_id, queued)
        }
    };
    let (first, queued) = launch("gate").await;
    assert!(!queued, "box-1 was free");
    for _ in 0..500 {
        if root.join("started").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(root.join("started").exists(), "the first run never started");
    // The second waits in the run queue, not stalled on the DUT.
    let (second, queued) = launch("quick").await;
    assert!(queued, "box-1 is the first run's: the second is queued");
    write(&root.join("go"), "");
    // The second may well end before the first has announced its own end.
    let mut ended = std::collections::HashMap::new();
    tokio::time::timeout(WOKEN_WITHIN, async {
        while ended.len() < 2 {
            if let Ok(Event::Run(RunEvent::RunStatus { run_id, status, .. })) = events.recv().await
            {
                if status.is_finished() && (run_id == first || run_id == second) {
                    ended.insert(run_id, status);
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the second run did not start once the first ended: {ended:?}"));
    assert_eq!(ended[&first], RunStatus::Completed);
    assert_eq!(ended[&second], RunStatus::Completed);
}

/// Run `a` (10 s on `ir`) and run `b` (100 s) wait for `ir`: an operator holds it for an
/// hour, another from 20 s after that. `a` retries and is still busy: that changes nothing
/// in the book, so `b` is not woken (a retry that wakes the others, whose retries wake it,
/// would go round forever). When the first hold ends, both are.
#[test]
fn a_retry_that_finds_the_resource_busy_wakes_nobody() {
    let f = Bed::builder()
        .lab(LAB)
        .manual_clock(T0)
        .broker_config(BrokerConfig {
            renew_thread: false,
            estimate_factor: 1.0,
            margin_ms: 0,
            ..BrokerConfig::default()
        })
        .build();
    let (clock, book, broker) = (f.clock(), f.book(), f.broker());
    let first = book.hold("ir", "carol", None, 3_600_000, false).unwrap();
    book.hold("ir", "dave", Some(T0 + 3_620_000), 3_600_000, false)
        .unwrap();
    let ir = ["ir".to_string()];
    let configs = Map::new();
    let ask = |run: &str, est: f64| {
        broker.acquire(&TaskNeeds {
            run_id: run,
            item: 0,
            task: "t",
            lane: "local",
            dut: None,
            ats: None,
            exclusive: &ir,
            shared: &[],
            configs: &configs,
            est_task_time: est,
            now: clock.now_ms(),
        })
    };
    let mut wakes = Vec::new();
    for run in ["a", "b"] {
        broker
            .begin_run(run, ResourceMode::PerTaskSeparate, &[])
            .unwrap();
        wakes.push(broker.wakes(run).unwrap());
    }
    let until = |g: Grant| match g {
        Grant::Busy { until, .. } => until,
        g => panic!("{g:?}"),
    };
    assert_eq!(until(ask("a", 10.0)), T0 + 3_600_000);
    assert_eq!(until(ask("b", 100.0)), T0 + 7_220_000);
    // a's retry books `ir` for the 10 s before dave's hold to learn so, and lets it go.
    assert_eq!(until(ask("a", 10.0)), T0 + 3_600_000);
    assert!(wakes[1].try_recv().is_err(), "b was woken by a's retry");
    assert_eq!(broker.waiting_items("b"), [0]);
    book.release(first.id).unwrap();
    assert_eq!(wakes[0].try_recv().ok(), Some(0));
    assert_eq!(wakes[1].try_recv().ok(), Some(0));
    assert!(matches!(ask("a", 10.0), Grant::Granted(_)));
    book.shutdown();
}

// ---- the delay queue's counting, on virtual time ----

/// `max_resource_retry: 1`: the first busy answer counts; retries on early wake-ups that
/// find the resource busy again do not; a retry at or after the promised time does.
#[test]
fn early_wakes_are_no_retries_but_a_broken_promise_is() {
    let root = tempfile::tempdir().unwrap();
    let dir = write_pack(root.path());
    let pack = testbay_engine::pack::load(&dir).unwrap();
    let mut plan = Plan::build(PlanInput {
        pack: &pack,
        groups: vec!["ir".into()],
        duts: vec![],
        ats: None,
        params: pack.def.params.clone(),
        test_order: None,
    })
    .unwrap();
    let clock = ManualClock::new(T0);
    let item = plan.next_starts(clock.now_ms())[0].item;
    let busy =
        |plan: &mut Plan, until: i64| plan.resource_busy(item, clock.now_ms(), until, "ir held");
    assert_eq!(
        busy(&mut plan, T0 + 60_000),
        BusyOutcome::Delayed { until: T0 + 60_000 }
    );
    assert!(
        plan.next_starts(clock.now_ms()).is_empty(),
        "not before its time"
    );
    for _ in 0..3 {
        clock.advance(1_000);
        assert!(plan.wake(item, clock.now_ms()));
        assert_eq!(plan.next_starts(clock.now_ms())[0].item, item);
        assert!(
            matches!(busy(&mut plan, T0 + 60_000), BusyOutcome::Delayed { .. }),
            "an early wake-up is no retry"
        );
        assert!(plan
            .wait_reason(item, clock.now_ms())
            .unwrap()
            .contains("starts when they free"));
    }
    clock.set(T0 + 60_000);
    assert_eq!(plan.next_starts(clock.now_ms())[0].item, item);
    match busy(&mut plan, T0 + 120_000) {
        BusyOutcome::GaveUp { message } => assert!(message.contains("max_resource_retry")),
        o => panic!("{o:?}"),
    }
    assert!(matches!(plan.state(item), ItemState::Done { result, .. } if result == ERRORED));
    assert!(!plan.wake(item, clock.now_ms()), "done items do not wake");
}

// ---- a phase that never reports back (real child processes) ----

/// Kills the given pids when dropped, so a failing test leaves nothing behind.
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: plain syscall; the pids are this test's task processes.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The phase's process leaves its process group for one of its own, so neither the
/// SIGTERM nor the SIGKILL to the group reaches it: after a stop at once its phase never
/// reports back. The run still ends `stopped` once the grace is up: the task Aborted with
/// the reason, the run's processes killed, its DUT free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_at_once_ends_a_run_whose_phase_never_reports_back() {
    let limits = ExecLimits {
        kill_grace: Duration::from_millis(200),
        drain_timeout: Duration::from_millis(200),
        ..ExecLimits::default()
    };
    let f = Bed::builder().lab(LAB).limits(limits.clone()).build();
    let (root, pack) = (f.root(), &f.pack);
    let (mgr, store, broker, book) = (&f.mgr, &f.store, f.broker(), f.book());
    write(
        &pack.join("pack.yaml"),
        "name: stuck\nversion: '1'\ngroups:\n  g:\n    tests: [escape]\n",
    );
    write(
        &pack.join("tasks/escape.yaml"),
        "name: escape\nrun: [python3, escape.py]\nest_task_time: 1\n",
    );
    write(
        &pack.join("tasks/escape.py"),
        &format!(
            r#"import os, time
helper = os.fork()
if helper == 0:
    time.sleep(300)
    os._exit(0)
os.setpgid(helper, helper)
os.setpgid(0, helper)
with open("{dir}/pids.tmp", "w") as f:
    f.write(f"{{os.getpid()}} {{helper}}\n")
os.rename("{dir}/pids.tmp", "{dir}/pids")
time.sleep(300)
"#,
            dir = root.display()
        ),
    );
    let id = mgr
        .launch(LaunchRequest {
            pack_dir: pack.display().to_string(),
            duts: vec![box_1()],
            ..Default::default()
        })
        .unwrap();
    let mut pids = String::new();
    for _ in 0..1000 {
        if let Ok(s) = std::fs::read_to_string(root.join("pids")) {
            pids = s;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pids: Vec<i32> = pids
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "the task never started");
    let _cleanup = KillOnDrop(pids.clone());
    assert_eq!(
        broker.reservations_of(&id).len(),
        1,
        "the run holds its DUT"
    );

    mgr.stop(&id).unwrap();
    tokio::time::sleep(limits.kill_grace * 2).await;
    mgr.stop(&id).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), mgr.wait(&id))
        .await
        .expect("the run ends after a stop at once")
        .unwrap();
    assert_eq!(status, RunStatus::Stopped);
    let task = &store.run_tasks(&id).unwrap()[0];
    assert_eq!(task.result.as_deref(), Some(ABORTED), "{task:?}");
    let message = task.message.clone().unwrap_or_default();
    assert!(message.contains("gave up on it"), "{message}");
    assert!(broker.reservations_of(&id).is_empty());
    assert!(
        book.reservations()
            .iter()
            .all(|v| !v.holder.to_string().contains(&id)),
        "{:?}",
        book.reservations()
    );
    for pid in pids {
        for _ in 0..200 {
            if !alive(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(pid), "process {pid} of the stopped run still runs");
    }
    book.shutdown();
}

// ---- property: nobody holds for an ended run, no waiter sleeps while it could go ----

const RESOURCES: [&str; 4] = ["box-1", "box-2", "ir", "stream"];
/// Per run: (exclusive, shared, est_task_time) of its three tasks; the estimates are
/// scaled by run (see [`est`]) so runs want windows of different lengths.
const TASKS: [(&[&str], &[&str], f64); 3] = [
    (&[], &[], 10.0),
    (&["ir"], &[], 30.0),
    (&[], &["stream"], 60.0),
];
const LEASE_MS: i64 = 30_000;

/// Estimated seconds of task `t` of run number `r`.
fn est(r: usize, t: usize) -> f64 {
    TASKS[t].2 * (1 + r % 3) as f64
}

#[derive(Debug, Clone)]
enum Op {
    /// A new run on box-1 or box-2 (by parity).
    Begin(u8),
    /// The run's task asks for its resources.
    Try(u8, u8),
    /// The run's task ends and gives back what it held.
    Finish(u8, u8),
    /// The run ends abruptly (stopped at once, its driver gone): nothing given back task
    /// by task.
    Kill(u8),
    /// An operator holds a resource (from now, or the next free window).
    Hold(u8, u16),
    Unhold(u8),
    /// Virtual time passes (leases lapse, windows and holds end).
    Advance(u32),
    /// The lease renewal of live runs.
    Renew,
    /// The console dies; the next one opens the book again.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..6).prop_map(Op::Begin),
        10 => (0u8..6, 0u8..3).prop_map(|(r, i)| Op::Try(r, i)),
        4 => (0u8..6, 0u8..3).prop_map(|(r, i)| Op::Finish(r, i)),
        1 => (0u8..6).prop_map(Op::Kill),
        3 => (0u8..4, 1u16..300).prop_map(|(r, s)| Op::Hold(r, s)),
        2 => (0u8..8).prop_map(Op::Unhold),
        3 => (1u32..90_000).prop_map(Op::Advance),
        1 => Just(Op::Renew),
        1 => Just(Op::Crash),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Task {
    Pending,
    Waiting { until: i64, woken: bool },
    Holding,
    Done,
}

struct ModelRun {
    id: String,
    dut: DutTarget,
    ended: bool,
    wakes: Option<Wakes>,
    tasks: [Task; 3],
    /// A task was granted: the lane holds its DUT until every task gave back.
    had_dut: bool,
}

struct Model {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    lab: Lab,
    clock: ManualClock,
    /// The book and the broker of the console alive now.
    console: Option<(LiveBook, BookBroker)>,
    runs: Vec<ModelRun>,
    holds: Vec<ResId>,
}

impl Model {
    fn new() -> Model {
        let dir = tempfile::tempdir().unwrap();
        let lab = lab::parse(Path::new("lab.yaml"), LAB).unwrap();
        let store = SqliteStore::open_in(dir.path()).unwrap();
        let clock = ManualClock::new(T0);
        let console = Some(Self::open(&store, &lab, &clock));
        Model {
            _dir: dir,
            store,
            lab,
            clock,
            console,
            runs: Vec::new(),
            holds: Vec::new(),
        }
    }

    fn book(&self) -> &LiveBook {
        &self.console.as_ref().expect("a console").0
    }

    fn broker(&self) -> &BookBroker {
        &self.console.as_ref().expect("a console").1
    }

    fn open(store: &dyn Store, lab: &Lab, clock: &ManualClock) -> (LiveBook, BookBroker) {
        // Right after a crash the old lock may still be held for a moment: a process
        // another test forks meanwhile shares its open file until it execs.
        let mut tries = 0;
        let book = loop {
            match LiveBook::open(
                store,
                Arc::new(clock.clone()),
                BookConfig::default(),
                lab.book_resources(),
            ) {
                Err(LiveError::OwnedElsewhere) if tries < 500 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
                b => break b.unwrap(),
            }
        };
        let cfg = BrokerConfig {
            lease_ms: LEASE_MS,
            renew_thread: false,
            estimate_factor: 1.0,
            margin_ms: 0,
        };
        let broker = BookBroker::new(book.clone(), Some(Arc::new(lab.clone())), cfg);
        (book, broker)
    }

    fn needs<'a>(
        &'a self,
        r: usize,
        t: usize,
        configs: &'a Map<String, serde_json::Value>,
        ex: &'a [String],
        sh: &'a [String],
    ) -> TaskNeeds<'a> {
        let run = &self.runs[r];
        TaskNeeds {
            run_id: &run.id,
            item: t,
            task: "t",
            lane: &run.dut.name,
            dut: Some(&run.dut),
            ats: None,
            exclusive: ex,
            shared: sh,
            configs,
            est_task_time: est(r, t),
            now: self.clock.now_ms(),
        }
    }

    fn acquire(&mut self, r: usize, t: usize) {
        let ex: Vec<String> = TASKS[t].0.iter().map(|s| s.to_string()).collect();
        let sh: Vec<String> = TASKS[t].1.iter().map(|s| s.to_string()).collect();
        let configs = Map::new();
        let grant = self.broker().acquire(&self.needs(r, t, &configs, &ex, &sh));
        let run = &mut self.runs[r];
        run.tasks[t] = match grant {
            Grant::Granted(_) => {
                run.had_dut = true;
                Task::Holding
            }
            Grant::Busy { until, .. } => Task::Waiting {
                until,
                woken: false,
            },
            Grant::Unavailable(why) => panic!("{why}"),
        };
    }

    fn apply(&mut self, op: &Op) {
        let live = |m: &Model, r: u8| {
            let r = r as usize;
            (r < m.runs.len() && !m.runs[r].ended).then_some(r)
        };
        match *op {
            Op::Begin(n) => {
                let dut = if n % 2 == 0 { "box-1" } else { "box-2" };
                let id = format!("r{}", self.runs.len());
                let dut = DutTarget {
                    name: dut.into(),
                    ..Default::default()
                };
                let configs = Map::new();
                let all: Vec<(Vec<String>, Vec<String>)> = TASKS
                    .iter()
                    .map(|(ex, sh, _)| {
                        (
                            ex.iter().map(|s| s.to_string()).collect(),
                            sh.iter().map(|s| s.to_string()).collect(),
                        )
                    })
                    .collect();
                let needs: Vec<TaskNeeds<'_>> = all
                    .iter()
                    .enumerate()
                    .map(|(t, (ex, sh))| TaskNeeds {
                        run_id: &id,
                        item: t,
                        task: "t",
                        lane: &dut.name,
                        dut: Some(&dut),
                        ats: None,
                        exclusive: ex,
                        shared: sh,
                        configs: &configs,
                        est_task_time: est(self.runs.len(), t),
                        now: self.clock.now_ms(),
                    })
                    .collect();
                self.broker()
                    .begin_run(&id, ResourceMode::PerTaskSeparate, &needs)
                    .unwrap();
                drop(needs);
                let wakes = self.broker().wakes(&id);
                self.runs.push(ModelRun {
                    id,
                    dut,
                    ended: false,
                    wakes,
                    tasks: [Task::Pending; 3],
                    had_dut: false,
                });
            }
            Op::Try(r, t) => {
                if let Some(r) = live(self, r) {
                    if self.runs[r].tasks[t as usize] == Task::Pending {
                        self.acquire(r, t as usize);
                    }
                }
            }
            Op::Finish(r, t) => {
                if let Some(r) = live(self, r) {
                    if self.runs[r].tasks[t as usize] == Task::Holding {
                        self.broker().release(&self.runs[r].id, t as usize, &[]);
                        self.runs[r].tasks[t as usize] = Task::Done;
                    }
                }
            }
            Op::Kill(r) => {
                if let Some(r) = live(self, r) {
                    self.broker().end_run(&self.runs[r].id);
                    self.runs[r].ended = true;
                    self.runs[r].wakes = None;
                }
            }
            Op::Hold(res, secs) => {
                if let Ok(v) = self.book().hold(
                    RESOURCES[res as usize],
                    "op",
                    None,
                    i64::from(secs) * 1000,
                    true,
                ) {
                    self.holds.push(v.id);
                }
            }
            Op::Unhold(i) => {
                if let Some(&id) = self.holds.get(i as usize) {
                    let _ = self.book().release(id);
                }
            }
            Op::Advance(ms) => {
                self.clock.advance(i64::from(ms));
                self.book().with(|b| b.tick());
            }
            Op::Renew => self.broker().renew_all(),
            Op::Crash => {
                self.book().shutdown();
                // Every handle on the book goes with the console (and its lock with them).
                self.console = None;
                for run in &mut self.runs {
                    run.ended = true;
                    run.wakes = None;
                }
                self.console = Some(Self::open(&self.store, &self.lab, &self.clock));
            }
        }
    }

    /// What a run's driver does between steps: retry the tasks the broker woke and those
    /// whose time has come. Returns how many rounds that took.
    fn drive(&mut self) -> usize {
        for round in 0..50 {
            let now = self.clock.now_ms();
            let mut again = Vec::new();
            for (r, run) in self.runs.iter_mut().enumerate() {
                if run.ended {
                    continue;
                }
                if let Some(rx) = run.wakes.as_mut() {
                    while let Ok(t) = rx.try_recv() {
                        if let Task::Waiting { woken, .. } = &mut run.tasks[t] {
                            *woken = true;
                        }
                    }
                }
                for (t, task) in run.tasks.iter().enumerate() {
                    if let Task::Waiting { until, woken } = *task {
                        if woken || until <= now {
                            again.push((r, t));
                        }
                    }
                }
            }
            if again.is_empty() {
                return round;
            }
            for (r, t) in again {
                self.acquire(r, t);
            }
        }
        panic!("the runs keep waking each other");
    }

    fn check(&mut self) -> Result<(), TestCaseError> {
        let now = self.clock.now_ms();
        let live: Vec<_> = self.book().reservations();
        for run in self.runs.iter().filter(|r| r.ended) {
            let held: Vec<_> = live
                .iter()
                .filter(|v| matches!(&*v.holder, Holder::Run { run_id, .. } if *run_id == run.id))
                .collect();
            prop_assert!(
                held.is_empty(),
                "ended run {} still holds {:?}",
                run.id,
                held
            );
            prop_assert!(self.broker().waiting_items(&run.id).is_empty());
        }
        for (r, run) in self.runs.iter().enumerate().filter(|(_, r)| !r.ended) {
            let waiting = self.broker().waiting_items(&run.id);
            let lane_has_dut = run.had_dut && run.tasks.iter().any(|t| *t != Task::Done);
            for (t, task) in run.tasks.iter().enumerate() {
                let Task::Waiting {
                    until,
                    woken: false,
                } = *task
                else {
                    continue;
                };
                prop_assert!(until > now, "due tasks were retried");
                prop_assert!(waiting.contains(&t), "{}/{t} waits unregistered", run.id);
                // Could it go now? Then it must have been woken.
                let (ex, sh, _) = TASKS[t];
                let ms = (est(r, t) * 1000.0) as i64;
                let mut wants: Vec<(&str, i64, ReservationMode)> = ex
                    .iter()
                    .map(|res| (*res, ms, ReservationMode::Exclusive))
                    .chain(sh.iter().map(|res| (*res, ms, ReservationMode::Shared)))
                    .collect();
                if !lane_has_dut {
                    let lane_ms = (0..3).map(|t| (est(r, t) * 1000.0) as i64).sum();
                    wants.push((&run.dut.name, lane_ms, ReservationMode::Exclusive));
                }
                let free = self.book().with(|b| {
                    wants.iter().all(|(r, dur, mode)| {
                        b.next_window(r, now, *dur, *mode).unwrap().start == now
                    })
                });
                prop_assert!(!free, "{}/{t} sleeps while {wants:?} is free", run.id);
            }
        }
        Ok(())
    }
}

fn run_model(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut m = Model::new();
    for op in &ops {
        m.apply(op);
        m.drive();
        m.check()?;
    }
    m.book().shutdown();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn nothing_is_held_for_an_ended_run_and_no_waiter_sleeps_while_it_could_go(
        ops in proptest::collection::vec(op(), 1..80)
    ) {
        run_model(ops)?;
    }
}
