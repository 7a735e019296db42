//! The SQLite store: the contract suite's backend, and what is SQLite's own (migrations,
//! WAL, a database newer than this Testbay).

use std::path::Path;

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
