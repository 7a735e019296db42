//! The store's contract, written against the `Store` and `BookStore` traits: runs
//! (create, finish, list with filters, sort, pages and search), task results and
//! sub-results, the commit of finished results, recovery of interrupted runs, the
//! reservation book's persistence, the lab. Every backend runs all of it: a backend
//! implements [`Backend`] and adds one `store_contract!` line at the end of this file
//! (SQLite and PostgreSQL do).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use testbay_engine::clock::ManualClock;
use testbay_engine::exec::reap::kill_run_leftovers;
use testbay_engine::lab;
use testbay_engine::measure::Measurement;
use testbay_engine::outcome::RunStatus;
use testbay_engine::plan::DutTarget;
use testbay_engine::reserve::{
    Book, Holder, ReservationMode, ReservationRequest, ResourceKind, ResourceSpec,
};
use testbay_engine::store::*;

use crate::support::{alive, demo_lab, T0};

/// How the suite gets stores of one backend.
pub trait Backend {
    type S: Store + 'static;
    /// A store on the data directory `dir` (created if need be), owned by this process.
    /// Two stores opened on one `dir` are two processes' views of one store.
    fn open(&self, dir: &Path) -> Self::S;
    /// The same, recording `owner` as the owner of the runs it inserts.
    fn open_owned_by(&self, dir: &Path, owner: RunOwner) -> Self::S;
}

/// The contract's tests for one backend, in a module named `$name`.
macro_rules! store_contract {
    ($name:ident, $backend:expr) => {
        mod $name {
            store_contract!(@tests $backend;
                task_results_and_sub_results_round_trip,
                unknown_run_is_a_typed_error,
                listing_filters_sorts_and_pages,
                a_search_text_over_the_bound_is_refused,
                closed_reads_are_refused_and_writes_go_on,
                recovery_marks_interrupted_and_kills_leftovers,
                finished_results_commit_with_the_next_start_or_on_demand,
                errored_runs_are_failed_runs,
                lab_is_stored,
                book_events_live_reservations_and_history_persist,
                book_inbox_carries_commands_and_answers,
                live_runs_are_unfinished_runs_of_live_owners,
                tallies_follow_every_write,
                keyset_pages_follow_the_listing,
                pack_library_keeps_versions_by_content_hash,
                a_batch_stores_what_single_finishes_store,
                paths_read_back_as_written,
            );
        }
    };
    (@tests $backend:expr; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                super::$test(&$backend);
            }
        )*
    };
}

pub fn new_run(id: &str, pack: &str, created: i64) -> NewRun {
    NewRun {
        id: id.into(),
        pack_name: pack.into(),
        pack_version: "1.0.0".into(),
        content_hash: "abc".into(),
        pack_dir: "/packs/x".into(),
        snapshot_dir: None,
        groups: vec!["smoke".into()],
        duts: vec![DutTarget {
            name: "stb-01".into(),
            model: Some("TP-4000".into()),
            rack: Some("rack-a".into()),
            slot: Some(1),
        }],
        ats: Some("rack-a".into()),
        params: json!({"process_limit": 2}),
        resource_mode: "all".into(),
        coverage_mode: "dut".into(),
        status: RunStatus::Queued,
        reason: None,
        created_ms: created,
        est_run_time: 10.0,
    }
}

pub fn rows(n: u32) -> Vec<NewTaskRow> {
    (0..n)
        .map(|i| NewTaskRow {
            seq: i,
            lane: Some("stb-01".into()),
            task: format!("task{i}"),
            kind: TaskKind::Test,
            group: Some("smoke".into()),
            description: String::new(),
            est_task_time: 5.0,
        })
        .collect()
}

pub fn done(result: &str, failure: bool) -> TaskFinish {
    TaskFinish {
        result: result.into(),
        failure,
        message: format!("{result} message"),
        finished_ms: T0 + 1000,
        started_ms: Some(T0),
        run_time: Some(1.0),
        run_time_delta: Some(-4.0),
        ..Default::default()
    }
}

fn task_results_and_sub_results_round_trip(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = b.open(dir.path());
    let ids = s.insert_run(&new_run("r1", "p", T0), &rows(3)).unwrap();
    s.set_run_status("r1", RunStatus::Running, None, T0)
        .unwrap();
    let paths = TaskPaths {
        task_dir: Some("/d/t0".into()),
        main_log: Some("/d/t0/main.log".into()),
        artifacts_dir: Some("/d/t0/artifacts".into()),
        ..Default::default()
    };
    s.task_phase_started(ids[0], "stb-01", "main", T0, Some(4242), &paths)
        .unwrap();
    let t = &s.run_tasks("r1").unwrap()[0];
    assert_eq!(t.state, StoredTaskState::Running);
    assert_eq!(t.pgid, Some(4242));
    assert_eq!(t.phase.as_deref(), Some("main"));

    let mut f = done("Passed", false);
    f.metadata = Some(json!({"fw": "1.2"}));
    f.main_ms = Some(900);
    f.sub_results = vec![
        NewSubResult {
            name: "a".into(),
            result: "Passed".into(),
            message: "ok".into(),
            ..Default::default()
        },
        NewSubResult {
            name: "b".into(),
            result: "Failed".into(),
            failure: true,
            metadata: Some(json!({"k": 1})),
            ..Default::default()
        },
    ];
    s.finish_task(ids[0], &f).unwrap();
    s.finish_tasks(&[
        (ids[1], done("Failed", true)),
        (ids[2], done("Skipped", false)),
    ])
    .unwrap();
    s.set_run_status("r1", RunStatus::Completed, None, T0 + 2000)
        .unwrap();

    let tasks = s.run_tasks("r1").unwrap();
    assert_eq!(tasks.len(), 3);
    let t0 = &tasks[0];
    assert_eq!(t0.state, StoredTaskState::Done);
    assert_eq!(t0.pgid, None, "pgid cleared when done");
    assert_eq!(t0.result.as_deref(), Some("Passed"));
    assert_eq!(t0.metadata, Some(json!({"fw": "1.2"})));
    assert_eq!(t0.run_time_delta, Some(-4.0));
    assert_eq!(t0.main_ms, Some(900));
    assert_eq!(t0.paths.main_log.as_deref(), Some("/d/t0/main.log"));
    assert_eq!(t0.sub_results.len(), 2);
    assert_eq!(t0.sub_results[1].name, "b");
    assert!(t0.sub_results[1].failure);
    assert_eq!(t0.sub_results[1].metadata, Some(json!({"k": 1})));
    let run = s.get_run("r1").unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.started_ms, Some(T0));
    assert_eq!(run.finished_ms, Some(T0 + 2000));
    assert_eq!(run.counts.done, 3);
    assert_eq!(run.counts.failures, 1);
    assert_eq!(run.counts.by_result.get("Skipped"), Some(&1));
    assert_eq!(run.duts[0].model.as_deref(), Some("TP-4000"));
    // The launch record comes back as it went in, status and all.
    let mut launched = new_run("r1", "p", T0);
    launched.status = RunStatus::Completed;
    assert_eq!(run.launch, launched);
}

