//! What SQLite itself does with the history benchmark's rows on this machine, in the same
//! sitting (`#[path = "ceilings.rs"] mod ceilings;` in `history.rs`): each figure on a
//! fresh store of the store's schema, on a connection with the store's writer settings,
//! with the ingest's row contents. The store's ingest is read against these: no code
//! around SQLite writes the same rows in the same shape faster.

use std::time::Instant;

use rusqlite::{Connection, ToSql};
use testbay_engine::store::SqliteStore;

/// Rows per second of each way of writing the rows.
pub struct Ceilings {
    /// Planned rows inserted, then finished, by one statement each, each committed once
    /// (the store's shape, with no binding and no commit but those two).
    pub plan_finish: f64,
    /// Finished rows inserted by one statement.
    pub direct: f64,
    /// The store's shape from Rust, in [`waves`]: each run's row and planned rows
    /// inserted and committed, the wave's rows finished through bound 64-row
    /// `UPDATE … FROM (VALUES …)` statements in one commit, each run's end committed.
    pub plan_finish_bound: f64,
    /// Finished rows inserted once from Rust through bound 64-row statements, in
    /// [`waves`]: a store writing each result once, with no plan kept anywhere.
    pub direct_bound: f64,
    /// The one-write shape with the plan kept until then, in [`waves`]: a run's planned
    /// rows inserted with it into a table of their own, each result inserted from its
    /// plan row and the plan row deleted. What that redesign of the store could reach,
    /// before any work of the store's own (reading occurrences, JSON, tallies).
    pub one_write_with_plan: f64,
}

/// Runs in a wave, written side by side as `bench/history.sh` has the ingest write them
/// (`AT_ONCE`, 16 by default), whatever the ingest was told.
const RUNS_PER_WAVE: usize = 16;
/// Task results per run (`TASKS`, 100 by default), whatever the ingest was told.
const TASKS: usize = 100;
/// Rows bound in one statement.
const CHUNK: usize = 64;

const ROWS: &str =
    "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < ?1 - 1)";
const RUN_COLS: &str = "id, pack_name, pack_version, content_hash, pack_dir, groups_json,
    duts_json, params_json, resource_mode, coverage_mode, status, created_ms";
const RUN_VALUES: &str = "'p', '1', 'h', '/x', '[]', '[]', '{}', 'all', 'dut', 'running', 1";
const FINISHED_COLS: &str = "run_id, seq, lane, task, kind, grp, est_task_time, state, result,
    failure, message, run_time, started_ms, finished_ms, measurements_json, sub_results_json";

