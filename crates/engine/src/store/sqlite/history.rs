//! Results across runs in SQLite: storing measurements, a run's measurements, one task's
//! history, one measurement's history, yield per DUT model and a pack's recent results.
//! Every query starts from an index (`measurements_series`, `task_results_task`,
//! `runs_pack_created`); [`PLANNED`] lists them for the test that reads their plans.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::clock::EpochMs;
use crate::measure::{Comparison, Measurement};
use crate::model::DutTarget;
use crate::outcome::RunStatus;
use crate::store::{
    history_limit, Baseline, MeasurementPoint, MeasurementQuery, MeasurementRecord, Result,
    StoreError, StoredTaskState, TaskHistoryEntry, TaskHistoryQuery, TaskKind, TaskRecord,
    YieldRow,
};

/// The DUT model of a task row `t`'s lane in run `r`, from the run's DUTs.
macro_rules! model_of_lane {
    () => {
        "(SELECT json_extract(d.value, '$.model') FROM json_each(r.duts_json) d
          WHERE json_extract(d.value, '$.name') = t.lane)"
    };
}

const INSERT: &str = "INSERT INTO measurements (task_result_id, pack_name, task, sub_result, name,
        value, units, low, high, comparison, passed)
     SELECT t.id, r.pack_name, t.task, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9
     FROM task_results t JOIN runs r ON r.id = t.run_id WHERE t.id = ?1";

const OF_RUN: &str = "SELECT m.task_result_id, m.sub_result, m.name, m.value, m.units, m.low,
        m.high, m.comparison, m.passed
     FROM task_results t JOIN measurements m ON m.task_result_id = t.id
     WHERE t.run_id = ?1 ORDER BY m.id";