fn unknown_run_is_a_typed_error(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = b.open(dir.path());
    assert!(matches!(s.get_run("nope"), Err(StoreError::RunNotFound(_))));
    assert!(matches!(
        s.run_tasks("nope"),
        Err(StoreError::RunNotFound(_))
    ));
    assert!(matches!(
        s.set_run_status("nope", RunStatus::Running, None, T0),
        Err(StoreError::RunNotFound(_))
    ));
    assert_eq!(
        s.get_run("nope").unwrap_err().code(),
        "run_not_found",
        "a stable code, whatever the backend"
    );
}

fn listing_filters_sorts_and_pages(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = b.open(dir.path());
    for i in 0..30 {
        let pack = if i % 3 == 0 {
            "net-regression"
        } else {
            "stb-smoke"
        };
        let mut r = new_run(&format!("r{i:02}"), pack, T0 + i as i64 * 1000);
        if i % 5 == 0 {
            r.duts[0].name = "stb-02".into();
            r.groups = vec!["regression".into()];
            r.ats = Some("rack-b".into());
        }
        let ids = s.insert_run(&r, &rows(2)).unwrap();
        let failed = i % 4 == 0;
        s.finish_task(
            ids[0],
            &done(if failed { "Failed" } else { "Passed" }, failed),
        )
        .unwrap();
        s.finish_task(ids[1], &done("Passed", false)).unwrap();
        s.set_run_status(&r.id, RunStatus::Completed, None, T0)
            .unwrap();
    }
    let all = s.list_runs(&RunQuery::default()).unwrap();
    assert_eq!(all.total, 30);
    assert_eq!(all.runs.len(), 30);
    assert_eq!(all.runs[0].id, "r29", "newest first");

    let page = s
        .list_runs(&RunQuery {
            limit: 7,
            offset: 7,
            ascending: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.total, 30);
    let ids: Vec<&str> = page.runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r07", "r08", "r09", "r10", "r11", "r12", "r13"]);

    let q = |q: RunQuery| s.list_runs(&q).unwrap();
    assert_eq!(
        q(RunQuery {
            pack: Some("net-regression".into()),
            ..Default::default()
        })
        .total,
        10
    );
    assert_eq!(
        q(RunQuery {
            dut: Some("stb-02".into()),
            ..Default::default()
        })
        .total,
        6
    );
    // A DUT pattern, and the search text finding runs by DUT name.
    let stb02 = q(RunQuery {
        dut: Some("stb-02".into()),
        ..Default::default()
    })
    .total;
    assert_eq!(
        q(RunQuery {
            dut: Some("stb-0*".into()),
            ..Default::default()
        })
        .total,
        q(RunQuery {
            dut: Some("stb-01".into()),
            ..Default::default()
        })
        .total
            + stb02
    );
    assert_eq!(
        q(RunQuery {
            text: Some("TB-02".into()),
            ..Default::default()
        })
        .total,
        stb02
    );
    assert_eq!(
        q(RunQuery {
            group: Some("regression".into()),
            ..Default::default()
        })
        .total,
        6
    );
    assert_eq!(
        q(RunQuery {
            ats: Some("rack-b".into()),
            ..Default::default()
        })
        .total,
        6
    );
    assert_eq!(
        q(RunQuery {
            failed_only: true,
            ..Default::default()
        })
        .total,
        8
    );
    assert_eq!(
        q(RunQuery {
            result: Some("Failed".into()),
            ..Default::default()
        })
        .total,
        8
    );
    assert_eq!(
        q(RunQuery {
            status: Some(RunStatus::Running),
            ..Default::default()
        })
        .total,
        0
    );
    assert_eq!(
        q(RunQuery {
            from_ms: Some(T0 + 10_000),
            to_ms: Some(T0 + 19_000),
            ..Default::default()
        })
        .total,
        10
    );
    assert_eq!(
        q(RunQuery {
            text: Some("r1".into()),
            ..Default::default()
        })
        .total,
        10
    );
    assert_eq!(
        q(RunQuery {
            text: Some("Failed mess".into()),
            ..Default::default()
        })
        .total,
        8
    );
    // LIKE wildcards in the search text are literal.
    assert_eq!(
        q(RunQuery {
            text: Some("%".into()),
            ..Default::default()
        })
        .total,
        0
    );
    let by_fail = q(RunQuery {
        sort: RunSort::Failures,
        limit: 1,
        ..Default::default()
    });
    assert_eq!(by_fail.runs[0].counts.failures, 1);
    let by_pack = q(RunQuery {
        sort: RunSort::Pack,
        ascending: true,
        limit: 1,
        ..Default::default()
    });
    assert_eq!(by_pack.runs[0].pack_name, "net-regression");
}

/// The search text is bounded (one `LIKE` over a long message is one SQLite step, which
/// no time limit stops): a longer one is refused, naming the key and the bound.
fn a_search_text_over_the_bound_is_refused(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = b.open(dir.path());
    let search = |text: &str| RunQuery {
        text: Some(text.into()),
        ..Default::default()
    };
    let long = "x".repeat(MAX_SEARCH_CHARS + 1);
    let err = s.list_runs(&search(&long)).unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidQuery { key: "text", .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("at most {MAX_SEARCH_CHARS}")),
        "{err}"
    );
    let at_bound = "é".repeat(MAX_SEARCH_CHARS);
    assert_eq!(s.list_runs(&search(&at_bound)).unwrap().total, 0);
}

