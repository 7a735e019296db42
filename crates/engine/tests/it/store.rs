//! The SQLite store: the contract suite's backend, and what is SQLite's own (migrations,
//! WAL, a database newer than this Testbay).

use std::path::Path;

use testbay_engine::measure::{Comparison, Measurement};
use testbay_engine::store::sqlite::migrations;
use testbay_engine::store::*;

use super::store_contract::{new_run, rows, Backend};

use crate::support::T0;

/// SQLite stores in a data directory, for the contract suite.
pub struct SqliteBackend;

impl Backend for SqliteBackend {
    type S = SqliteStore;
    fn open(&self, dir: &Path) -> SqliteStore {
        SqliteStore::open_in(dir).unwrap()
    }
    fn open_owned_by(&self, dir: &Path, owner: RunOwner) -> SqliteStore {
        SqliteStore::open_in(dir).unwrap().owned_by(owner)
    }
}

#[test]
fn migrations_apply_once_and_reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    let v = s.schema_version().unwrap();
    assert_eq!(v as usize, migrations::MIGRATIONS.len());
    s.insert_run(&new_run("r1", "p", T0), &rows(2)).unwrap();
    drop(s);
    let s = SqliteStore::open_in(dir.path()).unwrap();
    assert_eq!(s.schema_version().unwrap(), v);
    assert_eq!(s.get_run("r1").unwrap().counts.total, 2);
    let mode: String = other_connection(dir.path())
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
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::TooNew { found: 999, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer"));
    let c = rusqlite::Connection::open(&path).unwrap();
    let x: i64 = c.query_row("SELECT x FROM keep", [], |r| r.get(0)).unwrap();
    assert_eq!(x, 42);
}

/// A database error keeps SQLite's own error as its source, behind the backend-neutral
/// variant and code.
#[test]
fn sqlite_errors_travel_boxed_with_a_stable_code() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    s.insert_run(&new_run("r1", "p", T0), &rows(1)).unwrap();
    let err = s.insert_run(&new_run("r1", "p", T0), &rows(1)).unwrap_err();
    assert_eq!(err.code(), "database", "{err}");
    let StoreError::Database(source) = &err else {
        panic!("{err:?}")
    };
    assert!(
        source.downcast_ref::<rusqlite::Error>().is_some(),
        "{err:?}"
    );
}

/// Task paths are stored relative to their run's folder, and the migration that brought
/// this in converts rows stored with absolute paths; both read back as written.
#[test]
fn task_paths_are_stored_relative_to_the_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("testbay.db");
    let s = SqliteStore::open(&path).unwrap();
    let mut run = new_run("r1", "p", T0);
    run.snapshot_dir = Some("/data/runs/r1/pack".into());
    let ids = s.insert_run(&run, &rows(2)).unwrap();
    let paths = TaskPaths {
        task_dir: Some("/data/runs/r1/stb-01/t0".into()),
        main_log: Some("/data/runs/r1/stb-01/t0/main.log".into()),
        artifacts_dir: Some("/other/artifacts".into()),
        ..Default::default()
    };
    let mut f = TaskFinish {
        result: "Passed".into(),
        finished_ms: T0,
        paths: paths.clone(),
        ..Default::default()
    };
    s.finish_task(ids[0], &f).unwrap();
    s.commit_now().unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    let stored = |c: &rusqlite::Connection, id: i64| -> (String, String, String) {
        c.query_row(
            "SELECT task_dir, main_log, artifacts_dir FROM task_results WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    assert_eq!(
        stored(&c, ids[0]),
        (
            "stb-01/t0".into(),
            "stb-01/t0/main.log".into(),
            "/other/artifacts".into()
        )
    );
    // A row as an older version stored it, converted by the migration's SQL.
    c.execute(
        "UPDATE task_results SET task_dir = ?2, main_log = ?3, artifacts_dir = ?4 WHERE id = ?1",
        rusqlite::params![
            ids[1],
            "/data/runs/r1/stb-01/t1",
            "/data/runs/r1/stb-01/t1/main.log",
            "/data/runs/r1/stb-01/t1/artifacts"
        ],
    )
    .unwrap();
    let m = migrations::MIGRATIONS
        .iter()
        .find(|m| m.name == "task paths stored relative to their run's folder")
        .unwrap();
    c.execute_batch(m.sql).unwrap();
    assert_eq!(
        stored(&c, ids[1]),
        (
            "stb-01/t1".into(),
            "stb-01/t1/main.log".into(),
            "stb-01/t1/artifacts".into()
        )
    );
    assert_eq!(
        stored(&c, ids[0]).0,
        "stb-01/t0",
        "a stored row stays as it is"
    );
    let tasks = s.run_tasks("r1").unwrap();
    assert_eq!(tasks[0].paths, paths);
    f.paths = TaskPaths {
        task_dir: Some("/data/runs/r1/stb-01/t1".into()),
        main_log: Some("/data/runs/r1/stb-01/t1/main.log".into()),
        artifacts_dir: Some("/data/runs/r1/stb-01/t1/artifacts".into()),
        ..Default::default()
    };
    assert_eq!(tasks[1].paths, f.paths);
}

