//! The store under concurrent use, on a real SQLite file: processes' worth of connections
//! opening one fresh data dir at once, reads beside a slow read and beside a waiting
//! write, the read time limit, the `result=` filter's plan.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use testbay_engine::outcome::RunStatus;
use testbay_engine::plan::DutTarget;
use testbay_engine::store::sqlite::migrations;
use testbay_engine::store::*;

use crate::support::T0;

fn new_run(id: &str) -> NewRun {
    NewRun {
        id: id.into(),
        pack_name: "p".into(),
        pack_version: "1".into(),
        content_hash: "h".into(),
        pack_dir: "/packs/p".into(),
        snapshot_dir: None,
        groups: vec!["smoke".into()],
        duts: vec![DutTarget {
            name: "stb-01".into(),
            model: None,
            rack: None,
            slot: None,
        }],
        ats: None,
        params: serde_json::json!({}),
        resource_mode: "all".into(),
        coverage_mode: "dut".into(),
        status: RunStatus::Queued,
        reason: None,
        created_ms: T0,
        est_run_time: 1.0,
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
            est_task_time: 1.0,
        })
        .collect()
}

/// A search text that costs SQLite seconds on [`store_with_a_slow_search`]'s messages: at
/// each start position `LIKE` compares up to 200 characters (the longest search text),
/// for each of 4,000 messages of 5,000 characters. A real slow query from a short
/// request, as an operator's search can be; SQLite can stop it between two rows.
fn slow_needle() -> String {
    format!("{}b", "a".repeat(MAX_SEARCH_CHARS - 1))
}

/// A store with run `slow` of 4,000 tasks whose messages are 5,000 `a`s each, and run
/// `quick`.
fn store_with_a_slow_search(dir: &Path) -> Arc<dyn Store> {
    let s = SqliteStore::open_in(dir).unwrap();
    let ids = s.insert_run(&new_run("slow"), &rows(4000)).unwrap();
    let done: Vec<(i64, TaskFinish)> = ids
        .iter()
        .map(|&id| {
            let f = TaskFinish {
                result: "Failed".into(),
                failure: true,
                message: "a".repeat(5000),
                finished_ms: T0,
                ..Default::default()
            };
            (id, f)
        })
        .collect();
    s.finish_tasks(&done).unwrap();
    s.insert_run(&new_run("quick"), &rows(3)).unwrap();
    Arc::new(s)
}

fn search(text: &str) -> RunQuery {
    RunQuery {
        text: Some(text.into()),
        ..Default::default()
    }
}