/// After `close_reads` (a console about to exit) reads are refused with `Closing`;
/// writes go on and are there for the next store.
fn closed_reads_are_refused_and_writes_go_on(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = b.open(dir.path());
    s.set_read_limit(Duration::from_secs(1));
    let ids = s.insert_run(&new_run("r1", "p", T0), &rows(1)).unwrap();
    assert_eq!(s.get_run("r1").unwrap().counts.total, 1);
    s.close_reads();
    let err = s.get_run("r1").unwrap_err();
    assert!(matches!(err, StoreError::Closing), "{err}");
    assert_eq!(err.code(), "closing");
    assert!(matches!(
        s.list_runs(&RunQuery::default()),
        Err(StoreError::Closing)
    ));
    s.finish_task(ids[0], &done("Passed", false)).unwrap();
    s.set_run_status("r1", RunStatus::Completed, None, T0)
        .unwrap();
    drop(s);
    let s = b.open(dir.path());
    let run = s.get_run("r1").unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.counts.done, 1);
}

fn dead_pid() -> i32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id() as i32;
    c.wait().unwrap();
    pid
}

/// A run left `running` by a dead console: the store names it, the leftover processes
/// with its run id are killed (`exec::reap`), others spared; then it is interrupted,
/// unfinished tasks Aborted, finished ones intact.
fn recovery_marks_interrupted_and_kills_leftovers(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let dead_console = RunOwner {
        pid: dead_pid() as i64,
        ..RunOwner::this_process()
    };
    let s = b.open_owned_by(dir.path(), dead_console);
    let ids = s.insert_run(&new_run("rdead", "p", T0), &rows(4)).unwrap();
    s.set_run_status("rdead", RunStatus::Running, None, T0)
        .unwrap();
    s.finish_task(ids[0], &done("Passed", false)).unwrap();
    // A leftover task process of this run, and an unrelated one in another group.
    let mut ours = std::process::Command::new("sleep")
        .arg("300")
        .env("TESTBAY_RUN_ID", "rdead")
        .process_group(0)
        .spawn()
        .unwrap();
    // One that left its group (setsid) and whose group was never recorded.
    let mut escaped = std::process::Command::new("setsid")
        .args(["sleep", "300"])
        .env("TESTBAY_RUN_ID", "rdead")
        .spawn()
        .unwrap();
    let mut other = std::process::Command::new("sleep")
        .arg("300")
        .env("TESTBAY_RUN_ID", "some-other-run")
        .process_group(0)
        .spawn()
        .unwrap();
    // Each has become `sleep` (a process in the middle of its exec may not show its
    // environment yet).
    for pid in [ours.id(), escaped.id(), other.id()] {
        let comm = format!("/proc/{pid}/comm");
        let started = std::time::Instant::now();
        while std::fs::read_to_string(&comm).map_or(true, |c| c.trim() != "sleep") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{pid} never ran sleep"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    s.task_phase_started(
        ids[1],
        "stb-01",
        "main",
        T0,
        Some(ours.id() as i32),
        &TaskPaths::default(),
    )
    .unwrap();
    s.task_phase_started(
        ids[2],
        "stb-01",
        "main",
        T0,
        Some(other.id() as i32),
        &TaskPaths::default(),
    )
    .unwrap();
    drop(s);
    // A live run of this very process must be left alone.
    let s = b.open(dir.path());
    s.insert_run(&new_run("rlive", "p", T0), &rows(1)).unwrap();
    s.set_run_status("rlive", RunStatus::Running, None, T0)
        .unwrap();
    // What recovery does: the store names the runs, their processes are killed, the
    // store marks them.
    let interrupted = s.interrupted_runs().unwrap();
    assert_eq!(interrupted, vec!["rdead".to_string()]);
    let killed = kill_run_leftovers(&interrupted);
    let mut rep = s.mark_interrupted(&interrupted, T0 + 5000).unwrap();
    assert_eq!(rep.killed_processes, 0, "the store kills nothing");
    rep.killed_processes = killed;
    assert_eq!(rep.interrupted_runs, vec!["rdead".to_string()]);
    assert_eq!(rep.aborted_tasks, 3);
    assert_eq!(rep.killed_processes, 2);
    let _ = ours.wait();
    let _ = escaped.wait();
    std::thread::sleep(Duration::from_millis(50));
    assert!(alive(other.id() as i32), "unrelated process was killed");
    other.kill().unwrap();
    let _ = other.wait();

    let run = s.get_run("rdead").unwrap();
    assert_eq!(run.status, RunStatus::Interrupted);
    assert!(run.launch.reason.unwrap().contains("console"));
    assert_eq!(run.finished_ms, Some(T0 + 5000));
    let tasks = s.run_tasks("rdead").unwrap();
    assert_eq!(
        tasks[0].result.as_deref(),
        Some("Passed"),
        "finished task intact"
    );
    assert_eq!(tasks[0].message.as_deref(), Some("Passed message"));
    for t in &tasks[1..] {
        assert_eq!(t.result.as_deref(), Some("Aborted"));
        assert_eq!(t.state, StoredTaskState::Done);
        assert_eq!(t.pgid, None);
    }
    assert!(tasks[1]
        .message
        .as_deref()
        .unwrap()
        .contains("while this task was running"));
    assert!(tasks[3]
        .message
        .as_deref()
        .unwrap()
        .contains("before this task ran"));
    assert_eq!(s.get_run("rlive").unwrap().status, RunStatus::Running);
    // Idempotent: nothing left to recover, and marking again changes nothing stored.
    assert!(s.interrupted_runs().unwrap().is_empty());
    assert_eq!(
        s.mark_interrupted(&interrupted, T0 + 6000).unwrap(),
        RecoveryReport::default()
    );
    assert_eq!(s.get_run("rdead").unwrap().finished_ms, Some(T0 + 5000));
}