/// A raw connection of its own to the store's database: what another process sees.
fn other_connection(dir: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(dir.join("testbay.db")).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    c
}

fn stored_runs(c: &rusqlite::Connection) -> i64 {
    c.query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap()
}

fn stored_result(c: &rusqlite::Connection, id: i64) -> Option<String> {
    c.query_row("SELECT result FROM task_results WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .unwrap()
}

#[test]
fn a_group_of_results_commits_by_itself_within_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    let other = other_connection(dir.path());
    // A run's insert is committed at once: another connection sees it.
    let ids = s.insert_run(&new_run("r1", "p", T0), &rows(3)).unwrap();
    assert_eq!(stored_runs(&other), 1);
    s.finish_task(ids[0], &super::store_contract::done("Passed", false))
        .unwrap();
    s.finish_task(ids[1], &super::store_contract::done("Failed", true))
        .unwrap();
    // Nothing else touches the store: the flusher commits the group (25 ms), and another
    // connection's write is not shut out for long.
    let t = std::time::Instant::now();
    while stored_result(&other, ids[1]).is_none() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "the group was never committed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(stored_result(&other, ids[0]).as_deref(), Some("Passed"));
    other
        .execute_batch("CREATE TABLE elsewhere (x); INSERT INTO elsewhere VALUES (1);")
        .unwrap();
    // The store keeps writing after another connection did; a status commits the results
    // waiting with it.
    s.finish_task(ids[2], &super::store_contract::done("Passed", false))
        .unwrap();
    s.set_run_status(
        "r1",
        testbay_engine::outcome::RunStatus::Completed,
        None,
        T0 + 5,
    )
    .unwrap();
    assert_eq!(stored_result(&other, ids[2]).as_deref(), Some("Passed"));
    let status: String = other
        .query_row("SELECT status FROM runs WHERE id = 'r1'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(status, "completed");
}

#[test]
fn a_failed_write_undoes_itself_and_not_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    let ids = s.insert_run(&new_run("r1", "p", T0), &rows(2)).unwrap();
    s.finish_task(ids[0], &super::store_contract::done("Passed", false))
        .unwrap();
    // Half of this batch names an occurrence that does not exist: none of it is written.
    let mut with_sub = super::store_contract::done("Failed", true);
    with_sub.sub_results = vec![NewSubResult {
        name: "ch1".into(),
        result: "Failed".into(),
        ..Default::default()
    }];
    let err = s
        .finish_tasks(&[(ids[1], with_sub.clone()), (999_999, with_sub)])
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidQuery { .. }), "{err}");
    s.commit_now().unwrap();
    drop(s);
    // What the group held before the failure is stored; the failed batch is not.
    let s = SqliteStore::open_in(dir.path()).unwrap();
    let tasks = s.run_tasks("r1").unwrap();
    assert_eq!(tasks[0].result.as_deref(), Some("Passed"));
    assert_eq!(tasks[1].result, None);
    assert!(tasks[1].sub_results.is_empty());
}

