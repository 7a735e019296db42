//! Bounds: numbers that reach the engine's arithmetic without the load and API checks
//! (a restored book, a caller of the library) degrade instead of panicking, and a large
//! finished run does not stay in memory. The checks themselves are tested where they
//! speak: pack and lab files (`pack`, `lab`), the API (`api`), the CLI.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use testbay_engine::clock::{Clock, ManualClock, SystemClock};
use testbay_engine::exec::{run_phase, ExecLimits, PhaseCommand, ProtocolEnv};
use testbay_engine::outcome::{Phase, RunStatus, PASSED};
use testbay_engine::pack::{ResourceMode, TaskDef};
use testbay_engine::reserve::{
    Book, BookBroker, BookConfig, BookError, BrokerConfig, Holder, LiveBook, ReservationRequest,
    ResourceKind, ResourceSpec,
};
use testbay_engine::run::{Grant, LaunchRequest, ResourceBroker, TaskNeeds, FINISHED_ITEMS_KEPT};
use testbay_engine::store::SqliteStore;

use crate::support::{write, Bed, T0};

fn specs() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec {
            name: "ir".into(),
            kind: ResourceKind::Exclusive,
            config: json!({}),
        },
        ResourceSpec {
            name: "huge_pool".into(),
            kind: ResourceKind::Shared { capacity: u32::MAX },
            config: json!({}),
        },
    ]
}

fn op() -> Holder {
    Holder::Operator {
        name: "mallory".into(),
    }
}

#[test]
fn the_book_refuses_windows_past_the_end_of_time_instead_of_panicking() {
    let clock = ManualClock::new(T0);
    let mut b = Book::new(Arc::new(clock.clone()), specs()).unwrap();
    // A hold from i64::MAX panicked in the interval index.
    for next_available in [false, true] {
        let mut req = ReservationRequest::new("ir", op(), 60_000).next_available(next_available);
        req.time_needed = Some(i64::MAX);
        assert_eq!(
            b.request(req),
            Err(BookError::OutOfRange {
                from: i64::MAX,
                duration_ms: 60_000
            })
        );
    }
    assert!(matches!(
        b.request(ReservationRequest::new("ir", op(), i64::MAX)),
        Err(BookError::OutOfRange { .. })
    ));
    assert!(b.reservations().is_empty(), "nothing was booked");
    // Windows spanning the whole time line are computed without overflowing.
    let a = b.availability("ir", i64::MIN, i64::MAX).unwrap();
    assert!(a.available);
    let w = b
        .next_window("ir", T0, i64::MAX - T0, Default::default())
        .unwrap();
    assert_eq!((w.start, w.end), (T0, i64::MAX));
    // A shared resource of the largest capacity: two whole-capacity holders do not
    // overflow its usage count, the second waits for the first.
    let first = b
        .request(ReservationRequest::new("huge_pool", op(), 1_000))
        .unwrap();
    assert_eq!(first.available_from, T0);
    let second = b
        .request(ReservationRequest::new("huge_pool", op(), 1_000))
        .unwrap();
    assert_eq!(second.available_from, T0 + 1_000);
}

#[test]
fn a_broker_given_an_absurd_estimate_refuses_the_run_instead_of_panicking() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(tmp.path()).unwrap();
    let clock = ManualClock::new(T0);
    let book = LiveBook::open(
        &store,
        Arc::new(clock.clone()),
        BookConfig::default(),
        specs(),
    )
    .unwrap();
    let cfg = BrokerConfig {
        renew_thread: false,
        ..BrokerConfig::default()
    };
    let broker = BookBroker::new(book.clone(), None, cfg);
    // `est_task_time: 1e300` passed `packs check` and then overflowed the broker's sums.
    let def: TaskDef = serde_json::from_value(json!({
        "name": "t", "run": ["true"], "est_task_time": 1e300, "exclusive_resources": ["ir"]
    }))
    .unwrap();
    let needs = TaskNeeds::from_def("r-huge", 0, &def, "local", None, None, T0);
    let e = broker
        .begin_run("r-huge", ResourceMode::All, std::slice::from_ref(&needs))
        .unwrap_err();
    assert!(e.contains("beyond the last time the book can hold"), "{e}");
    broker
        .begin_run("r-huge-2", ResourceMode::PerTaskSeparate, &[])
        .unwrap();
    let needs = TaskNeeds::from_def("r-huge-2", 0, &def, "local", None, None, T0);
    match broker.acquire(&needs) {
        Grant::Unavailable(reason) => {
            assert!(reason.contains("beyond the last time"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    broker.end_run("r-huge-2");
    book.flush();
    assert!(book.reservations().is_empty(), "nothing was left booked");
    book.shutdown();
}

#[tokio::test]
async fn a_phase_limit_beyond_the_clock_is_no_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(dir.join("artifacts")).unwrap();
    std::fs::write(dir.join("params.json"), "{}").unwrap();
    let cmd = PhaseCommand {
        argv: vec!["true".into()],
        cwd: dir.clone(),
        env: ProtocolEnv {
            run_id: "r-test-1".into(),
            task: "t".into(),
            phase: Phase::Main,
            params_file: dir.join("params.json"),
            result_file: dir.join("result.json"),
            artifacts_dir: dir.join("artifacts"),
            reporter: None,
        },
        log_file: dir.join("main.log"),
        // `max_runtime: 99999999999999999999` made a timer that panicked in the phase.
        max_runtime: Some(Duration::MAX),
        limits: ExecLimits::default(),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let out = run_phase(&cmd, &clock, None, None, |_| {}).await.unwrap();
    assert_eq!(out.result, PASSED, "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_run_is_forgotten_when_it_ends_and_a_small_one_stays_viewable() {
    let f = Bed::new();
    let pack = &f.pack;
    write(
        &pack.join("pack.yaml"),
        "name: many\nversion: '1'\ngroups:\n  g:\n    tests: [t]\n",
    );
    write(&pack.join("tasks/t.yaml"), "name: t\nrun: ['true']\n");
    let (mgr, store) = (&f.mgr, &f.store);
    let launch = |groups: usize| {
        mgr.launch(LaunchRequest {
            pack_dir: pack.display().to_string(),
            groups: vec!["g".into(); groups],
            ..Default::default()
        })
        .unwrap()
    };
    let small = launch(3);
    assert_eq!(mgr.wait(&small).await.unwrap(), RunStatus::Completed);
    // One occurrence more than the finished runs' budget, stopped at once (the 400,002-task
    // run stopped this way kept 2.5 GB).
    let large = launch(FINISHED_ITEMS_KEPT + 1);
    assert!(mgr.view(&large).is_some(), "a running run is viewable");
    mgr.stop(&large).unwrap();
    let _ = mgr.stop(&large);
    // Stopped, even when its occurrence, which watches the stop too, ends before the
    // driver takes the stop (it then ended `completed`, the rest Skipped as after a failure).
    assert_eq!(mgr.wait(&large).await.unwrap(), RunStatus::Stopped);
    let counts = store.get_run(&large).unwrap().counts;
    assert!(
        !counts.by_result.contains_key("Skipped"),
        "what had not started was aborted by the stop: {counts:?}"
    );
    // Forgotten as it ends (the driver forgets just after announcing the end).
    for _ in 0..100 {
        if mgr.view(&large).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(mgr.view(&large).is_none(), "its live state was dropped");
    assert_eq!(
        store.run_tasks(&large).unwrap().len(),
        FINISHED_ITEMS_KEPT + 1,
        "its results stay in the store"
    );
    let v = mgr
        .view(&small)
        .expect("a small finished run stays viewable");
    assert_eq!(v.progress.done, 3);
}