/// A finished task's result is visible through its own store at once, to another process
/// (another store on the same data) once committed: by the next task's start, by
/// `commit_pending_results`, or when the store closes. A failing finish undoes only itself.
fn finished_results_commit_with_the_next_start_or_on_demand(b: &impl Backend) {
    fn result_of(st: &dyn Store, i: usize) -> Option<String> {
        st.run_tasks("r1").unwrap()[i].result.clone()
    }
    let dir = tempfile::tempdir().unwrap();
    let s = b.open(dir.path());
    let ids = s.insert_run(&new_run("r1", "p", T0), &rows(4)).unwrap();
    let other = b.open(dir.path());

    s.finish_task(ids[0], &done("Passed", false)).unwrap();
    assert_eq!(
        result_of(&s, 0).as_deref(),
        Some("Passed"),
        "own reads see it"
    );
    // (that read committed it: any use of the store does)
    assert_eq!(result_of(&other, 0).as_deref(), Some("Passed"));

    // Waiting, then the next start commits it.
    s.finish_task(ids[1], &done("Failed", true)).unwrap();
    assert_eq!(result_of(&other, 1), None, "not committed yet");
    s.task_phase_started(ids[2], "stb-01", "main", T0, Some(1), &TaskPaths::default())
        .unwrap();
    assert_eq!(result_of(&other, 1).as_deref(), Some("Failed"));
    assert_eq!(
        other.run_tasks("r1").unwrap()[2].state,
        StoredTaskState::Running
    );

    // A finish that fails (a sub-result for a task row that does not exist) undoes its
    // own write only; the one waiting before it is committed later all the same.
    s.finish_task(ids[2], &done("Passed", false)).unwrap();
    let mut bad = done("Passed", false);
    bad.sub_results = vec![NewSubResult {
        name: "x".into(),
        result: "Passed".into(),
        ..Default::default()
    }];
    assert!(s.finish_task(ids[3] + 1000, &bad).is_err());
    s.commit_pending_results();
    assert_eq!(result_of(&other, 2).as_deref(), Some("Passed"));
    assert_eq!(result_of(&other, 3), None);

    // One promise at a time: the first caller arranges the commit, the others rely on it.
    assert!(s.promise_commit());
    assert!(!s.promise_commit());
    s.commit_now().unwrap();
    assert!(s.promise_commit(), "a commit ends the promise");
    s.commit_now().unwrap();

    // Closing the store commits what waits.
    s.finish_task(ids[3], &done("Skipped", false)).unwrap();
    drop(s);
    assert_eq!(result_of(&other, 3).as_deref(), Some("Skipped"));
}

/// An `errored` run (its record is not whole: results the store lacks) is a failure
/// whatever its stored results say: `failed_only` lists it, and its tasks without a
/// stored result count as failures (in the counts and the failures sort). A run that
/// merely ended with unfinished rows in another status is not affected.
fn errored_runs_are_failed_runs(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = b.open(dir.path());
    let run = |id: &str, at: i64, results: &[Option<(&str, bool)>], status: RunStatus| {
        let r = new_run(id, "stb-smoke", at);
        let ids = s.insert_run(&r, &rows(results.len() as u32)).unwrap();
        for (id, res) in ids.iter().zip(results) {
            if let Some((result, failure)) = res {
                s.finish_task(*id, &done(result, *failure)).unwrap();
            }
        }
        s.set_run_status(&r.id, status, None, at).unwrap();
    };
    run(
        "passed",
        T0,
        &[Some(("Passed", false))],
        RunStatus::Completed,
    );
    run(
        "failed",
        T0 + 1,
        &[Some(("Failed", true))],
        RunStatus::Completed,
    );
    // Two results were lost; the stored one passed.
    run(
        "lost",
        T0 + 2,
        &[Some(("Passed", false)), None, None],
        RunStatus::Errored,
    );
    // All stored, all passed, yet a write failed (a phase start): still errored.
    run(
        "whole",
        T0 + 3,
        &[Some(("Passed", false))],
        RunStatus::Errored,
    );
    // Stopped with a row never finished: not a failure by that alone.
    run("stopped", T0 + 4, &[None], RunStatus::Stopped);

    let failed = s
        .list_runs(&RunQuery {
            failed_only: true,
            ascending: true,
            ..Default::default()
        })
        .unwrap();
    let ids: Vec<&str> = failed.runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["failed", "lost", "whole"]);
    assert_eq!(failed.total, 3);
    let counts: Vec<(&str, u32, u32)> = failed
        .runs
        .iter()
        .map(|r| (r.id.as_str(), r.counts.done, r.counts.failures))
        .collect();
    assert_eq!(counts, [("failed", 1, 1), ("lost", 1, 2), ("whole", 1, 0)]);
    assert_eq!(s.get_run("stopped").unwrap().counts.failures, 0);

    let by_failures = s
        .list_runs(&RunQuery {
            sort: RunSort::Failures,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_failures.runs[0].id, "lost", "most failures first");
}