/// A batch that fails inside one of its multi-row statements, after earlier chunks were
/// written (a database refusal on its 50th row of 67: the first chunk of 64 stops halfway),
/// leaves nothing of itself and keeps what its group held before.
#[test]
fn a_batch_failing_inside_a_chunk_leaves_nothing_of_itself() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    let before = s.insert_run(&new_run("before", "p", T0), &rows(1)).unwrap();
    let ids = s
        .insert_run(&new_run("r1", "p", T0 + 1), &rows(67))
        .unwrap();
    // A refusal the store cannot see coming: a trigger in the database file.
    other_connection(dir.path())
        .execute_batch(
            "CREATE TRIGGER refuse_boom BEFORE UPDATE OF message ON task_results
             WHEN NEW.message = 'boom' BEGIN SELECT RAISE(ABORT, 'boom refused'); END;",
        )
        .unwrap();
    s.finish_task(before[0], &super::store_contract::done("Passed", false))
        .unwrap();
    let batch: Vec<(i64, TaskFinish)> = ids
        .iter()
        .enumerate()
        .map(|(k, &id)| {
            let mut f = super::store_contract::done("Passed", false);
            f.sub_results = vec![NewSubResult {
                name: "ch1".into(),
                result: "Passed".into(),
                ..Default::default()
            }];
            f.measurements = vec![Measurement {
                name: "snr".into(),
                value: 30.0,
                units: None,
                low: Some(20.0),
                high: None,
                comparison: None,
            }];
            if k == 49 {
                f.message = "boom".into();
            }
            (id, f)
        })
        .collect();
    let err = s.finish_tasks(&batch).unwrap_err();
    assert!(err.to_string().contains("boom refused"), "{err}");
    s.commit_now().unwrap();
    drop(s);
    let s = SqliteStore::open_in(dir.path()).unwrap();
    assert_eq!(
        s.run_tasks("before").unwrap()[0].result.as_deref(),
        Some("Passed")
    );
    let tasks = s.run_tasks("r1").unwrap();
    assert!(
        tasks
            .iter()
            .all(|t| t.result.is_none() && t.sub_results.is_empty() && t.measurements.is_empty()),
        "a row of the failed batch was kept"
    );
    let run = s.get_run("r1").unwrap();
    assert_eq!((run.counts.total, run.counts.done), (67, 0));
    // Nor its measurements' tallies: no run of the pack has a yield.
    let y = s.measurement_yield("p", 10).unwrap();
    assert!(y.is_empty(), "{y:?}");
}

#[test]
fn a_phase_start_and_a_store_opened_beside_commit_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    let other = other_connection(dir.path());
    let ids = s.insert_run(&new_run("r1", "p", T0), &rows(2)).unwrap();
    // A result waits in the open group…
    s.finish_task(ids[1], &super::store_contract::done("Passed", false))
        .unwrap();
    // …and a phase's start is durable at once (recovery kills the process group it
    // records), the group with it.
    s.task_phase_started(
        ids[0],
        "stb-01",
        "main",
        T0,
        Some(4242),
        &TaskPaths::default(),
    )
    .unwrap();
    let pgid: Option<i64> = other
        .query_row(
            "SELECT pgid FROM task_results WHERE id = ?1",
            [ids[0]],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pgid, Some(4242));
    assert_eq!(stored_result(&other, ids[1]).as_deref(), Some("Passed"));
    // A store opened beside this one sees the results written through it.
    let r2 = s.insert_run(&new_run("r2", "p", T0 + 1), &rows(1)).unwrap();
    s.finish_task(r2[0], &super::store_contract::done("Failed", true))
        .unwrap();
    let _book = s.open_book_store().unwrap();
    assert_eq!(stored_result(&other, r2[0]).as_deref(), Some("Failed"));
}

/// A transaction larger than the WAL's limit (a big batch, as a migration or a prune
/// writes) leaves the WAL file no larger than 64 MiB once checkpointed, while the store
/// stays open; closed, the store removes it.
#[test]
fn the_wal_is_cut_back_after_a_large_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    let ids = s.insert_run(&new_run("big", "p", T0), &rows(80)).unwrap();
    let big: Vec<(i64, TaskFinish)> = ids
        .iter()
        .map(|&id| {
            let mut f = super::store_contract::done("Passed", false);
            f.raw_result = Some("x".repeat(1 << 20));
            (id, f)
        })
        .collect();
    s.finish_tasks(&big).unwrap();
    s.commit_now().unwrap();
    let wal = || {
        std::fs::metadata(dir.path().join("testbay.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    assert!(
        wal() > 80 << 20,
        "the batch went through the WAL: {}",
        wal()
    );
    // Small writes go on; once the checkpoint thread has copied the WAL back, the next
    // write starts it again from its beginning and cuts the file back.
    let small = s
        .insert_run(&new_run("small", "p", T0 + 1), &rows(1))
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while wal() > 64 << 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        s.finish_task(small[0], &super::store_contract::done("Passed", false))
            .unwrap();
        s.commit_now().unwrap();
    }
    assert!(wal() <= 64 << 20, "the WAL keeps {} bytes", wal());
    assert_eq!(s.get_run("big").unwrap().counts.done, 80);
    // Closed (after reads, whose connections are read-only), the store leaves no WAL.
    drop(s);
    assert!(
        !dir.path().join("testbay.db-wal").exists(),
        "the WAL is left after close: {} bytes",
        wal()
    );
}

