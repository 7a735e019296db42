//! Retention on a real SQLite file: what a policy removes (by age, by count per pack),
//! never a pinned baseline's run, a run marked keep or a run still going; a dry run that
//! changes nothing; folders removed with their rows; space given back to the file system.

use std::path::Path;

use testbay_engine::api::retention::{prune, usage};
use testbay_engine::outcome::RunStatus;
use testbay_engine::store::*;

use crate::store_contract::{new_run, rows};
use crate::support::{write, T0};

const DAY: i64 = 86_400_000;

/// A run of `pack` created `age_days` before `T0`, finished with `status` (none: left
/// running), each of its `tasks` done with a message of `message_bytes`, and a folder with
/// a log and an artifact.
fn stored_run(
    store: &SqliteStore,
    data: &Path,
    id: &str,
    pack: &str,
    age_days: i64,
    status: Option<RunStatus>,
    (tasks, message_bytes): (u32, usize),
) {
    let created = T0 - age_days * DAY;
    let ids = store
        .insert_run(&new_run(id, pack, created), &rows(tasks))
        .unwrap();
    store
        .set_run_status(id, RunStatus::Running, None, created)
        .unwrap();
    let items: Vec<(i64, TaskFinish)> = ids
        .iter()
        .map(|&t| {
            (
                t,
                TaskFinish {
                    result: "Passed".into(),
                    message: "m".repeat(message_bytes),
                    finished_ms: created + 1,
                    ..Default::default()
                },
            )
        })
        .collect();
    store.finish_tasks(&items).unwrap();
    if let Some(s) = status {
        store.set_run_status(id, s, None, created + 2).unwrap();
    }
    write(
        &data.join(format!("runs/{id}/stb-01/0001-task0/main.log")),
        "log line\n",
    );
    write(
        &data.join(format!("runs/{id}/stb-01/0001-task0/artifacts/shot.png")),
        &"x".repeat(1000),
    );
}

fn ids(r: &testbay_engine::api::PruneReport) -> Vec<&str> {
    r.runs.iter().map(|c| c.run_id.as_str()).collect()
}

fn exists(store: &SqliteStore, id: &str) -> bool {
    store.get_run(id).is_ok()
}

#[test]
fn prune_spares_pinned_kept_and_running_runs_and_a_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let store = SqliteStore::open_in(data).unwrap();
    let done = Some(RunStatus::Completed);
    // Pack `a`, oldest first: old1..old5 are 100+ days old, new1 is recent.
    stored_run(&store, data, "old1", "a", 105, done, (3, 10));
    stored_run(&store, data, "old2", "a", 104, done, (3, 10));
    stored_run(&store, data, "old3", "a", 103, None, (3, 10)); // still running
    stored_run(&store, data, "old4", "a", 102, done, (3, 10));
    stored_run(
        &store,
        data,
        "old5",
        "a",
        101,
        Some(RunStatus::Interrupted),
        (3, 10),
    );
    stored_run(&store, data, "new1", "a", 1, done, (3, 10));
    // Pack `b`: three recent runs.
    stored_run(&store, data, "b1", "b", 3, done, (3, 10));
    stored_run(
        &store,
        data,
        "b2",
        "b",
        2,
        Some(RunStatus::Errored),
        (3, 10),
    );
    stored_run(&store, data, "b3", "b", 1, done, (3, 10));
    store.pin_baseline("old2", None, T0).unwrap();
    let keep = store.open_retention_store().unwrap();
    keep.set_keep("old4", true, T0).unwrap();
    assert!(keep.is_kept("old4").unwrap());
    assert!(matches!(
        keep.set_keep("ghost", true, T0),
        Err(StoreError::RunNotFound(_))
    ));

    // No policy: nothing goes.
    let r = prune(&store, data, T0, false).unwrap();
    assert!(r.runs.is_empty(), "{r:?}");

    write(
        &data.join("settings.yaml"),
        "retention:\n  days: 90\n  runs_per_pack: 2\n",
    );
    let before = usage(&store, data).unwrap();
    assert_eq!(before.run_folders, 9);
    assert_eq!(before.artifacts_bytes, 9 * 1000);
    assert_eq!(before.logs_bytes, 9 * 9);
    let dry = prune(&store, data, T0, true).unwrap();
    // old1 and old5 by age; b1 beyond b's newest 2; old2 pinned, old3 running, old4 kept.
    assert_eq!(ids(&dry), ["old1", "old5", "b1"], "{dry:?}");
    assert_eq!(dry.runs[2].why, "count");
    assert_eq!(dry.files_bytes, 3 * 1009);
    assert_eq!(dry.database_bytes, 0);
    for id in ["old1", "old5", "b1"] {
        assert!(exists(&store, id), "a dry run removes nothing: {id}");
        assert!(data.join("runs").join(id).is_dir());
    }

    let r = prune(&store, data, T0, false).unwrap();
    assert_eq!(ids(&r), ids(&dry));
    for id in ["old1", "old5", "b1"] {
        assert!(!exists(&store, id), "{id} removed");
        assert!(
            !data.join("runs").join(id).exists(),
            "{id}'s folder removed"
        );
    }
    for id in ["old2", "old3", "old4", "new1", "b2", "b3"] {
        assert!(exists(&store, id), "{id} kept");
        assert!(data.join("runs").join(id).is_dir(), "{id}'s folder kept");
    }
    assert_eq!(store.run_tasks("old2").unwrap().len(), 3);
    let after = usage(&store, data).unwrap();
    assert_eq!(after.run_folders, 6);
    assert_eq!(after.artifacts_bytes, 6 * 1000);

    // Unmarked, the kept run goes at the next prune; the running one stays running.
    keep.set_keep("old4", false, T0).unwrap();
    let r = prune(&store, data, T0, false).unwrap();
    assert_eq!(ids(&r), ["old4"]);
    assert!(exists(&store, "old3"));
    assert_eq!(store.get_run("old3").unwrap().status, RunStatus::Running);
}