fn lab_is_stored(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(dir.path());
    let lab = lab::load(&demo_lab()).unwrap();
    store.save_lab(&lab, 42).unwrap();
    let (path, at, def) = store.stored_lab().unwrap().unwrap();
    assert_eq!((path.as_str(), at), (&*lab.file.to_string_lossy(), 42));
    assert_eq!(def, lab.def);
}

fn book_resources() -> Vec<ResourceSpec> {
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

fn operator(name: &str) -> Holder {
    Holder::Operator { name: name.into() }
}

/// Events written in batches come back in order; live reservations keep their latest
/// state; one released or expired leaves the live set for the history; a restarted book
/// gets the live ones, the next id and the next event number; pruning drops the old
/// history only.
fn book_events_live_reservations_and_history_persist(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(dir.path());
    let mut books = store.open_book_store().unwrap();
    let clock = ManualClock::new(T0);
    let mut book = Book::new(Arc::new(clock.clone()), book_resources()).unwrap();
    let long = book
        .request(ReservationRequest::new(
            "ir_blaster",
            operator("ann"),
            3_600_000,
        ))
        .unwrap()
        .id;
    book.claim(long).unwrap();
    let short = book
        .request(
            ReservationRequest::new("stream_server", operator("bob"), 1_000)
                .mode(ReservationMode::Shared),
        )
        .unwrap()
        .id;
    book.claim(short).unwrap();
    // One batch, then the next.
    books.write_events(&book.drain_events()).unwrap();
    clock.advance(60_000);
    book.tick();
    book.release(long).unwrap();
    let second = book.drain_events();
    assert!(!second.is_empty());
    books.write_events(&second).unwrap();
    books.write_events(&[]).unwrap();

    let events = books.events_since(0, 100).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no gaps, no duplicates"
    );
    assert_eq!(books.events_since(seqs[1], 1).unwrap()[0].seq, seqs[2]);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"claimed") && kinds.contains(&"released"),
        "{kinds:?}"
    );
    assert!(books.live_reservations().unwrap().is_empty());
    let past = books.history("stream_server", T0, T0 + 3_600_000).unwrap();
    let ended: Vec<_> = past.iter().map(|(_, r, v)| (v.id, r.as_str())).collect();
    assert_eq!(ended, vec![(short, "window_ended")]);
    assert_eq!(books.history("ir_blaster", T0, T0 + 1).unwrap().len(), 1);

    // A reservation that lives is restored with the ids and numbers that follow.
    let kept = book
        .request(ReservationRequest::new(
            "ir_blaster",
            operator("cy"),
            3_600_000,
        ))
        .unwrap()
        .id;
    books.write_events(&book.drain_events()).unwrap();
    let saved = books.load_book().unwrap();
    assert_eq!(
        saved.live.iter().map(|v| v.id).collect::<Vec<_>>(),
        vec![kept]
    );
    assert_eq!(saved.next_id, book.next_id());
    assert_eq!(saved.next_seq, book.next_seq());
    // Another handle (another process) sees the same.
    let ids: Vec<_> = store
        .open_book_store()
        .unwrap()
        .live_reservations()
        .unwrap()
        .iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(ids, vec![kept]);

    assert!(books.prune_events(T0 + 60_001).unwrap() > 0);
    assert!(books
        .history("stream_server", T0, T0 + 3_600_000)
        .unwrap()
        .is_empty());
    assert_eq!(books.load_book().unwrap().live.len(), 1, "live ones stay");
}

