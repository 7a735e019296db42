//! Results across runs in SQLite: storing measurements, a run's measurements, one task's
//! history, one measurement's history, yield per DUT model and a pack's recent results.
//! A task result's measurements are one JSON array in its row (`measurements_json`, see
//! [`Stored`]). Every query starts from an index (`task_results_task` and
//! `task_results_task_open`, the task results' key (run_id, seq), `runs_pack_created`);
//! [`PLANNED`] lists them for the test that reads their plans.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::clock::EpochMs;
use crate::measure::Comparison;
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

/// A run's task results with measurements.
const OF_RUN: &str = "SELECT t.id, t.measurements_json FROM task_results t
     WHERE t.run_id = ?1 AND t.measurements_json IS NOT NULL";

/// One task's occurrences in one part of `task_results_task` (`$part`: the finished
/// rows, `t.state = 'done'`, or the others), newest first; [`TASK_HISTORY`] merges them.
macro_rules! task_history_part {
    ($part:literal) => {
        concat!(
            "SELECT t.run_id, r.created_ms, r.status, t.id, t.task, t.seq, t.lane, ",
            model_of_lane!(),
            ", t.grp, t.kind, t.state, t.result, t.failure, t.message, t.est_task_time, t.run_time,
             t.started_ms, t.flaky
             FROM task_results t JOIN runs r ON r.id = t.run_id
             WHERE t.task = ?1 AND ",
            $part,
            " AND r.pack_name = ?2 AND (?3 IS NULL OR ",
            model_of_lane!(),
            " = ?3)"
        )
    };
}

/// A task's occurrences, newest first: the finished ones (`task_results_task`) and the
/// others (`task_results_task_open`), merged (column 4 is the occurrence's id).
const TASK_HISTORY: &str = concat!(
    task_history_part!("t.state = 'done'"),
    " UNION ALL ",
    task_history_part!("t.state <> 'done'"),
    " ORDER BY 4 DESC LIMIT ?4"
);

/// The task's finished occurrences with measurements (measurements come with a finish),
/// newest first from `task_results_task`, each with its array; [`measurement_history`]
/// picks the points out of them (a JSON array read in Rust costs less than `json_each`
/// and a lookup per field). `?4`, the name as a JSON string ([`name_needle`]), passes
/// over the arrays without it.
const MEASUREMENT_HISTORY: &str = concat!(
    "SELECT t.run_id, r.created_ms, t.id, t.lane, ",
    model_of_lane!(),
    ", t.measurements_json
     FROM task_results t JOIN runs r ON r.id = t.run_id
     WHERE t.task = ?2 AND t.state = 'done' AND r.pack_name = ?1
       AND t.measurements_json IS NOT NULL
       AND (?4 IS NULL OR instr(t.measurements_json, ?4) > 0)
       AND (?3 IS NULL OR ",
    model_of_lane!(),
    " = ?3)
     ORDER BY t.id DESC"
);

/// A pack's last runs, for yield and recent results; the DUT models of their lanes are
/// read from each run's DUT list once, in Rust, not per row.
const LAST_RUNS: &str = "SELECT id, created_ms, status, duts_json FROM runs
     WHERE pack_name = ?1 ORDER BY created_ms DESC LIMIT ?2";

/// Per lane of one run: whether every measurement there passed (the write-time tally).
const RUN_YIELD: &str =
    "SELECT NULLIF(lane, ''), failed = 0 FROM measurement_tallies WHERE run_id = ?1";

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

/// One measurement as stored in `task_results.measurements_json`: `s` its sub-result
/// (omitted for the task's own), `n` name, `v` value, `u` units, `lo`/`hi` limits, `c`
/// comparison, `p` passed; absent values are omitted.
#[derive(serde::Serialize)]
struct Stored<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    s: &'a str,
    n: &'a str,
    v: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lo: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hi: Option<f64>,
    c: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<bool>,
}

/// [`Stored`] as read back.
#[derive(serde::Deserialize)]
struct Read {
    #[serde(default)]
    s: String,
    n: String,
    v: f64,
    u: Option<String>,
    lo: Option<f64>,
    hi: Option<f64>,
    c: String,
    p: Option<bool>,
}

impl Read {
    fn record(self) -> MeasurementRecord {
        MeasurementRecord {
            name: self.n,
            value: self.v,
            units: self.u,
            low: self.lo,
            high: self.hi,
            comparison: Comparison::parse(&self.c).unwrap_or(Comparison::LOG),
            passed: self.p,
        }
    }
}

