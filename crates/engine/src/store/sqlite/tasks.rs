//! Task occurrences in SQLite: a phase's start, a finished task's result and
//! sub-results, and a run's task tree.

use std::collections::BTreeMap;

use rusqlite::types::ToSql;
use rusqlite::{params, Connection, OptionalExtension};

use super::{parse_opt_json, sub_results};
use crate::clock::EpochMs;
use crate::store::{
    paths, AttemptRecord, Result, SectionRecord, StoreError, StoredTaskState, TaskFinish, TaskKind,
    TaskPaths, TaskRecord,
};

/// Record a phase's start (lane, phase, paths, process group); the caller commits.
pub(super) fn phase_started(
    c: &Connection,
    task_id: i64,
    lane: &str,
    phase: &str,
    started_ms: EpochMs,
    pgid: Option<i32>,
    paths: &TaskPaths,
) -> Result<()> {
    let paths = &stored_paths(c, task_id, paths)?;
    c.prepare_cached(
        "UPDATE task_results SET state = 'running', lane = ?2, phase = ?3,
            started_ms = COALESCE(started_ms, ?4), pgid = ?5,
            task_dir = ?6, setup_log = ?7, main_log = ?8, teardown_log = ?9, artifacts_dir = ?10
         WHERE id = ?1",
    )?
    .execute(params![
        task_id,
        lane,
        phase,
        started_ms,
        pgid,
        paths.task_dir,
        paths.setup_log,
        paths.main_log,
        paths.teardown_log,
        paths.artifacts_dir
    ])?;
    Ok(())
}

/// The snapshot path of an occurrence's run, whose folder its paths are stored
/// relative to (`store::paths`).
const RUN_SNAPSHOT: &str =
    "SELECT r.snapshot_dir FROM task_results t JOIN runs r ON r.id = t.run_id
     WHERE t.id = ?1";

/// `paths` of occurrence `task_id` as stored; as given when none is set.
fn stored_paths(c: &Connection, task_id: i64, paths: &TaskPaths) -> Result<TaskPaths> {
    if *paths == TaskPaths::default() {
        return Ok(TaskPaths::default());
    }
    let snapshot: Option<String> = c
        .prepare_cached(RUN_SNAPSHOT)?
        .query_row([task_id], |r| r.get(0))
        .optional()?
        .flatten();
    Ok(paths::to_stored(
        paths,
        paths::run_folder(snapshot.as_deref()),
    ))
}