/// Another process posts a command; the owner reads it, answers it once; the poster
/// reads the answer; answered commands are pruned.
fn book_inbox_carries_commands_and_answers(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(dir.path());
    let owner = store.open_book_store().unwrap();
    let client = store.open_book_store().unwrap();
    let first = client.inbox_post(T0, r#"{"cmd":"one"}"#).unwrap();
    let second = client.inbox_post(T0 + 1, r#"{"cmd":"two"}"#).unwrap();
    assert_eq!(
        owner.inbox_pending().unwrap(),
        vec![
            (first, r#"{"cmd":"one"}"#.to_string()),
            (second, r#"{"cmd":"two"}"#.to_string())
        ]
    );
    assert_eq!(client.inbox_result(first).unwrap(), None);
    owner
        .inbox_answer(first, T0 + 10, r#"{"reply":"ok"}"#)
        .unwrap();
    assert_eq!(
        client.inbox_result(first).unwrap().as_deref(),
        Some(r#"{"reply":"ok"}"#)
    );
    assert_eq!(
        owner
            .inbox_pending()
            .unwrap()
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        vec![second]
    );
    assert_eq!(owner.inbox_prune(T0 + 5).unwrap(), 0, "answered later");
    assert_eq!(owner.inbox_prune(T0 + 11).unwrap(), 1);
    assert_eq!(client.inbox_result(first).unwrap(), None);
    assert_eq!(owner.inbox_pending().unwrap().len(), 1, "unanswered stays");
}

/// The runs that may hold something in the book: unfinished, of a live owner.
fn live_runs_are_unfinished_runs_of_live_owners(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let dead_console = RunOwner {
        pid: dead_pid() as i64,
        ..RunOwner::this_process()
    };
    let dead = b.open_owned_by(dir.path(), dead_console);
    dead.insert_run(&new_run("orphan", "p", T0), &rows(1))
        .unwrap();
    dead.set_run_status("orphan", RunStatus::Running, None, T0)
        .unwrap();
    drop(dead);
    let s = b.open(dir.path());
    for (id, status) in [
        ("queued", RunStatus::Queued),
        ("running", RunStatus::Running),
        ("done", RunStatus::Completed),
    ] {
        s.insert_run(&new_run(id, "p", T0), &rows(1)).unwrap();
        s.set_run_status(id, status, None, T0).unwrap();
    }
    let mut live: Vec<String> = s
        .open_book_store()
        .unwrap()
        .live_runs()
        .unwrap()
        .into_iter()
        .collect();
    live.sort();
    assert_eq!(live, ["queued", "running"]);
}

store_contract!(sqlite, crate::store::SqliteBackend);
store_contract!(postgres, crate::store_pg::PgBackend);

/// The per-run tallies a listing filters, sorts and shows follow every write of a task
/// result: planned, finished, finished again, aborted by recovery, removed with the run.
fn tallies_follow_every_write(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let dead_console = RunOwner {
        pid: dead_pid() as i64,
        ..RunOwner::this_process()
    };
    let s = b.open_owned_by(dir.path(), dead_console);
    let ids = s.insert_run(&new_run("ra", "p", T0), &rows(5)).unwrap();
    s.insert_run(&new_run("rb", "p", T0 + 1), &rows(1)).unwrap();
    let counts = |id: &str| s.get_run(id).unwrap().counts;
    let c = counts("ra");
    assert_eq!((c.total, c.done, c.failures, c.aborted), (5, 0, 0, 0));
    assert!(c.by_result.is_empty());

    s.finish_task(ids[0], &done("Failed", true)).unwrap();
    s.finish_task(ids[1], &done("Passed", false)).unwrap();
    s.finish_task(ids[2], &done("Failed", true)).unwrap();
    let c = counts("ra");
    assert_eq!((c.total, c.done, c.failures, c.aborted), (5, 3, 2, 0));
    assert_eq!(c.by_result.get("Failed"), Some(&2));
    assert_eq!(c.by_result.get("Passed"), Some(&1));
    // Finished again (a retry's result replaces the first): the tallies move with it.
    s.finish_task(ids[2], &done("Passed", false)).unwrap();
    let c = counts("ra");
    assert_eq!((c.total, c.done, c.failures), (5, 3, 1));
    assert_eq!(c.by_result.get("Failed"), Some(&1));
    assert_eq!(c.by_result.get("Passed"), Some(&2));

    let listed = |q: RunQuery| -> Vec<String> {
        s.list_runs(&q)
            .unwrap()
            .runs
            .into_iter()
            .map(|r| r.launch.id)
            .collect()
    };
    let failed = RunQuery {
        result: Some("Failed".into()),
        ..Default::default()
    };
    assert_eq!(listed(failed.clone()), ["ra"]);
    let failed_only = RunQuery {
        failed_only: true,
        ..Default::default()
    };
    assert_eq!(listed(failed_only.clone()), ["ra"]);
    s.finish_task(ids[0], &done("Passed", false)).unwrap();
    assert!(listed(failed.clone()).is_empty());
    assert!(listed(failed_only.clone()).is_empty());

    // Recovery aborts the two rows left: aborted, not failed, yet marked failed.
    s.mark_interrupted(&["ra".into()], T0 + 5000).unwrap();
    let run = s.get_run("ra").unwrap();
    let c = &run.counts;
    assert_eq!((c.total, c.done, c.failures, c.aborted), (5, 5, 0, 2));
    assert_eq!(c.by_result.get("Aborted"), Some(&2));
    assert_eq!(
        listed(RunQuery {
            result: Some("Aborted".into()),
            ..Default::default()
        }),
        ["ra"]
    );
    assert_eq!(listed(failed_only), ["ra"]);
    let by_failures = listed(RunQuery {
        sort: RunSort::Failures,
        ..Default::default()
    });
    assert_eq!(
        by_failures,
        ["rb", "ra"],
        "no failures either way: newest first"
    );

    // A page past the end still counts the runs.
    let past = s
        .list_runs(&RunQuery {
            offset: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((past.total, past.runs.len()), (2, 0));

    // Removed with its run: the other run's tallies are untouched.
    let retention = s.open_retention_store().unwrap();
    assert!(retention.remove_run("ra").unwrap());
    assert_eq!(listed(RunQuery::default()), ["rb"]);
    let c = counts("rb");
    assert_eq!((c.total, c.done), (1, 0));
}

/// Paging after a run gives the pages offsets give, newest or oldest first, with the
/// filters and the total of every matching run; runs created at one millisecond are
/// neither skipped nor repeated.
fn keyset_pages_follow_the_listing(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = b.open(dir.path());
    for i in 0..23 {
        let pack = if i % 3 == 0 { "net" } else { "stb" };
        // Pairs of runs share their creation time.
        s.insert_run(
            &new_run(&format!("r{i:02}"), pack, T0 + (i / 2) as i64),
            &rows(1),
        )
        .unwrap();
    }
    let ids = |p: &RunPage| -> Vec<String> { p.runs.iter().map(|r| r.launch.id.clone()).collect() };
    for (pack, ascending) in [(None, false), (None, true), (Some("stb"), false)] {
        let base = RunQuery {
            pack: pack.map(Into::into),
            ascending,
            limit: 5,
            ..Default::default()
        };
        let all = s
            .list_runs(&RunQuery {
                limit: 100,
                ..base.clone()
            })
            .unwrap();
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = s
                .list_runs(&RunQuery {
                    after: after.clone(),
                    ..base.clone()
                })
                .unwrap();
            assert_eq!(page.total, all.total, "{pack:?} {ascending}");
            if page.runs.is_empty() {
                break;
            }
            after = page.runs.last().map(|r| r.launch.id.clone());
            paged.extend(ids(&page));
        }
        assert_eq!(paged, ids(&all), "{pack:?} ascending {ascending}");
    }
    let err = s
        .list_runs(&RunQuery {
            after: Some("r05".into()),
            sort: RunSort::Pack,
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.code(), "invalid_query");
    let gone = s
        .list_runs(&RunQuery {
            after: Some("nope".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!((gone.total, gone.runs.len()), (23, 0));
}

/// The lab's pack library: a name and version stored once (the same content again
/// changes nothing, other content is a conflict), one archive per content hash shared by
/// the versions that hold it, versions listed by name and newest push first, published;
/// a second handle on the store (another server) sees the same library.
fn pack_library_keeps_versions_by_content_hash(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = b.open(dir.path());
    let lib = s.open_pack_store().unwrap();
    let pack =
        |name: &str, version: &str, hash: &str, owner: &str, private: bool, at: i64| StoredPack {
            name: name.into(),
            version: version.into(),
            content_hash: hash.into(),
            owner: owner.into(),
            private,
            pushed_ms: at,
            archive_bytes: 0,
        };
    let one = b"archive one".to_vec();
    let two = b"archive two, longer".to_vec();
    let a1 = pack("stb", "1.0", "h1", "ann", false, T0);
    match lib.put_pack(&a1, &one).unwrap() {
        PutPack::Added(p) => assert_eq!(
            p,
            StoredPack {
                archive_bytes: one.len() as i64,
                ..a1.clone()
            }
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(lib.put_pack(&pack("stb", "1.0", "h1", "bob", true, T0 + 5), &one).unwrap(),
        PutPack::Unchanged(p) if p.owner == "ann" && !p.private)
    );
    assert!(
        matches!(lib.put_pack(&pack("stb", "1.0", "h2", "bob", false, T0 + 6), &two).unwrap(),
        PutPack::Conflict(p) if p.content_hash == "h1")
    );
    // A new version with the content of the first: one archive row serves both.
    assert!(matches!(
        lib.put_pack(&pack("stb", "1.1", "h1", "ann", false, T0 + 10), &one)
            .unwrap(),
        PutPack::Added(_)
    ));
    assert!(matches!(
        lib.put_pack(&pack("net", "0.1", "h2", "bob", true, T0 + 20), &two)
            .unwrap(),
        PutPack::Added(_)
    ));
    let listed: Vec<(String, String, bool)> = lib
        .packs()
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.version, p.private))
        .collect();
    let row = |n: &str, v: &str, private| (n.to_string(), v.to_string(), private);
    assert_eq!(
        listed,
        [
            row("net", "0.1", true),
            row("stb", "1.1", false),
            row("stb", "1.0", false)
        ]
    );
    assert_eq!(lib.pack_archive("h1").unwrap(), Some(one));
    assert_eq!(lib.pack_archive("h2").unwrap(), Some(two));
    assert_eq!(lib.pack_archive("h3").unwrap(), None);

    assert!(lib.publish_pack("net", "0.1").unwrap());
    assert!(!lib.publish_pack("net", "9.9").unwrap());
    let other = b.open(dir.path());
    let seen = other.open_pack_store().unwrap().packs().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|p| !p.private), "{seen:?}");
}

/// Task `k`'s result, the same for every run: sub-results with measurements, its own
/// measurements (one out of its limits for task 1), attempts for task 2.
fn rich_finish(k: usize) -> TaskFinish {
    let m = |name: &str, value: f64| Measurement {
        name: name.into(),
        value,
        units: Some("dB".into()),
        low: Some(20.0),
        high: Some(40.0),
        comparison: None,
    };
    let failed = k == 1;
    TaskFinish {
        sub_results: vec![
            NewSubResult {
                name: "ch1".into(),
                result: "Passed".into(),
                measurements: vec![m("snr_db", 30.0 + k as f64)],
                ..Default::default()
            },
            NewSubResult {
                name: "ch2".into(),
                result: if failed { "Failed" } else { "Passed" }.into(),
                failure: failed,
                metadata: Some(json!({"k": k})),
                ..Default::default()
            },
        ],
        measurements: vec![m("power_db", if failed { 10.0 } else { 25.0 })],
        attempts: if k == 2 {
            vec![AttemptRecord {
                attempt: 1,
                result: "Failed".into(),
                failure: true,
                message: "first try".into(),
                started_ms: Some(T0),
                finished_ms: T0 + 500,
                exit_code: Some(1),
                signal: None,
                paths: TaskPaths::default(),
            }]
        } else {
            Vec::new()
        },
        flaky: k == 2,
        ..done(if failed { "Failed" } else { "Passed" }, failed)
    }
}

/// The batch path (`finish_tasks`) stores exactly what `finish_task` one at a time does
/// (rows, sub-results, attempts, measurements, tallies, yield), across the chunks a
/// backend may split a batch into (67 rows), and a batch with a bad item stores nothing
/// of it.
fn a_batch_stores_what_single_finishes_store(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = b.open(dir.path());
    let one = s.insert_run(&new_run("one", "p", T0), &rows(67)).unwrap();
    let all = s
        .insert_run(&new_run("all", "p", T0 + 1), &rows(67))
        .unwrap();
    for (k, &id) in one.iter().enumerate() {
        s.finish_task(id, &rich_finish(k)).unwrap();
    }
    s.commit_now().unwrap();
    let batch: Vec<(i64, TaskFinish)> = all
        .iter()
        .enumerate()
        .map(|(k, &id)| (id, rich_finish(k)))
        .collect();
    s.finish_tasks(&batch).unwrap();

    let strip = |run: &str| {
        let mut tasks = s.run_tasks(run).unwrap();
        for t in &mut tasks {
            t.id = 0;
            t.run_id = String::new();
        }
        tasks
    };
    let (single, batched) = (strip("one"), strip("all"));
    assert_eq!(batched, single);
    assert_eq!(batched[0].sub_results[0].measurements.len(), 1);
    assert_eq!(batched[1].measurements[0].passed, Some(false));
    assert_eq!(batched[2].attempts.len(), 1);
    let (r1, r2) = (s.get_run("one").unwrap(), s.get_run("all").unwrap());
    assert_eq!(r2.counts, r1.counts);
    assert_eq!(r2.counts.failures, 1);
    assert_eq!((r2.counts.total, r2.counts.done), (67, 67));
    assert_eq!(batched[66].sub_results[1].metadata, Some(json!({"k": 66})));
    let series = s
        .measurement_history(&MeasurementQuery {
            pack: "p".into(),
            task: "task0".into(),
            sub_result: Some("ch1".into()),
            name: "snr_db".into(),
            dut_model: None,
            limit: 10,
        })
        .unwrap();
    assert_eq!(series.len(), 2, "one point per run: {series:?}");
    let y = s.measurement_yield("p", 10).unwrap();
    assert_eq!(y.len(), 1);
    assert_eq!(
        (y[0].runs, y[0].passed_runs),
        (2, 0),
        "task1 fails in both runs"
    );

    // An occurrence given twice in one batch: what two single finishes in order store.
    let two = s
        .insert_run(&new_run("two", "p", T0 + 3), &rows(1))
        .unwrap();
    let twice = s
        .insert_run(&new_run("twice", "p", T0 + 4), &rows(1))
        .unwrap();
    // The first finish names a lane, the second does not: it keeps the first's.
    let on_lane = TaskFinish {
        lane: Some("stb-9".into()),
        ..rich_finish(0)
    };
    s.finish_task(two[0], &on_lane).unwrap();
    s.finish_task(two[0], &rich_finish(1)).unwrap();
    s.commit_now().unwrap();
    s.finish_tasks(&[(twice[0], on_lane.clone()), (twice[0], rich_finish(1))])
        .unwrap();
    assert_eq!(strip("twice")[0].lane.as_deref(), Some("stb-9"));
    assert_eq!(strip("twice"), strip("two"));
    assert_eq!(
        s.get_run("twice").unwrap().counts,
        s.get_run("two").unwrap().counts
    );

    // A batch with an unknown occurrence (its sub-results refused) stores nothing.
    let bad = s
        .insert_run(&new_run("bad", "p", T0 + 2), &rows(1))
        .unwrap();
    s.finish_tasks(&[
        (bad[0], rich_finish(0)),
        (bad[0] + 1_000_000, rich_finish(0)),
    ])
    .unwrap_err();
    let t = &s.run_tasks("bad").unwrap()[0];
    assert_eq!(t.state, StoredTaskState::Pending);
    assert!(t.sub_results.is_empty() && t.measurements.is_empty());
    assert_eq!(s.get_run("bad").unwrap().counts.done, 0);
    // After the failed batch, a single finish is tallied still.
    s.finish_task(bad[0], &done("Failed", true)).unwrap();
    s.commit_now().unwrap();
    let c = s.get_run("bad").unwrap().counts;
    assert_eq!((c.total, c.done, c.failures), (1, 1, 1));
}

/// Paths of a task and its attempts read back as written, whether under the run's
/// folder (stored relative to it) or not, through a phase's start, a single finish and
/// the batch path.
fn paths_read_back_as_written(b: &impl Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = b.open(dir.path());
    let mut run = new_run("rp", "p", T0);
    run.snapshot_dir = Some("/data/runs/rp/pack".into());
    let ids = s.insert_run(&run, &rows(3)).unwrap();
    let under = |t: &str| TaskPaths {
        task_dir: Some(format!("/data/runs/rp/stb-01/{t}")),
        setup_log: None,
        main_log: Some(format!("/data/runs/rp/stb-01/{t}/main.log")),
        teardown_log: Some("/elsewhere/teardown.log".into()),
        artifacts_dir: Some(format!("/data/runs/rp/stb-01/{t}/artifacts")),
    };
    s.task_phase_started(ids[0], "stb-01", "main", T0, Some(7), &under("t0"))
        .unwrap();
    assert_eq!(s.run_tasks("rp").unwrap()[0].paths, under("t0"));
    let mut f = done("Passed", false);
    f.paths = TaskPaths {
        main_log: Some("/data/runs/rp/stb-01/t0/attempt-2/main.log".into()),
        ..Default::default()
    };
    f.attempts = vec![AttemptRecord {
        attempt: 1,
        result: "Failed".into(),
        failure: true,
        message: String::new(),
        started_ms: Some(T0),
        finished_ms: T0 + 1,
        exit_code: Some(1),
        signal: None,
        paths: under("t0"),
    }];
    s.finish_task(ids[0], &f).unwrap();
    let mut g = done("Passed", false);
    g.paths = under("t1");
    s.finish_tasks(&[(ids[1], g)]).unwrap();
    let tasks = s.run_tasks("rp").unwrap();
    let mut want0 = under("t0");
    want0.main_log = Some("/data/runs/rp/stb-01/t0/attempt-2/main.log".into());
    assert_eq!(
        tasks[0].paths, want0,
        "a finish's paths replace those given"
    );
    assert_eq!(tasks[0].attempts[0].paths, under("t0"));
    assert_eq!(tasks[1].paths, under("t1"));
    assert_eq!(tasks[2].paths, TaskPaths::default());
    // A run without a snapshot keeps its paths as they are.
    let ids = s.insert_run(&new_run("rq", "p", T0 + 1), &rows(1)).unwrap();
    let mut h = done("Passed", false);
    h.paths = under("t0");
    s.finish_task(ids[0], &h).unwrap();
    assert_eq!(s.run_tasks("rq").unwrap()[0].paths, under("t0"));
}