#[test]
fn reads_see_their_own_thread_writes_while_other_threads_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(SqliteStore::open_in(dir.path()).unwrap());
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    let id = format!("w{w}-{i}");
                    let ids = s.insert_run(&new_run(&id, "p", T0 + i), &rows(2)).unwrap();
                    s.finish_task(ids[0], &super::store_contract::done("Passed", false))
                        .unwrap();
                    // Read back at once: this thread's writes are there.
                    let run = s.get_run(&id).unwrap();
                    assert_eq!(run.counts.done, 1, "{id}");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(s.list_runs(&RunQuery::default()).unwrap().total, 120);
}

/// Undoes "sub-results kept with their task result": the table `sub_results` again,
/// empty, and no `sub_results_json`.
const UNDO_SUB_RESULTS_JSON: &str = "ALTER TABLE task_results DROP COLUMN sub_results_json;
    CREATE TABLE sub_results (
        id              INTEGER PRIMARY KEY,
        task_result_id  INTEGER NOT NULL REFERENCES task_results(id) ON DELETE CASCADE,
        idx             INTEGER NOT NULL,
        name            TEXT NOT NULL,
        description     TEXT NOT NULL DEFAULT '',
        result          TEXT NOT NULL,
        failure         INTEGER NOT NULL DEFAULT 0,
        message         TEXT NOT NULL DEFAULT '',
        metadata_json   TEXT
    );
    CREATE INDEX sub_results_task ON sub_results(task_result_id);";

/// Undoes "task results indexed by task in two parts".
const UNDO_TASK_INDEX_PARTS: &str = "DROP INDEX task_results_task_open;
    DROP INDEX task_results_task;
    CREATE INDEX task_results_task ON task_results(task, id);";

/// Runs `sql` on the store in `dir` (closed) and marks its schema as of just before the
/// migration named `before…`: the next open applies that one and every later one. The
/// fixtures are frozen copies of the schemas they undo; migrations are never edited.
fn rewind(dir: &Path, before: &str, sql: &str) {
    let index = migrations::MIGRATIONS
        .iter()
        .position(|m| m.name.starts_with(before))
        .unwrap_or_else(|| panic!("no migration {before}"));
    other_connection(dir)
        .execute_batch(&format!("{sql}\nPRAGMA user_version = {index};"))
        .unwrap();
}

/// The store in `dir` opened, every migration applied.
fn open_migrated(dir: &Path) -> SqliteStore {
    let s = SqliteStore::open_in(dir).unwrap();
    assert_eq!(
        s.schema_version().unwrap() as usize,
        migrations::MIGRATIONS.len()
    );
    s
}