/// A task result's `measurements_json`. An element that does not read as a measurement
/// (a value that was not a finite number, stored as `null`) is passed over, with a
/// warning, rather than hiding the others.
fn parse(json: &str) -> Result<Vec<Read>> {
    if let Ok(all) = serde_json::from_str(json) {
        return Ok(all);
    }
    let items: Vec<serde_json::Value> =
        serde_json::from_str(json).map_err(|e| StoreError::Json {
            what: "task_results.measurements_json",
            source: e,
        })?;
    Ok(items
        .into_iter()
        .filter_map(|v| {
            serde_json::from_value(v)
                .inspect_err(|e| tracing::warn!(error = %e, "a stored measurement does not read; passed over"))
                .ok()
        })
        .collect())
}

/// The JSON array of `measurements` (sub-result, `""` for the task's own; record), as
/// stored in `task_results.measurements_json`; `None` when there are none.
pub(super) fn to_json<'a>(
    measurements: impl IntoIterator<Item = (&'a str, &'a MeasurementRecord)>,
) -> Result<Option<String>> {
    let stored: Vec<Stored<'a>> = measurements
        .into_iter()
        .map(|(s, r)| Stored {
            s,
            n: &r.name,
            v: r.value,
            u: r.units.as_deref(),
            lo: r.low,
            hi: r.high,
            c: r.comparison.as_str(),
            p: r.passed,
        })
        .collect();
    if stored.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(&stored)
        .map(Some)
        .map_err(|e| StoreError::Json {
            what: "task_results.measurements_json",
            source: e,
        })
}

/// Attach a run's stored measurements to its tasks and their sub-results.
pub(super) fn attach(conn: &Connection, run_id: &str, tasks: &mut [TaskRecord]) -> Result<()> {
    let mut stmt = conn.prepare_cached(OF_RUN)?;
    let mut by_task: BTreeMap<i64, String> = BTreeMap::new();
    let rows = stmt.query_map([run_id], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?)))?;
    for row in rows {
        let (id, json) = row?;
        by_task.insert(id, json);
    }
    for t in tasks {
        let Some(json) = by_task.remove(&t.id) else {
            continue;
        };
        for mut m in parse(&json)? {
            let sub = std::mem::take(&mut m.s);
            if sub.is_empty() {
                t.measurements.push(m.record());
            } else if let Some(s) = t.sub_results.iter_mut().find(|s| s.name == sub) {
                s.measurements.push(m.record());
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

/// `name` quoted as every writer of `measurements_json` writes it (serde_json, and
/// SQLite's `json_object` in the migration), for a substring test; `None` (no test) for a
/// name with a character they might escape differently.
fn name_needle(name: &str) -> Option<String> {
    (!name
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control()))
    .then(|| format!("\"{name}\""))
}

/// One measurement's newest points, newest first (the later of one occurrence's first).
pub(super) fn measurement_history(
    conn: &Connection,
    q: &MeasurementQuery,
) -> Result<Vec<MeasurementPoint>> {
    let limit = history_limit(q.limit) as usize;
    let sub = q.sub_result.as_deref().unwrap_or("");
    let mut stmt = conn.prepare_cached(MEASUREMENT_HISTORY)?;
    let mut rows = stmt.query(params![q.pack, q.task, q.dut_model, name_needle(&q.name)])?;
    let mut out: Vec<MeasurementPoint> = Vec::new();
    while out.len() < limit {
        let Some(r) = rows.next()? else {
            break;
        };
        let json: String = r.get(5)?;
        let mut points = parse(&json)?
            .into_iter()
            .rev()
            .filter(|m| m.s == sub && m.n == q.name)
            .peekable();
        if points.peek().is_none() {
            continue;
        }
        let run_id: String = r.get(0)?;
        let run_created_ms: EpochMs = r.get(1)?;
        let task_id: i64 = r.get(2)?;
        let lane: Option<String> = r.get(3)?;
        let dut_model: Option<String> = r.get(4)?;
        for m in points {
            out.push(MeasurementPoint {
                run_id: run_id.clone(),
                run_created_ms,
                task_id,
                lane: lane.clone(),
                dut_model: dut_model.clone(),
                measurement: m.record(),
            });
        }
    }
    out.truncate(limit);
    Ok(out)
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
