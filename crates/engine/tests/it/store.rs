//! The store on a real SQLite file: migrations, runs, task results, listing, recovery.

use std::os::unix::process::CommandExt;
use std::time::Duration;

use serde_json::json;
use testbay_engine::outcome::RunStatus;
use testbay_engine::plan::DutTarget;
use testbay_engine::store::*;

const T0: i64 = 1_800_000_000_000;

fn new_run(id: &str, pack: &str, created: i64) -> NewRun {
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

fn rows(n: u32) -> Vec<NewTaskRow> {
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

fn done(result: &str, failure: bool) -> TaskFinish {
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

#[test]
fn migrations_apply_once_and_reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).unwrap();
    let v = s.schema_version().unwrap();
    assert_eq!(v as usize, migrations::MIGRATIONS.len());
    s.insert_run(&new_run("r1", "p", T0), &rows(2)).unwrap();
    drop(s);
    let s = Store::open_in(dir.path()).unwrap();
    assert_eq!(s.schema_version().unwrap(), v);
    assert_eq!(s.get_run("r1").unwrap().counts.total, 2);
    let mode: String = rusqlite::Connection::open(dir.path().join("testbay.db"))
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn newer_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("testbay.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE keep (x); INSERT INTO keep VALUES (42); PRAGMA user_version = 999;",
        )
        .unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::TooNew { found: 999, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer"));
    let c = rusqlite::Connection::open(&path).unwrap();
    let x: i64 = c.query_row("SELECT x FROM keep", [], |r| r.get(0)).unwrap();
    assert_eq!(x, 42);
}

#[test]
fn task_results_and_sub_results_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).unwrap();
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
}

#[test]
fn unknown_run_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).unwrap();
    assert!(matches!(s.get_run("nope"), Err(StoreError::RunNotFound(_))));
    assert!(matches!(
        s.run_tasks("nope"),
        Err(StoreError::RunNotFound(_))
    ));
    assert!(matches!(
        s.set_run_status("nope", RunStatus::Running, None, T0),
        Err(StoreError::RunNotFound(_))
    ));
}

#[test]
fn listing_filters_sorts_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).unwrap();
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

fn dead_pid() -> i32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id() as i32;
    c.wait().unwrap();
    pid
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(
            s[s.rfind(')').unwrap() + 2..].chars().next(),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

/// A run left `running` by a dead console: interrupted, unfinished tasks Aborted, finished
/// ones intact, leftover processes with its run id killed, others spared.
#[test]
fn recovery_marks_interrupted_and_kills_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).unwrap();
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
    // A live run of this very process must be left alone.
    s.insert_run(&new_run("rlive", "p", T0), &rows(1)).unwrap();
    s.set_run_status("rlive", RunStatus::Running, None, T0)
        .unwrap();
    drop(s);
    {
        let c = rusqlite::Connection::open(dir.path().join("testbay.db")).unwrap();
        c.execute(
            "UPDATE runs SET owner_pid = ?1 WHERE id = 'rdead'",
            [dead_pid()],
        )
        .unwrap();
    }
    let s = Store::open_in(dir.path()).unwrap();
    let rep = s.recover_interrupted(T0 + 5000).unwrap();
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
    assert!(run.reason.unwrap().contains("console"));
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
    // Idempotent.
    assert_eq!(
        s.recover_interrupted(T0 + 6000).unwrap(),
        RecoveryReport::default()
    );
}

/// A finished task's result is visible through its own store at once, to another process
/// (another connection) once committed: by the next task's start, by
/// `commit_pending_results`, or when the store closes. A failing finish undoes only itself.
#[test]
fn finished_results_commit_with_the_next_start_or_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).unwrap();
    let ids = s.insert_run(&new_run("r1", "p", T0), &rows(4)).unwrap();
    let other = Store::open_in(dir.path()).unwrap();
    let result_of = |st: &Store, i: usize| st.run_tasks("r1").unwrap()[i].result.clone();

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

    // Closing the store commits what waits.
    s.finish_task(ids[3], &done("Skipped", false)).unwrap();
    drop(s);
    assert_eq!(result_of(&other, 3).as_deref(), Some("Skipped"));
}

/// An `errored` run (its record is not whole: results the store lacks) is a failure
/// whatever its stored results say: `failed_only` lists it, and its tasks without a
/// stored result count as failures (in the counts and the failures sort). A run that
/// merely ended with unfinished rows in another status is not affected.
#[test]
fn errored_runs_are_failed_runs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).unwrap();
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
