//! Results-across-runs benchmark: a store of runs with measurements written through the
//! store's own insert paths (`finish_tasks`, the batch path, for most runs; `finish_task`
//! one result at a time, committed per run, for the last 2%), each timed, then the
//! server-side time of the runs listing (first page, a filtered page, the last page),
//! one run's detail, a task's history, a measurement's history, yield, the flaky list, a
//! run's tasks with their measurements and a compare of two runs; and, beside the ingest,
//! the rate of SQLite alone writing the same rows on the same schema, by itself and from
//! Rust in the store's shape and in one-write shapes (`ceilings`).
//!
//! `bench/history.sh`, or `cargo bench -p testbay-engine --bench history` (env
//! `HISTORY_BENCH_RUNS`, default 2,000; `HISTORY_BENCH_TASKS`, default 100 per run;
//! `HISTORY_BENCH_CALLS`, default 20 calls per query; `HISTORY_BENCH_AT_ONCE`, runs
//! written side by side, default 1). Every task has 2 sub-results, each with one measurement, and one
//! measurement of its own; runs go to 16 DUTs of 2 models; one task in 20 flips. Prints
//! figures; asserts nothing.

use std::time::Instant;

use testbay_engine::analysis::{compare_runs, flaky_tasks, CompareOptions, FlakyQuery};
use testbay_engine::measure::Measurement;
use testbay_engine::outcome::RunStatus;
use testbay_engine::store::*;

#[path = "ceilings.rs"]
mod ceilings;
#[path = "common.rs"]
mod common;
use common::env_or;

const PACK: &str = "stb-smoke";

fn m(name: &str, value: f64) -> Measurement {
    Measurement {
        name: name.into(),
        value,
        units: Some("dB".into()),
        low: Some(20.0),
        high: Some(40.0),
        comparison: None,
    }
}

/// Task `k` of run `i`, finished.
fn finish(i: usize, k: usize, created_ms: i64) -> TaskFinish {
    let flips = k.is_multiple_of(20) && (i / 2).is_multiple_of(3);
    let snr = 30.0 + ((i * 7 + k) % 13) as f64
        - if k == 5 && i.is_multiple_of(9) {
            15.0
        } else {
            0.0
        };
    TaskFinish {
        result: if flips { "Failed" } else { "Passed" }.into(),
        failure: flips,
        message: format!("channel {k} checked"),
        run_time: Some(2.5 + (k % 5) as f64 * 0.1),
        finished_ms: created_ms + 1000,
        started_ms: Some(created_ms),
        sub_results: (0..2)
            .map(|c| NewSubResult {
                name: format!("channel_{}", 101 + c),
                result: "Passed".into(),
                measurements: vec![m("snr_db", snr + c as f64)],
                ..Default::default()
            })
            .collect(),
        measurements: vec![m("power_db", snr)],
        ..Default::default()
    }
}

/// Runs `from..to`, each with `tasks` results: through the batch path
/// (`finish_tasks`, one call per run) or one at a time (`finish_task`, committed by
/// `commit_now` as a run's loop does). `at_once` runs go side by side, as on a lab's DUTs:
/// all inserted, then their results, then their ends.
fn fill(
    s: &dyn Store,
    from: usize,
    to: usize,
    tasks: u32,
    batch: bool,
    at_once: usize,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(to - from);
    let all: Vec<usize> = (from..to).collect();
    for wave in all.chunks(at_once.max(1)) {
        let mut going = Vec::with_capacity(wave.len());
        for &i in wave {
            let dut = format!("stb-{:02}", i % 16);
            let run = common::run(i, PACK, ["TP-4000", "TP-5000"][i % 2]);
            let rows = common::tasks(tasks, &dut);
            let tids = s.insert_run(&run, &rows).unwrap();
            going.push((i, run.created_ms, tids));
        }
        for (i, created_ms, tids) in &going {
            let done = tids
                .iter()
                .enumerate()
                .map(|(k, &tid)| (tid, finish(*i, k, *created_ms)));
            if batch {
                s.finish_tasks(&done.collect::<Vec<_>>()).unwrap();
            } else {
                for (tid, f) in done {
                    s.finish_task(tid, &f).unwrap();
                }
                s.commit_now().unwrap();
            }
        }
        for (i, created_ms, _) in going {
            let id = format!("r{i:06}");
            s.set_run_status(&id, RunStatus::Completed, None, created_ms + 2000)
                .unwrap();
            ids.push(id);
        }
    }
    ids
}

