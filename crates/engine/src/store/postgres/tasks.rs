//! Task occurrences in PostgreSQL: a phase's start, a finished task's result and
//! sub-results, and a run's task tree.

use std::collections::BTreeMap;

use deadpool_postgres::ClientWrapper;
use tokio_postgres::Client;

use super::{big, small};
use crate::clock::EpochMs;
use crate::store::{
    paths, AttemptRecord, Result, SectionRecord, StoreError, StoredTaskState, SubResultRecord,
    TaskFinish, TaskKind, TaskPaths, TaskRecord,
};

fn parse_opt_json(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

/// `paths` of occurrence `task_id` as stored, relative to its run's folder
/// (`store::paths`); as given when none is set.
pub(super) async fn stored_paths(
    c: &ClientWrapper,
    task_id: i64,
    paths: &TaskPaths,
) -> Result<TaskPaths> {
    if *paths == TaskPaths::default() {
        return Ok(TaskPaths::default());
    }
    let stmt = c
        .prepare_cached(
            "SELECT r.snapshot_dir FROM task_results t JOIN runs r ON r.id = t.run_id
             WHERE t.id = $1",
        )
        .await?;
    let snapshot: Option<String> = c
        .query_opt(&stmt, &[&task_id])
        .await?
        .and_then(|r| r.get(0));
    Ok(paths::to_stored(
        paths,
        paths::run_folder(snapshot.as_deref()),
    ))
}

/// Record a phase's start (lane, phase, paths, process group).
pub(super) async fn phase_started(
    c: &ClientWrapper,
    task_id: i64,
    lane: &str,
    phase: &str,
    started_ms: EpochMs,
    pgid: Option<i32>,
    paths: &TaskPaths,
) -> Result<()> {
    let paths = &stored_paths(c, task_id, paths).await?;
    let stmt = c
        .prepare_cached(
            "UPDATE task_results SET state = 'running', lane = $2, phase = $3,
            started_ms = COALESCE(started_ms, $4), pgid = $5,
            task_dir = $6, setup_log = $7, main_log = $8, teardown_log = $9, artifacts_dir = $10
         WHERE id = $1",
        )
        .await?;
    c.execute(
        &stmt,
        &[
            &task_id,
            &lane,
            &phase,
            &started_ms,
            &pgid,
            &paths.task_dir,
            &paths.setup_log,
            &paths.main_log,
            &paths.teardown_log,
            &paths.artifacts_dir,
        ],
    )
    .await?;
    Ok(())
}

fn state_of(s: &str) -> StoredTaskState {
    match s {
        "running" => StoredTaskState::Running,
        "done" => StoredTaskState::Done,
        _ => StoredTaskState::Pending,
    }
}

/// The task tree of one run, in plan order, with sub-results.
pub(super) async fn of_run(c: &Client, run_id: &str) -> Result<Vec<TaskRecord>> {
    let snapshot: Option<String> = c
        .query_opt("SELECT snapshot_dir FROM runs WHERE id = $1", &[&run_id])
        .await?
        .ok_or_else(|| StoreError::RunNotFound(run_id.into()))?
        .get(0);
    let folder = paths::run_folder(snapshot.as_deref());
    let rows = c
        .query(
            "SELECT id, run_id, seq, lane, task, kind, grp, description, state, result, failure,
                message, metadata_json, raw_result, est_task_time, run_time, run_time_delta,
                started_ms, finished_ms, setup_ms, main_ms, teardown_ms, exit_code, signal, phase,
                task_dir, setup_log, main_log, teardown_log, artifacts_dir, log_truncated, pgid,
                flaky
             FROM task_results WHERE run_id = $1 ORDER BY seq",
            &[&run_id],
        )
        .await?;
    let mut tasks: Vec<TaskRecord> = rows
        .iter()
        .map(|r| TaskRecord {
            id: r.get(0),
            run_id: r.get(1),
            seq: small(r.get(2)),
            lane: r.get(3),
            task: r.get(4),
            kind: TaskKind::parse(r.get(5)).unwrap_or(TaskKind::Test),
            group: r.get(6),
            description: r.get(7),
            state: state_of(r.get(8)),
            result: r.get(9),
            failure: r.get(10),
            message: r.get(11),
            metadata: parse_opt_json(r.get(12)),
            raw_result: r.get(13),
            est_task_time: r.get(14),
            run_time: r.get(15),
            run_time_delta: r.get(16),
            started_ms: r.get(17),
            finished_ms: r.get(18),
            setup_ms: r.get(19),
            main_ms: r.get(20),
            teardown_ms: r.get(21),
            exit_code: r.get(22),
            signal: r.get(23),
            phase: r.get(24),
            paths: TaskPaths {
                task_dir: r.get(25),
                setup_log: r.get(26),
                main_log: r.get(27),
                teardown_log: r.get(28),
                artifacts_dir: r.get(29),
            },
            log_truncated: r.get(30),
            pgid: r.get(31),
            sub_results: Vec::new(),
            flaky: r.get(32),
            attempts: Vec::new(),
            measurements: Vec::new(),
            sections: Vec::new(),
        })
        .collect();
    let rows = c
        .query(
            "SELECT s.task_result_id, s.name, s.description, s.result, s.failure, s.message, s.metadata_json
             FROM sub_results s JOIN task_results t ON t.id = s.task_result_id
             WHERE t.run_id = $1 ORDER BY s.task_result_id, s.idx",
            &[&run_id],
        )
        .await?;
    let mut by_id: BTreeMap<i64, Vec<SubResultRecord>> = BTreeMap::new();
    for r in &rows {
        by_id.entry(r.get(0)).or_default().push(SubResultRecord {
            name: r.get(1),
            description: r.get(2),
            result: r.get(3),
            failure: r.get(4),
            message: r.get(5),
            metadata: parse_opt_json(r.get(6)),
            measurements: Vec::new(),
        });
    }
    for t in &mut tasks {
        if let Some(s) = by_id.remove(&t.id) {
            t.sub_results = s;
        }
    }
    let mut attempts_of = attempts_of_run(c, run_id).await?;
    for t in &mut tasks {
        paths::from_stored(&mut t.paths, folder);
        if let Some(mut a) = attempts_of.remove(&t.id) {
            for x in &mut a {
                paths::from_stored(&mut x.paths, folder);
            }
            t.attempts = a;
        }
    }
    super::history::attach(c, run_id, &mut tasks).await?;
    let rows = c
        .query(
            "SELECT s.task_result_id, s.phase, s.section_json
             FROM sections s JOIN task_results t ON t.id = s.task_result_id
             WHERE t.run_id = $1
             ORDER BY s.task_result_id, CASE s.phase WHEN 'setup' THEN 0 WHEN 'main' THEN 1 ELSE 2 END, s.section_id",
            &[&run_id],
        )
        .await?;
    let mut sections: BTreeMap<i64, Vec<SectionRecord>> = BTreeMap::new();
    for r in &rows {
        // A row this version cannot read is left out rather than failing the run's read.
        if let Ok(section) = serde_json::from_str(r.get::<_, &str>(2)) {
            sections.entry(r.get(0)).or_default().push(SectionRecord {
                phase: r.get(1),
                section,
            });
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
async fn attempts_of_run(c: &Client, run_id: &str) -> Result<BTreeMap<i64, Vec<AttemptRecord>>> {
    let rows = c
        .query(
            "SELECT a.task_result_id, a.attempt, a.result, a.failure, a.message, a.started_ms,
                a.finished_ms, a.exit_code, a.signal, a.task_dir, a.setup_log, a.main_log,
                a.teardown_log, a.artifacts_dir
             FROM task_attempts a JOIN task_results t ON t.id = a.task_result_id
             WHERE t.run_id = $1 ORDER BY a.task_result_id, a.attempt",
            &[&run_id],
        )
        .await?;
    let mut by_id: BTreeMap<i64, Vec<AttemptRecord>> = BTreeMap::new();
    for r in &rows {
        by_id.entry(r.get(0)).or_default().push(AttemptRecord {
            attempt: small(r.get(1)),
            result: r.get(2),
            failure: r.get(3),
            message: r.get(4),
            started_ms: r.get(5),
            finished_ms: r.get(6),
            exit_code: r.get(7),
            signal: r.get(8),
            paths: TaskPaths {
                task_dir: r.get(9),
                setup_log: r.get(10),
                main_log: r.get(11),
                teardown_log: r.get(12),
                artifacts_dir: r.get(13),
            },
        });
    }
    Ok(by_id)
}

const UPDATE_FINISH: &str = "UPDATE task_results SET state = 'done', lane = COALESCE($2, lane), result = $3, failure = $4,
            message = $5, metadata_json = $6, raw_result = $7, run_time = $8, run_time_delta = $9,
            started_ms = COALESCE($10, started_ms), finished_ms = $11, setup_ms = $12, main_ms = $13,
            teardown_ms = $14, exit_code = $15, signal = $16, log_truncated = $17, pgid = NULL,
            phase = NULL, task_dir = COALESCE($18, task_dir), setup_log = COALESCE($19, setup_log),
            main_log = COALESCE($20, main_log), teardown_log = COALESCE($21, teardown_log),
            artifacts_dir = COALESCE($22, artifacts_dir), flaky = $23
         WHERE id = $1";

async fn update_finish(c: &ClientWrapper, task_id: i64, f: &TaskFinish) -> Result<()> {
    let paths = stored_paths(c, task_id, &f.paths).await?;
    let stmt = c.prepare_cached(UPDATE_FINISH).await?;
    c.execute(
        &stmt,
        &[
            &task_id,
            &f.lane,
            &f.result,
            &f.failure,
            &f.message,
            &f.metadata.as_ref().map(|m| m.to_string()),
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
            &paths.task_dir,
            &paths.setup_log,
            &paths.main_log,
            &paths.teardown_log,
            &paths.artifacts_dir,
            &f.flaky,
        ],
    )
    .await?;
    Ok(())
}

/// A finished task's row, sub-results, attempts, measurements and sections, inside the
/// caller's transaction.
pub(super) async fn finish_writes(c: &ClientWrapper, task_id: i64, f: &TaskFinish) -> Result<()> {
    update_finish(c, task_id, f).await?;
    if !f.attempts.is_empty() {
        write_attempts(c, task_id, &f.attempts).await?;
    }
    if !f.sections.is_empty() {
        write_sections(c, task_id, &f.sections).await?;
    }
    if !f.sub_results.is_empty() {
        c.execute(
            "DELETE FROM sub_results WHERE task_result_id = $1",
            &[&task_id],
        )
        .await?;
        for (i, s) in f.sub_results.iter().enumerate() {
            c.execute(
                "INSERT INTO sub_results (task_result_id, idx, name, description, result, failure,
                    message, metadata_json)
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                &[
                    &task_id,
                    &(i as i64),
                    &s.name,
                    &s.description,
                    &s.result,
                    &s.failure,
                    &s.message,
                    &s.metadata.as_ref().map(|m| m.to_string()),
                ],
            )
            .await?;
        }
        for s in &f.sub_results {
            super::history::insert(c, task_id, Some(&s.name), &s.measurements).await?;
        }
    }
    super::history::insert(c, task_id, None, &f.measurements).await?;
    Ok(())
}

/// Replace the attempts of `task_id`.
pub(super) async fn write_attempts(
    c: &ClientWrapper,
    task_id: i64,
    attempts: &[AttemptRecord],
) -> Result<()> {
    c.execute(
        "DELETE FROM task_attempts WHERE task_result_id = $1",
        &[&task_id],
    )
    .await?;
    for a in attempts {
        let paths = stored_paths(c, task_id, &a.paths).await?;
        c.execute(
            "INSERT INTO task_attempts (task_result_id, attempt, result, failure, message,
                started_ms, finished_ms, exit_code, signal, task_dir, setup_log, main_log,
                teardown_log, artifacts_dir)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
            &[
                &task_id,
                &big(a.attempt),
                &a.result,
                &a.failure,
                &a.message,
                &a.started_ms,
                &a.finished_ms,
                &a.exit_code,
                &a.signal,
                &paths.task_dir,
                &paths.setup_log,
                &paths.main_log,
                &paths.teardown_log,
                &paths.artifacts_dir,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Replace the sections of `task_id`.
pub(super) async fn write_sections(
    c: &ClientWrapper,
    task_id: i64,
    sections: &[SectionRecord],
) -> Result<()> {
    c.execute(
        "DELETE FROM sections WHERE task_result_id = $1",
        &[&task_id],
    )
    .await?;
    for s in sections {
        let x = &s.section;
        c.execute(
            "INSERT INTO sections (task_result_id, phase, section_id, parent_id, name, result,
                started_ms, finished_ms, section_json)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
            &[
                &task_id,
                &s.phase,
                &big(x.id),
                &x.parent.map(big),
                &x.name,
                &x.result,
                &x.started_ms,
                &x.finished_ms,
                &serde_json::to_string(x).expect("plain JSON"),
            ],
        )
        .await?;
    }
    Ok(())
}