#[test]
fn pruning_gives_the_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let store = SqliteStore::open_in(data).unwrap();
    for i in 0..4 {
        stored_run(
            &store,
            data,
            &format!("big{i}"),
            "a",
            200 - i,
            Some(RunStatus::Completed),
            (500, 4000),
        );
    }
    stored_run(
        &store,
        data,
        "recent",
        "a",
        1,
        Some(RunStatus::Completed),
        (5, 10),
    );
    store.commit_now().unwrap();
    let h = store.open_retention_store().unwrap();
    // Reach a steady file first (the write-ahead log folded in).
    h.reclaim().unwrap();
    let before = h.size().unwrap().file_bytes;
    assert!(
        before > 8_000_000,
        "four runs of 2 MB of messages: {before}"
    );
    write(&data.join("settings.yaml"), "retention:\n  days: 30\n");
    let r = prune(&store, data, T0, false).unwrap();
    assert_eq!(r.runs.len(), 4);
    let after = h.size().unwrap().file_bytes;
    assert!(
        after < before / 4,
        "the file shrank: {before} -> {after} bytes ({} reported)",
        r.database_bytes
    );
    assert!(r.database_bytes > 0);
    assert_eq!(store.run_tasks("recent").unwrap().len(), 5);
    println!(
        "pruned 4 runs of 500 tasks: database {before} -> {after} bytes, {} reported",
        r.database_bytes
    );
}

/// The write-ahead log is given back even while another connection checkpoints (the
/// store's checkpointer takes the lock a `TRUNCATE` checkpoint needs, and SQLite does
/// not wait for it): the reclaim tries again.
#[test]
fn the_log_is_given_back_while_another_checkpoint_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let store = SqliteStore::open_in(data).unwrap();
    stored_run(
        &store,
        data,
        "big",
        "a",
        100,
        Some(RunStatus::Completed),
        (500, 4000),
    );
    store.commit_now().unwrap();
    let h = store.open_retention_store().unwrap();
    let db = store.path().to_path_buf();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&db).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            }
        })
    };
    let mut wal = db.into_os_string();
    wal.push("-wal");
    let mut left = Vec::new();
    for round in 0..20 {
        // Something in the log for each round to give back.
        h.set_keep("big", round % 2 == 0, T0).unwrap();
        h.reclaim().unwrap();
        left.push(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    other.join().unwrap();
    assert!(left.iter().all(|&n| n == 0), "log bytes left: {left:?}");
}