/// Many connections (each thread its own store, as each process has) open one fresh data
/// dir at the same moment, again and again: every one opens it, on the current schema.
/// (Before the open lock, two processes failed 15 times in 20 with "migration 0 ... table
/// runs already exists".)
#[test]
fn stores_opening_a_fresh_data_dir_at_once_all_succeed() {
    const AT_ONCE: usize = 6;
    for round in 0..15 {
        let dir = tempfile::tempdir().unwrap();
        let start = Arc::new(Barrier::new(AT_ONCE));
        let openers: Vec<_> = (0..AT_ONCE)
            .map(|_| {
                let (data, start) = (dir.path().join("data"), start.clone());
                thread::spawn(move || {
                    start.wait();
                    let s = SqliteStore::open_in(&data)?;
                    s.insert_run(&new_run(&uuid::Uuid::new_v4().to_string()), &rows(1))?;
                    s.schema_version()
                })
            })
            .collect();
        for o in openers {
            match o.join().unwrap() {
                Ok(v) => assert_eq!(v as usize, migrations::MIGRATIONS.len()),
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        let s = SqliteStore::open_in(&dir.path().join("data")).unwrap();
        assert_eq!(
            s.list_runs(&RunQuery::default()).unwrap().total as usize,
            AT_ONCE,
            "every opener's run is stored"
        );
    }
}

/// `result=`, `failed_only` and `sort=failures` read the per-run tallies kept at write
/// time, never task_results (walking each run's rows was quadratic: 96 s at 10,000
/// runs); the count comes with the page, in one query.
#[test]
fn result_and_failure_filters_read_the_runs_tallies() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    let no_task_rows = |plan: &[String]| {
        let text = plan.join("\n");
        assert!(!text.contains("task_results"), "{text}");
        assert!(
            !plan.iter().any(|l| l.contains("SCAN t ") || l == "SCAN t"),
            "{text}"
        );
    };
    let result = s
        .list_runs_plan(&RunQuery {
            result: Some("Failed".into()),
            ..Default::default()
        })
        .unwrap();
    no_task_rows(&result);
    assert!(
        result
            .iter()
            .any(|l| l.contains("SEARCH x USING PRIMARY KEY (run_id=? AND result=?)")),
        "{result:#?}"
    );
    // The page walks the runs by creation (no sort), and the count reads the tallies'
    // index on result, not the runs.
    assert!(
        result
            .iter()
            .any(|l| l.starts_with("SCAN r USING INDEX runs_created_id")),
        "{result:#?}"
    );
    assert!(
        !result.iter().any(|l| l.contains("TEMP B-TREE")),
        "{result:#?}"
    );
    assert!(
        result.iter().any(|l| l.contains(
            "SEARCH run_result_tallies USING COVERING INDEX run_result_tallies_result (result=?)"
        )),
        "{result:#?}"
    );
    let failed = s
        .list_runs_plan(&RunQuery {
            failed_only: true,
            sort: RunSort::Failures,
            ..Default::default()
        })
        .unwrap();
    no_task_rows(&failed);
    assert_eq!(
        failed.iter().filter(|l| l.starts_with("SCAN r")).count(),
        1,
        "{failed:#?}"
    );
}

/// `failed_only` with a pack walks that pack's failed runs (the partial index
/// `runs_failed`), not every run of the pack.
#[test]
fn failed_runs_of_a_pack_are_read_from_their_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    let plan = s
        .list_runs_plan(&RunQuery {
            pack: Some("p".into()),
            failed_only: true,
            dut: Some("stb-01".into()),
            text: Some("channel 0".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(
        plan.iter()
            .any(|l| l.starts_with("SEARCH r USING INDEX runs_failed (pack_name=?)")),
        "{plan:#?}"
    );
    // The DUT filter reads the runs' ids and DUT lists from the index: a run's row is
    // read only once it passed (a thousand lookups fewer for one DUT at 10,000 runs).
    let c = rusqlite::Connection::open(s.path()).unwrap();
    let columns: Vec<String> = c
        .prepare("SELECT name FROM pragma_index_info('runs_failed') ORDER BY seqno")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(columns, ["pack_name", "created_ms", "id", "duts_json"]);
}

/// A page after a run starts from the index on creation at that run, whatever its
/// depth.
#[test]
fn keyset_pages_start_at_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    let plan = s
        .list_runs_plan(&RunQuery {
            after: Some("r1".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(
        plan.iter()
            .any(|l| l.starts_with("SEARCH r USING INDEX runs_created_id (created_ms<?)")),
        "{plan:#?}"
    );
    // Only runs created at one millisecond are sorted (by id), not the whole listing.
    assert!(
        !plan.iter().any(|l| l == "USE TEMP B-TREE FOR ORDER BY"),
        "{plan:#?}"
    );
}

/// `sort=failures` walks the index on the failures, and the last page of the listing
/// is the first of the reverse order: neither sorts the runs nor walks them all.
#[test]
fn failures_sort_and_deep_pages_walk_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    let no_sort = |plan: &[String]| {
        assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "{plan:#?}");
    };
    let failures = s
        .list_runs_plan(&RunQuery {
            sort: RunSort::Failures,
            ..Default::default()
        })
        .unwrap();
    assert!(
        failures
            .iter()
            .any(|l| l.contains("USING INDEX runs_failures")),
        "{failures:#?}"
    );
    no_sort(&failures);
    let deep = s
        .list_runs_plan(&RunQuery {
            offset: 9_950,
            ..Default::default()
        })
        .unwrap();
    assert!(
        deep.iter()
            .any(|l| l.contains("USING INDEX runs_created_id")),
        "{deep:#?}"
    );
    no_sort(&deep);
}

/// The last pages of the listing (read from the end) hold what walking from the start
/// gives, in the same order, whatever the direction.
#[test]
fn pages_read_from_the_end_match_pages_read_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    // 23 runs, three created at one millisecond (their order is by id).
    for i in 0..23 {
        let created = T0 + (i.min(20) as i64) * 1000;
        let mut run = new_run(&format!("r{i:02}"));
        run.created_ms = created;
        s.insert_run(&run, &rows(1)).unwrap();
    }
    for ascending in [false, true] {
        let all: Vec<String> = s
            .list_runs(&RunQuery {
                limit: 100,
                ascending,
                ..Default::default()
            })
            .unwrap()
            .runs
            .into_iter()
            .map(|r| r.launch.id)
            .collect();
        assert_eq!(all.len(), 23);
        for offset in [5, 12, 15, 20, 22, 23, 30] {
            let page = s
                .list_runs(&RunQuery {
                    limit: 5,
                    offset,
                    ascending,
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(page.total, 23);
            let ids: Vec<String> = page.runs.into_iter().map(|r| r.launch.id).collect();
            let want: Vec<String> = all.iter().skip(offset as usize).take(5).cloned().collect();
            assert_eq!(ids, want, "offset {offset}, ascending {ascending}");
        }
    }
}

/// A write waiting for the database (another process holds the write lock) holds the
/// store's writer; reads go on beside it and answer at once.
#[test]
fn reads_do_not_wait_for_a_write_that_waits() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SqliteStore::open_in(dir.path()).unwrap());
    s.insert_run(&new_run("r1"), &rows(2)).unwrap();
    let other = rusqlite::Connection::open(dir.path().join("testbay.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let writer = {
        let s = s.clone();
        thread::spawn(move || s.set_run_status("r1", RunStatus::Running, None, T0))
    };
    thread::sleep(Duration::from_millis(300));
    assert!(!writer.is_finished(), "the write waits for the lock");

    assert_eq!(s.get_run("r1").unwrap().status, RunStatus::Queued);
    assert_eq!(s.list_runs(&RunQuery::default()).unwrap().total, 1);
    assert_eq!(s.run_tasks("r1").unwrap().len(), 2);
    assert!(
        !writer.is_finished(),
        "the reads answered while the write still waited"
    );

    other.execute_batch("COMMIT").unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(s.get_run("r1").unwrap().status, RunStatus::Running);
}

/// A slow search on one thread; other reads on the store answer while it runs.
#[test]
fn a_read_does_not_wait_behind_a_slow_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_with_a_slow_search(dir.path());
    s.set_read_limit(Duration::from_secs(6));
    let slow = {
        let s = s.clone();
        thread::spawn(move || s.list_runs(&search(&slow_needle())))
    };
    thread::sleep(Duration::from_millis(300));
    assert!(!slow.is_finished(), "the search is slow");

    assert_eq!(s.get_run("quick").unwrap().counts.total, 3);
    assert_eq!(s.run_tasks("quick").unwrap().len(), 3);
    assert_eq!(s.list_runs(&search("quick")).unwrap().total, 1);
    assert!(
        !slow.is_finished(),
        "the other reads answered while the slow search ran"
    );
    // It ends by itself: a result, or stopped at the read limit.
    match slow.join().unwrap() {
        Ok(page) => assert_eq!(page.total, 0),
        Err(e) => assert!(matches!(e, StoreError::Timeout { limit_ms: 6000 }), "{e}"),
    }
}

/// A read that runs past the read limit stops with a typed `Timeout` that says what to
/// do; the store goes on, nothing stored is lost.
#[test]
fn a_read_past_its_limit_stops_with_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_with_a_slow_search(dir.path());
    s.set_read_limit(Duration::from_millis(100));
    let started = Instant::now();
    let err = s.list_runs(&search(&slow_needle())).unwrap_err();
    assert!(
        matches!(err, StoreError::Timeout { limit_ms: 100 }),
        "{err}"
    );
    assert!(err.to_string().contains("narrow the filters"), "{err}");
    eprintln!("stopped after {:?}", started.elapsed());

    // The same connections serve the next reads; writes never stopped.
    assert_eq!(s.get_run("slow").unwrap().counts.failures, 4000);
    s.set_run_status("quick", RunStatus::Running, None, T0)
        .unwrap();
    s.set_read_limit(DEFAULT_READ_LIMIT);
    let page = s.list_runs(&search("quick")).unwrap();
    assert_eq!(page.runs[0].status, RunStatus::Running);
}

/// `close_reads` (a console about to exit) stops a read in flight at once and refuses
/// new ones; writes still go through.
#[test]
fn closing_reads_stops_a_read_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_with_a_slow_search(dir.path());
    s.set_read_limit(Duration::from_secs(120));
    let slow = {
        let s = s.clone();
        thread::spawn(move || s.list_runs(&search(&slow_needle())))
    };
    thread::sleep(Duration::from_millis(300));
    assert!(!slow.is_finished(), "the search is slow");
    s.close_reads();
    let err = slow.join().unwrap().unwrap_err();
    assert!(matches!(err, StoreError::Closing), "{err}");
    assert!(matches!(s.get_run("quick"), Err(StoreError::Closing)));
    s.set_run_status("quick", RunStatus::Stopped, None, T0)
        .unwrap();
    drop(s);
    let s = SqliteStore::open_in(dir.path()).unwrap();
    assert_eq!(s.get_run("quick").unwrap().status, RunStatus::Stopped);
}
