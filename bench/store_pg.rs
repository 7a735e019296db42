//! The two store backends side by side: inserting runs, finishing their tasks, and
//! `list_runs` / `get_run` / `run_tasks`, on SQLite (a temp file) and on PostgreSQL (a
//! throwaway cluster of `testbay-pgtest` on loopback, fsync off).
//!
//! `cargo bench -p testbay-engine --bench store_pg` (env `STORE_PG_RUNS`, default 1,000
//! runs of 20 tasks; `STORE_PG_CALLS`, default 200 reads timed per query). Prints
//! figures; asserts nothing.

use std::time::Instant;

use testbay_engine::outcome::RunStatus;
use testbay_engine::store::*;

#[path = "common.rs"]
mod common;
use common::{env_or, T0};

const TASKS: u32 = 20;

fn run(i: usize) -> NewRun {
    common::run(i, ["stb-smoke", "net-regression"][i % 2], "TP-4000")
}

fn tasks() -> Vec<NewTaskRow> {
    common::tasks(TASKS, "stb-01")
}

fn per_call(label: &str, n: usize, started: Instant) {
    let total = started.elapsed();
    println!(
        "  {label:<34} {:>9.3} ms/call  ({n} calls, {:.2} s)",
        total.as_secs_f64() * 1000.0 / n as f64,
        total.as_secs_f64()
    );
}

fn bench(name: &str, s: &dyn Store, runs: usize, calls: usize) {
    println!("{name}:");
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..runs {
        ids.push(s.insert_run(&run(i), &tasks()).unwrap());
    }
    per_call("insert_run (20 tasks)", runs, started);
    let started = Instant::now();
    let mut finished = 0;
    for (i, rows) in ids.iter().enumerate() {
        for (t, id) in rows.iter().enumerate() {
            let failed = (i + t) % 10 == 0;
            let f = TaskFinish {
                result: if failed { "Failed" } else { "Passed" }.into(),
                failure: failed,
                message: format!("task {t} of run {i}"),
                finished_ms: T0 + 1000,
                ..Default::default()
            };
            s.finish_task(*id, &f).unwrap();
            finished += 1;
        }
        s.commit_now().unwrap();
        s.set_run_status(&format!("r{i:06}"), RunStatus::Completed, None, T0 + 2000)
            .unwrap();
    }
    per_call("finish_task (a commit per run)", finished, started);
    let queries: [(&str, RunQuery); 3] = [
        ("list_runs (newest 50)", RunQuery::default()),
        (
            "list_runs (pack, failed only)",
            RunQuery {
                pack: Some("stb-smoke".into()),
                failed_only: true,
                ..Default::default()
            },
        ),
        (
            "list_runs (search text)",
            RunQuery {
                text: Some("of run 7".into()),
                ..Default::default()
            },
        ),
    ];
    for (label, q) in queries {
        let started = Instant::now();
        for _ in 0..calls {
            s.list_runs(&q).unwrap();
        }
        per_call(label, calls, started);
    }
    let started = Instant::now();
    for i in 0..calls {
        s.get_run(&format!("r{:06}", i % runs)).unwrap();
    }
    per_call("get_run", calls, started);
    let started = Instant::now();
    for i in 0..calls {
        s.run_tasks(&format!("r{:06}", i % runs)).unwrap();
    }
    per_call("run_tasks (20 tasks)", calls, started);
}

fn main() {
    let runs = env_or("STORE_PG_RUNS", 1000);
    let calls = env_or("STORE_PG_CALLS", 200);
    println!("{runs} runs of {TASKS} tasks, {calls} reads per query");
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open_in(dir.path()).unwrap();
    bench("SQLite (WAL, temp file)", &sqlite, runs, calls);
    drop(sqlite);
    let cluster = match testbay_pgtest::shared() {
        Ok(c) => c,
        Err(e) => {
            println!("PostgreSQL: not measured ({e})");
            return;
        }
    };
    let pg = PgStore::open(&cluster.fresh_db("bench").unwrap()).unwrap();
    bench("PostgreSQL (loopback, fsync off)", &pg, runs, calls);
}