/// Fill a store with `runs` runs of `tasks` results, most through the batch path and the
/// last 2% one result at a time, each timed; the runs' ids.
fn ingest(s: &SqliteStore, runs: usize, tasks: u32, at_once: usize) -> Vec<String> {
    let single = (runs / 50).max(1);
    let (t, cpu) = (Instant::now(), cpu_secs());
    let mut ids = fill(s, 0, runs - single, tasks, true, at_once);
    let (batch_secs, batch_cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - cpu);
    let (t, cpu) = (Instant::now(), cpu_secs());
    ids.extend(fill(s, runs - single, runs, tasks, false, 1));
    let (single_secs, single_cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - cpu);
    let results = |n: usize| n as f64 * tasks as f64;
    println!(
        "history: {runs} runs x {tasks} tasks ({} task results, {} measurements)",
        results(runs) as u64,
        results(runs) as u64 * 3
    );
    println!(
        "ingest, batch (finish_tasks, one call per run, {at_once} runs side by side): {:.0} task results/s ({} runs in {batch_secs:.1} s; {:.0} per CPU second)",
        results(runs - single) / batch_secs,
        runs - single,
        results(runs - single) / batch_cpu.max(0.01)
    );
    println!(
        "ingest, one at a time (finish_task + commit_now per run): {:.0} task results/s ({single} runs in {single_secs:.1} s; {:.0} per CPU second)",
        results(single) / single_secs,
        results(single) / single_cpu.max(0.01)
    );
    ids
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`: on a
/// shared machine the CPU time per result compares across sittings better than the
/// wall-clock rate.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after_name
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // Fields 14 and 15 (utime, stime) in clock ticks of 1/100 s; 12 and 13 after the name.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// One timed query.
type Query<'a> = Box<dyn Fn() + 'a>;

/// CPU time of the calling thread, in ms (the store's reads run on it).
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

/// Median and worst wall-clock time of `n` calls, and their median CPU time, in ms: on
/// a busy machine the wall clock counts the time other processes had the CPU.
fn time<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, f64, f64) {
    let (mut ms, mut cpu): (Vec<f64>, Vec<f64>) = (0..n)
        .map(|_| {
            let (t, c) = (Instant::now(), thread_cpu_ms());
            std::hint::black_box(f());
            (t.elapsed().as_secs_f64() * 1e3, thread_cpu_ms() - c)
        })
        .unzip();
    ms.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[ms.len() - 1], cpu[cpu.len() / 2])
}

fn main() {
    let runs = env_or("HISTORY_BENCH_RUNS", 2_000).max(2);
    let tasks = env_or("HISTORY_BENCH_TASKS", 100).max(6) as u32;
    let calls = env_or("HISTORY_BENCH_CALLS", 20).max(1);
    let at_once = env_or("HISTORY_BENCH_AT_ONCE", 1).max(1);
    // `HISTORY_BENCH_DIR`: a data directory kept between sittings; one holding a store
    // already is timed as it is (after its migrations), without writing to it.
    let kept = std::env::var_os("HISTORY_BENCH_DIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let dir = kept.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let filled = kept.is_some() && dir.join("testbay.db").exists();
    let t = Instant::now();
    let s = SqliteStore::open_in(&dir).unwrap();
    let ids: Vec<String> = if filled {
        println!(
            "history: the store in {} (opened in {:.1} s), not written",
            dir.display(),
            t.elapsed().as_secs_f64()
        );
        let runs = s.list_runs(&RunQuery::default()).unwrap().total as usize;
        (0..runs).map(|i| format!("r{i:06}")).collect()
    } else {
        ingest(&s, runs, tasks, at_once)
    };
    let runs = ids.len();
    // Closed and opened again: the WAL checkpointed into the database file and removed,
    // so the size is the database's alone.
    drop(s);
    let size: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let s = SqliteStore::open_in(&dir).unwrap();
    println!("database: {:.1} MiB", size as f64 / (1 << 20) as f64);
    if !filled {
        let (measurements, subs): (String, String) = rusqlite::Connection::open(s.path())
            .unwrap()
            .query_row(
                "SELECT measurements_json, sub_results_json FROM task_results
                 WHERE sub_results_json IS NOT NULL LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        // Whole waves of 16 runs of 100 results.
        let n = (runs * tasks as usize).min(200_000) / 1600 * 1600;
        if n == 0 {
            println!("SQLite alone: not measured (fewer than 1,600 results)");
        } else {
            let c = ceilings::measure(n, &measurements, &subs);
            println!(
                "SQLite alone, same schema and rows, one statement each ({n} rows): planned then finished {:.0} rows/s; finished rows inserted {:.0} rows/s",
                c.plan_finish, c.direct
            );
            println!("from Rust, 64 bound rows per statement, in waves of 16 runs of 100 (each run inserted with its plan and ended in commits of its own, a wave's results in one):");
            println!(
                "  planned, then finished (the store's shape): {:.0} rows/s",
                c.plan_finish_bound
            );
            println!(
                "  each result written once, no plan kept: {:.0} rows/s",
                c.direct_bound
            );
            println!(
                "  each result written once, its plan kept until then in a table of planned rows: {:.0} rows/s",
                c.one_write_with_plan
            );
        }
    }

    let (a, b) = (&ids[ids.len() - 3], &ids[ids.len() - 1]);
    let last_page = (runs as u32).saturating_sub(1) / 50 * 50;
    let cases: Vec<(&str, Query<'_>)> = vec![
        (
            "runs: first page (50)",
            Box::new(|| {
                s.list_runs(&RunQuery::default()).unwrap();
            }),
        ),
        (
            "runs: pack + DUT + failed only + text",
            Box::new(|| {
                s.list_runs(&RunQuery {
                    pack: Some(PACK.into()),
                    dut: Some("stb-03".into()),
                    failed_only: true,
                    text: Some("channel 0 ".into()),
                    ..Default::default()
                })
                .unwrap();
            }),
        ),
        (
            "runs: result=Failed",
            Box::new(|| {
                s.list_runs(&RunQuery {
                    result: Some("Failed".into()),
                    ..Default::default()
                })
                .unwrap();
            }),
        ),
        (
            "runs: sort=failures",
            Box::new(|| {
                s.list_runs(&RunQuery {
                    sort: RunSort::Failures,
                    ..Default::default()
                })
                .unwrap();
            }),
        ),
        (
            "runs: last page",
            Box::new(|| {
                s.list_runs(&RunQuery {
                    offset: last_page,
                    ..Default::default()
                })
                .unwrap();
            }),
        ),
        (
            "one run's detail (run and its tasks)",
            Box::new(|| {
                s.get_run(b).unwrap();
                s.run_tasks(b).unwrap();
            }),
        ),
        (
            "task history (100 newest)",
            Box::new(|| {
                s.task_history(&TaskHistoryQuery {
                    pack: PACK.into(),
                    task: "task5".into(),
                    ..Default::default()
                })
                .unwrap();
            }),
        ),
        (
            "task history, one DUT model",
            Box::new(|| {
                s.task_history(&TaskHistoryQuery {
                    pack: PACK.into(),
                    task: "task5".into(),
                    dut_model: Some("TP-5000".into()),
                    limit: 100,
                })
                .unwrap();
            }),
        ),
        (
            "measurement history (100 newest, one model)",
            Box::new(|| {
                s.measurement_history(&MeasurementQuery {
                    pack: PACK.into(),
                    task: "task5".into(),
                    sub_result: Some("channel_101".into()),
                    name: "snr_db".into(),
                    dut_model: Some("TP-4000".into()),
                    limit: 100,
                })
                .unwrap();
            }),
        ),
        (
            "yield (last 100 runs)",
            Box::new(|| {
                s.measurement_yield(PACK, 100).unwrap();
            }),
        ),
        (
            "flaky list (window 10)",
            Box::new(|| {
                flaky_tasks(
                    &s,
                    &FlakyQuery {
                        pack: Some(PACK.into()),
                        window: 10,
                    },
                )
                .unwrap();
            }),
        ),
        (
            "one run's tasks with measurements",
            Box::new(|| {
                s.run_tasks(b).unwrap();
            }),
        ),
        (
            "compare two runs",
            Box::new(|| {
                let (ra, rb) = (s.get_run(a).unwrap(), s.get_run(b).unwrap());
                let (ta, tb) = (s.run_tasks(a).unwrap(), s.run_tasks(b).unwrap());
                compare_runs(&ra, &ta, &rb, &tb, &CompareOptions::default());
            }),
        ),
    ];
    for (name, f) in &cases {
        let (med, worst, cpu) = time(calls, f);
        println!(
            "{name:<46} median {med:>8.2} ms   worst {worst:>8.2} ms   median CPU {cpu:>8.2} ms"
        );
    }
}
