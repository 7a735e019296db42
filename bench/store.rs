//! Store read benchmark: `list_runs` and friends on 10,000 stored runs, and how long a
//! quick read takes while a slow search runs beside it.
//!
//! `cargo bench -p testbay-engine --bench store` (env `STORE_BENCH_RUNS` changes the
//! number of runs, `STORE_BENCH_TASKS` the tasks per run, `STORE_BENCH_CALLS` the calls
//! timed per query). Prints figures; asserts nothing. Every run has 20 tasks; one run in 10 has a `Failed` task, one in 100 an
//! `Errored` one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use testbay_engine::outcome::RunStatus;
use testbay_engine::store::*;

#[path = "common.rs"]
mod common;
use common::env_or;

fn fill(s: &dyn Store, runs: usize, tasks: u32) {
    for i in 0..runs {
        let id = format!("r{i:06}");
        let run = common::run(
            i,
            ["stb-smoke", "net-regression", "stb-regression"][i % 3],
            "TP-4000",
        );
        let rows = common::tasks(tasks, &run.duts[0].name);
        let ids = s.insert_run(&run, &rows).unwrap();
        let done: Vec<(i64, TaskFinish)> = ids
            .iter()
            .enumerate()
            .map(|(k, &tid)| {
                let (result, failure) = if k == 3 && i % 10 == 0 {
                    ("Failed", true)
                } else if k == 7 && i % 100 == 0 {
                    ("Errored", true)
                } else {
                    ("Passed", false)
                };
                let f = TaskFinish {
                    result: result.into(),
                    failure,
                    message: format!("{result}: channel {k} checked"),
                    finished_ms: run.created_ms + 1000,
                    started_ms: Some(run.created_ms),
                    ..Default::default()
                };
                (tid, f)
            })
            .collect();
        s.finish_tasks(&done).unwrap();
        s.set_run_status(&id, RunStatus::Completed, None, run.created_ms + 2000)
            .unwrap();
    }
}

/// Median and worst of `n` calls, in ms.
fn time<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, f64) {
    sample(n, || {
        let t = Instant::now();
        std::hint::black_box(f());
        t.elapsed()
    })
}

/// Median and worst of `n` durations that `f` measures itself, in ms.
fn sample(n: usize, mut f: impl FnMut() -> Duration) -> (f64, f64) {
    let mut ms: Vec<f64> = (0..n).map(|_| f().as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[ms.len() - 1])
}

fn main() {
    let runs = env_or("STORE_BENCH_RUNS", 10_000);
    let calls = env_or("STORE_BENCH_CALLS", 5).max(1);
    let tasks = env_or("STORE_BENCH_TASKS", 20) as u32;
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SqliteStore::open_in(dir.path()).unwrap());
    let t = Instant::now();
    fill(&*s, runs, tasks);
    println!(
        "store: {runs} runs x {tasks} tasks written in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let q = |f: &dyn Fn(&mut RunQuery)| {
        let mut q = RunQuery::default();
        f(&mut q);
        q
    };
    let cases: Vec<(&str, RunQuery)> = vec![
        ("list_runs, no filter", RunQuery::default()),
        (
            "list_runs, result=Failed",
            q(&|q| q.result = Some("Failed".into())),
        ),
        (
            "list_runs, result=Errored",
            q(&|q| q.result = Some("Errored".into())),
        ),
        ("list_runs, failed only", q(&|q| q.failed_only = true)),
        (
            "list_runs, pack=net-regression",
            q(&|q| q.pack = Some("net-regression".into())),
        ),
        (
            "list_runs, dut=stb-03",
            q(&|q| q.dut = Some("stb-03".into())),
        ),
        (
            "list_runs, sort by failures",
            q(&|q| q.sort = RunSort::Failures),
        ),
        (
            "list_runs, text search (no match)",
            q(&|q| q.text = Some("nowhere".into())),
        ),
    ];
    println!("median / worst of {calls} call(s), ms:");
    for (name, query) in &cases {
        let (med, worst) = time(calls, || s.list_runs(query).unwrap());
        println!("  {name:36} {med:9.2} / {worst:9.2}");
    }
    let last = format!("r{:06}", runs - 1);
    let (med, worst) = time(20, || s.get_run(&last).unwrap());
    println!("  {:36} {med:9.2} / {worst:9.2}", "get_run");
    let (med, worst) = time(20, || s.run_tasks(&last).unwrap());
    println!("  {:36} {med:9.2} / {worst:9.2}", "run_tasks");

    // A quick read while slow searches run on another thread, back to back.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            let q = RunQuery {
                text: Some("nowhere".into()),
                ..Default::default()
            };
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = s.list_runs(&q);
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    // Spread over half a second, so the calls fall inside several searches.
    let (med, worst) = sample(100, || {
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        s.get_run(&last).unwrap();
        t.elapsed()
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let searches = slow.join().unwrap();
    println!(
        "  {:36} {med:9.2} / {worst:9.2}  (beside {searches} text searches)",
        "get_run while searches run"
    );
}
