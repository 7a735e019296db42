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