/// The [`Ceilings`] for `n` rows (a multiple of a wave's 1,600), `measurements` and
/// `subs` being the arrays the ingest wrote.
pub fn measure(n: usize, measurements: &str, subs: &str) -> Ceilings {
    let (_d1, c) = fresh(n, true);
    let plan = one_statement(
        &c,
        &format!(
            "{ROWS} INSERT INTO task_results (run_id, seq, lane, task, kind, grp, est_task_time)
             SELECT printf('f%06d', i / 100), i % 100, 'stb-01', 'task' || (i % 100), 'test',
                 'smoke', 3.0 FROM k"
        ),
        &[&n],
    );
    let finish = one_statement(
        &c,
        "UPDATE task_results SET state = 'done', result = 'Passed', failure = 0,
             message = 'channel ' || seq || ' checked', run_time = 2.5, started_ms = 1,
             finished_ms = 2, measurements_json = ?1, sub_results_json = ?2",
        &[&measurements, &subs],
    );
    let (_d2, c) = fresh(n, true);
    let direct = one_statement(
        &c,
        &format!(
            "{ROWS} INSERT INTO task_results ({FINISHED_COLS})
             SELECT printf('f%06d', i / 100), i % 100, 'stb-01', 'task' || (i % 100), 'test',
                 'smoke', 3.0, 'done', 'Passed', 0, 'channel ' || (i % 100) || ' checked', 2.5,
                 1, 2, ?2, ?3 FROM k"
        ),
        &[&n, &measurements, &subs],
    );
    let results = Results { measurements, subs };

    let (_d3, c) = fresh(n, false);
    let plan_finish_bound = waves(
        &c,
        n,
        |c, run, _first| {
            insert_chunked(c, &planned(run, 0), 4, |sql| {
                format!(
                    "INSERT INTO task_results (run_id, seq, lane, task, kind, grp, est_task_time)
                     VALUES {}",
                    sql.replace("?)", "?, 'test', 'smoke', 3.0)")
                )
            });
        },
        |c, rows| {
            results.bind(c, rows, |values| {
                format!(
                    "UPDATE task_results SET state = 'done', result = v.column2,
                         failure = v.column3, message = v.column4, run_time = v.column5,
                         started_ms = v.column6, finished_ms = v.column7,
                         measurements_json = v.column8, sub_results_json = v.column9
                     FROM (VALUES {values}) AS v WHERE task_results.id = v.column1"
                )
            });
        },
    );

    let (_d4, c) = fresh(n, false);
    let direct_bound = waves(
        &c,
        n,
        |_, _, _| {},
        |c, ids| {
            // The run, seq and task each row's id stands for, as the planned rows hold them.
            results.bind(c, ids, |values| {
                format!(
                    "INSERT INTO task_results (id, {FINISHED_COLS})
                     SELECT v.column1, printf('f%06d', (v.column1 - 1) / {TASKS}),
                         (v.column1 - 1) % {TASKS}, 'stb-01', 'task' || ((v.column1 - 1) % {TASKS}),
                         'test', 'smoke', 3.0, 'done', v.column2, v.column3, v.column4, v.column5,
                         v.column6, v.column7, v.column8, v.column9
                     FROM (VALUES {values}) AS v"
                )
            });
        },
    );

    let (_d5, c) = fresh(n, false);
    c.execute_batch(
        "CREATE TABLE plan (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, seq INTEGER NOT NULL,
             lane TEXT, task TEXT NOT NULL)",
    )
    .unwrap();
    let one_write_with_plan = waves(
        &c,
        n,
        |c, run, first| {
            insert_chunked(c, &planned(run, first), 5, |values| {
                format!("INSERT INTO plan (id, run_id, seq, lane, task) VALUES {values}")
            });
        },
        |c, rows| {
            results.bind(c, rows, |values| {
                format!(
                    "INSERT INTO task_results (id, {FINISHED_COLS})
                     SELECT p.id, p.run_id, p.seq, p.lane, p.task, 'test', 'smoke', 3.0, 'done',
                         v.column2, v.column3, v.column4, v.column5, v.column6, v.column7,
                         v.column8, v.column9
                     FROM (VALUES {values}) AS v JOIN plan p ON p.id = v.column1"
                )
            });
            c.prepare_cached("DELETE FROM plan WHERE id BETWEEN ?1 AND ?2")
                .unwrap()
                .execute([rows[0], rows[rows.len() - 1]])
                .unwrap();
        },
    );
    Ceilings {
        plan_finish: n as f64 / (plan + finish),
        direct: n as f64 / direct,
        plan_finish_bound,
        direct_bound,
        one_write_with_plan,
    }
}

/// A fresh store's database on a connection of the store writer's settings
/// (`SqliteStore::open`); with `runs`, the `n / 100` runs its rows belong to.
fn fresh(n: usize, runs: bool) -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open_in(dir.path()).unwrap());
    let c = Connection::open(dir.path().join("testbay.db")).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;
         PRAGMA cache_size=-32768; PRAGMA wal_autocheckpoint=16000;
         PRAGMA journal_size_limit=67108864; PRAGMA temp_store=MEMORY;",
    )
    .unwrap();
    if runs {
        c.execute(
            &format!(
                "{ROWS} INSERT INTO runs ({RUN_COLS}) SELECT printf('f%06d', i), {RUN_VALUES} FROM k"
            ),
            [n / TASKS],
        )
        .unwrap();
    }
    (dir, c)
}

/// Seconds to run `sql` in one transaction, the per-row tallies paused as the store's
/// bulk writes pause them.
fn one_statement(c: &Connection, sql: &str, args: &[&dyn ToSql]) -> f64 {
    let t = Instant::now();
    c.execute_batch("BEGIN; INSERT INTO tally_paused VALUES (1);")
        .unwrap();
    c.execute(sql, args).unwrap();
    c.execute_batch("DELETE FROM tally_paused; COMMIT;")
        .unwrap();
    t.elapsed().as_secs_f64()
}