const TASK_HISTORY: &str = concat!(
    "SELECT t.run_id, r.created_ms, r.status, t.id, t.task, t.seq, t.lane, ",
    model_of_lane!(),
    ", t.grp, t.kind, t.state, t.result, t.failure, t.message, t.est_task_time, t.run_time,
     t.started_ms, t.flaky
     FROM task_results t JOIN runs r ON r.id = t.run_id
     WHERE t.task = ?1 AND r.pack_name = ?2 AND (?3 IS NULL OR ",
    model_of_lane!(),
    " = ?3)
     ORDER BY t.id DESC LIMIT ?4"
);

const MEASUREMENT_HISTORY: &str = concat!(
    "SELECT t.run_id, r.created_ms, t.id, t.lane, ",
    model_of_lane!(),
    ", m.name, m.value, m.units, m.low, m.high, m.comparison, m.passed
     FROM measurements m JOIN task_results t ON t.id = m.task_result_id
          JOIN runs r ON r.id = t.run_id
     WHERE m.pack_name = ?1 AND m.task = ?2 AND m.sub_result = ?3 AND m.name = ?4
       AND (?5 IS NULL OR ",
    model_of_lane!(),
    " = ?5)
     ORDER BY m.id DESC LIMIT ?6"
);

/// A pack's last runs, for yield and recent results; the DUT models of their lanes are
/// read from each run's DUT list once, in Rust, not per row.
const LAST_RUNS: &str = "SELECT id, created_ms, status, duts_json FROM runs
     WHERE pack_name = ?1 ORDER BY created_ms DESC LIMIT ?2";

/// Per lane of one run: whether every measurement there passed (the write-time tally).
const RUN_YIELD: &str =
    "SELECT NULLIF(lane, ''), failed = 0 FROM measurement_tallies WHERE run_id = ?1";

/// Count measurements of an occurrence in its run's tally for its lane.
const TALLY: &str = "INSERT INTO measurement_tallies (run_id, lane, total, failed)
     SELECT t.run_id, COALESCE(t.lane, ''), ?2, ?3 FROM task_results t WHERE t.id = ?1
     ON CONFLICT (run_id, lane) DO UPDATE
       SET total = total + excluded.total, failed = failed + excluded.failed";

/// One run's finished occurrences, in plan order, without their messages.
const RUN_DONE: &str = "SELECT t.run_id, 0, '', t.id, t.task, t.seq, t.lane, NULL, t.grp,
        t.kind, t.state, t.result, t.failure, NULL, t.est_task_time, t.run_time,
        t.started_ms, t.flaky
     FROM task_results t WHERE t.run_id = ?1 AND t.state = 'done' ORDER BY t.seq";

const PACKS: &str = "SELECT DISTINCT pack_name FROM runs ORDER BY pack_name";

/// The queries of this module by name, for reading their plans.
pub const PLANNED: &[(&str, &str)] = &[
    ("run_measurements", OF_RUN),
    ("task_history", TASK_HISTORY),
    ("measurement_history", MEASUREMENT_HISTORY),
    ("last_runs", LAST_RUNS),
    ("run_yield", RUN_YIELD),
    ("tally", TALLY),
    ("run_done", RUN_DONE),
    ("packs", PACKS),
];

/// `EXPLAIN QUERY PLAN` of one of [`PLANNED`], one line per step.
pub(super) fn plan(conn: &Connection, sql: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let nulls: Vec<Option<i64>> = vec![None; stmt.parameter_count()];
    let rows = stmt.query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Store measurements of one task occurrence (or of its sub-result), with their verdicts.
pub(super) fn insert(
    conn: &Connection,
    task_id: i64,
    sub_result: Option<&str>,
    measurements: &[Measurement],
) -> Result<()> {
    let mut stmt = conn.prepare_cached(INSERT)?;
    for m in measurements {
        let r = MeasurementRecord::judged(m);
        let n = stmt.execute(params![
            task_id,
            sub_result.unwrap_or(""),
            r.name,
            r.value,
            r.units,
            r.low,
            r.high,
            r.comparison.as_str(),
            r.passed,
        ])?;
        if n == 0 {
            return Err(StoreError::InvalidQuery {
                key: "task_id",
                message: format!("no task occurrence {task_id}"),
            });
        }
    }
    if !measurements.is_empty() {
        let failed = measurements
            .iter()
            .filter(|m| m.passed() == Some(false))
            .count();
        conn.prepare_cached(TALLY)?
            .execute(params![task_id, measurements.len(), failed])?;
    }
    Ok(())
}

fn record(r: &Row<'_>, at: usize) -> rusqlite::Result<MeasurementRecord> {
    Ok(MeasurementRecord {
        name: r.get(at)?,
        value: r.get(at + 1)?,
        units: r.get(at + 2)?,
        low: r.get(at + 3)?,
        high: r.get(at + 4)?,
        comparison: Comparison::parse(&r.get::<_, String>(at + 5)?).unwrap_or(Comparison::LOG),
        passed: r.get::<_, Option<i64>>(at + 6)?.map(|v| v != 0),
    })
}

/// Attach a run's stored measurements to its tasks and their sub-results.
pub(super) fn attach(conn: &Connection, run_id: &str, tasks: &mut [TaskRecord]) -> Result<()> {
    let mut stmt = conn.prepare_cached(OF_RUN)?;
    let mut by_task: BTreeMap<i64, Vec<(String, MeasurementRecord)>> = BTreeMap::new();
    let rows = stmt.query_map([run_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, record(r, 2)?))
    })?;
    for row in rows {
        let (id, sub, m) = row?;
        by_task.entry(id).or_default().push((sub, m));
    }
    for t in tasks {
        let Some(ms) = by_task.remove(&t.id) else {
            continue;
        };
        for (sub, m) in ms {
            if sub.is_empty() {
                t.measurements.push(m);
            } else if let Some(s) = t.sub_results.iter_mut().find(|s| s.name == sub) {
                s.measurements.push(m);
            }
        }
    }
    Ok(())
}

fn entry(r: &Row<'_>) -> rusqlite::Result<TaskHistoryEntry> {
    Ok(TaskHistoryEntry {
        run_id: r.get(0)?,
        run_created_ms: r.get(1)?,
        run_status: RunStatus::parse(&r.get::<_, String>(2)?).unwrap_or(RunStatus::Errored),
        task_id: r.get(3)?,
        task: r.get(4)?,
        seq: r.get(5)?,
        lane: r.get(6)?,
        dut_model: r.get(7)?,
        group: r.get(8)?,
        kind: TaskKind::parse(&r.get::<_, String>(9)?).unwrap_or(TaskKind::Test),
        state: match r.get::<_, String>(10)?.as_str() {
            "running" => StoredTaskState::Running,
            "done" => StoredTaskState::Done,
            _ => StoredTaskState::Pending,
        },
        result: r.get(11)?,
        failure: r.get::<_, Option<i64>>(12)?.map(|v| v != 0),
        message: r.get(13)?,
        est_task_time: r.get(14)?,
        run_time: r.get(15)?,
        started_ms: r.get(16)?,
        flaky: r.get::<_, i64>(17)? != 0,
    })
}

pub(super) fn task_history(
    conn: &Connection,
    q: &TaskHistoryQuery,
) -> Result<Vec<TaskHistoryEntry>> {
    let mut stmt = conn.prepare_cached(TASK_HISTORY)?;
    let rows = stmt.query_map(
        params![q.task, q.pack, q.dut_model, history_limit(q.limit)],
        entry,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn measurement_history(
    conn: &Connection,
    q: &MeasurementQuery,
) -> Result<Vec<MeasurementPoint>> {
    let mut stmt = conn.prepare_cached(MEASUREMENT_HISTORY)?;
    let rows = stmt.query_map(
        params![
            q.pack,
            q.task,
            q.sub_result.as_deref().unwrap_or(""),
            q.name,
            q.dut_model,
            history_limit(q.limit)
        ],
        |r| {
            Ok(MeasurementPoint {
                run_id: r.get(0)?,
                run_created_ms: r.get(1)?,
                task_id: r.get(2)?,
                lane: r.get(3)?,
                dut_model: r.get(4)?,
                measurement: record(r, 5)?,
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A pack's last runs: id, created, status, and the model of each DUT (lane).
struct LastRun {
    id: String,
    created_ms: EpochMs,
    status: RunStatus,
    models: BTreeMap<String, Option<String>>,
}

fn last_runs(conn: &Connection, pack: &str, last_runs: u32) -> Result<Vec<LastRun>> {
    let mut stmt = conn.prepare_cached(LAST_RUNS)?;
    let rows = stmt.query_map(params![pack, history_limit(last_runs)], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, EpochMs>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, created_ms, status, duts) = row?;
        let duts: Vec<DutTarget> = serde_json::from_str(&duts).map_err(|e| StoreError::Json {
            what: "runs.duts_json",
            source: e,
        })?;
        out.push(LastRun {
            id,
            created_ms,
            status: RunStatus::parse(&status).unwrap_or(RunStatus::Errored),
            models: duts.into_iter().map(|d| (d.name, d.model)).collect(),
        });
    }
    Ok(out)
}

pub(super) fn measurement_yield(conn: &Connection, pack: &str, last: u32) -> Result<Vec<YieldRow>> {
    let mut stmt = conn.prepare_cached(RUN_YIELD)?;
    // model -> (runs, runs all passed); a run counts once per model it ran on.
    let mut by_model: BTreeMap<Option<String>, (u32, u32)> = BTreeMap::new();
    for run in last_runs(conn, pack, last)? {
        let mut per_model: BTreeMap<Option<String>, bool> = BTreeMap::new();
        let rows = stmt.query_map([&run.id], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)? != 0))
        })?;
        for row in rows {
            let (lane, passed) = row?;
            let model = lane.and_then(|l| run.models.get(&l).cloned().flatten());
            let e = per_model.entry(model).or_insert(true);
            *e &= passed;
        }
        for (model, passed) in per_model {
            let e = by_model.entry(model).or_default();
            e.0 += 1;
            e.1 += passed as u32;
        }
    }
    Ok(by_model
        .into_iter()
        .map(|(dut_model, (runs, passed_runs))| YieldRow {
            pack: pack.to_string(),
            dut_model,
            runs,
            passed_runs,
            yield_rate: passed_runs as f64 / runs.max(1) as f64,
        })
        .collect())
}

pub(super) fn recent_results(
    conn: &Connection,
    pack: &str,
    window: u32,
    most_runs: u32,
) -> Result<Vec<TaskHistoryEntry>> {
    // Newest first: a run is read when one of its models still lacks `window` runs.
    let mut per_model: BTreeMap<Option<String>, u32> = BTreeMap::new();
    let mut chosen = Vec::new();
    for run in last_runs(conn, pack, most_runs)? {
        let mut models: Vec<Option<String>> = run.models.values().cloned().collect();
        if models.is_empty() {
            models.push(None);
        }
        if models
            .iter()
            .any(|m| per_model.get(m).copied().unwrap_or(0) < window)
        {
            for m in models {
                *per_model.entry(m).or_default() += 1;
            }
            chosen.push(run);
        }
    }
    chosen.reverse();
    let mut stmt = conn.prepare_cached(RUN_DONE)?;
    let mut out = Vec::new();
    for run in chosen {
        let rows = stmt.query_map([&run.id], entry)?;
        for row in rows {
            let mut e = row?;
            e.run_created_ms = run.created_ms;
            e.run_status = run.status;
            e.dut_model = e
                .lane
                .as_ref()
                .and_then(|l| run.models.get(l).cloned().flatten());
            out.push(e);
        }
    }
    Ok(out)
}

pub(super) fn packs(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(PACKS)?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn pin_baseline(
    conn: &Connection,
    run_id: &str,
    dut_model: Option<&str>,
    now: EpochMs,
) -> Result<Baseline> {
    let found = conn
        .query_row(
            "SELECT pack_name, json_extract(duts_json, '$[0].model') FROM runs WHERE id = ?1",
            [run_id],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
        )
        .optional()?;
    let Some((pack, first_model)) = found else {
        return Err(StoreError::RunNotFound(run_id.into()));
    };
    let model = dut_model.map(str::to_string).or(first_model);
    conn.execute(
        "INSERT INTO baselines (pack_name, dut_model, run_id, pinned_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (pack_name, dut_model) DO UPDATE SET run_id = ?3, pinned_ms = ?4",
        params![pack, model.as_deref().unwrap_or(""), run_id, now],
    )?;
    Ok(Baseline {
        pack,
        dut_model: model,
        run_id: run_id.into(),
        pinned_ms: now,
    })
}

pub(super) fn unpin_baseline(
    conn: &Connection,
    pack: &str,
    dut_model: Option<&str>,
) -> Result<bool> {
    let n = conn.execute(
        "DELETE FROM baselines WHERE pack_name = ?1 AND dut_model = ?2",
        params![pack, dut_model.unwrap_or("")],
    )?;
    Ok(n > 0)
}

pub(super) fn baselines(conn: &Connection, pack: Option<&str>) -> Result<Vec<Baseline>> {
    let mut stmt = conn.prepare_cached(
        "SELECT pack_name, dut_model, run_id, pinned_ms FROM baselines
         WHERE ?1 IS NULL OR pack_name = ?1 ORDER BY pack_name, dut_model",
    )?;
    let rows = stmt.query_map([pack], |r| {
        let model: String = r.get(1)?;
        Ok(Baseline {
            pack: r.get(0)?,
            dut_model: (!model.is_empty()).then_some(model),
            run_id: r.get(2)?,
            pinned_ms: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
