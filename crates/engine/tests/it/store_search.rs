//! The runs listing's text search on SQLite reads each run's text digest (its task names
//! and messages in a trigram index) before its task rows: it finds exactly what reading
//! every row finds, through every write that changes a task name or message.

use testbay_engine::outcome::RunStatus;
use testbay_engine::store::*;

use crate::store_contract::{new_run, rows};
use crate::support::T0;

fn finish(message: &str) -> TaskFinish {
    TaskFinish {
        result: "Passed".into(),
        message: message.into(),
        finished_ms: T0 + 1000,
        ..Default::default()
    }
}

/// The ids of the runs a search for `text` lists, sorted.
fn found(s: &SqliteStore, text: &str) -> Vec<String> {
    let mut ids: Vec<String> = s
        .list_runs(&RunQuery {
            text: Some(text.into()),
            ..Default::default()
        })
        .unwrap()
        .runs
        .into_iter()
        .map(|r| r.launch.id)
        .collect();
    ids.sort();
    ids
}

#[test]
fn the_search_finds_what_every_write_left() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    // Run a: task names only (its insert); run b: messages by the batch path.
    let a = s.insert_run(&new_run("a", "p", T0), &rows(2)).unwrap();
    let b = s.insert_run(&new_run("b", "p", T0 + 1), &rows(3)).unwrap();
    s.finish_tasks(&[(b[0], finish("Alpha checked")), (b[1], finish("beta checked"))])
        .unwrap();
    assert_eq!(found(&s, "task1"), ["a", "b"]);
    assert_eq!(found(&s, "task2"), ["b"]);
    assert_eq!(found(&s, "alpha"), ["b"], "LIKE ignores ASCII case");
    assert_eq!(found(&s, "checked"), ["b"]);
    assert!(found(&s, "gamma").is_empty());
    // Under three characters: no trigram, every row read.
    assert_eq!(found(&s, "k2"), ["b"]);

    // A single finish changes a message: the old one is gone at once, the new one found.
    s.finish_task(b[0], &finish("gamma checked")).unwrap();
    s.commit_now().unwrap();
    assert!(found(&s, "alpha").is_empty());
    assert_eq!(found(&s, "gamma"), ["b"]);
    s.finish_task(a[0], &finish("delta \"quoted\" 100%"))
        .unwrap();
    assert_eq!(found(&s, "\"quoted\" 100%"), ["a"]);
    // The run finishes: its digest is written again and says the same.
    s.set_run_status("b", RunStatus::Completed, None, T0 + 2000)
        .unwrap();
    assert_eq!(found(&s, "gamma"), ["b"]);
    assert!(found(&s, "alpha").is_empty());
    assert_eq!(found(&s, "beta"), ["b"]);

    // Recovery writes messages of its own.
    s.mark_interrupted(&["a".into()], T0 + 3000).unwrap();
    assert_eq!(found(&s, "console exited"), ["a"]);
    assert_eq!(found(&s, "quoted"), ["a"]);

    // The same store opened again (its migrations run once) finds the same.
    drop(s);
    let s = SqliteStore::open_in(dir.path()).unwrap();
    assert_eq!(found(&s, "console exited"), ["a"]);
    assert_eq!(found(&s, "gamma"), ["b"]);
}

/// A search of three characters or more reads the digest's index, then only the task
/// rows of the runs it names.
#[test]
fn a_search_reads_the_digest_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path()).unwrap();
    let plan = s
        .list_runs_plan(&RunQuery {
            text: Some("channel 0".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(
        plan.iter()
            .any(|l| l.contains("run_text VIRTUAL TABLE INDEX")),
        "{plan:#?}"
    );
}
