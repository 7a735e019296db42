//! Results across runs in PostgreSQL: storing measurements, a run's measurements, one
//! task's history, one measurement's history, yield per DUT model and a pack's recent
//! results, baselines. The SQLite store's queries, in PostgreSQL's dialect.

use std::collections::BTreeMap;

use deadpool_postgres::ClientWrapper;
use tokio_postgres::{Client, Row};

use super::small;
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
        "(SELECT d->>'model' FROM jsonb_array_elements(r.duts_json::jsonb) d
          WHERE d->>'name' = t.lane LIMIT 1)"
    };
}

const INSERT: &str = "INSERT INTO measurements (task_result_id, pack_name, task, sub_result, name,
        value, units, low, high, comparison, passed)
     SELECT t.id, r.pack_name, t.task, $2::text, $3::text, $4::float8, $5::text, $6::float8,
            $7::float8, $8::text, $9::bool
     FROM task_results t JOIN runs r ON r.id = t.run_id WHERE t.id = $1";

const OF_RUN: &str = "SELECT m.task_result_id, m.sub_result, m.name, m.value, m.units, m.low,
        m.high, m.comparison, m.passed
     FROM task_results t JOIN measurements m ON m.task_result_id = t.id
     WHERE t.run_id = $1 ORDER BY m.id";