/// The task tree of one run, in plan order, with sub-results.
pub(super) fn of_run(conn: &Connection, run_id: &str) -> Result<Vec<TaskRecord>> {
    let snapshot: Option<String> = conn
        .prepare_cached("SELECT snapshot_dir FROM runs WHERE id = ?1")?
        .query_row([run_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::RunNotFound(run_id.into()))?;
    let folder = paths::run_folder(snapshot.as_deref());
    let mut stmt = conn.prepare(
        "SELECT id, run_id, seq, lane, task, kind, grp, description, state, result, failure,
                message, metadata_json, raw_result, est_task_time, run_time, run_time_delta,
                started_ms, finished_ms, setup_ms, main_ms, teardown_ms, exit_code, signal, phase,
                task_dir, setup_log, main_log, teardown_log, artifacts_dir, log_truncated, pgid,
                flaky, sub_results_json
         FROM task_results WHERE run_id = ?1 ORDER BY seq",
    )?;
    let rows: Vec<(TaskRecord, Option<String>)> = stmt
        .query_map([run_id], |r| {
            let task = TaskRecord {
                id: r.get(0)?,
                run_id: r.get(1)?,
                seq: r.get(2)?,
                lane: r.get(3)?,
                task: r.get(4)?,
                kind: TaskKind::parse(&r.get::<_, String>(5)?).unwrap_or(TaskKind::Test),
                group: r.get(6)?,
                description: r.get(7)?,
                state: match r.get::<_, String>(8)?.as_str() {
                    "running" => StoredTaskState::Running,
                    "done" => StoredTaskState::Done,
                    _ => StoredTaskState::Pending,
                },
                result: r.get(9)?,
                failure: r.get::<_, Option<i64>>(10)?.map(|v| v != 0),
                message: r.get(11)?,
                metadata: parse_opt_json(r.get(12)?),
                raw_result: r.get(13)?,
                est_task_time: r.get(14)?,
                run_time: r.get(15)?,
                run_time_delta: r.get(16)?,
                started_ms: r.get(17)?,
                finished_ms: r.get(18)?,
                setup_ms: r.get(19)?,
                main_ms: r.get(20)?,
                teardown_ms: r.get(21)?,
                exit_code: r.get(22)?,
                signal: r.get(23)?,
                phase: r.get(24)?,
                paths: TaskPaths {
                    task_dir: r.get(25)?,
                    setup_log: r.get(26)?,
                    main_log: r.get(27)?,
                    teardown_log: r.get(28)?,
                    artifacts_dir: r.get(29)?,
                },
                log_truncated: r.get::<_, i64>(30)? != 0,
                pgid: r.get(31)?,
                sub_results: Vec::new(),
                flaky: r.get::<_, i64>(32)? != 0,
                attempts: Vec::new(),
                measurements: Vec::new(),
                sections: Vec::new(),
            };
            Ok((task, r.get(33)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut tasks = Vec::with_capacity(rows.len());
    for (mut t, subs) in rows {
        paths::from_stored(&mut t.paths, folder);
        if let Some(json) = subs {
            t.sub_results = sub_results::parse(&json)?;
        }
        tasks.push(t);
    }
    let mut attempts_of = attempts_of_run(conn, run_id)?;
    for t in &mut tasks {
        if let Some(mut a) = attempts_of.remove(&t.id) {
            for x in &mut a {
                paths::from_stored(&mut x.paths, folder);
            }
            t.attempts = a;
        }
    }
    super::history::attach(conn, run_id, &mut tasks)?;
    let mut sec = conn.prepare(
        "SELECT s.task_result_id, s.phase, s.section_json
         FROM sections s JOIN task_results t ON t.id = s.task_result_id
         WHERE t.run_id = ?1
         ORDER BY s.task_result_id, CASE s.phase WHEN 'setup' THEN 0 WHEN 'main' THEN 1 ELSE 2 END, s.section_id",
    )?;
    let mut sections: BTreeMap<i64, Vec<SectionRecord>> = BTreeMap::new();
    let rows = sec.query_map([run_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (id, phase, json) = row?;
        // A row this version cannot read is left out rather than failing the run's read.
        if let Ok(section) = serde_json::from_str(&json) {
            sections
                .entry(id)
                .or_default()
                .push(SectionRecord { phase, section });
        }
    }
    for t in &mut tasks {
        if let Some(s) = sections.remove(&t.id) {
            t.sections = s;
        }
    }
    Ok(tasks)
}

/// The attempts of a run's retried tasks, per task row.
fn attempts_of_run(conn: &Connection, run_id: &str) -> Result<BTreeMap<i64, Vec<AttemptRecord>>> {
    let mut stmt = conn.prepare(
        "SELECT a.task_result_id, a.attempt, a.result, a.failure, a.message, a.started_ms,
                a.finished_ms, a.exit_code, a.signal, a.task_dir, a.setup_log, a.main_log,
                a.teardown_log, a.artifacts_dir
         FROM task_attempts a JOIN task_results t ON t.id = a.task_result_id
         WHERE t.run_id = ?1 ORDER BY a.task_result_id, a.attempt",
    )?;
    let rows = stmt.query_map([run_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            AttemptRecord {
                attempt: r.get(1)?,
                result: r.get(2)?,
                failure: r.get::<_, i64>(3)? != 0,
                message: r.get(4)?,
                started_ms: r.get(5)?,
                finished_ms: r.get(6)?,
                exit_code: r.get(7)?,
                signal: r.get(8)?,
                paths: TaskPaths {
                    task_dir: r.get(9)?,
                    setup_log: r.get(10)?,
                    main_log: r.get(11)?,
                    teardown_log: r.get(12)?,
                    artifacts_dir: r.get(13)?,
                },
            },
        ))
    })?;
    let mut by_id: BTreeMap<i64, Vec<AttemptRecord>> = BTreeMap::new();
    for row in rows {
        let (id, a) = row?;
        by_id.entry(id).or_default().push(a);
    }
    Ok(by_id)
}

/// What finishing an occurrence sets, from its row `v` of a `VALUES` list
/// (`batch::finish_sql`; `v.column1` is its id, the rest as [`FinishRow::values`] lists
/// them).
/// `v.column24`, a JSON array of measurements (`history::to_json`) or NULL, goes after
/// those it has (a retry's are kept, as rows were: the array spliced, `[a] + [b]` →
/// `[a,b]`); `v.column25`, a JSON array of sub-results (`sub_results::to_json`), replaces
/// those it has, and NULL keeps them.
pub(super) const FINISH_SET: &str =
    "state = 'done', lane = COALESCE(v.column2, lane), result = v.column3,
        failure = v.column4, message = v.column5, metadata_json = v.column6,
        raw_result = v.column7, run_time = v.column8, run_time_delta = v.column9,
        started_ms = COALESCE(v.column10, started_ms), finished_ms = v.column11,
        setup_ms = v.column12, main_ms = v.column13, teardown_ms = v.column14,
        exit_code = v.column15, signal = v.column16, log_truncated = v.column17, pgid = NULL,
        phase = NULL, task_dir = COALESCE(v.column18, task_dir),
        setup_log = COALESCE(v.column19, setup_log), main_log = COALESCE(v.column20, main_log),
        teardown_log = COALESCE(v.column21, teardown_log),
        artifacts_dir = COALESCE(v.column22, artifacts_dir), flaky = v.column23,
        sub_results_json = COALESCE(v.column25, sub_results_json),
        measurements_json = CASE
            WHEN v.column24 IS NULL THEN measurements_json
            WHEN measurements_json IS NULL OR measurements_json = '[]' THEN v.column24
            ELSE substr(measurements_json, 1, length(measurements_json) - 1) || ',' ||
                 substr(v.column24, 2) END ";

pub(super) fn update_finish(conn: &Connection, task_id: i64, f: &TaskFinish) -> Result<()> {
    let paths = stored_paths(conn, task_id, &f.paths)?;
    conn.prepare_cached(&super::batch::finish_sql(1))?.execute(
        FinishRow::new(task_id, f, paths, None, None)
            .values()
            .as_slice(),
    )?;
    Ok(())
}

/// Values in one row of [`FINISH_SET`]'s `VALUES`: the occurrence's id, then what it
/// sets.
pub(super) const FINISH_COLS: usize = 25;

/// One occurrence's finish as bound to [`FINISH_SET`]'s row of values: `f` with its
/// paths as stored, its metadata as text, and its measurements and sub-results as JSON
/// arrays (`None`: keep those it has).
pub(super) struct FinishRow<'a> {
    pub task_id: i64,
    pub f: &'a TaskFinish,
    pub paths: TaskPaths,
    pub metadata: Option<String>,
    pub measurements: Option<String>,
    pub subs: Option<String>,
}

impl<'a> FinishRow<'a> {
    pub fn new(
        task_id: i64,
        f: &'a TaskFinish,
        paths: TaskPaths,
        measurements: Option<String>,
        subs: Option<String>,
    ) -> Self {
        FinishRow {
            task_id,
            f,
            paths,
            metadata: f.metadata.as_ref().map(|m| m.to_string()),
            measurements,
            subs,
        }
    }

    /// Its values in the order of `v.column1` … `v.column25`.
    pub fn values(&self) -> [&dyn ToSql; FINISH_COLS] {
        let (f, p) = (self.f, &self.paths);
        [
            &self.task_id,
            &f.lane,
            &f.result,
            &f.failure,
            &f.message,
            &self.metadata,
            &f.raw_result,
            &f.run_time,
            &f.run_time_delta,
            &f.started_ms,
            &f.finished_ms,
            &f.setup_ms,
            &f.main_ms,
            &f.teardown_ms,
            &f.exit_code,
            &f.signal,
            &f.log_truncated,
            &p.task_dir,
            &p.setup_log,
            &p.main_log,
            &p.teardown_log,
            &p.artifacts_dir,
            &f.flaky,
            &self.measurements,
            &self.subs,
        ]
    }
}

/// Replace the attempts of `task_id`, their paths stored relative to its run's `folder`.
pub(super) fn write_attempts(
    conn: &Connection,
    task_id: i64,
    folder: Option<&str>,
    attempts: &[AttemptRecord],
) -> Result<()> {
    conn.prepare_cached("DELETE FROM task_attempts WHERE task_result_id = ?1")?
        .execute([task_id])?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO task_attempts (task_result_id, attempt, result, failure, message,
            started_ms, finished_ms, exit_code, signal, task_dir, setup_log, main_log,
            teardown_log, artifacts_dir)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
    )?;
    for a in attempts {
        let paths = paths::to_stored(&a.paths, folder);
        stmt.execute(params![
            task_id,
            a.attempt,
            a.result,
            a.failure,
            a.message,
            a.started_ms,
            a.finished_ms,
            a.exit_code,
            a.signal,
            paths.task_dir,
            paths.setup_log,
            paths.main_log,
            paths.teardown_log,
            paths.artifacts_dir,
        ])?;
    }
    Ok(())
}

/// Replace the sections of `task_id`.
pub(super) fn write_sections(
    conn: &Connection,
    task_id: i64,
    sections: &[SectionRecord],
) -> Result<()> {
    conn.prepare_cached("DELETE FROM sections WHERE task_result_id = ?1")?
        .execute([task_id])?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO sections (task_result_id, phase, section_id, parent_id, name, result, started_ms, finished_ms, section_json)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
    )?;
    for s in sections {
        let x = &s.section;
        stmt.execute(params![
            task_id,
            s.phase,
            x.id,
            x.parent,
            x.name,
            x.result,
            x.started_ms,
            x.finished_ms,
            serde_json::to_string(x).expect("plain JSON"),
        ])?;
    }
    Ok(())
}
