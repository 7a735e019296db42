//! The store under concurrent use, on a real SQLite file: processes' worth of connections
//! opening one fresh data dir at once.

use std::sync::{Arc, Barrier};
use std::thread;

use testbay_engine::outcome::RunStatus;
use testbay_engine::plan::DutTarget;
use testbay_engine::store::*;

const T0: i64 = 1_800_000_000_000;

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
                    let s = Store::open_in(&data)?;
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
        let s = Store::open_in(&dir.path().join("data")).unwrap();
        assert_eq!(
            s.list_runs(&RunQuery::default()).unwrap().total as usize,
            AT_ONCE,
            "every opener's run is stored"
        );
    }
}