const TASK_HISTORY: &str = concat!(
    "SELECT t.run_id, r.created_ms, r.status, t.id, t.task, t.seq, t.lane, ",
    model_of_lane!(),
    ", t.grp, t.kind, t.state, t.result, t.failure, t.message, t.est_task_time, t.run_time,
     t.started_ms, t.flaky
     FROM task_results t JOIN runs r ON r.id = t.run_id
     WHERE t.task = $1 AND r.pack_name = $2 AND ($3::text IS NULL OR ",
    model_of_lane!(),
    " = $3::text)
     ORDER BY t.id DESC LIMIT $4"
);

const MEASUREMENT_HISTORY: &str = concat!(
    "SELECT t.run_id, r.created_ms, t.id, t.lane, ",
    model_of_lane!(),
    ", m.name, m.value, m.units, m.low, m.high, m.comparison, m.passed
     FROM measurements m JOIN task_results t ON t.id = m.task_result_id
          JOIN runs r ON r.id = t.run_id
     WHERE m.pack_name = $1 AND m.task = $2 AND m.sub_result = $3 AND m.name = $4
       AND ($5::text IS NULL OR ",
    model_of_lane!(),
    " = $5::text)
     ORDER BY m.id DESC LIMIT $6"
);

const LAST_RUNS: &str = "SELECT id, created_ms, status, duts_json FROM runs
     WHERE pack_name = $1 ORDER BY created_ms DESC LIMIT $2";

const RUN_YIELD: &str =
    "SELECT NULLIF(lane, ''), failed = 0 FROM measurement_tallies WHERE run_id = $1";

const TALLY: &str = "INSERT INTO measurement_tallies (run_id, lane, total, failed)
     SELECT t.run_id, COALESCE(t.lane, ''), $2::bigint, $3::bigint FROM task_results t WHERE t.id = $1
     ON CONFLICT (run_id, lane) DO UPDATE
       SET total = measurement_tallies.total + excluded.total,
           failed = measurement_tallies.failed + excluded.failed";

const RUN_DONE: &str =
    "SELECT t.run_id, 0::bigint, '', t.id, t.task, t.seq, t.lane, NULL::text, t.grp,
        t.kind, t.state, t.result, t.failure, NULL::text, t.est_task_time, t.run_time,
        t.started_ms, t.flaky
     FROM task_results t WHERE t.run_id = $1 AND t.state = 'done' ORDER BY t.seq";

/// Store measurements of one task occurrence (or of its sub-result), with their verdicts.
pub(super) async fn insert(
    c: &ClientWrapper,
    task_id: i64,
    sub_result: Option<&str>,
    measurements: &[Measurement],
) -> Result<()> {
    if measurements.is_empty() {
        return Ok(());
    }
    let stmt = c.prepare_cached(INSERT).await?;
    for m in measurements {
        let r = MeasurementRecord::judged(m);
        let n = c
            .execute(
                &stmt,
                &[
                    &task_id,
                    &sub_result.unwrap_or(""),
                    &r.name,
                    &r.value,
                    &r.units,
                    &r.low,
                    &r.high,
                    &r.comparison.as_str(),
                    &r.passed,
                ],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::InvalidQuery {
                key: "task_id",
                message: format!("no task occurrence {task_id}"),
            });
        }
    }
    let failed = measurements
        .iter()
        .filter(|m| m.passed() == Some(false))
        .count();
    let tally = c.prepare_cached(TALLY).await?;
    c.execute(
        &tally,
        &[&task_id, &(measurements.len() as i64), &(failed as i64)],
    )
    .await?;
    Ok(())
}

fn record(r: &Row, at: usize) -> MeasurementRecord {
    MeasurementRecord {
        name: r.get(at),
        value: r.get(at + 1),
        units: r.get(at + 2),
        low: r.get(at + 3),
        high: r.get(at + 4),
        comparison: Comparison::parse(r.get(at + 5)).unwrap_or(Comparison::LOG),
        passed: r.get(at + 6),
    }
}

/// Attach a run's stored measurements to its tasks and their sub-results.
pub(super) async fn attach(c: &Client, run_id: &str, tasks: &mut [TaskRecord]) -> Result<()> {
    let rows = c.query(OF_RUN, &[&run_id]).await?;
    let mut by_task: BTreeMap<i64, Vec<(String, MeasurementRecord)>> = BTreeMap::new();
    for r in &rows {
        by_task
            .entry(r.get(0))
            .or_default()
            .push((r.get(1), record(r, 2)));
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

fn entry(r: &Row) -> TaskHistoryEntry {
    TaskHistoryEntry {
        run_id: r.get(0),
        run_created_ms: r.get(1),
        run_status: RunStatus::parse(r.get(2)).unwrap_or(RunStatus::Errored),
        task_id: r.get(3),
        task: r.get(4),
        seq: small(r.get(5)),
        lane: r.get(6),
        dut_model: r.get(7),
        group: r.get(8),
        kind: TaskKind::parse(r.get(9)).unwrap_or(TaskKind::Test),
        state: match r.get::<_, &str>(10) {
            "running" => StoredTaskState::Running,
            "done" => StoredTaskState::Done,
            _ => StoredTaskState::Pending,
        },
        result: r.get(11),
        failure: r.get(12),
        message: r.get(13),
        est_task_time: r.get(14),
        run_time: r.get(15),
        started_ms: r.get(16),
        flaky: r.get(17),
    }
}

pub(super) async fn task_history(
    c: &Client,
    q: &TaskHistoryQuery,
) -> Result<Vec<TaskHistoryEntry>> {
    let limit = history_limit(q.limit) as i64;
    let rows = c
        .query(TASK_HISTORY, &[&q.task, &q.pack, &q.dut_model, &limit])
        .await?;
    Ok(rows.iter().map(entry).collect())
}

pub(super) async fn measurement_history(
    c: &Client,
    q: &MeasurementQuery,
) -> Result<Vec<MeasurementPoint>> {
    let limit = history_limit(q.limit) as i64;
    let rows = c
        .query(
            MEASUREMENT_HISTORY,
            &[
                &q.pack,
                &q.task,
                &q.sub_result.as_deref().unwrap_or(""),
                &q.name,
                &q.dut_model,
                &limit,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| MeasurementPoint {
            run_id: r.get(0),
            run_created_ms: r.get(1),
            task_id: r.get(2),
            lane: r.get(3),
            dut_model: r.get(4),
            measurement: record(r, 5),
        })
        .collect())
}

/// A pack's last runs: id, created, status, and the model of each DUT (lane).
struct LastRun {
    id: String,
    created_ms: EpochMs,
    status: RunStatus,
    models: BTreeMap<String, Option<String>>,
}

async fn last_runs(c: &Client, pack: &str, last_runs: u32) -> Result<Vec<LastRun>> {
    let limit = history_limit(last_runs) as i64;
    let rows = c.query(LAST_RUNS, &[&pack, &limit]).await?;
    let mut out = Vec::new();
    for r in &rows {
        let duts: Vec<DutTarget> =
            serde_json::from_str(r.get::<_, &str>(3)).map_err(|e| StoreError::Json {
                what: "runs.duts_json",
                source: e,
            })?;
        out.push(LastRun {
            id: r.get(0),
            created_ms: r.get(1),
            status: RunStatus::parse(r.get(2)).unwrap_or(RunStatus::Errored),
            models: duts.into_iter().map(|d| (d.name, d.model)).collect(),
        });
    }
    Ok(out)
}

pub(super) async fn measurement_yield(c: &Client, pack: &str, last: u32) -> Result<Vec<YieldRow>> {
    let stmt = c.prepare(RUN_YIELD).await?;
    // model -> (runs, runs all passed); a run counts once per model it ran on.
    let mut by_model: BTreeMap<Option<String>, (u32, u32)> = BTreeMap::new();
    for run in last_runs(c, pack, last).await? {
        let mut per_model: BTreeMap<Option<String>, bool> = BTreeMap::new();
        for r in c.query(&stmt, &[&run.id]).await? {
            let lane: Option<String> = r.get(0);
            let passed: bool = r.get(1);
            let model = lane.and_then(|l| run.models.get(&l).cloned().flatten());
            *per_model.entry(model).or_insert(true) &= passed;
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

pub(super) async fn recent_results(
    c: &Client,
    pack: &str,
    window: u32,
    most_runs: u32,
) -> Result<Vec<TaskHistoryEntry>> {
    // Newest first: a run is read when one of its models still lacks `window` runs.
    let mut per_model: BTreeMap<Option<String>, u32> = BTreeMap::new();
    let mut chosen = Vec::new();
    for run in last_runs(c, pack, most_runs).await? {
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
    let stmt = c.prepare(RUN_DONE).await?;
    let mut out = Vec::new();
    for run in chosen {
        for r in c.query(&stmt, &[&run.id]).await? {
            let mut e = entry(&r);
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

pub(super) async fn packs(c: &Client) -> Result<Vec<String>> {
    let rows = c
        .query(
            "SELECT DISTINCT pack_name COLLATE \"C\" FROM runs ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub(super) async fn pin_baseline(
    c: &Client,
    run_id: &str,
    dut_model: Option<&str>,
    now: EpochMs,
) -> Result<Baseline> {
    let found = c
        .query_opt(
            "SELECT pack_name, duts_json::jsonb->0->>'model' FROM runs WHERE id = $1",
            &[&run_id],
        )
        .await?;
    let Some(row) = found else {
        return Err(StoreError::RunNotFound(run_id.into()));
    };
    let pack: String = row.get(0);
    let first_model: Option<String> = row.get(1);
    let model = dut_model.map(str::to_string).or(first_model);
    c.execute(
        "INSERT INTO baselines (pack_name, dut_model, run_id, pinned_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (pack_name, dut_model) DO UPDATE SET run_id = $3, pinned_ms = $4",
        &[&pack, &model.as_deref().unwrap_or(""), &run_id, &now],
    )
    .await?;
    Ok(Baseline {
        pack,
        dut_model: model,
        run_id: run_id.into(),
        pinned_ms: now,
    })
}

pub(super) async fn unpin_baseline(
    c: &Client,
    pack: &str,
    dut_model: Option<&str>,
) -> Result<bool> {
    let n = c
        .execute(
            "DELETE FROM baselines WHERE pack_name = $1 AND dut_model = $2",
            &[&pack, &dut_model.unwrap_or("")],
        )
        .await?;
    Ok(n > 0)
}

pub(super) async fn baselines(c: &Client, pack: Option<&str>) -> Result<Vec<Baseline>> {
    let rows = c
        .query(
            "SELECT pack_name, dut_model, run_id, pinned_ms FROM baselines
             WHERE $1::text IS NULL OR pack_name = $1::text
             ORDER BY pack_name COLLATE \"C\", dut_model COLLATE \"C\"",
            &[&pack],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let model: String = r.get(1);
            Baseline {
                pack: r.get(0),
                dut_model: (!model.is_empty()).then_some(model),
                run_id: r.get(2),
                pinned_ms: r.get(3),
            }
        })
        .collect())
}