/// Rows per second of `n` rows written in waves of [`RUNS_PER_WAVE`] runs, as the ingest
/// writes them: each run's row and `plan` (given the run and the id its first task gets)
/// in a transaction of its own; then the wave's results by `finish`, given chunks of
/// their ids, in one transaction; then each run's end, committed by itself.
fn waves(
    c: &Connection,
    n: usize,
    plan: impl Fn(&Connection, &str, i64),
    finish: impl Fn(&Connection, &[i64]),
) -> f64 {
    assert_eq!(n % (RUNS_PER_WAVE * TASKS), 0, "whole waves only");
    let t = Instant::now();
    let mut next_id = 1;
    for wave in 0..n / (RUNS_PER_WAVE * TASKS) {
        let runs: Vec<String> = (0..RUNS_PER_WAVE)
            .map(|r| format!("f{:06}", wave * RUNS_PER_WAVE + r))
            .collect();
        for run in &runs {
            c.execute_batch("BEGIN IMMEDIATE; INSERT INTO tally_paused VALUES (1);")
                .unwrap();
            c.prepare_cached(&format!(
                "INSERT INTO runs ({RUN_COLS}) VALUES (?1, {RUN_VALUES})"
            ))
            .unwrap()
            .execute([run])
            .unwrap();
            plan(c, run, next_id);
            next_id += TASKS as i64;
            c.execute_batch("DELETE FROM tally_paused; COMMIT;")
                .unwrap();
        }
        c.execute_batch("BEGIN IMMEDIATE; INSERT INTO tally_paused VALUES (1);")
            .unwrap();
        let first = next_id - (RUNS_PER_WAVE * TASKS) as i64;
        let ids: Vec<i64> = (first..next_id).collect();
        for chunk in ids.chunks(CHUNK) {
            finish(c, chunk);
        }
        c.execute_batch("DELETE FROM tally_paused; COMMIT;")
            .unwrap();
        for run in &runs {
            c.prepare_cached("UPDATE runs SET status = 'completed', finished_ms = 3 WHERE id = ?1")
                .unwrap()
                .execute([run])
                .unwrap();
        }
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// A run's planned rows: (id from `first`, run, seq, lane, task).
fn planned(run: &str, first: i64) -> Vec<(i64, String, i64, &'static str, String)> {
    (0..TASKS as i64)
        .map(|k| (first + k, run.to_string(), k, "stb-01", format!("task{k}")))
        .collect()
}

/// Insert `rows` in chunks of [`CHUNK`] through `sql` (given a chunk's placeholders), binding
/// each row's last `cols` values (all five, or all but the id).
fn insert_chunked(
    c: &Connection,
    rows: &[(i64, String, i64, &'static str, String)],
    cols: usize,
    sql: impl Fn(&str) -> String,
) {
    for chunk in rows.chunks(CHUNK) {
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * cols);
        for (id, run, seq, lane, task) in chunk {
            let all: [&dyn ToSql; 5] = [id, run, seq, lane, task];
            args.extend(&all[5 - cols..]);
        }
        c.prepare_cached(&sql(&placeholders(cols, chunk.len())))
            .unwrap()
            .execute(args.as_slice())
            .unwrap();
    }
}

/// The finished contents every row gets.
struct Results<'a> {
    measurements: &'a str,
    subs: &'a str,
}

impl Results<'_> {
    /// Run `sql` (given a chunk's `VALUES` placeholders) with `ids`' results bound: id,
    /// result, failure, message, run time, start, finish, measurements, sub-results.
    fn bind(&self, c: &Connection, ids: &[i64], sql: impl Fn(&str) -> String) {
        let messages: Vec<String> = ids.iter().map(|&id| message(id as usize - 1)).collect();
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(ids.len() * 9);
        for (id, message) in ids.iter().zip(&messages) {
            args.extend([
                id as &dyn ToSql,
                &"Passed",
                &0,
                message,
                &2.5,
                &1,
                &2,
                &self.measurements,
                &self.subs,
            ]);
        }
        let written = c
            .prepare_cached(&sql(&placeholders(9, ids.len())))
            .unwrap()
            .execute(args.as_slice())
            .unwrap();
        assert_eq!(written, ids.len(), "every row of the chunk written");
    }
}

/// Row `i`'s message.
fn message(i: usize) -> String {
    format!("channel {} checked", i % TASKS)
}

/// `rows` groups of `cols` placeholders.
fn placeholders(cols: usize, rows: usize) -> String {
    vec![format!("({})", vec!["?"; cols].join(",")); rows].join(",")
}