#[test]
fn sub_result_rows_of_the_previous_schema_migrate_into_their_task_results() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    let ids = s.insert_run(&new_run("r1", "p", T0), &rows(3)).unwrap();
    for id in &ids {
        s.finish_task(*id, &super::store_contract::done("Passed", false))
            .unwrap();
    }
    drop(s);
    // Written out of order (idx), with every kind of value a row could hold.
    rewind(
        dir.path(),
        "sub-results kept with their task result",
        &format!(
            "{UNDO_SUB_RESULTS_JSON}
             INSERT INTO sub_results (id, task_result_id, idx, name, description, result, failure,
                     message, metadata_json) VALUES
                 (1, {a}, 2, 'third', '', 'Passed', 0, '', NULL),
                 (2, {a}, 0, 'ch \"101\"', 'µ desc', 'Failed', 1, 'SNR 3.5 < 5', '{{\"k\":null,\"n\":[1,2.5]}}'),
                 (3, {a}, 1, 'second', '', 'Passed', 0, '', 'not json'),
                 (4, {b}, 0, 'only', '', 'Errored', 1, 'x', '{{}}');",
            a = ids[0],
            b = ids[1],
        ),
    );
    let s = open_migrated(dir.path());
    let tasks = s.run_tasks("r1").unwrap();
    let names =
        |t: &TaskRecord| -> Vec<String> { t.sub_results.iter().map(|s| s.name.clone()).collect() };
    assert_eq!(names(&tasks[0]), ["ch \"101\"", "second", "third"]);
    let first = &tasks[0].sub_results[0];
    assert_eq!(
        (
            first.description.as_str(),
            first.result.as_str(),
            first.failure,
            first.message.as_str()
        ),
        ("µ desc", "Failed", true, "SNR 3.5 < 5")
    );
    // A null inside the metadata stays; metadata that was not JSON is kept in the row as
    // text and reads as none, as it did from the table.
    assert_eq!(
        first.metadata,
        Some(serde_json::json!({"k": null, "n": [1, 2.5]}))
    );
    assert_eq!(tasks[0].sub_results[1].metadata, None);
    let kept: String = other_connection(dir.path())
        .query_row(
            "SELECT sub_results_json FROM task_results WHERE id = ?1",
            [ids[0]],
            |r| r.get(0),
        )
        .unwrap();
    assert!(kept.contains(r#""md":"not json""#), "{kept}");
    let third = &tasks[0].sub_results[2];
    assert!(!third.failure && third.metadata.is_none() && third.message.is_empty());
    assert_eq!(names(&tasks[1]), ["only"]);
    assert_eq!(
        tasks[1].sub_results[0].metadata,
        Some(serde_json::json!({}))
    );
    assert!(tasks[2].sub_results.is_empty());
    let raw: i64 = other_connection(dir.path())
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'sub_results'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(raw, 0, "the table is gone");

    // A finish without sub-results keeps the migrated ones; one with them replaces them.
    s.finish_task(ids[1], &super::store_contract::done("Failed", true))
        .unwrap();
    assert_eq!(names(&s.run_tasks("r1").unwrap()[1]), ["only"]);
    let mut f = super::store_contract::done("Passed", false);
    f.sub_results = vec![NewSubResult {
        name: "new".into(),
        result: "Passed".into(),
        ..Default::default()
    }];
    s.finish_task(ids[1], &f).unwrap();
    assert_eq!(names(&s.run_tasks("r1").unwrap()[1]), ["new"]);
}

/// Measurements stored as rows of table `measurements` (the schema before
/// "measurements kept with their task result") move into their task results'
/// `measurements_json`, in the order written, and read back the same through a run's
/// tasks and a measurement's history; a later finish appends to them.
#[test]
fn measurement_rows_of_the_previous_schema_migrate_into_their_task_results() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    let ids = s.insert_run(&new_run("r1", "p", T0), &rows(2)).unwrap();
    let mut f = super::store_contract::done("Passed", false);
    f.sub_results = vec![NewSubResult {
        name: "a".into(),
        description: String::new(),
        result: "Passed".into(),
        failure: false,
        message: String::new(),
        metadata: None,
        measurements: Vec::new(),
    }];
    s.finish_task(ids[0], &f).unwrap();
    s.finish_task(ids[1], &super::store_contract::done("Failed", true))
        .unwrap();
    drop(s);
    // The schema before `measurements_json`: a table `measurements` of rows, the
    // sub-results in their table and the task index whole, as that schema had them.
    rewind(
        dir.path(),
        "measurements kept with their task result",
        &format!(
            "{UNDO_SUB_RESULTS_JSON}
             INSERT INTO sub_results (task_result_id, idx, name, result) VALUES ({a}, 0, 'a', 'Passed');
             {UNDO_TASK_INDEX_PARTS}
             ALTER TABLE task_results DROP COLUMN measurements_json;
             CREATE TABLE measurements (
                 id              INTEGER PRIMARY KEY,
                 task_result_id  INTEGER NOT NULL REFERENCES task_results(id) ON DELETE CASCADE,
                 pack_name       TEXT NOT NULL,
                 task            TEXT NOT NULL,
                 sub_result      TEXT NOT NULL DEFAULT '',
                 name            TEXT NOT NULL,
                 value           REAL NOT NULL,
                 units           TEXT,
                 low             REAL,
                 high            REAL,
                 comparison      TEXT NOT NULL,
                 passed          INTEGER
             );
             CREATE INDEX measurements_task ON measurements(task_result_id);
             CREATE INDEX measurements_series ON measurements(pack_name, task, sub_result, name, id);
             INSERT INTO measurements (id, task_result_id, pack_name, task, sub_result, name, value,
                     units, low, high, comparison, passed) VALUES
                 (1, {a}, 'p', 'task0', '', 'snr', 30.5, 'dB', 20, 40, 'GELE', 1),
                 (2, {b}, 'p', 'task1', '', 'snr', 10, 'dB', 20, 40, 'GELE', 0),
                 (3, {a}, 'p', 'task0', 'a', 'ber', 0.001, NULL, NULL, NULL, 'LOG', NULL),
                 (4, {a}, 'p', 'task0', '', 'snr', 31.25, 'dB', 20, 40, 'GELE', 1),
                 (5, {a}, 'p', 'task0', '', 'say \"hi\"', 1, NULL, NULL, NULL, 'LOG', NULL),
                 (6, {a}, 'p', 'task0', '', 'pµW', 0.30000000000000004, 'µW', 0.30000000000000004, NULL, 'LOG', NULL);",
            a = ids[0],
            b = ids[1],
        ),
    );
    let s = open_migrated(dir.path());
    let snr = |value: f64, passed: bool| MeasurementRecord {
        name: "snr".into(),
        value,
        units: Some("dB".into()),
        low: Some(20.0),
        high: Some(40.0),
        comparison: Comparison::GELE,
        passed: Some(passed),
    };
    let tasks = s.run_tasks("r1").unwrap();
    assert_eq!(tasks[0].measurements.len(), 4);
    assert_eq!(
        tasks[0].measurements[..2],
        [snr(30.5, true), snr(31.25, true)]
    );
    assert_eq!(tasks[0].measurements[2].name, "say \"hi\"");
    assert_eq!(tasks[0].measurements[3].units.as_deref(), Some("µW"));
    // Every digit of a real kept (JSON's own 15 would make it 0.3).
    assert_eq!(tasks[0].measurements[3].value, 0.1 + 0.2);
    assert_eq!(tasks[0].measurements[3].low, Some(0.1 + 0.2));
    assert_eq!(
        tasks[0].sub_results[0].measurements,
        [MeasurementRecord {
            name: "ber".into(),
            value: 0.001,
            units: None,
            low: None,
            high: None,
            comparison: Comparison::LOG,
            passed: None,
        }]
    );
    assert_eq!(tasks[1].measurements, [snr(10.0, false)]);
    let history = |task: &str, sub: Option<&str>, name: &str| -> Vec<f64> {
        s.measurement_history(&MeasurementQuery {
            pack: "p".into(),
            task: task.into(),
            sub_result: sub.map(str::to_string),
            name: name.into(),
            dut_model: Some("TP-4000".into()),
            limit: 0,
        })
        .unwrap()
        .into_iter()
        .map(|p| p.measurement.value)
        .collect()
    };
    assert_eq!(history("task0", None, "snr"), [31.25, 30.5]);
    assert_eq!(history("task0", Some("a"), "ber"), [0.001]);
    assert!(history("task0", None, "ber").is_empty());
    assert_eq!(history("task1", None, "snr"), [10.0]);
    // Names a JSON string escapes, or holds as they are.
    assert_eq!(history("task0", None, "say \"hi\""), [1.0]);
    assert_eq!(history("task0", None, "pµW"), [0.1 + 0.2]);
    // A later finish appends after the migrated ones.
    f.measurements = vec![Measurement {
        name: "snr".into(),
        value: 32.0,
        units: Some("dB".into()),
        low: Some(20.0),
        high: Some(40.0),
        comparison: None,
    }];
    s.finish_task(ids[0], &f).unwrap();
    assert_eq!(history("task0", None, "snr"), [32.0, 31.25, 30.5]);
    // The limit keeps the newest: the later of one occurrence's.
    let newest = s
        .measurement_history(&MeasurementQuery {
            pack: "p".into(),
            task: "task0".into(),
            sub_result: None,
            name: "snr".into(),
            dut_model: None,
            limit: 2,
        })
        .unwrap();
    let values: Vec<f64> = newest.iter().map(|p| p.measurement.value).collect();
    assert_eq!(values, [32.0, 31.25]);
    drop(s);
    let c = other_connection(dir.path());
    let left: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'measurements%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "table measurements and its indexes are dropped");
}
